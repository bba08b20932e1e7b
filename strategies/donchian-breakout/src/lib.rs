//! `donchian-breakout`: the turtle-style channel breakout.
//!
//! When flat, it rests a buy stop at the top of the last `entry` bars' channel (and, with
//! `short = true`, a sell stop at the bottom) as one OCO pair, replaced each bar. Once in, the
//! exit is a trailing stop `atr_mult` ATRs away. Uses stop, OCO and trailing-stop orders.

use qtm_guest_sdk::prelude::*;

pub struct DonchianBreakout {
    channel: Vec<Donchian>,
    atr: Vec<Atr>,
    short: bool,
    atr_mult: f64,
    quantity: f64,
}

impl Strategy for DonchianBreakout {
    fn info() -> Info {
        Info::new("donchian-breakout", "1.0.0")
            .description("Donchian channel breakout with an ATR trailing stop")
            .param(
                ParamSpec::int("entry", 20, 2, 500, 1).describe("channel length for entries, bars"),
            )
            .param(ParamSpec::int("atr_period", 14, 2, 200, 1).describe("ATR period, bars"))
            .param(
                ParamSpec::float("atr_mult", 3.0, 0.5, 20.0, 0.5)
                    .describe("trailing stop distance in ATRs"),
            )
            .param(ParamSpec::boolean("short", true).describe("also break out to the downside"))
            .param(ParamSpec::float("quantity", 1.0, 0.0, 1e12, 1.0).describe("units per trade"))
    }

    fn new(params: &Params, symbols: &[String]) -> Result<Self, String> {
        let n = symbols.len().max(1);
        Ok(Self {
            channel: vec![Donchian::new(params.int("entry")? as usize); n],
            atr: vec![Atr::new(params.int("atr_period")? as usize); n],
            short: params.boolean("short")?,
            atr_mult: params.float("atr_mult")?,
            quantity: params.float("quantity")?,
        })
    }

    fn on_bar(&mut self, ctx: &mut Context, symbol: SymbolId, bar: &Bar) {
        let i = symbol as usize;
        let (Some(ch), Some(atr)) = (
            self.channel
                .get_mut(i)
                .and_then(|c| c.update(bar.high, bar.low)),
            self.atr
                .get_mut(i)
                .and_then(|a| a.update(bar.high, bar.low, bar.close)),
        ) else {
            return;
        };
        // Only act when something should change: entries are re-placed when the channel moves.
        let name = ctx.symbol(symbol).to_string();
        let held = ctx.position(&name).quantity;
        let orders = ctx.open_orders();
        let mine: Vec<_> = orders.iter().filter(|o| o.request.symbol == name).collect();
        if held != 0.0 {
            let has_trail = mine
                .iter()
                .any(|o| matches!(o.request.kind, OrderKind::TrailingStop(_)));
            for o in mine
                .iter()
                .filter(|o| !matches!(o.request.kind, OrderKind::TrailingStop(_)))
            {
                let _ = ctx.cancel(o.id);
            }
            if !has_trail {
                let side = if held > 0.0 { Side::Sell } else { Side::Buy };
                let trail = Trail::Amount(self.atr_mult * atr);
                let _ = ctx.submit(
                    Order::trailing_stop(&name, side, Quantity::Units(held.abs()), trail)
                        .tag("exit"),
                );
            }
            return;
        }
        let up_to_date = mine
            .iter()
            .any(|o| matches!(o.request.kind, OrderKind::Stop(p) if p == ch.upper));
        if up_to_date {
            return;
        }
        for o in &mine {
            let _ = ctx.cancel(o.id);
        }
        let q = Quantity::Units(self.quantity);
        let _ = ctx.submit(
            Order::stop(&name, Side::Buy, q, ch.upper)
                .oco("entry")
                .tag("long"),
        );
        if self.short {
            let _ = ctx.submit(
                Order::stop(&name, Side::Sell, q, ch.lower)
                    .oco("entry")
                    .tag("short"),
            );
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut w = StateWriter::new();
        w.u32(self.channel.len() as u32);
        for (c, a) in self.channel.iter().zip(&self.atr) {
            c.save(&mut w);
            a.save(&mut w);
        }
        w.finish()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let mut r = StateReader::new(state);
        let n = r.u32()? as usize;
        if n != self.channel.len() {
            return Err(format!(
                "state has {n} symbols, instance has {}",
                self.channel.len()
            ));
        }
        for i in 0..n {
            self.channel[i].load(&mut r)?;
            self.atr[i].load(&mut r)?;
        }
        Ok(r.expect_end()?)
    }
}

qtm_guest_sdk::export_strategy!(DonchianBreakout);
