//! sma-cross written in Python (componentize-py) and JavaScript (componentize-qjs): each passes
//! the upload gate, describes itself as the Rust sma-cross does, refuses the same bad
//! parameters, places the same orders on the same bars, and backtests to the same trades.
//!
//! The components are built by `qtm_tests::polyglot` on first use and cached in the target dir;
//! where a toolchain cannot be installed the tests print `skipped: …` and pass.

use std::sync::Arc;

use qtm_runtime::backtest::{self, BacktestConfig, BacktestOutcome, DataSource};
use qtm_runtime::events::StrategyState;
use qtm_runtime::model::{Param, ParamValue};
use qtm_runtime::sandbox::{Sandbox, SandboxConfig, SandboxError, StrategyCode};
use qtm_tests::{RecordingHost, bundled_slice, component, guests, polyglot, read_bars};

/// Real bars from the bundled minute data (as many as goog_1d.csv has: a run of a few seconds).
const ROWS: usize = 2148;

fn params(mode: &str, sizing: &str, quantity: f64) -> Vec<Param> {
    qtm_tests::sma_params(mode, sizing, quantity)
}

fn rust_code() -> Arc<StrategyCode> {
    Sandbox::new(SandboxConfig::default())
        .unwrap()
        .load(&component(guests::SMA_CROSS))
        .unwrap()
}

fn backtest(code: &Arc<StrategyCode>, params: &[Param], batch: bool) -> BacktestOutcome {
    let source = DataSource::csv("SPY", bundled_slice(ROWS));
    let instance = code
        .instantiate(params, std::slice::from_ref(&source.symbol))
        .unwrap();
    let mut config = BacktestConfig::default();
    config.engine.exchange.commission = 0.001;
    config.engine.batch = batch;
    backtest::run(
        "sma-cross",
        Box::new(instance),
        &[source],
        &config,
        &mut |_| {},
    )
    .unwrap()
}

/// Everything a guest in another language must match the Rust sma-cross on.
fn same_as_rust(lang: &str, code: &Arc<StrategyCode>) {
    let rust = rust_code();

    // The gate: the contract's imports only (WASI stubbed out), the contract's export. The
    // toolchains export their build-time initializer too (componentize-py an instance
    // `exports`, componentize-qjs a function `init`), which the host never calls.
    let gate = code.gate();
    assert_eq!(gate.contract, "qtm:strategy@0.2.0");
    assert_eq!(
        gate.imports,
        ["qtm:strategy/types@0.2.0", "qtm:strategy/host@0.2.0"]
    );
    assert!(
        gate.exports.iter().any(|e| e == "qtm:strategy/guest@0.2.0"),
        "{lang}: exports {:?}",
        gate.exports
    );
    assert_eq!(code.info(), rust.info(), "{lang}: describe");
    eprintln!(
        "{lang}: {} bytes, {} core modules, {} functions, compiled in {:.1} s, exports {:?}",
        gate.size,
        gate.modules,
        gate.functions,
        code.compile_time().as_secs_f64(),
        gate.exports
    );

    // The guest's own parameter check refuses what the Rust guest refuses, in the same words.
    let bad = [
        Param {
            name: "fast".into(),
            value: ParamValue::Int(30),
        },
        Param {
            name: "slow".into(),
            value: ParamValue::Int(10),
        },
    ];
    let refused = |c: &Arc<StrategyCode>| match c.instantiate(&bad, &["SPY".into()]) {
        Err(SandboxError::Configure(msg)) => msg,
        other => panic!("fast > slow was not refused: {:?}", other.map(|_| ())),
    };
    assert_eq!(refused(code), refused(&rust), "{lang}: configure error");

    // Backtests: pulled (`on-bars`) and one call per bar (`on-bar`), both sizings and modes.
    for (mode, sizing, batch) in [
        ("flip", "equity", true),
        ("long_only", "fixed", true),
        ("flip", "fixed", false),
    ] {
        let p = params(mode, sizing, 1.0);
        let want = backtest(&rust, &p, batch);
        let got = backtest(code, &p, batch);
        let what = format!("{lang} {mode} {sizing} batch={batch}");
        assert_eq!(got.final_state, StrategyState::Running, "{what}");
        assert!(
            want.trades.len() > 20,
            "{what}: {} trades",
            want.trades.len()
        );
        assert_eq!(got.trades.len(), want.trades.len(), "{what}: trade count");
        assert_eq!(got.trades_sha256, want.trades_sha256, "{what}: trades");
        assert_eq!(got.metrics, want.metrics, "{what}: metrics");
    }

    // The same orders on the same bars as Rust, pulled; and what a bar costs in fuel.
    let bars = read_bars(&bundled_slice(ROWS));
    let symbols = ["SPY".to_string()];
    let run = |c: &Arc<StrategyCode>| {
        let mut host = RecordingHost {
            fill_instantly: true,
            bars: bars.iter().map(|b| (0, *b)).collect(),
            ..Default::default()
        };
        let mut inst = c
            .instantiate(&params("long_only", "fixed", 3.0), &symbols)
            .unwrap();
        let before = inst.stats();
        while inst.on_bars(&mut host).unwrap() > 0 {}
        let stats = inst.stats();
        assert_eq!(stats.bars, bars.len() as u64);
        let fuel = (stats.fuel - before.fuel) as f64 / bars.len() as f64;
        let wall = (stats.wall_ns - before.wall_ns) as f64 / bars.len() as f64;
        (host.orders, host.order_at, fuel, wall)
    };
    let (orders, at, fuel, wall) = run(code);
    let (rust_orders, rust_at, rust_fuel, rust_wall) = run(&rust);
    assert!(rust_orders.len() > 20);
    assert_eq!(orders, rust_orders, "{lang}: orders");
    assert_eq!(at, rust_at, "{lang}: the bars orders were placed on");
    eprintln!(
        "{lang}: {fuel:.0} fuel and {:.1} µs a bar (Rust: {rust_fuel:.0} fuel, {:.1} µs)",
        wall / 1e3,
        rust_wall / 1e3
    );
}

#[test]
fn python_sma_cross_passes_the_gate_and_trades_as_rust_does() {
    let Some(wasm) = polyglot::python_sma_cross() else {
        return;
    };
    let mut config = SandboxConfig::default();
    // componentize-py's component instantiates 38 core modules (CPython, libc, its runtime
    // glue and the WASI stubs), over the old default of 16; the default becomes 64.
    config.limits.instances = 64;
    let code = Sandbox::new(config).unwrap().load(&wasm).unwrap();
    same_as_rust("Python", &code);
}

#[test]
fn js_sma_cross_passes_the_gate_and_trades_as_rust_does() {
    let Some(wasm) = polyglot::js_sma_cross() else {
        return;
    };
    let code = Sandbox::new(SandboxConfig::default())
        .unwrap()
        .load(&wasm)
        .unwrap();
    same_as_rust("JavaScript", &code);
}
