//! A guest that attacks its host, chosen by the `attack` parameter. It implements the raw
//! contract (not the SDK's `Strategy`) so it can also break the contract's rules.
//!
//! Attacks run on every bar (`on-bar`, and each bar pulled in `on-bars`) unless noted:
//! - `none`: behaves; counts bars (its snapshot is the count).
//! - `infinite-loop`, `memory-bomb`, `deep-recursion` (wasm stack), `shadow-stack-overflow`
//!   (Rust's stack in linear memory), `panic`.
//! - `order-spam`: submits orders in a loop; `log-spam`: logs 2,000 long lines per bar;
//!   `host-call-loop`: asks for its cash forever.
//! - `huge-snapshot`: behaves, but `snapshot` returns 8 MiB.
//! - `burn`: spends `iterations` loop iterations per bar, then behaves (the slow burn under
//!   every per-call limit).
//! - `peek`: trades 1 unit in the direction of each bar's change of close, and looks for the
//!   future everywhere it can: `recent-bars` with every count and `now-ns` (a bar after the
//!   current one there is traded on at once, as a cheat would), and, when it did not trade,
//!   one more `next-bar` to decide the next bar's trade early. Without look-ahead every
//!   decision uses the same bars in every mode, so pulled and per-bar runs trade alike.
//! - `resting-flood`: places `iterations` (default 900) far-from-market limit orders on every
//!   bar, under the per-call order limit, so they pile up.
//! - `huge-strings`: orders with a 1 MiB tag, symbol and OCO group, and a 1 MiB position query.
//! - `oco-flood`: puts 100 far orders in one OCO group.
//! - `huge-configure-error`: `configure` fails with a 4 MiB message.

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
    symbol: String,
    last_close: f64,
    /// `peek`: the future bar it pulled ahead, held for the next turn of the pull loop.
    ahead: Option<(u32, t::Bar)>,
}

struct Cell(RefCell<State>);
// SAFETY: single-threaded wasm guest.
unsafe impl Sync for Cell {}
static STATE: Cell = Cell(RefCell::new(State {
    attack: String::new(),
    iterations: 0,
    bars: 0,
    symbol: String::new(),
    last_close: f64::NAN,
    ahead: None,
}));

const MIB: usize = 1 << 20;

fn far_limit(symbol: &str, price: f64, group: Option<String>) -> t::OrderRequest {
    let mut o = Order::market(symbol, Side::Buy, Quantity::Units(1.0)).into_request();
    o.kind = t::OrderKind::Limit((price * 0.01).max(0.01));
    o.oco_group = group;
    o
}

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

/// `peek`'s trade for a change of close; `true` when it placed one.
fn trade_on(symbol: &str, change: f64) -> bool {
    if !change.is_finite() || change == 0.0 {
        return false;
    }
    let side = if change > 0.0 { Side::Buy } else { Side::Sell };
    let o = Order::market(symbol, side, Quantity::Units(1.0)).into_request();
    let _ = host::submit_order(&o);
    true
}

/// `peek` on `bar`; `decided` when its trade was already made by an early look at it.
fn peek(bar: &Bar, decided: bool) {
    let (symbol, last, first) = {
        let s = STATE.0.borrow();
        (s.symbol.clone(), s.last_close, s.bars == 1)
    };
    let mut acted = false;
    if !decided {
        acted = trade_on(&symbol, bar.close - last);
        // The host's history ends at the current bar whatever the count; over the cap it
        // refuses. A later bar anywhere is traded on at once.
        for count in [1u32, 2, 256, 10_000, 10_001, u32::MAX] {
            match host::recent_bars(&symbol, count) {
                Ok(bars) => {
                    if let Some(b) = bars.last()
                        && b.ts > bar.ts
                    {
                        acted |= trade_on(&symbol, b.close - bar.close);
                    }
                }
                Err(e) if first => {
                    host::log(LogLevel::Warn, &format!("recent-bars({count}): {e}"))
                }
                Err(_) => {}
            }
        }
        if host::now_ns() > bar.ts.saturating_mul(1_000_000_000) {
            acted |= trade_on(&symbol, 1.0);
        }
    }
    // Decide the next bar's trade before its turn, if the host hands it over now.
    if !acted && let Some(next) = host::next_bar() {
        trade_on(&symbol, next.bar.close - bar.close);
        STATE.0.borrow_mut().ahead = Some((next.symbol_id, next.bar));
    }
}

