//! # qtm guest SDK
//!
//! Write a trading strategy in Rust and build it into a sandboxed WebAssembly component that the
//! qtm host runs under a fuel budget, a memory cap and a wall-clock deadline.
//!
//! A strategy implements [`Strategy`] and is exported with [`export_strategy!`]. The SDK hides
//! the contract's plumbing: pulling bars (one call takes thousands of bars, one at a time from
//! the host, and ends right after the first bar on which you act, so fills still happen before
//! the next bar exists), parameter validation, and snapshot/restore for hot swaps.
//!
//! ## A complete strategy
//!
//! ```
//! use qtm_guest_sdk::prelude::*;
//!
//! /// Buys when the close rises above its 20-bar mean, sells when it falls back under it.
//! pub struct MeanCross {
//!     mean: Sma,
//!     quantity: f64,
//!     long: bool,
//! }
//!
//! impl Strategy for MeanCross {
//!     fn info() -> Info {
//!         Info::new("mean-cross", "1.0.0")
//!             .description("Long above the rolling mean, flat below it")
//!             .symbols(&["SPY"])
//!             .param(ParamSpec::int("period", 20, 2, 500, 1).describe("bars in the mean"))
//!             .param(ParamSpec::float("quantity", 10.0, 1.0, 1000.0, 1.0))
//!     }
//!
//!     fn new(params: &Params, _symbols: &[String]) -> Result<Self, String> {
//!         Ok(Self {
//!             mean: Sma::new(params.int("period")? as usize),
//!             quantity: params.float("quantity")?,
//!             long: false,
//!         })
//!     }
//!
//!     fn on_bar(&mut self, ctx: &mut Context, symbol: SymbolId, bar: &Bar) {
//!         let Some(mean) = self.mean.update(bar.close) else { return };
//!         let name = ctx.symbol(symbol).to_string();
//!         if bar.close > mean && !self.long {
//!             self.long = ctx.submit(Order::market(&name, Side::Buy, Quantity::Units(self.quantity))).is_ok();
//!         } else if bar.close < mean && self.long {
//!             self.long = ctx.submit(Order::market(&name, Side::Sell, Quantity::Units(self.quantity))).is_err();
//!         }
//!     }
//!
//!     fn snapshot(&self) -> Vec<u8> {
//!         let mut w = StateWriter::new();
//!         self.mean.save(&mut w);
//!         w.bool(self.long);
//!         w.finish()
//!     }
//!
//!     fn restore(&mut self, state: &[u8]) -> Result<(), String> {
//!         let mut r = StateReader::new(state);
//!         self.mean.load(&mut r)?;
//!         self.long = r.bool()?;
//!         Ok(r.expect_end()?)
//!     }
//! }
//!
//! qtm_guest_sdk::export_strategy!(MeanCross);
//! # fn main() {}
//! ```
//!
//! Build it with `qtm strategy build <crate-dir>` (or `cargo build --release --target
//! wasm32-unknown-unknown` followed by `qtm strategy componentize`), then inspect it with
//! `qtm strategy inspect <file.wasm>`.

extern crate self as qtm_guest_sdk;

pub mod context;
#[doc(hidden)]
pub mod glue;
pub mod indicators;
pub mod info;
pub mod order;
pub mod params;
pub mod state;

/// Bindings generated from `wit/since_v0.2.0/strategy.wit`; the SDK's own types wrap most of
/// them.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/since_v0.2.0",
        world: "strategy",
        pub_export_macro: true,
        export_macro_name: "__export_bindings",
        default_bindings_module: "qtm_guest_sdk::bindings",
        runtime_path: "qtm_guest_sdk::__wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

pub use bindings::qtm::strategy::types::{
    Bar, Fill, LogLevel, OpenOrder, OrderChange, OrderKind, OrderRequest, OrderStatus, ParamValue,
    Position, Quantity, Side, Signal, StopLimit, Tick, TimeInForce, Trail,
};
pub use context::Context;
pub use info::{Info, ParamSpec};
pub use order::Order;
pub use params::Params;

/// The contract this SDK implements; the host refuses components built for another one.
pub const CONTRACT: &str = "qtm:strategy@0.2.0";

/// Name of the custom section in which [`export_strategy!`] leaves hints for the host: lines of
/// `key=value`. They are optimizations only; a host that ignores them behaves the same, and a
/// component without them gets every call. Today: `on-fill=0` when the strategy ignores fills
/// ([`Strategy::HANDLES_FILLS`]).
pub const HINTS_SECTION: &str = "qtm:hints";

