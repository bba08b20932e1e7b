//! Hand-computed scenarios for every order type and fill rule, through the real engine and
//! exchange, driven by a scripted native strategy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use qtm_runtime::engine::{Engine, EngineConfig, StrategyRunner};
use qtm_runtime::events::{Event, EventLog, StrategyState};
use qtm_runtime::exchange::FillMode;
use qtm_runtime::model::{
    Bar, Fill, OrderChange, OrderKind, OrderRequest, Quantity, Side, TimeInForce, Trail,
};
use qtm_runtime::risk::RiskLimits;
use qtm_runtime::sandbox::StrategyHost;

/// Submits the scripted orders on the given bars and records what comes back.
#[derive(Default, Clone)]
struct Script {
    orders: HashMap<usize, Vec<OrderRequest>>,
    /// Submit this many copies of a 1-unit market buy on every bar (a strategy in a loop).
    spam: usize,
    seen: Arc<Mutex<Vec<String>>>,
    /// Cancel and modify these order ids on the given bars.
    cancels: HashMap<usize, Vec<u64>>,
    modifies: HashMap<usize, Vec<(u64, OrderChange)>>,
    bar: usize,
    bars_seen: Arc<Mutex<usize>>,
}

impl StrategyRunner for Script {
    fn on_bar(
        &mut self,
        host: &mut dyn StrategyHost,
        _symbol: u32,
        bar: &Bar,
    ) -> Result<(), String> {
        for o in self.orders.get(&self.bar).cloned().unwrap_or_default() {
            let r = host.submit_order(o);
            self.seen
                .lock()
                .unwrap()
                .push(format!("bar {} ts {}: {:?}", self.bar, bar.ts, r));
        }
        for id in self.cancels.get(&self.bar).cloned().unwrap_or_default() {
            let r = host.cancel_order(id);
            self.seen
                .lock()
                .unwrap()
                .push(format!("cancel {id}: {r:?}"));
        }
        for (id, change) in self.modifies.get(&self.bar).cloned().unwrap_or_default() {
            let r = host.modify_order(id, change);
            self.seen
                .lock()
                .unwrap()
                .push(format!("modify {id}: {r:?}"));
        }
        for _ in 0..self.spam {
            let _ = host.submit_order(order(Side::Buy, 1.0, OrderKind::Market));
        }
        self.bar += 1;
        *self.bars_seen.lock().unwrap() += 1;
        Ok(())
    }
    fn on_fill(
        &mut self,
        host: &mut dyn StrategyHost,
        _symbol: u32,
        fill: &Fill,
    ) -> Result<(), String> {
        let now_day = host.now_ns() / 1_000_000_000 / 86_400;
        let pos = host.position("X").quantity;
        self.seen.lock().unwrap().push(format!(
            "fill {} @ {} on day {now_day}, position {pos}",
            fill.quantity, fill.price
        ));
        Ok(())
    }
}

fn order(side: Side, q: f64, kind: OrderKind) -> OrderRequest {
    OrderRequest {
        symbol: "X".into(),
        side,
        quantity: Quantity::Units(q),
        kind,
        time_in_force: TimeInForce::Gtc,
        take_profit: None,
        stop_loss: None,
        oco_group: None,
        tag: None,
    }
}

fn bar(day: i64, open: f64, high: f64, low: f64, close: f64) -> Bar {
    Bar {
        ts: day * 86_400,
        open,
        high,
        low,
        close,
        volume: 1_000.0,
    }
}

/// Five daily bars: 100 → 104 (gap up) → 98 (gap down) → 101 → 103.
fn bars() -> Vec<Bar> {
    vec![
        bar(0, 100.0, 101.0, 99.0, 100.0),
        bar(1, 104.0, 106.0, 103.0, 105.0),
        bar(2, 98.0, 99.0, 96.0, 97.0),
        bar(3, 100.0, 102.0, 99.5, 101.0),
        bar(4, 102.0, 104.0, 101.5, 103.0),
    ]
}

struct Run {
    fills: Vec<(i64, Side, f64, f64, f64)>,
    cancels: Vec<String>,
    events: Vec<Event>,
    script: Vec<String>,
    cash: f64,
    position: f64,
    equity: f64,
    state: StrategyState,
}

