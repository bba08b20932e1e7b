//! Backtest metrics: one pure function from an equity curve and a trade list to the numbers that
//! reports, the CLI and the evolution engine compare strategies by.
//!
//! Every definition, with its formula, edge cases and where it differs from backtesting.py, is in
//! `docs/metrics.md`; keep the two in step. The function never panics and never returns NaN:
//! runs are ranked by these numbers, and one NaN would poison any sort or JSON document.

use serde::{Deserialize, Serialize};

use std::collections::HashMap;

use crate::spill::SpillVec;
use qtm_core::model::{EquityPoint, Trade};
use qtm_market::IntervalEstimator;

/// Seconds in a calendar day.
const DAY: i64 = 86_400;
/// Calendar year used for CAGR (Julian year, so leap years average out).
const SECONDS_PER_YEAR: f64 = 365.25 * 86_400.0;
/// Trading days per year (US equity convention) for daily and intraday annualization.
const TRADING_DAYS_PER_YEAR: f64 = 252.0;
/// Average calendar month, to tell monthly, quarterly and yearly bars apart.
const MONTH_DAYS: f64 = 365.25 / 12.0;

/// An equity curve that can be read from the start any number of times: a slice in memory, or
/// a [`SpillVec`] that moved to disk, so metrics of a ten-year minute backtest need no
/// per-bar memory.
pub trait EquitySeries {
    /// Number of points.
    fn len(&self) -> usize;
    /// Whether there are no points.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The points, in time order.
    fn points(&self) -> impl Iterator<Item = EquityPoint> + '_;
}

impl EquitySeries for [EquityPoint] {
    fn len(&self) -> usize {
        <[EquityPoint]>::len(self)
    }
    fn points(&self) -> impl Iterator<Item = EquityPoint> + '_ {
        self.iter().copied()
    }
}

impl<const N: usize> EquitySeries for [EquityPoint; N] {
    fn len(&self) -> usize {
        N
    }
    fn points(&self) -> impl Iterator<Item = EquityPoint> + '_ {
        self.iter().copied()
    }
}

impl EquitySeries for Vec<EquityPoint> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn points(&self) -> impl Iterator<Item = EquityPoint> + '_ {
        self.iter().copied()
    }
}

impl EquitySeries for SpillVec<EquityPoint> {
    fn len(&self) -> usize {
        SpillVec::len(self)
    }
    fn points(&self) -> impl Iterator<Item = EquityPoint> + '_ {
        self.iter()
    }
}

/// What [`compute`] needs to know about a finished (or running) backtest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricsInput<'a, S: EquitySeries + ?Sized = [EquityPoint]> {
    /// One point per bar step, in time order; the curve returns and drawdowns are measured on.
    pub equity: &'a S,
    /// Closed and still-open trades; only closed ones count towards trade statistics.
    pub trades: &'a [Trade],
    /// Account value before the first bar: the base of the first return, of the total return
    /// and of CAGR, and the first drawdown peak.
    pub initial_cash: f64,
    /// Total fees paid; copied to [`Metrics::fees`] so a report carries it.
    pub fees: f64,
    /// Bar interval in seconds. `None` (or a value ≤ 0) infers it from the equity timestamps, which
    /// is right unless the curve has irregular gaps.
    pub interval_seconds: Option<i64>,
    /// Annual risk-free rate as a fraction (0.04 = 4 %), subtracted in Sharpe and Sortino.
    pub risk_free_rate: f64,
}

impl<'a, S: EquitySeries + ?Sized> MetricsInput<'a, S> {
    /// The usual case: no fees to report, inferred interval, zero risk-free rate.
    pub fn new(equity: &'a S, trades: &'a [Trade], initial_cash: f64) -> Self {
        MetricsInput {
            equity,
            trades,
            initial_cash,
            fees: 0.0,
            interval_seconds: None,
            risk_free_rate: 0.0,
        }
    }
}

/// Summary statistics of a backtest. Percentages are in percent (12.5 means 12.5 %).
///
/// Every float is finite except `profit_factor`, `cagr_pct` and `calmar`, which may be +∞
/// (no losing trade; CAGR overflowing on a very short, very profitable run). JSON has no
/// infinity, so non-finite values serialize as `null` and `null` reads back as +∞.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Metrics {
    /// Last equity value (`initial_cash` when the curve is empty).
    #[serde(with = "json_float")]
    pub final_equity: f64,
    /// `(final / initial − 1) × 100`.
    #[serde(with = "json_float")]
    pub total_return_pct: f64,
    /// Compound annual growth over the calendar time the curve spans.
    #[serde(with = "json_float")]
    pub cagr_pct: f64,
    /// Sample standard deviation of per-bar returns, annualized with `periods_per_year`.
    #[serde(with = "json_float")]
    pub volatility_ann_pct: f64,
    /// Annualized mean excess return per unit of volatility; 0 when volatility is 0.
    #[serde(with = "json_float")]
    pub sharpe: f64,
    /// Like Sharpe but only downside moves count as risk; 0 when there are none.
    #[serde(with = "json_float")]
    pub sortino: f64,
    /// Deepest fall from a running peak (including `initial_cash`), as a positive percentage.
    #[serde(with = "json_float")]
    pub max_drawdown_pct: f64,
    /// Longest stretch from a peak to its recovery (or to the end), in equity points.
    pub max_drawdown_duration_bars: u64,
    /// Longest stretch from a peak to its recovery (or to the end), in calendar days.
    #[serde(with = "json_float")]
    pub max_drawdown_duration_days: f64,
    /// CAGR divided by max drawdown; 0 without a drawdown.
    #[serde(with = "json_float")]
    pub calmar: f64,
    /// Closed trades.
    pub n_trades: usize,
    /// Trades still open at the end.
    pub n_open: usize,
    /// Share of closed trades with `pnl > 0`.
    #[serde(with = "json_float")]
    pub win_rate_pct: f64,
    /// Gross profit over gross loss of closed trades; +∞ with profits and no losses, 0 with
    /// neither.
    #[serde(with = "json_float")]
    pub profit_factor: f64,
    /// Mean net pnl per closed trade, in account currency.
    #[serde(with = "json_float")]
    pub expectancy: f64,
    /// Mean per-trade return in % of entry notional, over closed trades.
    #[serde(with = "json_float")]
    pub avg_trade_pct: f64,
    /// Best per-trade return in % of entry notional.
    #[serde(with = "json_float")]
    pub best_trade_pct: f64,
    /// Worst per-trade return in % of entry notional.
    #[serde(with = "json_float")]
    pub worst_trade_pct: f64,
    /// Share of equity points with a position open.
    #[serde(with = "json_float")]
    pub exposure_pct: f64,
    /// Historical one-bar value at risk at 95 %: the loss (positive) that only 5 % of bars
    /// exceeded; negative when even the worst 5 % of bars gained.
    #[serde(with = "json_float")]
    pub var_95_pct: f64,
    /// Total fees, as given in [`MetricsInput::fees`].
    #[serde(with = "json_float")]
    pub fees: f64,
    /// Bars per year used for annualization; 0 when the interval is unknown.
    #[serde(with = "json_float")]
    pub periods_per_year: f64,
    /// First equity timestamp (unix s); 0 for an empty curve.
    pub start_ts: i64,
    /// Last equity timestamp (unix s); 0 for an empty curve.
    pub end_ts: i64,
    /// Number of equity points.
    pub bars: usize,
}

