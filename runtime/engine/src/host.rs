//! The engine's answer to a strategy's requests during one call: orders go through risk to
//! the exchange; queries read the account as of the bar the strategy is handling.

use std::collections::VecDeque;

use super::LogRing;
use qtm_core::events::{Event, EventSink};
use qtm_core::model::{
    Bar, LogLevel, OpenOrder, OrderChange, OrderKind, OrderRequest, Position, Quantity, Side,
    Signal,
};
use qtm_core::strategy::StrategyHost;
use qtm_oms::exchange::{Exchange, units_for};
use qtm_oms::oms::{AccountGuard, AccountOrder, AccountTotals};
use qtm_oms::portfolio::Portfolio;
use qtm_oms::risk::{OrderCheck, RiskLimits, RiskState};

/// Everything one strategy call may touch, borrowed from the engine for the call.
pub(super) struct CallHost<'a> {
    pub account: usize,
    pub symbols: &'a [String],
    /// The strategy's symbols as engine symbol ids (its symbol id indexes this).
    pub own: &'a [usize],
    pub exchange: &'a mut Exchange,
    pub book: &'a mut Portfolio,
    pub risk: &'a mut RiskState,
    pub limits: &'a RiskLimits,
    /// The account-wide rules every order passes after its own account's.
    pub guard: &'a mut AccountGuard,
    /// Every other account, for the account-wide totals.
    pub others: [&'a [super::Slot]; 2],
    /// Per symbol: recent bars with their steps, up to the end of the batch being processed.
    pub history: &'a [VecDeque<(u64, Bar)>],
    pub history_len: usize,
    pub sink: &'a mut dyn EventSink,
    pub signals: &'a std::collections::HashMap<String, Signal>,
    /// The bars of the current run (engine symbol, bar, step); `at` indexes it.
    pub run: &'a [(usize, Bar, u64)],
    pub at: usize,
    /// Engine symbol id → the strategy's symbol id.
    pub local: &'a [Option<u32>],
    /// Bars of `run` handed out by `next_bar` in this call; the first is `run[at]` itself.
    pub handed: usize,
    /// Set when an order was placed, cancelled or modified.
    pub acted: bool,
    pub logs: &'a mut LogRing,
    /// Replaying bars the strategy already handled before a restart: their orders and fills
    /// are stored, so new ones are refused.
    pub replaying: bool,
}

/// What a strategy is told when it acts during a replay.
const REPLAYING: &str =
    "replaying bars already handled before a restart: orders are not placed until it is live again";

impl CallHost<'_> {
    fn current(&self) -> &(usize, Bar, u64) {
        &self.run[self.at]
    }

    fn symbol_id(&self, name: &str) -> Result<usize, String> {
        self.own
            .iter()
            .copied()
            .find(|&s| self.symbols[s] == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.own.iter().map(|&s| self.symbols[s].as_str()).collect();
                format!(
                    "unknown symbol `{name}`; this instance trades {}",
                    names.join(", ")
                )
            })
    }

    /// Mark the account up to run position `to` (the strategy moved on).
    pub fn advance_to(&mut self, to: usize) {
        while self.at < to {
            self.at += 1;
            let (sym, bar, _) = self.run[self.at];
            self.book.set_mark(sym, bar.close);
        }
    }

    fn estimate(&self, order: &OrderRequest, sym: usize, price: f64) -> (f64, f64) {
        let c = self.exchange.config().commission;
        let pos = self.book.quantity(sym);
        let dir = if order.side == Side::Buy { 1.0 } else { -1.0 };
        match order.quantity {
            Quantity::Units(q) => (q, dir),
            Quantity::EquityFraction(f) => {
                let open = units_for(self.book.equity(), f, price, c);
                if pos * dir < 0.0 {
                    (pos.abs() + open, dir)
                } else {
                    (open, dir)
                }
            }
            Quantity::TargetPercent(t) => {
                let target = t.signum() * units_for(self.book.equity(), t.abs(), price, c);
                let delta = target - pos;
                (delta.abs(), delta.signum())
            }
        }
    }
}

/// Add the bars of a batch to the history, keeping `keep` bars from before it: every bar of
/// the batch must find its own `keep` predecessors while the batch is processed.
pub(super) fn push_history(
    history: &mut [VecDeque<(u64, Bar)>],
    bars: &[(usize, Bar)],
    base: u64,
    keep: usize,
) {
    if keep == 0 {
        return;
    }
    for &(sym, _) in bars {
        let h = &mut history[sym];
        let extra = h.len().saturating_sub(keep);
        h.drain(..extra);
    }
    for (j, &(sym, bar)) in bars.iter().enumerate() {
        history[sym].push_back((base + j as u64, bar));
    }
}

