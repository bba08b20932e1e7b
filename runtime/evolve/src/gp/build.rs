//! Random typed trees (grow and full), and the random draws of attributes: periods, lookback
//! distances, factors and constants, and their jitter under point mutation.
//!
//! Every production is listed with the depth it needs at least, so a tree asked for with a
//! depth budget never exceeds it and never gets stuck: each type has a production that fits
//! its minimum depth ([`min_depth`]).

use super::tree::{Dec, Field, Kind, Node, Op, Unit, nonnegative};
use crate::rng::Rng;

/// Longest indicator period drawn. Longer windows mostly delay the warm-up on intraday data;
/// the checker would take up to `qtm_rules::MAX_PERIOD`.
pub(crate) const MAX_PERIOD: u32 = 200;
/// Shortest period: a 1-bar average is its source.
pub(crate) const MIN_PERIOD: u32 = 2;
/// Farthest lookback drawn (`x[n]`): a small shift, as in `highest(high, 20)[1]`.
pub(crate) const MAX_LOOKBACK: u16 = 10;

/// Periods traders use; half the draws come from here, so programs read familiar.
const NICE_PERIODS: [u32; 12] = [2, 3, 5, 7, 10, 14, 20, 26, 30, 50, 100, 200];

/// The smallest depth of a subtree of this kind.
pub(crate) fn min_depth(kind: Kind) -> usize {
    match kind {
        // A comparison of two leaves: `close > open`.
        Kind::Bool => 2,
        Kind::Num(u) => unit_min_depth(u),
    }
}

fn unit_min_depth(u: Unit) -> usize {
    match u {
        // `close`, `volume`, `atr(14)`.
        Unit::Price | Unit::Volume | Unit::Diff => 1,
        // `rsi(close, 14)`, `close / open`, `atr(14) / close`.
        Unit::Osc | Unit::Ratio | Unit::Rel => 2,
    }
}

/// Depth the operands of a comparison of this unit need: two different volume series need
/// an indicator (`volume > sma(volume, 20)`), since `volume` is the only volume leaf.
fn operand_min_depth(u: Unit) -> usize {
    match u {
        Unit::Volume => 2,
        _ => unit_min_depth(u),
    }
}

/// Probability that the right operand of a comparison of this unit is a constant. Prices
/// and volumes have no meaningful constant (their scale is the instrument's).
fn const_chance(u: Unit) -> f64 {
    match u {
        Unit::Price | Unit::Volume => 0.0,
        Unit::Osc | Unit::Ratio | Unit::Rel => 0.6,
        Unit::Diff => 0.4,
    }
}

/// Whether a constant may stand for a subtree of this kind (in a right-operand slot).
pub(crate) fn has_constants(kind: Kind) -> bool {
    matches!(kind, Kind::Num(u) if const_chance(u) > 0.0)
}

/// One index drawn with the given weights (zero weights are never drawn; at least one must
/// be positive).
pub(crate) fn pick(rng: &mut Rng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = rng.f64() * total;
    let mut last = 0;
    for (i, &w) in weights.iter().enumerate() {
        if w <= 0.0 {
            continue;
        }
        last = i;
        if x < w {
            return i;
        }
        x -= w;
    }
    last
}

/// Draws random subtrees. `full` is Koza's full method: below the depth budget only
/// operators, so every branch reaches the budget where the types allow; otherwise grow,
/// where leaves compete with operators at every level.
pub(crate) struct Builder<'a> {
    pub(crate) rng: &'a mut Rng,
    pub(crate) full: bool,
}

