//! The OCI runtime, driven as a subprocess with runc's command line (as podman
//! drives runc). `BERTH_RUNTIME` picks the binary (for instance `runc`); the
//! default is berth's own runtime: the `berth-runtime` binary installed beside
//! berth, else the running binary with `runtime` first.
//!
//! With berth's own runtime, the commands that never enter a container (`kill`,
//! `delete`, `pause`, `resume`, `ps`) run in-process through the runtime library:
//! the same code and state directory, without an exec per call. The monitor also
//! starts a container in-process when nothing can reach its init before the exec
//! (`monitor::launch_in_process`); otherwise, and for `exec`, the binary runs from a
//! read-only view of itself, which guards the host binary against CVE-2019-5736.

use berth_runtime::container;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn lib(r: Result<(), impl std::fmt::Display>) -> Result<(), RuntimeError> {
    r.map_err(|e| RuntimeError::Failed(e.to_string()))
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("starting the OCI runtime {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
}

/// How to execute a runtime's command line: the program and the arguments before runc's
/// global flags (`runtime` when berth itself is the runtime).
#[derive(Debug, Clone)]
pub struct Binary {
    pub program: PathBuf,
    pub prefix: Vec<String>,
}

/// The runtime berth drives. Starting container processes (`run`, `create`, `exec`) always
/// goes through a binary's command line (or, with berth's own runtime, the monitor's
/// in-process launch); the two kinds differ in the calls that never enter a container.
#[derive(Debug, Clone)]
pub enum Runtime {
    /// berth's own runtime: `kill`, `delete`, `pause`, `resume`, `ps`, `stats` and the OOM
    /// check run in-process through the runtime library, on the same state directory.
    Builtin {
        binary: Binary,
        /// The runtime's state directory (`--root`).
        state_root: PathBuf,
    },
    /// Any runc-compatible runtime (`BERTH_RUNTIME`), driven by its command line only.
    External {
        binary: Binary,
        /// The runtime's state directory (`--root`).
        state_root: PathBuf,
    },
}

impl Runtime {
    /// The runtime berth drives, keeping its state in `<run_root>/runtime`.
    pub fn new(run_root: &Path) -> Runtime {
        let state_root = run_root.join("runtime");
        match std::env::var_os("BERTH_RUNTIME").filter(|v| !v.is_empty()) {
            Some(p) => Runtime::External {
                binary: Binary {
                    program: PathBuf::from(p),
                    prefix: vec![],
                },
                state_root,
            },
            None => {
                let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("berth"));
                // The `berth-runtime` built beside berth is the same runtime in a binary a
                // third of the size: quicker to load on every start than `berth runtime`.
                let sibling = exe.with_file_name("berth-runtime");
                let binary = if sibling.is_file() {
                    Binary {
                        program: sibling,
                        prefix: vec![],
                    }
                } else {
                    Binary {
                        program: exe,
                        prefix: vec!["runtime".into()],
                    }
                };
                Runtime::Builtin { binary, state_root }
            }
        }
    }

    /// The runtime's command line.
    pub fn binary(&self) -> &Binary {
        match self {
            Runtime::Builtin { binary, .. } | Runtime::External { binary, .. } => binary,
        }
    }

    /// The runtime's state directory (`--root`).
    pub fn state_root(&self) -> &Path {
        match self {
            Runtime::Builtin { state_root, .. } | Runtime::External { state_root, .. } => {
                state_root
            }
        }
    }

    /// Whether the monitor may start a container with the runtime linked in
    /// (`monitor::launch_in_process`): only berth's own runtime can.
    pub fn can_launch_in_process(&self) -> bool {
        matches!(self, Runtime::Builtin { .. })
    }

    /// A command with the global flags set.
    pub fn command(&self) -> Command {
        let b = self.binary();
        let mut c = Command::new(&b.program);
        c.args(&b.prefix);
        c.arg("--root").arg(self.state_root());
        c
    }

    /// The command for `run`/`create`/`exec`, which start container processes. berth's
    /// own runtime must run from a read-only view of its binary (CVE-2019-5736) and
    /// re-executes itself to get one; handing it that view up front (a detached
    /// read-only bind mount, executed through `/proc/self/fd/N`) saves the second exec.
    /// The descriptor is close-on-exec: it must live until the command is spawned, and
    /// the runtime never inherits it. Without the privilege for the view, the runtime
    /// protects itself as before.
    pub fn container_command(&self) -> (Command, Option<OwnedFd>) {
        if let Runtime::Builtin { binary, state_root } = self {
            if let Ok(fd) = berth_runtime::selfexe::read_only_view(&binary.program) {
                let mut c = Command::new(format!("/proc/self/fd/{}", fd.as_raw_fd()));
                c.arg0(&binary.program);
                c.args(&binary.prefix);
                c.arg("--root").arg(state_root);
                return (c, Some(fd));
            }
        }
        (self.command(), None)
    }

    pub fn name(&self) -> String {
        let b = self.binary();
        let mut s = b.program.to_string_lossy().into_owned();
        for p in &b.prefix {
            s.push(' ');
            s.push_str(p);
        }
        s
    }

    fn run(&self, args: &[&str]) -> Result<Output, RuntimeError> {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| RuntimeError::Spawn {
                program: self.name(),
                source,
            })
    }

    /// Runs a subcommand; its stderr becomes the error when it fails.
    pub fn call(&self, args: &[&str]) -> Result<Vec<u8>, RuntimeError> {
        let out = self.run(args)?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(RuntimeError::Failed(clean_message(&out.stderr)))
        }
    }

    pub fn kill(&self, id: &str, signal: i32) -> Result<(), RuntimeError> {
        match self {
            Runtime::Builtin { state_root, .. } => {
                lib(container::kill(state_root, id, signal, false))
            }
            Runtime::External { .. } => self.call(&["kill", id, &signal.to_string()]).map(|_| ()),
        }
    }

    /// `delete --force`; a container the runtime does not know is fine (and costs nothing:
    /// runc-compatible runtimes keep a container's state in `<state root>/<id>`).
    pub fn delete_force(&self, id: &str) {
        if !self.state_root().join(id).exists() {
            return;
        }
        match self {
            Runtime::Builtin { state_root, .. } => {
                if let Err(e) = container::delete(state_root, id, true) {
                    tracing::warn!("deleting {id} from the runtime: {e}");
                }
            }
            Runtime::External { .. } => {
                let _ = self.run(&["delete", "--force", id]);
            }
        }
    }

    pub fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        match self {
            Runtime::Builtin { state_root, .. } => lib(container::set_paused(state_root, id, true)),
            Runtime::External { .. } => self.call(&["pause", id]).map(|_| ()),
        }
    }

    pub fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        match self {
            Runtime::Builtin { state_root, .. } => {
                lib(container::set_paused(state_root, id, false))
            }
            Runtime::External { .. } => self.call(&["resume", id]).map(|_| ()),
        }
    }

    /// The container's cgroup counters in runc's `events --stats` shape (`data.cpu`,
    /// `data.memory`, `data.pids`), read by the runtime from wherever its cgroups live
    /// (v1, hybrid, v2, nested). None when it is not running or the runtime cannot say.
    pub fn stats(&self, id: &str) -> Option<serde_json::Value> {
        match self {
            Runtime::Builtin { state_root, .. } => container::stats(state_root, id).ok(),
            Runtime::External { .. } => {
                let out = self.call(&["events", "--stats", id]).ok()?;
                serde_json::from_slice(&out).ok()
            }
        }
    }

    /// Pids of every process in the container.
    pub fn ps(&self, id: &str) -> Result<Vec<i32>, RuntimeError> {
        match self {
            Runtime::Builtin { state_root, .. } => {
                container::pids(state_root, id).map_err(|e| RuntimeError::Failed(e.to_string()))
            }
            Runtime::External { .. } => {
                let out = self.call(&["ps", "--format", "json", id])?;
                serde_json::from_slice(&out)
                    .map_err(|e| RuntimeError::Failed(format!("runtime ps output: {e}")))
            }
        }
    }

    /// Whether the OOM killer killed a process of the container. berth's own runtime reads
    /// its cgroup wherever it is (v1 `memory.oom_control`, v2 `memory.events`); for another
    /// runtime, the cgroup is looked for where berth's spec put it.
    pub fn oom_killed(&self, id: &str) -> bool {
        match self {
            Runtime::Builtin { state_root, .. } => {
                container::oom_killed(state_root, id).unwrap_or(false)
            }
            Runtime::External { .. } => [
                format!("/sys/fs/cgroup/memory/berth/{id}/memory.oom_control"),
                format!("/sys/fs/cgroup/berth/{id}/memory.events"),
            ]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .flat_map(|s| {
                s.lines()
                    .filter_map(|l| l.strip_prefix("oom_kill ")?.trim().parse::<u64>().ok())
                    .collect::<Vec<_>>()
            })
            .any(|n| n > 0),
        }
    }
}

