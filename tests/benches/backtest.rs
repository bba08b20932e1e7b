//! Whole-engine backtest throughput: `cargo bench -p qtm-tests --bench backtest`.
//!
//! `sma-cross` 10/30 flip with all-in sizing over the 1,000,000-bar bench file, through the
//! complete pipeline (streaming CSV → merge → engine → exchange → portfolio → events →
//! metrics): once as the sandboxed WASM component (pulling its bars through `next-bar`, and one call per bar), once as the
//! same crossover source compiled natively into the same engine. Every run must produce the
//! same trade list (hash). `QTM_BENCH_FILE` overrides the data file.

use std::time::Instant;

use qtm_runtime::backtest::{self, BacktestConfig, BacktestOutcome, DataSource};
use qtm_runtime::engine::StrategyRunner;
use qtm_runtime::model::{Bar, Fill, OrderRequest, Param, ParamValue, Quantity, Side};
use qtm_runtime::sandbox::{Sandbox, SandboxConfig, StrategyHost};
use qtm_tests::sma_crossover::{Cross, Crossover};
use qtm_tests::{bench_data, component, guests};

/// sma-cross's decision, native: the guest's own `crossover.rs` and the same orders.
struct NativeSmaCross {
    cross: Crossover,
    side: i8,
    symbol: String,
}

impl StrategyRunner for NativeSmaCross {
    fn on_bar(
        &mut self,
        host: &mut dyn StrategyHost,
        _symbol: u32,
        bar: &Bar,
    ) -> Result<(), String> {
        let (want, side) = match self.cross.update(bar.close) {
            Some(Cross::Up) if self.side != 1 => (1, Side::Buy),
            Some(Cross::Down) if self.side != -1 => (-1, Side::Sell),
            _ => return Ok(()),
        };
        let order = OrderRequest::market(&self.symbol, side, Quantity::EquityFraction(1.0));
        if host.submit_order(order).is_ok() {
            self.side = want;
        }
        Ok(())
    }
    fn on_fill(&mut self, _: &mut dyn StrategyHost, _: u32, _: &Fill) -> Result<(), String> {
        Ok(())
    }
}

