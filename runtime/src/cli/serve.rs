//! `qtm serve`: the server, with an embedded SQLite database by default.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::api::{ServerConfig, server};

/// Run the REST/WebSocket server.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [env: QTM_LISTEN] [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Database URL: sqlite://path (embedded) or postgres://user:password@host/database
    /// (PostgreSQL) [env: QTM_DATABASE_URL] [default: sqlite://qtm.db].
    #[arg(long)]
    database_url: Option<String>,
    /// TOML config file (keys as in `ServerConfig`) [env: QTM_CONFIG].
    #[arg(long, env = "QTM_CONFIG")]
    config: Option<PathBuf>,
    /// Directory of CSV market data backtests may name [env: QTM_DATA_DIR].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Seconds a backtest job may run before it fails as timed out [env:
    /// QTM_BACKTEST_TIMEOUT_SECS] [default: 600; 0 = the default].
    #[arg(long, value_name = "SECS")]
    backtest_timeout_secs: Option<u64>,
}

/// Load settings (file < env < flags) and serve until Ctrl-C or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = ServerConfig::load(args.config.as_deref())?;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(u) = args.database_url {
        config.database_url = u;
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(t) = args.backtest_timeout_secs {
        config.backtest_timeout_secs = t;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let served = runtime.block_on(async move {
        server::serve_until(config, shutdown_signal())
            .await
            .map_err(anyhow::Error::from)
    });
    // Dropping the runtime would wait for every blocking task (a backtest can run for
    // minutes); what matters is stored by now.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    served
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
