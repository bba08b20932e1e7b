//! Shared helpers for the integration tests: the built guests, a recording host, fixtures.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use qtm_runtime::model::{
    Bar, LogLevel, OpenOrder, OrderChange, OrderRequest, Param, ParamValue, Position, Signal,
};
use qtm_runtime::sandbox::StrategyHost;

/// sma-cross's decision logic, compiled natively from the guest's own source file.
#[path = "../../strategies/sma-cross/src/crossover.rs"]
pub mod sma_crossover;

/// Paths of the guests' core modules, as built by `build.rs`.
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// The component for a guest (core module path from [`guests`]), componentized once per
/// process with the product's own toolchain.
pub fn component(core_module: &str) -> Vec<u8> {
    static CACHE: OnceLock<Mutex<HashMap<String, Vec<u8>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(c) = cache.lock().unwrap().get(core_module) {
        return c.clone();
    }
    let module = std::fs::read(core_module).expect("guest module built by build.rs");
    let c = qtm_runtime::toolchain::componentize(&module).expect("componentize guest");
    cache
        .lock()
        .unwrap()
        .insert(core_module.to_string(), c.clone());
    c
}

/// Finding market data: bundled (`data/`) and peer (`$QTM_DATA_DIR`, else `../shared/data`).
#[path = "../../runtime/tests/support/data.rs"]
mod data;
pub use data::{
    bundled, bundled_data, missing_peer, peer_data, peer_file, peer_file_or_skip, skip,
};

/// The peer file `$name` (a path), or print the skip and return from the calling test.
#[macro_export]
macro_rules! require_peer {
    ($name:expr) => {
        match $crate::peer_file_or_skip($name) {
            Some(path) => path,
            None => return,
        }
    };
}

/// The peer file `name` a benchmark measures on; benchmarks have no stand-in, so a missing
/// file ends the run with how to point at the data.
pub fn bench_data(name: &str) -> PathBuf {
    peer_file(name).unwrap_or_else(|| {
        eprintln!(
            "benchmark data missing: {}; benchmarks read the peer data, `../shared/data` next to \
             the repository or the folder QTM_DATA_DIR names",
            missing_peer(name)
        );
        std::process::exit(2)
    })
}

/// The first `rows` bars of the bundled `spy_1m_2011.csv` as a CSV file of their own, for
/// tests that want a shorter real series; written once under the system temp dir.
pub fn bundled_slice(rows: usize) -> PathBuf {
    let dir = std::env::temp_dir().join("qtm-tests-data");
    let path = dir.join(format!("spy_1m_2011_first{rows}.csv"));
    if !path.is_file() {
        let text = std::fs::read_to_string(bundled("spy_1m_2011.csv")).expect("bundled data");
        let body: String = text
            .lines()
            .take(rows + 1)
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::create_dir_all(&dir).unwrap();
        // Written aside and renamed, so parallel tests never read half a file.
        let tmp = dir.join(format!(
            "{}.{}.{:?}",
            path.file_name().unwrap().to_string_lossy(),
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&tmp, body).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }
    path
}

/// Bars numbered by `ts` = 1..=n with a gentle deterministic wave, for sequence tests.
pub fn numbered_bars(n: usize) -> Vec<Bar> {
    (1..=n)
        .map(|i| {
            let p = 100.0 + 10.0 * ((i as f64) / 17.0).sin() + (i as f64) * 0.01;
            Bar {
                ts: i as i64,
                open: p,
                high: p + 0.5,
                low: p - 0.5,
                close: p + 0.1,
                volume: 1000.0,
            }
        })
        .collect()
}

/// A host that records what a strategy asked for: logs, orders, and which bar it held when it
/// asked (`pulled`). It is the sandbox tests' stand-in for the engine, which comes with its own
/// tests. `bars` is what `next-bar` hands out, in order.
#[derive(Debug, Default)]
pub struct RecordingHost {
    pub logs: Vec<(LogLevel, String)>,
    pub orders: Vec<OrderRequest>,
    /// Bars `next_bar` hands out (symbol id, bar), front first.
    pub bars: std::collections::VecDeque<(u32, Bar)>,
    /// Bars handed out so far; orders are placed while the last of them is current.
    pub pulled: u32,
    /// For each order, the number of bars pulled when it was placed.
    pub order_at: Vec<u32>,
    pub positions: HashMap<String, f64>,
    pub cash: f64,
    pub next_id: u64,
    /// Fill orders instantly into `positions` (so strategies reading positions see effects).
    pub fill_instantly: bool,
}

impl StrategyHost for RecordingHost {
    fn log(&mut self, level: LogLevel, message: &str) {
        self.logs.push((level, message.to_string()));
    }
    fn submit_order(&mut self, order: OrderRequest) -> Result<u64, String> {
        if self.fill_instantly
            && let qtm_runtime::model::Quantity::Units(q) = order.quantity
        {
            let sign = if order.side == qtm_runtime::model::Side::Buy {
                1.0
            } else {
                -1.0
            };
            *self.positions.entry(order.symbol.clone()).or_default() += sign * q;
        }
        self.orders.push(order);
        self.order_at.push(self.pulled);
        self.next_id += 1;
        Ok(self.next_id)
    }
    fn cancel_order(&mut self, _id: u64) -> Result<(), String> {
        Ok(())
    }
    fn modify_order(&mut self, _id: u64, _change: OrderChange) -> Result<(), String> {
        Ok(())
    }
    fn position(&mut self, symbol: &str) -> Position {
        Position {
            quantity: self.positions.get(symbol).copied().unwrap_or(0.0),
            avg_price: 0.0,
        }
    }
    fn cash(&mut self) -> f64 {
        self.cash
    }
    fn equity(&mut self) -> f64 {
        self.cash
    }
    fn open_orders(&mut self) -> Vec<OpenOrder> {
        Vec::new()
    }
    fn signal(&mut self, _name: &str) -> Option<Signal> {
        None
    }
    fn now_ns(&mut self) -> i64 {
        0
    }
    fn recent_bars(&mut self, _symbol: &str, _count: u32) -> Result<Vec<Bar>, String> {
        Ok(Vec::new())
    }
    fn next_bar(&mut self) -> Option<(u32, Bar)> {
        let next = self.bars.pop_front()?;
        self.pulled += 1;
        Some(next)
    }
}

/// Read a CSV in the data folders' format (`ts,open,high,low,close,volume`) for sandbox tests.
pub fn read_bars(path: &std::path::Path) -> Vec<Bar> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<f64> = l.split(',').map(|x| x.parse().unwrap()).collect();
            Bar {
                ts: f[0] as i64,
                open: f[1],
                high: f[2],
                low: f[3],
                close: f[4],
                volume: f[5],
            }
        })
        .collect()
}