impl Builder<'_> {
    /// A subtree of `kind` at most `budget` deep (`budget >= min_depth(kind)`).
    pub(crate) fn tree(&mut self, kind: Kind, budget: usize) -> Node {
        match kind {
            Kind::Bool => self.boolean(budget),
            Kind::Num(u) => self.num(u, budget),
        }
    }

    /// A condition at most `budget` (≥ 2) deep.
    pub(crate) fn boolean(&mut self, budget: usize) -> Node {
        let b = budget.max(2);
        let deep = |w: f64| if b >= 3 { w } else { 0.0 };
        // comparison, cross, and, or, not, lookback
        let w = [4.0, 2.0, deep(1.5), deep(1.0), deep(0.25), deep(0.2)];
        match pick(self.rng, &w) {
            i @ (0 | 1) => {
                let u = self.operand_unit(b - 1);
                let a = self.num(u, b - 1);
                let c = self.right_operand(u, b - 1, &a);
                let op = match (i, self.rng.chance(0.5)) {
                    (0, true) => Op::Gt,
                    (0, false) => Op::Lt,
                    (_, true) => Op::CrossOver,
                    (_, false) => Op::CrossUnder,
                };
                Node::new(op, vec![a, c])
            }
            2 => Node::new(Op::And, vec![self.boolean(b - 1), self.boolean(b - 1)]),
            3 => Node::new(Op::Or, vec![self.boolean(b - 1), self.boolean(b - 1)]),
            4 => Node::new(Op::Not, vec![self.boolean(b - 1)]),
            _ => {
                let n = lookback(self.rng);
                Node::new(Op::Lookback(n), vec![self.boolean(b - 1)])
            }
        }
    }

    /// The unit two operands `budget` deep are compared in.
    fn operand_unit(&mut self, budget: usize) -> Unit {
        const UNITS: [(Unit, f64); 6] = [
            (Unit::Price, 3.0),
            (Unit::Osc, 2.0),
            (Unit::Diff, 1.5),
            (Unit::Ratio, 1.0),
            (Unit::Rel, 0.7),
            (Unit::Volume, 0.8),
        ];
        let w: Vec<f64> = UNITS
            .iter()
            .map(|&(u, w)| {
                if operand_min_depth(u) <= budget {
                    w
                } else {
                    0.0
                }
            })
            .collect();
        UNITS[pick(self.rng, &w)].0
    }

    /// The right operand of a comparison or cross with `left`: a constant or a series.
    /// What is never negative (`atr(14)`, `atr(14) / close`) gets no constant 0 and only
    /// positive relative levels: anything else would be always or never true.
    fn right_operand(&mut self, u: Unit, budget: usize, left: &Node) -> Node {
        if self.rng.chance(const_chance(u)) {
            let positive = nonnegative(left);
            match u {
                Unit::Diff if positive => {}
                Unit::Rel if positive => {
                    let v = (0.02 * self.rng.normal().abs()).clamp(0.0005, 0.2);
                    return Node::leaf(Op::Const(u, Dec::round(v, 2)));
                }
                _ => return self.constant(u),
            }
        }
        self.num(u, budget)
    }

    /// A constant of unit `u` (see [`const_chance`] for which have one).
    pub(crate) fn constant(&mut self, u: Unit) -> Node {
        let d = match u {
            Unit::Osc => Dec::int(self.rng.range_i64(10, 90) as i32),
            Unit::Ratio => Dec::round((1.0 + 0.03 * self.rng.normal()).clamp(0.8, 1.25), 3),
            Unit::Rel => Dec::round((0.02 * self.rng.normal()).clamp(-0.2, 0.2), 2),
            Unit::Diff | Unit::Price | Unit::Volume => Dec::ZERO,
        };
        Node::leaf(Op::Const(u, d))
    }

    /// A series of unit `u` at most `budget` deep (`budget >= unit_min_depth(u)`).
    pub(crate) fn num(&mut self, u: Unit, budget: usize) -> Node {
        let b = budget.max(unit_min_depth(u));
        // Leaves are not drawn by the full method while there is depth to fill.
        let full = self.full;
        let leaf = |w: f64| if full && b > 1 { 0.0 } else { w };
        let at = |need: usize, w: f64| if b >= need { w } else { 0.0 };
        match u {
            Unit::Price => {
                // field, average, extreme, band, lookback, ± difference, min/max
                let w = [
                    leaf(3.0),
                    at(2, 2.0),
                    at(2, 1.0),
                    at(2, 0.6),
                    at(2, 1.0),
                    at(2, 0.5),
                    at(2, 0.3),
                ];
                match pick(self.rng, &w) {
                    0 => {
                        // Close is the price most rules are about.
                        const FIELDS: [Field; 5] = [
                            Field::Close,
                            Field::Close,
                            Field::Open,
                            Field::High,
                            Field::Low,
                        ];
                        let f = FIELDS[self.rng.index(5)];
                        Node::leaf(Op::Field(f))
                    }
                    1 => self.average(u, b),
                    2 => self.extreme(u, b),
                    3 => {
                        let (period, k) = (period(self.rng), band_k(self.rng));
                        let upper = self.rng.chance(0.5);
                        let src = self.num(Unit::Price, b - 1);
                        Node::new(Op::Band { period, k, upper }, vec![src])
                    }
                    4 => self.lookback_of(u, b),
                    5 => {
                        let op = self.flip(Op::Add, Op::Sub);
                        let p = self.num(Unit::Price, b - 1);
                        let d = self.num(Unit::Diff, b - 1);
                        Node::new(op, vec![p, d])
                    }
                    _ => {
                        let op = self.flip(Op::Min, Op::Max);
                        let x = self.num(Unit::Price, b - 1);
                        let y = self.num(Unit::Price, b - 1);
                        Node::new(op, vec![x, y])
                    }
                }
            }
            Unit::Volume => {
                // field, average, extreme, lookback
                let w = [leaf(3.0), at(2, 2.0), at(2, 0.5), at(2, 1.0)];
                match pick(self.rng, &w) {
                    0 => Node::leaf(Op::Field(Field::Volume)),
                    1 => self.average(u, b),
                    2 => self.extreme(u, b),
                    _ => self.lookback_of(u, b),
                }
            }
            Unit::Osc => {
                // rsi, smoothed oscillator, lookback
                let w = [4.0, at(3, 0.5), at(3, 0.5)];
                match pick(self.rng, &w) {
                    0 => {
                        let src = if self.rng.chance(0.85) {
                            Unit::Price
                        } else {
                            Unit::Volume
                        };
                        let p = period(self.rng);
                        Node::new(Op::Rsi(p), vec![self.num(src, b - 1)])
                    }
                    1 => self.average(u, b),
                    _ => self.lookback_of(u, b),
                }
            }
            Unit::Diff => {
                // atr, price − price, macd, × factor, abs, average, lookback, diff ± diff
                let w = [
                    leaf(2.0),
                    at(2, 2.0),
                    at(2, 1.5),
                    at(2, 0.7),
                    at(2, 0.3),
                    at(2, 0.5),
                    at(2, 0.5),
                    at(2, 0.3),
                ];
                match pick(self.rng, &w) {
                    0 => Node::leaf(Op::Atr(period(self.rng))),
                    1 => {
                        let x = self.num(Unit::Price, b - 1);
                        let y = self.num(Unit::Price, b - 1);
                        Node::new(Op::Sub, vec![x, y])
                    }
                    2 => {
                        let (fast, slow, signal) = macd_periods(self.rng);
                        let signal_line = self.rng.chance(0.4);
                        let src = self.num(Unit::Price, b - 1);
                        Node::new(
                            Op::Macd {
                                fast,
                                slow,
                                signal,
                                signal_line,
                            },
                            vec![src],
                        )
                    }
                    3 => {
                        let k = scale_k(self.rng);
                        Node::new(Op::Scale(k), vec![self.num(Unit::Diff, b - 1)])
                    }
                    4 => Node::new(Op::Abs, vec![self.num(Unit::Diff, b - 1)]),
                    5 => self.average(u, b),
                    6 => self.lookback_of(u, b),
                    _ => {
                        let op = self.flip(Op::Add, Op::Sub);
                        let x = self.num(Unit::Diff, b - 1);
                        let y = self.num(Unit::Diff, b - 1);
                        Node::new(op, vec![x, y])
                    }
                }
            }
            Unit::Ratio => {
                // price / price, volume / volume, average, lookback
                let w = [3.0, at(3, 1.0), at(3, 0.5), at(3, 0.3)];
                match pick(self.rng, &w) {
                    i @ (0 | 1) => {
                        let v = if i == 0 { Unit::Price } else { Unit::Volume };
                        let x = self.num(v, b - 1);
                        let y = self.num(v, b - 1);
                        Node::new(Op::Div, vec![x, y])
                    }
                    2 => self.average(u, b),
                    _ => self.lookback_of(u, b),
                }
            }
            Unit::Rel => {
                // difference / price, average, lookback
                let w = [3.0, at(3, 0.3), at(3, 0.3)];
                match pick(self.rng, &w) {
                    0 => {
                        let d = self.num(Unit::Diff, b - 1);
                        let p = self.num(Unit::Price, b - 1);
                        Node::new(Op::Div, vec![d, p])
                    }
                    1 => self.average(u, b),
                    _ => self.lookback_of(u, b),
                }
            }
        }
    }

    /// `a` or `b`, with equal chance.
    fn flip<T>(&mut self, a: T, b: T) -> T {
        if self.rng.chance(0.5) { a } else { b }
    }

    /// `sma` or `ema` of a series of `u`.
    fn average(&mut self, u: Unit, b: usize) -> Node {
        let p = period(self.rng);
        let op = self.flip(Op::Sma(p), Op::Ema(p));
        Node::new(op, vec![self.num(u, b - 1)])
    }

    /// `highest` or `lowest` of a series of `u`.
    fn extreme(&mut self, u: Unit, b: usize) -> Node {
        let p = period(self.rng);
        let op = self.flip(Op::Highest(p), Op::Lowest(p));
        Node::new(op, vec![self.num(u, b - 1)])
    }

    /// `x[n]` of a series of `u` that is not itself a lookback (`x[1][2]` is `x[3]`).
    fn lookback_of(&mut self, u: Unit, b: usize) -> Node {
        let n = lookback(self.rng);
        let mut x = self.num(u, b - 1);
        for _ in 0..4 {
            if !matches!(x.op, Op::Lookback(_)) {
                break;
            }
            x = self.num(u, b - 1);
        }
        Node::new(Op::Lookback(n), vec![x])
    }
}

