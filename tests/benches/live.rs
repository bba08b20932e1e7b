//! Live engine: `cargo bench -p qtm-tests --bench live`.
//!
//! In this process: a real SQLite store in a temporary directory (or the database at
//! `QTM_BENCH_LIVE_DATABASE_URL`; `postgres` starts a throwaway PostgreSQL server), `QTM_BENCH_LIVE_SYMBOLS`
//! symbols (default 10, GOOG's real daily bars imported under each name) and
//! `QTM_BENCH_LIVE_INSTANCES` sma-cross instances (default 100, fast 10 / slow 30, spread over
//! the symbols), all enabled through the live engine as the server does it.
//!
//! 1. Latency: ticks are ingested at `QTM_BENCH_LIVE_RATE` per second (default 10,000, in
//!    batches every millisecond) for `QTM_BENCH_LIVE_SECS` seconds (default 5). For every tick
//!    it records the time from `ingest` to the broadcast of its `bar` event, and for every fill
//!    the time from ingesting the tick that filled it to the broadcast of the `fill` event
//!    (strategy decision on the previous tick → risk → paper fill → stored → published; the
//!    WebSocket hub takes it from that broadcast).
//! 2. Hot-swap pause under that load: `QTM_BENCH_LIVE_SWAPS` swaps (default 200) of one
//!    instance while the ticks flow.
//! 3. RSS per live instance: process RSS before and after enabling the instances.

use std::sync::Arc;
use std::time::{Duration, Instant};

use qtm_runtime::live::{LiveConfig, LiveEngine, LiveEvent};
use qtm_tests::bench::{
    TickTimes, bench_database_url, cpu_ticks, env_or, io_bytes, latencies_us, latency_row,
    live_book_at, rss_kib, sma_10_30, steal_percent,
};

fn main() {
    qtm_tests::bench::run_async(run());
}

