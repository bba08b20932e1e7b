//! Backtests of the real `sma-cross` component on real data: against an independent reference
//! loop, batched against per-bar, deterministic, multi-symbol; and the budgets around a run
//! (kept log lines, the full log sink, time limit, cancel), also through `qtm backtest`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use qtm_runtime::backtest::{
    self, BacktestConfig, BacktestError, BacktestOutcome, DataSource, RunOptions, TimeLimit,
};
use qtm_runtime::engine::{StrategyRunner, WriterSink};
use qtm_runtime::model::{Bar, Param, ParamValue, Trade};
use qtm_runtime::sandbox::{Limits, Sandbox, SandboxConfig};
use qtm_tests::{
    bundled, bundled_slice, component, guests, peer_file_or_skip, read_bars, require_peer,
};

fn params(mode: &str, sizing: &str, quantity: f64) -> Vec<Param> {
    qtm_tests::sma_params(mode, sizing, quantity)
}

fn run_sma(files: &[PathBuf], params: &[Param], commission: f64, batch: bool) -> BacktestOutcome {
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let code = sandbox.load(&component(guests::SMA_CROSS)).unwrap();
    let sources: Vec<DataSource> = files
        .iter()
        .map(|f| DataSource::csv(qtm_runtime::market::symbol_from_path(f), f.clone()))
        .collect();
    let symbols: Vec<String> = sources.iter().map(|s| s.symbol.clone()).collect();
    let instance = code.instantiate(params, &symbols).unwrap();
    let mut config = BacktestConfig::default();
    config.engine.exchange.commission = commission;
    config.engine.batch = batch;
    backtest::run(
        "sma-cross",
        Box::new(instance),
        &sources,
        &config,
        &mut |_| {},
    )
    .unwrap()
}

/// The exact semantics of the engine issue, written as plainly as possible: SMAs as window
/// means, a signal on bar t fills at bar t+1's open, a reversal closes then opens at the same
/// price, all-in sizing `floor(equity (1 − ε) / (P (1 + c)))` on the equity left after the close.
fn reference(
    bars: &[Bar],
    symbol: &str,
    flip: bool,
    equity_sizing: bool,
    q: f64,
    c: f64,
) -> (Vec<Trade>, f64) {
    let sma = |t: usize, n: usize| -> Option<f64> {
        if t + 1 < n {
            return None;
        }
        // Exactly rounded window sum (what the SDK's SMA keeps), via 128-bit-ish pairs.
        let (mut hi, mut lo) = (0.0f64, 0.0f64);
        for b in &bars[t + 1 - n..=t] {
            let s = hi + b.close;
            let bb = s - hi;
            lo += (hi - (s - bb)) + (b.close - bb);
            hi = s;
        }
        Some((hi + lo) / n as f64)
    };
    let (mut cash, mut pos, mut entry): (f64, f64, Option<(i64, f64, f64)>) = (10_000.0, 0.0, None);
    let mut trades = Vec::new();
    let mut pending: Option<f64> = None; // target direction
    let mut side = 0.0; // the side the strategy wants
    for (t, b) in bars.iter().enumerate() {
        if let Some(dir) = pending.take() {
            let p = b.open;
            if pos != 0.0 && (pos > 0.0) != (dir > 0.0) || dir == 0.0 {
                // close
                let fee = pos.abs() * p * c;
                cash += pos * p - fee;
                let (ets, ep, efee) = entry.take().unwrap();
                trades.push(Trade {
                    symbol: symbol.into(),
                    entry_ts: ets,
                    exit_ts: Some(b.ts),
                    entry_price: ep,
                    exit_price: Some(p),
                    quantity: pos,
                    pnl: (p - ep) * pos - efee - fee,
                    fees: efee + fee,
                });
                pos = 0.0;
            }
            if dir != 0.0 {
                let units = if equity_sizing {
                    (cash * (1.0 - f64::EPSILON) / (p * (1.0 + c))).floor()
                } else {
                    q
                };
                let fee = units * p * c;
                cash -= dir * units * p + fee;
                pos = dir * units;
                entry = Some((b.ts, p, fee));
            }
        }
        if let (Some(f), Some(s), Some(pf), Some(ps)) = (
            sma(t, 10),
            sma(t, 30),
            t.checked_sub(1).and_then(|u| sma(u, 10)),
            t.checked_sub(1).and_then(|u| sma(u, 30)),
        ) {
            if pf <= ps && f > s && side <= 0.0 {
                side = 1.0;
                pending = Some(1.0);
            } else if pf >= ps && f < s {
                if flip && side >= 0.0 {
                    side = -1.0;
                    pending = Some(-1.0);
                } else if !flip && side > 0.0 {
                    side = 0.0;
                    pending = Some(0.0);
                }
            }
        }
    }
    let last = bars.last().unwrap().close;
    if let Some((ets, ep, efee)) = entry {
        trades.push(Trade {
            symbol: symbol.into(),
            entry_ts: ets,
            exit_ts: None,
            entry_price: ep,
            exit_price: None,
            quantity: pos,
            pnl: (last - ep) * pos - efee,
            fees: efee,
        });
    }
    (trades, cash + pos * last)
}

