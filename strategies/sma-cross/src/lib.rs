//! `sma-cross`: the classic moving-average crossover.
//!
//! A cross up at bar *t* is `fast[t-1] <= slow[t-1] && fast[t] > slow[t]`; a cross down is the
//! mirror. `mode = long_only` goes long on a cross up and flat on a cross down; `mode = flip`
//! goes long on a cross up and short on a cross down (the first signal may open a short).
//! A signal agreeing with the current side is ignored. `sizing = fixed` trades `quantity` units;
//! `sizing = equity` trades the fraction `quantity` of equity, resolved at fill time.
//!
//! The crossover logic lives in `crossover.rs`, free of host calls, so benchmarks and tests
//! compile the very same file natively.

use qtm_guest_sdk::prelude::*;

mod crossover;
pub use crossover::{Cross, Crossover};

/// Which side the strategy wants to be on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Flat,
    Long,
    Short,
}

/// The strategy: one crossover per symbol.
pub struct SmaCross {
    cross: Vec<Crossover>,
    side: Vec<Want>,
    flip: bool,
    equity_sizing: bool,
    quantity: f64,
}

const STATE_VERSION: u32 = 1;

impl SmaCross {
    fn order(&self, symbol: &str, side: Side, reversing: f64) -> Order {
        let quantity = if self.equity_sizing {
            // The exchange closes any opposite position first, then sizes on equity.
            Quantity::EquityFraction(self.quantity)
        } else {
            Quantity::Units(self.quantity + reversing)
        };
        Order::market(symbol, side, quantity)
    }
}

impl Strategy for SmaCross {
    // Its side is decided when it orders; fills need no bookkeeping.
    const HANDLES_FILLS: bool = false;

    fn info() -> Info {
        Info::new("sma-cross", "1.0.0")
            .description("Moving-average crossover (long_only or flip), fixed or equity sizing")
            .param(ParamSpec::int("fast", 10, 1, 500, 1).describe("fast SMA period, bars"))
            .param(ParamSpec::int("slow", 30, 2, 2000, 1).describe("slow SMA period, bars"))
            .param(
                ParamSpec::choice("mode", "long_only", &["long_only", "flip"])
                    .describe("flat or short on a cross down"),
            )
            .param(
                ParamSpec::choice("sizing", "fixed", &["fixed", "equity"])
                    .describe("quantity is units (fixed) or a fraction of equity"),
            )
            .param(
                ParamSpec::float("quantity", 1.0, 0.0, 1e12, 1.0)
                    .describe("units, or fraction of equity with sizing=equity"),
            )
    }

    fn new(params: &Params, symbols: &[String]) -> Result<Self, String> {
        let (fast, slow) = (params.int("fast")? as usize, params.int("slow")? as usize);
        if fast >= slow {
            return Err(format!("fast ({fast}) must be shorter than slow ({slow})"));
        }
        let n = symbols.len().max(1);
        Ok(Self {
            cross: vec![Crossover::new(fast, slow); n],
            side: vec![Want::Flat; n],
            flip: params.choice("mode")? == "flip",
            equity_sizing: params.choice("sizing")? == "equity",
            quantity: params.float("quantity")?,
        })
    }

    #[inline]
    fn on_bar(&mut self, ctx: &mut Context, symbol: SymbolId, bar: &Bar) {
        let i = symbol as usize;
        let Some(cross) = self.cross.get_mut(i).and_then(|c| c.update(bar.close)) else {
            return;
        };
        let name = ctx.symbol(symbol).to_string();
        let current = self.side[i];
        let fixed = self.quantity;
        let (want, side, reversing) = match (cross, current, self.flip) {
            (Cross::Up, Want::Long, _) => return,
            (Cross::Up, Want::Short, _) => (Want::Long, Side::Buy, fixed),
            (Cross::Up, Want::Flat, _) => (Want::Long, Side::Buy, 0.0),
            (Cross::Down, Want::Long, false) => {
                // long_only: close the whole position, whatever its size.
                let held = ctx.position(&name).quantity;
                if held > 0.0 && ctx.sell(&name, held).is_ok() {
                    self.side[i] = Want::Flat;
                }
                return;
            }
            (Cross::Down, Want::Flat | Want::Short, false) => return,
            (Cross::Down, Want::Short, true) => return,
            (Cross::Down, Want::Long, true) => (Want::Short, Side::Sell, fixed),
            (Cross::Down, Want::Flat, true) => (Want::Short, Side::Sell, 0.0),
        };
        let reversing = if self.equity_sizing { 0.0 } else { reversing };
        if ctx.submit(self.order(&name, side, reversing)).is_ok() {
            self.side[i] = want;
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut w = StateWriter::new();
        w.u32(STATE_VERSION).u32(self.cross.len() as u32);
        for (c, s) in self.cross.iter().zip(&self.side) {
            c.save(&mut w);
            w.u8(*s as u8);
        }
        w.finish()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let mut r = StateReader::new(state);
        let version = r.u32()?;
        if version != STATE_VERSION {
            return Err(format!(
                "sma-cross state version {version}, expected {STATE_VERSION}"
            ));
        }
        let n = r.u32()? as usize;
        if n != self.cross.len() {
            return Err(format!(
                "state has {n} symbols, instance has {}",
                self.cross.len()
            ));
        }
        for i in 0..n {
            self.cross[i].load(&mut r)?;
            self.side[i] = match r.u8()? {
                0 => Want::Flat,
                1 => Want::Long,
                2 => Want::Short,
                b => return Err(format!("bad side byte {b}")),
            };
        }
        Ok(r.expect_end()?)
    }
}

qtm_guest_sdk::export_strategy!(SmaCross);