fn run_with(
    script: Script,
    config: EngineConfig,
    limits: RiskLimits,
    bars: &[Bar],
    cash: f64,
) -> Run {
    let seen = script.seen.clone();
    let mut log = EventLog::default();
    let (cash_left, position, equity, state) = {
        let mut engine = Engine::new(config, vec!["X".into()], &mut log);
        engine
            .add_strategy("script", Box::new(script), &["X".into()], cash, limits)
            .unwrap();
        let stream: Vec<(usize, Bar)> = bars.iter().map(|b| (0, *b)).collect();
        engine.process(&stream);
        let p = engine.portfolio(0);
        (p.cash(), p.quantity(0), p.equity(), engine.state(0).clone())
    };
    let fills = log
        .0
        .iter()
        .filter_map(|e| match e {
            Event::Fill(f) => Some((f.ts / 86_400, f.side, f.quantity, f.price, f.fee)),
            _ => None,
        })
        .collect();
    let cancels = log
        .0
        .iter()
        .filter_map(|e| match e {
            Event::OrderCancelled { ts, reason, .. } => {
                Some(format!("day {}: {reason}", ts / 86_400))
            }
            _ => None,
        })
        .collect();
    let script = seen.lock().unwrap().clone();
    Run {
        fills,
        cancels,
        events: log.0,
        script,
        cash: cash_left,
        position,
        equity,
        state,
    }
}

fn run(orders: Vec<(usize, OrderRequest)>) -> Run {
    let mut s = Script::default();
    for (bar, o) in orders {
        s.orders.entry(bar).or_default().push(o);
    }
    run_with(
        s,
        EngineConfig::default(),
        RiskLimits::default(),
        &bars(),
        100_000.0,
    )
}

#[test]
fn market_orders_fill_at_the_next_open_with_commission_and_slippage() {
    let mut config = EngineConfig::default();
    config.exchange.commission = 0.001;
    config.exchange.slippage_bps = 10.0;
    config.exchange.fixed_fee = 1.0;
    let mut s = Script::default();
    s.orders
        .insert(0, vec![order(Side::Buy, 10.0, OrderKind::Market)]);
    s.orders
        .insert(2, vec![order(Side::Sell, 10.0, OrderKind::Market)]);
    let r = run_with(s, config, RiskLimits::default(), &bars(), 10_000.0);
    // Bought at bar 1's open 104 + 10 bps = 104.104; fee 10 × 104.104 × 0.001 + 1 fixed.
    // Sold at bar 3's open 100 − 10 bps = 99.9; fee 0.999 + 1.
    assert_eq!(r.fills.len(), 2);
    let (day, side, q, p, fee) = r.fills[0];
    assert_eq!((day, side, q), (1, Side::Buy, 10.0));
    assert!(
        (p - 104.104).abs() < 1e-9 && (fee - (1.04104 + 1.0)).abs() < 1e-9,
        "{p} {fee}"
    );
    let (day, _, _, p, fee) = r.fills[1];
    assert_eq!(day, 3);
    assert!((p - 99.9).abs() < 1e-9 && (fee - 1.999).abs() < 1e-9);
    let expected_cash = 10_000.0 - 1041.04 - 2.04104 + 999.0 - 1.999;
    assert!((r.cash - expected_cash).abs() < 1e-9, "{}", r.cash);
    assert_eq!(r.position, 0.0);
}

#[test]
fn resting_orders_can_be_modified_and_cancelled() {
    let mut s = Script::default();
    s.orders.insert(
        0,
        vec![
            order(Side::Buy, 1.0, OrderKind::Limit(90.0)),
            order(Side::Buy, 1.0, OrderKind::Limit(97.5)),
        ],
    );
    let raise = OrderChange {
        limit_price: Some(99.2),
        ..Default::default()
    };
    s.modifies.insert(1, vec![(1, raise), (99, raise)]);
    s.cancels.insert(1, vec![2, 2]);
    let r = run_with(
        s,
        EngineConfig::default(),
        RiskLimits::default(),
        &bars(),
        10_000.0,
    );
    // Order 1, moved up to 99.2, fills at bar 2's open 98 (below the new limit); order 2 would
    // have filled at 97.5 on bar 2 but was cancelled on bar 1.
    assert_eq!(r.fills, vec![(2, Side::Buy, 1.0, 98.0, 0.0)]);
    assert!(
        r.script.contains(&"modify 1: Ok(())".to_string()),
        "{:?}",
        r.script
    );
    assert!(
        r.script
            .contains(&"modify 99: Err(\"no open order 99\")".to_string()),
        "{:?}",
        r.script
    );
    assert!(r.script.contains(&"cancel 2: Ok(())".to_string()));
    assert!(
        r.script
            .contains(&"cancel 2: Err(\"no open order 2\")".to_string())
    );
    assert!(
        r.cancels
            .contains(&"day 1: cancelled by the strategy".to_string()),
        "{:?}",
        r.cancels
    );
}

