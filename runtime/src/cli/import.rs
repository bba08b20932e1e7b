//! `qtm import sql`: strategies from the rows of a SQLite or PostgreSQL database
//! (`docs/import.md`).

use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};

use super::out::outln;
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::store::Store;
use qtm_import::{FieldMap, ImportOptions, ImportReport};

/// Import commands.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import strategies from the rows of one SELECT on a SQLite file or a PostgreSQL
    /// database: all or nothing (unless --partial); importing the same rows again changes
    /// nothing, and a changed row becomes a new version of its strategy.
    Sql(SqlArgs),
}

/// `qtm import sql`.
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The source: sqlite://path/to/file.db or postgres://user:password@host/database
    /// (opened read-only).
    #[arg(long)]
    url: String,
    /// One SELECT. Columns: name (required); rules, template (+ params) or wasm; symbols;
    /// key (row identity, default name); description.
    #[arg(long)]
    query: String,
    /// The destination database (the server's).
    #[arg(long, env = "QTM_DATABASE_URL", default_value = "sqlite://qtm.db")]
    database_url: String,
    /// Read a field from another column: --map name=title --map rules=body.
    #[arg(long = "map", value_name = "FIELD=COLUMN")]
    map: Vec<String>,
    /// Import the good rows even when others are rejected.
    #[arg(long)]
    partial: bool,
    /// Check every row and report what would happen; store nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Run an import command.
pub fn run(cmd: ImportCommand) -> anyhow::Result<()> {
    let ImportCommand::Sql(args) = cmd;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(sql(&args))?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        print_report(&report)?;
    }
    if report.rejected_count > 0 && !args.partial {
        bail!(
            "{} of {} rows rejected; nothing was imported (fix them, or pass --partial to import the others)",
            report.rejected_count,
            report.rows
        );
    }
    Ok(())
}

async fn sql(args: &SqlArgs) -> anyhow::Result<ImportReport> {
    let mut opts = ImportOptions::new(&args.url, &args.query);
    opts.map = FieldMap::parse(&args.map)?;
    opts.partial = args.partial;
    opts.dry_run = args.dry_run;
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::default())?);
    let store = Store::open(&args.database_url).await?;
    let report = qtm_import::import(&store, &sandbox, &opts).await;
    store.close().await;
    Ok(report?)
}

fn print_report(r: &ImportReport) -> anyhow::Result<()> {
    let what = if r.dry_run {
        "would import"
    } else if r.committed {
        "imported"
    } else {
        "did not import"
    };
    outln!(
        "{} rows from {}: {what} {} ({} new, {} new versions), {} unchanged, {} rejected ({:.0} rows/s)",
        r.rows,
        r.source,
        r.imported,
        r.created,
        r.updated,
        r.unchanged,
        r.rejected_count,
        r.rows_per_sec
    )?;
    for s in &r.strategies {
        let id = s.id.map_or_else(|| "new".to_string(), |i| i.to_string());
        outln!("  {:<9} {id:>6}  {}  (row {})", s.outcome, s.name, s.row)?;
    }
    for x in &r.rejected {
        outln!("  rejected  row {}: {}", x.row, x.error)?;
    }
    if (r.rejected.len() as u64) < r.rejected_count {
        outln!(
            "  … and {} more rejected rows",
            r.rejected_count - r.rejected.len() as u64
        )?;
    }
    Ok(())
}
