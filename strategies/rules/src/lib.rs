//! `rules`: the guest that runs a rule program (`docs/rules.md`).
//!
//! The program is not compiled in: `qtm` checks a `.rules` text, writes it into
//! [`PROGRAM_AREA`] of a copy of this module (`qtm_rules::embed`) and componentizes the copy,
//! so every program is an ordinary component with its own hash. `describe` and `configure`
//! parse the area again (microseconds; the host checked it already, so a failure here means a
//! damaged module, reported as a configure error).
//!
//! Per bar: the plan computes every value, then, once all indicators are warm, the rules decide
//! as sma-cross does (the side is what was last ordered; equity sizing lets the exchange close
//! the opposite position first, a plain exit sells or buys back what is held).

use qtm_guest_sdk::prelude::*;
use qtm_guest_sdk::state::StateError;
use qtm_rules::eval::{BarValues, Machine};
use qtm_rules::{ParamKind, Plan, Program, SizeKind, embed};

/// The program area: the magic, then zeros until `qtm` writes a program into it. Read only
/// through `black_box`, so the compiler cannot fold the zeros it sees at build time.
#[used]
static PROGRAM_AREA: [u8; embed::AREA_BYTES] = embed::empty_area();

/// Name and source written into the area, if any.
fn embedded() -> Option<(String, String)> {
    let area: &[u8; embed::AREA_BYTES] = std::hint::black_box(&PROGRAM_AREA);
    let (name, source) = embed::decode(&area[embed::MAGIC.len()..])?;
    Some((name.to_string(), source.to_string()))
}

thread_local! {
    /// The checked program, parsed once per instance: `configure` needs it twice (the SDK
    /// asks for the parameter specs, then builds the strategy), and parsing costs fuel.
    static PROGRAM: std::cell::OnceCell<Result<(String, Program), String>> =
        const { std::cell::OnceCell::new() };
}

fn program() -> Result<(String, Program), String> {
    PROGRAM.with(|p| p.get_or_init(parse).clone())
}

fn parse() -> Result<(String, Program), String> {
    let (name, source) = embedded().ok_or(
        "no rule program in this module: build one with `qtm backtest --rules FILE.rules`",
    )?;
    let program = qtm_rules::check(&source).map_err(|d| {
        let first = d.first().map(|d| d.to_string()).unwrap_or_default();
        format!("the embedded rule program does not check: {first}")
    })?;
    Ok((name, program))
}

/// Which side the strategy last ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Flat,
    Long,
    Short,
}

/// Layout of [`Rules::snapshot`].
const STATE_VERSION: u32 = 1;

/// A rule program with one evaluator per symbol.
pub struct Rules {
    plan: Plan,
    /// The plan's fingerprint: a state is only restored into the same program with the same
    /// parameter values (anything else would feed one indicator's window into another).
    fingerprint: u64,
    machines: Vec<Machine>,
    side: Vec<Want>,
    brackets: bool,
}

impl Rules {
    fn value(&self, i: usize, slot: Option<u32>) -> bool {
        slot.is_some_and(|s| self.machines[i].is_true(s))
    }

    /// An entry (or reversal) order on `side`, sized by `size`, with the bracket exits.
    fn entry(
        &self,
        i: usize,
        ctx: &mut Context,
        name: &str,
        side: Side,
        close: f64,
    ) -> Option<Order> {
        let m = &self.machines[i];
        let (kind, slot) = self.plan.size;
        let amount = m.value(slot);
        if !(amount.is_finite() && amount > 0.0) {
            return None;
        }
        let quantity = match kind {
            // The exchange closes an opposite position first, then sizes on equity.
            SizeKind::EquityFraction => Quantity::EquityFraction(amount),
            SizeKind::Units => {
                let held = if self.side[i] == Want::Flat {
                    0.0
                } else {
                    ctx.position(name).quantity.abs()
                };
                Quantity::Units(amount + held)
            }
        };
        let mut order = Order::market(name, side, quantity);
        let sign = if side == Side::Buy { 1.0 } else { -1.0 };
        if let Some(s) = self.plan.stop_loss {
            let pct = m.value(s);
            if pct.is_finite() && pct > 0.0 {
                order = order.stop_loss(close * (1.0 - sign * pct / 100.0));
            }
        }
        if let Some(s) = self.plan.take_profit {
            let pct = m.value(s);
            if pct.is_finite() && pct > 0.0 {
                order = order.take_profit(close * (1.0 + sign * pct / 100.0));
            }
        }
        Some(order)
    }

    /// Cancel the resting bracket exits of `name` (before a rule closes or reverses).
    fn cancel_exits(ctx: &mut Context, name: &str) {
        for o in ctx.open_orders() {
            if o.request.symbol == name {
                let _ = ctx.cancel(o.id);
            }
        }
    }
}

impl Strategy for Rules {
    // Sides are decided when ordering; bracket exits are seen through the position.
    const HANDLES_FILLS: bool = false;

