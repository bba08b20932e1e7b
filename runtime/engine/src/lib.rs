//! The engine core: one event loop for backtest and live.
//!
//! feed → exchange (fills for resting orders) → strategy (its orders go through risk to the
//! exchange) → portfolio → events. A backtest drives it with historical bars; live trading
//! drives the same code with a feed. It knows nothing of HTTP, SQL or wall clocks.
//!
//! For speed with exact semantics, a strategy that pulls bars (`on-bars`) is offered a *run*
//! of bars on which the exchange provably has nothing to do for it (no resting order would
//! trigger, fill, expire or trail; no kill switch would fire). It takes them one at a time
//! (`next-bar`), so it never holds a bar before its decisions on the previous one are in, and
//! the pull ends right after the first bar on which it acts, so every order is treated exactly
//! as with one call per bar. After the exchange has dealt with that order, the strategy pulls
//! on through the rest of the run if the same checks still pass for it.

#![deny(clippy::print_stdout, clippy::print_stderr)]

mod host;
mod log_ring;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use log_ring::{DEFAULT_LOG_LINES, LogLine, LogRing, LogSink, WriterSink};
pub use qtm_core::strategy::StrategyRunner;

use host::{CallHost, push_history};
use qtm_core::events::{Event, EventSink, FillEvent, StrategyState};
use qtm_core::model::{
    Bar, EquityPoint, Fill, OpenOrder, OrderChange, OrderKind, OrderRequest, Quantity, Side,
    Signal, Trade,
};
use qtm_oms::exchange::{Exchange, ExchangeConfig, ExchangeEvent};
use qtm_oms::oms::{AccountGuard, AccountOrder, AccountTotals};
use qtm_oms::portfolio::Portfolio;
use qtm_oms::risk::{RiskLimits, RiskState};

/// Engine settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineConfig {
    pub exchange: ExchangeConfig,
    /// Let strategies that pull bars take runs of them in one call instead of one call per bar.
    pub batch: bool,
    /// Longest run offered at once.
    pub max_batch: usize,
    /// Bars kept per symbol for `recent-bars`.
    pub history: usize,
    /// Log lines kept per account (the newest); older ones are let go and counted, so a
    /// strategy's logging cannot grow the host's memory without bound.
    pub log_lines: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            exchange: ExchangeConfig::default(),
            batch: true,
            max_batch: 4096,
            history: 256,
            log_lines: DEFAULT_LOG_LINES,
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
    /// The run last offered to the strategy, how many of its bars it handled, and whether the
    /// rest is still valid: then the next call pulls on through it instead of building anew.
    run: Vec<(usize, Bar, u64)>,
    pos: usize,
    resumable: bool,
    /// Lowest and highest close of `run[i..]`, for one-symbol runs.
    extremes: Vec<(f64, f64)>,
    logs: LogRing,
    /// Equity and exposure at the end of the last processed bars, carried into bars of
    /// symbols the strategy does not trade.
    carry_equity: f64,
    carry_in_market: bool,
    /// Current run length limit (adaptive) and scratch marks for the run scan.
    window: usize,
    scan_marks: Vec<f64>,
    saved_marks: Vec<f64>,
    /// Time spent on this account in `process` (its exchange steps, its calls, its fills), in
    /// raw clock ticks: what it costs the thread, host work and resting orders included.
    busy_ticks: u64,
    /// An account without a strategy, whose orders come from outside the engine (manual
    /// orders, API clients): it trades every symbol, is never called, and is never halted
    /// (the kill switch cancels its orders instead, and the account guard refuses new ones).
    external: bool,
}

/// The runner of an external account: there is no strategy to call.
struct NoStrategy;

impl StrategyRunner for NoStrategy {
    fn on_bar(
        &mut self,
        _host: &mut dyn qtm_core::strategy::StrategyHost,
        _symbol: u32,
        _bar: &Bar,
    ) -> Result<(), String> {
        Ok(())
    }
    fn on_fill(
        &mut self,
        _host: &mut dyn qtm_core::strategy::StrategyHost,
        _symbol: u32,
        _fill: &Fill,
    ) -> Result<(), String> {
        Ok(())
    }
    fn wants_fills(&self) -> bool {
        false
    }
}

/// Why the orders of an external account are cancelled when the account's kill switch
/// fires or is pressed.
pub const KILL_SWITCH_CANCEL: &str = "kill switch";

