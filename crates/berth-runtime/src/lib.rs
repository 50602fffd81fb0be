//! berth's OCI runtime: given a bundle (config.json + rootfs) it creates and runs
//! the container as the OCI runtime-spec requires, with runc's command line.

pub mod cgroups;
pub mod cli;
