//! berth's containers: the OCI spec from an image and `berth run`'s flags,
//! overlay root filesystems, the per-container monitor, records and logs.
//!
//! On disk, under `<root>/containers/<id>/`: `config.json` (the record),
//! `bundle/config.json` + `bundle/rootfs` (the overlay mountpoint), `upper/`,
//! `work/`, `hosts`, `hostname`, `resolv.conf`, `ctr.log` (JSON lines),
//! `attach.sock` (the monitor); the directory itself is flock'ed as the container's lock.
//! Runtime state lives in `<root>/runtime`,
//! volumes in `<root>/volumes/<name>/_data`, networks in `<root>/networks/` (berth-net's store),
//! and the network namespaces of running containers, bind-mounted, in `<root>/netns/<id>`
//! (`/run/berth/netns/<id>` for the default root): see [`network`].

pub mod attach;
pub mod engine;
pub mod init;
pub mod monitor;
pub mod network;
pub mod options;
pub mod overlay;
pub mod record;
pub mod runtime;
pub mod seccomp;
pub mod spec;
pub mod user;
pub mod volume;

pub use engine::{Engine, EngineError};
pub use options::RunOptions;
