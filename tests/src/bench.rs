//! What the benchmark binaries share: settings from the environment, process figures from
//! `/proc`, percentiles, and the async entry point.

use std::future::Future;

/// The number in environment variable `key`, or `default`.
pub fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A `/proc/self/status` figure in KiB (`"VmRSS:"`, `"VmHWM:"`); 0 where there is none.
pub fn status_kib(field: &str) -> u64 {
    proc_figure("/proc/self/status", field)
}

/// The first number after `field` on its line of the `/proc` file `path`; 0 where there is
/// none.
fn proc_figure(path: &str, field: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// This process's resident memory, KiB.
pub fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// The `p` quantile (0–1) of sorted values, NaN for none.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Run a benchmark's body on a 2-thread runtime, as the server runs; returns at once for
/// `--list` (`cargo test --benches` probes the binaries with it).
pub fn run_async(body: impl Future<Output = ()>) {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(body);
}

/// A `/proc/self/io` counter in bytes (`"wchar:"`: bytes handed to `write`-like calls;
/// `"write_bytes:"`: bytes sent on to the block layer); 0 where there is none.
pub fn io_bytes(field: &str) -> u64 {
    proc_figure("/proc/self/io", field)
}

/// The machine's CPU time so far, in clock ticks: (all, stolen by the hypervisor), from the
/// `cpu` line of `/proc/stat`; (0, 0) where there is none.
pub fn cpu_ticks() -> (u64, u64) {
    let line = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_default();
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let all = f.iter().take(8).sum();
    (all, f.get(7).copied().unwrap_or(0))
}

/// Share of the machine's CPU time the hypervisor took (steal) between two [`cpu_ticks`]
/// readings, in percent. On a shared VM, latency figures from a run with much steal say
/// more about the neighbours than about the code.
pub fn steal_percent(before: (u64, u64), after: (u64, u64)) -> f64 {
    let all = after.0.saturating_sub(before.0);
    let stolen = after.1.saturating_sub(before.1);
    if all == 0 {
        0.0
    } else {
        100.0 * stolen as f64 / all as f64
    }
}

/// What the live benchmarks trade: a store with `symbols` (one real data file imported under
/// each name) and `ids`, stored sma-cross strategies spread round robin over the symbols.
pub struct LiveBook {
    pub store: qtm_runtime::store::Store,
    pub sandbox: std::sync::Arc<qtm_runtime::sandbox::Sandbox>,
    pub symbols: Vec<String>,
    pub ids: Vec<i64>,
    /// The stored sma-cross version the strategies run (to add as a second version).
    pub version: StoredVersion,
    /// How long storing the strategies took.
    pub stored_in: std::time::Duration,
    /// The first symbol's closes, the prices [`LiveBook::tick`] replays.
    pub closes: Vec<f64>,
}

/// A component as the store keeps it, for [`qtm_runtime::store::strategies::add_version`].
pub struct StoredVersion {
    pub sha256: String,
    pub describe: serde_json::Value,
    pub component: Vec<u8>,
}

impl StoredVersion {
    /// The store's view of it.
    pub fn as_new(&self) -> qtm_runtime::store::strategies::NewVersion<'_> {
        qtm_runtime::store::strategies::NewVersion {
            content_sha256: &self.sha256,
            contract_version: "qtm:strategy@0.1.0",
            describe: &self.describe,
            component: &self.component,
            size: None,
            created_by: None,
        }
    }
}

/// A [`LiveBook`] in `db`: `file` (a peer data file, see [`crate::bench_data`]) imported as `n_symbols` symbols, and
/// `n_instances` sma-cross strategies, strategy `i` with the parameters `params(i)`.
pub async fn live_book(
    db: &std::path::Path,
    file: &str,
    n_symbols: usize,
    n_instances: usize,
    params: impl Fn(usize) -> serde_json::Value,
) -> LiveBook {
    let url = format!("sqlite://{}", db.display());
    live_book_at(&url, file, n_symbols, n_instances, params).await
}

