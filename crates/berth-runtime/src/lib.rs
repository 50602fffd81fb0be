//! berth's OCI runtime: given a bundle (config.json + rootfs) it creates and runs
//! the container as the OCI runtime-spec requires, with runc's command line.

pub mod cgroups;
pub mod channel;
pub mod config;
pub mod container;
pub mod copyup;
pub mod error;
pub mod exec;
pub mod hooks;
pub mod idmap;
pub mod init;
pub mod log;
pub mod process;
pub mod rootfs;
pub mod secc;
pub mod seccomp;
pub mod selfexe;
pub mod state;
pub mod sys;
pub mod terminal;
