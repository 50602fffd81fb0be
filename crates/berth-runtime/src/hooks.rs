//! OCI hooks: each runs with the container state as JSON on stdin ([`state`]), its own args
//! and env, and an optional timeout after which it is killed.

use crate::sys;
use crate::sys::{SysCtx, SysError};
use oci_spec::runtime::{Hook, Spec};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A hook that could not run or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// Starting or waiting for the hook failed.
    #[error(transparent)]
    Sys(#[from] SysError),
    /// The hook ran past its timeout and was killed.
    #[error("{kind} hook {} timed out after {secs}s", path.display())]
    Timeout {
        /// Which hooks (`prestart`, `poststop`, ...).
        kind: String,
        /// The hook's path.
        path: PathBuf,
        /// Its timeout.
        secs: i64,
    },
    /// The hook exited unsuccessfully.
    #[error("{kind} hook {} failed: {status}", path.display())]
    Failed {
        /// Which hooks.
        kind: String,
        /// The hook's path.
        path: PathBuf,
        /// How it ended.
        status: std::process::ExitStatus,
    },
}

type Result<T> = std::result::Result<T, HookError>;

/// The runtime-spec state JSON handed to hooks (and, inside the container process state, to
/// a seccomp agent).
pub fn state(id: &str, status: &str, pid: i32, bundle: &Path, spec: &Spec) -> String {
    serde_json::json!({
        "ociVersion": crate::state::OCI_VERSION,
        "id": id,
        "status": status,
        "pid": pid,
        "bundle": bundle,
        "annotations": spec.annotations().clone().unwrap_or_default(),
    })
    .to_string()
}

/// Runs `hooks` in order; the first failure stops the list and is returned.
pub fn run_all(kind: &str, hooks: Option<&Vec<Hook>>, state: &str) -> Result<()> {
    for h in hooks.into_iter().flatten() {
        run(kind, h, state)?;
    }
    Ok(())
}

/// Runs every hook of `hooks` even when one fails, logging each failure as a warning (poststart
/// and poststop: the lifecycle continues as if the hook had succeeded).
pub fn run_all_warn(kind: &str, hooks: Option<&Vec<Hook>>, state: &str) {
    for h in hooks.into_iter().flatten() {
        if let Err(e) = run(kind, h, state) {
            crate::log::warn(&e.to_string());
        }
    }
}

/// Runs one hook.
pub fn run(kind: &str, h: &Hook, state: &str) -> Result<()> {
    let path = h.path();
    let mut cmd = Command::new(path);
    if let Some(args) = h.args() {
        if let Some((a0, rest)) = args.split_first() {
            cmd.arg0(a0).args(rest);
        }
    }
    cmd.env_clear();
    for kv in h.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd
        .spawn()
        .sys(|| format!("running {kind} hook {}", path.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook may not read its stdin: a broken pipe is fine.
        let _ = stdin.write_all(state.as_bytes());
    }
    let status = match h.timeout() {
        Some(t) if t > 0 => {
            let pidfd = sys::pidfd_open(child.id() as i32)
                .sys(|| format!("watching {kind} hook {}", path.display()))?;
            if !sys::pidfd_wait(&pidfd, (t as i32).saturating_mul(1000)) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HookError::Timeout {
                    kind: kind.to_string(),
                    path: path.clone(),
                    secs: t,
                });
            }
            child.wait()
        }
        _ => child.wait(),
    }
    .sys(|| format!("waiting for {kind} hook {}", path.display()))?;
    if !status.success() {
        return Err(HookError::Failed {
            kind: kind.to_string(),
            path: path.clone(),
            status,
        });
    }
    Ok(())
}
