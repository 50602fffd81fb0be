//! Pulling an image: manifest, platform selection, config, and the layers,
//! each streamed once from the registry through digest check, decompression
//! and unpacking.

use crate::store::{Image, Store};

/// How pull progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Progress {
    /// Bars on a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// One line per event.
    Plain,
    /// Nothing.
    Quiet,
}

#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// `os/arch[/variant]`; the host's platform when `None`.
    pub platform: Option<String>,
    /// Print only the pulled reference (like `docker pull -q`).
    pub quiet: bool,
    pub progress: Progress,
    /// Registries (host[:port]) to reach over plain HTTP, on top of the
    /// configured ones and loopback.
    pub insecure: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("not implemented yet")]
    Unimplemented,
}

/// Blocking: runs its own tokio runtime and shuts it down (all threads joined)
/// before returning, so callers may fork afterwards.
pub fn pull_blocking(
    _store: &Store,
    _reference: &str,
    _opts: &PullOptions,
) -> Result<Image, PullError> {
    Err(PullError::Unimplemented)
}