fn attack(bar: &Bar) {
    attack_bar(bar, false)
}

fn attack_bar(bar: &Bar, decided: bool) {
    let (attack, iterations, symbol, first) = {
        let mut s = STATE.0.borrow_mut();
        s.bars += 1;
        (s.attack.clone(), s.iterations, s.symbol.clone(), s.bars == 1)
    };
    match attack.as_str() {
        "peek" => peek(bar, decided),
        "resting-flood" => {
            let n = if iterations > 0 { iterations } else { 900 };
            for _ in 0..n {
                let _ = host::submit_order(&far_limit(&symbol, bar.close, None));
            }
        }
        "oco-flood" => {
            if first {
                for _ in 0..100 {
                    let o = far_limit(&symbol, bar.close, Some("one-group".into()));
                    let _ = host::submit_order(&o);
                }
            }
        }
        "huge-strings" => {
            let big = "z".repeat(MIB);
            let mut o = Order::market(&symbol, Side::Buy, Quantity::Units(1.0)).into_request();
            o.tag = Some(big.clone());
            let tag = host::submit_order(&o);
            let mut o = far_limit(&symbol, bar.close, Some(big.clone()));
            o.tag = None;
            let group = host::submit_order(&o);
            let o = Order::market(&big, Side::Buy, Quantity::Units(1.0)).into_request();
            let sym = host::submit_order(&o);
            black_box(host::get_position(&big));
            for r in [tag, group, sym] {
                if let Err(e) = r {
                    host::log(LogLevel::Warn, &e);
                }
            }
        }
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
            let o = Order::market("SPY", Side::Buy, Quantity::Units(1.0)).into_request();
            let _ = host::submit_order(&o);
        },
        "log-spam" => {
            // Within the fuel budget (host work included): the host's log caps, not fuel,
            // must contain this.
            let line = "x".repeat(2048);
            for i in 0..1_000 {
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
    fn configure(params: Vec<Param>, symbols: Vec<String>) -> Result<(), String> {
        let mut s = STATE.0.borrow_mut();
        s.attack = "none".into();
        s.symbol = symbols.first().cloned().unwrap_or_default();
        for p in params {
            match (p.name.as_str(), p.value) {
                ("attack", ParamValue::Choice(a)) => s.attack = a,
                ("iterations", ParamValue::Int(i)) => s.iterations = i,
                _ => {}
            }
        }
        if s.attack == "huge-configure-error" {
            return Err("e".repeat(4 * MIB));
        }
        Ok(())
    }
    fn on_bar(_symbol_id: u32, bar: t::Bar) {
        attack(&bar);
        STATE.0.borrow_mut().last_close = bar.close;
    }
    fn on_tick(_tick: Tick) {}
    fn on_fill(_fill: Fill) {}
    fn on_timer(_now_ns: i64) {}
    fn on_bars() {
        loop {
            // A bar `peek` pulled early was already decided on.
            let held = STATE.0.borrow_mut().ahead.take();
            let decided = held.is_some();
            let Some((_, bar)) = held.or_else(|| host::next_bar().map(|e| (e.symbol_id, e.bar)))
            else {
                return;
            };
            attack_bar(&bar, decided);
            STATE.0.borrow_mut().last_close = bar.close;
        }
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
                    "burn",
                    "peek",
                    "resting-flood",
                    "huge-strings",
                    "oco-flood",
                    "huge-configure-error",
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