/// Index of a symbol in the list the instance was configured with (see [`Context::symbol`]).
pub type SymbolId = u32;

/// A trading strategy. One value of this type lives inside each sandboxed instance.
///
/// Only [`Strategy::info`], [`Strategy::new`] and [`Strategy::on_bar`] are required. Implement
/// [`Strategy::snapshot`] and [`Strategy::restore`] to keep state across a hot swap; without
/// them a swapped-in version starts fresh.
pub trait Strategy: Sized + 'static {
    /// Name, version, default symbols and typed parameters (the evolution engine's genes).
    fn info() -> Info;
    /// Build the strategy from validated parameters (defaults filled in) and its symbols.
    fn new(params: &Params, symbols: &[String]) -> Result<Self, String>;
    /// Handle one bar. Orders submitted here are first eligible on the symbol's next bar.
    fn on_bar(&mut self, ctx: &mut Context, symbol: SymbolId, bar: &Bar);
    /// Handle one tick (live feeds that deliver trades or quotes).
    fn on_tick(&mut self, _ctx: &mut Context, _tick: &Tick) {}
    /// One of this strategy's orders was (partly) filled.
    fn on_fill(&mut self, _ctx: &mut Context, _fill: &Fill) {}
    /// Whether [`Strategy::on_fill`] does anything. Set it to `false` when it does not: the
    /// host then never calls `on-fill`, which saves a sandbox round trip per fill. Fills still
    /// happen and [`Context::position`] still sees them.
    const HANDLES_FILLS: bool = true;
    /// A timer the host fires on its own schedule (live trading).
    fn on_timer(&mut self, _ctx: &mut Context, _now_ns: i64) {}
    /// State to carry into the next version of the code.
    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }
    /// Take over state written by [`Strategy::snapshot`] (possibly by an older version).
    fn restore(&mut self, _state: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

/// The names most strategies need, in one import.
pub mod prelude {
    pub use crate::indicators::*;
    pub use crate::state::{Snapshot, StateReader, StateWriter};
    pub use crate::{
        Bar, Context, Fill, Info, LogLevel, Order, OrderKind, ParamSpec, ParamValue, Params,
        Quantity, Side, Strategy, SymbolId, Tick, TimeInForce, Trail,
    };
}

/// Export a [`Strategy`] type as the component's implementation of the contract.
///
/// Use it once per strategy crate, at the crate root.
#[macro_export]
macro_rules! export_strategy {
    ($ty:ty) => {
        #[doc(hidden)]
        static __QTM_RUNNER: $crate::glue::RunnerCell<$ty> = $crate::glue::RunnerCell::new();

        #[doc(hidden)]
        pub struct __QtmExport;

        impl $crate::bindings::exports::qtm::strategy::guest::Guest for __QtmExport {
            fn describe() -> $crate::bindings::qtm::strategy::types::StrategyInfo {
                $crate::glue::describe::<$ty>()
            }
            fn configure(
                params: ::std::vec::Vec<$crate::bindings::qtm::strategy::types::Param>,
                symbols: ::std::vec::Vec<::std::string::String>,
            ) -> ::std::result::Result<(), ::std::string::String> {
                __QTM_RUNNER.configure(params, symbols)
            }
            fn on_bar(symbol_id: u32, bar: $crate::Bar) {
                __QTM_RUNNER.on_bar(symbol_id, bar)
            }
            fn on_tick(tick: $crate::Tick) {
                __QTM_RUNNER.on_tick(tick)
            }
            fn on_fill(fill: $crate::Fill) {
                __QTM_RUNNER.on_fill(fill)
            }
            fn on_timer(now_ns: i64) {
                __QTM_RUNNER.on_timer(now_ns)
            }
            fn on_bars() {
                __QTM_RUNNER.on_bars()
            }
            fn snapshot() -> ::std::vec::Vec<u8> {
                __QTM_RUNNER.snapshot()
            }
            fn restore(state: ::std::vec::Vec<u8>) -> ::std::result::Result<(), ::std::string::String> {
                __QTM_RUNNER.restore(state)
            }
        }

        // Hints for the host, read from the binary before anything runs (see `HINTS_SECTION`).
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[used]
        #[unsafe(link_section = "qtm:hints")]
        static __QTM_HINTS: [u8; 10] = if <$ty as $crate::Strategy>::HANDLES_FILLS {
            *b"on-fill=1\n"
        } else {
            *b"on-fill=0\n"
        };

        $crate::bindings::__export_bindings!(__QtmExport with_types_in $crate::bindings);
    };
}
