//! The runtime's error type: a message for people, or a failed system call with what was being done.

use std::io;

/// Errors of the runtime: every message names the thing that failed and, where it helps, the fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A plain message (bad config, wrong container state, ...).
    #[error("{0}")]
    Msg(String),
    /// A system call or file operation failed while doing `ctx`.
    #[error("{ctx}: {source}")]
    Sys {
        /// What was being done.
        ctx: String,
        /// The OS error.
        source: io::Error,
    },
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
}

/// The runtime's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Adds "what was being done" to an `io::Result`.
pub trait Ctx<T> {
    /// Wraps the error with the context computed by `f`.
    fn ctx<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T> Ctx<T> for io::Result<T> {
    fn ctx<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|source| Error::Sys {
            ctx: f().into(),
            source,
        })
    }
}

impl Error {
    /// The OS errno, if this is a system error.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Sys { source, .. } => source.raw_os_error(),
            Error::Msg(_) => None,
            Error::Rootfs(e) => e.errno(),
        }
    }
}

/// Returns early with an `Error::Msg` built from a format string.
#[macro_export]
macro_rules! bail {
    ($($t:tt)*) => { return Err($crate::error::Error::Msg(format!($($t)*))) };
}
