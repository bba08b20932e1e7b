//! The host side of the contract: what a strategy's imports reach.
//!
//! The engine answers a strategy's requests by implementing [`StrategyHost`]. The sandbox lends
//! that implementation to the instance's `Store` for exactly the duration of one call, and
//! before forwarding anything it enforces the per-bar limits (orders, host calls, log volume),
//! the caps on strings and lists (`caps`), and charges the host's work to the guest's fuel.

use std::ptr::NonNull;

use wasmtime::StoreContextMut;

use super::bindings::latest::qtm::strategy::{host, types};
use super::caps;
use super::config::Limits;
use super::convert;
use qtm_core::model::{
    Bar, LogLevel, OpenOrder, OrderChange, OrderRequest, Param, Position, Signal,
};
pub use qtm_core::strategy::StrategyHost;

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
    fn recent_bars(&mut self, _: &str, _: u32) -> Result<Vec<Bar>, String> {
        Ok(Vec::new())
    }
    fn next_bar(&mut self) -> Option<(u32, Bar)> {
        None
    }
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

/// Raised when fuel runs out counting the host's work on the guest's behalf: reported like
/// the guest's own fuel running out.
#[derive(Debug)]
pub(crate) struct HostFuelOut;

impl std::fmt::Display for HostFuelOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fuel exhausted by host work done for the strategy")
    }
}

impl std::error::Error for HostFuelOut {}

/// Per-bar counters, reset before every call and every pulled bar.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CallCounters {
    pub host_calls: u32,
    pub orders: u32,
    pub log_lines: u32,
    /// Fuel owed for host work since the fuel was last armed.
    pub host_fuel: u64,
}

/// Fuel and pull state of the running call.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Budget {
    /// Fuel armed when the current bar (or call) began.
    pub armed: u64,
    /// Fuel to arm for each pulled bar.
    pub per_bar: u64,
    /// Epoch ticks to arm for each pulled bar.
    pub deadline_ticks: u64,
    /// Fuel spent (guest and host work) on bars already settled during this call.
    pub settled: u64,
    /// Inside `on-bars`: whether `next-bar` may hand out bars.
    pub pulling: bool,
    /// Bars handed out by `next-bar` in this call.
    pub handed: u64,
    /// Whether the strategy placed, cancelled or modified an order on the current bar.
    pub acted: bool,
}

