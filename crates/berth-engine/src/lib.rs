//! berth's containers: the OCI spec from an image and `berth run`'s flags,
//! overlay root filesystems, the per-container monitor, records and logs.

pub mod options;
pub mod seccomp;
pub mod spec;
pub mod user;

pub use options::RunOptions;