async fn run() {
    let n_symbols = env_or("QTM_BENCH_LIVE_SYMBOLS", 10) as usize;
    let n_instances = env_or("QTM_BENCH_LIVE_INSTANCES", 100) as usize;
    let rate = env_or("QTM_BENCH_LIVE_RATE", 10_000);
    let secs = env_or("QTM_BENCH_LIVE_SECS", 5);
    let swaps = env_or("QTM_BENCH_LIVE_SWAPS", 200) as usize;

    let dir = tempfile::tempdir().unwrap();
    let url = bench_database_url("QTM_BENCH_LIVE_DATABASE_URL", dir.path());
    println!("store: {}", url.split(':').next().unwrap_or_default());
    let book = live_book_at(&url, "goog_1d.csv", n_symbols, n_instances, sma_10_30).await;
    let (store, sandbox, ids) = (book.store.clone(), book.sandbox.clone(), book.ids.clone());
    // A second version of the first strategy, to swap back and forth.
    qtm_runtime::store::strategies::add_version(&store, ids[0], &book.version.as_new(), None)
        .await
        .unwrap();

    let live = LiveEngine::start(
        store.clone(),
        sandbox.clone(),
        LiveConfig {
            snapshot_every_secs: 3600.0,
            ..LiveConfig::default()
        },
    )
    .await
    .unwrap();
    let rss0 = rss_kib();
    let t = Instant::now();
    for &id in &ids {
        live.enable(id).await.unwrap();
    }
    let enable_each = t.elapsed().as_secs_f64() * 1e6 / n_instances as f64;
    let rss1 = rss_kib();

    let mut rx = live.subscribe();
    let wchar0 = io_bytes("wchar:");
    let ticks0 = cpu_ticks();
    let sent: Arc<std::sync::Mutex<TickTimes>> = Default::default();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let collector = tokio::spawn(async move {
        let (mut bar_lat, mut fill_lat) = (Vec::new(), Vec::new());
        loop {
            let e = tokio::select! {
                r = rx.recv() => match r {
                    Ok(e) => e,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        eprintln!("collector lagged by {n} events");
                        continue;
                    }
                    Err(_) => break,
                },
                _ = &mut stop_rx => break,
            };
            let now = Instant::now();
            match &*e {
                LiveEvent::Bar { symbol, bar, .. } => bar_lat.push((symbol.clone(), bar.ts, now)),
                LiveEvent::Fill { symbol, ts, .. } => fill_lat.push((symbol.clone(), *ts, now)),
                _ => {}
            }
        }
        (bar_lat, fill_lat)
    });

    // Feed at `rate` ticks/s: every millisecond rate/1000 ticks, round robin over symbols.
    let per_ms = (rate / 1000).max(1) as usize;
    let total = (rate * secs) as usize;
    let feeder = {
        let live = live.clone();
        let book = Arc::new(book);
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut k = 0usize;
            let started = Instant::now();
            while k < total {
                tick.tick().await;
                let mut batch = Vec::with_capacity(per_ms);
                for _ in 0..per_ms {
                    let (sym, ts, p) = book.tick(k);
                    batch.push((
                        book.symbols[sym].clone(),
                        qtm_runtime::model::Bar {
                            ts,
                            open: p,
                            high: p * 1.001,
                            low: p * 0.999,
                            close: p,
                            volume: 1000.0,
                        },
                    ));
                    k += 1;
                }
                let now = Instant::now();
                {
                    let mut m = sent.lock().unwrap();
                    for (s, b) in &batch {
                        m.insert((s.clone(), b.ts), now);
                    }
                }
                live.ingest(batch).unwrap();
            }
            started.elapsed()
        })
    };

    // Swaps of one instance while the ticks flow.
    let mut pauses = Vec::new();
    let swap_every = Duration::from_secs_f64(secs as f64 * 0.8 / swaps.max(1) as f64);
    for i in 0..swaps {
        tokio::time::sleep(swap_every).await;
        let v = if i % 2 == 0 { 2 } else { 1 };
        match live.swap(ids[0], Some(v), None).await {
            Ok(o) => pauses.push(o.pause_us),
            Err(e) => eprintln!("swap {i} failed: {e}"),
        }
    }
    let fed_in = feeder.await.unwrap();
    live.flush().await.unwrap();
    let written = io_bytes("wchar:").saturating_sub(wchar0);
    let steal = steal_percent(ticks0, cpu_ticks());
    let status = live.status().await.unwrap();
    let _ = stop_tx.send(());
    live.shutdown().await;
    let (bar_events, fill_events) = collector.await.unwrap();

    let sent = sent.lock().unwrap();
    let bars = latencies_us(&sent, &bar_events);
    let fills = latencies_us(&sent, &fill_events);
    pauses.sort_by(f64::total_cmp);
    let handled: u64 = status.iter().map(|i| i.bars).sum();

    println!(
        "live: {n_instances} sma-cross instances on {n_symbols} symbols, {rate} ticks/s for {secs} s"
    );
    println!(
        "fed {total} ticks in {:.2} s ({:.0} ticks/s); instance-bars handled {handled}",
        fed_in.as_secs_f64(),
        total as f64 / fed_in.as_secs_f64()
    );
    // A shared VM's neighbours show in the tail: a run with much steal is not comparable.
    println!("CPU time stolen by the hypervisor while feeding: {steal:.1} %");
    println!("| path | events | p50 µs | p99 µs | max µs |");
    println!("|---|---:|---:|---:|---:|");
    for (name, v) in [
        ("tick ingested → its bar event published", &bars),
        (
            "tick ingested → fill event published (stored first)",
            &fills,
        ),
        ("hot-swap pause under load", &pauses),
    ] {
        println!("{}", latency_row(name, v));
    }
    // Noise-free where latency is not: what the store writes (WAL frames, checkpoints, all
    // of them whole pages) for the flow.
    println!(
        "store writes while feeding: {:.1} MiB, {:.1} KiB per fill, {:.0} B per tick",
        written as f64 / 1048576.0,
        written as f64 / 1024.0 / fills.len().max(1) as f64,
        written as f64 / total.max(1) as f64
    );
    println!(
        "RSS: {:.1} MiB before enabling, {:.1} MiB after {n_instances} instances: {:.1} KiB each; enable {:.0} µs each",
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        (rss1.saturating_sub(rss0)) as f64 / n_instances as f64,
        enable_each
    );
}