/// The database a benchmark stores into: the URL in the environment variable `var`, where
/// `postgres` means a fresh database on a throwaway PostgreSQL server started from Debian's
/// binaries (as the tests do); unset, a SQLite file `qtm.db` in `dir`.
pub fn bench_database_url(var: &str, dir: &std::path::Path) -> String {
    match std::env::var(var) {
        Ok(v) if v == "postgres" => crate::postgres::database_url()
            .unwrap_or_else(|why| panic!("{var}=postgres: no PostgreSQL server: {why}")),
        Ok(url) => url,
        Err(_) => format!("sqlite://{}", dir.join("qtm.db").display()),
    }
}

/// [`live_book`] on the database at `url` (SQLite or PostgreSQL).
pub async fn live_book_at(
    url: &str,
    file: &str,
    n_symbols: usize,
    n_instances: usize,
    params: impl Fn(usize) -> serde_json::Value,
) -> LiveBook {
    use qtm_runtime::store::market::{self, ImportOptions};
    use qtm_runtime::store::strategies::NewStrategy;
    use qtm_runtime::store::{self, Store};

    let store = Store::open(url).await.unwrap();
    let symbols: Vec<String> = (0..n_symbols).map(|i| format!("S{i}")).collect();
    for s in &symbols {
        market::import_csv(
            &store,
            &crate::bench_data(file),
            &ImportOptions {
                symbol: s.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let sandbox = std::sync::Arc::new(
        qtm_runtime::sandbox::Sandbox::new(qtm_runtime::sandbox::SandboxConfig::default()).unwrap(),
    );
    let component = crate::component(crate::guests::SMA_CROSS);
    let code = sandbox.load(&component).unwrap();
    let version = StoredVersion {
        sha256: code.sha256().to_string(),
        describe: serde_json::to_value(code.info()).unwrap(),
        component,
    };
    let t = std::time::Instant::now();
    let mut ids = Vec::with_capacity(n_instances);
    for i in 0..n_instances {
        let r = store::strategies::create(
            &store,
            &NewStrategy {
                name: &format!("sma-{i}"),
                description: "",
                owner_id: None,
                source: "bench",
                cloned_from: None,
            },
            &version.as_new(),
            &params(i),
            &[symbols[i % n_symbols].clone()],
        )
        .await
        .unwrap();
        ids.push(r.strategy.id);
    }
    let stored_in = t.elapsed();
    let closes = store::live::history_after(&store, "S0", None)
        .await
        .unwrap()
        .iter()
        .map(|b| b.close)
        .collect();
    LiveBook {
        store,
        sandbox,
        symbols,
        ids,
        version,
        stored_in,
        closes,
    }
}

/// The live benches' strategy: sma-cross 10/30, flipping long and short, one share.
pub fn sma_10_30(_: usize) -> serde_json::Value {
    serde_json::json!({"fast": 10, "slow": 30, "mode": "flip", "sizing": "fixed", "quantity": 1})
}

impl LiveBook {
    /// Tick number `k` of the feed: round robin over the symbols, each symbol's ticks one
    /// second apart from 1,700,000,000, at GOOG's closes (offset per symbol so they differ).
    /// Returns (symbol index, ts, price).
    pub fn tick(&self, k: usize) -> (usize, i64, f64) {
        let sym = k % self.symbols.len();
        let step = k / self.symbols.len();
        let price = self.closes[(step + sym * 37) % self.closes.len()];
        (sym, 1_700_000_000 + step as i64, price)
    }
}

/// When each tick, keyed by (symbol, ts), was handed to the engine or written to a socket.
pub type TickTimes = std::collections::HashMap<(String, i64), std::time::Instant>;

/// Latency in µs, sorted, of each event (symbol, ts, when it arrived) from its tick's time in
/// `sent`; events of ticks not in `sent` are left out.
pub fn latencies_us(sent: &TickTimes, events: &[(String, i64, std::time::Instant)]) -> Vec<f64> {
    let mut v: Vec<f64> = events
        .iter()
        .filter_map(|(s, ts, at)| {
            sent.get(&(s.clone(), *ts))
                .map(|t0| at.duration_since(*t0).as_secs_f64() * 1e6)
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// A markdown table row: `name`, count, p50, p99 and max of sorted `v`.
pub fn latency_row(name: &str, v: &[f64]) -> String {
    format!(
        "| {name} | {} | {:.1} | {:.1} | {:.1} |",
        v.len(),
        pct(v, 0.5),
        pct(v, 0.99),
        v.last().copied().unwrap_or(f64::NAN)
    )
}