/// The useful part of a runtime's error output (runc prints logfmt or JSON lines).
pub fn clean_message(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let mut msgs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            if let Some(m) = v.get("msg").and_then(|m| m.as_str()) {
                msgs.push(m.to_string());
                continue;
            }
        }
        if let Some(i) = line.find("msg=\"") {
            let rest = &line[i + 5..];
            let end = rest.rfind('"').unwrap_or(rest.len());
            msgs.push(rest[..end].replace("\\\"", "\""));
            continue;
        }
        msgs.push(line.to_string());
    }
    msgs.join("; ")
}

/// Docker's exit code for a container start that failed with the OS error `errno`: 127 when
/// the program is missing (`ENOENT` while finding or executing it), 126 when it cannot be
/// executed (`EACCES`, `ENOEXEC`, `EISDIR` or `EPERM` from finding or executing it), else 125:
/// anything berth fails at while setting the container up (a mount, `/dev/null`, a masked
/// path) is 125 whatever its errno, as only the program's own lookup and `execve` are the
/// command's fault.
pub fn exit_code_for_errno(errno: Option<i32>, during_exec: bool) -> i32 {
    if !during_exec {
        return 125;
    }
    match errno {
        Some(libc::ENOENT) => 127,
        Some(libc::EACCES | libc::ENOEXEC | libc::EISDIR | libc::EPERM) => 126,
        _ => 125,
    }
}

