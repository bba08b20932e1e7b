//! `qtm data …`: market data in the store.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::out::outln;
use crate::store::Store;
use crate::store::market::{self, AssetClass, ImportOptions};

/// Market data commands.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Import a bar CSV (ts,open,high,low,close,volume) into the database, all or nothing;
    /// importing the same file again changes nothing.
    Import(ImportArgs),
    /// List the assets in the database.
    List(ListArgs),
}

/// `qtm data import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The CSV file.
    csv: PathBuf,
    /// Symbol to file the bars under [default: from the file name, `goog_1d.csv` → GOOG].
    #[arg(long)]
    symbol: Option<String>,
    /// Database URL: sqlite://path or postgres://user:password@host/database.
    #[arg(long, env = "QTM_DATABASE_URL", default_value = "sqlite://qtm.db")]
    database_url: String,
    /// Display name [default: the symbol; kept on re-import].
    #[arg(long)]
    name: Option<String>,
    /// equity, fx, crypto or index [default: guessed from the symbol; kept on re-import].
    #[arg(long, value_parser = parse_class)]
    asset_class: Option<AssetClass>,
    /// Quote currency [default: USD; kept on re-import].
    #[arg(long)]
    currency: Option<String>,
}

/// `qtm data list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Database URL: sqlite://path or postgres://user:password@host/database.
    #[arg(long, env = "QTM_DATABASE_URL", default_value = "sqlite://qtm.db")]
    database_url: String,
}

fn parse_class(s: &str) -> Result<AssetClass, String> {
    s.parse()
}

/// Run a data command.
pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match cmd {
            DataCommand::Import(args) => import(args).await,
            DataCommand::List(args) => list(args).await,
        }
    })
}

async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let symbol = match args.symbol {
        Some(s) => s,
        None => {
            let s = crate::market::symbol_from_path(&args.csv);
            anyhow::ensure!(
                !s.is_empty(),
                "cannot name a symbol from {}; pass --symbol",
                args.csv.display()
            );
            s
        }
    };
    let store = Store::open(&args.database_url).await?;
    let opts = ImportOptions {
        symbol,
        name: args.name,
        asset_class: args.asset_class,
        currency: args.currency,
    };
    let result = market::import_csv(&store, &args.csv, &opts).await;
    store.close().await;
    let s = result?;
    let a = &s.asset;
    outln!(
        "imported {} rows into {} from {} in {:.2} s ({} new, {} replaced); {} now has {} bars, {} .. {}",
        s.rows,
        a.symbol,
        args.csv.display(),
        s.elapsed.as_secs_f64(),
        s.new_bars,
        s.rows - s.new_bars.min(s.rows),
        a.symbol,
        a.bars,
        a.first_ts.map(fmt_ts).unwrap_or_default(),
        a.last_ts.map(fmt_ts).unwrap_or_default(),
    )?;
    Ok(())
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let store = Store::open(&args.database_url).await?;
    let assets = market::list_assets(&store).await;
    store.close().await;
    let assets = assets?;
    if assets.is_empty() {
        outln!("no assets; import bars with `qtm data import <csv> --symbol X`")?;
        return Ok(());
    }
    outln!(
        "{:<10} {:<8} {:<5} {:>9} {:>8} {:<16} {:<16} {:>14} {:>9}",
        "symbol",
        "class",
        "ccy",
        "bars",
        "interval",
        "first",
        "last",
        "last price",
        "change %"
    )?;
    for a in assets {
        outln!(
            "{:<10} {:<8} {:<5} {:>9} {:>8} {:<16} {:<16} {:>14} {:>9}",
            a.symbol,
            a.asset_class,
            a.currency,
            a.bars,
            a.interval_s.map(fmt_interval).unwrap_or_else(|| "-".into()),
            a.first_ts.map(fmt_ts).unwrap_or_else(|| "-".into()),
            a.last_ts.map(fmt_ts).unwrap_or_else(|| "-".into()),
            a.last_price
                .map(|p| format!("{p}"))
                .unwrap_or_else(|| "-".into()),
            a.change_pct
                .map(|c| format!("{c:+.2}"))
                .unwrap_or_else(|| "-".into()),
        )?;
    }
    Ok(())
}

fn fmt_interval(s: i64) -> String {
    for (unit, len) in [("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)] {
        if s % len == 0 {
            return format!("{}{unit}", s / len);
        }
    }
    format!("{s}s")
}

use qtm_core::calendar::date_minute as fmt_ts;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(fmt_ts(1_092_873_600), "2004-08-19 00:00");
        assert_eq!(fmt_ts(1_294_045_260), "2011-01-03 09:01");
        assert_eq!(fmt_interval(86_400), "1d");
        assert_eq!(fmt_interval(90), "90s");
    }
}
