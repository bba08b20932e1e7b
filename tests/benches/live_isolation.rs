//! Isolation between live instances: `cargo bench -p qtm-tests --bench live_isolation`.
//!
//! 1. **Bar rate next to a hostile neighbour.** In this process, as the server runs it: a
//!    real SQLite store in a temporary directory with GOOG's daily bars imported as `S0`, a
//!    healthy sma-cross instance (10/30, flip, one share) on `S0`, alone and then next to one
//!    instance of each class of the hostile test guest on the same symbol. Each case starts a
//!    live engine with the default settings (CPU share cap 20 % over 5 s; the healthy
//!    instance gets a cap of its own of 100 %, since this feed keeps the engine busy all the
//!    time and it would be over 20 % alone), enables both, and feeds bars flat out for
//!    `QTM_BENCH_ISO_SECS` seconds (default 20): three batches of 64 bars, then a status
//!    round trip through the engine's queue, so at most that much waits. It reports the
//!    healthy instance's bars per second over the whole case and after its neighbour was
//!    stopped (by its cap or a trap), the ratio of each to the mean of the two "alone" runs
//!    (first and last), and the neighbour's fate. A second sma-cross is the reference for
//!    what any neighbour costs on one thread. `QTM_BENCH_ISO_CASES` (comma-separated attack
//!    names, `alone`, `sma-cross`) runs a subset.
//! 2. **GET latency under load.** A real server on an ephemeral port with
//!    `QTM_BENCH_ISO_BURNERS` (default 3) instances burning just under their fuel on every
//!    bar, with no CPU cap, plus a healthy one, and 10,000 bars queued for the engine (half a
//!    minute of work): `QTM_BENCH_ISO_GETS` (default 200) sequential `GET
//!    /api/strategy-instances`, then as many `GET /health`, each timed by the client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use qtm_runtime::live::{LiveConfig, LiveEngine};
use qtm_runtime::model::Bar;
use qtm_runtime::store;
use qtm_tests::bench::{env_or, live_book, pct, sma_10_30};
use serde_json::{Value, json};

/// Loop iterations of `burn` just under the 10,000,000 fuel of a call (about 10.3 each).
const BURN_UNDER_FUEL: i64 = 950_000;

/// Bars per batch, and batches per status round trip.
const BATCH: usize = 64;
const BATCHES: usize = 3;

fn main() {
    qtm_tests::bench::run_async(run());
}