/// The clock `process` times accounts with: a counter read in a few nanoseconds, since it is
/// read around every account's work on every bar.
fn clock() -> &'static quanta::Clock {
    static CLOCK: std::sync::OnceLock<quanta::Clock> = std::sync::OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// The engine: symbols, exchange, strategies with their accounts, and an event sink.
pub struct Engine<'s> {
    config: EngineConfig,
    symbols: Arc<[String]>,
    exchange: Exchange,
    slots: Vec<Slot>,
    /// Per symbol: recent bars with their steps (see `push_history`).
    history: Vec<VecDeque<(u64, Bar)>>,
    signals: HashMap<String, Signal>,
    sink: &'s mut dyn EventSink,
    step: u64,
    events: Vec<ExchangeEvent>,
    /// Account-wide admission over every account ([`qtm_oms::oms`]).
    guard: AccountGuard,
}

/// The account being called and every other one, borrowed apart.
fn split_slots(slots: &mut [Slot], account: usize) -> (&mut Slot, [&[Slot]; 2]) {
    let (before, rest) = slots.split_at_mut(account);
    let (slot, after) = rest.split_first_mut().expect("account in range");
    (slot, [&*before, &*after])
}

/// The account-wide totals of `others` (running strategies only: a stopped account's book is
/// taken over by its instance's next start), in engine symbol `sym`.
fn totals_of(others: [&[Slot]; 2], exchange: &Exchange, sym: Option<usize>) -> AccountTotals {
    let mut t = AccountTotals::default();
    for slot in others.into_iter().flatten() {
        if slot.state != StrategyState::Running {
            continue;
        }
        if let Some(s) = sym {
            t.position += slot.book.quantity(s);
        }
        t.gross_exposure += slot.book.gross_exposure();
    }
    t.open_orders = exchange.open_total();
    t
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
            guard: AccountGuard::new(),
        }
    }

    /// The account-wide admission state ([`qtm_oms::oms`]).
    pub fn guard(&self) -> &AccountGuard {
        &self.guard
    }

    /// The account-wide admission state, to set its limits, clock and halt.
    pub fn guard_mut(&mut self) -> &mut AccountGuard {
        &mut self.guard
    }

    /// Judge an order of external account `account` (see [`Engine::add_external_account`]):
    /// first by the account's own host bounds (its resting orders), then by the
    /// account-wide rules over the totals of every account. `replacing` names a resting order
    /// of the account the order replaces (a change to it): it does not count as open, and the
    /// order-rate window neither applies nor counts it. A new order that passes counts in the
    /// window. `Err` is the reason, in the words a trader reads.
    pub fn judge_external(
        &mut self,
        account: usize,
        symbol: &str,
        order: &AccountOrder,
        replacing: Option<u64>,
        ts: i64,
    ) -> Result<(), String> {
        let sym = self.symbol_id(symbol);
        let replaced = replacing.is_some_and(|id| {
            self.exchange
                .open_orders(account)
                .iter()
                .any(|o| o.id == id)
        });
        let slot = self.slots.get(account).ok_or("no such account")?;
        let own = qtm_oms::risk::OrderCheck {
            quantity: order.quantity,
            direction: order.direction,
            last_price: order.last_price,
            order_price: order.order_price,
            position: sym.map_or(0.0, |s| slot.book.quantity(s)),
            gross_exposure: slot.book.gross_exposure(),
            open_orders: self
                .exchange
                .open_count(account)
                .saturating_sub(usize::from(replaced)),
            // Orders placed from outside have no OCO group of their own (bracket exits get
            // theirs from the exchange, two at a time).
            oco_orders: None,
            ts,
        };
        RiskState::default().check_order(&slot.limits, &own)?;
        if !self.guard.is_active() {
            return Ok(());
        }
        let mut totals = totals_of([&self.slots, &[]], &self.exchange, sym);
        totals.open_orders = totals.open_orders.saturating_sub(usize::from(replaced));
        if replacing.is_some() {
            self.guard.check_change(order, &totals)
        } else {
            self.guard.check(order, &totals)
        }
    }

    /// Put an order of external account `account` on the exchange, judged first (see
    /// [`Engine::judge_external`]); it works from the next bar of its symbol on. `last_price`
    /// is the symbol's price the caller judged it at; `ts` the time it is placed. Returns
    /// the exchange's id of the order, or why it is refused.
    pub fn place_external(
        &mut self,
        account: usize,
        request: OrderRequest,
        last_price: f64,
        ts: i64,
    ) -> Result<u64, String> {
        if self.slots.get(account).is_none_or(|s| !s.external) {
            return Err(format!("account {account} takes no orders from outside"));
        }
        Exchange::validate(&request)?;
        let units = match request.quantity {
            Quantity::Units(q) => q,
            _ => return Err("an order placed from outside must be in units".into()),
        };
        let order = AccountOrder {
            quantity: units,
            direction: if request.side == Side::Buy { 1.0 } else { -1.0 },
            last_price,
            order_price: order_price(&request.kind),
        };
        self.judge_external(account, &request.symbol, &order, None, ts)?;
        Ok(self.submit_external(account, request, ts))
    }

    /// Put an order of external account `account` on the exchange without judging it: an
    /// order judged before (a working order taken over after a restart). Returns its id.
    pub fn submit_external(&mut self, account: usize, request: OrderRequest, ts: i64) -> u64 {
        let sym = self.add_symbol(&request.symbol);
        let last = self.slots[account].book.mark(sym);
        // Orders placed on step s work from step s + 1; an order placed between two batches
        // works from the next bar, whose step is `self.step`. Before any bar the step count
        // starts at 1, so the placement step exists.
        if self.step == 0 {
            self.step = 1;
        }
        self.exchange.submit(
            account,
            sym,
            request,
            self.step - 1,
            ts,
            if last.is_finite() { last } else { 0.0 },
        )
    }

    /// Cancel one resting order of `account`.
    pub fn cancel_order(&mut self, account: usize, id: u64) -> Result<(), String> {
        self.exchange.cancel(account, id)
    }

    /// Change the quantity (of what the exchange holds of it) or prices of one resting order
    /// of `account`.
    pub fn modify_order(
        &mut self,
        account: usize,
        id: u64,
        change: OrderChange,
    ) -> Result<(), String> {
        self.exchange.modify(account, id, change)
    }

    /// Number of resting orders of `account`.
    pub fn open_count(&self, account: usize) -> usize {
        self.exchange.open_count(account)
    }

    /// Resting orders of `account`, in the order they were placed.
    pub fn open_orders(&self, account: usize) -> Vec<OpenOrder> {
        self.exchange.open_orders(account)
    }

    /// Cancel every resting order of `account` and publish each cancel with `reason`;
    /// returns their ids.
    pub fn cancel_orders(&mut self, account: usize, reason: &str, ts: i64) -> Vec<u64> {
        let ids = self.exchange.cancel_all(account);
        for &order_id in &ids {
            self.sink.publish(Event::OrderCancelled {
                account,
                order_id,
                ts,
                reason: reason.to_string(),
            });
        }
        ids
    }

    /// Equity of the running strategies' accounts, summed.
    pub fn running_equity(&self) -> f64 {
        self.slots
            .iter()
            .filter(|s| s.state == StrategyState::Running)
            .map(|s| s.book.equity())
            .sum()
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
            run: Vec::new(),
            pos: 0,
            resumable: false,
            extremes: Vec::new(),
            logs: LogRing::new(self.config.log_lines),
            carry_equity: cash,
            carry_in_market: false,
            window: 64,
            scan_marks: Vec::new(),
            saved_marks: Vec::new(),
            busy_ticks: 0,
            external: false,
        });
        Ok(self.slots.len() - 1)
    }

    /// Add an account without a strategy, for orders placed from outside the engine (manual
    /// orders): it trades every symbol with the exchange, fill rules, costs and buying power
    /// of the strategies' accounts, and its orders are judged by
    /// [`Engine::place_external`]. `limits` are its own host bounds (resting orders). Returns
    /// the account id.
    pub fn add_external_account(
        &mut self,
        name: &str,
        cash: f64,
        limits: RiskLimits,
    ) -> Result<usize, String> {
        limits.validate()?;
        let n = self.symbols.len();
        self.slots.push(Slot {
            name: name.to_string(),
            runner: Box::new(NoStrategy),
            own: (0..n).collect(),
            local: (0..n as u32).map(Some).collect(),
            book: Portfolio::new(self.symbols.clone(), cash),
            risk: RiskState::default(),
            limits,
            state: StrategyState::Running,
            run: Vec::new(),
            pos: 0,
            resumable: false,
            extremes: Vec::new(),
            logs: LogRing::new(0),
            carry_equity: cash,
            carry_in_market: false,
            window: 64,
            scan_marks: Vec::new(),
            saved_marks: Vec::new(),
            busy_ticks: 0,
            external: true,
        });
        Ok(self.slots.len() - 1)
    }

    /// Put `limits` in force as an account's own limits (an external account's host bounds).
    pub fn set_account_limits(&mut self, account: usize, limits: RiskLimits) {
        if let Some(slot) = self.slots.get_mut(account) {
            slot.limits = limits;
        }
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

    /// The newest log lines the strategy wrote (bar time, level, text) and how many older
    /// ones were let go.
    pub fn logs(&self, account: usize) -> &LogRing {
        &self.slots[account].logs
    }

    /// Send every log line of an account to `sink` as it is written, whether the ring keeps it
    /// or not. Returns the sink it replaces.
    pub fn set_log_sink(
        &mut self,
        account: usize,
        sink: Box<dyn LogSink>,
    ) -> Option<Box<dyn LogSink>> {
        self.slots[account].logs.set_sink(sink)
    }

    /// Detach an account's log sink (to finish it).
    pub fn take_log_sink(&mut self, account: usize) -> Option<Box<dyn LogSink>> {
        self.slots[account].logs.take_sink()
    }

    /// Trades of an account: closed ones, then open ones marked at the latest prices.
    pub fn trades(&self, account: usize) -> Vec<Trade> {
        self.slots[account].book.all_trades()
    }

    /// The engine id of symbol `name`.
    pub fn symbol_id(&self, name: &str) -> Option<usize> {
        self.symbols.iter().position(|s| s == name)
    }

    /// The engine id of symbol `name`, adding it (live feeds meet new symbols) when missing.
    pub fn add_symbol(&mut self, name: &str) -> usize {
        if let Some(id) = self.symbol_id(name) {
            return id;
        }
        let mut names = self.symbols.to_vec();
        names.push(name.to_string());
        self.symbols = names.into();
        self.history.push(VecDeque::new());
        let id = self.symbols.len() - 1;
        for slot in &mut self.slots {
            if slot.external {
                // It trades every symbol.
                slot.local.push(Some(slot.own.len() as u32));
                slot.own.push(id);
            } else {
                slot.local.push(None);
            }
            slot.book.add_symbol(self.symbols.clone());
        }
        self.symbols.len() - 1
    }

    /// The engine's symbols, by engine id.
    pub fn symbols(&self) -> &[String] {
        &self.symbols
    }

    /// Number of accounts (strategies ever added; stopped ones keep their id).
    pub fn accounts(&self) -> usize {
        self.slots.len()
    }

    /// An account's book, to seed it with positions carried over from a previous run.
    pub fn portfolio_mut(&mut self, account: usize) -> &mut Portfolio {
        &mut self.slots[account].book
    }

    /// The strategy of an account (snapshots, statistics).
    pub fn runner_mut(&mut self, account: usize) -> &mut dyn StrategyRunner {
        self.slots[account].runner.as_mut()
    }

    /// Put `runner` in place of an account's strategy between two events and return the old
    /// one. The caller carries state over (snapshot → restore) before calling this. The rest of
    /// the current run is dropped, so the next bar starts a new run.
    pub fn replace_runner(
        &mut self,
        account: usize,
        runner: Box<dyn StrategyRunner>,
    ) -> Box<dyn StrategyRunner> {
        let slot = &mut self.slots[account];
        slot.resumable = false;
        slot.run.clear();
        slot.pos = 0;
        std::mem::replace(&mut slot.runner, runner)
    }

    /// Hand an account's strategy bars it had already handled before a restart (after its
    /// snapshot is restored), one `on-bar` at a time, so its state catches up with the bars
    /// the store's cursors say were handled. It sees its account as it is now; orders it
    /// places are refused, and nothing is published: the effects of these bars are stored.
    /// Neither the engine's bar history nor other strategies see the bars. `Err` is the
    /// strategy's failure (a trap, a spent budget).
    pub fn replay(&mut self, account: usize, bars: &[(usize, Bar)]) -> Result<(), String> {
        let n = self.symbols.len();
        let mut history = vec![VecDeque::new(); n];
        let mut quiet = qtm_core::events::EventLog::default();
        let (slot, others) = split_slots(&mut self.slots, account);
        // What it logs again was logged before the restart.
        let mut logs = LogRing::new(0);
        for (i, &(sym, bar)) in bars.iter().enumerate() {
            let Some(local) = slot.local.get(sym).copied().flatten() else {
                continue;
            };
            slot.book.set_mark(sym, bar.close);
            push_history(&mut history, &[(sym, bar)], i as u64, self.config.history);
            let run = [(sym, bar, i as u64)];
            let mut host = CallHost {
                account,
                symbols: &self.symbols,
                own: &slot.own,
                exchange: &mut self.exchange,
                book: &mut slot.book,
                risk: &mut slot.risk,
                limits: &slot.limits,
                guard: &mut self.guard,
                others,
                history: &history,
                history_len: self.config.history,
                sink: &mut quiet,
                signals: &self.signals,
                run: &run,
                at: 0,
                local: &slot.local,
                handed: 0,
                acted: false,
                logs: &mut logs,
                replaying: true,
            };
            slot.runner
                .on_bar(&mut host, local, &bar)
                .map_err(|e| format!("bar {} of {} (time {}): {e}", i + 1, bars.len(), bar.ts))?;
        }
        Ok(())
    }

    /// Wall time the engine has spent on an account while processing bars: its resting
    /// orders, its strategy's calls (bars and fills, host work included) and its kill switch
    /// checks. Not counted: snapshots, restores and replays, which run outside `process`.
    pub fn busy_ns(&self, account: usize) -> u64 {
        clock().delta_as_nanos(0, self.slots[account].busy_ticks)
    }

    /// The kept log lines written since the last call (bar time, level, text); see
    /// [`Engine::logs`] for how many were let go.
    pub fn take_logs(&mut self, account: usize) -> Vec<LogLine> {
        self.slots[account].logs.drain()
    }

    /// Stop a strategy that is being switched off (not a risk halt): cancels its orders.
    pub fn retire(&mut self, account: usize, reason: &str, ts: i64) {
        self.stop_slot(account, StrategyState::Disabled, reason, ts);
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
        push_history(&mut self.history, bars, base, self.config.history);
        let mut equity = vec![f64::NAN; bars.len()];
        let mut in_market = vec![false; bars.len()];
        // One pair of buffers for every account: live trading calls this per bar with many
        // accounts.
        let mut slot_equity = vec![f64::NAN; bars.len()];
        let mut slot_in = vec![false; bars.len()];
        // Resting orders fill on every account's first bar of the batch before any strategy
        // runs, so fills (what a trader waits for) go out first. Nothing else in the batch can
        // change them: accounts are independent, an account skips the bars of symbols it does
        // not trade, and `recent-bars` answers as of the caller's own bar.
        let mut filled_first = vec![None; self.slots.len()];
        for (account, first) in filled_first.iter_mut().enumerate() {
            let slot = &self.slots[account];
            if let Some(j) = bars.iter().position(|&(s, _)| slot.local[s].is_some()) {
                let (sym, bar) = bars[j];
                let t0 = clock().raw();
                self.exchange_step(account, sym, base + j as u64, &bar);
                self.slots[account].busy_ticks += clock().raw().saturating_sub(t0);
                *first = Some(j);
            }
        }
        for (account, &first) in filled_first.iter().enumerate() {
            slot_equity.fill(f64::NAN);
            slot_in.fill(false);
            // An account none of whose symbols is in the batch only carries its values on.
            let t0 = first.map(|_| clock().raw());
            self.process_slot(account, bars, base, first, &mut slot_equity, &mut slot_in);
            if let Some(t0) = t0 {
                self.slots[account].busy_ticks += clock().raw().saturating_sub(t0);
            }
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
        let ts = bars[bars.len() - 1].1.ts;
        let equity = self.running_equity();
        if let Some(reason) = self.guard.check_equity(equity) {
            self.halt_running(&reason, ts);
        }
    }

    /// Halt every running strategy (the account's kill switch fired or was pressed): each
    /// has its orders cancelled. Returns their accounts.
    /// External accounts are not halted: their orders are cancelled ([`KILL_SWITCH_CANCEL`])
    /// and the account guard refuses their new ones.
    pub fn halt_running(&mut self, reason: &str, ts: i64) -> Vec<usize> {
        let running: Vec<usize> = (0..self.slots.len())
            .filter(|&a| self.slots[a].state == StrategyState::Running && !self.slots[a].external)
            .collect();
        for &a in &running {
            self.halt(a, reason, ts);
        }
        for a in 0..self.slots.len() {
            if self.slots[a].external {
                self.cancel_orders(a, KILL_SWITCH_CANCEL, ts);
            }
        }
        running
    }

    fn process_slot(
        &mut self,
        account: usize,
        bars: &[(usize, Bar)],
        base: u64,
        exchange_done: Option<usize>,
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
            // 1. The exchange acts on this bar for resting orders, before the strategy sees it
            // (for the account's first bar of the batch, it already has).
            if exchange_done != Some(j) {
                self.exchange_step(account, sym, step, &bar);
            }
            // 2. Mark to the close; the strategy will see this bar.
            {
                let slot = &mut self.slots[account];
                slot.book.set_mark(sym, bar.close);
            }
            if self.slots[account].external {
                // No strategy to call: its orders were judged when placed. It sees every bar
                // of every symbol, so its equity (a sum over symbols) is worked out only where
                // this bar moves it; elsewhere the last value carries.
                let book = &self.slots[account].book;
                if book.quantity(sym) != 0.0 {
                    let equity = book.equity();
                    if equity <= 0.0 {
                        self.margin_call(account, bar.ts, equity);
                    }
                    out[j] = self.slots[account].book.equity();
                    in_market[j] = self.slots[account].book.in_market();
                }
                j += 1;
                continue;
            }
            if self.slots[account].state != StrategyState::Running {
                let equity = self.slots[account].book.equity();
                self.kill_switch(account, &bar, equity);
                out[j] = self.slots[account].book.equity();
                in_market[j] = self.slots[account].book.in_market();
                j += 1;
                continue;
            }
            // 3. The run of bars the strategy may take at once: the rest of the run it already
            // holds when that is still safe (the usual case after an order), else a new one.
            let slot = &mut self.slots[account];
            let batching = self.config.batch && slot.runner.pulls_bars();
            // One symbol and no equity limits: whether the rest it holds is still safe follows
            // from that rest's lowest and highest close, so runs can outlive many orders.
            let simple = slot.own.len() == 1 && !has_equity_limits(&slot.limits);
            let held = if batching
                && slot.resumable
                && slot.pos < slot.run.len()
                && slot.run[slot.pos].2 == step
            {
                slot.run.len() - slot.pos
            } else {
                0
            };
            let mut resume = held > 0;
            if resume {
                let rest = slot.pos + 1;
                resume = if rest == slot.run.len() {
                    true
                } else if simple && !self.exchange.has_orders(account) {
                    // Equity is `cash + q × close` (the kill switch's own sum), monotone in
                    // the close: its minimum over the rest is at one of the extremes.
                    let q = slot.book.quantity(sym);
                    let (lo, hi) = slot.extremes[rest];
                    q == 0.0 || slot.book.cash() + q * if q > 0.0 { lo } else { hi } > 0.0
                } else if held <= RECHECK_MAX {
                    let mut scan = RunScan::new(&self.exchange, account, slot);
                    let ok = slot.run[rest..].iter().all(|&(s2, b2, st)| {
                        scan.admit(&self.exchange, account, slot, s2, st, &b2)
                    });
                    scan.finish(slot);
                    ok
                } else {
                    false
                };
                if !resume {
                    // Bars scanned that the strategy will not reach: shorten later runs.
                    slot.window = (slot.pos * 2).clamp(16, self.config.max_batch);
                }
            }
            let from = if resume { slot.pos } else { 0 };
            if !resume {
                slot.run.clear();
                slot.run.push((sym, bar, step));
                if batching {
                    let mut scan = RunScan::new(&self.exchange, account, slot);
                    let window = slot.window.min(self.config.max_batch);
                    let mut k = j + 1;
                    while k < bars.len() && slot.run.len() < window {
                        let (s2, b2) = bars[k];
                        if slot.local[s2].is_some() {
                            let st = base + k as u64;
                            if !scan.admit(&self.exchange, account, slot, s2, st, &b2) {
                                break;
                            }
                            slot.run.push((s2, b2, st));
                        }
                        k += 1;
                    }
                    scan.finish(slot);
                    if simple && slot.run.len() > 1 {
                        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
                        slot.extremes.clear();
                        slot.extremes.resize(slot.run.len(), (lo, hi));
                        for (i, (_, b, _)) in slot.run.iter().enumerate().rev() {
                            (lo, hi) = (lo.min(b.close), hi.max(b.close));
                            slot.extremes[i] = (lo, hi);
                        }
                    }
                }
            }
            // Pulled bars move marks ahead during the call; keep where they were to replay from.
            let slot = &mut self.slots[account];
            let multi = slot.run.len() - from > 1;
            if multi {
                slot.saved_marks.clear();
                slot.saved_marks
                    .extend(slot.own.iter().map(|&s| slot.book.mark(s)));
            }
            let (consumed, batched) = self.call_strategy(account, from, resume);
            let slot = &mut self.slots[account];
            if multi {
                for (i, &s) in slot.own.iter().enumerate() {
                    slot.book.set_mark(s, slot.saved_marks[i]);
                }
            }
            // 4. Book equity for the bars handled; fire kill switches.
            let handled_n = consumed.clamp(1, slot.run.len() - from);
            let until = from + handled_n;
            slot.pos = until;
            slot.resumable = batched && slot.state == StrategyState::Running;
            // Adapt the run length to how long the strategy goes between orders: scanning and
            // encoding bars it will not reach is wasted work. A simple run survives orders, so
            // it shrinks only when it is dropped (above).
            let kept = simple && until < slot.run.len();
            if !resume && !kept {
                slot.window = if until == slot.run.len() {
                    (slot.window * 2).min(self.config.max_batch)
                } else {
                    (handled_n * 2).clamp(16, self.config.max_batch)
                };
            }
            let last_step = slot.run[until - 1].2;
            // Without equity limits only running out of money can stop the strategy here.
            let limits = has_equity_limits(&slot.limits);
            // The call may have moved the marks ahead (pulled bars); replay them bar by bar.
            for h in from..until {
                let slot = &mut self.slots[account];
                let (s, b, st) = slot.run[h];
                let jj = (st - base) as usize;
                slot.book.set_mark(s, b.close);
                let mut equity = slot.book.equity();
                let mut exposed = slot.book.in_market();
                if limits || (equity <= 0.0 && exposed) {
                    self.kill_switch(account, &b, equity);
                    let book = &self.slots[account].book;
                    (equity, exposed) = (book.equity(), book.in_market());
                }
                out[jj] = equity;
                in_market[jj] = exposed;
            }
            // --fill close: market orders placed on the last handled bar fill at its close.
            if self.config.exchange.fill == qtm_oms::exchange::FillMode::Close {
                let (s, b, st) = self.slots[account].run[until - 1];
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

    /// Run `f` with the strategy and a host over `slot.run` from position `from`, or over the
    /// single bar `fill_at` (for `on-fill`); returns its result and the run position the
    /// strategy reached.
    fn with_host<R>(
        &mut self,
        account: usize,
        from: usize,
        fill_at: Option<(usize, Bar, u64)>,
        f: impl FnOnce(&mut dyn StrategyRunner, &mut CallHost<'_>) -> R,
    ) -> (R, usize) {
        let (slot, others) = split_slots(&mut self.slots, account);
        let Slot {
            runner,
            own,
            local,
            book,
            risk,
            limits,
            run,
            logs,
            ..
        } = slot;
        let one;
        let run: &[(usize, Bar, u64)] = match fill_at {
            Some(at) => {
                one = [at];
                &one
            }
            None => run,
        };
        let mut host = CallHost {
            account,
            symbols: &self.symbols,
            own,
            exchange: &mut self.exchange,
            book,
            risk,
            limits,
            guard: &mut self.guard,
            others,
            history: &self.history,
            history_len: self.config.history,
            sink: self.sink,
            signals: &self.signals,
            run,
            at: if fill_at.is_some() { 0 } else { from },
            local,
            handed: 0,
            acted: false,
            logs,
            replaying: false,
        };
        let r = f(runner.as_mut(), &mut host);
        (r, host.at)
    }

    /// Run the strategy on `slot.run` from position `from` (its current bar): let it pull
    /// through the run when more than one bar is left (or it is resuming one), else call
    /// `on-bar`. Returns how many bars it handled and whether the rest of the run stays valid.
    fn call_strategy(&mut self, account: usize, from: usize, resume: bool) -> (usize, bool) {
        let batched = resume || self.slots[account].run.len() - from > 1;
        let (result, at) = self.with_host(account, from, None, |runner, host| {
            if batched {
                runner.on_bars(host).map(|n| n as usize)
            } else {
                let (s, b, _) = host.run[host.at];
                let local = host.local[s].unwrap_or(0);
                runner.on_bar(host, local, &b).map(|_| 1)
            }
        });
        let run = &self.slots[account].run;
        match result {
            Ok(n) => (n.clamp(1, run.len() - from), batched),
            Err(reason) => {
                let ts = run[at].1.ts;
                self.stop_slot(account, StrategyState::Disabled, &reason, ts);
                // A trapped strategy handled the bars up to where it stopped.
                (at + 1 - from, false)
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
            if slot.state != StrategyState::Running || !slot.runner.wants_fills() {
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
            let (result, _) = self.with_host(account, 0, Some(at), |runner, host| {
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

    /// An external account out of money: as a broker's margin call, its working orders are
    /// cancelled and its positions closed at the marks (with commission), and an alert says
    /// so. It is not halted: with no equity left, buying power refuses its next orders.
    fn margin_call(&mut self, account: usize, ts: i64, equity: f64) {
        let reason = format!(
            "margin call: equity fell to {equity:.2}; orders cancelled, positions closed at the last prices"
        );
        self.cancel_orders(account, &reason, ts);
        self.liquidate(account, ts, "liquidation");
        self.sink.publish(Event::RiskAlert {
            account,
            ts,
            kind: "margin_call".into(),
            message: reason,
        });
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
                qtm_core::model::Side::Sell
            } else {
                qtm_core::model::Side::Buy
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

/// The limit or stop price an order is judged at, if any.
fn order_price(kind: &OrderKind) -> Option<f64> {
    match *kind {
        OrderKind::Limit(p) | OrderKind::Stop(p) => Some(p),
        OrderKind::StopLimit { limit, .. } => Some(limit),
        _ => None,
    }
}

/// Longest rest of a run re-checked bar by bar before resuming it; longer ones are re-loaded
/// (the scan is then as long as a new run's, and nothing is checked twice without bound).
const RECHECK_MAX: usize = 256;

fn has_equity_limits(limits: &RiskLimits) -> bool {
    limits.max_drawdown_pct.is_some() || limits.max_daily_loss.is_some()
}

/// The checks that let a bar join a run: nothing the exchange or the risk engine would do on it
/// may change the strategy's world before the strategy sees it. Equity moves only with a
/// position, so kill switches and running out of money are probed bar by bar only then.
struct RunScan {
    resting: bool,
    exposed: bool,
    probe: Option<RiskState>,
    equity: f64,
    marks: Vec<f64>,
}

impl RunScan {
    fn new(exchange: &Exchange, account: usize, slot: &mut Slot) -> Self {
        let exposed = slot.book.in_market();
        let kill = has_equity_limits(&slot.limits) && exposed;
        let mut marks = std::mem::take(&mut slot.scan_marks);
        marks.clear();
        marks.extend(slot.own.iter().map(|&s| slot.book.mark(s)));
        Self {
            resting: exchange.has_orders(account),
            exposed,
            probe: kill.then(|| slot.risk.clone()),
            equity: slot.book.equity(),
            marks,
        }
    }

    /// Whether bar `bar` of engine symbol `sym` (engine step `step`) may join the run.
    #[inline]
    fn admit(
        &mut self,
        exchange: &Exchange,
        account: usize,
        slot: &Slot,
        sym: usize,
        step: u64,
        bar: &Bar,
    ) -> bool {
        if self.resting && exchange.would_act(account, sym, step, bar) {
            return false;
        }
        if self.exposed {
            let Some(l) = slot.local[sym] else {
                return true;
            };
            let prev = &mut self.marks[l as usize];
            self.equity += slot.book.quantity(sym) * (bar.close - *prev);
            *prev = bar.close;
            if self.equity <= 0.0 {
                return false;
            }
            if let Some(probe) = self.probe.as_mut()
                && probe
                    .check_equity(&slot.limits, bar.ts, self.equity)
                    .is_some()
            {
                return false;
            }
        }
        true
    }

    fn finish(self, slot: &mut Slot) {
        slot.scan_marks = self.marks;
    }
}