#[test]
fn fills_reach_the_strategy_with_the_clock_and_position_of_their_bar() {
    let r = run(vec![
        (0, order(Side::Buy, 3.0, OrderKind::Market)),
        (2, order(Side::Sell, 3.0, OrderKind::Limit(101.5))),
    ]);
    let fills: Vec<&String> = r.script.iter().filter(|l| l.starts_with("fill")).collect();
    assert_eq!(
        fills,
        [
            "fill 3 @ 104 on day 1, position 3",
            "fill 3 @ 101.5 on day 3, position 0"
        ]
    );
}

#[test]
fn fill_close_mode_fills_market_orders_at_the_signal_bars_close() {
    let mut config = EngineConfig::default();
    config.exchange.fill = FillMode::Close;
    let mut s = Script::default();
    s.orders
        .insert(1, vec![order(Side::Buy, 5.0, OrderKind::Market)]);
    let r = run_with(s, config, RiskLimits::default(), &bars(), 10_000.0);
    assert_eq!(r.fills, vec![(1, Side::Buy, 5.0, 105.0, 0.0)]);
    // Marked at the last close 103.
    assert!((r.equity - (10_000.0 - 525.0 + 515.0)).abs() < 1e-9);
}

#[test]
fn orders_are_eligible_from_the_next_bar_only() {
    // Placed on bar 0, whose own low (99) would reach 99.5: it must wait for bar 1.
    let r = run(vec![(0, order(Side::Buy, 1.0, OrderKind::Limit(99.5)))]);
    // Bar 1 (low 103) misses; bar 2 opens at 98, below the limit: filled at the open.
    assert_eq!(r.fills, vec![(2, Side::Buy, 1.0, 98.0, 0.0)]);
}

#[test]
fn limits_fill_at_the_limit_or_at_a_better_open() {
    let r = run(vec![
        (0, order(Side::Sell, 1.0, OrderKind::Limit(105.5))), // bar 1: high 106 ≥ 105.5, open 104 < 105.5 → 105.5
        (0, order(Side::Sell, 1.0, OrderKind::Limit(102.0))), // bar 1 opens 104 ≥ 102 → 104 (better)
        (2, order(Side::Buy, 1.0, OrderKind::Limit(99.6))), // bar 3: low 99.5 ≤ 99.6, open 100 → 99.6
    ]);
    assert_eq!(
        r.fills,
        vec![
            (1, Side::Sell, 1.0, 105.5, 0.0),
            (1, Side::Sell, 1.0, 104.0, 0.0),
            (3, Side::Buy, 1.0, 99.6, 0.0)
        ]
    );
}

#[test]
fn stops_fill_at_the_stop_or_at_a_worse_open_on_a_gap() {
    let r = run(vec![
        (0, order(Side::Buy, 1.0, OrderKind::Stop(102.0))), // bar 1 opens 104 above 102: gap → 104
        (1, order(Side::Sell, 1.0, OrderKind::Stop(100.0))), // bar 2 opens 98 below 100: gap → 98
        (2, order(Side::Buy, 1.0, OrderKind::Stop(101.5))), // bar 3: high 102 ≥ 101.5, open 100 → 101.5
    ]);
    assert_eq!(
        r.fills,
        vec![
            (1, Side::Buy, 1.0, 104.0, 0.0),
            (2, Side::Sell, 1.0, 98.0, 0.0),
            (3, Side::Buy, 1.0, 101.5, 0.0)
        ]
    );
}

#[test]
fn stop_limits_trigger_then_rest_as_limits() {
    let r = run(vec![
        // Bar 1 gaps over the 102 stop at 104; the 103.5 limit is then reachable (low 103): 103.5.
        (
            0,
            order(
                Side::Buy,
                1.0,
                OrderKind::StopLimit {
                    stop: 102.0,
                    limit: 103.5,
                },
            ),
        ),
        // Sell stop 99 / limit 99.5: bar 2 gaps to 98 (triggered); limit 99.5 needs ≥ 99.5: high 99 misses;
        // bar 3 opens 100 ≥ 99.5 → filled at the open 100.
        (
            1,
            order(
                Side::Sell,
                1.0,
                OrderKind::StopLimit {
                    stop: 99.0,
                    limit: 99.5,
                },
            ),
        ),
    ]);
    assert_eq!(
        r.fills,
        vec![
            (1, Side::Buy, 1.0, 103.5, 0.0),
            (3, Side::Sell, 1.0, 100.0, 0.0)
        ]
    );
}

