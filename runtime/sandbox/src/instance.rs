//! A running strategy: its own Store, limits re-armed before every call, accounting, and the
//! hot-swap and clone operations.

use std::sync::Arc;

use serde::Serialize;
use wasmtime::{Store, StoreLimitsBuilder, Trap};

use super::bindings::{Bindings, ContractVersion};
use super::code::StrategyCode;
use super::error::{SandboxError, TrapReason};
use super::host::{Budget, DetachedHost, HostAbort, HostFuelOut, HostState, StrategyHost};
use super::{caps, convert, host::params_to_wit};
use qtm_core::model::{Bar, Fill, Param, Tick};
pub use qtm_core::strategy::InstanceStats;

/// Whether an instance still runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum InstanceStatus {
    Active,
    /// Stopped by a trap or a broken limit; the reason is kept for users.
    Disabled {
        reason: TrapReason,
    },
}

/// The Store, the bindings and the status of one guest; no knowledge of the code it came from.
struct Guest {
    store: Store<HostState>,
    bindings: Bindings,
    status: InstanceStatus,
    stats: InstanceStats,
}

impl Guest {
    fn new(code: &StrategyCode) -> Result<Self, SandboxError> {
        let limits = code.config.limits.clone();
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(limits.memory_bytes)
            .table_elements(limits.table_elements)
            .instances(limits.instances)
            .tables(limits.tables)
            .memories(limits.memories)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(&code.engine, HostState::new(limits, store_limits));
        store.limiter(|s| &mut s.store_limits);
        store.epoch_deadline_trap();
        // Instantiation runs guest start code, so it gets a budget like any call.
        store
            .set_fuel(code.config.limits.fuel_per_call)
            .map_err(|e| SandboxError::Instantiate(format!("{e:#}")))?;
        store.data_mut().budget.armed = code.config.limits.fuel_per_call;
        store.set_epoch_deadline(deadline_ticks(code));
        let bindings = code
            .pre
            .instantiate(&mut store)
            .map_err(|e| SandboxError::Instantiate(format!("{e:#}")))?;
        Ok(Self {
            store,
            bindings,
            status: InstanceStatus::Active,
            stats: InstanceStats::default(),
        })
    }
}

fn deadline_ticks(code: &StrategyCode) -> u64 {
    let tick = code.config.epoch_tick.as_nanos().max(1);
    (code.config.limits.deadline.as_nanos() / tick).max(1) as u64
}

/// One sandboxed strategy instance: the safe handle the rest of the host uses.
pub struct StrategyInstance {
    code: Arc<StrategyCode>,
    guest: Guest,
    params: Vec<Param>,
    symbols: Vec<String>,
}

impl std::fmt::Debug for StrategyInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrategyInstance")
            .field("code", &self.code.sha256())
            .field("status", &self.guest.status)
            .finish_non_exhaustive()
    }
}

impl StrategyInstance {
    /// An unconfigured instance for `describe` (no Arc exists yet at load time).
    pub(super) fn bare(code: &StrategyCode) -> Result<BareInstance, SandboxError> {
        Ok(BareInstance {
            guest: Guest::new(code)?,
            fuel: code.config.limits.fuel_per_call,
        })
    }

    pub(super) fn configured(
        code: Arc<StrategyCode>,
        params: Vec<Param>,
        symbols: Vec<String>,
    ) -> Result<Self, SandboxError> {
        let guest = Guest::new(&code)?;
        let mut inst = Self {
            code,
            guest,
            params,
            symbols,
        };
        inst.guest.store.data_mut().params = inst.params.clone();
        let (wparams, wsymbols) = (params_to_wit(&inst.params), inst.symbols.clone());
        let fuel = inst.code.config.limits.fuel_per_call;
        inst.call(&mut DetachedHost, fuel, 0, |b, s| {
            b.configure(s, &wparams, &wsymbols)
        })?
        .map_err(|e| SandboxError::Configure(caps::cut(e, caps::ERROR_BYTES)))?;
        Ok(inst)
    }

