//! The `qtm` command line: one binary, subcommands per area.

mod backtest;
mod data;
mod evolve;
mod import;
mod out;
mod rules;
mod serve;
mod strategy;
mod watch;

use std::io::Write as _;
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
    /// Backtest a strategy component (or a rule program) over CSV bars.
    Backtest(Box<backtest::BacktestArgs>),
    /// Breed strategy parameters or rule programs by genetic search; report the champion with
    /// the statistics of overfitting (docs/evolution.md).
    Evolve(Box<evolve::EvolveArgs>),
    /// Check rule programs (.rules; docs/rules.md).
    #[command(subcommand)]
    Rules(rules::RulesCommand),
    /// Run the REST/WebSocket server (embedded SQLite by default).
    Serve(serve::ServeArgs),
    /// Import and list market data in the server's database.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Import strategies from other databases (SQL rows of rules, templates or components).
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Print a WebSocket stream of a running server, one JSON message a line.
    Watch(watch::WatchArgs),
}

/// Parse the command line, run it, and turn errors into a message and exit code 1. Output cut
/// short by its reader (`qtm … | head`) is a success, not a panic.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // A server logs its life (start, shutdown, errors); one-shot commands only warnings.
    init_tracing(match cli.command {
        Command::Serve(_) => "warn,qtm_runtime=info",
        // Thousands of candidates stop on their own (out of money, a trap): the ledger
        // records why; a warning line each would bury the progress bar.
        Command::Evolve(_) => "warn,qtm_engine=error,qtm_sandbox=error",
        _ => "warn",
    });
    let result = match cli.command {
        Command::Strategy(cmd) => strategy::run(cmd),
        Command::Backtest(args) => backtest::run(*args),
        Command::Evolve(args) => evolve::run(*args),
        Command::Rules(cmd) => rules::run(cmd),
        Command::Serve(args) => serve::run(args),
        Command::Data(cmd) => data::run(cmd),
        Command::Import(cmd) => import::run(cmd),
        Command::Watch(args) => watch::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if out::is_closed_stdout(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // With stderr closed too, the exit code alone has to tell; `eprintln!` would panic.
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("QTM_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    use std::io::IsTerminal;
    // Colour only for a terminal: logs redirected to a file or a pipe stay plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if std::env::var("QTM_LOG_FORMAT").is_ok_and(|f| f == "json") {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}