/// A neighbour: the hostile guest's attack (with its `iterations`) or a second sma-cross.
#[derive(Clone)]
struct Case {
    name: String,
    neighbour: Option<(&'static str, Value)>,
}

fn cases() -> Vec<Case> {
    let hostile = |attack: &str, iterations: i64| Case {
        name: attack.to_string(),
        neighbour: Some((
            qtm_tests::guests::HOSTILE,
            json!({"attack": attack, "iterations": iterations}),
        )),
    };
    let all = vec![
        Case {
            name: "alone".into(),
            neighbour: None,
        },
        Case {
            name: "sma-cross".into(),
            neighbour: Some((qtm_tests::guests::SMA_CROSS, sma_10_30(0))),
        },
        hostile("burn", BURN_UNDER_FUEL),
        hostile("log-spam", 0),
        hostile("order-spam", 0),
        hostile("resting-flood", 0),
        hostile("huge-strings", 0),
        hostile("peek", 0),
        hostile("infinite-loop", 0),
        hostile("host-call-loop", 0),
        Case {
            name: "alone".into(),
            neighbour: None,
        },
    ];
    match std::env::var("QTM_BENCH_ISO_CASES") {
        Ok(list) => {
            let wanted: Vec<&str> = list.split(',').map(str::trim).collect();
            all.into_iter()
                .filter(|c| wanted.contains(&c.name.as_str()))
                .collect()
        }
        Err(_) => all,
    }
}

/// What one case measured.
struct Outcome {
    name: String,
    /// Healthy bars per second over the whole case.
    rate: f64,
    /// Healthy bars per second after the neighbour stopped (None: it never did).
    rate_after: Option<f64>,
    /// When the neighbour stopped, from the first bar.
    stopped_after: Option<Duration>,
    /// The neighbour at the end: state and reason, or its CPU share while it ran.
    fate: String,
}

async fn run() {
    let secs = env_or("QTM_BENCH_ISO_SECS", 20);
    let dir = tempfile::tempdir().unwrap();
    let book = live_book(&dir.path().join("qtm.db"), "goog_1d.csv", 1, 1, sma_10_30).await;
    let (store, sandbox) = (book.store.clone(), book.sandbox.clone());
    let healthy = book.ids[0];
    let healthy_instance = store::strategies::instance(&store, healthy)
        .await
        .unwrap()
        .id;
    let book = Arc::new(book);
    println!(
        "live_isolation: {} (nproc {}), load average {}",
        model_name(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );

    let mut outcomes = Vec::new();
    let mut next_tick = 0usize;
    for (k, case) in cases().into_iter().enumerate() {
        let neighbour = match &case.neighbour {
            Some((module, params)) => Some(
                qtm_tests::store_strategy(
                    &store,
                    &sandbox,
                    module,
                    &format!("{}-{k}", case.name),
                    params,
                    "S0",
                )
                .await,
            ),
            None => None,
        };
        let mut config = LiveConfig {
            snapshot_every_secs: 3600.0,
            ..LiveConfig::default()
        };
        config.cpu_share_caps.insert(healthy_instance, 1.0);
        let live = LiveEngine::start(store.clone(), sandbox.clone(), config)
            .await
            .unwrap();
        live.enable(healthy).await.unwrap();
        if let Some(id) = neighbour {
            live.enable(id).await.unwrap();
        }
        let o = measure(
            &live,
            &book,
            &mut next_tick,
            healthy,
            neighbour,
            &case.name,
            Duration::from_secs(secs),
        )
        .await;
        live.disable(healthy, "case done").await.unwrap();
        if let Some(id) = neighbour {
            let _ = live.disable(id, "case done").await;
        }
        live.shutdown().await;
        eprintln!(
            "{}: {:.0} bars/s, after the stop {:?}, stopped after {:?}: {}",
            o.name, o.rate, o.rate_after, o.stopped_after, o.fate
        );
        outcomes.push(o);
    }

    let alone: Vec<f64> = outcomes
        .iter()
        .filter(|o| o.name == "alone")
        .map(|o| o.rate)
        .collect();
    let base = alone.iter().sum::<f64>() / alone.len().max(1) as f64;
    println!(
        "healthy sma-cross, bars/s flat out for {secs} s per case; alone: {}",
        alone
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(" and ")
    );
    println!(
        "| neighbour | bars/s | × alone | neighbour stopped after | bars/s after | × alone | neighbour at the end |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
    for o in &outcomes {
        let after = o.rate_after.map_or("–".to_string(), |r| format!("{r:.0}"));
        let after_ratio = o
            .rate_after
            .map_or("–".to_string(), |r| format!("{:.2}", r / base));
        let stopped = o
            .stopped_after
            .map_or("–".to_string(), |d| format!("{:.2} s", d.as_secs_f64()));
        println!(
            "| {} | {:.0} | {:.2} | {stopped} | {after} | {after_ratio} | {} |",
            o.name,
            o.rate,
            o.rate / base,
            o.fate
        );
    }
    println!("load average at the end: {}", loadavg());

    gets_under_load().await;
}

/// Feed flat out for `secs` and follow the healthy instance's bar count and the neighbour's
/// state through the status round trips.
async fn measure(
    live: &LiveEngine,
    book: &qtm_tests::bench::LiveBook,
    next_tick: &mut usize,
    healthy: i64,
    neighbour: Option<i64>,
    name: &str,
    secs: Duration,
) -> Outcome {
    let started = Instant::now();
    let mut first = None;
    let mut stopped: Option<(Duration, u64)> = None;
    let mut last_bars = 0;
    let mut fate = "–".to_string();
    while started.elapsed() < secs {
        for _ in 0..BATCHES {
            let mut batch = Vec::with_capacity(BATCH);
            for _ in 0..BATCH {
                let (_, ts, p) = book.tick(*next_tick);
                *next_tick += 1;
                batch.push((
                    "S0".to_string(),
                    Bar {
                        ts,
                        open: p,
                        high: p * 1.001,
                        low: p * 0.999,
                        close: p,
                        volume: 1000.0,
                    },
                ));
            }
            live.ingest(batch).unwrap();
        }
        let status = live.status().await.unwrap();
        let now = started.elapsed();
        let h = status.iter().find(|i| i.strategy_id == healthy).unwrap();
        if first.is_none() {
            first = Some((now, h.bars));
        }
        last_bars = h.bars;
        if let Some(n) = neighbour.and_then(|id| status.iter().find(|i| i.strategy_id == id)) {
            fate = match &n.reason {
                Some(why) => format!("{}: {}", n.state, cut(why, 90)),
                None => format!("{} at {:.0} % cpu share", n.state, n.cpu_share_pct),
            };
            if n.state != "running" && stopped.is_none() {
                stopped = Some((now, h.bars));
            }
        }
    }
    let end = started.elapsed();
    let (t0, b0) = first.unwrap_or((Duration::ZERO, 0));
    let rate = (last_bars - b0) as f64 / (end - t0).as_secs_f64();
    // A stop in the last second leaves too little to measure a rate on.
    let rate_after = stopped
        .filter(|(at, _)| end.saturating_sub(*at) > Duration::from_secs(1))
        .map(|(at, b)| (last_bars - b) as f64 / (end - at).as_secs_f64());
    Outcome {
        name: name.to_string(),
        rate,
        rate_after,
        stopped_after: stopped.map(|(at, _)| at.saturating_sub(t0)),
        fate,
    }
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// Part 2: a server with busy instances and a queue of bars, and the client's view of
/// `GET /api/strategy-instances` and `GET /health`.
async fn gets_under_load() {
    use qtm_tests::server::TestServer;
    use reqwest::Method;

    let burners = env_or("QTM_BENCH_ISO_BURNERS", 3) as usize;
    let gets = env_or("QTM_BENCH_ISO_GETS", 200) as usize;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("qtm.db");
    {
        let book = live_book(&db, "goog_1d.csv", 1, 1, sma_10_30).await;
        store::modules::seed(&book.store).await.unwrap();
        store::modules::set_config(
            &book.store,
            "live-engine",
            &json!({"snapshot_every_secs": 30, "initial_cash": 100000.0, "cpu_share_cap_pct": 100}),
            None,
        )
        .await
        .unwrap();
        let mut ids = book.ids.clone();
        for i in 0..burners {
            let params = json!({"attack": "burn", "iterations": BURN_UNDER_FUEL});
            let id = qtm_tests::store_strategy(
                &book.store,
                &book.sandbox,
                qtm_tests::guests::HOSTILE,
                &format!("burner-{i}"),
                &params,
                "S0",
            )
            .await;
            ids.push(id);
        }
        // Enabled in the store: the server resumes them as it starts.
        for id in ids {
            store::strategies::set_status(&book.store, id, "enabled", None)
                .await
                .unwrap();
        }
        book.store.close().await;
    }
    let s = TestServer::start_on(&db, |_| {}).await;
    let token = s.admin_token().await;
    let bars: Vec<(String, Bar)> = (0..10_000)
        .map(|i| {
            let p = 100.0 + 10.0 * ((i as f64) / 17.0).sin();
            let bar = Bar {
                ts: 1_800_000_000 + i,
                open: p,
                high: p + 1.0,
                low: p - 1.0,
                close: p,
                volume: 1000.0,
            };
            ("S0".to_string(), bar)
        })
        .collect();
    s.server.state.live.ingest(bars).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut rows = Vec::new();
    for path in ["/api/strategy-instances", "/health"] {
        let mut took = Vec::with_capacity(gets);
        for _ in 0..gets {
            let t = Instant::now();
            let (st, _) = s.call(Method::GET, path, Some(&token), None).await;
            took.push(t.elapsed().as_secs_f64() * 1e3);
            assert!(st.is_success(), "{path}: {st}");
        }
        took.sort_by(f64::total_cmp);
        rows.push(format!(
            "| GET {path} | {gets} | {:.2} | {:.2} | {:.2} |",
            pct(&took, 0.5),
            pct(&took, 0.99),
            took.last().copied().unwrap_or(f64::NAN)
        ));
    }
    let handled = s.server.state.live.instances();
    let seen: Vec<u64> = handled.iter().map(|i| i.bars).collect();
    let t = Instant::now();
    s.stop().await;
    println!(
        "GETs while {burners} instances burn just under their fuel on every bar and 10,000 bars wait (bars seen per instance at the end: {seen:?}):"
    );
    println!("| request | n | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    for r in rows {
        println!("{r}");
    }
    println!(
        "server stopped in {:.0} ms with the rest of the queue waiting",
        t.elapsed().as_secs_f64() * 1e3
    );
}

/// The CPU's model name (`lscpu`'s "Model name").
fn model_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':').map(|(_, v)| v.trim().to_string()))
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
