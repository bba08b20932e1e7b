//! `qtm data …`: market data in the store.

use clap::Subcommand;

/// Market data commands.
#[derive(Debug, Subcommand)]
pub enum DataCommand {}

/// Run a data command.
pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {}
}