fn run(
    runner: Box<dyn StrategyRunner>,
    sources: &[DataSource],
    batch: bool,
) -> (BacktestOutcome, f64) {
    let mut config = BacktestConfig::default();
    config.engine.batch = batch;
    let t = Instant::now();
    let out = backtest::run("sma-cross", runner, sources, &config, &mut |_| {}).unwrap();
    (out, t.elapsed().as_secs_f64())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let file = std::env::var("QTM_BENCH_FILE")
        .map(Into::into)
        .unwrap_or_else(|_| bench_data("bench_1m_1000000.csv"));
    let sources = [DataSource::csv("BENCH", file.clone())];
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let code = sandbox.load(&component(guests::SMA_CROSS)).unwrap();
    let params = vec![
        Param {
            name: "mode".into(),
            value: ParamValue::Choice("flip".into()),
        },
        Param {
            name: "sizing".into(),
            value: ParamValue::Choice("equity".into()),
        },
    ];
    let wasm = || {
        Box::new(code.instantiate(&params, &["BENCH".into()]).unwrap()) as Box<dyn StrategyRunner>
    };
    let native = || {
        Box::new(NativeSmaCross {
            cross: Crossover::new(10, 30),
            side: 0,
            symbol: "BENCH".into(),
        }) as Box<dyn StrategyRunner>
    };

    // For profiling one path: `QTM_BENCH_ONLY=engine-wasm|engine-native perf record …`.
    if let Ok(only @ ("engine-wasm" | "engine-native")) = std::env::var("QTM_BENCH_ONLY").as_deref()
    {
        let preloaded: Vec<(usize, Bar)> = qtm_runtime::market::load_bars(&file)
            .unwrap()
            .into_iter()
            .map(|b| (0, b))
            .collect();
        // `QTM_BENCH_RUNS=1` for slow profilers such as callgrind.
        let runs = std::env::var("QTM_BENCH_RUNS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(10);
        for _ in 0..runs {
            let mut sink = qtm_runtime::events::NullSink;
            let mut engine = qtm_runtime::engine::Engine::new(
                Default::default(),
                vec!["BENCH".into()],
                &mut sink,
            );
            let runner = if only == "engine-wasm" {
                wasm()
            } else {
                native()
            };
            engine
                .add_strategy(
                    "sma",
                    runner,
                    &["BENCH".into()],
                    10_000.0,
                    Default::default(),
                )
                .unwrap();
            for chunk in preloaded.chunks(8192) {
                engine.process(chunk);
            }
        }
        return;
    }
    // Warm the page cache and check every variant trades identically.
    let (reference, _) = run(native(), &sources, true);
    // `QTM_BENCH_ONLY=engine` times only the engine-only rows (quicker when tuning the engine).
    let engine_only = std::env::var("QTM_BENCH_ONLY").as_deref() == Ok("engine");
    let reps = 5;
    let mut rows = Vec::new();
    for (name, make, batch) in [
        (
            "native strategy, same engine",
            &native as &dyn Fn() -> Box<dyn StrategyRunner>,
            true,
        ),
        ("WASM strategy, pulled bars", &wasm, true),
        ("WASM strategy, one call per bar", &wasm, false),
    ] {
        if engine_only {
            break;
        }
        let mut secs: Vec<f64> = (0..reps)
            .map(|_| {
                let (out, s) = run(make(), &sources, batch);
                assert_eq!(
                    out.trades_sha256, reference.trades_sha256,
                    "{name}: trades differ"
                );
                s
            })
            .collect();
        secs.sort_by(f64::total_cmp);
        rows.push((name, secs[reps / 2], secs[0]));
    }
    // The engine alone: bars already in memory, equity events counted, no CSV, no metrics.
    let preloaded: Vec<(usize, Bar)> = qtm_runtime::market::load_bars(&file)
        .unwrap()
        .into_iter()
        .map(|b| (0, b))
        .collect();
    let mut engine_rows = Vec::new();
    for (name, make, batch) in [
        (
            "native strategy, engine only",
            &native as &dyn Fn() -> Box<dyn StrategyRunner>,
            true,
        ),
        ("WASM strategy, pulled bars, engine only", &wasm, true),
    ] {
        let mut secs: Vec<f64> = (0..reps)
            .map(|_| {
                let mut sink = qtm_runtime::events::NullSink;
                let config = qtm_runtime::engine::EngineConfig {
                    batch,
                    ..Default::default()
                };
                let mut engine =
                    qtm_runtime::engine::Engine::new(config, vec!["BENCH".into()], &mut sink);
                engine
                    .add_strategy(
                        "sma",
                        make(),
                        &["BENCH".into()],
                        10_000.0,
                        Default::default(),
                    )
                    .unwrap();
                let t = Instant::now();
                for chunk in preloaded.chunks(8192) {
                    engine.process(chunk);
                }
                let s = t.elapsed().as_secs_f64();
                assert_eq!(
                    qtm_runtime::backtest::trades_sha256(&engine.trades(0)),
                    reference.trades_sha256,
                    "{name}"
                );
                s
            })
            .collect();
        secs.sort_by(f64::total_cmp);
        engine_rows.push((name, secs[reps / 2], secs[0]));
    }
    let bars = reference.bars as f64;
    println!(
        "## Backtest throughput: sma-cross 10/30 flip, all-in, {} bars ({})\n",
        reference.bars,
        file.display()
    );
    println!(
        "trades: {} closed + {} open, trades_sha256 {}\n",
        reference.metrics.n_trades, reference.metrics.n_open, reference.trades_sha256
    );
    // The VM's noise moves single runs by up to 2×: the best of 5 is the steadier statistic.
    println!(
        "| strategy | median s | best s | bars/s (best) | × native (best) |\n|---|---:|---:|---:|---:|"
    );
    for table in [&rows, &engine_rows] {
        if table.is_empty() {
            continue;
        }
        let native_best = table[0].2;
        for (name, med, best) in table {
            println!(
                "| {name} | {med:.3} | {best:.3} | {:.2} M | {:.2} |",
                bars / best / 1e6,
                best / native_best
            );
        }
    }
}
