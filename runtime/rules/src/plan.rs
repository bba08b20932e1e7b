//! A checked program with its parameter values → a flat evaluation plan: one operation per
//! slot, in dependency order, constants folded and identical subexpressions shared (two
//! `sma(close, fast)` are one indicator). Pure data: the guest's evaluator runs it.

use std::collections::HashMap;

use crate::ast::BinOp;
use crate::check::{Field, Func, ParamValue, Program, SizeKind, TExpr, TKind};
use crate::{MAX_LOOKBACK, MAX_PERIOD, MAX_PLAN_OPS};

/// A slot: the index of the operation that writes it.
pub type Slot = u32;

/// One operation of a plan; it reads earlier slots and writes its own.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A number fixed for the run (booleans as 1 / 0).
    Const(f64),
    /// A field of the current bar.
    Field(Field),
    /// `-a`
    Neg(Slot),
    /// `not a`
    Not(Slot),
    /// `abs(a)`
    Abs(Slot),
    /// `min(a, b)`
    Min(Slot, Slot),
    /// `max(a, b)`
    Max(Slot, Slot),
    /// `a op b`
    Bin(BinOp, Slot, Slot),
    /// `sma(src, period)`
    Sma(Slot, usize),
    /// `ema(src, period)`
    Ema(Slot, usize),
    /// `rsi(src, period)`
    Rsi(Slot, usize),
    /// `atr(period)` of the bar's high, low and close.
    Atr(usize),
    /// `macd` (`signal_line` false) or `macd_signal` (true).
    Macd {
        /// The source.
        src: Slot,
        /// Fast EMA period.
        fast: usize,
        /// Slow EMA period.
        slow: usize,
        /// Signal EMA period.
        signal: usize,
        /// Whether this is the signal line.
        signal_line: bool,
    },
    /// `bb_upper` (`upper`) or `bb_lower`.
    Bollinger {
        /// The source.
        src: Slot,
        /// Window.
        period: usize,
        /// Standard deviations.
        k: f64,
        /// Which band.
        upper: bool,
    },
    /// `highest(src, period)`
    Highest(Slot, usize),
    /// `lowest(src, period)`
    Lowest(Slot, usize),
    /// `crossover(a, b)` (`up`) or `crossunder(a, b)`.
    Cross {
        /// Left.
        a: Slot,
        /// Right.
        b: Slot,
        /// Over (true) or under.
        up: bool,
    },
    /// `src[n]`; `init` is its value before `n` bars exist (NaN, or 0 = false for bools).
    Lookback {
        /// The source.
        src: Slot,
        /// Bars back.
        n: usize,
        /// The value before the history is long enough.
        init: f64,
    },
}

impl Op {
    /// Whether this operation is an indicator with a warm-up (rules wait for all of them).
    pub fn is_indicator(&self) -> bool {
        matches!(
            self,
            Op::Sma(..)
                | Op::Ema(..)
                | Op::Rsi(..)
                | Op::Atr(..)
                | Op::Macd { .. }
                | Op::Bollinger { .. }
                | Op::Highest(..)
                | Op::Lowest(..)
        )
    }
}

/// What the evaluator runs each bar, then reads the rules from.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The operations, each reading only earlier slots.
    pub ops: Vec<Op>,
    /// Slots of `entry_long`, `exit_long`, `entry_short`, `exit_short` (when defined).
    pub rules: [Option<Slot>; 4],
    /// How orders are sized, and the slot of the amount.
    pub size: (SizeKind, Slot),
    /// Slot of `stop_loss`'s percentage.
    pub stop_loss: Option<Slot>,
    /// Slot of `take_profit`'s percentage.
    pub take_profit: Option<Slot>,
}

