//! A strategy built from the frozen `wit/since_v0.1.0` contract, as a component of the first
//! release was, without the SDK. It must keep loading and running unchanged on every later
//! host. Its rule is `peek`'s (the hostile guest) without a future to peek at: a market order
//! of 1 unit in the direction of each bar's change of close, so the two must trade alike.
//!
//! It also checks the host's promises to 0.1.0 code: bars arrive one call at a time (never a
//! `load-bars` batch), and `recent-bars` and `now-ns` end at the bar being handled.

wit_bindgen::generate!({ path: "../../../wit/since_v0.1.0", world: "strategy" });

use std::cell::RefCell;

use exports::qtm::strategy::guest::Guest;
use qtm::strategy::host;
use qtm::strategy::types::{
    Bar, Fill, OrderKind, OrderRequest, Param, Quantity, Side, StrategyInfo, Tick, TimeInForce,
};

#[derive(Default)]
struct State {
    symbol: String,
    last_close: Option<f64>,
    bars: u64,
}

struct Cell(RefCell<State>);
// SAFETY: single-threaded wasm guest.
unsafe impl Sync for Cell {}
static STATE: Cell = Cell(RefCell::new(State {
    symbol: String::new(),
    last_close: None,
    bars: 0,
}));

struct V0_1;

impl Guest for V0_1 {
    fn describe() -> StrategyInfo {
        StrategyInfo {
            name: "contract-v0-1".into(),
            version: "1.0.0".into(),
            description: "built for qtm:strategy@0.1.0".into(),
            symbols: vec![],
            params: vec![],
        }
    }
    fn configure(_: Vec<Param>, symbols: Vec<String>) -> Result<(), String> {
        STATE.0.borrow_mut().symbol = symbols.first().cloned().unwrap_or_default();
        Ok(())
    }
    fn on_bar(_symbol_id: u32, bar: Bar) {
        // The 0.1.0 SDK told the host its place in a batch; outside one, 0 is the bar itself.
        host::at_bar(0);
        let symbol = STATE.0.borrow().symbol.clone();
        let seen = host::recent_bars(&symbol, 10_000);
        if seen.last().map(|b| b.ts) != Some(bar.ts) || host::now_ns() != bar.ts * 1_000_000_000
        {
            panic!("the host answered with a bar other than the one being handled");
        }
        let last = STATE.0.borrow_mut().last_close.replace(bar.close);
        STATE.0.borrow_mut().bars += 1;
        let Some(last) = last else { return };
        let change = bar.close - last;
        if change == 0.0 || !change.is_finite() {
            return;
        }
        let _ = host::submit_order(&OrderRequest {
            symbol,
            side: if change > 0.0 { Side::Buy } else { Side::Sell },
            quantity: Quantity::Units(1.0),
            kind: OrderKind::Market,
            time_in_force: TimeInForce::Gtc,
            take_profit: None,
            stop_loss: None,
            oco_group: None,
            tag: None,
        });
    }
    fn on_tick(_: Tick) {}
    fn on_fill(_: Fill) {}
    fn on_timer(_: i64) {}
    fn load_bars(_: Vec<u8>) {
        panic!("a host must not push batches to a 0.1.0 strategy: they expose future bars");
    }
    fn resume() -> u32 {
        panic!("a host must not push batches to a 0.1.0 strategy: they expose future bars");
    }
    fn snapshot() -> Vec<u8> {
        STATE.0.borrow().bars.to_le_bytes().to_vec()
    }
    fn restore(state: Vec<u8>) -> Result<(), String> {
        let bytes: [u8; 8] = state
            .try_into()
            .map_err(|_| "expected 8 bytes".to_string())?;
        STATE.0.borrow_mut().bars = u64::from_le_bytes(bytes);
        Ok(())
    }
}

export!(V0_1);
