//! `qtm evolve` end to end: the real binary, real components built from `strategies/`, real
//! daily data. Determinism across workers and across a kill and `--resume`, a test period the
//! selection never sees, walk-forward, NSGA-II, `--gp` champions that the rest of the product
//! takes, and the plain-words verdict.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qtm_tests::{component, guests, require_peer};
use serde_json::Value;

fn qtm() -> Command {
    qtm_tests::qtm_command()
}

/// sma-cross as a component file in `dir`.
fn sma_cross(dir: &Path) -> PathBuf {
    let path = dir.join("sma_cross.wasm");
    std::fs::write(&path, component(guests::SMA_CROSS)).unwrap();
    path
}

/// `qtm evolve args… --json`: the document, or a panic with stderr.
fn evolve_json(args: &[&str]) -> Value {
    let out = qtm()
        .arg("evolve")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "qtm evolve {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `qtm evolve args…` expected to fail: its stderr.
fn evolve_err(args: &[&str]) -> String {
    let out = qtm().arg("evolve").args(args).output().unwrap();
    assert!(
        !out.status.success(),
        "qtm evolve {} should have failed",
        args.join(" ")
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What a run's result depends on: everything but timings.
fn result_of(doc: &Value) -> Value {
    let mut v = doc.clone();
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for k in ["evaluations_per_sec", "elapsed_ms"] {
                    m.remove(k);
                }
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    // Workers are part of the saved settings, not of the result.
    if let Some(c) = v.pointer_mut("/manifest/config/search") {
        c.as_object_mut().unwrap().remove("workers");
    }
    v
}

fn sma_args<'a>(wasm: &'a str, data: &'a str) -> Vec<&'a str> {
    vec![
        "--strategy",
        wasm,
        "--data",
        data,
        "--param",
        "quantity=1",
        "--param",
        "sizing=equity",
        "--gene",
        "fast=2..60",
        "--gene",
        "slow=10..250",
    ]
}

#[test]
fn the_same_seed_gives_the_same_result_with_one_worker_or_two() {
    let goog = require_peer!("goog_1d.csv");
    let dir = tempfile::tempdir().unwrap();
    let wasm = sma_cross(dir.path());
    let (wasm, data) = (wasm.to_str().unwrap(), goog.to_str().unwrap());
    let mut args = sma_args(wasm, data);
    args.extend(["--population", "24", "--generations", "6"]);
    let one = evolve_json(&[args.clone(), vec!["--seed", "11", "--workers", "1"]].concat());
    let two = evolve_json(&[args.clone(), vec!["--seed", "11", "--workers", "2"]].concat());
    assert_eq!(result_of(&one), result_of(&two));
    // The result has what the issue names, with sane values.
    let best = &one["best"];
    assert!(best["params"]["fast"].as_i64().unwrap() <= 60);
    assert_eq!(best["trades_sha256"].as_str().unwrap().len(), 64);
    for k in ["train", "test"] {
        assert!(best[k]["sharpe"].is_number(), "{k}: {}", best[k]);
    }
    for k in ["psr", "dsr", "min_trl", "pbo", "spa_pvalue"] {
        assert!(one[k].is_number(), "{k} = {}", one[k]);
    }
    let (psr, dsr, pbo) = (
        one["psr"].as_f64().unwrap(),
        one["dsr"].as_f64().unwrap(),
        one["pbo"].as_f64().unwrap(),
    );
    assert!((0.0..=1.0).contains(&psr) && (0.0..=1.0).contains(&pbo));
    // Deflating by the trials can only lower the probability.
    assert!(dsr <= psr, "dsr {dsr} > psr {psr}");
    // 1 random generation of 24 and 5 bred ones of 24 less 3 island elites each.
    assert_eq!(one["n_trials"], 24 + 5 * 21);
    let distinct = one["n_distinct"].as_u64().unwrap();
    assert!(distinct <= 24 + 5 * 21 && distinct > 24, "{distinct}");
    assert!(one["n_effective"].as_u64().unwrap() >= 1);
    assert_eq!(one["random_search"]["evaluations"], one["n_trials"]);
    assert!(one["buy_and_hold"]["test"]["total_return_pct"].is_number());
    assert_eq!(one["seed"], 11);
    assert_eq!(one["manifest"]["data"][0]["bars"], 2148);
    assert_eq!(one["manifest"]["data"][0]["symbol"], "GOOG");
    // A different seed searches differently.
    let other = evolve_json(&[args, vec!["--seed", "12", "--workers", "2"]].concat());
    assert_ne!(
        result_of(&one)["n_distinct"]
            .as_u64()
            .map(|n| (n, one["best"]["hash"].clone())),
        result_of(&other)["n_distinct"]
            .as_u64()
            .map(|n| (n, other["best"]["hash"].clone()))
    );
}

#[test]
fn a_killed_run_resumes_to_the_result_of_an_uninterrupted_one() {
    let goog = require_peer!("goog_1d.csv");
    let dir = tempfile::tempdir().unwrap();
    let wasm = sma_cross(dir.path());
    let out = dir.path().join("run");
    let (wasm, data) = (wasm.to_str().unwrap(), goog.to_str().unwrap());
    let mut args = sma_args(wasm, data);
    args.extend([
        "--population",
        "16",
        "--generations",
        "40",
        "--seed",
        "5",
        "--workers",
        "2",
    ]);
    let whole = evolve_json(&args);

    let mut child = qtm()
        .arg("evolve")
        .args(&args)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let checkpoint = out.join("checkpoint.json");
    let started = Instant::now();
    let mut killed_at = None;
    while started.elapsed() < Duration::from_secs(120) {
        if let Ok(text) = std::fs::read_to_string(&checkpoint)
            && let Ok(v) = serde_json::from_str::<Value>(&text)
        {
            let generation = v["checkpoint"]["current"]["generation"]
                .as_u64()
                .unwrap_or(0);
            if generation >= 3 {
                child.kill().unwrap();
                killed_at = Some(generation);
                break;
            }
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait().unwrap();
    let killed_at = killed_at.expect("the run was killed part-way (it ended first)");
    assert!(killed_at < 40, "{killed_at}");
    assert!(
        !out.join("result.json").exists(),
        "the killed run wrote no result"
    );

    let resumed = evolve_json(&["--resume", out.to_str().unwrap(), "--workers", "1"]);
    assert_eq!(result_of(&resumed)["best"], result_of(&whole)["best"]);
    assert_eq!(
        resumed["best"]["trades_sha256"],
        whole["best"]["trades_sha256"]
    );
    assert_eq!(result_of(&resumed), result_of(&whole));
    // The ledger has every distinct candidate, with lineage for the bred ones.
    let ledger = std::fs::read_to_string(out.join("ledger.csv")).unwrap();
    assert_eq!(
        ledger.lines().count() - 1,
        whole["n_distinct"].as_u64().unwrap() as usize
    );
    assert!(
        ledger.starts_with("hash,generation,seen,parents,"),
        "{ledger:.200}"
    );
    let bred = ledger
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(1) != Some("1"))
        .collect::<Vec<_>>();
    assert!(!bred.is_empty());
    for row in bred {
        let parents = row.split(',').nth(3).unwrap();
        assert_eq!(parents.split(' ').count(), 2, "{row}");
    }
    assert!(out.join("report.html").is_file());

    // Resuming with other settings is refused, not silently mixed.
    let mut other = sma_args(wasm, data);
    other.extend(["--population", "20", "--generations", "40", "--seed", "5"]);
    let err = evolve_err(&[other, vec!["--resume", out.to_str().unwrap()]].concat());
    assert!(err.contains("started with other settings"), "{err}");
}

/// The file's header and rows as lines.
fn csv_lines(path: &Path) -> (String, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines().map(str::to_string);
    let header = lines.next().unwrap();
    (header, lines.collect())
}

#[test]
fn selection_never_sees_the_test_period_and_its_result_is_an_ordinary_backtest() {
    let goog = require_peer!("goog_1d.csv");
    let dir = tempfile::tempdir().unwrap();
    let (header, rows) = csv_lines(&goog);
    // The default split trains on the first 70 % of the bar times.
    let cut = (rows.len() as f64 * 0.7) as usize;
    // The same history with every test-period price moved: a search that peeked would
    // choose differently.
    let altered = dir.path().join("goog_altered.csv");
    let mut text = format!("{header}\n");
    for (i, row) in rows.iter().enumerate() {
        if i < cut {
            text.push_str(row);
        } else {
            let f: Vec<&str> = row.split(',').collect();
            let scale = if i % 2 == 0 { 1.03 } else { 0.97 };
            let px = |s: &str| format!("{:.4}", s.parse::<f64>().unwrap() * scale);
            text.push_str(&format!(
                "{},{},{},{},{},{}",
                f[0],
                px(f[1]),
                px(f[2]),
                px(f[3]),
                px(f[4]),
                f[5]
            ));
        }
        text.push('\n');
    }
    std::fs::write(&altered, text).unwrap();
    let rules_path = dir.path().join("sma.rules");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../strategies/rules/examples/sma-cross.rules"),
        &rules_path,
    )
    .unwrap();
    let run = |data: &Path, out: &Path| {
        evolve_json(&[
            "--rules",
            rules_path.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--symbol",
            "GOOG",
            "--population",
            "16",
            "--generations",
            "4",
            "--seed",
            "2",
            "--out",
            out.to_str().unwrap(),
            "--promote",
        ])
    };
    let real = run(&goog, &dir.path().join("real"));
    let fake = run(&altered, &dir.path().join("fake"));
    assert_eq!(real["best"]["params"], fake["best"]["params"]);
    assert_eq!(
        result_of(&real)["best"]["train"],
        result_of(&fake)["best"]["train"]
    );
    assert_eq!(real["n_distinct"], fake["n_distinct"]);
    assert_ne!(
        real["best"]["test"]["total_return_pct"],
        fake["best"]["test"]["total_return_pct"]
    );

    // --promote wrote the program with the champion's values as defaults; backtested on the
    // test period alone it trades exactly as the report says.
    let champion = dir.path().join("real/champion.rules");
    let text = std::fs::read_to_string(&champion).unwrap();
    let fast = real["best"]["params"]["fast"].as_i64().unwrap();
    assert!(
        text.contains(&format!("param fast = int({fast},")),
        "{text}"
    );
    let test_csv = dir.path().join("goog_test.csv");
    let mut t = format!("{header}\n");
    for row in &rows[cut..] {
        t.push_str(row);
        t.push('\n');
    }
    std::fs::write(&test_csv, t).unwrap();
    let out = qtm()
        .args(["backtest", "--rules"])
        .arg(&champion)
        .arg("--data")
        .arg(&test_csv)
        .args(["--symbol", "GOOG", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let backtest: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(backtest["trades_sha256"], real["best"]["trades_sha256"]);
    assert_eq!(backtest["sharpe"], real["best"]["test"]["sharpe"]);
}

#[test]
fn gp_breeds_rule_programs_the_rest_of_the_product_takes() {
    let goog = require_peer!("goog_1d.csv");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gp");
    let doc = evolve_json(&[
        "--gp",
        "--data",
        goog.to_str().unwrap(),
        "--population",
        "8",
        "--generations",
        "2",
        "--seed",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    let rules = doc["best"]["rules"].as_str().unwrap();
    assert!(rules.contains("entry_long ="), "{rules}");
    let champion = out.join("champion.rules");
    assert_eq!(std::fs::read_to_string(&champion).unwrap(), rules);
    let check = qtm()
        .args(["rules", "check"])
        .arg(&champion)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let nodes = rules
        .lines()
        .next()
        .and_then(|l| l.split(": ").nth(1))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap();
    assert!(nodes <= 40, "{rules}");
    let backtest = qtm()
        .args(["backtest", "--rules"])
        .arg(&champion)
        .arg("--data")
        .arg(&goog)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        backtest.status.success(),
        "{}",
        String::from_utf8_lossy(&backtest.stderr)
    );
}

#[test]
fn walk_forward_and_nsga_ii_runs_report_their_folds_and_a_pareto_champion() {
    let goog = require_peer!("goog_1d.csv");
    let dir = tempfile::tempdir().unwrap();
    let wasm = sma_cross(dir.path());
    let (wasm, data) = (wasm.to_str().unwrap(), goog.to_str().unwrap());
    let mut args = sma_args(wasm, data);
    args.extend(["--population", "16", "--generations", "3", "--seed", "9"]);
    let wf = evolve_json(
        &[
            args.clone(),
            vec!["--walk-forward", "anchored", "--folds", "3"],
        ]
        .concat(),
    );
    let folds = wf["folds"].as_array().unwrap();
    assert_eq!(folds.len(), 3);
    let first_train = folds[0]["train"]["from"].as_i64().unwrap();
    for (i, f) in folds.iter().enumerate() {
        // Anchored: every training window starts at the first bar and ends before its test.
        assert_eq!(f["train"]["from"].as_i64().unwrap(), first_train);
        assert!(f["train"]["to"].as_i64() < f["test"]["from"].as_i64());
        if i > 0 {
            assert!(folds[i - 1]["test"]["to"].as_i64() < f["test"]["from"].as_i64());
        }
    }
    // The concatenated test covers every fold's test days.
    let test_bars = wf["best"]["test"]["bars"].as_u64().unwrap();
    assert!(
        test_bars > 3 * 2148 / 4 - 10 && test_bars <= 3 * 2148 / 4 + 3,
        "{test_bars}"
    );

    let rolling = evolve_json(
        &[
            args.clone(),
            vec!["--walk-forward", "rolling", "--folds", "3"],
        ]
        .concat(),
    );
    let r = rolling["folds"].as_array().unwrap();
    assert!(r[1]["train"]["from"].as_i64() > r[0]["train"]["from"].as_i64());

    let multi = evolve_json(&[args, vec!["--objective", "multi"]].concat());
    assert_eq!(multi["objective"], "multi");
    assert!(multi["best"]["params"]["slow"].is_number());
}

#[test]
fn the_verdict_says_in_plain_words_when_a_champion_may_be_luck() {
    let goog = require_peer!("goog_1d.csv");
    let dir = tempfile::tempdir().unwrap();
    let wasm = sma_cross(dir.path());
    let (wasm, data) = (wasm.to_str().unwrap(), goog.to_str().unwrap());
    let mut args = sma_args(wasm, data);
    args.extend(["--population", "24", "--generations", "5"]);
    let mut warned = 0;
    for seed in ["1", "2", "3"] {
        let doc = evolve_json(&[args.clone(), vec!["--seed", seed]].concat());
        let warnings: Vec<&str> = doc["verdict"]["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap())
            .collect();
        let says = |what: &str| warnings.iter().any(|w| w.contains(what));
        let dsr = doc["dsr"].as_f64().unwrap();
        assert_eq!(says("Deflated Sharpe Ratio is"), dsr < 0.95, "{warnings:?}");
        let pbo = doc["pbo"].as_f64().unwrap();
        assert_eq!(says("Probability of Backtest Overfitting"), pbo > 0.5);
        let (mine, random) = (
            doc["best"]["test"]["sharpe"].as_f64().unwrap(),
            doc["random_search"]["test"]["sharpe"].as_f64().unwrap(),
        );
        assert_eq!(
            says("does not beat the equal-budget random search"),
            mine <= random
        );
        assert_eq!(doc["verdict"]["passed"], warnings.is_empty());
        warned += usize::from(!warnings.is_empty());
    }
    // An SMA cross tuned on one stock's history is not an edge the statistics accept.
    assert!(warned >= 1);
}

#[test]
fn bad_input_is_refused_with_what_was_wrong() {
    let goog = require_peer!("goog_1d.csv");
    let dir = tempfile::tempdir().unwrap();
    let wasm = sma_cross(dir.path());
    let (wasm, data) = (wasm.to_str().unwrap(), goog.to_str().unwrap());
    let base = ["--strategy", wasm, "--data", data];
    let cases: &[(&[&str], &str)] = &[
        (&["--param", "nope=1"], "has no parameter `nope`"),
        (
            &["--gene", "fast=0..5"],
            "leaves the declared range 1..=500",
        ),
        (&["--gene", "fast=a..b"], "expected NAME=LO..HI"),
        (
            &["--gene", "mode=1..2"],
            "only numeric parameters take a range",
        ),
        (
            &[
                "--train",
                "2004-13-01..2008-01-01",
                "--test",
                "2009-01-01..2010-01-01",
            ],
            "expected ISO dates",
        ),
        (
            &[
                "--train",
                "2010-01-01..2012-01-01",
                "--test",
                "2008-01-01..2009-01-01",
            ],
            "must end before the test period starts",
        ),
        (&["--population", "1"], "--population must be at least 2"),
        (
            &["--islands", "9", "--population", "16"],
            "fewer than 2 candidates",
        ),
        (&["--commission=-1"], "--commission"),
        (&["--gp"], "cannot be used with"),
    ];
    for (extra, expected) in cases {
        let err = evolve_err(&[&base[..], extra].concat());
        assert!(err.contains(expected), "{extra:?}: {err}");
    }
    let err = evolve_err(&["--resume", dir.path().join("none").to_str().unwrap()]);
    assert!(err.contains("checkpoint.json"), "{err}");
    let err = evolve_err(&["--data", data]);
    assert!(
        err.contains("--strategy FILE.wasm, --rules FILE.rules or --gp"),
        "{err}"
    );
}

#[test]
fn a_rule_program_loaded_from_the_compiled_rules_guest_is_the_compiled_program() {
    use qtm_runtime::backtest::{self, BacktestConfig, DataSource};
    use qtm_runtime::sandbox::{Sandbox, SandboxConfig};
    let goog = require_peer!("goog_1d.csv");
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let variants = sandbox
        .data_variants(qtm_rules_component::reference_component())
        .unwrap();
    let program = "param n = int(20, 2, 100)\nlet m = sma(close, n)\nentry_long = crossover(close, m)\nexit_long = crossunder(close, m)\nsize = equity_fraction(1.0)\n";
    let compiled = qtm_rules_component::compile("variant", program.as_bytes()).unwrap();
    let patched = sandbox
        .load_variant(&variants, &compiled.component)
        .unwrap();
    let full = sandbox.load(&compiled.component).unwrap();
    assert_eq!(patched.sha256(), full.sha256());
    assert_eq!(patched.info(), full.info());
    assert_eq!(patched.info().params[0].name, "n");
    // Not compiled: the base's code with the program written into its data.
    assert!(patched.from_variant() && !full.from_variant());
    let run = |code: &std::sync::Arc<qtm_runtime::sandbox::StrategyCode>| {
        let inst = code.instantiate(&[], &["GOOG".to_string()]).unwrap();
        backtest::run(
            "v",
            Box::new(inst),
            &[DataSource::csv("GOOG", goog.clone())],
            &BacktestConfig::default(),
            &mut |_| {},
        )
        .unwrap()
    };
    let (a, b) = (run(&patched), run(&full));
    assert!(a.metrics.n_trades > 10);
    assert_eq!(a.trades_sha256, b.trades_sha256);
    // A component that is not a data variant of the base is compiled as any other.
    let sma = sandbox
        .load_variant(&variants, &component(guests::SMA_CROSS))
        .unwrap();
    assert_eq!(sma.info().name, "sma-cross");
    assert!(!sma.from_variant());
}
