//! The runtime's errors. Each module has its own enum that says what kind of thing failed
//! (a bad spec, a container in the wrong state, a failed system call, a program that cannot
//! be executed, a hook, the stage protocol, ...). The modules that carry out an operation
//! (`container`, `exec`, `init`) wrap the errors of the modules they use in their own enum;
//! [`Error`], for the command line, wraps them all, so `?` works up to it, and
//! [`Error::errno`] (or [`Errno`] on any of the operation enums) gives the OS error behind
//! any of them: engines map it to Docker's exit codes 126/127. Only the command line uses
//! this module; it uses every other one.
//!
//! | enum | module | what |
//! |---|---|---|
//! | [`SysError`] | [`crate::sys`], used by every module | a system call that failed: what was being done and its errno |
//! | [`ConfigError`] | [`crate::config`] | `config.json` unreadable, unparsable or invalid; spec values the init cannot use |
//! | [`StateError`] | [`crate::state`] | container ids, `state.json`, an operation the container's state does not allow |
//! | [`HookError`] | [`crate::hooks`] | OCI hooks |
//! | [`IdmapError`] | [`crate::idmap`] | idmapped mounts |
//! | [`CopyError`] | [`crate::copyup`] | `tmpcopyup` and volume copies |
//! | [`SeccompError`] | [`crate::seccomp`] | compiling, loading and handing over seccomp filters |
//! | [`ProcessError`] | [`crate::process`] | process attributes, the program lookup and `execve` (not found, not executable, with the errno) |
//! | [`StageError`]: [`ProtocolError`], [`ChildError`] | [`crate::channel`] | the stage protocol; an error the init or exec process reported (its errno and message) |
//! | [`InitError`](crate::init::InitError) | [`crate::init`] | the init and the exec process before `execve`: sent over the stage channel as a [`ChildError`], never returned |
//! | [`ContainerError`] | [`crate::container`] | the lifecycle operations (create, start, kill, delete, pause, ...) |
//! | [`ExecError`] | [`crate::exec`] | the `exec` command |
//! | [`RootfsError`](crate::rootfs::RootfsError) | [`crate::rootfs`] | preparing the root filesystem: the step, its path and the OS error |

use crate::sys::Errno;

pub use crate::channel::{ChildError, ProtocolError, StageError};
pub use crate::config::ConfigError;
pub use crate::container::ContainerError;
pub use crate::copyup::CopyError;
pub use crate::exec::ExecError;
pub use crate::hooks::HookError;
pub use crate::idmap::IdmapError;
pub use crate::process::ProcessError;
pub use crate::seccomp::SeccompError;
pub use crate::state::StateError;
pub use crate::sys::SysError;

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
    /// A lifecycle operation.
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// The stage protocol between the runtime and the process it started.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// An error the container's init (or exec process) reported over the stage channel.
    #[error(transparent)]
    Child(#[from] ChildError),
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
    /// The container's root filesystem.
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
}

/// The runtime's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<StageError> for Error {
    fn from(e: StageError) -> Error {
        match e {
            StageError::Protocol(e) => Error::Protocol(e),
            StageError::Child(e) => Error::Child(e),
        }
    }
}

impl Error {
    /// The OS errno behind this error, if a system call failed (in this process or, reported
    /// over the stage channel, in the container's init or exec process).
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Child(e) => e.errno,
            Error::Process(e) => e.errno(),
            Error::Container(e) => e.errno(),
            Error::Exec(e) => e.errno(),
            Error::Rootfs(e) => e.errno(),
            e => std::error::Error::source(e).and_then(crate::sys::chain_errno),
        }
    }

    /// Whether the error happened finding or executing the container's program (the stage
    /// whose EPERM Docker reports as "cannot execute", 126).
    pub fn during_exec(&self) -> bool {
        match self {
            Error::Child(e) => e.exec,
            Error::Process(e) => e.is_exec(),
            Error::Container(e) => e.during_exec(),
            Error::Exec(e) => e.during_exec(),
            _ => false,
        }
    }
}

impl Errno for Error {
    fn errno(&self) -> Option<i32> {
        Error::errno(self)
    }

    fn during_exec(&self) -> bool {
        Error::during_exec(self)
    }
}
