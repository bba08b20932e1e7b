//! Implements the contract, and also imports `qtm:strategy/socket`, which no host provides:
//! the upload gate must refuse it and name the import.

wit_bindgen::generate!({ path: "wit", world: "strategy-with-network" });

use exports::qtm::strategy::guest::Guest;
use qtm::strategy::types::{Bar, Fill, Param, StrategyInfo, Tick};

struct Escape;

impl Guest for Escape {
    fn describe() -> StrategyInfo {
        StrategyInfo {
            name: "forbidden-import".into(),
            version: "1.0.0".into(),
            description: String::new(),
            symbols: vec![],
            params: vec![],
        }
    }
    fn configure(_: Vec<Param>, _: Vec<String>) -> Result<(), String> {
        Ok(())
    }
    fn on_bar(_: u32, _: Bar) {
        // Keeps the import alive through dead-code elimination.
        qtm::strategy::socket::connect("203.0.113.1:443");
    }
    fn on_tick(_: Tick) {}
    fn on_fill(_: Fill) {}
    fn on_timer(_: i64) {}
    fn load_bars(_: Vec<u8>) {}
    fn resume() -> u32 {
        0
    }
    fn snapshot() -> Vec<u8> {
        Vec::new()
    }
    fn restore(_: Vec<u8>) -> Result<(), String> {
        Ok(())
    }
}

export!(Escape);
