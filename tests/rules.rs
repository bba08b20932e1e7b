//! Rule programs run inside the sandbox: the SMA-cross program trades exactly as the
//! hand-written sma-cross on every data file, bracket exits reach the orders, and the CLI
//! (`qtm rules check`, `qtm backtest --rules`) reports problems at their `FILE:line:col`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use qtm_runtime::backtest::{self, BacktestConfig, BacktestOutcome, DataSource};
use qtm_runtime::model::{Param, ParamValue, Quantity, Side};
use qtm_runtime::sandbox::{Sandbox, SandboxConfig, StrategyCode};
use qtm_tests::{RecordingHost, bundled, component, guests, numbered_bars, peer_data};

fn examples() -> PathBuf {
    qtm_tests::bundled_data().join("../strategies/rules/examples")
}

fn rules_code(file: &str) -> Arc<StrategyCode> {
    let text = std::fs::read(examples().join(file)).unwrap();
    let compiled = qtm_rules_component::compile(file.trim_end_matches(".rules"), &text).unwrap();
    Sandbox::new(SandboxConfig::default())
        .unwrap()
        .load(&compiled.component)
        .unwrap()
}

fn run(code: &Arc<StrategyCode>, params: &[Param], data: &Path) -> BacktestOutcome {
    let source = DataSource::csv("X", data.to_path_buf());
    let instance = code
        .instantiate(params, std::slice::from_ref(&source.symbol))
        .unwrap();
    let mut config = BacktestConfig::default();
    config.engine.exchange.commission = 0.001;
    backtest::run("t", Box::new(instance), &[source], &config, &mut |_| {}).unwrap()
}

/// Every peer CSV file but the 1 M-bar benchmark file, and the bundled one.
fn data_files() -> Vec<PathBuf> {
    let mut files = vec![bundled("spy_1m_2011.csv")];
    match peer_data() {
        Some(dir) => {
            let mut peer: Vec<PathBuf> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "csv"))
                .filter(|p| {
                    !p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("bench_1m")
                })
                .collect();
            peer.sort();
            files.extend(peer);
        }
        None => qtm_tests::skip("peer data missing: only the bundled file is compared"),
    }
    files
}

fn int(name: &str, v: i64) -> Param {
    Param {
        name: name.into(),
        value: ParamValue::Int(v),
    }
}

/// The equivalences: the flip program against `mode=flip sizing=equity quantity=1`,
/// the long-only program against `mode=long_only`, on every file, same `trades_sha256`.
#[test]
fn the_sma_programs_trade_exactly_as_sma_cross_on_every_file() {
    let sma = Sandbox::new(SandboxConfig::default())
        .unwrap()
        .load(&component(guests::SMA_CROSS))
        .unwrap();
    let flip = rules_code("sma-cross.rules");
    let long = rules_code("sma-cross-long.rules");
    let mut compared = 0;
    for file in data_files() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for (fast, slow) in [(10, 30), (5, 20)] {
            for (mode, rules) in [("flip", &flip), ("long_only", &long)] {
                let mut p = qtm_tests::sma_params(mode, "equity", 1.0);
                p[0] = int("fast", fast);
                p[1] = int("slow", slow);
                let want = run(&sma, &p, &file);
                let got = run(rules, &[int("fast", fast), int("slow", slow)], &file);
                assert!(
                    want.metrics.n_trades > 0,
                    "{name} {mode}: sma-cross made no trades"
                );
                assert_eq!(
                    (got.trades_sha256, got.metrics.n_trades),
                    (want.trades_sha256, want.metrics.n_trades),
                    "{name} {mode} {fast}/{slow}"
                );
                assert_eq!(got.metrics.final_equity, want.metrics.final_equity);
                compared += 1;
            }
        }
    }
    assert!(compared >= 4);
}

#[test]
fn the_component_describes_the_programs_typed_parameters() {
    let code = rules_code("rsi-reversion.rules");
    let info = code.info();
    assert_eq!(info.name, "rsi-reversion");
    let names: Vec<&str> = info.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["period", "oversold", "overbought", "exit", "short", "stop"]
    );
    // Parameters are checked by the guest as for any strategy.
    let e = code
        .instantiate(&[int("period", 1)], &["X".into()])
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("parameter `period` = 1 is outside 2..=100"),
        "{e}"
    );
}

