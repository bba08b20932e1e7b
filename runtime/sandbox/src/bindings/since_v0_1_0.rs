//! `qtm:strategy@0.1.0`, frozen in `wit/since_v0.1.0/`. Its `types` are the latest's (the
//! interface has not changed), so only its `host` differs:
//! - `recent-bars` cannot return an error, so a count over the cap traps instead of being
//!   clamped;
//! - `at-bar` existed for push batches. This host never pushes batches to 0.1.0 guests (one
//!   call per bar, where no look-ahead is possible), so the only valid index is 0, the bar
//!   being handled; any other traps.

use wasmtime::component::Linker;

use super::latest::qtm::strategy::host as latest;
use super::latest::qtm::strategy::types::{
    Bar, LogLevel, OpenOrder, OrderChange, OrderRequest, ParamValue, Position, Signal,
};
use crate::host::{HostAbort, HostState};

wasmtime::component::bindgen!({
    path: "../../wit/since_v0.1.0",
    world: "strategy",
    imports: { default: trappable },
    with: { "qtm:strategy/types": super::latest::qtm::strategy::types },
});

/// Add this version's imports (its `types` instance carries no functions).
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    qtm::strategy::host::add_to_linker::<_, wasmtime::component::HasSelf<HostState>>(
        linker,
        |s| s,
    )?;
    linker.instance("qtm:strategy/types@0.1.0")?;
    Ok(())
}

impl qtm::strategy::host::Host for HostState {
    fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        latest::Host::log(self, level, message)
    }
    fn submit_order(&mut self, order: OrderRequest) -> wasmtime::Result<Result<u64, String>> {
        latest::Host::submit_order(self, order)
    }
    fn cancel_order(&mut self, id: u64) -> wasmtime::Result<Result<(), String>> {
        latest::Host::cancel_order(self, id)
    }
    fn modify_order(
        &mut self,
        id: u64,
        change: OrderChange,
    ) -> wasmtime::Result<Result<(), String>> {
        latest::Host::modify_order(self, id, change)
    }
    fn get_position(&mut self, symbol: String) -> wasmtime::Result<Position> {
        latest::Host::get_position(self, symbol)
    }
    fn cash(&mut self) -> wasmtime::Result<f64> {
        latest::Host::cash(self)
    }
    fn equity(&mut self) -> wasmtime::Result<f64> {
        latest::Host::equity(self)
    }
    fn open_orders(&mut self) -> wasmtime::Result<Vec<OpenOrder>> {
        latest::Host::open_orders(self)
    }
    fn param(&mut self, name: String) -> wasmtime::Result<Option<ParamValue>> {
        latest::Host::param(self, name)
    }
    fn get_signal(&mut self, name: String) -> wasmtime::Result<Option<Signal>> {
        latest::Host::get_signal(self, name)
    }
    fn now_ns(&mut self) -> wasmtime::Result<i64> {
        latest::Host::now_ns(self)
    }
    fn recent_bars(&mut self, symbol: String, count: u32) -> wasmtime::Result<Vec<Bar>> {
        match latest::Host::recent_bars(self, symbol, count)? {
            Ok(bars) => Ok(bars),
            Err(reason) if reason.contains("cap") => Err(wasmtime::Error::new(HostAbort(format!(
                "recent-bars: {reason}"
            )))),
            // 0.1.0 answered an unknown symbol with no bars.
            Err(_) => Ok(Vec::new()),
        }
    }
    fn at_bar(&mut self, index: u32) -> wasmtime::Result<()> {
        self.count_call()?;
        if index == 0 {
            return Ok(());
        }
        Err(wasmtime::Error::new(HostAbort(format!(
            "at-bar({index}) is past the current bar: this host hands qtm:strategy@0.1.0 \
             strategies one bar per call, so the only bar is 0"
        ))))
    }
}
