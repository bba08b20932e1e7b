//! `rsi-reversion`: buy when RSI falls below `oversold`, sell when it rises above `exit`.
//! With `short = true` it also shorts above `overbought` and covers below `exit`.
//! Optional bracket exits (`stop_loss_pct`, `take_profit_pct`) are attached to each entry.

use qtm_guest_sdk::prelude::*;

pub struct RsiReversion {
    rsi: Vec<Rsi>,
    position: Vec<i8>,
    oversold: f64,
    overbought: f64,
    exit: f64,
    short: bool,
    quantity: f64,
    stop_loss_pct: f64,
    take_profit_pct: f64,
}

impl RsiReversion {
    fn entry(&self, symbol: &str, side: Side, price: f64) -> Order {
        let mut o = Order::market(symbol, side, Quantity::Units(self.quantity)).tag("entry");
        let dir = if side == Side::Buy { 1.0 } else { -1.0 };
        if self.stop_loss_pct > 0.0 {
            o = o.stop_loss(price * (1.0 - dir * self.stop_loss_pct / 100.0));
        }
        if self.take_profit_pct > 0.0 {
            o = o.take_profit(price * (1.0 + dir * self.take_profit_pct / 100.0));
        }
        o
    }
}

impl Strategy for RsiReversion {
    fn info() -> Info {
        Info::new("rsi-reversion", "1.0.0")
            .description("RSI mean reversion with optional bracket exits")
            .param(ParamSpec::int("period", 14, 2, 200, 1).describe("RSI period, bars"))
            .param(
                ParamSpec::float("oversold", 30.0, 1.0, 50.0, 1.0).describe("buy below this RSI"),
            )
            .param(
                ParamSpec::float("overbought", 70.0, 50.0, 99.0, 1.0)
                    .describe("short above this RSI"),
            )
            .param(
                ParamSpec::float("exit", 50.0, 1.0, 99.0, 1.0)
                    .describe("close when RSI crosses back over this"),
            )
            .param(ParamSpec::boolean("short", false).describe("also trade the overbought side"))
            .param(ParamSpec::float("quantity", 1.0, 0.0, 1e12, 1.0).describe("units per trade"))
            .param(
                ParamSpec::float("stop_loss_pct", 0.0, 0.0, 50.0, 0.5)
                    .describe("bracket stop, % from entry; 0 = none"),
            )
            .param(
                ParamSpec::float("take_profit_pct", 0.0, 0.0, 100.0, 0.5)
                    .describe("bracket target, % from entry; 0 = none"),
            )
    }

    fn new(params: &Params, symbols: &[String]) -> Result<Self, String> {
        let n = symbols.len().max(1);
        let (oversold, overbought) = (params.float("oversold")?, params.float("overbought")?);
        if oversold >= overbought {
            return Err(format!(
                "oversold ({oversold}) must be below overbought ({overbought})"
            ));
        }
        Ok(Self {
            rsi: vec![Rsi::new(params.int("period")? as usize); n],
            position: vec![0; n],
            oversold,
            overbought,
            exit: params.float("exit")?,
            short: params.boolean("short")?,
            quantity: params.float("quantity")?,
            stop_loss_pct: params.float("stop_loss_pct")?,
            take_profit_pct: params.float("take_profit_pct")?,
        })
    }

    fn on_bar(&mut self, ctx: &mut Context, symbol: SymbolId, bar: &Bar) {
        let i = symbol as usize;
        let Some(rsi) = self.rsi.get_mut(i).and_then(|r| r.update(bar.close)) else {
            return;
        };
        let name = ctx.symbol(symbol).to_string();
        let entry = match self.position[i] {
            0 if rsi < self.oversold => Some((Side::Buy, 1)),
            0 if self.short && rsi > self.overbought => Some((Side::Sell, -1)),
            _ => None,
        };
        if let Some((side, direction)) = entry {
            if ctx.submit(self.entry(&name, side, bar.close)).is_ok() {
                self.position[i] = direction;
            }
            return;
        }
        match self.position[i] {
            1 if rsi > self.exit => self.close(ctx, &name, i),
            -1 if rsi < self.exit => self.close(ctx, &name, i),
            _ => {}
        }
    }

    fn on_fill(&mut self, ctx: &mut Context, fill: &Fill) {
        // A bracket exit closed the position: forget the side so the next signal can re-enter.
        let name = ctx.symbol(fill.symbol_id).to_string();
        if fill.tag.as_deref() != Some("entry")
            && ctx.position(&name).quantity == 0.0
            && let Some(p) = self.position.get_mut(fill.symbol_id as usize)
        {
            *p = 0;
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut w = StateWriter::new();
        w.u32(self.rsi.len() as u32);
        for (r, p) in self.rsi.iter().zip(&self.position) {
            r.save(&mut w);
            w.u8(*p as u8);
        }
        w.finish()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let mut r = StateReader::new(state);
        let n = r.u32()? as usize;
        if n != self.rsi.len() {
            return Err(format!(
                "state has {n} symbols, instance has {}",
                self.rsi.len()
            ));
        }
        for i in 0..n {
            self.rsi[i].load(&mut r)?;
            self.position[i] = r.u8()? as i8;
        }
        Ok(r.expect_end()?)
    }
}

impl RsiReversion {
    fn close(&mut self, ctx: &mut Context, name: &str, i: usize) {
        let held = ctx.position(name).quantity;
        if held == 0.0 {
            self.position[i] = 0;
            return;
        }
        let side = if held > 0.0 { Side::Sell } else { Side::Buy };
        // Cancel the bracket exits first so they cannot fire on a flat position.
        for o in ctx.open_orders() {
            if o.request.symbol == name {
                let _ = ctx.cancel(o.id);
            }
        }
        if ctx
            .submit(Order::market(name, side, Quantity::Units(held.abs())).tag("exit"))
            .is_ok()
        {
            self.position[i] = 0;
        }
    }
}

qtm_guest_sdk::export_strategy!(RsiReversion);