#[test]
fn trailing_stops_follow_the_best_price_then_trigger() {
    let mut bars = bars();
    bars[2] = bar(2, 106.0, 110.0, 105.5, 109.0); // new high 110
    bars[3] = bar(3, 108.0, 108.5, 106.0, 107.0); // trail 110 − 3 = 107 → hit at 107
    // Long 1 at bar 1's open, trailing sell 3 below the best high, placed on bar 0 (anchor 100).
    let r = run(vec![
        (0, order(Side::Buy, 1.0, OrderKind::Market)),
        (
            0,
            order(Side::Sell, 1.0, OrderKind::TrailingStop(Trail::Amount(3.0))),
        ),
    ]);
    // Default bars: bar 1 leaves the level at 97 and lifts the anchor to 106; bar 2 gaps down
    // to 98, through the new level 103: filled at the open.
    assert_eq!(
        r.fills,
        vec![
            (1, Side::Buy, 1.0, 104.0, 0.0),
            (2, Side::Sell, 1.0, 98.0, 0.0)
        ]
    );
    // Rising bars: bar 1 → anchor 106; bar 2 (level 103, low 105.5) → anchor 110;
    // bar 3: level 107, low 106 → filled at 107.
    let mut s = Script::default();
    s.orders.insert(
        0,
        vec![
            order(Side::Buy, 1.0, OrderKind::Market),
            order(Side::Sell, 1.0, OrderKind::TrailingStop(Trail::Amount(3.0))),
        ],
    );
    let r = run_with(
        s,
        EngineConfig::default(),
        RiskLimits::default(),
        &bars,
        10_000.0,
    );
    assert_eq!(
        r.fills,
        vec![
            (1, Side::Buy, 1.0, 104.0, 0.0),
            (3, Side::Sell, 1.0, 107.0, 0.0)
        ]
    );
}

#[test]
fn bracket_exits_form_an_oco_pair_and_the_stop_wins_a_bar_touching_both() {
    let mut entry = order(Side::Buy, 2.0, OrderKind::Market);
    entry.take_profit = Some(105.5);
    entry.stop_loss = Some(103.5);
    let r = run(vec![(0, entry)]);
    // Entry at bar 1's open 104; the same bar's range 103–106 touches both 105.5 and 103.5:
    // the stop-loss fills first, the take-profit is cancelled.
    assert_eq!(
        r.fills,
        vec![
            (1, Side::Buy, 2.0, 104.0, 0.0),
            (1, Side::Sell, 2.0, 103.5, 0.0)
        ]
    );
    assert!(
        r.cancels.iter().any(|c| c.starts_with("day 1: OCO: order")),
        "{:?}",
        r.cancels
    );
    assert_eq!(r.position, 0.0);
}

#[test]
fn bracket_take_profit_fills_on_a_later_bar() {
    let mut entry = order(Side::Buy, 1.0, OrderKind::Market);
    entry.take_profit = Some(102.5);
    entry.stop_loss = Some(95.0);
    // Entered at bar 3's open (100), placed on bar 2; bar 3 high 102 < 102.5; bar 4 high 104 → 102.5.
    let r = run(vec![(2, entry)]);
    assert_eq!(
        r.fills,
        vec![
            (3, Side::Buy, 1.0, 100.0, 0.0),
            (4, Side::Sell, 1.0, 102.5, 0.0)
        ]
    );
}

#[test]
fn oco_groups_cancel_the_rest_when_one_fills() {
    let mut a = order(Side::Buy, 1.0, OrderKind::Stop(105.5));
    a.oco_group = Some("g".into());
    let mut b = order(Side::Sell, 1.0, OrderKind::Stop(95.0));
    b.oco_group = Some("g".into());
    let r = run(vec![(0, a), (0, b)]);
    // Bar 1 high 106 ≥ 105.5 fills the buy stop; the sell stop is cancelled.
    assert_eq!(r.fills, vec![(1, Side::Buy, 1.0, 105.5, 0.0)]);
    assert_eq!(r.cancels.len(), 1);
}