/// Compute all metrics of one backtest.
///
/// Pure and total: any input, including an empty curve or garbage values, gives a [`Metrics`]
/// without NaN (see `docs/metrics.md` for what each degenerate case yields). Memory does not
/// grow with the curve: every statistic is gathered in a few sequential passes over it, and the
/// VaR percentile is found exactly by radix selection instead of sorting the returns.
pub fn compute<S: EquitySeries + ?Sized>(input: &MetricsInput<'_, S>) -> Metrics {
    let eq = input.equity;
    let initial = input.initial_cash;
    let scan = scan(eq);
    let interval = bar_interval(input.interval_seconds, &scan);
    let ppy = periods_per_year(&scan, interval);

    let final_equity = scan.last.map_or(initial, |p| p.equity);
    let start_ts = scan.first.map_or(0, |p| p.ts);
    let end_ts = scan.last.map_or(0, |p| p.ts);

    let total_return = if initial > 0.0 {
        final_equity / initial - 1.0
    } else {
        0.0
    };
    let years = (end_ts as f64 - start_ts as f64) / SECONDS_PER_YEAR;
    let cagr = if years > 0.0 && initial > 0.0 {
        let growth = final_equity / initial;
        if growth > 0.0 {
            growth.powf(1.0 / years) - 1.0
        } else {
            -1.0
        }
    } else {
        0.0
    };

    let n = scan.points as f64;
    let mean_r = if scan.points == 0 {
        0.0
    } else {
        returns(initial, eq.points()).sum::<f64>() / n
    };
    // A second pass for the variance around the exact mean (a running formula would round
    // differently from the two-pass one numpy and pandas use), and the downside deviation.
    let (ss, down) = returns(initial, eq.points()).fold((0.0, 0.0), |(ss, down), x| {
        (ss + (x - mean_r).powi(2), down + x.min(0.0).powi(2))
    });
    let sd = if scan.points < 2 {
        0.0
    } else {
        (ss / (n - 1.0)).sqrt()
    };
    let ann = ppy.sqrt();
    let rf_per_period = if ppy > 0.0 {
        (1.0 + input.risk_free_rate).powf(1.0 / ppy) - 1.0
    } else {
        0.0
    };
    let sharpe = if sd > 0.0 {
        (mean_r - rf_per_period) / sd * ann
    } else {
        0.0
    };
    let downside = if scan.points == 0 {
        0.0
    } else {
        (down / n).sqrt()
    };
    let sortino = if downside > 0.0 {
        (mean_r - rf_per_period) / downside * ann
    } else {
        0.0
    };

    let dd = drawdown(initial, eq.points(), interval.unwrap_or(0));
    let calmar = if dd.max > 0.0 { cagr / dd.max } else { 0.0 };

    let var_95 = if scan.points == 0 {
        0.0
    } else {
        -percentile_radix(|| returns(initial, eq.points()), scan.points, 0.05)
    };

    let exposure = if scan.points == 0 {
        0.0
    } else {
        scan.in_market as f64 / n
    };

    let t = trade_stats(input.trades);

    Metrics {
        final_equity: finite(final_equity),
        total_return_pct: finite(total_return * 100.0),
        cagr_pct: not_nan(cagr * 100.0),
        volatility_ann_pct: finite(sd * ann * 100.0),
        sharpe: finite(sharpe),
        sortino: finite(sortino),
        max_drawdown_pct: finite(dd.max * 100.0),
        max_drawdown_duration_bars: dd.bars,
        max_drawdown_duration_days: finite(dd.seconds / DAY as f64),
        calmar: not_nan(calmar),
        n_trades: t.closed,
        n_open: t.open,
        win_rate_pct: finite(t.win_rate * 100.0),
        profit_factor: not_nan(t.profit_factor),
        expectancy: finite(t.expectancy),
        avg_trade_pct: finite(t.avg_return * 100.0),
        best_trade_pct: finite(t.best_return * 100.0),
        worst_trade_pct: finite(t.worst_return * 100.0),
        exposure_pct: finite(exposure * 100.0),
        var_95_pct: finite(var_95 * 100.0),
        fees: finite(input.fees),
        periods_per_year: finite(ppy),
        start_ts,
        end_ts,
        bars: scan.points,
    }
}

