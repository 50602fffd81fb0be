//! The runtime's log, as runc writes it: `--log FILE` (stderr without one), `--log-format text`
//! (`time="…" level=… msg="…"`) or `json` (`{"level":…,"msg":…,"time":…}`), and `--debug` for
//! debug lines saying what the runtime is doing (config loaded, cgroup, namespaces, mounts,
//! pivot_root, exec). Without `--debug` only warnings and errors are logged.
//!
//! Errors and warnings also go to stderr as plain text for people (and the log file when given).
//! Debug lines go to the log file, or to stderr when there is none.
//!
//! With `--debug` the log file is opened once, close-on-exec, before the container's init is
//! cloned, so the init logs through the same descriptor after `pivot_root` (it is kept open until
//! its `execve` closes it, so no other file can take its number).

use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

struct Cfg {
    path: Option<PathBuf>,
    json: bool,
    /// The log file, opened up front when debugging.
    file: Option<std::fs::File>,
}

static CFG: OnceLock<Cfg> = OnceLock::new();
static DEBUG: AtomicBool = AtomicBool::new(false);

/// Sets up logging from the global flags; call once, before anything logs.
pub fn init(path: Option<PathBuf>, json: bool, debug: bool) {
    let file = match (&path, debug) {
        (Some(p), true) => open(p),
        _ => None,
    };
    if CFG.set(Cfg { path, json, file }).is_ok() {
        DEBUG.store(debug, Ordering::Relaxed);
    }
}

fn open(p: &PathBuf) -> Option<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .ok()
}

/// Whether `--debug` was given.
pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// The open log file (debug mode), which the init keeps until its `execve`.
pub fn fd() -> Option<RawFd> {
    CFG.get()?.file.as_ref().map(|f| f.as_raw_fd())
}

/// What a JSON error line adds to runc's fields for an engine that reads it: the errno of
/// the failed system call and whether finding or executing the program failed (engines map
/// them to Docker's exit codes 126/127 without reading the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorFields {
    /// `"errno"`: the OS error number.
    pub errno: i32,
    /// `"exec"`: true when the program could not be found or executed.
    pub exec: bool,
}

/// One log line in the configured format.
fn format_line(json: bool, level: &str, msg: &str, fields: Option<ErrorFields>) -> String {
    let time = crate::state::now_rfc3339();
    if json {
        let mut v = serde_json::json!({"level": level, "msg": msg, "time": time});
        if let Some(f) = fields {
            v["errno"] = f.errno.into();
            v["exec"] = f.exec.into();
        }
        v.to_string()
    } else {
        format!("time={time:?} level={level} msg={msg:?}")
    }
}

/// Writes a line to the log: the file when there is one, else stderr when `to_stderr`.
fn write(level: &str, msg: &str, to_stderr: bool) {
    write_with(level, msg, to_stderr, None)
}

fn write_with(level: &str, msg: &str, to_stderr: bool, fields: Option<ErrorFields>) {
    let Some(cfg) = CFG.get() else { return };
    let mut line = format_line(cfg.json, level, msg, fields);
    line.push('\n');
    match (&cfg.file, &cfg.path) {
        (Some(f), _) => {
            let _ = (&*f).write_all(line.as_bytes());
        }
        (None, Some(p)) => {
            if let Some(mut f) = open(p) {
                let _ = f.write_all(line.as_bytes());
            }
        }
        (None, None) if to_stderr => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        (None, None) => {}
    }
}

/// Logs a debug line (only with `--debug`; use the [`crate::debug!`] macro, which skips the
/// formatting otherwise).
pub fn debug(msg: &str) {
    if debug_enabled() {
        write("debug", msg, true);
    }
}

/// The out-of-line half of [`crate::debug!`]: the formatting code stays out of the callers,
/// which run for every container whether or not `--debug` is on.
#[cold]
#[inline(never)]
pub fn debug_args(args: std::fmt::Arguments) {
    debug(&args.to_string());
}

/// The out-of-line half of [`crate::warning!`].
#[cold]
#[inline(never)]
pub fn warn_args(args: std::fmt::Arguments) {
    warn(&args.to_string());
}

/// A warning: stderr for people, and the log file.
pub fn warn(msg: &str) {
    eprintln!("berth-runtime: warning: {msg}");
    write("warning", msg, false);
}

/// An error the command ends with: stderr for people, and the log file.
pub fn error(msg: &str) {
    eprintln!("berth-runtime: {msg}");
    write("error", msg, false);
}

/// [`error`] for a runtime error: a JSON log line also carries its [`ErrorFields`] when it
/// has an errno.
pub fn error_of(e: &impl crate::sys::Errno) {
    let msg = e.to_string();
    eprintln!("berth-runtime: {msg}");
    let fields = e.errno().map(|errno| ErrorFields {
        errno,
        exec: e.during_exec(),
    });
    write_with("error", &msg, false, fields);
}

/// Logs a debug line built from a format string, only when `--debug` is on.
#[macro_export]
macro_rules! debug {
    ($($t:tt)*) => {
        if $crate::log::debug_enabled() {
            $crate::log::debug_args(format_args!($($t)*));
        }
    };
}

/// Logs a warning built from a format string (stderr and the log file).
#[macro_export]
macro_rules! warning {
    ($($t:tt)*) => {
        $crate::log::warn_args(format_args!($($t)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_lines() {
        let t = format_line(false, "debug", "say \"hi\"", None);
        assert!(t.starts_with("time=\""), "{t}");
        assert!(t.ends_with("level=debug msg=\"say \\\"hi\\\"\""), "{t}");
        let j: serde_json::Value =
            serde_json::from_str(&format_line(true, "warning", "x", None)).unwrap();
        assert_eq!(j["level"], "warning");
        assert_eq!(j["msg"], "x");
        assert!(j["time"].as_str().unwrap().ends_with('Z'));
        assert!(j.get("errno").is_none());
    }

    #[test]
    fn json_error_lines_carry_the_errno() {
        let fields = ErrorFields {
            errno: libc::ENOENT,
            exec: true,
        };
        let j: serde_json::Value =
            serde_json::from_str(&format_line(true, "error", "exec: nope", Some(fields))).unwrap();
        assert_eq!(j["errno"], libc::ENOENT);
        assert_eq!(j["exec"], true);
        assert_eq!(j["msg"], "exec: nope");
        // runc's text format stays as it is.
        let t = format_line(false, "error", "exec: nope", Some(fields));
        assert!(t.ends_with("level=error msg=\"exec: nope\""), "{t}");
    }
}
