//! The evaluator, function by function: each indicator equals the guest SDK's own bit for bit,
//! the rest equals hand-computed values. An expression is read through `size = units(…)`
//! (numbers) or `entry_long = …` (booleans) of a one-rule program.

use qtm_guest_sdk::indicators::{Atr, Bollinger, Ema, Macd, Rsi, Sma};
use qtm_rules::eval::{BarValues, Machine};
use qtm_rules::{ParamValue, check};

fn bars(n: usize) -> Vec<BarValues> {
    (0..n)
        .map(|i| {
            let x = i as f64;
            let close = 100.0 + 10.0 * (x / 3.0).sin() + 0.1 * x;
            BarValues {
                open: close - 0.5 * (x / 2.0).cos(),
                high: close + 1.0 + 0.3 * (x / 5.0).sin().abs(),
                low: close - 1.0 - 0.2 * (x / 7.0).cos().abs(),
                close,
                volume: 1000.0 + 10.0 * x,
            }
        })
        .collect()
}

/// `expr` (a number or series) on each bar; `None` where it is NaN (no value yet).
fn numbers_with(expr: &str, params: &str, values: &[ParamValue]) -> Vec<Option<f64>> {
    let src = format!("{params}entry_long = false\nsize = units({expr})\n");
    let program = check(&src).unwrap_or_else(|d| panic!("{expr}: {d:?}"));
    let plan = program.plan(values).unwrap();
    let mut m = Machine::new(&plan);
    bars(60)
        .iter()
        .map(|b| {
            m.step(b);
            let v = m.value(plan.size.1);
            (!v.is_nan()).then_some(v)
        })
        .collect()
}

fn numbers(expr: &str) -> Vec<Option<f64>> {
    numbers_with(expr, "", &[])
}

/// `expr` (a bool) on each bar.
fn bools(expr: &str) -> Vec<bool> {
    let src = format!("entry_long = {expr}\nsize = units(1)\n");
    let program = check(&src).unwrap_or_else(|d| panic!("{expr}: {d:?}"));
    let plan = program.plan(&[]).unwrap();
    let mut m = Machine::new(&plan);
    bars(60)
        .iter()
        .map(|b| {
            m.step(b);
            m.is_true(plan.rules[0].unwrap())
        })
        .collect()
}

fn sdk(mut f: impl FnMut(&BarValues) -> Option<f64>) -> Vec<Option<f64>> {
    bars(60).iter().map(&mut f).collect()
}

#[test]
fn indicators_are_the_sdks_bit_for_bit() {
    let mut s = Sma::new(7);
    assert_eq!(numbers("sma(close, 7)"), sdk(|b| s.update(b.close)));
    let mut e = Ema::new(5);
    assert_eq!(numbers("ema(close, 5)"), sdk(|b| e.update(b.close)));
    let mut r = Rsi::new(14);
    assert_eq!(numbers("rsi(close, 14)"), sdk(|b| r.update(b.close)));
    let mut a = Atr::new(5);
    assert_eq!(numbers("atr(5)"), sdk(|b| a.update(b.high, b.low, b.close)));
    let mut m = Macd::new(3, 6, 2);
    assert_eq!(
        numbers("macd(close, 3, 6, 2)"),
        sdk(|b| m.update(b.close).map(|v| v.macd))
    );
    let mut m = Macd::new(3, 6, 2);
    assert_eq!(
        numbers("macd_signal(close, 3, 6, 2)"),
        sdk(|b| m.update(b.close).map(|v| v.signal))
    );
    let mut bb = Bollinger::new(5, 2.0);
    assert_eq!(
        numbers("bb_upper(close, 5, 2)"),
        sdk(|b| bb.update(b.close).map(|v| v.upper))
    );
    let mut bb = Bollinger::new(5, 1.5);
    assert_eq!(
        numbers("bb_lower(close, 5, 1.5)"),
        sdk(|b| bb.update(b.close).map(|v| v.lower))
    );
    // An indicator of an expression: the SMA of the bar's range.
    let mut s = Sma::new(3);
    assert_eq!(
        numbers("sma(high - low, 3)"),
        sdk(|b| s.update(b.high - b.low))
    );
}

#[test]
fn highest_and_lowest_are_the_window_extremes() {
    let b = bars(60);
    let window = |i: usize, f: fn(&BarValues) -> f64, max: bool| {
        (i >= 3).then(|| {
            let w = b[i - 3..=i].iter().map(f);
            if max {
                w.fold(f64::MIN, f64::max)
            } else {
                w.fold(f64::MAX, f64::min)
            }
        })
    };
    let want: Vec<_> = (0..60).map(|i| window(i, |b| b.high, true)).collect();
    assert_eq!(numbers("highest(high, 4)"), want);
    let want: Vec<_> = (0..60).map(|i| window(i, |b| b.low, false)).collect();
    assert_eq!(numbers("lowest(low, 4)"), want);
}

