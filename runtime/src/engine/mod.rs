//! The engine core: one event loop for backtest and live.
//!
//! feed → exchange (fills for resting orders) → strategy (its orders go through risk to the
//! exchange) → portfolio → events. A backtest drives it with historical bars; live trading
//! drives the same code with a feed. It knows nothing of HTTP, SQL or wall clocks.
//!
//! For speed with exact semantics, a strategy that supports batches is handed a *run* of bars
//! on which the exchange provably has nothing to do for it (no resting order would trigger,
//! fill, expire or trail; no kill switch would fire). It stops right after the first bar on
//! which it acts, so every order is treated exactly as with one call per bar.

mod host;
mod runner;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use runner::StrategyRunner;

use crate::events::{Event, EventSink, FillEvent, StrategyState};
use crate::exchange::{Exchange, ExchangeConfig, ExchangeEvent};
use crate::model::{Bar, EquityPoint, Fill, LogLevel, Signal, Trade};
use crate::portfolio::Portfolio;
use crate::risk::{RiskLimits, RiskState};
use crate::sandbox::BarBatch;
use host::{CallHost, push_history};

/// Engine settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineConfig {
    pub exchange: ExchangeConfig,
    /// Hand batching strategies runs of bars instead of one call per bar.
    pub batch: bool,
    /// Longest run handed over at once.
    pub max_batch: usize,
    /// Bars kept per symbol for `recent-bars`.
    pub history: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            exchange: ExchangeConfig::default(),
            batch: true,
            max_batch: 4096,
            history: 256,
        }
    }
}

/// One strategy with its own account.
struct Slot {
    name: String,
    runner: Box<dyn StrategyRunner>,
    /// The strategy's symbols as engine symbol ids.
    own: Vec<usize>,
    /// Engine symbol id → the strategy's symbol id.
    local: Vec<Option<u32>>,
    book: Portfolio,
    risk: RiskState,
    limits: RiskLimits,
    state: StrategyState,
    batch: BarBatch,
    run: Vec<(usize, Bar, u64)>,
    logs: Vec<(i64, LogLevel, String)>,
    /// Equity and exposure at the end of the last processed bars, carried into bars of
    /// symbols the strategy does not trade.
    carry_equity: f64,
    carry_in_market: bool,
    /// Current run length limit (adaptive) and scratch marks for the run scan.
    window: usize,
    scan_marks: Vec<f64>,
    saved_marks: Vec<f64>,
}

/// The engine: symbols, exchange, strategies with their accounts, and an event sink.
pub struct Engine<'s> {
    config: EngineConfig,
    symbols: Arc<[String]>,
    exchange: Exchange,
    slots: Vec<Slot>,
    history: Vec<VecDeque<Bar>>,
    signals: HashMap<String, Signal>,
    sink: &'s mut dyn EventSink,
    step: u64,
    events: Vec<ExchangeEvent>,
}

impl<'s> Engine<'s> {
    /// An engine over `symbols` (engine symbol ids index this list) publishing to `sink`.
    pub fn new(config: EngineConfig, symbols: Vec<String>, sink: &'s mut dyn EventSink) -> Self {
        let n = symbols.len();
        Self {
            exchange: Exchange::new(config.exchange.clone()),
            config,
            symbols: symbols.into(),
            slots: Vec::new(),
            history: vec![VecDeque::new(); n],
            signals: HashMap::new(),
            sink,
            step: 0,
            events: Vec::new(),
        }
    }

    /// Add a strategy trading `symbols` (names from the engine's list) with its own account.
    /// Returns the account id.
    pub fn add_strategy(
        &mut self,
        name: &str,
        runner: Box<dyn StrategyRunner>,
        symbols: &[String],
        cash: f64,
        limits: RiskLimits,
    ) -> Result<usize, String> {
        limits.validate()?;
        let mut own = Vec::new();
        for s in symbols {
            let id = self
                .symbols
                .iter()
                .position(|x| x == s)
                .ok_or_else(|| format!("no data for symbol {s}"))?;
            own.push(id);
        }
        let mut local = vec![None; self.symbols.len()];
        for (i, &s) in own.iter().enumerate() {
            local[s] = Some(i as u32);
        }
        self.slots.push(Slot {
            name: name.to_string(),
            runner,
            own,
            local,
            book: Portfolio::new(self.symbols.clone(), cash),
            risk: RiskState::default(),
            limits,
            state: StrategyState::Running,
            batch: BarBatch::default(),
            run: Vec::new(),
            logs: Vec::new(),
            carry_equity: cash,
            carry_in_market: false,
            window: 64,
            scan_marks: Vec::new(),
            saved_marks: Vec::new(),
        });
        Ok(self.slots.len() - 1)
    }