/// The rules guest as built, with its program area still empty: it loads and describes itself,
/// and refuses to be configured with the way to give it a program.
#[test]
fn the_guest_without_a_program_refuses_configure() {
    let code = Sandbox::new(SandboxConfig::default())
        .unwrap()
        .load(&component(guests::RULES))
        .unwrap();
    assert_eq!(code.info().name, "rules");
    assert!(code.info().params.is_empty());
    let e = code
        .instantiate(&[], &["X".into()])
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        e,
        "the strategy refused its configuration: no rule program in this module: build one with \
         `qtm backtest --rules FILE.rules`"
    );
}

/// `stop_loss = pct(5)` and `take_profit = pct(10)` become the entry's bracket prices.
#[test]
fn stop_loss_and_take_profit_are_bracket_prices_from_the_entry_close() {
    let src =
        "entry_long = close > open\nsize = units(2)\nstop_loss = pct(5)\ntake_profit = pct(10)\n";
    let compiled = qtm_rules_component::compile("brackets", src.as_bytes()).unwrap();
    let code = Sandbox::new(SandboxConfig::default())
        .unwrap()
        .load(&compiled.component)
        .unwrap();
    let mut inst = code.instantiate(&[], &["X".into()]).unwrap();
    let mut host = RecordingHost {
        fill_instantly: true,
        ..Default::default()
    };
    let bars = numbered_bars(3);
    for b in &bars {
        inst.on_bar(&mut host, 0, b).unwrap();
    }
    // The first bar enters (close > open); later bars are already long.
    assert_eq!(host.orders.len(), 1);
    let o = &host.orders[0];
    assert_eq!(o.side, Side::Buy);
    assert_eq!(o.quantity, Quantity::Units(2.0));
    let close = bars[0].close;
    assert_eq!(o.stop_loss, Some(close * (1.0 - 5.0 / 100.0)));
    assert_eq!(o.take_profit, Some(close * (1.0 + 10.0 / 100.0)));
}

/// A hot swap carries the program's state (indicators, crosses, lookbacks, side): the copy
/// continues with exactly the original's orders. Another program's state is refused.
#[test]
fn snapshot_restore_continues_identically() {
    let bars = qtm_tests::read_bars(&qtm_tests::bundled_slice(2148));
    let src = "param fast = int(10, 2, 200)\nlet f = sma(close, fast)\nlet s = ema(close, 30)\n\
               entry_long = crossover(f, s) and close[3] < close\nentry_short = crossunder(f, s)\n\
               size = equity_fraction(1.0)\n";
    let compiled = qtm_rules_component::compile("swap", src.as_bytes()).unwrap();
    let code = Sandbox::new(SandboxConfig::default())
        .unwrap()
        .load(&compiled.component)
        .unwrap();
    let symbols = vec!["SPY".to_string()];
    let mut original = code.instantiate(&[], &symbols).unwrap();
    let mut host = RecordingHost {
        fill_instantly: true,
        ..Default::default()
    };
    for bar in &bars[..1000] {
        original.on_bar(&mut host, 0, bar).unwrap();
    }
    let state = original.snapshot().unwrap();
    let mut copy = code.instantiate(&[], &symbols).unwrap();
    copy.restore(&state).unwrap();
    assert_eq!(copy.snapshot().unwrap(), state);
    let (mut h1, mut h2) = (RecordingHost::default(), RecordingHost::default());
    h1.fill_instantly = true;
    h2.fill_instantly = true;
    h1.positions = host.positions.clone();
    h2.positions = host.positions.clone();
    for bar in &bars[1000..] {
        original.on_bar(&mut h1, 0, bar).unwrap();
        copy.on_bar(&mut h2, 0, bar).unwrap();
    }
    assert!(h1.orders.len() > 10, "{}", h1.orders.len());
    assert_eq!(h1.orders, h2.orders);
    assert_eq!(original.snapshot().unwrap(), copy.snapshot().unwrap());

    // Other parameter values make another plan: its state is refused, the instance lives on.
    let mut other = code.instantiate(&[int("fast", 12)], &symbols).unwrap();
    let e = other.restore(&state).unwrap_err();
    assert_eq!(
        e.to_string(),
        "restore failed: bad snapshot: the state is of another rule program or other parameter values"
    );
    assert!(other.is_active());
}