fn assert_same_trades(got: &[Trade], want: &[Trade]) {
    assert_eq!(got.len(), want.len(), "trade count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            (
                g.entry_ts,
                g.exit_ts,
                g.entry_price,
                g.exit_price,
                g.quantity
            ),
            (
                w.entry_ts,
                w.exit_ts,
                w.entry_price,
                w.exit_price,
                w.quantity
            ),
            "trade {i}"
        );
        assert!(
            (g.pnl - w.pnl).abs() <= 1e-9 * w.pnl.abs().max(1.0),
            "trade {i} pnl {} vs {}",
            g.pnl,
            w.pnl
        );
        assert!(
            (g.fees - w.fees).abs() <= 1e-9 * w.fees.abs().max(1.0),
            "trade {i} fees"
        );
    }
}

#[test]
fn sma_cross_matches_the_reference_loop_on_real_data() {
    // The bundled minute bars always; the peer daily and hourly files where present.
    let mut cases = vec![(bundled("spy_1m_2011.csv"), "SPY")];
    for (name, symbol) in [("goog_1d.csv", "GOOG"), ("eurusd_1h.csv", "EURUSD")] {
        cases.extend(peer_file_or_skip(name).map(|f| (f, symbol)));
    }
    for (path, symbol) in cases {
        let file = path.file_name().unwrap().to_string_lossy();
        let bars = read_bars(&path);
        for (mode, sizing, q) in [
            ("flip", "equity", 1.0),
            ("long_only", "equity", 1.0),
            ("flip", "fixed", 10.0),
            ("long_only", "fixed", 10.0),
        ] {
            for c in [0.0, 0.001] {
                let q = if sizing == "fixed" && symbol == "EURUSD" {
                    1000.0
                } else {
                    q
                };
                let out = run_sma(
                    std::slice::from_ref(&path),
                    &params(mode, sizing, q),
                    c,
                    true,
                );
                let (want, final_equity) =
                    reference(&bars, symbol, mode == "flip", sizing == "equity", q, c);
                assert!(
                    want.len() > 20,
                    "{file} {mode} {sizing}: {} trades",
                    want.len()
                );
                assert_same_trades(&out.trades, &want);
                let rel = (out.metrics.final_equity - final_equity).abs() / final_equity;
                assert!(
                    rel < 1e-9,
                    "{file} {mode} {sizing} c={c}: {} vs {final_equity}",
                    out.metrics.final_equity
                );
            }
        }
    }
}

#[test]
fn batched_and_per_bar_runs_are_bit_identical_and_deterministic() {
    let files = peer_file_or_skip("goog_1d.csv")
        .into_iter()
        .chain([bundled("spy_1m_2011.csv")]);
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy();
        let path = std::slice::from_ref(&path);
        let a = run_sma(path, &params("flip", "equity", 1.0), 0.001, true);
        let b = run_sma(path, &params("flip", "equity", 1.0), 0.001, false);
        let c = run_sma(path, &params("flip", "equity", 1.0), 0.001, true);
        assert_eq!(
            a.trades_sha256, b.trades_sha256,
            "{file}: batched vs per-bar"
        );
        assert_eq!(a.trades_sha256, c.trades_sha256, "{file}: run to run");
        let (ea, eb) = (a.equity.to_vec(), b.equity.to_vec());
        if let Some(i) = (0..ea.len()).find(|&i| ea[i] != eb[i]) {
            panic!(
                "{file}: equity differs first at {i}: batched {:?} per-bar {:?}",
                &ea[i.saturating_sub(1)..i + 2],
                &eb[i.saturating_sub(1)..i + 2]
            );
        }
        assert_eq!(ea.len(), eb.len());
        assert_eq!(a.metrics, b.metrics);
        assert_eq!(backtest::trades_sha256(&a.trades), a.trades_sha256);
    }
}

