//! The adapter between the contract's exports and a [`Strategy`]. Used by [`export_strategy!`]
//! only; not part of the public API.
//!
//! [`export_strategy!`]: crate::export_strategy

use std::cell::RefCell;

use crate::bindings::qtm::strategy::host;
use crate::bindings::qtm::strategy::types as wit;
use crate::{Bar, Context, Fill, Params, Strategy, Tick};

/// Holds the one strategy value of a component instance.
pub struct RunnerCell<S>(RefCell<Runner<S>>);

// SAFETY: guests are built for wasm32-unknown-unknown without threads, so the cell is only
// ever touched by one thread; the component model forbids re-entering an instance.
unsafe impl<S> Sync for RunnerCell<S> {}

struct Runner<S> {
    strategy: Option<S>,
    ctx: Context,
}

/// The contract's `describe`.
pub fn describe<S: Strategy>() -> wit::StrategyInfo {
    S::info().into_wit()
}

impl<S: Strategy> RunnerCell<S> {
    /// An instance with no strategy yet (before `configure`).
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Self(RefCell::new(Runner {
            strategy: None,
            ctx: Context::empty(),
        }))
    }

    fn with<R>(&self, f: impl FnOnce(&mut S, &mut Context) -> R) -> R {
        let mut r = self.0.borrow_mut();
        let Runner { strategy, ctx, .. } = &mut *r;
        let s = strategy
            .as_mut()
            .expect("the host called the strategy before `configure`");
        f(s, ctx)
    }

    /// The contract's `configure`.
    pub fn configure(&self, params: Vec<wit::Param>, symbols: Vec<String>) -> Result<(), String> {
        let info = S::info();
        let specs: Vec<wit::ParamSpec> = info.params().iter().map(|p| p.spec.clone()).collect();
        let params = Params::resolve(&specs, params)?;
        let strategy = S::new(&params, &symbols)?;
        let mut r = self.0.borrow_mut();
        r.ctx.set_symbols(symbols);
        r.strategy = Some(strategy);
        Ok(())
    }

    /// The contract's `on-bar`.
    pub fn on_bar(&self, symbol_id: u32, bar: Bar) {
        self.with(|s, ctx| s.on_bar(ctx, symbol_id, &bar))
    }

    /// The contract's `on-tick`.
    pub fn on_tick(&self, tick: Tick) {
        self.with(|s, ctx| s.on_tick(ctx, &tick))
    }

    /// The contract's `on-fill`.
    pub fn on_fill(&self, fill: Fill) {
        self.with(|s, ctx| s.on_fill(ctx, &fill))
    }

    /// The contract's `on-timer`.
    pub fn on_timer(&self, now_ns: i64) {
        self.with(|s, ctx| s.on_timer(ctx, now_ns))
    }

    /// The contract's `on-bars`: take bars from the host one at a time until it has none for
    /// now (it answers `none` after a bar on which the strategy acted).
    pub fn on_bars(&self) {
        self.with(|s, ctx| {
            while let Some(event) = host::next_bar() {
                s.on_bar(ctx, event.symbol_id, &event.bar);
            }
        })
    }

    /// The contract's `snapshot`.
    pub fn snapshot(&self) -> Vec<u8> {
        let r = self.0.borrow();
        r.strategy.as_ref().map(S::snapshot).unwrap_or_default()
    }

    /// The contract's `restore`.
    pub fn restore(&self, state: Vec<u8>) -> Result<(), String> {
        let mut r = self.0.borrow_mut();
        match r.strategy.as_mut() {
            Some(s) => s.restore(&state),
            None => Err("restore called before configure".into()),
        }
    }
}