/// A period: half from the periods traders use, half log-uniform in
/// `MIN_PERIOD..=MAX_PERIOD` (short windows as likely as long ones on a log scale).
pub(crate) fn period(rng: &mut Rng) -> u32 {
    if rng.chance(0.5) {
        NICE_PERIODS[rng.index(NICE_PERIODS.len())]
    } else {
        log_uniform(rng, MIN_PERIOD, MAX_PERIOD)
    }
}

fn log_uniform(rng: &mut Rng, lo: u32, hi: u32) -> u32 {
    let (a, b) = (f64::from(lo).ln(), f64::from(hi).ln());
    ((a + rng.f64() * (b - a)).exp().round() as u32).clamp(lo, hi)
}

/// MACD periods, fast below slow; the classic 12/26/9 a third of the time.
fn macd_periods(rng: &mut Rng) -> (u32, u32, u32) {
    if rng.chance(0.3) {
        return (12, 26, 9);
    }
    let fast = log_uniform(rng, 2, 50);
    let slow = log_uniform(rng, fast + 1, MAX_PERIOD);
    (fast, slow, log_uniform(rng, 2, 50))
}

/// A lookback distance, mostly 1–3 bars.
pub(crate) fn lookback(rng: &mut Rng) -> u16 {
    if rng.chance(0.7) {
        1 + rng.below(3) as u16
    } else {
        rng.range_i64(1, i64::from(MAX_LOOKBACK)) as u16
    }
}

