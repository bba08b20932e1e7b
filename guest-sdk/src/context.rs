//! The strategy's view of the host: orders, account, parameters, signals, clock, logging.

use crate::bindings::qtm::strategy::host;
use crate::{Bar, LogLevel, OpenOrder, Order, OrderChange, ParamValue, Position, Quantity, Side};
use crate::{Signal, SymbolId};

/// Handed to every callback: the strategy's way to the host. The host answers as of the bar
/// being handled; it knows which one, since it hands bars out one at a time.
#[derive(Debug, Default)]
pub struct Context {
    symbols: Vec<String>,
}

impl Context {
    pub(crate) const fn empty() -> Self {
        Self {
            symbols: Vec::new(),
        }
    }

    pub(crate) fn set_symbols(&mut self, symbols: Vec<String>) {
        self.symbols = symbols;
    }

    /// The symbols this instance trades; a [`SymbolId`] indexes this list.
    pub fn symbols(&self) -> &[String] {
        &self.symbols
    }

    /// The name of a symbol id (empty if the host sent an id out of range).
    pub fn symbol(&self, id: SymbolId) -> &str {
        self.symbols
            .get(id as usize)
            .map(String::as_str)
            .unwrap_or("")
    }

    /// Submit an order; `Err` carries the risk engine's or exchange's reason.
    pub fn submit(&mut self, order: Order) -> Result<u64, String> {
        host::submit_order(&order.into_request())
    }

    /// Market buy of `units` units.
    pub fn buy(&mut self, symbol: &str, units: f64) -> Result<u64, String> {
        self.submit(Order::market(symbol, Side::Buy, Quantity::Units(units)))
    }

    /// Market sell of `units` units.
    pub fn sell(&mut self, symbol: &str, units: f64) -> Result<u64, String> {
        self.submit(Order::market(symbol, Side::Sell, Quantity::Units(units)))
    }

    /// Trade to a signed fraction of equity in `symbol` (LEAN's `SetHoldings`).
    pub fn set_holdings(&mut self, symbol: &str, fraction: f64) -> Result<u64, String> {
        self.submit(Order::market(
            symbol,
            Side::Buy,
            Quantity::TargetPercent(fraction),
        ))
    }

    /// Cancel a resting order.
    pub fn cancel(&mut self, id: u64) -> Result<(), String> {
        host::cancel_order(id)
    }

    /// Change a resting order's quantity or prices.
    pub fn modify(&mut self, id: u64, change: OrderChange) -> Result<(), String> {
        host::modify_order(id, change)
    }

    /// Signed position in `symbol` (0 when flat).
    pub fn position(&mut self, symbol: &str) -> Position {
        host::get_position(symbol)
    }

    /// Free cash.
    pub fn cash(&mut self) -> f64 {
        host::cash()
    }

    /// Cash plus positions marked at the current bar.
    pub fn equity(&mut self) -> f64 {
        host::equity()
    }

    /// This instance's resting orders.
    pub fn open_orders(&mut self) -> Vec<OpenOrder> {
        host::open_orders()
    }

    /// A configured parameter as the host sees it.
    pub fn param(&mut self, name: &str) -> Option<ParamValue> {
        host::param(name)
    }

    /// The latest value of an external signal.
    pub fn signal(&mut self, name: &str) -> Option<Signal> {
        host::get_signal(name)
    }

    /// The engine's clock (historical in a backtest), unix nanoseconds.
    pub fn now_ns(&mut self) -> i64 {
        host::now_ns()
    }

    /// Up to `count` recent bars of `symbol`, oldest first, ending at the current bar. `Err`
    /// for a symbol this instance does not trade or a `count` over the host's cap (10,000).
    pub fn recent_bars(&mut self, symbol: &str, count: u32) -> Result<Vec<Bar>, String> {
        host::recent_bars(symbol, count)
    }

    /// Write a line to the instance's log (the host caps volume per call).
    pub fn log(&mut self, level: LogLevel, message: &str) {
        host::log(level, message)
    }

    /// Log at info level.
    pub fn info(&mut self, message: &str) {
        self.log(LogLevel::Info, message)
    }

    /// Log at warn level.
    pub fn warn(&mut self, message: &str) {
        self.log(LogLevel::Warn, message)
    }
}