#[test]
fn time_in_force_day_ioc_and_fok() {
    let mut day = order(Side::Buy, 1.0, OrderKind::Limit(90.0));
    day.time_in_force = TimeInForce::Day;
    let mut ioc = order(Side::Buy, 1.0, OrderKind::Limit(90.0));
    ioc.time_in_force = TimeInForce::Ioc;
    let r = run(vec![(0, day), (0, ioc)]);
    assert!(r.fills.is_empty());
    assert_eq!(r.cancels.len(), 2, "{:?}", r.cancels);
    assert!(
        r.cancels
            .contains(&"day 1: expired at the end of its day".to_string()),
        "{:?}",
        r.cancels
    );
    assert!(
        r.cancels
            .contains(&"day 1: not filled on its first bar (IOC/FOK)".to_string()),
        "{:?}",
        r.cancels
    );

    // Volume caps: 10 % of 1,000 = 100 units per bar.
    let mut config = EngineConfig::default();
    config.exchange.volume_participation = Some(0.1);
    let mut fok = order(Side::Buy, 150.0, OrderKind::Market);
    fok.time_in_force = TimeInForce::Fok;
    let mut ioc = order(Side::Buy, 150.0, OrderKind::Market);
    ioc.time_in_force = TimeInForce::Ioc;
    let gtc = order(Side::Buy, 250.0, OrderKind::Market);
    let mut s = Script::default();
    s.orders.insert(0, vec![fok, ioc, gtc]);
    let r = run_with(s, config, RiskLimits::default(), &bars(), 1_000_000.0);
    // FOK cannot fill 150 at once: cancelled. IOC fills 100, the rest is cancelled.
    // GTC fills 100 + 100 + 50 over three bars.
    assert_eq!(
        r.fills.iter().map(|f| (f.0, f.2)).collect::<Vec<_>>(),
        vec![(1, 100.0), (1, 100.0), (2, 100.0), (3, 50.0)]
    );
    assert!(
        r.cancels
            .iter()
            .any(|c| c.contains("fill or kill: only 100 of 150")),
        "{:?}",
        r.cancels
    );
    assert!(
        r.cancels
            .iter()
            .any(|c| c.contains("rest of an immediate-or-cancel order")),
        "{:?}",
        r.cancels
    );
}

#[test]
fn equity_fraction_sizing_reverses_then_sizes_on_what_is_left() {
    let mut config = EngineConfig::default();
    config.exchange.commission = 0.001;
    let frac = |side| OrderRequest {
        quantity: Quantity::EquityFraction(1.0),
        ..order(side, 0.0, OrderKind::Market)
    };
    let mut s = Script::default();
    s.orders.insert(0, vec![frac(Side::Sell)]);
    s.orders.insert(1, vec![frac(Side::Buy)]);
    let r = run_with(s, config, RiskLimits::default(), &bars(), 10_000.0);
    // Short at 104: floor(10000 (1−ε) / (104 × 1.001)) = floor(96.05…) = 96, fee 9.984.
    assert_eq!((r.fills[0].2, r.fills[0].3), (96.0, 104.0));
    // Reverse at 98: close 96 short: equity = 10000 − 9.984 + 96 × (104 − 98) − 96 × 98 × 0.001
    // = 10566.608; then floor(10566.608 (1−ε) / (98 × 1.001)) = floor(107.71…) = 107.
    // One fill of 96 + 107 = 203 units.
    assert_eq!(
        (r.fills[1].1, r.fills[1].2, r.fills[1].3),
        (Side::Buy, 203.0, 98.0)
    );
    assert_eq!(r.position, 107.0);
    assert!((r.fills[1].4 - 203.0 * 98.0 * 0.001).abs() < 1e-9);
}

#[test]
fn target_percent_trades_the_difference() {
    let target = |t| OrderRequest {
        quantity: Quantity::TargetPercent(t),
        ..order(Side::Buy, 0.0, OrderKind::Market)
    };
    let r = run(vec![(0, target(0.5)), (2, target(-0.25))]);
    // 50 % of 100,000 at 104 → floor(480.77) = 480 units.
    assert_eq!((r.fills[0].1, r.fills[0].2), (Side::Buy, 480.0));
    // Bar 3 open 100: equity = 100000 + 480 × (100 − 104) = 98080; −25 % → −floor(245.2) = −245;
    // trade −245 − 480 = sell 725.
    assert_eq!(
        (r.fills[1].1, r.fills[1].2, r.fills[1].3),
        (Side::Sell, 725.0, 100.0)
    );
    assert_eq!(r.position, -245.0);
}

#[test]
fn orders_beyond_buying_power_are_cancelled_at_fill_time() {
    let r = run_with(
        Script {
            orders: HashMap::from([(0, vec![order(Side::Buy, 200.0, OrderKind::Market)])]),
            ..Default::default()
        },
        EngineConfig::default(),
        RiskLimits::default(),
        &bars(),
        10_000.0,
    );
    assert!(r.fills.is_empty());
    assert!(
        r.cancels[0].contains("insufficient buying power: exposure 20800.00 would exceed 10000.00"),
        "{:?}",
        r.cancels
    );
}

#[test]
fn risk_rejections_reach_the_strategy_and_raise_alerts() {
    let limits = RiskLimits {
        max_order_quantity: Some(5.0),
        ..Default::default()
    };
    let mut s = Script::default();
    s.orders.insert(
        0,
        vec![
            order(Side::Buy, 5.0, OrderKind::Market),
            order(Side::Buy, 6.0, OrderKind::Market),
        ],
    );
    let r = run_with(s, EngineConfig::default(), limits, &bars(), 10_000.0);
    assert_eq!(r.script[0], "bar 0 ts 0: Ok(1)");
    assert_eq!(
        r.script[1],
        "bar 0 ts 0: Err(\"risk: order quantity 6 exceeds max_order_quantity 5\")"
    );
    assert!(
        r.events
            .iter()
            .any(|e| matches!(e, Event::RiskAlert { kind, message, .. }
        if kind == "order_rejected" && message == "order quantity 6 exceeds max_order_quantity 5"))
    );
    assert_eq!(r.fills.len(), 1);
}