    /// The code this instance runs.
    pub fn code(&self) -> &Arc<StrategyCode> {
        &self.code
    }
    /// Its validated parameters (defaults filled in).
    pub fn params(&self) -> &[Param] {
        &self.params
    }
    /// Its symbols; a symbol id indexes this list.
    pub fn symbols(&self) -> &[String] {
        &self.symbols
    }
    /// Active, or disabled with the reason.
    pub fn status(&self) -> &InstanceStatus {
        &self.guest.status
    }
    /// Whether the instance still runs.
    pub fn is_active(&self) -> bool {
        self.guest.status == InstanceStatus::Active
    }
    /// Accounting so far.
    pub fn stats(&self) -> InstanceStats {
        let mut s = self.guest.stats.clone();
        s.wall_ns = clock().delta_as_nanos(0, s.wall_ticks);
        let d = self.guest.store.data();
        s.host_calls = d.host_calls;
        s.orders = d.orders;
        s.logs_dropped = d.logs_dropped;
        s.host_fuel = d.host_fuel;
        s
    }

    /// The contract version the code was built for.
    pub fn contract_version(&self) -> ContractVersion {
        self.code.contract_version()
    }

    /// Whether the code pulls bars (`on-bars`, contract 0.2.0 and later); older code is
    /// handed one bar per call.
    pub fn pulls_bars(&self) -> bool {
        self.contract_version() >= ContractVersion::V0_2
    }

