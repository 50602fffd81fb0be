//! The system helpers every berth crate shares, each in one place:
//!
//! - [`atomic`]: write a file under a temporary name and rename it into place;
//! - [`proc`]: `/proc/PID/stat` (state, parent, start time) and whether a pid is still the
//!   process it was;
//! - [`fdpass`]: file descriptors over a unix socket with `SCM_RIGHTS`;
//! - [`rand`]: random ids and numbers from the kernel, which fail rather than return zeros;
//! - [`mountinfo`]: the octal escapes of `/proc/PID/mountinfo` paths;
//! - [`overlay`]: overlayfs mounts (escaped option strings, the new mount API for long layer
//!   lists), and whether a path is a mount point.
//!
//! This crate sits below every other berth crate and depends on none of them.
#![deny(missing_docs)]

pub mod atomic;
pub mod fdpass;
pub mod mountinfo;
pub mod overlay;
pub mod proc;
pub mod rand;
