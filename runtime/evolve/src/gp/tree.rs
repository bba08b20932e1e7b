//! The genome's expression trees: one node type for every operator, typed by what its value
//! measures, so that variation only ever puts a subtree where one of its type belonged.
//!
//! The checker's types (bool, number, series) are too coarse for search: `close > volume` or
//! `close > 30` check fine but compare quantities on unrelated scales, and a search would
//! spend most of its evaluations on them. The genome's numeric type is a *unit* instead, and
//! each operator lists which units it combines (the tables in [`kind_of`] and
//! `build::Builder`); every unit is a per-bar series as far as the checker is concerned.
//! Constants exist only where a fixed value means something (RSI levels, ratios near 1,
//! zero for differences), and only as the right operand of a comparison or cross.

use serde::{Deserialize, Serialize};

/// What a numeric subtree measures; operators combine only compatible units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) enum Unit {
    /// A price level: `open high low close`, their averages, extremes and bands.
    Price,
    /// Traded volume and its averages.
    Volume,
    /// An oscillator bounded by 0 and 100 (RSI).
    Osc,
    /// A price difference: `close - open`, ATR, MACD; scale-dependent, so its only constant
    /// is 0.
    Diff,
    /// A ratio of like quantities (`close / sma(close, 50)`), around 1.
    Ratio,
    /// A difference relative to the price (`atr(14) / close`), around 0.
    Rel,
}

/// A subtree's type in the genome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// A condition.
    Bool,
    /// A per-bar number of this unit.
    Num(Unit),
}

/// A bar field (the genome's own copy: `qtm_rules::Field` is not serializable).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) enum Field {
    /// `open`
    Open,
    /// `high`
    High,
    /// `low`
    Low,
    /// `close`
    Close,
    /// `volume`
    Volume,
}

impl Field {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Field::Open => "open",
            Field::High => "high",
            Field::Low => "low",
            Field::Close => "close",
            Field::Volume => "volume",
        }
    }
}

/// A decimal `m · 10^e` with few significant digits. Constants are stored this way, not as
/// `f64`, so that genomes are `Eq + Hash` (caches and duplicate detection key on them) and
/// print exactly as short literals (`1.02`, `0.035`), never as `1.0199999999999998`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Dec {
    m: i32,
    e: i8,
}

impl Dec {
    /// Zero.
    pub(crate) const ZERO: Dec = Dec { m: 0, e: 0 };

    /// A whole number.
    pub(crate) fn int(v: i32) -> Dec {
        Dec { m: v, e: 0 }.normal()
    }

    /// `v` rounded to `digits` significant digits (1..=6); non-finite values become 0.
    pub(crate) fn round(v: f64, digits: u32) -> Dec {
        if !v.is_finite() || v == 0.0 {
            return Dec::ZERO;
        }
        let digits = digits.clamp(1, 6) as i32;
        let mag = v.abs().log10().floor() as i32;
        let mut e = (mag - (digits - 1)).clamp(-60, 60);
        let scaled = if e < 0 {
            v * 10f64.powi(-e)
        } else {
            v / 10f64.powi(e)
        };
        let mut m = scaled.round() as i64;
        // 9.996 at 3 digits rounds to 1000: one digit too many.
        if m.abs() >= 10i64.pow(digits as u32) {
            m /= 10;
            e += 1;
        }
        Dec {
            m: m as i32,
            e: e as i8,
        }
        .normal()
    }

    /// Trailing zeros moved into the exponent, so equal values are equal `Dec`s.
    fn normal(mut self) -> Dec {
        if self.m == 0 {
            return Dec::ZERO;
        }
        while self.m % 10 == 0 {
            self.m /= 10;
            self.e += 1;
        }
        self
    }

    pub(crate) fn value(self) -> f64 {
        let e = i32::from(self.e);
        if e < 0 {
            f64::from(self.m) / 10f64.powi(-e)
        } else {
            f64::from(self.m) * 10f64.powi(e)
        }
    }

    pub(crate) fn is_negative(self) -> bool {
        self.m < 0
    }