    /// Run one guest call under fresh limits; a trap disables the instance.
    fn call<R>(
        &mut self,
        host: &mut dyn StrategyHost,
        fuel: u64,
        bars: u64,
        f: impl FnOnce(&Bindings, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, SandboxError> {
        call_guest(&mut self.guest, &self.code, host, fuel, bars, false, f)
    }

    /// Deliver one bar of symbol `symbol_id`.
    pub fn on_bar(
        &mut self,
        host: &mut dyn StrategyHost,
        symbol_id: u32,
        bar: &Bar,
    ) -> Result<(), SandboxError> {
        let b = convert::bar_to_wit(bar);
        let fuel = self.code.config.limits.fuel_per_call;
        self.call(host, fuel, 1, |g, s| g.on_bar(s, symbol_id, b))
    }

    /// Deliver one tick of symbol `symbol_id`.
    pub fn on_tick(
        &mut self,
        host: &mut dyn StrategyHost,
        symbol_id: u32,
        tick: &Tick,
    ) -> Result<(), SandboxError> {
        let t = convert::tick_to_wit(symbol_id, tick);
        let fuel = self.code.config.limits.fuel_per_call;
        self.call(host, fuel, 0, |g, s| g.on_tick(s, t))
    }

    /// Report a fill of one of the instance's orders in symbol `symbol_id`.
    pub fn on_fill(
        &mut self,
        host: &mut dyn StrategyHost,
        symbol_id: u32,
        fill: &Fill,
    ) -> Result<(), SandboxError> {
        let f = convert::fill_to_wit(symbol_id, fill);
        let fuel = self.code.config.limits.fuel_per_call;
        self.call(host, fuel, 0, |g, s| g.on_fill(s, &f))
    }

    /// Fire the instance's timer.
    pub fn on_timer(
        &mut self,
        host: &mut dyn StrategyHost,
        now_ns: i64,
    ) -> Result<(), SandboxError> {
        let fuel = self.code.config.limits.fuel_per_call;
        self.call(host, fuel, 0, |g, s| g.on_timer(s, now_ns))
    }

    /// Let the strategy pull bars (`on-bars`): each [`StrategyHost::next_bar`] is handed to it
    /// with a fresh budget, until the host has no more or the strategy places an order on the
    /// bar it holds. Returns how many bars it was handed. Refused for code that cannot pull
    /// (see [`StrategyInstance::pulls_bars`]).
    pub fn on_bars(&mut self, host: &mut dyn StrategyHost) -> Result<u64, SandboxError> {
        if !self.pulls_bars() {
            return Err(SandboxError::Unsupported(format!(
                "on-bars needs contract 0.2.0; this code was built for {}",
                self.contract_version()
            )));
        }
        let fuel = self.code.config.limits.fuel_per_call;
        let Self { guest, code, .. } = self;
        call_guest(guest, code, host, fuel, 0, true, |g, s| {
            g.on_bars(s).unwrap_or(Ok(()))?;
            Ok(s.data().budget.handed)
        })
    }

    /// The guest's state, for a hot swap or persistence. Refused (without disabling the
    /// instance) when it exceeds the snapshot cap.
    pub fn snapshot(&mut self) -> Result<Vec<u8>, SandboxError> {
        let fuel = self.code.config.limits.fuel_per_call;
        let state = self.call(&mut DetachedHost, fuel, 0, |g, s| g.snapshot(s))?;
        let cap = self.code.config.limits.snapshot_bytes;
        if state.len() > cap {
            return Err(SandboxError::Snapshot(format!(
                "snapshot of {} bytes exceeds the {cap} byte limit",
                state.len()
            )));
        }
        Ok(state)
    }

    /// Take over state written by `snapshot` (possibly by another version of the code).
    pub fn restore(&mut self, state: &[u8]) -> Result<(), SandboxError> {
        let fuel = self.code.config.limits.fuel_per_call;
        self.call(&mut DetachedHost, fuel, 0, |g, s| g.restore(s, state))?
            .map_err(|e| SandboxError::Restore(caps::cut(e, caps::ERROR_BYTES)))
    }

    /// Build an instance of `code` with this instance's parameters and symbols, ready to be
    /// swapped in. This is the slow part of a swap (instantiate + configure) and may run on
    /// another thread; the running instance is untouched.
    pub fn prepare_swap(&self, code: &Arc<StrategyCode>) -> Result<StrategyInstance, SandboxError> {
        code.instantiate(&self.params, &self.symbols)
    }

    /// Replace this instance's code between two events: snapshot → restore into `next` → swap.
    /// The guest holds no bars between calls, so nothing else moves. On failure nothing
    /// changes and the old code keeps running. Returns the old instance (drop it off the hot
    /// path).
    pub fn swap(&mut self, mut next: StrategyInstance) -> Result<StrategyInstance, SandboxError> {
        let state = self.snapshot()?;
        next.restore(&state)?;
        std::mem::swap(self, &mut next);
        Ok(next)
    }

    /// A new instance of the same code with other parameters (or the same, when `None`),
    /// starting fresh or from this instance's state.
    pub fn clone_with(
        &mut self,
        params: Option<&[Param]>,
        with_state: bool,
    ) -> Result<StrategyInstance, SandboxError> {
        let params = params.unwrap_or(&self.params).to_vec();
        let mut copy = self.code.instantiate(&params, &self.symbols)?;
        if with_state {
            let state = self.snapshot()?;
            copy.restore(&state)?;
        }
        Ok(copy)
    }
}

/// An instance used only to call `describe` while code is being loaded.
pub(super) struct BareInstance {
    guest: Guest,
    fuel: u64,
}

impl BareInstance {
    pub(super) fn call<R>(
        &mut self,
        host: &mut dyn StrategyHost,
        bars: u64,
        f: impl FnOnce(&Bindings, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, SandboxError> {
        let fuel = self.fuel;
        let ticks = 1_000; // describe runs once, at load; a generous fixed deadline
        run(&mut self.guest, host, fuel, ticks, 1, bars, false, f)
    }
}

fn call_guest<R>(
    guest: &mut Guest,
    code: &StrategyCode,
    host: &mut dyn StrategyHost,
    fuel: u64,
    bars: u64,
    pull: bool,
    f: impl FnOnce(&Bindings, &mut Store<HostState>) -> wasmtime::Result<R>,
) -> Result<R, SandboxError> {
    let tick_ms = code.config.epoch_tick.as_millis().max(1) as u64;
    run(
        guest,
        host,
        fuel,
        deadline_ticks(code),
        tick_ms,
        bars,
        pull,
        f,
    )
}

/// One guest call. `fuel` and `ticks` are armed for the call and, when it pulls bars
/// (`pull`), re-armed for every bar it is handed; the host work charged meanwhile is settled
/// against them.
#[allow(clippy::too_many_arguments)]
fn run<R>(
    guest: &mut Guest,
    host: &mut dyn StrategyHost,
    fuel: u64,
    ticks: u64,
    tick_ms: u64,
    bars: u64,
    pull: bool,
    f: impl FnOnce(&Bindings, &mut Store<HostState>) -> wasmtime::Result<R>,
) -> Result<R, SandboxError> {
    if let InstanceStatus::Disabled { reason } = &guest.status {
        return Err(SandboxError::Disabled(reason.clone()));
    }
    let Guest {
        store,
        bindings,
        status,
        stats,
    } = guest;
    if let Err(e) = store.set_fuel(fuel) {
        return Err(SandboxError::Engine(format!("{e:#}")));
    }
    store.set_epoch_deadline(ticks);
    store.data_mut().budget = Budget {
        armed: fuel,
        per_bar: fuel,
        deadline_ticks: ticks,
        pulling: pull,
        ..Budget::default()
    };
    // Raw TSC ticks, scaled only when stats are read: the vdso clock cost ~14 % of a per-bar
    // call on this VM, and even a scaled TSC read 10 %.
    let started = clock().raw();
    let result = HostState::lend(store, host, |store| f(bindings, store));
    stats.wall_ticks += clock().raw().saturating_sub(started);
    let left = store.get_fuel().unwrap_or(0);
    let overdrawn = store.data_mut().settle(left);
    let budget = store.data().budget;
    stats.last_call_fuel = budget.settled;
    stats.fuel += budget.settled;
    stats.calls += 1;
    stats.bars += bars + budget.handed;
    let result = match (result, overdrawn) {
        (Ok(_), Err(e)) => Err(wasmtime::Error::new(e)),
        (r, _) => r,
    };
    match result {
        Ok(r) => Ok(r),
        Err(e) => {
            let reason = classify(&e, fuel, ticks * tick_ms);
            stats.traps += 1;
            *status = InstanceStatus::Disabled {
                reason: reason.clone(),
            };
            Err(SandboxError::Trapped(reason))
        }
    }
}

/// The process-wide calibrated clock behind wall-time accounting.
fn clock() -> &'static quanta::Clock {
    static CLOCK: std::sync::OnceLock<quanta::Clock> = std::sync::OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

fn classify(e: &wasmtime::Error, fuel: u64, deadline_ms: u64) -> TrapReason {
    if let Some(a) = e.downcast_ref::<HostAbort>() {
        return TrapReason::HostLimit(a.0.clone());
    }
    if e.downcast_ref::<HostFuelOut>().is_some() {
        return TrapReason::OutOfFuel(fuel);
    }
    if let Some(t) = e.downcast_ref::<Trap>() {
        return match t {
            Trap::OutOfFuel => TrapReason::OutOfFuel(fuel),
            Trap::Interrupt => TrapReason::Deadline(deadline_ms),
            Trap::StackOverflow => TrapReason::StackOverflow,
            Trap::UnreachableCodeReached => TrapReason::Panic,
            other => TrapReason::Other(other.to_string()),
        };
    }
    let msg = format!("{e:#}");
    if msg.contains("forcing trap when growing memory") {
        TrapReason::Memory(msg)
    } else if msg.contains("forcing trap when growing table") {
        TrapReason::HostLimit(msg)
    } else {
        TrapReason::Other(msg)
    }
}