/// Everything a Store holds: limits, counters, configured parameters, and the borrowed host.
pub(crate) struct HostState {
    /// Set only while a call is running; see [`HostState::lend`].
    host: Option<NonNull<dyn StrategyHost + 'static>>,
    pub(crate) store_limits: wasmtime::StoreLimits,
    pub(crate) limits: Limits,
    pub(crate) params: Vec<Param>,
    pub(crate) call: CallCounters,
    pub(crate) budget: Budget,
    pub(crate) logs_dropped: u64,
    pub(crate) orders: u64,
    pub(crate) host_calls: u64,
    /// Fuel charged for host work in total.
    pub(crate) host_fuel: u64,
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
            budget: Budget::default(),
            logs_dropped: 0,
            orders: 0,
            host_calls: 0,
            host_fuel: 0,
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
                let d = self.0.data_mut();
                d.host = None;
                d.budget.pulling = false;
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
        self.host_unmetered()
    }

    fn host_unmetered(&mut self) -> wasmtime::Result<&mut dyn StrategyHost> {
        match self.host {
            // SAFETY: see `lend`; the pointer is valid while it is `Some`.
            Some(mut p) => Ok(unsafe { p.as_mut() }),
            None => Err(wasmtime::Error::new(HostAbort(
                "host call outside a call".into(),
            ))),
        }
    }

    /// Count a host call against the per-bar limit and charge its base cost.
    pub(crate) fn count_call(&mut self) -> wasmtime::Result<()> {
        self.call.host_calls += 1;
        self.host_calls += 1;
        if self.call.host_calls > self.limits.host_calls_per_call {
            return Err(wasmtime::Error::new(HostAbort(format!(
                "more than {} host calls in one call",
                self.limits.host_calls_per_call
            ))));
        }
        self.charge(caps::FUEL_PER_HOST_CALL)
    }

    /// Charge `fuel` of host work. Settled exactly against the guest's fuel at the next bar
    /// or the end of the call; here it traps at once when it alone exceeds the armed budget,
    /// so no loop of host calls can outrun the budget between two settlements.
    pub(crate) fn charge(&mut self, fuel: u64) -> wasmtime::Result<()> {
        self.call.host_fuel = self.call.host_fuel.saturating_add(fuel);
        self.host_fuel = self.host_fuel.saturating_add(fuel);
        if self.call.host_fuel > self.budget.armed {
            return Err(wasmtime::Error::new(HostFuelOut));
        }
        Ok(())
    }

    fn charge_bytes(&mut self, bytes: usize) -> wasmtime::Result<()> {
        self.charge((bytes as u64).saturating_mul(caps::FUEL_PER_BYTE))
    }

    fn order_slot(&mut self) -> wasmtime::Result<()> {
        self.call.orders += 1;
        self.orders += 1;
        self.budget.acted = true;
        if self.call.orders > self.limits.orders_per_call {
            return Err(wasmtime::Error::new(HostAbort(format!(
                "more than {} orders in one call (order spam)",
                self.limits.orders_per_call
            ))));
        }
        self.charge(caps::FUEL_PER_ORDER)
    }

    /// Fuel spent since the budget was last armed, given what is left: the guest's own plus
    /// the host work charged. `Err` when the host work overdraws what the guest left.
    pub(crate) fn settle(&mut self, left: u64) -> Result<u64, HostFuelOut> {
        let owed = std::mem::take(&mut self.call.host_fuel);
        let spent = self.budget.armed.saturating_sub(left).saturating_add(owed);
        self.budget.settled = self.budget.settled.saturating_add(spent);
        self.budget.armed = left;
        if owed > left {
            Err(HostFuelOut)
        } else {
            Ok(spent)
        }
    }

    /// `next-bar`: settle the bar just handled, then hand out the next one with a fresh fuel
    /// budget and deadline, unless the strategy acted on its bar (the host must handle the
    /// order before the next bar exists) or the run is over.
    pub(crate) fn next_bar(
        mut store: StoreContextMut<'_, HostState>,
    ) -> wasmtime::Result<Option<host::BarEvent>> {
        store.data_mut().count_call()?;
        let left = store.get_fuel()?;
        let d = store.data_mut();
        d.settle(left).map_err(wasmtime::Error::new)?;
        if !d.budget.pulling || d.budget.acted {
            d.budget.pulling = false;
            return Ok(None);
        }
        let Some((symbol_id, bar)) = d.host_unmetered()?.next_bar() else {
            d.budget.pulling = false;
            return Ok(None);
        };
        d.budget.handed += 1;
        d.call = CallCounters::default();
        let (fuel, ticks) = (d.budget.per_bar, d.budget.deadline_ticks);
        d.budget.armed = fuel;
        store.set_fuel(fuel)?;
        store.set_epoch_deadline(ticks);
        Ok(Some(host::BarEvent {
            symbol_id,
            bar: convert::bar_to_wit(&bar),
        }))
    }

    fn check_order_strings(order: &types::OrderRequest) -> Result<(), String> {
        caps::check("symbol", &order.symbol, caps::SYMBOL_BYTES)?;
        if let Some(t) = &order.tag {
            caps::check("tag", t, caps::TAG_BYTES)?;
        }
        if let Some(g) = &order.oco_group {
            caps::check("oco-group", g, caps::OCO_GROUP_BYTES)?;
        }
        Ok(())
    }
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: types::LogLevel, message: String) -> wasmtime::Result<()> {
        self.count_call()?;
        self.charge_bytes(message.len())?;
        self.call.log_lines += 1;
        if self.call.log_lines > self.limits.log_lines_per_call {
            self.logs_dropped += 1;
            return Ok(());
        }
        let message = caps::cut(message, self.limits.log_line_bytes);
        self.host_unmetered()?
            .log(convert::log_level(level), &message);
        Ok(())
    }

    fn submit_order(
        &mut self,
        order: types::OrderRequest,
    ) -> wasmtime::Result<Result<u64, String>> {
        self.count_call()?;
        self.order_slot()?;
        let bytes = order.symbol.len()
            + order.tag.as_ref().map_or(0, String::len)
            + order.oco_group.as_ref().map_or(0, String::len);
        self.charge_bytes(bytes)?;
        if let Err(e) = Self::check_order_strings(&order) {
            // Refused before anything keeps it: neither the exchange nor an event sees it.
            return Ok(Err(e));
        }
        let order = convert::order_request_from_wit(order);
        Ok(self.host_unmetered()?.submit_order(order))
    }

    fn cancel_order(&mut self, id: u64) -> wasmtime::Result<Result<(), String>> {
        self.count_call()?;
        self.order_slot()?;
        Ok(self.host_unmetered()?.cancel_order(id))
    }

    fn modify_order(
        &mut self,
        id: u64,
        change: types::OrderChange,
    ) -> wasmtime::Result<Result<(), String>> {
        self.count_call()?;
        self.order_slot()?;
        let change = OrderChange {
            quantity: change.quantity,
            limit_price: change.limit_price,
            stop_price: change.stop_price,
        };
        Ok(self.host_unmetered()?.modify_order(id, change))
    }

    fn get_position(&mut self, symbol: String) -> wasmtime::Result<types::Position> {
        self.count_call()?;
        self.charge_bytes(symbol.len())?;
        // An over-long name cannot be a symbol the instance trades: flat, like any unknown one.
        let p = if symbol.len() > caps::SYMBOL_BYTES {
            Position::default()
        } else {
            self.host_unmetered()?.position(&symbol)
        };
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
        let bytes: usize = orders
            .iter()
            .map(|o| {
                o.request.symbol.len()
                    + o.request.tag.as_ref().map_or(0, String::len)
                    + o.request.oco_group.as_ref().map_or(0, String::len)
            })
            .sum();
        self.charge((orders.len() as u64).saturating_mul(caps::FUEL_PER_ELEMENT))?;
        self.charge_bytes(bytes)?;
        Ok(orders.into_iter().map(convert::open_order_to_wit).collect())
    }

    fn param(&mut self, name: String) -> wasmtime::Result<Option<types::ParamValue>> {
        self.count_call()?;
        self.charge_bytes(name.len())?;
        Ok(self
            .params
            .iter()
            .find(|p| p.name == name)
            .map(|p| convert::param_value_to_wit(&p.value)))
    }

    fn get_signal(&mut self, name: String) -> wasmtime::Result<Option<types::Signal>> {
        self.count_call()?;
        self.charge_bytes(name.len())?;
        if name.len() > caps::NAME_BYTES {
            return Ok(None);
        }
        let Some(s) = self.host_unmetered()?.signal(&name) else {
            return Ok(None);
        };
        self.charge_bytes(s.payload.len())?;
        Ok(Some(types::Signal {
            value: s.value,
            ts_ns: s.ts_ns,
            payload: s.payload,
        }))
    }

    fn now_ns(&mut self) -> wasmtime::Result<i64> {
        Ok(self.host()?.now_ns())
    }

    fn recent_bars(
        &mut self,
        symbol: String,
        count: u32,
    ) -> wasmtime::Result<Result<Vec<types::Bar>, String>> {
        self.count_call()?;
        self.charge_bytes(symbol.len())?;
        if count > caps::RECENT_BARS {
            return Ok(Err(format!(
                "count {count} is over the cap of {} bars",
                caps::RECENT_BARS
            )));
        }
        if let Err(e) = caps::check("symbol", &symbol, caps::SYMBOL_BYTES) {
            return Ok(Err(e));
        }
        let bars = match self.host_unmetered()?.recent_bars(&symbol, count) {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        self.charge((bars.len() as u64).saturating_mul(caps::FUEL_PER_ELEMENT))?;
        Ok(Ok(bars.iter().map(convert::bar_to_wit).collect()))
    }

    fn next_bar(&mut self) -> wasmtime::Result<Option<host::BarEvent>> {
        // Shadowed in the linker by `HostState::next_bar`, which needs the store to re-arm
        // the fuel; reaching this means the linker was built without it.
        Err(wasmtime::Error::new(HostAbort(
            "next-bar is not linked with access to the store".into(),
        )))
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
