//! Property tests of the front end: random token soups, random bytes and mutations of real
//! programs never panic and finish quickly; whatever checks also plans and runs. Hostile
//! shapes (10,000-deep nesting of every kind, over-long texts, long chains) are diagnostics.
//!
//! A small xorshift generator keeps the cases reproducible without a dependency: a failure
//! prints the case's seed and text.

use std::time::{Duration, Instant};

use qtm_rules::{ParamKind, ParamValue, Program, check, check_bytes};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const EXAMPLES: &[&str] = &[
    include_str!("../../../strategies/rules/examples/sma-cross.rules"),
    include_str!("../../../strategies/rules/examples/sma-cross-long.rules"),
    include_str!("../../../strategies/rules/examples/rsi-reversion.rules"),
    include_str!("../../../strategies/rules/examples/donchian-breakout.rules"),
];

const VOCAB: &[&str] = &[
    "param",
    "let",
    "entry_long",
    "exit_long",
    "entry_short",
    "exit_short",
    "size",
    "stop_loss",
    "take_profit",
    "=",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "+",
    "-",
    "*",
    "/",
    "(",
    ")",
    "[",
    "]",
    ",",
    "\n",
    " ",
    "and",
    "or",
    "not",
    "true",
    "false",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "sma",
    "ema",
    "rsi",
    "atr",
    "macd",
    "macd_signal",
    "bb_upper",
    "bb_lower",
    "highest",
    "lowest",
    "crossover",
    "crossunder",
    "abs",
    "min",
    "max",
    "equity_fraction",
    "units",
    "pct",
    "int",
    "float",
    "bool",
    "choice",
    "\"a\"",
    "\"",
    "0",
    "1",
    "2.5",
    "1e400",
    "-3",
    "99999999999999999999",
    "x",
    "f",
    "#",
    "é",
    "\t",
    "!",
    "&&",
    "@",
    ".",
    "1.",
    ".5e",
];

/// Check `text`, and when it checks, plan it with its defaults and run it on a few bars.
fn exercise(seed: u64, text: &[u8]) {
    let start = Instant::now();
    let result = check_bytes(text);
    if let Ok(program) = &result {
        run(program);
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "seed {seed}: {took:?} for {:?}",
        String::from_utf8_lossy(text)
    );
    if let Err(d) = result {
        assert!(!d.is_empty(), "seed {seed}: an error without diagnostics");
        for x in &d {
            assert!(x.pos.line >= 1 && x.pos.col >= 1, "seed {seed}: {x}");
        }
    }
}

fn defaults(p: &Program) -> Vec<ParamValue> {
    p.params()
        .iter()
        .map(|d| match &d.kind {
            ParamKind::Int { .. } | ParamKind::Float { .. } | ParamKind::Bool => d.default.clone(),
            ParamKind::Choice(c) => ParamValue::Choice(c[0].clone()),
        })
        .collect()
}

#[cfg(feature = "eval")]
fn run(program: &Program) {
    use qtm_rules::eval::{BarValues, Machine};
    // A plan may refuse the values (a computed period out of range): an error, not a panic.
    if let Ok(plan) = program.plan(&defaults(program)) {
        let mut m = Machine::new(&plan);
        for i in 0..40 {
            let c = 100.0 + (i as f64).sin();
            m.step(&BarValues {
                open: c,
                high: c + 1.0,
                low: c - 1.0,
                close: c,
                volume: 10.0,
            });
        }
    }
}

#[cfg(not(feature = "eval"))]
fn run(program: &Program) {
    let _ = program.plan(&defaults(program));
}

#[test]
fn random_token_soups_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for case in 0..3000 {
        let n = rng.below(60);
        let text: String = (0..n)
            .map(|_| rng.pick(VOCAB))
            .collect::<Vec<_>>()
            .join(" ");
        exercise(case, text.as_bytes());
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for case in 0..2000 {
        let n = rng.below(200);
        let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        exercise(case, &bytes);
    }
}

