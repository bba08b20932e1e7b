//! The adapter between the contract's exports and a [`Strategy`]. Used by [`export_strategy!`]
//! only; not part of the public API.
//!
//! [`export_strategy!`]: crate::export_strategy

use std::cell::RefCell;

use crate::bindings::qtm::strategy::types as wit;
use crate::{Bar, Context, Fill, Params, Strategy, Tick};

/// Bytes per bar in a `load-bars` batch: 7 little-endian f64.
pub const BAR_BYTES: usize = 56;

/// Holds the one strategy value of a component instance.
pub struct RunnerCell<S>(RefCell<Runner<S>>);

// SAFETY: guests are built for wasm32-unknown-unknown without threads, so the cell is only
// ever touched by one thread; the component model forbids re-entering an instance.
unsafe impl<S> Sync for RunnerCell<S> {}

struct Runner<S> {
    strategy: Option<S>,
    ctx: Context,
    batch: Vec<u8>,
    cursor: usize,
}

/// The contract's `describe`.
pub fn describe<S: Strategy>() -> wit::StrategyInfo {
    S::info().into_wit()
}

// A fixed-size record, so the field reads need no bounds checks.
#[inline(always)]
fn decode(chunk: &[u8; BAR_BYTES]) -> (u32, Bar) {
    let f = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&chunk[i * 8..i * 8 + 8]);
        f64::from_le_bytes(b)
    };
    let bar = Bar {
        ts: f(1) as i64,
        open: f(2),
        high: f(3),
        low: f(4),
        close: f(5),
        volume: f(6),
    };
    (f(0) as u32, bar)
}

impl<S: Strategy> RunnerCell<S> {
    /// An instance with no strategy yet (before `configure`).
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Self(RefCell::new(Runner {
            strategy: None,
            ctx: Context::empty(),
            batch: Vec::new(),
            cursor: 0,
        }))
    }

    fn with<R>(&self, f: impl FnOnce(&mut S, &mut Context) -> R) -> R {
        let mut r = self.0.borrow_mut();
        let Runner { strategy, ctx, .. } = &mut *r;
        ctx.acted = false;
        ctx.batch_index = None;
        ctx.synced_index = None;
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

    /// The contract's `load-bars`: keep the batch, start at its first bar.
    pub fn load_bars(&self, batch: Vec<u8>) {
        let mut r = self.0.borrow_mut();
        r.batch = batch;
        r.cursor = 0;
    }

    /// The contract's `resume`: handle bars until the first one the strategy acted on.
    pub fn resume(&self) -> u32 {
        let mut r = self.0.borrow_mut();
        let Runner {
            strategy,
            ctx,
            batch,
            cursor,
        } = &mut *r;
        let s = strategy
            .as_mut()
            .expect("the host called the strategy before `configure`");
        let start = *cursor;
        ctx.acted = false;
        ctx.synced_index = None;
        let rest = batch.get(start * BAR_BYTES..).unwrap_or_default();
        for chunk in rest.chunks_exact(BAR_BYTES) {
            let Ok(chunk) = chunk.try_into() else { break };
            let (symbol_id, bar) = decode(chunk);
            ctx.batch_index = Some(*cursor as u32);
            s.on_bar(ctx, symbol_id, &bar);
            *cursor += 1;
            if ctx.acted {
                break;
            }
        }
        ctx.batch_index = None;
        (*cursor - start) as u32
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_flat_bar_layout() {
        let vals = [2.0, 1_300_000_000.0, 1.0, 2.0, 0.5, 1.5, 1000.0];
        let bytes: Vec<u8> = vals.iter().flat_map(|v: &f64| v.to_le_bytes()).collect();
        let (id, bar) = decode(bytes.as_slice().try_into().unwrap());
        assert_eq!(id, 2);
        assert_eq!(
            (bar.ts, bar.open, bar.high, bar.low, bar.close, bar.volume),
            (1_300_000_000, 1.0, 2.0, 0.5, 1.5, 1000.0)
        );
    }
}
