//! The `qtm strategy` commands, run as a user would: scaffold a crate, build it into a
//! component, inspect it.

use std::path::Path;
use std::process::{Command, Output};

#[path = "support/data.rs"]
mod data;

fn qtm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qtm"))
        .args(args)
        .output()
        .expect("run qtm")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn new_build_inspect_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let crate_dir = dir.path().join("my-momentum");
    let out = qtm(&["strategy", "new", crate_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(crate_dir.join("src/lib.rs").is_file());

    // Scaffolding again into the same folder is refused.
    let again = qtm(&["strategy", "new", crate_dir.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );

    // A shared target dir keeps repeated test runs incremental.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scaffolded-strategies");
    let out = qtm(&[
        "strategy",
        "build",
        crate_dir.to_str().unwrap(),
        "--target-dir",
        target.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let component = text(&out.stdout).trim().to_string();
    assert!(
        component.ends_with("component/my_momentum.wasm"),
        "{component}"
    );

    let out = qtm(&["strategy", "inspect", &component, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["describe"]["name"], "my-momentum");
    assert_eq!(json["contract"], "qtm:strategy@0.2.0");
    assert_eq!(
        json["imports"],
        serde_json::json!(["qtm:strategy/types@0.2.0", "qtm:strategy/host@0.2.0"])
    );
    assert_eq!(json["describe"]["params"][0]["name"], "period");
    assert!(json["size"].as_u64().unwrap() > 1000);
    assert!(json["compile_ms"].as_f64().unwrap() > 0.0);

    let out = qtm(&["strategy", "inspect", &component]);
    let shown = text(&out.stdout);
    assert!(shown.starts_with("my-momentum 0.1.0"), "{shown}");
    assert!(shown.contains("period       int 2..=500 step 1"), "{shown}");

    // Backtest it through the CLI with every output.
    let data = data::bundled("spy_1m_2011.csv");
    let (trades, equity, report) = (
        dir.path().join("t.csv"),
        dir.path().join("e.csv"),
        dir.path().join("r.html"),
    );
    let out = qtm(&[
        "backtest",
        "--strategy",
        &component,
        "--data",
        data.to_str().unwrap(),
        "--param",
        "period=15",
        "--param",
        "quantity=5",
        "--cash",
        "10000",
        "--commission",
        "0.001",
        "--json",
        "--trades-out",
        trades.to_str().unwrap(),
        "--equity-out",
        equity.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "final_equity",
        "total_return_pct",
        "max_drawdown_pct",
        "sharpe",
        "n_trades",
        "n_open",
        "win_rate_pct",
        "fees",
        "trades_sha256",
    ] {
        assert!(!json[key].is_null(), "--json lacks {key}: {json}");
    }
    assert!(json["n_trades"].as_u64().unwrap() > 10);
    assert_eq!(json["symbols"], serde_json::json!(["SPY"]));
    let trades_csv = std::fs::read_to_string(&trades).unwrap();
    assert!(
        trades_csv
            .starts_with("symbol,entry_ts,exit_ts,entry_price,exit_price,quantity,pnl,fees\nSPY,")
    );
    assert_eq!(
        trades_csv.lines().count() as u64,
        1 + json["n_trades"].as_u64().unwrap() + json["n_open"].as_u64().unwrap()
    );
    let equity_csv = std::fs::read_to_string(&equity).unwrap();
    assert!(
        equity_csv.starts_with("ts,equity\n1294045260,10000\n"),
        "{}",
        &equity_csv[..40]
    );
    assert_eq!(equity_csv.lines().count(), 1 + 31757);
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("my-momentum") && html.matches("<svg").count() >= 3);
    // Bad input is a clear error.
    let out = qtm(&[
        "backtest",
        "--strategy",
        &component,
        "--data",
        data.to_str().unwrap(),
        "--param",
        "period=1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("parameter `period` = 1 is outside 2..=500"),
        "{}",
        text(&out.stderr)
    );
    let out = qtm(&["backtest", "--strategy", &component, "--data", "nope.csv"]);
    assert!(
        text(&out.stderr).contains("nope.csv"),
        "{}",
        text(&out.stderr)
    );

    // The core module cargo made is refused with a hint, not a crash.
    let core = target.join("wasm32-unknown-unknown/release/my_momentum.wasm");
    let out = qtm(&["strategy", "inspect", core.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not a component"),
        "{}",
        text(&out.stderr)
    );

    // …and componentize fixes it.
    let fixed = dir.path().join("fixed.wasm");
    let out = qtm(&[
        "strategy",
        "componentize",
        core.to_str().unwrap(),
        "-o",
        fixed.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        qtm(&["strategy", "inspect", fixed.to_str().unwrap()])
            .status
            .success()
    );
}

#[test]
fn clear_errors_for_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = qtm(&["strategy", "build", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("has no Cargo.toml"),
        "{}",
        text(&out.stderr)
    );

    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"definitely not wasm").unwrap();
    let out = qtm(&["strategy", "inspect", junk.to_str().unwrap()]);
    assert!(
        text(&out.stderr).contains("missing the \\0asm header"),
        "{}",
        text(&out.stderr)
    );

    let out = qtm(&[
        "strategy",
        "inspect",
        dir.path().join("missing.wasm").to_str().unwrap(),
    ]);
    assert!(
        text(&out.stderr).contains("missing.wasm: No such file"),
        "{}",
        text(&out.stderr)
    );

    let out = qtm(&[
        "strategy",
        "new",
        dir.path().join("9lives").to_str().unwrap(),
    ]);
    assert!(
        text(&out.stderr).contains("starts with a letter"),
        "{}",
        text(&out.stderr)
    );
}