/// The deepest expression the checker accepts also checks inside the guest, whose wasm stack
/// is the sandbox's 512 KiB (the guest parses its program again at `describe`).
#[test]
fn the_deepest_program_runs_inside_the_sandbox() {
    let src = format!(
        "entry_long = {}close{} > 1\nsize = units(1)\n",
        "abs(".repeat(62),
        ")".repeat(62)
    );
    let compiled = qtm_rules_component::compile("deep", src.as_bytes()).unwrap();
    let code = Sandbox::new(SandboxConfig::default())
        .unwrap()
        .load(&compiled.component)
        .unwrap();
    let mut inst = code.instantiate(&[], &["X".into()]).unwrap();
    let mut host = RecordingHost::default();
    for b in numbered_bars(2) {
        inst.on_bar(&mut host, 0, &b).unwrap();
    }
    assert_eq!(host.orders.len(), 1);
    let too_deep = format!(
        "entry_long = {}close{} > 1\nsize = units(1)\n",
        "abs(".repeat(64),
        ")".repeat(64)
    );
    let e = qtm_rules_component::compile("deep", too_deep.as_bytes()).unwrap_err();
    assert_eq!(
        e[0].to_string(),
        "1:270: expression nested more than 64 levels deep"
    );
}

/// The guest parses its program again at `configure`, on fuel. Programs of every shape at the
/// token cap (2,000) and the byte cap (32 KiB) stay under 60 % of the default budget of
/// 10,000,000.
#[test]
fn programs_at_the_token_cap_fit_the_default_budget() {
    let fill = |head: &str, line: &dyn Fn(usize) -> String, per_line: usize, tail: &str| {
        let mut s = String::from(head);
        for i in 1..(1_990 / per_line) {
            s.push_str(&line(i));
        }
        s.push_str(tail);
        s
    };
    let tail = "entry_long = close > 0\nsize = units(1)\n";
    let shapes = [
        (
            "let chains",
            fill(
                "let a0 = sma(close, 5)\n",
                &|i| format!("let a{i} = max(a{}, ema(close, {}))\n", i - 1, i % 40 + 2),
                16,
                tail,
            ),
        ),
        (
            "parentheses",
            fill(
                "",
                &|i| format!("let p{i} = {}close{}\n", "(".repeat(60), ")".repeat(60)),
                124,
                tail,
            ),
        ),
        (
            "sums",
            fill(
                "",
                &|i| format!("let s{i} = 1{}\n", " + 1".repeat(60)),
                124,
                tail,
            ),
        ),
        (
            "calls",
            fill(
                "",
                &|i| format!("let c{i} = {}close{}\n", "abs(".repeat(60), ")".repeat(60)),
                184,
                tail,
            ),
        ),
        // 63 parameters of 2 long choices each (the text cap: 8 KiB of names and choices).
        (
            "params",
            fill(
                "",
                &|i| {
                    format!(
                        "param q{i:02} = choice(\"{}\", \"{}\")\n",
                        "x".repeat(61),
                        "y".repeat(61)
                    )
                },
                31,
                tail,
            ),
        ),
        // The byte cap (32 KiB), mostly comments, around a let chain at the token cap.
        (
            "comments",
            fill(
                "let a0 = sma(close, 5)\n",
                &|i| {
                    format!(
                        "let a{i} = max(a{}, ema(close, {})) {}\n",
                        i - 1,
                        i % 40 + 2,
                        "#".repeat(215)
                    )
                },
                16,
                tail,
            ),
        ),
        (
            "nots",
            fill(
                "",
                &|i| format!("let n{i} = {}true\n", "not ".repeat(60)),
                64,
                tail,
            ),
        ),
        (
            "indicators",
            fill(
                "",
                &|i| format!("let m{i} = sma(close, {})\n", i % 500 + 1),
                9,
                "entry_long = m1 > 0\nsize = units(1)\n",
            ),
        ),
    ];
    for (name, src) in shapes {
        let compiled = qtm_rules_component::compile("probe", src.as_bytes())
            .unwrap_or_else(|d| panic!("{name}: {}", d[0]));
        let code = Sandbox::new(SandboxConfig::default())
            .unwrap()
            .load(&compiled.component)
            .unwrap();
        let inst = code
            .instantiate(&[], &["X".into()])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let fuel = inst.stats().fuel;
        println!("{name}: {} bytes, configure {fuel} fuel", src.len());
        assert!(fuel < 6_000_000, "{name}: configure used {fuel} fuel");
    }
}

fn qtm() -> Command {
    qtm_tests::qtm_command()
}

