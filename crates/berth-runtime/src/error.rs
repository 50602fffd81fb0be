//! The runtime's errors. Each module has its own enum that says what kind of thing failed
//! (a bad spec, a container in the wrong state, a failed system call, a program that cannot
//! be executed, a hook, the stage protocol, ...); [`Error`] wraps them all, so `?` works across
//! modules, and [`Error::errno`] gives the OS error behind any of them (engines map it to
//! Docker's exit codes 126/127).
//!
//! | enum | module | what |
//! |---|---|---|
//! | [`SysError`] | every module | a system call that failed: what was being done and its errno |
//! | [`ConfigError`] | [`crate::config`] | `config.json` unreadable, unparsable or invalid |
//! | [`StateError`] | [`crate::state`] | container ids, `state.json`, wrong state for an operation |
//! | [`ContainerError`] | [`crate::container`] | create/start/kill/... steps of the lifecycle |
//! | [`ProtocolError`], [`ChildError`] | [`crate::channel`] | the stage protocol; an error the init or exec process reported (its errno and message) |
//! | [`InitError`] | [`crate::init`] | the init's own checks |
//! | [`ProcessError`] | [`crate::process`] | process attributes, the program lookup and `execve` |
//! | [`ExecError`] | [`crate::exec`] | the `exec` command's options |
//! | [`HookError`] | [`crate::hooks`] | OCI hooks |
//! | [`IdmapError`] | [`crate::idmap`] | idmapped mounts |
//! | [`CopyError`] | [`crate::copyup`] | `tmpcopyup` and volume copies |
//! | [`SeccompError`] | [`crate::seccomp`] | compiling, loading and handing over seccomp filters |

use std::io;

pub use crate::channel::{ChildError, ProtocolError};
pub use crate::config::ConfigError;
pub use crate::container::ContainerError;
pub use crate::copyup::CopyError;
pub use crate::exec::ExecError;
pub use crate::hooks::HookError;
pub use crate::idmap::IdmapError;
pub use crate::init::InitError;
pub use crate::process::ProcessError;
pub use crate::seccomp::SeccompError;
pub use crate::state::StateError;

/// A system call or file operation that failed while doing `what`; keeps the OS error.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct SysError {
    /// What was being done ("creating the cgroup namespace").
    pub what: String,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

impl SysError {
    /// The calling thread's errno, failing while doing `what`.
    pub fn last(what: impl Into<String>) -> SysError {
        SysError {
            what: what.into(),
            source: io::Error::last_os_error(),
        }
    }

    /// The OS errno.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// Errors of the runtime: every message names the thing that failed and, where it helps, the fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed.
    #[error(transparent)]
    Sys(#[from] SysError),
    /// The bundle's `config.json` is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Container ids and state on disk; an operation the container's state does not allow.
    #[error(transparent)]
    State(#[from] StateError),
    /// A step of the container lifecycle.
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// The stage protocol between the runtime and the process it started.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// An error the container's init (or exec process) reported over the stage channel.
    #[error(transparent)]
    Child(#[from] ChildError),
    /// The init's own checks.
    #[error(transparent)]
    Init(#[from] InitError),
    /// Process attributes, the program lookup, `execve`.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The `exec` command.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// An OCI hook.
    #[error(transparent)]
    Hook(#[from] HookError),
    /// Idmapped mounts.
    #[error(transparent)]
    Idmap(#[from] IdmapError),
    /// Copies of rootfs directories.
    #[error(transparent)]
    Copy(#[from] CopyError),
    /// Seccomp.
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    // The rootfs module's own enum joins here: `Rootfs(#[from] crate::rootfs::RootfsError)`.
    /// Transitional: a plain message, used only by `rootfs.rs` and `cli.rs` (and the
    /// [`bail!`](crate::bail) macro they call) until they have enums of their own. No other
    /// module may use it.
    #[error("{0}")]
    Msg(String),
}

/// The runtime's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds "what was being done" to an `io::Result`.
pub trait Ctx<T> {
    /// Wraps the error with the context computed by `f`, as a [`SysError`].
    fn sys<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T, SysError>;

    /// [`Ctx::sys`], as the top-level [`Error`] (for `rootfs.rs` and the cgroups, which
    /// return [`Result`]).
    fn ctx<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>
    where
        Self: Sized,
    {
        self.sys(f).map_err(Error::Sys)
    }
}

impl<T> Ctx<T> for io::Result<T> {
    fn sys<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T, SysError> {
        self.map_err(|source| SysError {
            what: f().into(),
            source,
        })
    }
}

/// The errno of the first `io::Error` in `e`'s chain of sources, starting with `e` itself.
pub fn chain_errno(mut e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    loop {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if let Some(n) = io.raw_os_error() {
                return Some(n);
            }
        }
        e = e.source()?;
    }
}

impl Error {
    /// The OS errno behind this error, if a system call failed (in this process or, reported
    /// over the stage channel, in the container's init or exec process).
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Child(e) => e.errno,
            Error::Process(e) => e.errno(),
            Error::Msg(_) => None,
            e => std::error::Error::source(e).and_then(chain_errno),
        }
    }

    /// Whether the error happened finding or executing the container's program (the stage
    /// whose EPERM Docker reports as "cannot execute", 126).
    pub fn during_exec(&self) -> bool {
        match self {
            Error::Child(e) => e.exec,
            Error::Process(e) => e.is_exec(),
            _ => false,
        }
    }
}

/// Transitional, for `rootfs.rs` and `cli.rs` only: returns early with an [`Error::Msg`].
#[macro_export]
macro_rules! bail {
    ($($t:tt)*) => { return Err($crate::error::Error::Msg(format!($($t)*))) };
}