#[test]
fn multi_symbol_backtests_merge_files_in_time_order() {
    let files = [require_peer!("goog_1d.csv"), require_peer!("nvda_1d.csv")];
    // Fixed sizing with ample cash: each symbol trades exactly as it would alone.
    let together = run_sma(&files, &params("flip", "fixed", 1.0), 0.0, true);
    assert_eq!(together.symbols, ["GOOG", "NVDA"]);
    for (file, symbol) in files.iter().zip(["GOOG", "NVDA"]) {
        let alone = run_sma(
            std::slice::from_ref(file),
            &params("flip", "fixed", 1.0),
            0.0,
            true,
        );
        let mine: Vec<Trade> = together
            .trades
            .iter()
            .filter(|t| t.symbol == symbol)
            .cloned()
            .collect();
        let mut alone_closed = alone.trades.clone();
        alone_closed.sort_by_key(|t| (t.exit_ts.is_none(), t.exit_ts, t.entry_ts));
        let mut mine_sorted = mine.clone();
        mine_sorted.sort_by_key(|t| (t.exit_ts.is_none(), t.exit_ts, t.entry_ts));
        assert_eq!(mine_sorted.len(), alone_closed.len(), "{symbol}");
        for (a, b) in mine_sorted.iter().zip(&alone_closed) {
            assert_eq!(
                (a.entry_ts, a.exit_ts, a.quantity, a.entry_price),
                (b.entry_ts, b.exit_ts, b.quantity, b.entry_price)
            );
        }
    }
    // One equity point per distinct timestamp across both files.
    let mut ts: Vec<i64> = files
        .iter()
        .flat_map(|f| read_bars(f).into_iter().map(|b| b.ts))
        .collect();
    ts.sort();
    ts.dedup();
    let together_equity = together.equity.to_vec();
    assert_eq!(together_equity.len(), ts.len());
    assert!(together_equity.windows(2).all(|w| w[0].ts < w[1].ts));

    // Tiny chunks split timestamp groups across engine steps: results must not change.
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let code = sandbox.load(&component(guests::SMA_CROSS)).unwrap();
    let sources: Vec<DataSource> = files
        .iter()
        .map(|f| DataSource::csv(qtm_runtime::market::symbol_from_path(f), f.clone()))
        .collect();
    let inst = code
        .instantiate(
            &params("flip", "fixed", 1.0),
            &["GOOG".into(), "NVDA".into()],
        )
        .unwrap();
    let config = BacktestConfig {
        chunk: 7,
        ..Default::default()
    };
    let small = backtest::run("sma-cross", Box::new(inst), &sources, &config, &mut |_| {}).unwrap();
    let small_equity = small.equity.to_vec();
    assert_eq!(small_equity.len(), together_equity.len());
    if let Some(i) = (0..small_equity.len()).find(|&i| small_equity[i] != together_equity[i]) {
        panic!(
            "chunked equity differs at {i}: {:?} vs {:?}",
            small_equity[i], together_equity[i]
        );
    }
    // …and both equal one call per bar (marks moved ahead inside a run are replayed).
    let per_bar = run_sma(&files, &params("flip", "fixed", 1.0), 0.0, false);
    assert_eq!(per_bar.equity.to_vec(), together_equity);
    assert_eq!(small.trades_sha256, together.trades_sha256);
}