    fn info() -> Info {
        let Ok((name, program)) = program() else {
            return Info::new("rules", "1.0.0").description("rule program (none embedded)");
        };
        let mut info = Info::new(&name, "1.0.0").description("rule program (docs/rules.md)");
        for p in program.params() {
            let spec = match (&p.kind, &p.default) {
                (ParamKind::Int { min, max, step }, qtm_rules::ParamValue::Int(d)) => {
                    ParamSpec::int(&p.name, *d, *min, *max, *step)
                }
                (ParamKind::Float { min, max, step }, qtm_rules::ParamValue::Float(d)) => {
                    ParamSpec::float(&p.name, *d, *min, *max, *step)
                }
                (ParamKind::Bool, qtm_rules::ParamValue::Bool(d)) => {
                    ParamSpec::boolean(&p.name, *d)
                }
                (ParamKind::Choice(c), qtm_rules::ParamValue::Choice(d)) => {
                    let c: Vec<&str> = c.iter().map(String::as_str).collect();
                    ParamSpec::choice(&p.name, d, &c)
                }
                _ => continue,
            };
            info = info.param(spec);
        }
        info
    }

    fn new(params: &Params, symbols: &[String]) -> Result<Self, String> {
        let (_, program) = program()?;
        let values = program
            .params()
            .iter()
            .map(|p| {
                Ok(match p.kind {
                    ParamKind::Int { .. } => qtm_rules::ParamValue::Int(params.int(&p.name)?),
                    ParamKind::Float { .. } => qtm_rules::ParamValue::Float(params.float(&p.name)?),
                    ParamKind::Bool => qtm_rules::ParamValue::Bool(params.boolean(&p.name)?),
                    ParamKind::Choice(_) => {
                        qtm_rules::ParamValue::Choice(params.choice(&p.name)?.to_string())
                    }
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let plan = program.plan(&values)?;
        let n = symbols.len().max(1);
        Ok(Self {
            machines: vec![Machine::new(&plan); n],
            side: vec![Want::Flat; n],
            brackets: program.has_exits(),
            fingerprint: plan.fingerprint(),
            plan,
        })
    }

    #[inline]
    fn on_bar(&mut self, ctx: &mut Context, symbol: SymbolId, bar: &Bar) {
        let i = symbol as usize;
        let Some(m) = self.machines.get_mut(i) else {
            return;
        };
        let values = BarValues {
            open: bar.open,
            high: bar.high,
            low: bar.low,
            close: bar.close,
            volume: bar.volume,
        };
        if !m.step(&values) {
            return;
        }
        let [el, xl, es, xs] = self.plan.rules;
        let (entry_long, entry_short) = (self.value(i, el), self.value(i, es));
        let (exit_long, exit_short) = (self.value(i, xl), self.value(i, xs));
        if !(entry_long || entry_short || exit_long || exit_short) {
            return;
        }
        let name = ctx.symbol(symbol).to_string();
        if self.brackets && self.side[i] != Want::Flat {
            // A bracket exit may have closed the position since the last order.
            let held = ctx.position(&name).quantity;
            if held == 0.0 {
                Self::cancel_exits(ctx, &name);
                self.side[i] = Want::Flat;
            }
        }
        let (want, side) = match self.side[i] {
            Want::Flat if entry_long => (Want::Long, Side::Buy),
            Want::Flat if entry_short => (Want::Short, Side::Sell),
            Want::Long if entry_short => (Want::Short, Side::Sell),
            Want::Short if entry_long => (Want::Long, Side::Buy),
            Want::Long if exit_long => {
                // Close the whole position, whatever its size (as sma-cross long_only).
                let held = ctx.position(&name).quantity;
                if self.brackets {
                    Self::cancel_exits(ctx, &name);
                }
                if held > 0.0 && ctx.sell(&name, held).is_ok() {
                    self.side[i] = Want::Flat;
                }
                return;
            }
            Want::Short if exit_short => {
                let held = ctx.position(&name).quantity;
                if self.brackets {
                    Self::cancel_exits(ctx, &name);
                }
                if held < 0.0 && ctx.buy(&name, -held).is_ok() {
                    self.side[i] = Want::Flat;
                }
                return;
            }
            _ => return,
        };
        if self.brackets && self.side[i] != Want::Flat {
            Self::cancel_exits(ctx, &name);
        }
        let Some(order) = self.entry(i, ctx, &name, side, bar.close) else {
            return;
        };
        if ctx.submit(order).is_ok() {
            self.side[i] = want;
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut w = StateWriter::new();
        w.u32(STATE_VERSION)
            .u64(self.fingerprint)
            .u32(self.machines.len() as u32);
        for (m, s) in self.machines.iter().zip(&self.side) {
            m.save(&mut w);
            w.u8(*s as u8);
        }
        w.finish()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        Ok(self.restore_state(state)?)
    }
}

impl Rules {
    fn restore_state(&mut self, state: &[u8]) -> Result<(), StateError> {
        let mut r = StateReader::new(state);
        let version = r.u32()?;
        if version != STATE_VERSION {
            return Err(StateError(format!(
                "rules state version {version}, expected {STATE_VERSION}"
            )));
        }
        if r.u64()? != self.fingerprint {
            return Err(StateError(
                "the state is of another rule program or other parameter values".into(),
            ));
        }
        let n = r.u32()? as usize;
        if n != self.machines.len() {
            return Err(StateError(format!(
                "state has {n} symbols, instance has {}",
                self.machines.len()
            )));
        }
        let mut machines = self.machines.clone();
        let mut side = self.side.clone();
        for (m, s) in machines.iter_mut().zip(&mut side) {
            m.load(&mut r)?;
            *s = match r.u8()? {
                0 => Want::Flat,
                1 => Want::Long,
                2 => Want::Short,
                b => return Err(StateError(format!("bad side byte {b}"))),
            };
        }
        r.expect_end()?;
        self.machines = machines;
        self.side = side;
        Ok(())
    }
}

qtm_guest_sdk::export_strategy!(Rules);