/// What one pass over the curve tells before the return statistics.
struct Scan {
    points: usize,
    first: Option<EquityPoint>,
    last: Option<EquityPoint>,
    in_market: usize,
    /// Most common positive timestamp step (ties: the smaller one).
    interval: Option<i64>,
    /// Points per UTC calendar day: memory grows with days, not bars.
    day_counts: HashMap<i64, usize>,
}

fn scan<S: EquitySeries + ?Sized>(eq: &S) -> Scan {
    let mut s = Scan {
        points: 0,
        first: None,
        last: None,
        in_market: 0,
        interval: None,
        day_counts: HashMap::new(),
    };
    // The mode of the timestamp steps is the interval, so weekend and holiday gaps do not
    // change it: the same estimator the backtest runs on bars, fed the curve's timestamps.
    let mut steps = IntervalEstimator::new();
    for p in eq.points() {
        s.points += 1;
        s.first.get_or_insert(p);
        s.last = Some(p);
        s.in_market += usize::from(p.in_market);
        steps.push(p.ts);
        *s.day_counts.entry(p.ts.div_euclid(DAY)).or_insert(0) += 1;
    }
    s.interval = steps.estimate();
    s
}

/// The given interval if positive, else the one inferred from the curve.
fn bar_interval(given: Option<i64>, scan: &Scan) -> Option<i64> {
    match given {
        Some(i) if i > 0 => Some(i),
        _ => scan.interval,
    }
}

/// The most common positive step between consecutive timestamps (ties: the smaller one).
#[cfg(test)]
fn infer_interval(eq: &[EquityPoint]) -> Option<i64> {
    scan(eq).interval
}

/// Fields that must be finite: anything else (only reachable with non-finite or absurd inputs)
/// becomes 0 rather than leaking NaN into rankings.
fn finite(x: f64) -> f64 {
    // `+ 0.0` turns −0 into 0, which would otherwise print as `-0.0`.
    if x.is_finite() { x + 0.0 } else { 0.0 }
}

/// Fields that may legitimately be +∞ (documented); NaN and −∞ become 0.
fn not_nan(x: f64) -> f64 {
    if x.is_nan() || x == f64::NEG_INFINITY {
        0.0
    } else {
        x + 0.0
    }
}

/// Bars per year for annualization (see docs/metrics.md, "Periods per year").
fn periods_per_year(scan: &Scan, interval: Option<i64>) -> f64 {
    let Some(i) = interval.filter(|&i| i > 0) else {
        return 0.0;
    };
    let secs = i as f64;
    if i < DAY {
        TRADING_DAYS_PER_YEAR * bars_per_day(scan, i)
    } else if i < 7 * DAY {
        TRADING_DAYS_PER_YEAR * DAY as f64 / secs
    } else if i < 28 * DAY {
        52.0 * (7 * DAY) as f64 / secs
    } else {
        let months = (secs / (MONTH_DAYS * DAY as f64)).round().max(1.0);
        12.0 / months
    }
}

/// Median number of equity points per UTC calendar day, capped at a full day of bars; a full
/// day when there is no data. This is the "trading seconds per day / interval" of the
/// intraday rule, so a 6.5-hour session of minute bars gives 390 and 24-hour FX gives 24.
fn bars_per_day(scan: &Scan, interval: i64) -> f64 {
    let full_day = DAY as f64 / interval as f64;
    let mut counts: Vec<usize> = scan.day_counts.values().copied().collect();
    if counts.is_empty() {
        return full_day;
    }
    counts.sort_unstable();
    let n = counts.len();
    let median = if n % 2 == 1 {
        counts[n / 2] as f64
    } else {
        (counts[n / 2 - 1] + counts[n / 2]) as f64 / 2.0
    };
    median.min(full_day)
}

