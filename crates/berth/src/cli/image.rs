//! Image commands: pull, images, rmi, tag, image inspect/prune/mount/unmount, login, logout.

use super::Globals;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Pull an image from a registry
    Pull {
        /// Image reference, e.g. busybox or 127.0.0.1:5000/busybox:latest
        reference: String,
    },
}

pub fn run(cmd: ImageCommand, _g: &Globals) -> anyhow::Result<i32> {
    match cmd {
        ImageCommand::Pull { reference } => anyhow::bail!("pull {reference}: not implemented yet"),
    }
}