impl Op {
    /// The operation as numbers: equal keys are equal operations (floats by their bits).
    /// Cheaper than formatting, which matters inside the guest: planning runs on fuel.
    pub fn key(&self) -> [u64; 6] {
        let s = |x: Slot| u64::from(x);
        let u = |x: usize| x as u64;
        let b = |x: bool| u64::from(x);
        match *self {
            Op::Const(v) => [0, v.to_bits(), 0, 0, 0, 0],
            Op::Field(f) => [1, f as u64, 0, 0, 0, 0],
            Op::Neg(a) => [2, s(a), 0, 0, 0, 0],
            Op::Not(a) => [3, s(a), 0, 0, 0, 0],
            Op::Abs(a) => [4, s(a), 0, 0, 0, 0],
            Op::Min(a, c) => [5, s(a), s(c), 0, 0, 0],
            Op::Max(a, c) => [6, s(a), s(c), 0, 0, 0],
            Op::Bin(o, a, c) => [7, s(a), s(c), o as u64, 0, 0],
            Op::Sma(a, p) => [8, s(a), u(p), 0, 0, 0],
            Op::Ema(a, p) => [9, s(a), u(p), 0, 0, 0],
            Op::Rsi(a, p) => [10, s(a), u(p), 0, 0, 0],
            Op::Atr(p) => [11, u(p), 0, 0, 0, 0],
            Op::Macd {
                src,
                fast,
                slow,
                signal,
                signal_line,
            } => [12, s(src), u(fast), u(slow), u(signal), b(signal_line)],
            Op::Bollinger {
                src,
                period,
                k,
                upper,
            } => [13, s(src), u(period), k.to_bits(), b(upper), 0],
            Op::Highest(a, p) => [14, s(a), u(p), 0, 0, 0],
            Op::Lowest(a, p) => [15, s(a), u(p), 0, 0, 0],
            Op::Cross { a, b: c, up } => [16, s(a), s(c), b(up), 0, 0],
            Op::Lookback { src, n, init } => [17, s(src), u(n), init.to_bits(), 0, 0],
        }
    }

    /// The slots this operation reads.
    fn inputs(&self) -> [Option<Slot>; 2] {
        match *self {
            Op::Const(_) | Op::Field(_) | Op::Atr(_) => [None, None],
            Op::Neg(a) | Op::Not(a) | Op::Abs(a) => [Some(a), None],
            Op::Sma(a, _)
            | Op::Ema(a, _)
            | Op::Rsi(a, _)
            | Op::Highest(a, _)
            | Op::Lowest(a, _) => [Some(a), None],
            Op::Macd { src, .. } | Op::Bollinger { src, .. } | Op::Lookback { src, .. } => {
                [Some(src), None]
            }
            Op::Min(a, b) | Op::Max(a, b) | Op::Bin(_, a, b) | Op::Cross { a, b, .. } => {
                [Some(a), Some(b)]
            }
        }
    }

    fn remap(&mut self, map: &[Slot]) {
        let m = |s: &mut Slot| *s = map[*s as usize];
        match self {
            Op::Const(_) | Op::Field(_) | Op::Atr(_) => {}
            Op::Neg(a) | Op::Not(a) | Op::Abs(a) => m(a),
            Op::Sma(a, _)
            | Op::Ema(a, _)
            | Op::Rsi(a, _)
            | Op::Highest(a, _)
            | Op::Lowest(a, _) => m(a),
            Op::Macd { src, .. } | Op::Bollinger { src, .. } | Op::Lookback { src, .. } => m(src),
            Op::Min(a, b) | Op::Max(a, b) | Op::Bin(_, a, b) | Op::Cross { a, b, .. } => {
                m(a);
                m(b);
            }
        }
    }
}