    /// Set the latest value of an external signal, for strategies' `get-signal`.
    pub fn set_signal(&mut self, name: &str, signal: Signal) {
        self.signals.insert(name.to_string(), signal);
    }

    /// An account's book.
    pub fn portfolio(&self, account: usize) -> &Portfolio {
        &self.slots[account].book
    }

    /// An account's strategy state.
    pub fn state(&self, account: usize) -> &StrategyState {
        &self.slots[account].state
    }

    /// Log lines the strategy wrote (bar time, level, text).
    pub fn logs(&self, account: usize) -> &[(i64, LogLevel, String)] {
        &self.slots[account].logs
    }

    /// Trades of an account: closed ones, then open ones marked at the latest prices.
    pub fn trades(&self, account: usize) -> Vec<Trade> {
        self.slots[account].book.all_trades()
    }

    /// Halt a strategy by hand (kill switch): cancels its orders.
    pub fn halt(&mut self, account: usize, reason: &str, ts: i64) {
        let slot = &mut self.slots[account];
        slot.risk.halt(reason.to_string());
        self.stop_slot(account, StrategyState::Halted, reason, ts);
    }

    /// Stop account `account`'s strategy (see [`Engine::stop`]).
    fn stop_slot(&mut self, account: usize, state: StrategyState, reason: &str, ts: i64) {
        let slot = &mut self.slots[account];
        Self::stop(
            &mut self.exchange,
            self.sink,
            account,
            slot,
            state,
            reason,
            ts,
        );
    }

    fn stop(
        exchange: &mut Exchange,
        sink: &mut dyn EventSink,
        account: usize,
        slot: &mut Slot,
        state: StrategyState,
        reason: &str,
        ts: i64,
    ) {
        if slot.state != StrategyState::Running {
            return;
        }
        for id in exchange.cancel_all(account) {
            sink.publish(Event::OrderCancelled {
                account,
                order_id: id,
                ts,
                reason: format!("strategy stopped: {reason}"),
            });
        }
        if state == StrategyState::Halted {
            sink.publish(Event::RiskAlert {
                account,
                ts,
                kind: "kill_switch".into(),
                message: reason.to_string(),
            });
        }
        sink.publish(Event::StrategyStatus {
            account,
            ts,
            state: state.clone(),
            reason: reason.to_string(),
        });
        slot.state = state;
        tracing::warn!(strategy = %slot.name, reason, "strategy stopped");
    }

    /// Process bars in time order (engine symbol id, bar). Equity is published after the last
    /// bar of each timestamp.
    pub fn process(&mut self, bars: &[(usize, Bar)]) {
        if bars.is_empty() {
            return;
        }
        let base = self.step;
        let mut equity = vec![f64::NAN; bars.len()];
        let mut in_market = vec![false; bars.len()];
        for account in 0..self.slots.len() {
            let mut slot_equity = vec![f64::NAN; bars.len()];
            let mut slot_in = vec![false; bars.len()];
            self.process_slot(account, bars, base, &mut slot_equity, &mut slot_in);
            // Carry values across bars of other symbols, then add into the account total.
            let slot = &mut self.slots[account];
            let (mut last_e, mut last_in) = (slot.carry_equity, slot.carry_in_market);
            for j in 0..bars.len() {
                if slot_equity[j].is_finite() {
                    last_e = slot_equity[j];
                    last_in = slot_in[j];
                }
                equity[j] = if equity[j].is_nan() {
                    last_e
                } else {
                    equity[j] + last_e
                };
                in_market[j] |= last_in;
            }
            slot.carry_equity = last_e;
            slot.carry_in_market = last_in;
        }
        for (j, (_, bar)) in bars.iter().enumerate() {
            let end_of_ts = bars.get(j + 1).is_none_or(|(_, next)| next.ts != bar.ts);
            if end_of_ts {
                let point = EquityPoint {
                    ts: bar.ts,
                    equity: equity[j],
                    in_market: in_market[j],
                };
                self.sink.publish(Event::Equity {
                    account: None,
                    point,
                });
            }
        }
        self.step = base + bars.len() as u64;
    }

