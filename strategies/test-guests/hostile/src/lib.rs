//! A guest that attacks its host, chosen by the `attack` parameter. It implements the raw
//! contract (not the SDK's `Strategy`) so it can also break the contract's rules, such as
//! returning impossible values.
//!
//! Attacks run on every bar (`on-bar`, and each bar of `resume`) unless noted:
//! - `none`: behaves; counts bars (its snapshot is the count).
//! - `infinite-loop`, `memory-bomb`, `deep-recursion` (wasm stack), `shadow-stack-overflow`
//!   (Rust's stack in linear memory), `panic`.
//! - `order-spam`: submits orders in a loop; `log-spam`: logs 2,000 long lines per bar;
//!   `host-call-loop`: asks for its cash forever.
//! - `huge-snapshot`: behaves, but `snapshot` returns 8 MiB.
//! - `bad-return`: `resume` claims to have handled a million bars.
//! - `burn`: spends `iterations` loop iterations per bar, then behaves.

use std::cell::RefCell;
use std::hint::black_box;

use qtm_guest_sdk::bindings::exports::qtm::strategy::guest::Guest;
use qtm_guest_sdk::bindings::qtm::strategy::host;
use qtm_guest_sdk::bindings::qtm::strategy::types::{self as t, Param, ParamValue, StrategyInfo};
use qtm_guest_sdk::{Bar, Fill, Info, LogLevel, Order, ParamSpec, Quantity, Side, Tick};

#[derive(Default)]
struct State {
    attack: String,
    iterations: i64,
    bars: u64,
    batch: Vec<u8>,
    cursor: usize,
}

struct Cell(RefCell<State>);
// SAFETY: single-threaded wasm guest.
unsafe impl Sync for Cell {}
static STATE: Cell = Cell(RefCell::new(State {
    attack: String::new(),
    iterations: 0,
    bars: 0,
    batch: Vec::new(),
    cursor: 0,
}));

/// Frames live in wasm locals only, so this overflows wasmtime's native stack limit.
#[inline(never)]
fn recurse(n: u64) -> u64 {
    if black_box(n) == u64::MAX {
        0
    } else {
        black_box(recurse(n + 1)).wrapping_add(1)
    }
}

/// Each frame puts an array on Rust's shadow stack in linear memory, which runs out first.
#[inline(never)]
fn recurse_shadow(n: u64) -> u64 {
    let pad = black_box([n; 64]);
    if black_box(n) == u64::MAX {
        0
    } else {
        recurse_shadow(n + 1).wrapping_add(pad[3])
    }
}

fn attack(bar: &Bar) {
    let (attack, iterations) = {
        let mut s = STATE.0.borrow_mut();
        s.bars += 1;
        (s.attack.clone(), s.iterations)
    };
    match attack.as_str() {
        "infinite-loop" => {
            let mut x = 0u64;
            loop {
                x = black_box(x.wrapping_add(1));
            }
        }
        "memory-bomb" => {
            // Reserve without touching, so memory grows faster than fuel runs out.
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut v: Vec<u8> = Vec::with_capacity(16 << 20);
                v.push(1);
                hoard.push(black_box(v));
            }
        }
        "deep-recursion" => {
            black_box(recurse(0));
        }
        "shadow-stack-overflow" => {
            black_box(recurse_shadow(0));
        }
        "panic" => panic!("hostile guest panics on bar {}", bar.ts),
        "order-spam" => loop {
            let o = Order::market("SPY", Side::Buy, Quantity::Units(1.0));
            let _ = host::submit_order(o.request());
        },
        "log-spam" => {
            // Within the fuel budget: the host's log caps, not fuel, must contain this.
            let line = "x".repeat(2048);
            for i in 0..2_000 {
                host::log(LogLevel::Info, &format!("spam {i} {line}"));
            }
        }
        "host-call-loop" => loop {
            black_box(host::cash());
        },
        "burn" => {
            let mut x = 0i64;
            for i in 0..iterations {
                x = black_box(x ^ i);
            }
            black_box(x);
        }
        _ => {}
    }
}

struct Hostile;

impl Guest for Hostile {
    fn describe() -> StrategyInfo {
        qtm_guest_sdk::glue::describe::<Describe>()
    }
    fn configure(params: Vec<Param>, _symbols: Vec<String>) -> Result<(), String> {
        let mut s = STATE.0.borrow_mut();
        s.attack = "none".into();
        for p in params {
            match (p.name.as_str(), p.value) {
                ("attack", ParamValue::Choice(a)) => s.attack = a,
                ("iterations", ParamValue::Int(i)) => s.iterations = i,
                _ => {}
            }
        }
        Ok(())
    }
    fn on_bar(_symbol_id: u32, bar: t::Bar) {
        attack(&bar);
    }
    fn on_tick(_tick: Tick) {}
    fn on_fill(_fill: Fill) {}
    fn on_timer(_now_ns: i64) {}
    fn load_bars(batch: Vec<u8>) {
        let mut s = STATE.0.borrow_mut();
        s.batch = batch;
        s.cursor = 0;
    }
    fn resume() -> u32 {
        let (total, start, bad) = {
            let s = STATE.0.borrow();
            (s.batch.len() / 56, s.cursor, s.attack == "bad-return")
        };
        if bad {
            return 1_000_000;
        }
        for _ in start..total {
            attack(&Bar {
                ts: 0,
                open: 0.0,
                high: 0.0,
                low: 0.0,
                close: 0.0,
                volume: 0.0,
            });
        }
        STATE.0.borrow_mut().cursor = total;
        (total - start) as u32
    }
    fn snapshot() -> Vec<u8> {
        let s = STATE.0.borrow();
        if s.attack == "huge-snapshot" {
            return vec![7u8; 8 << 20];
        }
        s.bars.to_le_bytes().to_vec()
    }
    fn restore(state: Vec<u8>) -> Result<(), String> {
        let bytes: [u8; 8] = state
            .try_into()
            .map_err(|_| "expected 8 bytes".to_string())?;
        STATE.0.borrow_mut().bars = u64::from_le_bytes(bytes);
        Ok(())
    }
}

/// Only its `info` is used: the parameters the host validates.
struct Describe;

impl qtm_guest_sdk::Strategy for Describe {
    fn info() -> Info {
        Info::new("hostile", "1.0.0")
            .description("misbehaves on purpose")
            .param(ParamSpec::choice(
                "attack",
                "none",
                &[
                    "none",
                    "infinite-loop",
                    "memory-bomb",
                    "deep-recursion",
                    "shadow-stack-overflow",
                    "panic",
                    "order-spam",
                    "log-spam",
                    "host-call-loop",
                    "huge-snapshot",
                    "bad-return",
                    "burn",
                ],
            ))
            .param(ParamSpec::int("iterations", 0, 0, i64::MAX, 1))
    }
    fn new(_: &qtm_guest_sdk::Params, _: &[String]) -> Result<Self, String> {
        Ok(Describe)
    }
    fn on_bar(&mut self, _: &mut qtm_guest_sdk::Context, _: u32, _: &Bar) {}
}

qtm_guest_sdk::bindings::__export_bindings!(Hostile with_types_in qtm_guest_sdk::bindings);
