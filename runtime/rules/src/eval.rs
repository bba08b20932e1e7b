//! The evaluator: a [`Plan`] with indicator state for one symbol, stepped once per bar. The
//! indicators are the guest SDK's, so a rule program computes bit for bit what a hand-written
//! strategy using the same indicators computes.

use qtm_guest_sdk::indicators::{Atr, Bollinger, Donchian, Ema, Macd, Rsi, Sma};
use qtm_guest_sdk::state::{Snapshot, StateError, StateReader, StateWriter};

use crate::ast::BinOp;
use crate::check::Field;
use crate::plan::{Op, Plan, Slot, binary};

/// The bar fields a plan reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BarValues {
    /// Open.
    pub open: f64,
    /// High.
    pub high: f64,
    /// Low.
    pub low: f64,
    /// Close.
    pub close: f64,
    /// Volume.
    pub volume: f64,
}

/// One operation with its state.
#[derive(Debug, Clone)]
enum Step {
    Const(f64),
    Field(Field),
    Neg(Slot),
    Not(Slot),
    Abs(Slot),
    Min(Slot, Slot),
    Max(Slot, Slot),
    Bin(BinOp, Slot, Slot),
    Sma(Slot, Sma),
    Ema(Slot, Ema),
    Rsi(Slot, Rsi),
    Atr(Atr),
    Macd(Slot, Macd, bool),
    Bollinger(Slot, Bollinger, bool),
    Highest(Slot, Donchian),
    Lowest(Slot, Donchian),
    Cross {
        a: Slot,
        b: Slot,
        up: bool,
        prev_a: f64,
        prev_b: f64,
    },
    Lookback {
        src: Slot,
        ring: Vec<f64>,
        pos: usize,
    },
}

/// A plan's state for one symbol.
#[derive(Debug, Clone)]
pub struct Machine {
    steps: Vec<Step>,
    vals: Vec<f64>,
    indicators: Vec<Slot>,
    warm: bool,
}

#[inline(always)]
fn truth(x: f64) -> bool {
    x > 0.5
}

#[inline(always)]
fn or_nan(v: Option<f64>) -> f64 {
    v.unwrap_or(f64::NAN)
}

impl Machine {
    /// Fresh state (every indicator empty) for `plan`.
    pub fn new(plan: &Plan) -> Self {
        let steps: Vec<Step> = plan
            .ops
            .iter()
            .map(|op| match *op {
                Op::Const(v) => Step::Const(v),
                Op::Field(f) => Step::Field(f),
                Op::Neg(a) => Step::Neg(a),
                Op::Not(a) => Step::Not(a),
                Op::Abs(a) => Step::Abs(a),
                Op::Min(a, b) => Step::Min(a, b),
                Op::Max(a, b) => Step::Max(a, b),
                Op::Bin(o, a, b) => Step::Bin(o, a, b),
                Op::Sma(s, p) => Step::Sma(s, Sma::new(p)),
                Op::Ema(s, p) => Step::Ema(s, Ema::new(p)),
                Op::Rsi(s, p) => Step::Rsi(s, Rsi::new(p)),
                Op::Atr(p) => Step::Atr(Atr::new(p)),
                Op::Macd {
                    src,
                    fast,
                    slow,
                    signal,
                    signal_line,
                } => Step::Macd(src, Macd::new(fast, slow, signal), signal_line),
                Op::Bollinger {
                    src,
                    period,
                    k,
                    upper,
                } => Step::Bollinger(src, Bollinger::new(period, k), upper),
                Op::Highest(s, p) => Step::Highest(s, Donchian::new(p)),
                Op::Lowest(s, p) => Step::Lowest(s, Donchian::new(p)),
                Op::Cross { a, b, up } => Step::Cross {
                    a,
                    b,
                    up,
                    prev_a: f64::NAN,
                    prev_b: f64::NAN,
                },
                Op::Lookback { src, n, init } => Step::Lookback {
                    src,
                    ring: vec![init; n.max(1)],
                    pos: 0,
                },
            })
            .collect();
        let indicators = plan
            .ops
            .iter()
            .enumerate()
            .filter(|(_, op)| op.is_indicator())
            .map(|(i, _)| i as Slot)
            .collect();
        Self {
            vals: vec![f64::NAN; steps.len()],
            steps,
            indicators,
            warm: false,
        }
    }