    fn process_slot(
        &mut self,
        account: usize,
        bars: &[(usize, Bar)],
        base: u64,
        out: &mut [f64],
        in_market: &mut [bool],
    ) {
        let mut j = 0;
        while j < bars.len() {
            let (sym, bar) = bars[j];
            if self.slots[account].local[sym].is_none() {
                j += 1;
                continue;
            }
            let step = base + j as u64;
            // 1. The exchange acts on this bar for resting orders, before the strategy sees it.
            self.exchange_step(account, sym, step, &bar);
            // 2. Mark to the close; the strategy will see this bar.
            {
                let slot = &mut self.slots[account];
                slot.book.set_mark(sym, bar.close);
                push_history(&mut self.history[sym], bar, self.config.history);
            }
            if self.slots[account].state != StrategyState::Running {
                let equity = self.slots[account].book.equity();
                self.kill_switch(account, &bar, equity);
                out[j] = self.slots[account].book.equity();
                in_market[j] = self.slots[account].book.in_market();
                j += 1;
                continue;
            }
            // 3. The run of bars the strategy may take at once.
            let slot = &mut self.slots[account];
            slot.run.clear();
            slot.run.push((sym, bar, step));
            if self.config.batch && slot.runner.supports_batches() {
                // Only what could change the strategy's world needs checking bar by bar.
                let resting = self.exchange.has_orders(account);
                // Equity moves only with a position: then kill switches and running out of
                // money must be foreseen bar by bar.
                let exposed = slot.book.in_market();
                let kill = (slot.limits.max_drawdown_pct.is_some()
                    || slot.limits.max_daily_loss.is_some())
                    && exposed;
                let mut probe = kill.then(|| slot.risk.clone());
                let mut probe_equity = slot.book.equity();
                slot.scan_marks.clear();
                slot.scan_marks
                    .extend(slot.own.iter().map(|&s| slot.book.mark(s)));
                let window = slot.window.min(self.config.max_batch);
                let mut k = j + 1;
                while k < bars.len() && slot.run.len() < window {
                    let (s2, b2) = bars[k];
                    if let Some(l2) = slot.local[s2] {
                        let st = base + k as u64;
                        if resting && self.exchange.would_act(account, s2, st, &b2) {
                            break;
                        }
                        if exposed {
                            let q = slot.book.quantity(s2);
                            let prev = &mut slot.scan_marks[l2 as usize];
                            probe_equity += q * (b2.close - *prev);
                            *prev = b2.close;
                            if probe_equity <= 0.0 {
                                break;
                            }
                            if let Some(probe) = probe.as_mut()
                                && probe
                                    .check_equity(&slot.limits, b2.ts, probe_equity)
                                    .is_some()
                            {
                                break;
                            }
                        }
                        slot.run.push((s2, b2, st));
                    }
                    k += 1;
                }
            }
            // `at-bar` moves marks ahead during the call; keep where they were to replay from.
            let slot = &mut self.slots[account];
            let multi = slot.run.len() > 1;
            if multi {
                slot.saved_marks.clear();
                slot.saved_marks
                    .extend(slot.own.iter().map(|&s| slot.book.mark(s)));
            }
            let consumed = self.call_strategy(account);
            let slot = &mut self.slots[account];
            if multi {
                for (i, &s) in slot.own.iter().enumerate() {
                    slot.book.set_mark(s, slot.saved_marks[i]);
                }
            }
            // Adapt the run length to how long the strategy goes between orders: scanning and
            // encoding bars it will not reach is wasted work.
            let slot = &mut self.slots[account];
            slot.window = if consumed >= slot.run.len() {
                (slot.window * 2).min(self.config.max_batch)
            } else {
                (consumed * 2).clamp(16, self.config.max_batch)
            };
            // 4. Book equity for the bars handled; fire kill switches.
            let handled_n = consumed.clamp(1, self.slots[account].run.len());
            let last_step = self.slots[account].run[handled_n - 1].2;
            // The call may have moved the marks ahead (`at-bar`); replay them bar by bar.
            for h in 0..handled_n {
                let slot = &mut self.slots[account];
                let (s, b, st) = slot.run[h];
                let jj = (st - base) as usize;
                slot.book.set_mark(s, b.close);
                let equity = slot.book.equity();
                self.kill_switch(account, &b, equity);
                let slot = &self.slots[account];
                out[jj] = slot.book.equity();
                in_market[jj] = slot.book.in_market();
            }
            // --fill close: market orders placed on the last handled bar fill at its close.
            if self.config.exchange.fill == crate::exchange::FillMode::Close {
                let (s, b, st) = self.slots[account].run[handled_n - 1];
                let slot = &mut self.slots[account];
                self.exchange
                    .fill_at_close(account, s, st, &b, &mut slot.book, &mut self.events);
                self.publish_exchange_events(account, (s, b, st));
                out[(st - base) as usize] = self.slots[account].book.equity();
                in_market[(st - base) as usize] = self.slots[account].book.in_market();
            }
            j = (last_step - base) as usize + 1;
        }
    }