pub mod bench;
pub mod polyglot;
pub mod server;

/// A throwaway PostgreSQL server for the tests, shared with the runtime's unit tests.
#[path = "../../runtime/store/src/test_postgres.rs"]
pub mod postgres;

/// sma-cross 10/30 with `mode`, `sizing` and `quantity`, as the tests that compare it with
/// other implementations run it.
pub fn sma_params(mode: &str, sizing: &str, quantity: f64) -> Vec<Param> {
    let p = |n: &str, v: ParamValue| Param {
        name: n.into(),
        value: v,
    };
    vec![
        p("fast", ParamValue::Int(10)),
        p("slow", ParamValue::Int(30)),
        p("mode", ParamValue::Choice(mode.into())),
        p("sizing", ParamValue::Choice(sizing.into())),
        p("quantity", ParamValue::Float(quantity)),
    ]
}

/// Store a strategy running the test guest `module` with `params` on `symbol` (not enabled),
/// as an upload would, through `sandbox`'s gate; its id.
pub async fn store_strategy(
    store: &qtm_runtime::store::Store,
    sandbox: &qtm_runtime::sandbox::Sandbox,
    module: &str,
    name: &str,
    params: &serde_json::Value,
    symbol: &str,
) -> i64 {
    use qtm_runtime::store::strategies;
    let bytes = component(module);
    let code = sandbox.load(&bytes).unwrap();
    let describe = serde_json::to_value(code.info()).unwrap();
    strategies::create(
        store,
        &strategies::NewStrategy {
            name,
            description: "",
            owner_id: None,
            source: "test",
            cloned_from: None,
        },
        &strategies::NewVersion {
            content_sha256: code.sha256(),
            contract_version: &code.gate().contract,
            describe: &describe,
            component: &bytes,
            size: None,
            created_by: None,
        },
        params,
        &[symbol.to_string()],
    )
    .await
    .unwrap()
    .strategy
    .id
}

/// The `qtm` binary beside the running test's executable (built by `cargo test --workspace`),
/// with the caller's logging settings removed so its output is what the test expects.
pub fn qtm_command() -> std::process::Command {
    let exe = std::env::current_exe().expect("the test's own path");
    let bin = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("the test runs from the target dir")
        .join(format!("qtm{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is built by `cargo test --workspace` (./test.sh); with `-p qtm-tests` alone, run \
         `cargo build -p qtm-runtime` first",
        bin.display()
    );
    let mut cmd = std::process::Command::new(bin);
    for var in [
        "QTM_CONFIG",
        "QTM_DATABASE_URL",
        "QTM_ADMIN_PASSWORD",
        "QTM_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd
}