#[test]
fn resting_and_oco_caps_refuse_past_their_boundary_and_the_strategy_runs_on() {
    let far = |group: Option<&str>| {
        let mut o = order(Side::Buy, 1.0, OrderKind::Limit(10.0));
        o.oco_group = group.map(Into::into);
        o
    };
    // Defaults: 1,000 resting orders; the 1,001st is refused, the strategy sees every bar.
    let mut s = Script::default();
    s.orders.insert(0, vec![far(None); 1_000]);
    s.orders.insert(1, vec![far(None)]);
    let bars_seen = s.bars_seen.clone();
    let r = run_with(
        s,
        EngineConfig::default(),
        RiskLimits::default(),
        &bars(),
        10_000.0,
    );
    assert!(r.script[..1_000].iter().all(|l| l.contains("Ok(")));
    assert_eq!(
        r.script[1_000],
        "bar 1 ts 86400: Err(\"risk: 1000 resting orders already; max_resting_orders is 1000\")"
    );
    assert!(r.events.iter().any(|e| matches!(e, Event::RiskAlert { kind, message, .. }
        if kind == "order_rejected" && message == "1000 resting orders already; max_resting_orders is 1000")));
    assert_eq!(r.state, StrategyState::Running);
    assert_eq!(*bars_seen.lock().unwrap(), 5);

    // Configured: two per OCO group, counted per group; a group that emptied takes more.
    let limits = RiskLimits {
        max_oco_orders: Some(2),
        ..Default::default()
    };
    let mut s = Script::default();
    s.orders.insert(
        0,
        vec![
            far(Some("a")),
            far(Some("a")),
            far(Some("a")),
            far(Some("b")),
        ],
    );
    s.cancels.insert(1, vec![1, 2]);
    s.orders.insert(2, vec![far(Some("a"))]);
    let r = run_with(s, EngineConfig::default(), limits, &bars(), 10_000.0);
    assert_eq!(
        r.script,
        [
            "bar 0 ts 0: Ok(1)",
            "bar 0 ts 0: Ok(2)",
            "bar 0 ts 0: Err(\"risk: 2 orders in its OCO group already; max_oco_orders is 2\")",
            "bar 0 ts 0: Ok(3)",
            "cancel 1: Ok(())",
            "cancel 2: Ok(())",
            "bar 2 ts 172800: Ok(4)",
        ]
    );
    assert_eq!(r.state, StrategyState::Running);
}

#[test]
fn a_strategy_trading_in_a_loop_cannot_breach_the_order_rate_limit() {
    let limits = RiskLimits {
        max_orders_per_window: Some(3),
        order_window_secs: Some(86_400),
        ..Default::default()
    };
    let s = Script {
        spam: 50,
        ..Default::default()
    };
    let r = run_with(s, EngineConfig::default(), limits, &bars(), 1_000_000.0);
    let accepted: Vec<i64> = r
        .events
        .iter()
        .filter_map(|e| match e {
            Event::OrderAccepted { ts, .. } => Some(*ts),
            _ => None,
        })
        .collect();
    // Daily bars, a one-day window: three orders per bar, never more.
    assert_eq!(accepted.len(), 15);
    for day in 0..5 {
        assert_eq!(accepted.iter().filter(|&&t| t == day * 86_400).count(), 3);
    }
    let rejected = r
        .events
        .iter()
        .filter(|e| matches!(e, Event::OrderRejected { .. }))
        .count();
    assert_eq!(rejected, 5 * 47);
}

