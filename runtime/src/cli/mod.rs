//! The `qtm` command line: one binary, subcommands per area.

mod backtest;
mod strategy;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// qtm: sandboxed algorithmic trading. Strategies run as fuel-limited WebAssembly components.
#[derive(Debug, Parser)]
#[command(
    name = "qtm",
    version,
    about = "qtm: sandboxed algorithmic trading; strategies run as fuel-limited WebAssembly components"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write, build and inspect strategy components.
    #[command(subcommand)]
    Strategy(strategy::StrategyCommand),
    /// Backtest a strategy component over CSV bars.
    Backtest(Box<backtest::BacktestArgs>),
}

/// Parse the command line, run it, and turn errors into a message and exit code 1.
pub fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Strategy(cmd) => strategy::run(cmd),
        Command::Backtest(args) => backtest::run(*args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("QTM_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("QTM_LOG_FORMAT").is_ok_and(|f| f == "json") {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}
