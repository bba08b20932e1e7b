//! The host side of the contract: what a strategy's imports reach.
//!
//! The engine answers a strategy's requests by implementing [`StrategyHost`]. The sandbox lends
//! that implementation to the instance's `Store` for exactly the duration of one call, and
//! enforces the per-call limits (orders, host calls, log volume) before forwarding anything.

use std::ptr::NonNull;

use super::bindings::qtm::strategy::{host, types};
use super::config::Limits;
use super::convert;
use crate::model::{Bar, LogLevel, OpenOrder, OrderChange, OrderRequest, Param, Position, Signal};

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
    /// Up to `count` recent bars of `symbol`, oldest first.
    fn recent_bars(&mut self, symbol: &str, count: u32) -> Vec<Bar>;
    /// Inside a batch, the strategy is now handling bar `index` of the loaded batch.
    fn at_bar(&mut self, index: u32);
}

/// A host for calls made outside any engine (describe, configure, inspect): it answers
/// queries with an empty account and refuses orders.
#[derive(Debug, Default, Clone, Copy)]
pub struct DetachedHost;

impl StrategyHost for DetachedHost {
    fn log(&mut self, level: LogLevel, message: &str) {
        tracing::debug!(?level, message, "strategy log (detached)");
    }
    fn submit_order(&mut self, _: OrderRequest) -> Result<u64, String> {
        Err("orders are not accepted outside a backtest or live run".into())
    }
    fn cancel_order(&mut self, id: u64) -> Result<(), String> {
        Err(format!("no order {id}"))
    }
    fn modify_order(&mut self, id: u64, _: OrderChange) -> Result<(), String> {
        Err(format!("no order {id}"))
    }
    fn position(&mut self, _: &str) -> Position {
        Position::default()
    }
    fn cash(&mut self) -> f64 {
        0.0
    }
    fn equity(&mut self) -> f64 {
        0.0
    }
    fn open_orders(&mut self) -> Vec<OpenOrder> {
        Vec::new()
    }
    fn signal(&mut self, _: &str) -> Option<Signal> {
        None
    }
    fn now_ns(&mut self) -> i64 {
        0
    }
    fn recent_bars(&mut self, _: &str, _: u32) -> Vec<Bar> {
        Vec::new()
    }
    fn at_bar(&mut self, _: u32) {}
}

/// Raised from a host import to trap the guest when it breaks a per-call limit.
#[derive(Debug)]
pub(crate) struct HostAbort(pub String);

impl std::fmt::Display for HostAbort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HostAbort {}

/// Per-call counters, reset before every call.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CallCounters {
    pub host_calls: u32,
    pub orders: u32,
    pub log_lines: u32,
}

/// Everything a Store holds: limits, counters, configured parameters, and the borrowed host.
pub(crate) struct HostState {
    /// Set only while a call is running; see [`HostState::lend`].
    host: Option<NonNull<dyn StrategyHost + 'static>>,
    pub(crate) store_limits: wasmtime::StoreLimits,
    pub(crate) limits: Limits,
    pub(crate) params: Vec<Param>,
    pub(crate) call: CallCounters,
    pub(crate) logs_dropped: u64,
    pub(crate) orders: u64,
    pub(crate) host_calls: u64,
}

// SAFETY: `host` is `None` whenever the Store is not inside a call, and a call never crosses
// threads, so moving a Store (e.g. warming an instance on a background thread) moves no borrow.
unsafe impl Send for HostState {}

impl HostState {
    pub(crate) fn new(limits: Limits, store_limits: wasmtime::StoreLimits) -> Self {
        Self {
            host: None,
            store_limits,
            limits,
            params: Vec::new(),
            call: CallCounters::default(),
            logs_dropped: 0,
            orders: 0,
            host_calls: 0,
        }
    }

