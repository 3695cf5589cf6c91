//! `mizzen dev`: a local control plane for demos and development.

use clap::Subcommand;

/// `mizzen dev` subcommands.
#[derive(Subcommand, Debug)]
pub enum DevCommand {
    /// Start a local control plane with fake nodes.
    Up,
}

/// Runs a `mizzen dev` subcommand.
pub fn run(_cmd: DevCommand) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