    /// Feed one bar: every operation computes its value for it. Returns whether every
    /// indicator has produced a value (the rules are read only from then on).
    #[inline]
    pub fn step(&mut self, bar: &BarValues) -> bool {
        let vals = &mut self.vals;
        for (i, step) in self.steps.iter_mut().enumerate() {
            let v = |s: &Slot| vals[*s as usize];
            let out = match step {
                Step::Const(c) => *c,
                Step::Field(f) => match f {
                    Field::Open => bar.open,
                    Field::High => bar.high,
                    Field::Low => bar.low,
                    Field::Close => bar.close,
                    Field::Volume => bar.volume,
                },
                Step::Neg(a) => -v(a),
                Step::Not(a) => {
                    if truth(v(a)) {
                        0.0
                    } else {
                        1.0
                    }
                }
                Step::Abs(a) => v(a).abs(),
                Step::Min(a, b) => v(a).min(v(b)),
                Step::Max(a, b) => v(a).max(v(b)),
                Step::Bin(o, a, b) => binary(*o, v(a), v(b)),
                Step::Sma(s, ind) => or_nan(ind.update(v(s))),
                Step::Ema(s, ind) => or_nan(ind.update(v(s))),
                Step::Rsi(s, ind) => or_nan(ind.update(v(s))),
                Step::Atr(ind) => or_nan(ind.update(bar.high, bar.low, bar.close)),
                Step::Macd(s, ind, signal) => match ind.update(v(s)) {
                    Some(m) if *signal => m.signal,
                    Some(m) => m.macd,
                    None => f64::NAN,
                },
                Step::Bollinger(s, ind, upper) => match ind.update(v(s)) {
                    Some(b) if *upper => b.upper,
                    Some(b) => b.lower,
                    None => f64::NAN,
                },
                Step::Highest(s, ind) => {
                    let x = v(s);
                    ind.update(x, x).map_or(f64::NAN, |d| d.upper)
                }
                Step::Lowest(s, ind) => {
                    let x = v(s);
                    ind.update(x, x).map_or(f64::NAN, |d| d.lower)
                }
                Step::Cross {
                    a,
                    b,
                    up,
                    prev_a,
                    prev_b,
                } => {
                    // As sma-cross: a cross up is `a[1] <= b[1] and a > b`; NaN (warm-up)
                    // compares false, so no cross is seen before both sides exist twice.
                    let (x, y) = (v(a), v(b));
                    let hit = if *up {
                        *prev_a <= *prev_b && x > y
                    } else {
                        *prev_a >= *prev_b && x < y
                    };
                    *prev_a = x;
                    *prev_b = y;
                    if hit { 1.0 } else { 0.0 }
                }
                Step::Lookback { src, ring, pos } => {
                    // `ring[pos]` holds the value `n` bars ago; replace it with today's.
                    let x = v(src);
                    let old = std::mem::replace(&mut ring[*pos], x);
                    *pos += 1;
                    if *pos == ring.len() {
                        *pos = 0;
                    }
                    old
                }
            };
            vals[i] = out;
        }
        if !self.warm {
            // Indicators stay ready once they are: the check stops after the first success.
            self.warm = self
                .indicators
                .iter()
                .all(|s| !self.vals[*s as usize].is_nan());
        }
        self.warm
    }

    /// The value of a slot for the latest bar.
    #[inline(always)]
    pub fn value(&self, slot: Slot) -> f64 {
        self.vals.get(slot as usize).copied().unwrap_or(f64::NAN)
    }

    /// Whether a boolean slot is true for the latest bar.
    #[inline(always)]
    pub fn is_true(&self, slot: Slot) -> bool {
        truth(self.value(slot))
    }
}

impl Snapshot for Machine {
    /// Every operation's state (indicators, previous values of crosses, lookback rings) and
    /// the warm-up flag; values are recomputed on the next bar.
    fn save(&self, w: &mut StateWriter) {
        w.u32(self.steps.len() as u32);
        for step in &self.steps {
            match step {
                Step::Sma(_, i) => i.save(w),
                Step::Ema(_, i) => i.save(w),
                Step::Rsi(_, i) => i.save(w),
                Step::Atr(i) => i.save(w),
                Step::Macd(_, i, _) => i.save(w),
                Step::Bollinger(_, i, _) => i.save(w),
                Step::Highest(_, i) | Step::Lowest(_, i) => i.save(w),
                Step::Cross { prev_a, prev_b, .. } => {
                    w.f64(*prev_a).f64(*prev_b);
                }
                Step::Lookback { ring, pos, .. } => {
                    w.f64s(ring).u64(*pos as u64);
                }
                _ => {}
            }
        }
        w.bool(self.warm);
    }

    /// Take over state saved by a machine of the same plan; on error nothing changes.
    fn load(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        let n = r.u32()? as usize;
        if n != self.steps.len() {
            return Err(StateError(format!(
                "state has {n} operations, this plan {}",
                self.steps.len()
            )));
        }
        let mut steps = self.steps.clone();
        for step in &mut steps {
            match step {
                Step::Sma(_, i) => i.load(r)?,
                Step::Ema(_, i) => i.load(r)?,
                Step::Rsi(_, i) => i.load(r)?,
                Step::Atr(i) => i.load(r)?,
                Step::Macd(_, i, _) => i.load(r)?,
                Step::Bollinger(_, i, _) => i.load(r)?,
                Step::Highest(_, i) | Step::Lowest(_, i) => i.load(r)?,
                Step::Cross { prev_a, prev_b, .. } => {
                    *prev_a = r.f64()?;
                    *prev_b = r.f64()?;
                }
                Step::Lookback { ring, pos, .. } => {
                    let saved = r.f64s()?;
                    let p = r.u64()? as usize;
                    if saved.len() != ring.len() || p >= ring.len() {
                        return Err(StateError("lookback state of another length".into()));
                    }
                    *ring = saved;
                    *pos = p;
                }
                _ => {}
            }
        }
        let warm = r.bool()?;
        self.steps = steps;
        self.warm = warm;
        Ok(())
    }
}