#[test]
fn rules_check_prints_the_typed_parameters() {
    let out = qtm()
        .args(["rules", "check"])
        .arg(examples().join("sma-cross.rules"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let body: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(
        body,
        [
            "  param fast  int    default 10, 2..=200, step 1",
            "  param slow  int    default 30, 5..=500, step 1",
            "  rules entry_long, entry_short",
        ]
    );
}

#[test]
fn rules_check_reports_every_error_at_file_line_col() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.rules");
    std::fs::write(
        &file,
        "param fast = int(10, 2, 200\n\
         let f = sma(clos, fast)\n\
         let g = rsi(close, 0)\n\
         entry_long = f > 1 and 3\n\
         exit_long = crossover(close, open) or foo(1)\n\
         size = units(\"x\")\n\
         stop_loss = 5\n",
    )
    .unwrap();
    let out = qtm().args(["rules", "check"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let f = file.display().to_string();
    let want: Vec<String> = [
        "2:1: expected `,` or `)` in the arguments starting at 1:14, found `let`",
        "2:13: unknown name `clos`",
        "3:20: period 0 of `rsi` is not a whole number from 1 to 100000",
        "5:39: unknown function `foo` (functions: sma, ema, rsi, atr, macd, macd_signal, bb_upper, bb_lower, highest, lowest, crossover, crossunder, abs, min, max)",
        "6:14: `units` needs a number or series, found string",
        "7:13: `stop_loss` must be `pct(x)` (percent of the entry price)",
    ]
    .iter()
    .map(|l| format!("{f}:{l}"))
    .chain([format!("error: {f}: 6 problems")])
    .collect();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().collect::<Vec<_>>(), want);
}

#[test]
fn every_example_checks_and_backtests_from_the_cli() {
    let data = qtm_tests::bundled_slice(5000);
    // (file, closed trades on the first 5,000 bundled bars): exact, so a change in the
    // language's semantics shows here.
    for (file, trades) in [
        ("sma-cross.rules", 184),
        ("sma-cross-long.rules", 92),
        ("rsi-reversion.rules", 35),
        ("donchian-breakout.rules", 77),
    ] {
        let path = examples().join(file);
        let check = qtm().args(["rules", "check"]).arg(&path).output().unwrap();
        assert!(check.status.success(), "{file}: {check:?}");
        let out = qtm()
            .args(["backtest", "--json", "--no-cache", "--rules"])
            .arg(&path)
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap();
        assert!(out.status.success(), "{file}: {out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["strategy"], file.trim_end_matches(".rules"));
        assert_eq!(v["n_trades"], trades, "{file}");
    }
}

#[test]
fn backtest_with_a_bad_program_prints_its_problems_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.rules");
    std::fs::write(&file, "entry_long = close >\n").unwrap();
    let out = qtm()
        .args(["backtest", "--rules"])
        .arg(&file)
        .arg("--data")
        .arg(bundled("spy_1m_2011.csv"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let f = file.display().to_string();
    assert_eq!(
        String::from_utf8(out.stderr)
            .unwrap()
            .lines()
            .collect::<Vec<_>>(),
        [
            format!("{f}:1:21: expected a value, found the end of the line"),
            format!("error: {f}: 1 problem"),
        ]
    );
}

/// What the interpreter costs inside the sandbox: on the bundled minute bars the SMA-cross
/// program places exactly sma-cross's orders for under 2.5 times its fuel a bar (measured:
/// 969 against 501; the wall time of a backtest differs far less, since handing a bar over
/// costs both the same: docs/BENCHMARKS.md).
#[test]
fn the_sma_program_places_sma_cross_orders_for_under_2_5_times_its_fuel() {
    let bars = qtm_tests::read_bars(&bundled("spy_1m_2011.csv"));
    let sma = Sandbox::new(SandboxConfig::default())
        .unwrap()
        .load(&component(guests::SMA_CROSS))
        .unwrap();
    let rules = rules_code("sma-cross.rules");
    let mut results = Vec::new();
    for (name, code, params) in [
        (
            "sma-cross",
            &sma,
            qtm_tests::sma_params("flip", "equity", 1.0),
        ),
        ("rules", &rules, vec![]),
    ] {
        let mut inst = code.instantiate(&params, &["SPY".into()]).unwrap();
        let before = inst.stats().fuel;
        let mut host = RecordingHost {
            fill_instantly: true,
            ..Default::default()
        };
        host.bars = bars.iter().map(|b| (0, *b)).collect();
        while inst.on_bars(&mut host).unwrap() > 0 {}
        let per_bar = (inst.stats().fuel - before) / bars.len() as u64;
        println!("{name}: {per_bar} fuel a bar, {} orders", host.orders.len());
        results.push((per_bar, host.orders));
    }
    let (hand, rules) = (&results[0], &results[1]);
    assert_eq!(rules.1, hand.1);
    assert!(rules.1.len() > 1000);
    assert!(
        rules.0 * 2 < hand.0 * 5,
        "{} fuel a bar against {}",
        rules.0,
        hand.0
    );
}
