//! The strategy as the host's native layers see it: what a strategy may ask of the host
//! ([`StrategyHost`], implemented by the engine), the handle the engine drives
//! ([`StrategyRunner`], implemented by sandboxed components and by native code), and their
//! accounting ([`InstanceStats`]). Plain Rust, no wasmtime: the engine and the backtest depend
//! on this, never on the sandbox.

use serde::Serialize;

use crate::model::{Bar, Fill, LogLevel, OpenOrder, OrderChange, OrderRequest, Position, Signal};

/// What a strategy can ask of the host. The engine implements it for live and backtest runs.
pub trait StrategyHost {
    /// A log line from the strategy (already cut to the configured length).
    fn log(&mut self, level: LogLevel, message: &str);
    /// Risk-check and place an order; `Err` is the reason given to the strategy.
    fn submit_order(&mut self, order: OrderRequest) -> Result<u64, String>;
    /// Cancel one of the strategy's resting orders.
    fn cancel_order(&mut self, id: u64) -> Result<(), String>;
    /// Change one of the strategy's resting orders.
    fn modify_order(&mut self, id: u64, change: OrderChange) -> Result<(), String>;
    /// The strategy's signed position in `symbol`.
    fn position(&mut self, symbol: &str) -> Position;
    /// The strategy's free cash.
    fn cash(&mut self) -> f64;
    /// Cash plus positions marked at the current bar.
    fn equity(&mut self) -> f64;
    /// The strategy's resting orders.
    fn open_orders(&mut self) -> Vec<OpenOrder>;
    /// The latest value of a named external signal.
    fn signal(&mut self, name: &str) -> Option<Signal>;
    /// The engine clock, unix nanoseconds.
    fn now_ns(&mut self) -> i64;
    /// Up to `count` recent bars of `symbol`, oldest first, ending at the current bar; `Err`
    /// for a symbol the strategy does not trade. `count` is already within the cap.
    fn recent_bars(&mut self, symbol: &str, count: u32) -> Result<Vec<Bar>, String>;
    /// Inside `on-bars`: hand over the next bar of the run (its symbol id for the strategy)
    /// and move the host's clock to it, or `None` when the run is over. The sandbox asks only
    /// when the strategy is done with the previous bar and placed no order on it.
    fn next_bar(&mut self) -> Option<(u32, Bar)>;
}

/// A strategy as the engine sees it. Errors are the reason the strategy was stopped.
pub trait StrategyRunner: Send {
    /// Deliver one bar of the strategy's symbol `symbol`.
    fn on_bar(&mut self, host: &mut dyn StrategyHost, symbol: u32, bar: &Bar)
    -> Result<(), String>;
    /// Report a fill of one of its orders.
    fn on_fill(
        &mut self,
        host: &mut dyn StrategyHost,
        symbol: u32,
        fill: &Fill,
    ) -> Result<(), String>;
    /// Whether [`StrategyRunner::on_fill`] does anything; the engine skips the call when not.
    fn wants_fills(&self) -> bool {
        true
    }
    /// Whether [`StrategyRunner::on_bars`] is worth using.
    fn pulls_bars(&self) -> bool {
        false
    }
    /// Pull bars from [`StrategyHost::next_bar`] until it answers `None` or the strategy acts
    /// on a bar (places, cancels or modifies an order), so the host can act before the next
    /// bar exists. Returns how many bars it took.
    fn on_bars(&mut self, _host: &mut dyn StrategyHost) -> Result<u64, String> {
        Err("pulling bars is not supported".into())
    }
    /// The strategy's state, for a hot swap, a clone or crash recovery.
    fn snapshot(&mut self) -> Result<Vec<u8>, String> {
        Err("snapshots are not supported".into())
    }
    /// Take over state from [`StrategyRunner::snapshot`].
    fn restore(&mut self, _state: &[u8]) -> Result<(), String> {
        Err("snapshots are not supported".into())
    }
    /// Sandbox accounting (calls, fuel, traps), when the strategy runs in the sandbox.
    fn stats(&self) -> Option<InstanceStats> {
        None
    }
}

/// Per-instance accounting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InstanceStats {
    /// Calls into the guest, of every kind.
    pub calls: u64,
    /// Bars delivered (one per `on-bar`, each bar pulled with `next-bar`).
    pub bars: u64,
    /// Fuel consumed in total.
    pub fuel: u64,
    /// Fuel consumed by the most recent call.
    pub last_call_fuel: u64,
    /// Wall time spent inside the guest, nanoseconds.
    pub wall_ns: u64,
    /// The same in raw clock ticks, summed per call and scaled to `wall_ns` on reading.
    #[serde(skip)]
    #[doc(hidden)]
    pub wall_ticks: u64,
    /// Traps (0 or 1: a trap disables the instance).
    pub traps: u64,
    /// Host calls, orders (submit, cancel, modify) and log lines dropped over the cap.
    pub host_calls: u64,
    pub orders: u64,
    pub logs_dropped: u64,
    /// Fuel charged for host work done on the strategy's behalf (part of `fuel`).
    pub host_fuel: u64,
}