    /// The literal, in plain decimal notation (the lexer reads `0.035`, and it reads better
    /// than `3.5e-2`).
    pub(crate) fn text(self) -> String {
        let digits = self.m.unsigned_abs().to_string();
        let sign = if self.m < 0 { "-" } else { "" };
        let e = i32::from(self.e);
        let body = if e >= 0 {
            format!("{digits}{}", "0".repeat(e as usize))
        } else {
            let frac = (-e) as usize;
            if digits.len() > frac {
                let (a, b) = digits.split_at(digits.len() - frac);
                format!("{a}.{b}")
            } else {
                format!("0.{}{digits}", "0".repeat(frac - digits.len()))
            }
        };
        format!("{sign}{body}")
    }
}

/// An operator with its fixed attributes. Periods, lookback distances and factors are
/// attributes, not child nodes: the checker requires them to be fixed for the run, so they
/// are never subtrees, and point mutation jitters them in place.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum Op {
    /// `a and b`
    And,
    /// `a or b`
    Or,
    /// `not a`
    Not,
    /// `a > b` (only `>` and `<`: on real-valued series `>=` and `<=` are near-duplicates
    /// that would only dilute the search).
    Gt,
    /// `a < b`
    Lt,
    /// `crossover(a, b)`
    CrossOver,
    /// `crossunder(a, b)`
    CrossUnder,
    /// `x[n]` of a series or a bool.
    Lookback(u16),
    /// A bar field.
    Field(Field),
    /// A constant of a unit (only as the right operand of a comparison or cross).
    Const(Unit, Dec),
    /// `sma(x, period)`
    Sma(u32),
    /// `ema(x, period)`
    Ema(u32),
    /// `highest(x, period)`
    Highest(u32),
    /// `lowest(x, period)`
    Lowest(u32),
    /// `rsi(x, period)`
    Rsi(u32),
    /// `atr(period)`
    Atr(u32),
    /// `macd(x, fast, slow, signal)` or, with `signal_line`, `macd_signal(…)`.
    Macd {
        /// Fast EMA period (kept below `slow`).
        fast: u32,
        /// Slow EMA period.
        slow: u32,
        /// Signal EMA period.
        signal: u32,
        /// The signal line instead of the MACD line.
        signal_line: bool,
    },
    /// `bb_upper(x, period, k)` or `bb_lower(…)`.
    Band {
        /// SMA period.
        period: u32,
        /// Standard deviations.
        k: Dec,
        /// Upper band.
        upper: bool,
    },
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a / b`
    Div,
    /// `x * k` with a positive constant factor.
    Scale(Dec),
    /// `abs(x)`
    Abs,
    /// `min(a, b)`
    Min,
    /// `max(a, b)`
    Max,
}

/// A node and its operands.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Node {
    pub(crate) op: Op,
    pub(crate) args: Vec<Node>,
}

/// The type of `op` applied to operands of `args` types. The operands are assumed to be of
/// the types the builder gives that operator; variation preserves them, because it only
/// replaces a subtree by one of the same kind.
pub(crate) fn kind_of(op: &Op, args: &[Kind]) -> Kind {
    use Unit::*;
    let first = args.first().copied().unwrap_or(Kind::Num(Price));
    let second = args.get(1).copied().unwrap_or(Kind::Num(Price));
    match op {
        Op::And | Op::Or | Op::Not | Op::Gt | Op::Lt | Op::CrossOver | Op::CrossUnder => Kind::Bool,
        Op::Lookback(_) | Op::Sma(_) | Op::Ema(_) | Op::Highest(_) | Op::Lowest(_) => first,
        Op::Min | Op::Max => first,
        Op::Field(Field::Volume) => Kind::Num(Volume),
        Op::Field(_) | Op::Band { .. } => Kind::Num(Price),
        Op::Const(u, _) => Kind::Num(*u),
        Op::Rsi(_) => Kind::Num(Osc),
        Op::Atr(_) | Op::Macd { .. } | Op::Abs | Op::Scale(_) => Kind::Num(Diff),
        // price ± difference is a price; price − price and difference ± difference differ.
        Op::Add | Op::Sub => match (first, second) {
            (Kind::Num(Price), Kind::Num(Diff)) => Kind::Num(Price),
            _ => Kind::Num(Diff),
        },
        Op::Div => match first {
            Kind::Num(Diff) => Kind::Num(Rel),
            _ => Kind::Num(Ratio),
        },
    }
}

/// Whether `a <= b` on every bar, from the bar's own range: `low <= open, close <= high`,
/// and `highest`/`lowest` include the current bar. Only bare fields and extremes of bare
/// fields are recognised: that is where random programs meet such pairs.
fn never_above(a: &Node, b: &Node) -> bool {
    // f <= g on every bar.
    let le = |f: Field, g: Field| f == g || g == Field::High || f == Field::Low;
    let field = |n: &Node| match n.op {
        Op::Field(f) if f != Field::Volume => Some(f),
        _ => None,
    };
    // The field `n` is, or is an extreme of (lowest below, highest above).
    let low_of = |n: &Node| match n.op {
        Op::Lowest(_) => n.args.first().and_then(field),
        _ => field(n),
    };
    let high_of = |n: &Node| match n.op {
        Op::Highest(_) => n.args.first().and_then(field),
        _ => field(n),
    };
    // x − (what is never negative) <= x <= x + (what is never negative).
    let shifted = |n: &Node, op: Op, base: &Node| {
        n.op == op && n.args.first() == Some(base) && n.args.get(1).is_some_and(nonnegative)
    };
    match (low_of(a), high_of(b)) {
        (Some(f), Some(g)) => le(f, g),
        _ => shifted(a, Op::Sub, b) || shifted(b, Op::Add, a),
    }
}

/// Whether the series is never negative, as far as its shape tells (prices and volumes
/// are positive).
pub(crate) fn nonnegative(n: &Node) -> bool {
    let all = || n.args.iter().all(nonnegative);
    match n.op {
        Op::Field(_) | Op::Atr(_) | Op::Abs | Op::Rsi(_) => true,
        Op::Const(_, c) => !c.is_negative(),
        Op::Sma(_) | Op::Ema(_) | Op::Highest(_) | Op::Lowest(_) | Op::Lookback(_) => all(),
        Op::Scale(_) | Op::Add | Op::Min => all(),
        // Every divisor is a price or volume level (`atr(14) / (close - atr(5))` too, but
        // for a price collapse), so the sign is the dividend's.
        Op::Div => n.args.first().is_some_and(nonnegative),
        Op::Max => n.args.iter().any(nonnegative),
        _ => false,
    }
}

/// A place in a genome where variation can act.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Point {
    /// Which rule tree (index into the genome's rules).
    pub(crate) rule: usize,
    /// Pre-order index within that tree (0 is the root).
    pub(crate) index: usize,
    /// The subtree's type.
    pub(crate) kind: Kind,
    /// Depth of the node (the root is 1).
    pub(crate) depth: usize,
    /// Nodes in the subtree.
    pub(crate) size: usize,
    /// Depth of the subtree (a leaf is 1).
    pub(crate) height: usize,
    /// A constant leaf (never exchanged by crossover: a constant of one comparison means
    /// nothing in another).
    pub(crate) konst: bool,
    /// The right operand of a comparison or cross, where a constant may stand.
    pub(crate) const_slot: bool,
}

impl Node {
    pub(crate) fn new(op: Op, args: Vec<Node>) -> Node {
        Node { op, args }
    }

    pub(crate) fn leaf(op: Op) -> Node {
        Node {
            op,
            args: Vec::new(),
        }
    }

    pub(crate) fn size(&self) -> usize {
        1 + self.args.iter().map(Node::size).sum::<usize>()
    }

    pub(crate) fn depth(&self) -> usize {
        1 + self.args.iter().map(Node::depth).max().unwrap_or(0)
    }

    pub(crate) fn kind(&self) -> Kind {
        let args: Vec<Kind> = self.args.iter().map(Node::kind).collect();
        kind_of(&self.op, &args)
    }

    /// Whether the subtree contains a construct that checks but says nothing: the same
    /// operand on both sides (`close > close`, `close - close`); operands in a fixed order
    /// on every bar (`close > high`, `crossover(close, highest(close, 20))`,
    /// `max(open, high)`, `x > x - atr(14)`); what is never negative against a constant
    /// that is not positive (`atr(14) > 0`); a condition with its negation or with a
    /// comparison of the same operands (`a > b and a < b`); `not not x`, a lookback of a
    /// lookback or a factor of a factor (one of each says the same); `abs` of what is never
    /// negative.
    pub(crate) fn degenerate(&self) -> bool {
        let compares = matches!(self.op, Op::Gt | Op::Lt | Op::CrossOver | Op::CrossUnder);
        let own = match (&self.op, self.args.as_slice()) {
            (_, [a, b]) if a == b => true,
            (Op::Min | Op::Max, [a, b]) => never_above(a, b) || never_above(b, a),
            (_, [a, b]) if compares => {
                never_above(a, b)
                    || never_above(b, a)
                    || (matches!(b.op, Op::Const(_, c) if c.value() <= 0.0) && nonnegative(a))
            }
            (Op::And | Op::Or, [a, b]) => {
                let negation = |x: &Node, y: &Node| x.op == Op::Not && x.args.first() == Some(y);
                let cmp = |x: &Node| matches!(x.op, Op::Gt | Op::Lt);
                let same_pair = cmp(a)
                    && cmp(b)
                    && (a.args == b.args
                        || (a.args.first() == b.args.get(1) && a.args.get(1) == b.args.first()));
                negation(a, b) || negation(b, a) || same_pair
            }
            (Op::Not, [a]) => a.op == Op::Not,
            (Op::Lookback(_), [a]) => matches!(a.op, Op::Lookback(_)),
            (Op::Scale(_), [a]) => matches!(a.op, Op::Scale(_)),
            (Op::Abs, [a]) => matches!(a.op, Op::Abs | Op::Atr(_)),
            _ => false,
        };
        own || self.args.iter().any(Node::degenerate)
    }

    /// Every node of the tree as a [`Point`], in pre-order; returns the root's kind.
    pub(crate) fn points(&self, rule: usize, out: &mut Vec<Point>) -> Kind {
        fn walk(
            n: &Node,
            rule: usize,
            depth: usize,
            const_slot: bool,
            next: &mut usize,
            out: &mut Vec<Point>,
        ) -> (Kind, usize, usize) {
            let index = *next;
            *next += 1;
            let at = out.len();
            out.push(Point {
                rule,
                index,
                kind: Kind::Bool,
                depth,
                size: 1,
                height: 1,
                konst: matches!(n.op, Op::Const(..)),
                const_slot,
            });
            let right_operand = matches!(n.op, Op::Gt | Op::Lt | Op::CrossOver | Op::CrossUnder);
            let mut kinds = Vec::with_capacity(n.args.len());
            let (mut size, mut height) = (1, 1);
            for (i, a) in n.args.iter().enumerate() {
                let (k, s, h) = walk(a, rule, depth + 1, right_operand && i == 1, next, out);
                kinds.push(k);
                size += s;
                height = height.max(h + 1);
            }
            let kind = kind_of(&n.op, &kinds);
            out[at].kind = kind;
            out[at].size = size;
            out[at].height = height;
            (kind, size, height)
        }
        let mut next = 0;
        walk(self, rule, 1, false, &mut next, out).0
    }

    /// The subtree at pre-order `index` (0 is this node).
    pub(crate) fn at(&self, index: usize) -> Option<&Node> {
        let mut node = self;
        let mut i = index;
        'down: loop {
            if i == 0 {
                return Some(node);
            }
            i -= 1;
            for a in &node.args {
                let s = a.size();
                if i < s {
                    node = a;
                    continue 'down;
                }
                i -= s;
            }
            return None;
        }
    }

    /// The subtree at pre-order `index`, to replace or edit.
    pub(crate) fn at_mut(&mut self, index: usize) -> Option<&mut Node> {
        if index == 0 {
            return Some(self);
        }
        let mut i = index - 1;
        for a in &mut self.args {
            let s = a.size();
            if i < s {
                return a.at_mut(i);
            }
            i -= s;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degenerate_constructs_are_recognised() {
        let f = |x: Field| Node::leaf(Op::Field(x));
        let n = Node::new;
        let k = |u: Unit, v: f64| Node::leaf(Op::Const(u, Dec::round(v, 3)));
        let atr = || Node::leaf(Op::Atr(14));
        let sub = |a: Node, b: Node| n(Op::Sub, vec![a, b]);
        let rel = || n(Op::Div, vec![atr(), f(Field::Close)]);
        let degenerate = [
            n(Op::Gt, vec![f(Field::Close), f(Field::Close)]),
            n(Op::Gt, vec![f(Field::Close), f(Field::High)]),
            n(Op::Lt, vec![f(Field::Low), f(Field::Open)]),
            n(Op::CrossOver, vec![f(Field::High), f(Field::Low)]),
            n(
                Op::CrossOver,
                vec![f(Field::Close), n(Op::Highest(20), vec![f(Field::Close)])],
            ),
            n(Op::Max, vec![f(Field::Open), f(Field::High)]),
            n(Op::Gt, vec![f(Field::Close), sub(f(Field::Close), atr())]),
            n(Op::Gt, vec![atr(), k(Unit::Diff, 0.0)]),
            n(Op::CrossUnder, vec![rel(), k(Unit::Rel, -0.01)]),
            n(
                Op::Gt,
                vec![
                    n(Op::Div, vec![atr(), sub(f(Field::Low), atr())]),
                    k(Unit::Rel, -0.01),
                ],
            ),
            n(
                Op::Not,
                vec![n(
                    Op::Not,
                    vec![n(Op::Gt, vec![f(Field::Close), f(Field::Open)])],
                )],
            ),
            n(Op::Abs, vec![atr()]),
        ];
        for d in &degenerate {
            assert!(d.degenerate(), "{d:?}");
        }
        let up = n(Op::Gt, vec![f(Field::Close), f(Field::Open)]);
        let down = n(Op::Lt, vec![f(Field::Close), f(Field::Open)]);
        let swapped = n(Op::Lt, vec![f(Field::Open), f(Field::Close)]);
        assert!(n(Op::And, vec![up.clone(), down.clone()]).degenerate());
        assert!(n(Op::Or, vec![up.clone(), swapped]).degenerate());
        assert!(n(Op::And, vec![up.clone(), n(Op::Not, vec![up.clone()])]).degenerate());
        let fine = [
            up.clone(),
            n(
                Op::Gt,
                vec![f(Field::Close), n(Op::Lookback(1), vec![f(Field::High)])],
            ),
            n(
                Op::Gt,
                vec![
                    f(Field::Close),
                    n(
                        Op::Lookback(1),
                        vec![n(Op::Highest(20), vec![f(Field::High)])],
                    ),
                ],
            ),
            n(
                Op::Gt,
                vec![sub(f(Field::Close), f(Field::Open)), k(Unit::Diff, 0.0)],
            ),
            n(Op::Gt, vec![rel(), k(Unit::Rel, 0.01)]),
            n(Op::Gt, vec![sub(f(Field::High), f(Field::Low)), atr()]),
            n(Op::Max, vec![f(Field::Open), f(Field::Close)]),
            n(Op::And, vec![up.clone(), n(Op::Lookback(1), vec![down])]),
        ];
        for d in &fine {
            assert!(!d.degenerate(), "{d:?}");
        }
    }

    #[test]
    fn decimals_round_and_print_as_short_literals() {
        let cases = [
            (1.0, 3, "1"),
            (1.0199999999999998, 3, "1.02"),
            (0.03456, 2, "0.035"),
            (-0.004, 2, "-0.004"),
            (9.996, 3, "10"),
            (1500.0, 2, "1500"),
            (30.0, 4, "30"),
            (0.0, 3, "0"),
            (2.5, 4, "2.5"),
        ];
        for (v, d, text) in cases {
            assert_eq!(Dec::round(v, d).text(), text, "{v} at {d} digits");
        }
        assert_eq!(Dec::round(0.035, 2), Dec::round(0.0350001, 3));
        assert_eq!(Dec::int(30), Dec::round(30.0, 4));
        assert!((Dec::round(1.02, 3).value() - 1.02).abs() < 1e-12);
    }
}