#[test]
fn the_drawdown_kill_switch_halts_and_cancels() {
    let limits = RiskLimits {
        max_drawdown_pct: Some(5.0),
        ..Default::default()
    };
    let mut s = Script::default();
    // All-in long at bar 1's open 104, plus a resting order that must be cancelled.
    s.orders.insert(
        0,
        vec![OrderRequest {
            quantity: Quantity::EquityFraction(1.0),
            ..order(Side::Buy, 0.0, OrderKind::Market)
        }],
    );
    s.orders
        .insert(1, vec![order(Side::Buy, 1.0, OrderKind::Limit(50.0))]);
    let seen = s.bars_seen.clone();
    let r = run_with(s, EngineConfig::default(), limits, &bars(), 10_000.0);
    // 96 units at 104; bar 1 closes 105 (peak 10096); bar 2 closes 97: equity 9328, −7.6 % → halt.
    assert_eq!(r.state, StrategyState::Halted);
    assert!(r.events.iter().any(|e| matches!(e, Event::RiskAlert { kind, message, ts, .. }
        if kind == "kill_switch" && message.starts_with("drawdown 7.61% reached max_drawdown_pct 5") && *ts == 2 * 86_400)));
    assert!(
        r.cancels
            .iter()
            .any(|c| c.starts_with("day 2: strategy stopped: drawdown")),
        "{:?}",
        r.cancels
    );
    // The position stays; later bars are not shown to the strategy.
    assert_eq!(r.position, 96.0);
    assert_eq!(
        *seen.lock().unwrap(),
        3,
        "halted at bar 2's close: bars 3 and 4 are not shown"
    );
}

#[test]
fn an_account_out_of_money_is_liquidated_and_halted() {
    // All-in short at 100, then the price doubles: equity would go below zero.
    let bars = vec![
        bar(0, 100.0, 100.0, 100.0, 100.0),
        bar(1, 100.0, 100.0, 100.0, 100.0),
        bar(2, 150.0, 150.0, 150.0, 150.0),
        bar(3, 210.0, 210.0, 210.0, 210.0),
        bar(4, 250.0, 250.0, 250.0, 250.0),
    ];
    let mut s = Script::default();
    s.orders.insert(
        0,
        vec![OrderRequest {
            quantity: Quantity::EquityFraction(1.0),
            ..order(Side::Sell, 0.0, OrderKind::Market)
        }],
    );
    let seen = s.bars_seen.clone();
    let r = run_with(
        s,
        EngineConfig::default(),
        RiskLimits::default(),
        &bars,
        10_000.0,
    );
    // Short 99 at 100 (floor(9999.99…)); at 210: 10000 + 99 × (100 − 210) = −890 → liquidated at 210.
    assert_eq!(
        r.fills,
        vec![
            (1, Side::Sell, 99.0, 100.0, 0.0),
            (3, Side::Buy, 99.0, 210.0, 0.0)
        ]
    );
    assert_eq!(r.state, StrategyState::Halted);
    assert_eq!(r.position, 0.0);
    assert!((r.equity - (10_000.0 - 99.0 * 110.0)).abs() < 1e-9);
    assert!(
        r.events
            .iter()
            .any(|e| matches!(e, Event::StrategyStatus { reason, .. }
        if reason == "out of money: equity fell to -890.00; positions closed at the close"))
    );
    assert_eq!(
        *seen.lock().unwrap(),
        4,
        "bar 4 is not shown to a halted strategy"
    );
}