    /// Run the strategy on `slot.run`; returns how many bars of it were handled.
    /// Run `f` with the strategy and a host over `slot.run`; returns its result and the run
    /// position the strategy reached.
    fn with_host<R>(
        &mut self,
        account: usize,
        f: impl FnOnce(&mut dyn StrategyRunner, &mut CallHost<'_>, &mut BarBatch, &[Option<u32>]) -> R,
    ) -> (R, usize) {
        let Slot {
            runner,
            own,
            local,
            book,
            risk,
            limits,
            batch,
            run,
            logs,
            ..
        } = &mut self.slots[account];
        let mut host = CallHost {
            account,
            symbols: &self.symbols,
            own,
            exchange: &mut self.exchange,
            book,
            risk,
            limits,
            history: &mut self.history,
            history_len: self.config.history,
            sink: self.sink,
            signals: &self.signals,
            run,
            at: 0,
            acted: false,
            logs,
        };
        let r = f(runner.as_mut(), &mut host, batch, local);
        (r, host.at)
    }

    fn call_strategy(&mut self, account: usize) -> usize {
        let (result, at) = self.with_host(account, |runner, host, batch, local| {
            if host.run.len() > 1 {
                batch.clear();
                for (s, b, _) in host.run {
                    batch.push(local[*s].unwrap_or(0), b);
                }
                runner
                    .load_bars(batch)
                    .and_then(|_| runner.resume(host))
                    .map(|n| n as usize)
            } else {
                let (s, b, _) = host.run[0];
                runner.on_bar(host, local[s].unwrap_or(0), &b).map(|_| 1)
            }
        });
        let run = &self.slots[account].run;
        // History for bars the strategy moved past without asking the host.
        match result {
            Ok(n) => {
                let n = n.clamp(1, run.len());
                for (s, b, _) in &run[at + 1..n] {
                    push_history(&mut self.history[*s], *b, self.config.history);
                }
                n
            }
            Err(reason) => {
                let ts = run[at].1.ts;
                self.stop_slot(account, StrategyState::Disabled, &reason, ts);
                // A trapped strategy handled the bars up to where it stopped.
                at + 1
            }
        }
    }

    fn exchange_step(&mut self, account: usize, sym: usize, step: u64, bar: &Bar) {
        let slot = &mut self.slots[account];
        self.exchange
            .process_bar(account, sym, step, bar, &mut slot.book, &mut self.events);
        if !self.events.is_empty() {
            self.publish_exchange_events(account, (sym, *bar, step));
        }
    }

    /// Publish fills and cancels, update positions, and tell the strategy about its fills.
    /// `at` is the bar that produced them: the strategy's clock during `on-fill`.
    fn publish_exchange_events(&mut self, account: usize, at: (usize, Bar, u64)) {
        let events = std::mem::take(&mut self.events);
        for e in &events {
            match e {
                ExchangeEvent::Fill {
                    account,
                    symbol,
                    order_id,
                    side,
                    quantity,
                    price,
                    fee,
                    ts,
                    tag,
                } => {
                    let name = self.symbols[*symbol].clone();
                    self.sink.publish(Event::Fill(FillEvent {
                        account: *account,
                        order_id: *order_id,
                        symbol: name.clone(),
                        side: *side,
                        quantity: *quantity,
                        price: *price,
                        fee: *fee,
                        ts: *ts,
                        tag: tag.clone(),
                    }));
                    let p = self.slots[*account].book.position(*symbol);
                    self.sink.publish(Event::Position {
                        account: *account,
                        symbol: name,
                        quantity: p.quantity,
                        avg_price: p.avg_price,
                        ts: *ts,
                    });
                }
                ExchangeEvent::Cancelled {
                    account,
                    order_id,
                    ts,
                    reason,
                } => {
                    self.sink.publish(Event::OrderCancelled {
                        account: *account,
                        order_id: *order_id,
                        ts: *ts,
                        reason: reason.clone(),
                    });
                }
            }
        }
        // Fills reach the strategy before it sees the bar that produced them.
        for e in &events {
            let ExchangeEvent::Fill {
                symbol,
                order_id,
                side,
                quantity,
                price,
                fee,
                ts,
                tag,
                ..
            } = e
            else {
                continue;
            };
            let slot = &mut self.slots[account];
            if slot.state != StrategyState::Running {
                continue;
            }
            let Some(local) = slot.local[*symbol] else {
                continue;
            };
            let fill = Fill {
                order_id: *order_id,
                side: *side,
                quantity: *quantity,
                price: *price,
                fee: *fee,
                ts: *ts,
                tag: tag.clone(),
            };
            slot.run.clear();
            slot.run.push(at);
            let (result, _) = self.with_host(account, |runner, host, _, _| {
                runner.on_fill(host, local, &fill)
            });
            if let Err(reason) = result {
                self.stop_slot(account, StrategyState::Disabled, &reason, *ts);
            }
        }
    }

    fn kill_switch(&mut self, account: usize, bar: &Bar, equity: f64) {
        if equity <= 0.0 && self.slots[account].book.in_market() {
            // Out of money: liquidate at the marks (with commission) and stop, as a broker's
            // margin call would, instead of letting the account run ever deeper into debt.
            self.liquidate(account, bar.ts, "liquidation");
            let reason =
                format!("out of money: equity fell to {equity:.2}; positions closed at the close");
            let slot = &mut self.slots[account];
            slot.risk.halt(reason.clone());
            self.stop_slot(account, StrategyState::Halted, &reason, bar.ts);
            return;
        }
        let slot = &mut self.slots[account];
        if let Some(reason) = slot.risk.check_equity(&slot.limits, bar.ts, equity) {
            self.stop_slot(account, StrategyState::Halted, &reason, bar.ts);
        }
    }

    /// Close every open position at its last close with commission (`--close-at-end`).
    pub fn close_all(&mut self, ts: i64) {
        for account in 0..self.slots.len() {
            self.liquidate(account, ts, "close-at-end");
        }
    }

    /// Close all of an account's positions at their marks, with commission.
    fn liquidate(&mut self, account: usize, ts: i64, tag: &str) {
        let c = self.config.exchange.commission;
        for sym in 0..self.symbols.len() {
            let book = &mut self.slots[account].book;
            let q = book.quantity(sym);
            if q == 0.0 {
                continue;
            }
            let price = book.mark(sym);
            let fee = q.abs() * price * c;
            book.apply_fill(sym, -q, price, fee, ts);
            let side = if q > 0.0 {
                crate::model::Side::Sell
            } else {
                crate::model::Side::Buy
            };
            let symbol = self.symbols[sym].clone();
            self.sink.publish(Event::Fill(FillEvent {
                account,
                order_id: 0,
                symbol: symbol.clone(),
                side,
                quantity: q.abs(),
                price,
                fee,
                ts,
                tag: Some(tag.to_string()),
            }));
            self.sink.publish(Event::Position {
                account,
                symbol,
                quantity: 0.0,
                avg_price: 0.0,
                ts,
            });
        }
    }
}