#[test]
fn arithmetic_abs_min_max_and_lookback() {
    let b = bars(60);
    let each = |f: &dyn Fn(usize) -> Option<f64>| (0..60).map(f).collect::<Vec<_>>();
    assert_eq!(numbers("1 + 2 * 3 - 4 / 2"), vec![Some(5.0); 60]);
    assert_eq!(numbers("-(1 + 2) * 2"), vec![Some(-6.0); 60]);
    assert_eq!(
        numbers("abs(open - close)"),
        each(&|i| Some((b[i].open - b[i].close).abs()))
    );
    assert_eq!(
        numbers("min(open, close)"),
        each(&|i| Some(b[i].open.min(b[i].close)))
    );
    assert_eq!(
        numbers("max(high, 2 * low)"),
        each(&|i| Some(b[i].high.max(2.0 * b[i].low)))
    );
    assert_eq!(numbers("abs(-3)"), vec![Some(3.0); 60]);
    assert_eq!(numbers("volume / 10"), each(&|i| Some(b[i].volume / 10.0)));
    // `x[n]`: the value n bars ago, none before the history is that long.
    assert_eq!(
        numbers("close[2]"),
        each(&|i| (i >= 2).then(|| b[i - 2].close))
    );
    assert_eq!(numbers("close[0]"), each(&|i| Some(b[i].close)));
    assert_eq!(
        numbers("(close - close[1])[1]"),
        each(&|i| (i >= 2).then(|| b[i - 1].close - b[i - 2].close))
    );
    // A period or lookback computed from parameters.
    let mut s = Sma::new(6);
    assert_eq!(
        numbers_with(
            "sma(close, n * 2)",
            "param n = int(3, 1, 10)\n",
            &[ParamValue::Int(3)]
        ),
        sdk(|b| s.update(b.close))
    );
}

#[test]
fn crossover_and_crossunder_as_sma_cross() {
    let b = bars(60);
    let f: Vec<f64> = b.iter().map(|b| b.close).collect();
    let s: Vec<f64> = b.iter().map(|b| b.open).collect();
    let up: Vec<bool> = (0..60)
        .map(|i| i > 0 && f[i - 1] <= s[i - 1] && f[i] > s[i])
        .collect();
    let down: Vec<bool> = (0..60)
        .map(|i| i > 0 && f[i - 1] >= s[i - 1] && f[i] < s[i])
        .collect();
    assert!(up.iter().filter(|x| **x).count() >= 3);
    assert_eq!(bools("crossover(close, open)"), up);
    assert_eq!(bools("crossunder(close, open)"), down);
    // Against a constant level.
    let above: Vec<bool> = (0..60)
        .map(|i| i > 0 && f[i - 1] <= 100.0 && f[i] > 100.0)
        .collect();
    assert_eq!(bools("crossover(close, 100)"), above);
}

#[test]
fn booleans_and_comparisons() {
    let b = bars(60);
    let each = |f: &dyn Fn(usize) -> bool| (0..60).map(f).collect::<Vec<_>>();
    assert_eq!(bools("close > open"), each(&|i| b[i].close > b[i].open));
    assert_eq!(
        bools("not (close > open)"),
        each(&|i| b[i].close <= b[i].open)
    );
    assert_eq!(
        bools("close > open and volume >= 1100 or close == 0"),
        each(&|i| b[i].close > b[i].open && b[i].volume >= 1100.0)
    );
    assert_eq!(bools("close != close"), vec![false; 60]);
    assert_eq!(bools("true and not false"), vec![true; 60]);
    // Comparisons with a value that does not exist yet are false, either way round.
    assert_eq!(bools("close[3] < 1000000"), each(&|i| i >= 3));
    assert_eq!(bools("not (close[3] < 1000000)"), each(&|i| i < 3));
    // A bool looked back past the start is false.
    assert_eq!(bools("(close > 0)[5]"), each(&|i| i >= 5));
}

#[test]
fn choice_parameters_select_at_configure() {
    let params = "param mode = choice(\"up\", \"down\")\n";
    let expr = "sma(close, 2) * 0 + 1";
    let src = |rule: &str| format!("{params}entry_long = {rule}\nsize = units({expr})\n");
    let program = check(&src("mode == \"down\"")).unwrap();
    for (value, want) in [("up", false), ("down", true)] {
        let plan = program.plan(&[ParamValue::Choice(value.into())]).unwrap();
        let mut m = Machine::new(&plan);
        for b in bars(3) {
            m.step(&b);
        }
        assert_eq!(m.is_true(plan.rules[0].unwrap()), want, "{value}");
    }
}

#[test]
fn rules_wait_for_every_indicator() {
    let program =
        check("entry_long = close > 0\nexit_long = sma(close, 5) > 0\nsize = units(1)\n").unwrap();
    let plan = program.plan(&[]).unwrap();
    let mut m = Machine::new(&plan);
    let warm: Vec<bool> = bars(7).iter().map(|b| m.step(b)).collect();
    assert_eq!(warm, [false, false, false, false, true, true, true]);
}

#[test]
fn a_period_from_parameters_out_of_range_fails_at_configure_with_its_position() {
    let program =
        check("param n = int(3, 0, 10)\nentry_long = sma(close, n * 1) > 0\nsize = units(1)\n")
            .unwrap();
    let e = program.plan(&[ParamValue::Int(0)]).unwrap_err();
    assert_eq!(
        e,
        "2:25: the period of `sma` is 0, not a whole number from 1 to 100000"
    );
}