/// A Bollinger factor in 1..3 standard deviations.
fn band_k(rng: &mut Rng) -> Dec {
    Dec::round(1.0 + 2.0 * rng.f64(), 2)
}

/// A factor for a difference (`atr(14) * 2`), log-uniform in 0.5..4.
fn scale_k(rng: &mut Rng) -> Dec {
    Dec::round((0.5f64.ln() + rng.f64() * 8f64.ln()).exp(), 2)
}

/// A period moved by a random factor around 1 (about ±25 %), always by at least one.
pub(crate) fn jitter_period(rng: &mut Rng, p: u32, lo: u32, hi: u32) -> u32 {
    let moved = (f64::from(p) * (0.25 * rng.normal()).exp()).round() as i64;
    let mut q = moved.clamp(i64::from(lo), i64::from(hi)) as u32;
    if q == p {
        q = if (rng.chance(0.5) && p < hi) || p <= lo {
            p + 1
        } else {
            p - 1
        };
    }
    q.clamp(lo, hi)
}

/// A lookback moved by one or two bars.
pub(crate) fn jitter_lookback(rng: &mut Rng, n: u16) -> u16 {
    let step = 1 + rng.below(2) as i64;
    let up = n <= 1 || (n < MAX_LOOKBACK && rng.chance(0.5));
    let m = if up {
        i64::from(n) + step
    } else {
        i64::from(n) - step
    };
    m.clamp(1, i64::from(MAX_LOOKBACK)) as u16
}

/// A constant moved by a step that suits its unit (0 for differences stays 0).
pub(crate) fn jitter_const(rng: &mut Rng, u: Unit, d: Dec) -> Dec {
    match u {
        Unit::Osc => {
            let v = d.value().round() as i64;
            let mut step = (5.0 * rng.normal()).round() as i64;
            if step == 0 {
                step = if rng.chance(0.5) { 1 } else { -1 };
            }
            Dec::int((v + step).clamp(1, 99) as i32)
        }
        Unit::Ratio => Dec::round((d.value() + 0.01 * rng.normal()).clamp(0.5, 2.0), 3),
        Unit::Rel => Dec::round((d.value() + 0.005 * rng.normal()).clamp(-0.2, 0.2), 2),
        Unit::Diff | Unit::Price | Unit::Volume => d,
    }
}

/// A positive factor moved by about ±15 %, kept in `lo..=hi`.
pub(crate) fn jitter_factor(rng: &mut Rng, k: Dec, lo: f64, hi: f64) -> Dec {
    Dec::round((k.value() * (0.15 * rng.normal()).exp()).clamp(lo, hi), 2)
}