#[test]
fn bad_data_is_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad_1d.csv");
    std::fs::write(
        &path,
        "ts,open,high,low,close,volume\n1,1,2,0.5,1.5,10\n2,1,0.9,0.5,1,10\n",
    )
    .unwrap();
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let code = sandbox.load(&component(guests::SMA_CROSS)).unwrap();
    let inst = code.instantiate(&[], &["BAD".into()]).unwrap();
    let sources = [DataSource::csv("BAD", path.clone())];
    let e = backtest::run(
        "sma",
        Box::new(inst),
        &sources,
        &BacktestConfig::default(),
        &mut |_| {},
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.ends_with("bad_1d.csv:3: high 0.9 is below open 1.0"),
        "{msg}"
    );
    let _ = Path::new(&msg);
}

/// Strategies with resting orders (stops, OCO pairs, trailing stops, brackets) exercise the
/// exchange between strategy calls: batched runs must still equal one call per bar.
#[test]
fn resting_order_strategies_trade_identically_batched_and_per_bar() {
    let goog = require_peer!("goog_1d.csv");
    let p = |n: &str, v: ParamValue| Param {
        name: n.into(),
        value: v,
    };
    let cases: [(&str, Vec<Param>); 2] = [
        (
            guests::DONCHIAN_BREAKOUT,
            vec![
                p("entry", ParamValue::Int(20)),
                p("quantity", ParamValue::Float(10.0)),
            ],
        ),
        (
            guests::RSI_REVERSION,
            vec![
                p("quantity", ParamValue::Float(10.0)),
                p("short", ParamValue::Boolean(true)),
                p("stop_loss_pct", ParamValue::Float(3.0)),
                p("take_profit_pct", ParamValue::Float(6.0)),
            ],
        ),
    ];
    for (guest, params) in cases {
        let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
        let code = sandbox.load(&component(guest)).unwrap();
        let sources = [DataSource::csv("GOOG", goog.clone())];
        let run = |batch: bool| {
            let inst = code.instantiate(&params, &["GOOG".into()]).unwrap();
            let mut config = BacktestConfig::default();
            config.engine.batch = batch;
            config.engine.exchange.commission = 0.001;
            backtest::run(
                &code.info().name,
                Box::new(inst),
                &sources,
                &config,
                &mut |_| {},
            )
            .unwrap()
        };
        let (a, b) = (run(true), run(false));
        let name = &code.info().name;
        assert!(
            a.metrics.n_trades >= 10,
            "{name}: {} trades",
            a.metrics.n_trades
        );
        assert_eq!(a.trades_sha256, b.trades_sha256, "{name}");
        assert_eq!(a.equity.to_vec(), b.equity.to_vec(), "{name}");
        assert_eq!(
            a.final_state,
            qtm_runtime::events::StrategyState::Running,
            "{name}: {:?}",
            a.stop_reason
        );
        // Longs and shorts both happen.
        assert!(
            a.trades.iter().any(|t| t.quantity > 0.0) && a.trades.iter().any(|t| t.quantity < 0.0),
            "{name}"
        );
    }
}