impl Plan {
    /// A hash of the whole plan (FNV-1a over its operations and outlets): equal plans hash
    /// equal, so a snapshot can tell whether it belongs to this program and these values.
    pub fn fingerprint(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |x: u64| {
            for byte in x.to_le_bytes() {
                h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        };
        for op in &self.ops {
            op.key().into_iter().for_each(&mut eat);
        }
        let slot = |s: Option<Slot>| s.map_or(u64::MAX, u64::from);
        for r in self.rules {
            eat(slot(r));
        }
        eat(self.size.0 as u64);
        eat(u64::from(self.size.1));
        eat(slot(self.stop_loss));
        eat(slot(self.take_profit));
        h
    }

    /// Drop operations nothing reads (the constants periods were computed from, folded
    /// intermediates), so each bar runs only what the rules need.
    fn compact(mut self) -> Self {
        let n = self.ops.len();
        let mut used = vec![false; n];
        let roots = self
            .rules
            .iter()
            .flatten()
            .chain([&self.size.1])
            .chain(self.stop_loss.iter())
            .chain(self.take_profit.iter());
        for r in roots {
            used[*r as usize] = true;
        }
        // Inputs are always earlier slots: one backward pass marks everything needed.
        for i in (0..n).rev() {
            if used[i] {
                for s in self.ops[i].inputs().into_iter().flatten() {
                    used[s as usize] = true;
                }
            }
        }
        let mut map = vec![0 as Slot; n];
        let mut ops = Vec::new();
        for (i, mut op) in std::mem::take(&mut self.ops).into_iter().enumerate() {
            if used[i] {
                op.remap(&map);
                map[i] = ops.len() as Slot;
                ops.push(op);
            }
        }
        let m = |s: &mut Slot| *s = map[*s as usize];
        self.rules.iter_mut().flatten().for_each(m);
        m(&mut self.size.1);
        self.stop_loss.iter_mut().for_each(m);
        self.take_profit.iter_mut().for_each(m);
        self.ops = ops;
        self
    }
}

struct Lower<'a> {
    program: &'a Program,
    values: &'a [ParamValue],
    ops: Vec<Op>,
    shared: HashMap<[u64; 6], Slot>,
    lets: Vec<Option<Slot>>,
}

impl Program {
    /// The plan for these parameter values (one per parameter, in declaration order, as
    /// [`Program::params`]). `Err` when a value makes the program unrunnable (a period or
    /// lookback computed from parameters out of range), with the position of the expression.
    pub fn plan(&self, values: &[ParamValue]) -> Result<Plan, String> {
        if values.len() != self.params.len() {
            return Err(format!(
                "{} parameter values for {} parameters",
                values.len(),
                self.params.len()
            ));
        }
        let mut l = Lower {
            program: self,
            values,
            ops: Vec::new(),
            shared: HashMap::new(),
            lets: vec![None; self.lets.len()],
        };
        // Lets are lowered in order, each once, so a long chain of lets costs no recursion;
        // lets no rule reaches are skipped (their indicators would delay the warm-up).
        let live = self.live_lets();
        for (i, (_, e)) in self.lets.iter().enumerate() {
            if live[i] {
                l.lets[i] = Some(l.expr(e)?);
            }
        }
        let mut rules = [None; 4];
        for (slot, rule) in rules.iter_mut().zip(&self.rules) {
            if let Some(e) = rule {
                *slot = Some(l.expr(e)?);
            }
        }
        let (kind, size) = self.size.as_ref().ok_or("the program has no `size` rule")?;
        let size = (*kind, l.expr(size)?);
        let stop_loss = self.stop_loss.as_ref().map(|e| l.expr(e)).transpose()?;
        let take_profit = self.take_profit.as_ref().map(|e| l.expr(e)).transpose()?;
        Ok(Plan {
            ops: l.ops,
            rules,
            size,
            stop_loss,
            take_profit,
        }
        .compact())
    }

    /// Which lets the rules use, directly or through other lets.
    fn live_lets(&self) -> Vec<bool> {
        let mut live = vec![false; self.lets.len()];
        let mut roots: Vec<&TExpr> = self.rules.iter().flatten().collect();
        roots.extend(self.size.as_ref().map(|s| &s.1));
        roots.extend(self.stop_loss.iter().chain(&self.take_profit));
        for r in roots {
            mark(r, &mut live);
        }
        // A let only refers to earlier lets: one pass from the last one back suffices.
        for i in (0..self.lets.len()).rev() {
            if live[i] {
                mark(&self.lets[i].1, &mut live);
            }
        }
        live
    }
}

