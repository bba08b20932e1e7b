//! Live engine at scale: `cargo bench -p qtm-tests --bench live_scale`.
//!
//! In this process, as the server runs it: a real SQLite store in a temporary directory with
//! real minute bars (`QTM_BENCH_SCALE_FILE` in `shared/data`, default `bt_index_1m_2006.csv`,
//! the densest real minute file) imported under `QTM_BENCH_SCALE_SYMBOLS` names (default 10),
//! `QTM_BENCH_SCALE_INSTANCES` sma-cross instances (default 10,000, spread round robin over
//! the symbols) enabled through `LiveEngine::enable`, and the replay feed playing the minute
//! bars at `QTM_BENCH_SCALE_SPEED`× (default 100) for `QTM_BENCH_SCALE_SECS` seconds
//! (default 30).
//!
//! It reports RSS per instance, the time an enable takes, instance-bars handled against the
//! bars the replay scheduled, how late each bar's `bar` event was published against its
//! replay schedule (stored first, as always), and the process CPU time over the window.

use std::time::{Duration, Instant};

use qtm_runtime::live::{LiveConfig, LiveEngine, LiveEvent, ReplaySettings};
use qtm_tests::bench::{env_or, live_book, pct, status_kib};
use serde_json::json;

/// User plus system CPU time of this process, seconds.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the state letter.
    f.get(10)
        .zip(f.get(11))
        .map_or(0.0, |(u, s)| (u + s) as f64 / 100.0)
}

fn main() {
    qtm_tests::bench::run_async(run());
}

async fn run() {
    let n_symbols = env_or("QTM_BENCH_SCALE_SYMBOLS", 10) as usize;
    let n_instances = env_or("QTM_BENCH_SCALE_INSTANCES", 10_000) as usize;
    let speed = env_or("QTM_BENCH_SCALE_SPEED", 100) as f64;
    let secs = env_or("QTM_BENCH_SCALE_SECS", 30);
    let file = std::env::var("QTM_BENCH_SCALE_FILE").unwrap_or("bt_index_1m_2006.csv".into());

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("qtm.db");
    // Parameters vary so the instances do not all trade on the same bar.
    let book = live_book(&db, &file, n_symbols, n_instances, |i| {
        let fast = 3 + (i % 7) as i64;
        json!({"fast": fast, "slow": fast + 10 + (i % 11) as i64, "mode": "flip",
               "sizing": "fixed", "quantity": 1})
    })
    .await;
    let (store, sandbox, ids) = (book.store, book.sandbox, book.ids);
    let stored_in = book.stored_in;

    let live = LiveEngine::start(store.clone(), sandbox.clone(), LiveConfig::default())
        .await
        .unwrap();
    let rss0 = status_kib("VmRSS:");
    let t = Instant::now();
    for &id in &ids {
        live.enable(id).await.unwrap();
    }
    let enable_each = t.elapsed().as_secs_f64() * 1e6 / n_instances as f64;
    live.flush().await.unwrap();
    let rss1 = status_kib("VmRSS:");

    // When each bar is due: the replay starts every symbol at its first bar.
    let first_ts = qtm_runtime::store::live::history_after(&store, "S0", None)
        .await
        .unwrap()[0]
        .ts;
    let mut rx = live.subscribe();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let collector = tokio::spawn(async move {
        let (mut late, mut fills, mut lagged) = (Vec::new(), Vec::new(), 0u64);
        loop {
            let e = tokio::select! {
                r = rx.recv() => match r {
                    Ok(e) => e,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        lagged += n;
                        continue;
                    }
                    Err(_) => break,
                },
                _ = &mut stop_rx => break,
            };
            let at = started.elapsed();
            let due = |ts: i64| Duration::from_secs_f64((ts - first_ts) as f64 / speed);
            match &*e {
                LiveEvent::Bar { bar, .. } => {
                    late.push(at.saturating_sub(due(bar.ts)).as_secs_f64() * 1e3)
                }
                // A fill happens on the bar after the decision, at that bar's time: from the
                // bar being due to its fill stored and published.
                LiveEvent::Fill { ts, .. } => {
                    fills.push(at.saturating_sub(due(*ts)).as_secs_f64() * 1e3)
                }
                _ => {}
            }
        }
        (late, fills, lagged)
    });
    let cpu0 = cpu_secs();
    live.start_replay(&ReplaySettings {
        symbols: Vec::new(),
        speed,
        looped: false,
        // The recorded gaps as they are: the schedule above is the bars' times over `speed`.
        max_pause_secs: None,
        ..ReplaySettings::default()
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    live.stop_feed("replay-feed");
    let window = started.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    live.flush().await.unwrap();
    let status = live.status().await.unwrap();
    let _ = stop_tx.send(());
    let (mut late, mut fills, lagged) = collector.await.unwrap();
    live.shutdown().await;
    late.sort_by(f64::total_cmp);
    // The replay starts after it has read the history, so every bar is late by that start-up
    // time; what is left after it is how far the engine fell behind the schedule.
    let startup = late.first().copied().unwrap_or(0.0);
    for l in late.iter_mut().chain(fills.iter_mut()) {
        *l -= startup;
    }
    fills.sort_by(f64::total_cmp);

    let handled: u64 = status.iter().map(|i| i.bars).sum();
    let running = status.iter().filter(|i| i.state == "running").count();
    let orders: u64 = status.iter().map(|i| i.orders).sum();
    let bars_per_symbol = late.len() as f64 / n_symbols as f64;
    let scheduled = (secs as f64 * speed / 60.0).floor();
    println!(
        "live scale: {n_instances} sma-cross instances on {n_symbols} symbols ({file}), replay {speed}× for {secs} s"
    );
    println!(
        "stored {n_instances} strategies in {:.1} s; database {:.0} MiB",
        stored_in.as_secs_f64(),
        std::fs::metadata(&db).map_or(0, |m| m.len()) as f64 / (1 << 20) as f64
    );
    println!(
        "RSS {:.0} MiB before enabling, {:.0} MiB after: {:.1} KiB per instance; enable {:.0} µs each; {running} running",
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        rss1.saturating_sub(rss0) as f64 / n_instances as f64,
        enable_each
    );
    println!(
        "bars published: {} ({bars_per_symbol:.1} per symbol; the replay scheduled ≈ {scheduled} per symbol); instance-bars handled {handled} ({:.0}/s), orders {orders}",
        late.len(),
        handled as f64 / window
    );
    println!(
        "bar events behind the replay schedule (after the {startup:.0} ms start-up): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; collector lagged by {lagged} events",
        pct(&late, 0.5),
        pct(&late, 0.99),
        late.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "bar due → its fill stored and published ({} fills): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        fills.len(),
        pct(&fills, 0.5),
        pct(&fills, 0.99),
        fills.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "CPU {cpu:.1} s in a {window:.1} s window: {:.0} % of one core (2 cores here); peak RSS {:.0} MiB",
        cpu / window * 100.0,
        status_kib("VmHWM:") as f64 / 1024.0
    );
}