/// A strategy that traps in the middle of a backtest is stopped with its reason; the run
/// completes, its positions are still valued, and the host is fine.
#[test]
fn a_trapping_strategy_is_disabled_and_the_backtest_completes() {
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let code = sandbox.load(&component(guests::HOSTILE)).unwrap();
    let inst = code
        .instantiate(
            &[Param {
                name: "attack".into(),
                value: ParamValue::Choice("panic".into()),
            }],
            &["GOOG".into()],
        )
        .unwrap();
    // 2,148 bars, as many as goog_1d.csv has, from the bundled data.
    let sources = [DataSource::csv("GOOG", bundled_slice(2148))];
    let out = backtest::run(
        "hostile",
        Box::new(inst),
        &sources,
        &BacktestConfig::default(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(
        out.final_state,
        qtm_runtime::events::StrategyState::Disabled
    );
    assert_eq!(
        out.stop_reason.as_deref(),
        Some("the strategy panicked or reached unreachable code")
    );
    assert_eq!(out.bars, 2148, "the feed ran to the end");
    assert_eq!(out.equity.len(), 2148);
    assert_eq!(out.metrics.final_equity, 10_000.0);
}

/// Buys one unit every 10th bar, sells it 5 bars later; counts `on-fill` calls.
struct Counting {
    wants_fills: bool,
    bars: u64,
    fills: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl qtm_runtime::engine::StrategyRunner for Counting {
    fn on_bar(
        &mut self,
        host: &mut dyn qtm_runtime::sandbox::StrategyHost,
        _symbol: u32,
        _bar: &Bar,
    ) -> Result<(), String> {
        use qtm_runtime::model::{OrderRequest, Quantity, Side};
        self.bars += 1;
        let side = match self.bars % 10 {
            0 => Side::Buy,
            5 if self.bars > 5 => Side::Sell,
            _ => return Ok(()),
        };
        host.submit_order(OrderRequest::market("GOOG", side, Quantity::Units(1.0)))
            .map(|_| ())
    }
    fn on_fill(
        &mut self,
        _: &mut dyn qtm_runtime::sandbox::StrategyHost,
        _: u32,
        _: &qtm_runtime::model::Fill,
    ) -> Result<(), String> {
        self.fills
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
    fn wants_fills(&self) -> bool {
        self.wants_fills
    }
}

#[test]
fn a_strategy_that_ignores_fills_is_not_called_for_them_and_trades_the_same() {
    let bars: Vec<(usize, Bar)> = read_bars(&bundled_slice(2148))
        .into_iter()
        .map(|b| (0, b))
        .collect();
    let run = |wants_fills: bool| {
        let fills = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut sink = qtm_runtime::events::NullSink;
        let mut engine =
            qtm_runtime::engine::Engine::new(Default::default(), vec!["GOOG".into()], &mut sink);
        let runner = Counting {
            wants_fills,
            bars: 0,
            fills: fills.clone(),
        };
        engine
            .add_strategy(
                "count",
                Box::new(runner),
                &["GOOG".into()],
                10_000.0,
                Default::default(),
            )
            .unwrap();
        engine.process(&bars);
        let trades = engine.trades(0);
        (trades, fills.load(std::sync::atomic::Ordering::Relaxed))
    };
    let (with, called) = run(true);
    let (without, skipped) = run(false);
    assert!(with.len() > 100, "{} trades", with.len());
    assert_eq!(
        called,
        2 * with.len() as u64,
        "one on-fill per entry and exit"
    );
    assert_eq!(skipped, 0);
    assert_same_trades(&without, &with);
}

/// `bars` numbered bars as the CSV file `name` in `dir`; returns its source.
fn numbered_csv(dir: &Path, name: &str, bars: usize) -> DataSource {
    let path = dir.join(name);
    let mut text = String::from("ts,open,high,low,close,volume\n");
    for b in qtm_tests::numbered_bars(bars) {
        text.push_str(&format!(
            "{},{},{},{},{},{}\n",
            b.ts, b.open, b.high, b.low, b.close, b.volume
        ));
    }
    std::fs::write(&path, text).unwrap();
    DataSource::csv("NUM", path)
}

fn hostile(sandbox: &Sandbox, params: &[(&str, ParamValue)]) -> Box<dyn StrategyRunner> {
    let code = sandbox.load(&component(guests::HOSTILE)).unwrap();
    let params: Vec<Param> = params
        .iter()
        .map(|(n, v)| Param {
            name: n.to_string(),
            value: v.clone(),
        })
        .collect();
    Box::new(code.instantiate(&params, &["NUM".into()]).unwrap())
}

/// A strategy logging 100 lines a bar (the sandbox's per-call cap) for 30 bars: the outcome
/// keeps the newest 1,000 and counts the 2,000 older ones; the log sink gets all 3,000 in order.
#[test]
fn the_outcome_keeps_the_newest_log_lines_and_the_log_sink_gets_every_one() {
    let dir = tempfile::tempdir().unwrap();
    let source = numbered_csv(dir.path(), "num_30.csv", 30);
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let log_path = dir.path().join("strategy.log");
    let file = std::fs::File::create(&log_path).unwrap();
    let mut config = BacktestConfig::default();
    // One call per bar, so every bar's 100 lines pass the sandbox's per-call cap.
    config.engine.batch = false;
    assert_eq!(config.engine.log_lines, 1_000);
    let options = RunOptions {
        log_sink: Some(Box::new(WriterSink::new(std::io::BufWriter::new(file)))),
        ..Default::default()
    };
    let spam = [("attack", ParamValue::Choice("log-spam".into()))];
    let out = backtest::run_with(
        "hostile",
        hostile(&sandbox, &spam),
        std::slice::from_ref(&source),
        &config,
        options,
    )
    .unwrap();
    let text = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3_000);
    for (i, line) in lines.iter().enumerate() {
        let (ts, n) = (i / 100 + 1, i % 100);
        let prefix = format!("{ts}\tinfo\tspam {n} xxx");
        assert!(line.starts_with(&prefix), "line {i}: {line:.40}");
        assert!(line.ends_with('…'), "cut to the line cap: {line:.40}");
    }
    assert_eq!((out.logs.len(), out.logs_dropped), (1_000, 2_000));
    let kept: Vec<String> = out
        .logs
        .iter()
        .map(|(ts, _, m)| format!("{ts}\tinfo\t{m}"))
        .collect();
    assert_eq!(kept, lines[2_000..], "the newest lines, oldest first");

    // A smaller ring keeps fewer; without a sink nothing else changes.
    config.engine.log_lines = 10;
    let out = backtest::run(
        "hostile",
        hostile(&sandbox, &spam),
        std::slice::from_ref(&source),
        &config,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!((out.logs.len(), out.logs_dropped), (10, 2_990));
    assert_eq!(out.logs[9].2, lines[2_999].rsplit('\t').next().unwrap());
}

/// A strategy spending about a millisecond a bar over 20,000 bars (with fuel to spare, so
/// the sandbox does not stop it): a time limit or a cancel stops the run within a call or
/// two, not at the end of the chunk of 8,192 bars.
#[test]
fn a_time_limit_or_a_cancel_stops_a_slow_backtest_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let source = numbered_csv(dir.path(), "num_20000.csv", 20_000);
    let sandbox = Sandbox::new(SandboxConfig {
        limits: Limits {
            fuel_per_call: 1_000_000_000,
            deadline: Duration::from_secs(10),
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let slow = [
        ("attack", ParamValue::Choice("burn".into())),
        ("iterations", ParamValue::Int(300_000)),
    ];
    let mut config = BacktestConfig::default();
    config.engine.batch = false;

    let started = Instant::now();
    let options = RunOptions {
        time_limit: Some(TimeLimit {
            limit: Duration::from_millis(300),
            setting: "--max-seconds".into(),
        }),
        ..Default::default()
    };
    let e = backtest::run_with(
        "hostile",
        hostile(&sandbox, &slow),
        std::slice::from_ref(&source),
        &config,
        options,
    )
    .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(e, BacktestError::TimedOut { bars: 0, .. }),
        "the first chunk is cut short: {e}"
    );
    assert_eq!(
        e.to_string(),
        "backtest stopped after 0.3 s (--max-seconds); 0 bars processed"
    );
    assert!(took < Duration::from_secs(3), "stopped after {took:?}");

    let cancel = Arc::new(AtomicBool::new(false));
    let raise = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            cancel.store(true, Ordering::Relaxed);
        })
    };
    let started = Instant::now();
    let options = RunOptions {
        cancel: Some(cancel),
        ..Default::default()
    };
    let e = backtest::run_with(
        "hostile",
        hostile(&sandbox, &slow),
        std::slice::from_ref(&source),
        &config,
        options,
    )
    .unwrap_err();
    raise.join().unwrap();
    assert!(matches!(e, BacktestError::Cancelled { .. }), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Unhurried, the same strategy finishes a short run within the limit.
    let short = numbered_csv(dir.path(), "num_20.csv", 20);
    let options = RunOptions {
        time_limit: Some(TimeLimit {
            limit: Duration::from_secs(600),
            setting: "--max-seconds".into(),
        }),
        ..Default::default()
    };
    let out = backtest::run_with(
        "hostile",
        hostile(&sandbox, &slow),
        std::slice::from_ref(&short),
        &config,
        options,
    )
    .unwrap();
    assert_eq!(out.bars, 20);
    assert_eq!(out.final_state, qtm_runtime::events::StrategyState::Running);
}

/// The `qtm` binary next to this test's executable (cargo builds it for the workspace tests).
fn qtm_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let qtm = dir.join(format!("qtm{}", std::env::consts::EXE_SUFFIX));
    assert!(
        qtm.exists(),
        "{} is built by `cargo test --workspace` (./test.sh); with `-p qtm-tests` alone, run \
         `cargo build -p qtm-runtime` first",
        qtm.display()
    );
    qtm
}

/// `qtm backtest --log-out` writes every line past the 1,000 kept, and `--max-seconds` ends a
/// crawling run with the reason and a failing exit status.
#[test]
fn cli_log_out_has_every_line_and_max_seconds_fails_the_run() {
    let qtm = qtm_binary();
    let dir = tempfile::tempdir().unwrap();
    let strategy = dir.path().join("hostile.wasm");
    std::fs::write(&strategy, component(guests::HOSTILE)).unwrap();
    let short = numbered_csv(dir.path(), "num_30.csv", 30);
    let log = dir.path().join("out.log");
    let out = std::process::Command::new(&qtm)
        .arg("backtest")
        .arg("--strategy")
        .arg(&strategy)
        .arg("--data")
        .arg(short.path().unwrap())
        .args(["--param", "attack=log-spam", "--no-batch", "--json"])
        .arg("--log-out")
        .arg(&log)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (json["logs_kept"].as_u64(), json["logs_dropped"].as_u64()),
        (Some(1_000), Some(2_000))
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 3_000);
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("30\tinfo\tspam 99 ")
    );

    let long = numbered_csv(dir.path(), "num_20000.csv", 20_000);
    let started = Instant::now();
    let out = std::process::Command::new(&qtm)
        .arg("backtest")
        .arg("--strategy")
        .arg(&strategy)
        .arg("--data")
        .arg(long.path().unwrap())
        .args([
            "--param",
            "attack=burn",
            "--param",
            "iterations=300000",
            "--fuel",
            "1000000000",
            "--no-batch",
            "--max-seconds",
            "1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("backtest stopped after 1 s (--max-seconds)"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// The buy-and-hold return a strategy is measured against: the first close to the last of
/// the data, as backtesting.py reports it ("Buy & Hold Return [%]").
#[test]
fn buy_and_hold_return_is_first_close_to_last_close() {
    let file = bundled("spy_1m_2011.csv");
    let closes: Vec<f64> = read_bars(&file).iter().map(|b| b.close).collect();
    let expected = (closes[closes.len() - 1] / closes[0] - 1.0) * 100.0;
    let out = run_sma(&[file], &params("long_only", "equity", 1.0), 0.0001, true);
    let got = out.buy_and_hold_return_pct.unwrap();
    assert!((got - expected).abs() < 1e-9, "{got} vs {expected}");
    // SPY rose about 5 % in the first quarter of 2011 (126.39 → 132.72).
    assert!((got - 5.008).abs() < 0.01, "{got}");
}

/// A series in memory (the store's history, a generated one) backtests exactly as the same
/// bars read from a file, and a bad bar in it is refused as a file's row is, with its position.
#[test]
fn an_in_memory_series_runs_as_its_file_does_and_bad_bars_are_named() {
    let file = bundled_slice(2148);
    let bars = read_bars(&file);
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let code = sandbox.load(&component(guests::SMA_CROSS)).unwrap();
    let params = params("flip", "equity", 1.0);
    let run = |source: DataSource| {
        let instance = code.instantiate(&params, &["SPY".to_string()]).unwrap();
        backtest::run(
            "sma-cross",
            Box::new(instance),
            &[source],
            &BacktestConfig::default(),
            &mut |_| {},
        )
    };
    let from_file = run(DataSource::csv("SPY", file.clone())).unwrap();
    let from_memory = run(DataSource::series("SPY", bars.clone())).unwrap();
    assert!(from_file.metrics.n_trades > 10);
    assert_eq!(from_memory.trades_sha256, from_file.trades_sha256);
    assert_eq!(from_memory.bars, 2148);

    let mut bad = bars;
    bad[100].ts = bad[99].ts;
    let e = run(DataSource::series("SPY", bad)).unwrap_err().to_string();
    assert!(
        e.contains("SPY (in memory):101") && e.contains("duplicate"),
        "{e}"
    );
}