/// An account without a strategy (manual orders) is an account of the same engine: its
/// order placed between two bars fills on the next bar with a strategy's order placed on the
/// bar before, at the same price and costs; the account guard counts its book; the kill
/// switch cancels its orders without stopping it.
#[test]
fn an_external_account_fills_on_the_strategies_exchange_with_their_rules() {
    use qtm_runtime::oms::AccountOrder;
    let mut config = EngineConfig::default();
    config.exchange.commission = 0.001;
    config.exchange.slippage_bps = 10.0;
    config.exchange.fixed_fee = 1.0;
    let mut s = Script::default();
    s.orders
        .insert(0, vec![order(Side::Buy, 10.0, OrderKind::Market)]);
    let mut log = EventLog::default();
    {
        let mut engine = Engine::new(config, vec!["X".into()], &mut log);
        let manual = engine
            .add_external_account("manual", 100_000.0, RiskLimits::default())
            .unwrap();
        let strategy = engine
            .add_strategy(
                "script",
                Box::new(s),
                &["X".into()],
                100_000.0,
                RiskLimits::default(),
            )
            .unwrap();
        let b = bars();
        engine.process(&[(0, b[0])]);
        let id = engine
            .place_external(
                manual,
                order(Side::Buy, 10.0, OrderKind::Market),
                100.0,
                b[0].ts,
            )
            .unwrap();
        // A resting limit far below, for the kill switch.
        let resting = engine
            .place_external(
                manual,
                order(Side::Buy, 1.0, OrderKind::Limit(50.0)),
                100.0,
                b[0].ts,
            )
            .unwrap();
        engine.process(&[(0, b[1])]);
        let (m, st) = (engine.portfolio(manual), engine.portfolio(strategy));
        assert_eq!((m.quantity(0), st.quantity(0)), (10.0, 10.0));
        assert_eq!(m.cash(), st.cash(), "same fill price and costs");
        // The guard counts both books: a position limit of 25 leaves room for 5.
        engine.guard_mut().set_limits(&RiskLimits {
            max_position: Some(25.0),
            ..Default::default()
        });
        let buy = |q: f64| AccountOrder {
            quantity: q,
            direction: 1.0,
            last_price: 105.0,
            order_price: None,
        };
        assert!(
            engine
                .judge_external(manual, "X", &buy(5.0), None, 0)
                .is_ok()
        );
        let refused = engine.judge_external(manual, "X", &buy(6.0), None, 0);
        assert!(
            refused.unwrap_err().contains("exceeds max_position 25"),
            "the strategy's 10 count"
        );
        engine.guard_mut().set_limits(&RiskLimits::default());
        engine.guard_mut().halt("drill");
        engine.halt_running("drill", b[1].ts);
        assert!(engine.open_orders(manual).is_empty());
        assert_eq!(*engine.state(manual), StrategyState::Running);
        let refused =
            engine.place_external(manual, order(Side::Buy, 1.0, OrderKind::Market), 105.0, 0);
        assert!(refused.unwrap_err().contains("halted by the kill switch"));
        assert_ne!(id, resting);
    }
    let fills: Vec<_> = log
        .0
        .iter()
        .filter_map(|e| match e {
            Event::Fill(f) => Some((f.account, f.price, f.fee, f.ts)),
            _ => None,
        })
        .collect();
    assert_eq!(fills.len(), 2, "{fills:?}");
    assert_eq!(
        (fills[0].1, fills[0].2, fills[0].3),
        (fills[1].1, fills[1].2, fills[1].3)
    );
    assert!((fills[0].1 - 104.0 * 1.001).abs() < 1e-9, "{fills:?}");
    let cancelled: Vec<_> = log
        .0
        .iter()
        .filter_map(|e| match e {
            Event::OrderCancelled {
                account: 0, reason, ..
            } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(cancelled, ["kill switch"]);
}

/// An account without a strategy (manual orders) that runs out of money gets a margin call as
/// a strategy's account does: its working orders are cancelled, its position is closed at the
/// bar's close, and an alert says why; buying power then refuses what it cannot pay for.
#[test]
fn an_external_account_out_of_money_gets_a_margin_call() {
    let bars = [
        bar(0, 100.0, 100.0, 100.0, 100.0),
        bar(1, 100.0, 100.0, 100.0, 100.0),
        bar(2, 150.0, 150.0, 150.0, 150.0),
        bar(3, 210.0, 210.0, 210.0, 210.0),
        bar(4, 250.0, 250.0, 250.0, 250.0),
    ];
    let mut log = EventLog::default();
    {
        let mut engine = Engine::new(EngineConfig::default(), vec!["X".into()], &mut log);
        let manual = engine
            .add_external_account("manual", 10_000.0, RiskLimits::default())
            .unwrap();
        engine.process(&[(0, bars[0])]);
        engine
            .place_external(
                manual,
                order(Side::Sell, 99.0, OrderKind::Market),
                100.0,
                bars[0].ts,
            )
            .unwrap();
        // A resting buy far below: the margin call cancels it.
        engine
            .place_external(
                manual,
                order(Side::Buy, 1.0, OrderKind::Limit(10.0)),
                100.0,
                bars[0].ts,
            )
            .unwrap();
        for b in &bars[1..] {
            engine.process(&[(0, *b)]);
        }
        let book = engine.portfolio(manual);
        assert_eq!(book.quantity(0), 0.0);
        // Short 99 at 100; at 210: 10000 + 99 × (100 − 210) = −890 → closed at 210.
        assert!((book.cash() - (10_000.0 - 99.0 * 110.0)).abs() < 1e-9);
        assert_eq!(engine.open_count(manual), 0);
    }
    let fills: Vec<(i64, Side, f64, f64, Option<String>)> = log
        .0
        .iter()
        .filter_map(|e| match e {
            Event::Fill(f) => Some((f.ts / 86_400, f.side, f.quantity, f.price, f.tag.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        fills,
        vec![
            (1, Side::Sell, 99.0, 100.0, None),
            (3, Side::Buy, 99.0, 210.0, Some("liquidation".into())),
        ]
    );
    let reason = "margin call: equity fell to -890.00; orders cancelled, positions closed at the last prices";
    assert!(log.0.iter().any(|e| matches!(e,
        Event::OrderCancelled { reason: r, .. } if r == reason)));
    assert!(log.0.iter().any(|e| matches!(e,
        Event::RiskAlert { kind, message, .. } if kind == "margin_call" && message == reason)));
    assert!(
        log.0.iter().any(|e| matches!(e,
            Event::Position { quantity, ts, .. } if *quantity == 0.0 && *ts == 3 * 86_400)),
        "the closed position is published"
    );
}
