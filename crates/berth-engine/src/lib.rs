//! berth's containers: the OCI spec from an image and `berth run`'s flags,
//! overlay root filesystems, the per-container monitor, records and logs.
//!
//! On disk, under `<root>/containers/<id>/`: `config.json` (the record), `upper/`, `work/`,
//! `ctr.log` (JSON lines); the directory itself is flock'ed as the container's lock. What a
//! container needs only while it runs is under the run root ([`record::default_run_root`]):
//! `<runroot>/containers/<id>/` holds `bundle/config.json` + `bundle/rootfs` (the overlay
//! mountpoint), `hosts`, `hostname`, `resolv.conf` and `attach.sock` (the monitor), and the
//! runtime's state is in `<runroot>/runtime`;
//! volumes in `<root>/volumes/<name>/_data`, networks in `<root>/networks/` (berth-net's store),
//! and the network namespaces of running containers, bind-mounted, in `<root>/netns/<id>`
//! (`/run/berth/netns/<id>` for the default root): see [`network`].
//!
//! Module homes: [`record`] (the record and its typed [`record::Status`]), [`engine`] (create,
//! start, stop, kill, remove, exec, inspect), [`commands`] (the other operations of the CLI,
//! one typed call each), [`teardown`] (taking a container's running state apart, shared by
//! the engine and the [`monitor`]), [`logs`] (the log line), [`runtime`] (berth's own
//! runtime or an external one), [`process`] (the single-threaded token of functions that
//! fork, and signals).

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod attach;
pub mod caps;
pub mod commands;
pub mod engine;
pub mod init;
pub mod logs;
pub mod monitor;
pub mod network;
pub mod options;
pub mod overlay;
pub mod process;
pub mod record;
pub mod runtime;
pub mod seccomp;
pub mod spec;
pub mod teardown;
pub mod user;
pub mod volume;

pub use engine::{Engine, EngineError};
pub use options::RunOptions;