/// Docker's exit code for a start that berth's own runtime, linked in, failed: from the
/// error's errno (the init reports it over the stage channel with its message).
pub fn start_failure_code(e: &impl berth_runtime::sys::Errno) -> i32 {
    exit_code_for_errno(e.errno(), e.during_exec())
}

/// Docker's exit code from the error line berth's runtime binary writes with
/// `--log-format json`, which carries `errno` and `exec` fields. None when the log has no
/// such line (another runtime, or an error without an errno).
pub fn logged_failure_code(log: &[u8]) -> Option<i32> {
    String::from_utf8_lossy(log).lines().rev().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
        if v.get("level")?.as_str()? != "error" {
            return None;
        }
        let errno = i32::try_from(v.get("errno")?.as_i64()?).ok()?;
        let exec = v.get("exec").and_then(|e| e.as_bool()).unwrap_or(false);
        Some(exit_code_for_errno(Some(errno), exec))
    })
}

/// Fallback for runtimes whose errors are only text (runc's output, or a runtime binary's
/// stderr): Docker's exit code found by searching the message, as Docker does: 127 when the
/// command is missing, 126 when it cannot be executed, else 125. Only a message about the
/// program's lookup or `execve` (runc's `exec: "PROG": ...`, `exec failed`) can give 126 or
/// 127: "no such file or directory" from a mount is a set-up failure (125). berth's own
/// runtime gives its errno instead ([`start_failure_code`], [`logged_failure_code`]).
pub fn start_failure_code_from_text(message: &str) -> i32 {
    let m = message.to_ascii_lowercase();
    if m.contains("executable file not found") {
        return 127;
    }
    let about_exec = m.contains("exec: \"") || m.contains("exec failed") || m.contains("execve");
    if !about_exec {
        125
    } else if m.contains("no such file or directory") || m.contains("not found") {
        127
    } else if m.contains("permission denied")
        || m.contains("exec format error")
        || m.contains("is a directory")
    {
        126
    } else {
        125
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn messages_and_codes() {
        let e = br#"time="2024-01-01T00:00:00Z" level=error msg="runc create failed: unable to start container process: exec: \"nope\": executable file not found in $PATH""#;
        let m = clean_message(e);
        assert!(m.starts_with("runc create failed"), "{m}");
        assert!(m.contains("\"nope\""));
        assert_eq!(start_failure_code_from_text(&m), 127);
        assert_eq!(
            start_failure_code_from_text("exec: \"/etc/passwd\": permission denied"),
            126
        );
        assert_eq!(start_failure_code_from_text("cgroup: bad thing"), 125);
        // runc's set-up failures name an errno too, but not the program's exec.
        for m in [
            "runc create failed: unable to start container process: error during container init: error mounting \"/x\" to rootfs at \"/proc\": no such file or directory",
            "open /dev/null: no such file or directory",
            "rootfs_linux.go: permission denied",
        ] {
            assert_eq!(start_failure_code_from_text(m), 125, "{m}");
        }
        assert_eq!(
            start_failure_code_from_text("exec: \"/bin/nope\": no such file or directory"),
            127
        );
    }

    #[test]
    fn codes_from_the_errno() {
        assert_eq!(exit_code_for_errno(Some(libc::ENOENT), true), 127);
        // Outside the program's lookup and execve, every errno is a set-up failure.
        for e in [
            libc::ENOENT,
            libc::EACCES,
            libc::ENOEXEC,
            libc::EISDIR,
            libc::EPERM,
        ] {
            assert_eq!(exit_code_for_errno(Some(e), false), 125, "{e}");
        }
        for e in [libc::EACCES, libc::ENOEXEC, libc::EISDIR] {
            assert_eq!(exit_code_for_errno(Some(e), true), 126, "{e}");
        }
        assert_eq!(exit_code_for_errno(Some(libc::EPERM), true), 126);
        assert_eq!(exit_code_for_errno(Some(libc::EPERM), false), 125);
        assert_eq!(exit_code_for_errno(Some(libc::EBUSY), true), 125);
        assert_eq!(exit_code_for_errno(None, true), 125);
    }

    #[test]
    fn codes_from_the_runtimes_typed_errors() {
        use berth_runtime::error::{ChildError, Error, SysError};
        let child = |errno, exec| {
            Error::Child(ChildError {
                errno,
                exec,
                message: "whatever the text says: not found".into(),
            })
        };
        assert_eq!(start_failure_code(&child(Some(libc::ENOENT), true)), 127);
        assert_eq!(start_failure_code(&child(Some(libc::EACCES), true)), 126);
        assert_eq!(start_failure_code(&child(Some(libc::EPERM), true)), 126);
        // The text is not searched: an error without an errno is 125.
        assert_eq!(start_failure_code(&child(None, false)), 125);
        // ENOENT from a mount or `/dev/null` in the init is not a missing program.
        assert_eq!(start_failure_code(&child(Some(libc::ENOENT), false)), 125);
        let sys = Error::Sys(SysError {
            what: "mounting /data".into(),
            source: std::io::Error::from_raw_os_error(libc::EPERM),
        });
        assert_eq!(start_failure_code(&sys), 125);
    }

    #[test]
    fn codes_from_the_runtimes_json_log() {
        let log = br#"{"level":"debug","msg":"exec","time":"t"}
{"level":"error","msg":"exec: \"nope\": executable file not found in $PATH","time":"t","errno":2,"exec":true}
"#;
        assert_eq!(logged_failure_code(log), Some(127));
        let log = br#"{"level":"error","msg":"exec: \"/etc\": is a directory","time":"t","errno":21,"exec":true}"#;
        assert_eq!(logged_failure_code(log), Some(126));
        // runc's lines have no errno: the caller falls back to the text.
        let log = br#"{"level":"error","msg":"exec failed: permission denied","time":"t"}"#;
        assert_eq!(logged_failure_code(log), None);
        assert_eq!(logged_failure_code(b"not json"), None);
    }
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    fn binary(program: &str, prefix: &[&str]) -> Binary {
        Binary {
            program: program.into(),
            prefix: prefix.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn an_external_runtime_is_driven_by_its_command_line() {
        let t = tempfile::tempdir().unwrap();
        let r = Runtime::External {
            binary: binary("/nonexistent/runc", &[]),
            state_root: t.path().to_path_buf(),
        };
        assert!(!r.can_launch_in_process());
        let args: Vec<String> = r
            .command()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args, ["--root", &t.path().to_string_lossy()]);
        // Every lifecycle call execs the binary (which is missing here).
        assert!(matches!(r.kill("c", 9), Err(RuntimeError::Spawn { .. })));
        assert!(matches!(r.pause("c"), Err(RuntimeError::Spawn { .. })));
        assert!(r.stats("c").is_none());
        assert!(!r.oom_killed("c"));
    }

    #[test]
    fn berths_runtime_runs_lifecycle_calls_in_process() {
        let t = tempfile::tempdir().unwrap();
        let r = Runtime::Builtin {
            binary: binary("/nonexistent/berth", &["runtime"]),
            state_root: t.path().to_path_buf(),
        };
        assert!(r.can_launch_in_process());
        assert_eq!(r.name(), "/nonexistent/berth runtime");
        assert_eq!(r.state_root(), t.path());
        // No exec: the library answers for the unknown container.
        assert!(matches!(r.kill("c", 9), Err(RuntimeError::Failed(_))));
        assert!(matches!(r.ps("c"), Err(RuntimeError::Failed(_))));
        assert!(!r.oom_killed("c"));
    }
}
