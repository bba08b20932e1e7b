//! The checker: typed parameters of good programs, and every problem of bad ones at its
//! `line:col` (exact texts).

use qtm_rules::{ParamKind, ParamValue, check, check_bytes};

const SMA: &str = "\
# SMA cross, always in the market
param fast = int(10, 2, 200)          # default, min, max [, step]
param slow = int(30, 5, 500)
let f = sma(close, fast)
let s = sma(close, slow)
entry_long  = crossover(f, s)
entry_short = crossunder(f, s)
size = equity_fraction(1.0)
";

fn errors(src: &str) -> Vec<String> {
    match check(src) {
        Ok(_) => vec![],
        Err(d) => d.iter().map(|d| d.to_string()).collect(),
    }
}

#[test]
fn the_sma_cross_program_checks() {
    let p = check(SMA).unwrap();
    let names: Vec<_> = p.params().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["fast", "slow"]);
    assert_eq!(
        p.params()[0].kind,
        ParamKind::Int {
            min: 2,
            max: 200,
            step: 1
        }
    );
    assert_eq!(p.params()[1].default, ParamValue::Int(30));
    assert_eq!(p.defined_rules(), ["entry_long", "entry_short"]);
    let plan = p.plan(&[ParamValue::Int(10), ParamValue::Int(30)]).unwrap();
    // close, two SMAs, two crosses, the size constant: nothing else runs per bar.
    assert_eq!(
        format!("{:?}", plan.ops),
        "[Field(Close), Sma(0, 10), Sma(0, 30), Cross { a: 1, b: 2, up: true }, \
         Cross { a: 1, b: 2, up: false }, Const(1.0)]"
    );
}

#[test]
fn every_error_is_reported_with_its_position() {
    let src = "\
param fast = int(10, 2, 200)
param fast = int(5, 1, 3)
let f = sma(close, fats)
let g = close + (close > 2)
entry_long = close
exit_long = crossover(f, close) and
size = units(1)
foo = 3
";
    assert_eq!(
        errors(src),
        [
            "2:7: `fast` is already defined at 1:7",
            "2:18: `fast`: default 5 is outside 1..=3",
            "3:20: unknown name `fats`",
            "4:15: `+` needs numbers or series, found series and bool",
            "5:14: `entry_long` must be a bool, found series",
            "6:36: expected a value, found the end of the line",
            "8:1: unknown rule `foo` (rules: entry_long, exit_long, entry_short, exit_short, size, stop_loss, take_profit; use `let foo = …` to name a value)",
        ]
    );
}

#[test]
fn hostile_texts_are_diagnostics() {
    let deep = |n| {
        format!(
            "entry_long = {}close > 1{}\nsize = units(1)\n",
            "(".repeat(n),
            ")".repeat(n)
        )
    };
    assert_eq!(
        errors(&deep(100)),
        ["1:78: expression nested more than 64 levels deep"]
    );
    assert_eq!(
        errors(&deep(10_000)),
        ["1:2012: the program has more than 2000 tokens"]
    );
    let big = "#".repeat(2 << 20);
    assert_eq!(
        errors(&big),
        ["1:1: program is 2097152 bytes, larger than the 32768 byte limit"]
    );
    let e: Vec<String> = check_bytes(b"size = units(1)\nentry_long = \xff")
        .unwrap_err()
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(e, ["2:14: invalid UTF-8 (byte 29)"]);
}
