//! Container commands: run, create, start, ps, stop, rm, logs, exec, ...

use super::Globals;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum ContainerCommand {
    /// Run a command in a new container
    Run { image: String },
}

pub fn run(cmd: ContainerCommand, _g: &Globals) -> anyhow::Result<i32> {
    match cmd {
        ContainerCommand::Run { image } => anyhow::bail!("run {image}: not implemented yet"),
    }
}