fn mark(e: &TExpr, live: &mut [bool]) {
    match &e.kind {
        TKind::Let(i) => {
            if let Some(l) = live.get_mut(*i) {
                *l = true;
            }
        }
        TKind::Call(_, args) => args.iter().for_each(|a| mark(a, live)),
        TKind::Neg(a) | TKind::Not(a) => mark(a, live),
        TKind::Binary(_, a, b) | TKind::Lookback(a, b) => {
            mark(a, live);
            mark(b, live);
        }
        TKind::Const(_)
        | TKind::Param(_)
        | TKind::ChoiceIs { .. }
        | TKind::Field(_)
        | TKind::Error => {}
    }
}

/// Where an expression's text starts (an operator's own position is the operator's).
fn start(e: &TExpr) -> crate::Pos {
    let mut e = e;
    loop {
        match &e.kind {
            TKind::Binary(_, a, _) | TKind::Lookback(a, _) => e = a,
            _ => return e.pos,
        }
    }
}

fn truth(x: f64) -> bool {
    x > 0.5
}

fn bool_f(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// `a op b` on plan values: booleans are 1 / 0, a comparison with NaN is false.
pub fn binary(op: BinOp, a: f64, b: f64) -> f64 {
    match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => a / b,
        BinOp::Lt => bool_f(a < b),
        BinOp::Le => bool_f(a <= b),
        BinOp::Gt => bool_f(a > b),
        BinOp::Ge => bool_f(a >= b),
        BinOp::Eq => bool_f(a == b),
        BinOp::Ne => bool_f(!a.is_nan() && !b.is_nan() && a != b),
        BinOp::And => bool_f(truth(a) && truth(b)),
        BinOp::Or => bool_f(truth(a) || truth(b)),
    }
}