    /// Lend `host` to the guest for the duration of `f`.
    pub(crate) fn lend<R>(
        store: &mut wasmtime::Store<HostState>,
        host: &mut dyn StrategyHost,
        f: impl FnOnce(&mut wasmtime::Store<HostState>) -> R,
    ) -> R {
        struct Clear<'a>(&'a mut wasmtime::Store<HostState>);
        impl Drop for Clear<'_> {
            fn drop(&mut self) {
                self.0.data_mut().host = None;
            }
        }
        let ptr: NonNull<dyn StrategyHost + '_> = NonNull::from(host);
        // SAFETY: the lifetime is erased only for storage; the pointer is cleared by `Clear`
        // when this function returns or unwinds, before the borrow of `host` ends, and it is
        // dereferenced only by imports running inside `f`.
        let ptr: NonNull<dyn StrategyHost + 'static> = unsafe { std::mem::transmute(ptr) };
        store.data_mut().host = Some(ptr);
        store.data_mut().call = CallCounters::default();
        let guard = Clear(store);
        f(guard.0)
    }

    fn host(&mut self) -> wasmtime::Result<&mut dyn StrategyHost> {
        self.count_call()?;
        match self.host {
            // SAFETY: see `lend`; the pointer is valid while it is `Some`.
            Some(mut p) => Ok(unsafe { p.as_mut() }),
            None => Err(wasmtime::Error::new(HostAbort(
                "host call outside a call".into(),
            ))),
        }
    }

    fn count_call(&mut self) -> wasmtime::Result<()> {
        self.call.host_calls += 1;
        self.host_calls += 1;
        if self.call.host_calls > self.limits.host_calls_per_call {
            return Err(wasmtime::Error::new(HostAbort(format!(
                "more than {} host calls in one call",
                self.limits.host_calls_per_call
            ))));
        }
        Ok(())
    }

    fn order_slot(&mut self) -> wasmtime::Result<()> {
        self.call.orders += 1;
        self.orders += 1;
        if self.call.orders > self.limits.orders_per_call {
            return Err(wasmtime::Error::new(HostAbort(format!(
                "more than {} orders in one call (order spam)",
                self.limits.orders_per_call
            ))));
        }
        Ok(())
    }
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: types::LogLevel, mut message: String) -> wasmtime::Result<()> {
        let max_bytes = self.limits.log_line_bytes;
        self.call.log_lines += 1;
        if self.call.log_lines > self.limits.log_lines_per_call {
            // Dropped lines still count against the host-call budget, so a log loop ends.
            self.count_call()?;
            self.logs_dropped += 1;
            return Ok(());
        }
        if message.len() > max_bytes {
            let mut cut = max_bytes;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        self.host()?.log(convert::log_level(level), &message);
        Ok(())
    }

    fn submit_order(
        &mut self,
        order: types::OrderRequest,
    ) -> wasmtime::Result<Result<u64, String>> {
        self.order_slot()?;
        let order = convert::order_request_from_wit(order);
        Ok(self.host()?.submit_order(order))
    }

    fn cancel_order(&mut self, id: u64) -> wasmtime::Result<Result<(), String>> {
        self.order_slot()?;
        Ok(self.host()?.cancel_order(id))
    }

    fn modify_order(
        &mut self,
        id: u64,
        change: types::OrderChange,
    ) -> wasmtime::Result<Result<(), String>> {
        self.order_slot()?;
        let change = OrderChange {
            quantity: change.quantity,
            limit_price: change.limit_price,
            stop_price: change.stop_price,
        };
        Ok(self.host()?.modify_order(id, change))
    }

    fn get_position(&mut self, symbol: String) -> wasmtime::Result<types::Position> {
        let p = self.host()?.position(&symbol);
        Ok(types::Position {
            quantity: p.quantity,
            avg_price: p.avg_price,
        })
    }

    fn cash(&mut self) -> wasmtime::Result<f64> {
        Ok(self.host()?.cash())
    }

    fn equity(&mut self) -> wasmtime::Result<f64> {
        Ok(self.host()?.equity())
    }

    fn open_orders(&mut self) -> wasmtime::Result<Vec<types::OpenOrder>> {
        let orders = self.host()?.open_orders();
        Ok(orders.into_iter().map(convert::open_order_to_wit).collect())
    }

    fn param(&mut self, name: String) -> wasmtime::Result<Option<types::ParamValue>> {
        self.count_call()?;
        Ok(self
            .params
            .iter()
            .find(|p| p.name == name)
            .map(|p| convert::param_value_to_wit(&p.value)))
    }

    fn get_signal(&mut self, name: String) -> wasmtime::Result<Option<types::Signal>> {
        Ok(self.host()?.signal(&name).map(|s| types::Signal {
            value: s.value,
            ts_ns: s.ts_ns,
            payload: s.payload,
        }))
    }

    fn now_ns(&mut self) -> wasmtime::Result<i64> {
        Ok(self.host()?.now_ns())
    }

    fn recent_bars(&mut self, symbol: String, count: u32) -> wasmtime::Result<Vec<types::Bar>> {
        // Bounded so a guest cannot make the host build an arbitrarily large list.
        let count = count.min(10_000);
        let bars = self.host()?.recent_bars(&symbol, count);
        Ok(bars.iter().map(convert::bar_to_wit).collect())
    }

    fn at_bar(&mut self, index: u32) -> wasmtime::Result<()> {
        self.host()?.at_bar(index);
        Ok(())
    }
}

/// Parameter values as the guest sees them.
pub(crate) fn params_to_wit(params: &[Param]) -> Vec<types::Param> {
    params
        .iter()
        .map(|p| types::Param {
            name: p.name.clone(),
            value: convert::param_value_to_wit(&p.value),
        })
        .collect()
}
