//! Import rate of SQL import: `QTM_IMPORT_ROWS` (default 10,000) rule rows, each a distinct
//! program (an SMA cross with its own default periods), from a SQLite file and from a
//! PostgreSQL server (a throwaway one, as the tests start; skipped when none can start), into a
//! fresh SQLite store. Prints rows/s of the whole import (read, check, compile, encode, spool,
//! one write transaction), of a re-import (all unchanged), the stored bytes per strategy and
//! the peak resident memory of each import (Linux: the peak is reset before it).
//!
//! `cargo bench -p qtm-tests --bench sql_import`

use std::sync::Arc;
use std::time::Instant;

use qtm_runtime::import as qtm_import;
use qtm_runtime::sandbox::{Sandbox, SandboxConfig};
use qtm_runtime::store::Store;
use sqlx::{ConnectOptions, Connection, Executor};

fn program(i: usize) -> String {
    let fast = 2 + i % 97;
    let slow = fast + 5 + i / 97 % 300;
    format!(
        "# row {i}\nparam fast = int({fast}, 2, 200)\nparam slow = int({slow}, 5, 500)\nlet f = sma(close, fast)\nlet s = sma(close, slow)\nentry_long = crossover(f, s)\nentry_short = crossunder(f, s)\nsize = equity_fraction(1.0)\n"
    )
}

async fn run(label: &str, url: &str, rows: usize) {
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("sqlite://{}", dir.path().join("qtm.db").display());
    let store = Store::open(&dest).await.unwrap();
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()).unwrap());
    let opts = qtm_import::ImportOptions::new(url, "SELECT name, rules, symbols FROM strategies");
    reset_peak_rss();
    let t = Instant::now();
    let r = qtm_import::import(&store, &sandbox, &opts).await.unwrap();
    let first = t.elapsed().as_secs_f64();
    let peak = peak_rss_mib();
    assert_eq!(
        (r.created as usize, r.rejected_count),
        (rows, 0),
        "{:?}",
        r.rejected
    );
    let t = Instant::now();
    let again = qtm_import::import(&store, &sandbox, &opts).await.unwrap();
    let second = t.elapsed().as_secs_f64();
    assert_eq!(again.unchanged as usize, rows);
    store.close().await;
    let db_bytes = std::fs::metadata(dir.path().join("qtm.db")).map_or(0, |m| m.len())
        + std::fs::metadata(dir.path().join("qtm.db-wal")).map_or(0, |m| m.len());
    println!(
        "{label}: {rows} rule rows imported in {first:.1} s = {:.0} rows/s (peak RSS {peak}); re-import (unchanged) {second:.1} s = {:.0} rows/s; database {:.1} MiB ({:.2} KiB a strategy)",
        rows as f64 / first,
        rows as f64 / second,
        db_bytes as f64 / 1048576.0,
        db_bytes as f64 / 1024.0 / rows as f64
    );
}

/// Start the process's peak resident set afresh (`/proc/self/clear_refs`, Linux 4.0+).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident set (`VmHWM`), or "unknown" off Linux.
fn peak_rss_mib() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or("unknown".into(), |kb| format!("{:.0} MiB", kb / 1024.0))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; any other run (`cargo test --benches`) is a smoke test.
    let bench = std::env::args().any(|a| a == "--bench");
    let rows: usize = std::env::var("QTM_IMPORT_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench { 10_000 } else { 20 });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("source.db");
    let mut c = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    c.execute("CREATE TABLE strategies (name TEXT, rules TEXT, symbols TEXT)")
        .await
        .unwrap();
    let mut tx = c.begin().await.unwrap();
    for i in 0..rows {
        sqlx::query("INSERT INTO strategies VALUES ($1, $2, 'SPY')")
            .bind(format!("sma {i}"))
            .bind(program(i))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    c.close().await.unwrap();
    run(
        "SQLite source",
        &format!("sqlite://{}", path.display()),
        rows,
    )
    .await;

    match qtm_tests::postgres::database_url() {
        Err(why) => qtm_tests::postgres::print_skip(&why),
        Ok(url) => {
            let mut c = sqlx::postgres::PgConnection::connect(&url).await.unwrap();
            c.execute("CREATE TABLE strategies (name TEXT, rules TEXT, symbols TEXT)")
                .await
                .unwrap();
            let mut tx = c.begin().await.unwrap();
            for i in 0..rows {
                sqlx::query("INSERT INTO strategies VALUES ($1, $2, 'SPY')")
                    .bind(format!("sma {i}"))
                    .bind(program(i))
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
            c.close().await.unwrap();
            run("PostgreSQL source", &url, rows).await;
        }
    }
}