impl StrategyHost for CallHost<'_> {
    fn log(&mut self, level: LogLevel, message: &str) {
        let ts = self.current().1.ts;
        self.logs.push((ts, level, message.to_string()));
    }

    fn submit_order(&mut self, order: OrderRequest) -> Result<u64, String> {
        if self.replaying {
            return Err(REPLAYING.into());
        }
        let (_, bar, step) = *self.current();
        let ts = bar.ts;
        let checked = (|| {
            Exchange::validate(&order)?;
            let sym = self.symbol_id(&order.symbol)?;
            let last = self.book.mark(sym);
            if !last.is_finite() {
                return Err(format!("no price for {} yet", order.symbol));
            }
            let (quantity, direction) = self.estimate(&order, sym, last);
            let order_price = match order.kind {
                OrderKind::Limit(p) | OrderKind::Stop(p) => Some(p),
                OrderKind::StopLimit { limit, .. } => Some(limit),
                _ => None,
            };
            let check = OrderCheck {
                quantity,
                direction,
                last_price: last,
                order_price,
                position: self.book.quantity(sym),
                gross_exposure: self.book.gross_exposure(),
                open_orders: self.exchange.open_count(self.account),
                oco_orders: self
                    .exchange
                    .oco_count(self.account, order.oco_group.as_deref()),
                ts,
            };
            self.risk
                .check_order(self.limits, &check)
                .map_err(|e| format!("risk: {e}"))?;
            if self.guard.is_active() {
                let others = super::totals_of(self.others, self.exchange, Some(sym));
                let totals = AccountTotals {
                    // Other accounts' resting orders are in the exchange's total already.
                    position: others.position + check.position,
                    gross_exposure: others.gross_exposure + check.gross_exposure,
                    open_orders: others.open_orders,
                };
                let order = AccountOrder {
                    quantity,
                    direction,
                    last_price: last,
                    order_price,
                };
                if let Err(e) = self.guard.check(&order, &totals) {
                    // Refused after all: it does not count in its own account's rate window.
                    self.risk.unrecord_last(self.limits);
                    return Err(match self.guard.halted() {
                        Some(_) => format!("risk: {e}"),
                        None => format!("risk: account limit: {e}"),
                    });
                }
            }
            Ok((sym, last))
        })();
        match checked {
            Ok((sym, last)) => {
                let id = self
                    .exchange
                    .submit(self.account, sym, order.clone(), step, ts, last);
                self.acted = true;
                self.sink.publish(Event::OrderAccepted {
                    account: self.account,
                    order_id: id,
                    ts,
                    request: order,
                });
                Ok(id)
            }
            Err(reason) => {
                if let Some(r) = reason.strip_prefix("risk: ") {
                    self.sink.publish(Event::RiskAlert {
                        account: self.account,
                        ts,
                        kind: "order_rejected".into(),
                        message: r.to_string(),
                    });
                }
                self.sink.publish(Event::OrderRejected {
                    account: self.account,
                    ts,
                    reason: reason.clone(),
                    request: order,
                });
                Err(reason)
            }
        }
    }

    fn cancel_order(&mut self, id: u64) -> Result<(), String> {
        if self.replaying {
            return Err(REPLAYING.into());
        }
        self.exchange.cancel(self.account, id)?;
        self.acted = true;
        let ts = self.current().1.ts;
        self.sink.publish(Event::OrderCancelled {
            account: self.account,
            order_id: id,
            ts,
            reason: "cancelled by the strategy".into(),
        });
        Ok(())
    }

    fn modify_order(&mut self, id: u64, change: OrderChange) -> Result<(), String> {
        if self.replaying {
            return Err(REPLAYING.into());
        }
        self.exchange.modify(self.account, id, change)?;
        self.acted = true;
        Ok(())
    }

    fn position(&mut self, symbol: &str) -> Position {
        self.symbol_id(symbol)
            .map(|s| self.book.position(s))
            .unwrap_or_default()
    }

    fn cash(&mut self) -> f64 {
        self.book.cash()
    }

    fn equity(&mut self) -> f64 {
        self.book.equity()
    }

    fn open_orders(&mut self) -> Vec<OpenOrder> {
        self.exchange.open_orders(self.account)
    }

    fn signal(&mut self, name: &str) -> Option<Signal> {
        self.signals.get(name).cloned()
    }

    fn now_ns(&mut self) -> i64 {
        self.current().1.ts.saturating_mul(1_000_000_000)
    }

    fn recent_bars(&mut self, symbol: &str, count: u32) -> Result<Vec<Bar>, String> {
        let s = self.symbol_id(symbol)?;
        // The history runs to the end of the batch, shared by every account: what this call
        // may see ends at its own bar.
        let step = self.current().2;
        let h = &self.history[s];
        let end = h.partition_point(|(st, _)| *st <= step);
        let n = (count as usize).min(self.history_len).min(end);
        Ok(h.range(end - n..end).map(|(_, b)| *b).collect())
    }

    fn next_bar(&mut self) -> Option<(u32, Bar)> {
        // The bar the call starts on is handed out first; each later one only now moves the
        // account's clock and marks to it.
        if self.handed > 0 {
            if self.at + 1 >= self.run.len() {
                return None;
            }
            self.advance_to(self.at + 1);
        }
        self.handed += 1;
        let (sym, bar, _) = self.run[self.at];
        Some((self.local[sym].unwrap_or(0), bar))
    }
}