/// Simple returns between consecutive points, the first against `initial`. A return from a
/// non-positive (blown) or non-finite previous value has no meaning and counts as 0.
fn returns(initial: f64, eq: impl Iterator<Item = EquityPoint>) -> impl Iterator<Item = f64> {
    let mut prev = initial;
    eq.map(move |p| {
        let r = if prev > 0.0 {
            p.equity / prev - 1.0
        } else {
            0.0
        };
        prev = p.equity;
        if r.is_finite() { r } else { 0.0 }
    })
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// A key whose unsigned order is `f64::total_cmp`'s order.
fn order_key(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 { !b } else { b | 1 << 63 }
}

fn from_order_key(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// The `k`-th smallest (0-based, `f64::total_cmp` order) of the `n > 0` values `values()`
/// yields, found without holding them all: each pass histograms the next 16 bits of the order
/// keys sharing the prefix found so far, and once the candidates are few they are collected
/// and selected directly. At most five passes, usually two.
fn radix_select<I: Iterator<Item = f64>>(values: impl Fn() -> I, n: usize, k: usize) -> f64 {
    /// Candidates worth collecting instead of another pass (1 MiB of keys).
    const COLLECT: u64 = 1 << 17;
    let mut k = k.min(n.saturating_sub(1)) as u64;
    let mut prefix: u64 = 0;
    let mut known: u32 = 0;
    let mut candidates = n as u64;
    let mut hist = vec![0u64; 1 << 16];
    while known < 64 {
        let matches = |key: u64| known == 0 || key >> (64 - known) == prefix;
        if candidates <= COLLECT {
            let mut keys: Vec<u64> = values()
                .map(order_key)
                .filter(|&key| matches(key))
                .collect();
            if (k as usize) < keys.len() {
                return from_order_key(*keys.select_nth_unstable(k as usize).1);
            }
            // Fewer values than counted: a read error cut the pass short.
            break;
        }
        hist.fill(0);
        let shift = 64 - known - 16;
        for key in values().map(order_key) {
            if matches(key) {
                hist[((key >> shift) & 0xFFFF) as usize] += 1;
            }
        }
        let mut digit = 0;
        while digit < hist.len() - 1 && k >= hist[digit] {
            k -= hist[digit];
            digit += 1;
        }
        prefix = (prefix << 16) | digit as u64;
        known += 16;
        candidates = hist[digit];
    }
    // Either every bit is known (more equal values than are worth collecting), or a pass was
    // cut short and the value is only known to the bits found so far.
    from_order_key(if known == 0 {
        0
    } else {
        prefix << (64 - known)
    })
}

/// numpy's default ("linear") percentile of the `n > 0` values `values()` yields, without
/// holding them; `q` is a fraction. Interpolates the way numpy's `_lerp` does, so results match
/// it to the last bit. (Sorting a million returns was the slowest metric, and holding them the
/// largest per-bar memory cost of a backtest.)
fn percentile_radix<I: Iterator<Item = f64>>(values: impl Fn() -> I, n: usize, q: f64) -> f64 {
    let h = (n - 1) as f64 * q;
    let lo = h.floor() as usize;
    let a = radix_select(&values, n, lo);
    let b = if lo + 1 < n {
        radix_select(&values, n, lo + 1)
    } else {
        a
    };
    let t = h - lo as f64;
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

#[cfg_attr(not(test), allow(dead_code))]
fn percentile_linear(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let h = (n - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let (a, b, t) = (sorted[lo], sorted[hi], h - lo as f64);
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

struct Drawdown {
    /// Deepest drawdown as a fraction.
    max: f64,
    bars: u64,
    seconds: f64,
}

/// Max drawdown and the longest peak-to-recovery stretch, in points and seconds.
///
/// `initial` is a virtual point one `interval` before the first one, so a curve that starts
/// below its cash is in drawdown from the start.
fn drawdown(initial: f64, eq: impl Iterator<Item = EquityPoint>, interval: i64) -> Drawdown {
    let mut out = Drawdown {
        max: 0.0,
        bars: 0,
        seconds: 0.0,
    };
    let mut eq = eq.peekable();
    let Some(first) = eq.peek().copied() else {
        return out;
    };
    let mut peak = if initial.is_finite() {
        initial
    } else {
        f64::NEG_INFINITY
    };
    let mut peak_idx: i64 = -1;
    let mut peak_ts = first.ts.saturating_sub(interval);
    let mut under = false;
    for (i, p) in eq.enumerate() {
        let i = i as i64;
        let recovered = p.equity >= peak;
        if under || !recovered {
            // Under water now, or recovering at this point: the stretch runs from the peak to
            // here (backtesting.py counts the recovery bar too).
            out.bars = out.bars.max((i - peak_idx) as u64);
            out.seconds = out.seconds.max(p.ts as f64 - peak_ts as f64);
        }
        if recovered {
            peak = p.equity;
            peak_idx = i;
            peak_ts = p.ts;
            under = false;
        } else {
            under = true;
            if peak > 0.0 {
                let d = 1.0 - p.equity / peak;
                if d > out.max {
                    out.max = d;
                }
            }
        }
    }
    out
}

#[derive(Default)]
struct TradeStats {
    closed: usize,
    open: usize,
    win_rate: f64,
    profit_factor: f64,
    expectancy: f64,
    avg_return: f64,
    best_return: f64,
    worst_return: f64,
}

fn trade_stats(trades: &[Trade]) -> TradeStats {
    let closed: Vec<&Trade> = trades.iter().filter(|t| t.exit_ts.is_some()).collect();
    let mut s = TradeStats {
        closed: closed.len(),
        open: trades.len() - closed.len(),
        ..TradeStats::default()
    };
    if closed.is_empty() {
        return s;
    }
    let n = closed.len() as f64;
    let wins = closed.iter().filter(|t| t.pnl > 0.0).count();
    let gross_profit: f64 = closed.iter().map(|t| t.pnl).filter(|&p| p > 0.0).sum();
    let gross_loss: f64 = -closed
        .iter()
        .map(|t| t.pnl)
        .filter(|&p| p < 0.0)
        .sum::<f64>();
    s.win_rate = wins as f64 / n;
    s.profit_factor = if gross_loss > 0.0 {
        gross_profit / gross_loss
    } else if gross_profit > 0.0 {
        f64::INFINITY
    } else {
        0.0
    };
    s.expectancy = closed.iter().map(|t| t.pnl).sum::<f64>() / n;
    // Per-trade return on entry notional; trades without a notional have no return and are
    // left out of these three.
    let rets: Vec<f64> = closed
        .iter()
        .filter_map(|t| {
            let notional = t.quantity.abs() * t.entry_price.abs();
            let r = t.pnl / notional;
            (notional > 0.0 && r.is_finite()).then_some(r)
        })
        .collect();
    if !rets.is_empty() {
        s.avg_return = mean(&rets);
        s.best_return = rets.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        s.worst_return = rets.iter().copied().fold(f64::INFINITY, f64::min);
    }
    s
}

/// Serde for floats that may be non-finite: JSON has no infinity, so they are written as `null`
/// (an `Option<f64>` on the wire, which every serde format supports) and `null` reads back as
/// +∞, the only non-finite value [`compute`] produces.
mod json_float {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        if x.is_finite() {
            s.serialize_some(x)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn radix_percentile_equals_the_sorted_one() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // Small (collected at once), large with distinct values (histogram passes), and large
        // with most values equal and signed zeros (the flat bars of a strategy out of the
        // market), where selection must go down to the last bit.
        let small: Vec<f64> = (0..10_001)
            .map(|_| (rand() % 100_000) as f64 / 1e3 - 50.0)
            .collect();
        let large: Vec<f64> = (0..300_000)
            .map(|_| (rand() % 1_000_000_007) as f64 / 1e9 - 0.5)
            .collect();
        let flat: Vec<f64> = (0..400_000)
            .map(|i| match rand() % 10 {
                0 => -((rand() % 1000) as f64) * 1e-5,
                1 => -0.0,
                2 => 1e-300,
                _ => 0.0 * (i % 2) as f64,
            })
            .collect();
        for v in [small, large, flat] {
            let mut sorted = v.clone();
            sorted.sort_by(f64::total_cmp);
            for q in [0.0, 0.05, 0.5, 0.95, 1.0] {
                let got = super::percentile_radix(|| v.iter().copied(), v.len(), q);
                let want = super::percentile_linear(&sorted, q);
                assert_eq!(got.to_bits(), want.to_bits(), "q {q}: {got} vs {want}");
            }
        }
        let v = [4.0, 2.0, 3.0, 1.0];
        assert_eq!(super::percentile_radix(|| v.iter().copied(), 4, 0.05), 1.15);
        assert_eq!(super::percentile_radix(|| [7.5].into_iter(), 1, 0.05), 7.5);
    }

    /// The periods-per-year rule on a curve in memory.
    fn periods_per_year(eq: &[EquityPoint], interval: Option<i64>) -> f64 {
        super::periods_per_year(&scan(eq), interval)
    }

    fn bars_per_day(eq: &[EquityPoint], interval: i64) -> f64 {
        super::bars_per_day(&scan(eq), interval)
    }

    use super::*;

    const H: i64 = 3_600;
    /// 2024-01-01 00:00:00 UTC, a Monday.
    const T0: i64 = 1_704_067_200;

    #[track_caller]
    fn close(got: f64, want: f64) {
        let tol = 1e-12 * want.abs().max(1e-300);
        assert!(
            (got - want).abs() <= tol,
            "got {got:e}, want {want:e} (diff {:e})",
            got - want
        );
    }

    fn pt(ts: i64, equity: f64, in_market: bool) -> EquityPoint {
        EquityPoint {
            ts,
            equity,
            in_market,
        }
    }

    /// Points `step` seconds apart starting at `T0`, all in the market.
    fn curve(step: i64, values: &[f64]) -> Vec<EquityPoint> {
        values
            .iter()
            .enumerate()
            .map(|(i, &e)| pt(T0 + i as i64 * step, e, true))
            .collect()
    }

    fn trade(pnl: f64, quantity: f64, entry_price: f64, closed: bool) -> Trade {
        Trade {
            symbol: "X".into(),
            entry_ts: T0,
            exit_ts: closed.then_some(T0 + DAY),
            entry_price,
            exit_price: closed.then_some(entry_price),
            quantity,
            pnl,
            fees: 0.0,
        }
    }

    /// Timestamps of consecutive bars, with `per_day` bars of `step` seconds from `open`
    /// seconds after midnight, on the given number of weekdays (weekends skipped).
    fn sessions(weekdays: usize, open: i64, per_day: usize, step: i64) -> Vec<EquityPoint> {
        let mut out = Vec::new();
        let mut day = T0; // Monday
        let mut done = 0;
        while done < weekdays {
            let dow = (day / DAY + 3).rem_euclid(7); // 0 = Monday (1970-01-01 was a Thursday)
            if dow < 5 {
                for k in 0..per_day {
                    out.push(pt(day + open + k as i64 * step, 100.0, false));
                }
                done += 1;
            }
            day += DAY;
        }
        out
    }

    /// The worked example of docs/metrics.md: daily points 110, 99, 121 after 100 of cash.
    fn example() -> (Vec<EquityPoint>, Vec<Trade>) {
        let mut eq = curve(DAY, &[110.0, 99.0, 121.0]);
        eq[2].in_market = false;
        let trades = vec![
            trade(10.0, 1.0, 100.0, true), // notional 100 → +10 %
            trade(-5.0, -2.0, 50.0, true), // short, notional 100 → −5 %
            trade(3.0, 3.0, 20.0, true),   // notional 60 → +5 %
            trade(7.0, 1.0, 100.0, false), // open: counted in n_open only
        ];
        (eq, trades)
    }

    #[test]
    fn hand_computed_example() {
        let (eq, trades) = example();
        let mut input = MetricsInput::new(&eq, &trades, 100.0);
        input.fees = 1.5;
        let m = compute(&input);

        // r = 110/100 − 1, 99/110 − 1, 121/99 − 1 = 0.1, −0.1, 2/9
        let r = returns(100.0, eq.iter().copied()).collect::<Vec<_>>();
        close(r[0], 0.1);
        close(r[1], -0.1);
        close(r[2], 2.0 / 9.0);

        // Daily steps → interval 86 400 s → 252 periods per year.
        assert_eq!(m.periods_per_year, 252.0);
        assert_eq!(m.bars, 3);
        assert_eq!((m.start_ts, m.end_ts), (T0, T0 + 2 * DAY));
        assert_eq!(m.final_equity, 121.0);
        close(m.total_return_pct, 21.0);

        // mean = (0.1 − 0.1 + 2/9)/3 = 2/27
        // deviations: 7/270, −47/270, 40/270; squares sum = (49 + 2209 + 1600)/72900 = 3858/72900
        // sample variance = 3858/72900/2 = 1929/72900 → sd = √1929/270 ≈ 0.1626676
        let sd = 1929f64.sqrt() / 270.0;
        close(m.volatility_ann_pct, sd * 252f64.sqrt() * 100.0); // ≈ 258.2276
        // Sharpe = (2/27)/(√1929/270) × √252 = 20 √(252/1929) ≈ 7.228766
        close(m.sharpe, 20.0 * (252.0f64 / 1929.0).sqrt());
        // downside dev = √((0 + 0.01 + 0)/3) = 0.1/√3
        // Sortino = (2/27)/(0.1/√3) × √252 = (20√3/27) × 6√7 = 40√21/9 ≈ 20.36700
        close(m.sortino, 40.0 * 21f64.sqrt() / 9.0);

        // Peak 110 → trough 99: 1 − 99/110 = 10 %. Peak at point 0, recovered at point 2
        // (121 ≥ 110): 2 bars, 2 days.
        close(m.max_drawdown_pct, 10.0);
        assert_eq!(m.max_drawdown_duration_bars, 2);
        close(m.max_drawdown_duration_days, 2.0);

        // sorted r = −0.1, 0.1, 0.2222; h = (3 − 1) × 0.05 = 0.1
        // p5 = −0.1 + 0.1 × (0.1 − (−0.1)) = −0.08 → VaR 8 %
        close(m.var_95_pct, 8.0);

        // years = 2 days / 365.25 days; CAGR = 1.21^182.625 − 1 ≈ 1.31425e15, i.e. ≈ 1.31425e17 %
        close(m.cagr_pct, (1.21f64.powf(182.625) - 1.0) * 100.0);
        assert!(m.cagr_pct > 1.3142e17 && m.cagr_pct < 1.3143e17);
        close(m.calmar, m.cagr_pct / 10.0);

        // 2 of 3 points in the market.
        close(m.exposure_pct, 200.0 / 3.0);

        // Closed pnl +10, −5, +3: wins 2/3, PF = 13/5, expectancy 8/3.
        assert_eq!((m.n_trades, m.n_open), (3, 1));
        close(m.win_rate_pct, 200.0 / 3.0);
        close(m.profit_factor, 2.6);
        close(m.expectancy, 8.0 / 3.0);
        // Returns on notional 10 %, −5 %, 5 %: mean 10/3 %, best 10, worst −5.
        close(m.avg_trade_pct, 10.0 / 3.0);
        close(m.best_trade_pct, 10.0);
        close(m.worst_trade_pct, -5.0);
        assert_eq!(m.fees, 1.5);
    }

    #[test]
    fn cagr_over_exact_calendar_years_and_yearly_bars() {
        // Points one Julian year apart: 100, 110, 121 → 2 years, CAGR = √1.21 − 1 = 10 %.
        let year = 31_557_600; // 365.25 × 86 400
        let eq = curve(year, &[100.0, 110.0, 121.0]);
        let m = compute(&MetricsInput::new(&eq, &[], 100.0));
        close(m.cagr_pct, 10.0);
        // 365.25 days / 30.4375 = 12 months → 1 period per year.
        assert_eq!(m.periods_per_year, 1.0);
        // No drawdown → Calmar 0.
        assert_eq!((m.max_drawdown_pct, m.calmar), (0.0, 0.0));
    }

    #[test]
    fn risk_free_rate_is_compounded_down_to_one_period() {
        // Yearly bars (1 period per year): rf per period = the annual rate itself.
        // r = 0.1, 0.3 → mean 0.2, sd = √((0.01 + 0.01)/1) = √0.02
        // Sharpe = (0.2 − 0.05)/√0.02 × √1; downside dev = 0 → Sortino 0.
        let year = 31_557_600;
        let eq = curve(year, &[110.0, 143.0]);
        let mut input = MetricsInput::new(&eq, &[], 100.0);
        input.risk_free_rate = 0.05;
        let m = compute(&input);
        close(m.sharpe, 0.15 / 0.02f64.sqrt());
        assert_eq!(m.sortino, 0.0);

        // Daily: rf per period = 1.05^(1/252) − 1.
        let (eq, _) = example();
        let mut input = MetricsInput::new(&eq, &[], 100.0);
        input.risk_free_rate = 0.05;
        let m = compute(&input);
        let rf = 1.05f64.powf(1.0 / 252.0) - 1.0;
        close(
            m.sharpe,
            (2.0 / 27.0 - rf) / (1929f64.sqrt() / 270.0) * 252f64.sqrt(),
        );
    }

    #[test]
    fn drawdown_from_initial_cash_and_unrecovered_to_the_end() {
        // Cash 100 then 90, 95, 100, 80 hourly. The virtual cash point sits one interval before
        // the first point. Drawdown 1: peak = cash (index −1), recovered at index 2 (100 ≥ 100):
        // 3 bars, 3 hours. Drawdown 2: peak at index 2, still under at index 3 (the end):
        // 1 bar, depth 1 − 80/100 = 20 %.
        let eq = curve(H, &[90.0, 95.0, 100.0, 80.0]);
        let m = compute(&MetricsInput::new(&eq, &[], 100.0));
        close(m.max_drawdown_pct, 20.0);
        assert_eq!(m.max_drawdown_duration_bars, 3);
        close(m.max_drawdown_duration_days, 3.0 / 24.0);

        // 100, 120, 110, 100, 105: peak 120 at index 1, never recovered: 4 − 1 = 3 bars, 3 days;
        // depth 1 − 100/120 = 1/6.
        let eq = curve(DAY, &[100.0, 120.0, 110.0, 100.0, 105.0]);
        let m = compute(&MetricsInput::new(&eq, &[], 100.0));
        close(m.max_drawdown_pct, 100.0 / 6.0);
        assert_eq!(m.max_drawdown_duration_bars, 3);
        close(m.max_drawdown_duration_days, 3.0);

        // A weekend gap counts in days but not in bars: Fri peak, Mon below, Tue recovered.
        let fri = T0 + 4 * DAY;
        let eq = vec![
            pt(fri - DAY, 100.0, true),
            pt(fri, 110.0, true),
            pt(fri + 3 * DAY, 105.0, true),
            pt(fri + 4 * DAY, 111.0, true),
        ];
        let m = compute(&MetricsInput::new(&eq, &[], 100.0));
        assert_eq!(m.max_drawdown_duration_bars, 2);
        close(m.max_drawdown_duration_days, 4.0);
    }

    #[test]
    fn var_interpolates_like_numpy() {
        // numpy.percentile([1, 2, 3, 4], 5) = 1 + 0.15 × 1 = 1.15
        close(percentile_linear(&[1.0, 2.0, 3.0, 4.0], 0.05), 1.15);
        // One value: that value.
        assert_eq!(percentile_linear(&[-0.3], 0.05), -0.3);
        // 21 values 0..=20: h = 20 × 0.05 = 1 exactly → 1.
        let xs: Vec<f64> = (0..=20).map(f64::from).collect();
        assert_eq!(percentile_linear(&xs, 0.05), 1.0);

        // Returns −5 %, −2 %, 0, +1 %, +3 % (cash 100 → 95 → 93.1 → 93.1 → 94.031 → 96.85193).
        // h = 4 × 0.05 = 0.2 → p5 = −0.05 + 0.2 × (−0.02 − (−0.05)) = −0.044 → VaR 4.4 %.
        let eq = curve(DAY, &[95.0, 93.1, 93.1, 94.031, 96.851_93]);
        let m = compute(&MetricsInput::new(&eq, &[], 100.0));
        close(m.var_95_pct, 4.4);

        // Only gains: the 5th percentile is a gain, so VaR is negative.
        let eq = curve(DAY, &[101.0, 103.02]); // +1 %, +2 %: p5 = 0.01 + 0.05 × 0.01
        let m = compute(&MetricsInput::new(&eq, &[], 100.0));
        close(m.var_95_pct, -1.05);
    }

    #[test]
    fn periods_per_year_daily_and_longer() {
        // Weekdays only: steps of 1 day (most common) and 3 days over weekends → daily → 252.
        let daily = sessions(15, 0, 1, DAY);
        assert_eq!(infer_interval(&daily), Some(DAY));
        assert_eq!(periods_per_year(&daily, infer_interval(&daily)), 252.0);
        // Weekly → 52, two-weekly → 26, two-daily → 126.
        let weekly = curve(7 * DAY, &[1.0; 10]);
        assert_eq!(periods_per_year(&weekly, infer_interval(&weekly)), 52.0);
        assert_eq!(periods_per_year(&[], Some(14 * DAY)), 26.0);
        assert_eq!(periods_per_year(&[], Some(2 * DAY)), 126.0);
        // Calendar month starts of 2024: steps of 29, 30 and 31 days, 31 the most common
        // (31/30.4375 rounds to 1 month) → 12. Quarter starts (90–92 days) → 4.
        let month_starts: Vec<EquityPoint> = (1..=12)
            .map(|m| {
                pt(
                    qtm_core::calendar::days_from_civil(2024, m, 1) * DAY,
                    1.0,
                    false,
                )
            })
            .collect();
        assert_eq!(infer_interval(&month_starts), Some(31 * DAY));
        assert_eq!(
            periods_per_year(&month_starts, infer_interval(&month_starts)),
            12.0
        );
        assert_eq!(periods_per_year(&[], Some(28 * DAY)), 12.0);
        assert_eq!(periods_per_year(&[], Some(91 * DAY)), 4.0);
        assert_eq!(periods_per_year(&[], Some(366 * DAY)), 1.0);
        // Unknown interval → 0 (nothing is annualized).
        assert_eq!(periods_per_year(&[], None), 0.0);
        assert_eq!(bar_interval(None, &scan(&[pt(T0, 1.0, false)])), None);
        assert_eq!(bar_interval(Some(0), &scan(&[])), None);
    }

    #[test]
    fn periods_per_year_intraday() {
        // 24-hour FX-like hourly bars on weekdays, starting mid-day so the first day is
        // partial: median 24 bars per day → 252 × 24 = 6048.
        let mut fx = sessions(10, 0, 24, H);
        fx.drain(..13);
        assert_eq!(infer_interval(&fx), Some(H));
        assert_eq!(bars_per_day(&fx, H), 24.0);
        assert_eq!(periods_per_year(&fx, infer_interval(&fx)), 6048.0);

        // A 6.5-hour session of minute bars (13:30–20:00 UTC): 390 per day → 252 × 390.
        let minutes = sessions(5, 13 * H + 1800, 390, 60);
        assert_eq!(infer_interval(&minutes), Some(60));
        assert_eq!(
            periods_per_year(&minutes, infer_interval(&minutes)),
            98_280.0
        );

        // Median of an even number of days: 4 days with 2, 4, 6 and 8 bars → (4 + 6)/2 = 5.
        let mut odd = Vec::new();
        for (d, n) in [2, 4, 6, 8].into_iter().enumerate() {
            for k in 0..n {
                odd.push(pt(T0 + d as i64 * DAY + k * H, 1.0, false));
            }
        }
        assert_eq!(bars_per_day(&odd, H), 5.0);

        // No data but a given interval: assume a 24-hour day.
        assert_eq!(periods_per_year(&[], Some(H)), 6048.0);
        // Never more bars per day than fit in one (duplicate timestamps).
        let dup = vec![pt(T0, 1.0, false); 50];
        assert_eq!(bars_per_day(&dup, H), 24.0);
    }

    #[test]
    fn interval_inference_ties_go_to_the_smaller_step() {
        // Steps 60, 120, 60, 120 → tie → 60. Non-positive steps are ignored.
        let eq: Vec<EquityPoint> = [0, 60, 180, 240, 360, 360, 300]
            .iter()
            .map(|&t| pt(T0 + t, 1.0, false))
            .collect();
        assert_eq!(infer_interval(&eq), Some(60));
        // A given positive interval wins over inference.
        assert_eq!(bar_interval(Some(300), &scan(&eq[..])), Some(300));
    }

    fn assert_no_nan(m: &Metrics) {
        let v = serde_json::to_value(m).unwrap();
        for (k, x) in v.as_object().unwrap() {
            assert!(
                x.is_number(),
                "{k} = {x} is not a number (NaN or infinity leaked)"
            );
        }
    }

    #[test]
    fn empty_curve_and_no_trades_give_zeros() {
        let m = compute(&MetricsInput::new(&[], &[], 1000.0));
        let want = Metrics {
            final_equity: 1000.0,
            ..Metrics::default()
        };
        assert_eq!(m, want);
        assert_no_nan(&m);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Metrics>(&json).unwrap(), m);
    }

    #[test]
    fn single_point() {
        // One point 90 after 100: one return −0.1; sd needs two → 0; interval unknown → ppy 0.
        let eq = curve(DAY, &[90.0]);
        let m = compute(&MetricsInput::new(&eq, &[], 100.0));
        assert_eq!(m.bars, 1);
        assert_eq!((m.start_ts, m.end_ts), (T0, T0));
        close(m.total_return_pct, -10.0);
        assert_eq!(
            (m.cagr_pct, m.volatility_ann_pct, m.sharpe, m.sortino),
            (0.0, 0.0, 0.0, 0.0)
        );
        assert_eq!(m.periods_per_year, 0.0);
        close(m.max_drawdown_pct, 10.0);
        assert_eq!(m.max_drawdown_duration_bars, 1);
        assert_eq!(m.max_drawdown_duration_days, 0.0); // no interval: cash point at T0
        close(m.var_95_pct, 10.0);
        assert_no_nan(&m);

        // With a daily interval: Sortino = (−0.1)/√(0.01) × √252 = −√252; the cash point is
        // one day earlier, so the drawdown lasts 1 day.
        let mut input = MetricsInput::new(&eq, &[], 100.0);
        input.interval_seconds = Some(DAY);
        let m = compute(&input);
        close(m.sortino, -(252f64.sqrt()));
        close(m.max_drawdown_duration_days, 1.0);
    }

    #[test]
    fn flat_equity_gives_zeros() {
        let eq = curve(DAY, &[100.0; 5]);
        let m = compute(&MetricsInput::new(&eq, &[], 100.0));
        assert_eq!(
            (
                m.total_return_pct,
                m.cagr_pct,
                m.volatility_ann_pct,
                m.sharpe,
                m.sortino,
                m.max_drawdown_pct,
                m.calmar,
                m.var_95_pct,
            ),
            (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        );
        assert_eq!(m.max_drawdown_duration_bars, 0);
        assert_eq!((m.n_trades, m.win_rate_pct, m.profit_factor), (0, 0.0, 0.0));
        close(m.exposure_pct, 100.0);
        assert_no_nan(&m);
    }

    #[test]
    fn blown_and_negative_accounts_stay_finite() {
        // 100 → 0 → 0 → −10: returns −1, then 0 (previous value not positive).
        let eq = curve(DAY, &[50.0, 0.0, 0.0, -10.0]);
        let m = compute(&MetricsInput::new(&eq, &[], 100.0));
        assert_eq!(
            returns(100.0, eq.iter().copied()).collect::<Vec<_>>(),
            vec![-0.5, -1.0, 0.0, 0.0]
        );
        close(m.cagr_pct, -100.0);
        close(m.max_drawdown_pct, 110.0);
        assert_no_nan(&m);
        // Garbage in: non-finite values and zero cash still give numbers.
        let eq = curve(DAY, &[f64::NAN, f64::INFINITY, 5.0]);
        assert_no_nan(&compute(&MetricsInput::new(&eq, &[], 0.0)));
        assert_no_nan(&compute(&MetricsInput::new(&eq, &[], f64::NAN)));
    }

    #[test]
    fn profit_factor_edges_and_json_null() {
        let only_wins = [trade(4.0, 1.0, 10.0, true), trade(0.0, 1.0, 10.0, true)];
        let m = compute(&MetricsInput::new(&[], &only_wins, 100.0));
        assert_eq!(m.profit_factor, f64::INFINITY);
        close(m.win_rate_pct, 50.0);
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["profit_factor"], serde_json::Value::Null);
        assert_eq!(json["expectancy"], serde_json::json!(2.0));
        let back: Metrics = serde_json::from_value(json).unwrap();
        assert_eq!(back, m);

        let only_losses = [trade(-4.0, 1.0, 10.0, true)];
        let m = compute(&MetricsInput::new(&[], &only_losses, 100.0));
        assert_eq!((m.profit_factor, m.win_rate_pct), (0.0, 0.0));

        let scratch = [trade(0.0, 1.0, 10.0, true)];
        assert_eq!(
            compute(&MetricsInput::new(&[], &scratch, 100.0)).profit_factor,
            0.0
        );

        // Open trades only: no closed-trade statistics. Zero notional: no trade return.
        let open = [trade(9.0, 1.0, 10.0, false)];
        let m = compute(&MetricsInput::new(&[], &open, 100.0));
        assert_eq!((m.n_trades, m.n_open, m.profit_factor), (0, 1, 0.0));
        let free = [trade(1.0, 0.0, 10.0, true)];
        let m = compute(&MetricsInput::new(&[], &free, 100.0));
        assert_eq!((m.avg_trade_pct, m.expectancy), (0.0, 1.0));
    }
}