#[test]
fn mutated_programs_never_panic() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut checked = 0;
    for case in 0..3000u64 {
        let mut text = EXAMPLES[rng.below(EXAMPLES.len())].as_bytes().to_vec();
        for _ in 0..1 + rng.below(4) {
            let len = text.len().max(1);
            let at = rng.below(len).min(text.len());
            match rng.below(5) {
                0 => {
                    let end = (at + rng.below(20)).min(text.len());
                    text.drain(at..end);
                }
                1 => {
                    let snippet = rng.pick(VOCAB).as_bytes().to_vec();
                    text.splice(at..at, snippet);
                }
                2 => {
                    let end = (at + rng.below(40)).min(text.len());
                    let copy = text[at..end].to_vec();
                    let to = rng.below(text.len() + 1);
                    text.splice(to..to, copy);
                }
                3 => {
                    if at < text.len() {
                        text[at] = rng.next() as u8;
                    }
                }
                _ => {
                    let depth = rng.below(200);
                    let open = "(".repeat(depth).into_bytes();
                    text.splice(at..at, open);
                }
            }
        }
        if check_bytes(&text).is_ok() {
            checked += 1;
        }
        exercise(case, &text);
    }
    // Some mutations keep the program valid: those were planned and run too.
    assert!(checked > 100, "{checked}");
}

fn first_error(text: &str) -> String {
    let start = Instant::now();
    let r = check(text)
        .err()
        .map(|d| d[0].to_string())
        .unwrap_or_default();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    r
}

#[test]
fn hostile_nesting_of_every_kind_is_a_diagnostic() {
    // 100 deep is over the nesting cap; 10,000 deep is over the token cap (or the byte cap)
    // first. Either way one diagnostic, quickly, and no stack overflow.
    for (n, want) in [
        (100, "2:.*expression nested more than 64 levels deep"),
        (
            10_000,
            "2:.*the program has more than 2000 tokens|1:1: .*byte limit",
        ),
    ] {
        let cases = [
            format!(
                "size = units(1)\nentry_long = {}close > 1{}",
                "(".repeat(n),
                ")".repeat(n)
            ),
            format!(
                "size = units(1)\nentry_long = {}close > 1",
                "not ".repeat(n)
            ),
            format!("size = units(1)\nentry_long = {}close > 1", "- ".repeat(n)),
            format!(
                "size = units(1)\nentry_long = {}close{} > 1",
                "abs(".repeat(n),
                ")".repeat(n)
            ),
            format!("size = units(1)\nentry_long = close{} > 1", "[1]".repeat(n)),
            format!(
                "size = units(1)\nentry_long = close{} > 1",
                " + 1".repeat(n)
            ),
            format!("size = units(1)\nentry_long = {}", "(".repeat(n)),
        ];
        for (i, c) in cases.iter().enumerate() {
            let e = first_error(c);
            let ok = want.split('|').any(|w| {
                let (start, end) = w.split_once(".*").unwrap();
                e.starts_with(start) && e.ends_with(end)
            });
            assert!(ok, "{n} deep, case {i}: {e}");
        }
    }
    // An unclosed lookback is a plain syntax error, however many there are.
    let e = first_error(&format!(
        "size = units(1)\nentry_long = close{}",
        "[".repeat(1000)
    ));
    assert_eq!(e, "2:20: expected a value, found `[`");
}

#[test]
fn oversized_texts_and_long_chains() {
    let big = format!(
        "size = units(1)\nentry_long = true\n{}",
        "# padding\n".repeat(200_000)
    );
    assert_eq!(
        first_error(&big),
        "1:1: program is 2000034 bytes, larger than the 32768 byte limit"
    );
    // 240 lets, each built on the previous: checked, planned and run without deep recursion.
    let mut text = String::from("let a0 = close\n");
    for i in 1..240 {
        text.push_str(&format!("let a{i} = a{} + 1\n", i - 1));
    }
    text.push_str("entry_long = a239 > 0\nsize = units(1)\n");
    let p = check(&text).unwrap();
    run(&p);
    let plan = p.plan(&[]).unwrap();
    // close, the constants 1 (shared by the adds and the size) and 0, 239 adds, the rule.
    assert_eq!(plan.ops.len(), 243);
    // Statements and tokens are capped.
    let many: String = (0..251).map(|i| format!("let z{i} = 1\n")).collect();
    assert_eq!(
        first_error(&many),
        "252:1: the program has 251 statements, more than 250"
    );
    let long = format!(
        "entry_long = close{}\nsize = units(1)\n",
        " > 1 and close".repeat(500)
    );
    assert_eq!(
        first_error(&long),
        "1:7008: the program has more than 2000 tokens"
    );
}