impl Lower<'_> {
    fn push(&mut self, op: Op) -> Result<Slot, String> {
        // Fold operations on constants (never indicators: they have state and a warm-up).
        let c = |s: &Slot, ops: &[Op]| match ops.get(*s as usize) {
            Some(Op::Const(v)) => Some(*v),
            _ => None,
        };
        let folded = match &op {
            Op::Neg(a) => c(a, &self.ops).map(|v| -v),
            Op::Not(a) => c(a, &self.ops).map(|v| bool_f(!truth(v))),
            Op::Abs(a) => c(a, &self.ops).map(f64::abs),
            Op::Min(a, b) => c(a, &self.ops).zip(c(b, &self.ops)).map(|(x, y)| x.min(y)),
            Op::Max(a, b) => c(a, &self.ops).zip(c(b, &self.ops)).map(|(x, y)| x.max(y)),
            Op::Bin(o, a, b) => c(a, &self.ops)
                .zip(c(b, &self.ops))
                .map(|(x, y)| binary(*o, x, y)),
            Op::Lookback { src, .. } => c(src, &self.ops),
            _ => None,
        };
        let op = folded.map_or(op, Op::Const);
        let key = op.key();
        if let Some(s) = self.shared.get(&key) {
            return Ok(*s);
        }
        if self.ops.len() >= MAX_PLAN_OPS {
            return Err(format!(
                "the program needs more than {MAX_PLAN_OPS} operations per bar"
            ));
        }
        let s = self.ops.len() as Slot;
        self.ops.push(op);
        self.shared.insert(key, s);
        Ok(s)
    }

    /// A value fixed for the run, or why not.
    fn constant(&mut self, e: &TExpr) -> Result<f64, String> {
        let s = self.expr(e)?;
        match self.ops.get(s as usize) {
            Some(Op::Const(v)) => Ok(*v),
            _ => Err(format!("{}: expected a value fixed for the run", start(e))),
        }
    }

    fn whole(&mut self, e: &TExpr, what: &str, lo: usize, hi: usize) -> Result<usize, String> {
        let v = self.constant(e)?;
        if v.fract() == 0.0 && v >= lo as f64 && v <= hi as f64 {
            Ok(v as usize)
        } else {
            Err(format!(
                "{}: {what} is {v}, not a whole number from {lo} to {hi}",
                start(e)
            ))
        }
    }

    fn expr(&mut self, e: &TExpr) -> Result<Slot, String> {
        let op = match &e.kind {
            TKind::Const(v) => Op::Const(*v),
            TKind::Param(i) => Op::Const(match self.values.get(*i) {
                Some(ParamValue::Int(v)) => *v as f64,
                Some(ParamValue::Float(v)) => *v,
                Some(ParamValue::Bool(b)) => bool_f(*b),
                _ => {
                    return Err(format!(
                        "{}: parameter `{}` has a value of the wrong type",
                        e.pos, self.program.params[*i].name
                    ));
                }
            }),
            TKind::ChoiceIs {
                param,
                value,
                negate,
            } => {
                let is =
                    matches!(self.values.get(*param), Some(ParamValue::Choice(c)) if c == value);
                Op::Const(bool_f(is != *negate))
            }
            TKind::Let(i) => {
                return self
                    .lets
                    .get(*i)
                    .copied()
                    .flatten()
                    .ok_or_else(|| format!("{}: internal: let used before it was lowered", e.pos));
            }
            TKind::Field(f) => Op::Field(*f),
            TKind::Neg(a) => Op::Neg(self.expr(a)?),
            TKind::Not(a) => Op::Not(self.expr(a)?),
            TKind::Binary(op, a, b) => Op::Bin(*op, self.expr(a)?, self.expr(b)?),
            TKind::Lookback(x, n) => {
                let n = self.whole(n, "the lookback", 0, MAX_LOOKBACK)?;
                let src = self.expr(x)?;
                if n == 0 {
                    return Ok(src);
                }
                let init = if x.ty == crate::check::Ty::Bool {
                    0.0
                } else {
                    f64::NAN
                };
                Op::Lookback { src, n, init }
            }
            TKind::Call(f, args) => self.call(*f, args, e)?,
            TKind::Error => return Err(format!("{}: the program has errors", e.pos)),
        };
        self.push(op)
    }

    fn call(&mut self, f: Func, args: &[TExpr], e: &TExpr) -> Result<Op, String> {
        let name = f.name();
        let arg = |i: usize| {
            args.get(i)
                .ok_or_else(|| format!("{}: `{name}` is missing an argument", e.pos))
        };
        let period = |l: &mut Self, i: usize| {
            let a = arg(i)?;
            l.whole(a, &format!("the period of `{name}`"), 1, MAX_PERIOD)
        };
        Ok(match f {
            Func::Sma => Op::Sma(self.expr(arg(0)?)?, period(self, 1)?),
            Func::Ema => Op::Ema(self.expr(arg(0)?)?, period(self, 1)?),
            Func::Rsi => Op::Rsi(self.expr(arg(0)?)?, period(self, 1)?),
            Func::Atr => Op::Atr(period(self, 0)?),
            Func::Highest => Op::Highest(self.expr(arg(0)?)?, period(self, 1)?),
            Func::Lowest => Op::Lowest(self.expr(arg(0)?)?, period(self, 1)?),
            Func::Macd | Func::MacdSignal => Op::Macd {
                src: self.expr(arg(0)?)?,
                fast: period(self, 1)?,
                slow: period(self, 2)?,
                signal: period(self, 3)?,
                signal_line: f == Func::MacdSignal,
            },
            Func::BbUpper | Func::BbLower => {
                let src = self.expr(arg(0)?)?;
                let period = period(self, 1)?;
                let k = self.constant(arg(2)?)?;
                if !k.is_finite() {
                    return Err(format!("{}: the factor of `{name}` is {k}", e.pos));
                }
                Op::Bollinger {
                    src,
                    period,
                    k,
                    upper: f == Func::BbUpper,
                }
            }
            Func::Crossover | Func::Crossunder => Op::Cross {
                a: self.expr(arg(0)?)?,
                b: self.expr(arg(1)?)?,
                up: f == Func::Crossover,
            },
            Func::Abs => Op::Abs(self.expr(arg(0)?)?),
            Func::Min => Op::Min(self.expr(arg(0)?)?, self.expr(arg(1)?)?),
            Func::Max => Op::Max(self.expr(arg(0)?)?, self.expr(arg(1)?)?),
        })
    }
}
