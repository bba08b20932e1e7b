//! Hostile guests are contained: each is stopped with the right reason, in bounded time, and a
//! healthy strategy in the same process receives every bar.

use std::time::{Duration, Instant};

use qtm_runtime::backtest::trades_sha256;
use qtm_runtime::engine::{Engine, EngineConfig};
use qtm_runtime::events::{Event, EventLog, StrategyState};
use qtm_runtime::model::{Bar, OrderRequest, Param, ParamValue};
use qtm_runtime::risk::RiskLimits;
use qtm_runtime::sandbox::{
    ContractVersion, InstanceStatus, Limits, Sandbox, SandboxConfig, SandboxError,
    StrategyInstance, TrapReason,
};
use qtm_tests::{RecordingHost, bundled_slice, component, guests, numbered_bars, read_bars};

const BARS: usize = 200;

fn attack(sb: &Sandbox, name: &str) -> StrategyInstance {
    let code = sb.load(&component(guests::HOSTILE)).unwrap();
    code.instantiate(
        &[Param {
            name: "attack".into(),
            value: ParamValue::Choice(name.into()),
        }],
        &[],
    )
    .unwrap()
}

/// Interleave a healthy seq-recorder and an attacker bar by bar, as one engine would.
/// Returns the attacker's error on its first bar, and how long the whole run took.
fn run_next_to_healthy(sb: &Sandbox, name: &str) -> (StrategyInstance, SandboxError, Duration) {
    let healthy_code = sb.load(&component(guests::SEQ_RECORDER_V1)).unwrap();
    let mut healthy = healthy_code.instantiate(&[], &["H".into()]).unwrap();
    let mut bad = attack(sb, name);
    let mut healthy_host = RecordingHost::default();
    let mut bad_host = RecordingHost::default();
    let mut first_error = None;
    let started = Instant::now();
    for bar in numbered_bars(BARS) {
        healthy.on_bar(&mut healthy_host, 0, &bar).unwrap();
        if let Err(e) = bad.on_bar(&mut bad_host, 0, &bar) {
            first_error.get_or_insert(e);
        }
    }
    let took = started.elapsed();
    // The healthy strategy saw every bar, in order, exactly once.
    let seen: Vec<String> = healthy_host.logs.iter().map(|(_, m)| m.clone()).collect();
    let expected: Vec<String> = (1..=BARS)
        .map(|i| format!("v1 seq={i} count={i}"))
        .collect();
    assert_eq!(seen, expected, "healthy strategy next to {name}");
    (
        bad,
        first_error.unwrap_or_else(|| panic!("{name} was not stopped")),
        took,
    )
}

fn assert_contained(name: &str, check: impl Fn(&TrapReason) -> bool) -> StrategyInstance {
    let sb = Sandbox::new(SandboxConfig::default()).unwrap();
    let (bad, err, took) = run_next_to_healthy(&sb, name);
    let SandboxError::Trapped(reason) = &err else {
        panic!("{name}: {err}")
    };
    assert!(check(reason), "{name}: unexpected reason {reason}");
    assert_eq!(
        bad.status(),
        &InstanceStatus::Disabled {
            reason: reason.clone()
        }
    );
    assert_eq!(bad.stats().traps, 1);
    // Disabled for good: later bars are refused without entering the guest.
    assert!(took < Duration::from_secs(10), "{name} took {took:?}");
    bad
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    assert_contained("infinite-loop", |r| *r == TrapReason::OutOfFuel(10_000_000));
}

#[test]
fn memory_bomb_hits_the_memory_cap() {
    assert_contained(
        "memory-bomb",
        |r| matches!(r, TrapReason::Memory(m) if m.contains("forcing trap when growing memory")),
    );
}

#[test]
fn deep_recursion_overflows_the_stack() {
    assert_contained("deep-recursion", |r| *r == TrapReason::StackOverflow);
}

#[test]
fn shadow_stack_overflow_is_an_out_of_bounds_trap() {
    assert_contained(
        "shadow-stack-overflow",
        |r| matches!(r, TrapReason::Other(m) if m.contains("out of bounds memory access")),
    );
}

#[test]
fn panic_is_a_trap() {
    let bad = assert_contained("panic", |r| *r == TrapReason::Panic);
    assert_eq!(
        bad.stats().calls,
        2,
        "configure + the one bar that panicked"
    );
}

#[test]
fn order_spam_is_cut_off() {
    let bad = assert_contained("order-spam", |r| {
        *r == TrapReason::HostLimit("more than 1000 orders in one call (order spam)".into())
    });
    assert_eq!(bad.stats().orders, 1_001);
}

#[test]
fn host_call_loop_is_cut_off() {
    assert_contained("host-call-loop", |r| {
        *r == TrapReason::HostLimit("more than 100000 host calls in one call".into())
    });
}

#[test]
fn log_spam_is_capped_and_counted_without_stopping_the_strategy() {
    let sb = Sandbox::new(SandboxConfig::default()).unwrap();
    let mut bad = attack(&sb, "log-spam");
    let mut host = RecordingHost::default();
    let bar = numbered_bars(1)[0];
    bad.on_bar(&mut host, 0, &bar).unwrap();
    bad.on_bar(&mut host, 0, &bar).unwrap();
    assert!(bad.is_active());
    assert_eq!(host.logs.len(), 200, "100 lines kept per call");
    assert_eq!(bad.stats().logs_dropped, 2 * 900);
    // Lines are cut to 1 KiB (plus the ellipsis marker).
    assert!(
        host.logs
            .iter()
            .all(|(_, m)| m.len() <= 1024 + '…'.len_utf8())
    );
    assert!(host.logs[0].1.starts_with("spam 0 xxx") && host.logs[0].1.ends_with('…'));
}

#[test]
fn huge_snapshot_is_refused_and_the_strategy_keeps_running() {
    // Building 8 MiB in a debug build on a loaded machine can take longer than the default
    // deadline; this test is about the size cap, so the deadline must not be what stops it.
    let mut config = SandboxConfig::default();
    config.limits.deadline = Duration::from_secs(10);
    let sb = Sandbox::new(config).unwrap();
    let mut bad = attack(&sb, "huge-snapshot");
    let e = bad.snapshot().unwrap_err();
    assert_eq!(
        e.to_string(),
        "snapshot refused: snapshot of 8388608 bytes exceeds the 1048576 byte limit"
    );
    assert!(bad.is_active());
    bad.on_bar(&mut RecordingHost::default(), 0, &numbered_bars(1)[0])
        .unwrap();
    // A swap needs a snapshot, so it fails and the old code keeps running.
    let next = bad.prepare_swap(bad.code()).unwrap();
    assert!(bad.swap(next).is_err());
    assert!(bad.is_active());
}

#[test]
fn the_wall_clock_deadline_stops_what_fuel_does_not() {
    // Fuel so large it never runs out: only the epoch deadline can stop the loop.
    let limits = Limits {
        fuel_per_call: u64::MAX / 4,
        deadline: Duration::from_millis(50),
        ..Default::default()
    };
    let sb = Sandbox::new(SandboxConfig {
        limits,
        ..Default::default()
    })
    .unwrap();
    let mut bad = attack(&sb, "infinite-loop");
    let started = Instant::now();
    let e = bad
        .on_bar(&mut RecordingHost::default(), 0, &numbered_bars(1)[0])
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(e, SandboxError::Trapped(TrapReason::Deadline(50))),
        "{e}"
    );
    assert!(
        took >= Duration::from_millis(45) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[test]
fn a_trapped_pull_leaves_other_instances_untouched() {
    let sb = Sandbox::new(SandboxConfig::default()).unwrap();
    let mut bad = attack(&sb, "panic");
    let mut good = attack(&sb, "none");
    let bars: std::collections::VecDeque<_> =
        numbered_bars(100).into_iter().map(|b| (0, b)).collect();
    let mut host = RecordingHost {
        bars: bars.clone(),
        ..Default::default()
    };
    assert!(matches!(
        bad.on_bars(&mut host),
        Err(SandboxError::Trapped(TrapReason::Panic))
    ));
    assert_eq!(host.pulled, 1, "it trapped on its first bar");
    host.bars = bars;
    assert_eq!(good.on_bars(&mut host).unwrap(), 100);
    assert_eq!(good.snapshot().unwrap(), 100u64.to_le_bytes());
}

// ---------------------------------------------------------------------------------------------
// Attacks through the real engine, each next to a healthy sma-cross on GOOG's daily bars, which
// must trade exactly as it does alone.

/// What the attacker did and got, and whether its healthy neighbour missed anything.
struct Duo {
    /// The attacker's account state at the end, and why it stopped.
    state: StrategyState,
    stop_reason: Option<String>,
    accepted: usize,
    rejected: Vec<String>,
    /// The attacker's orders as the engine published them (accepted or rejected).
    published: Vec<OrderRequest>,
    logs: Vec<String>,
    attacker_trades: String,
}

/// Real bars for the duos: as many as goog_1d.csv has, from the bundled minute data.
fn goog() -> Vec<(usize, Bar)> {
    read_bars(&bundled_slice(2148))
        .into_iter()
        .map(|b| (0, b))
        .collect()
}

fn sma_cross(sb: &Sandbox) -> StrategyInstance {
    let code = sb.load(&component(guests::SMA_CROSS)).unwrap();
    let params = [
        ("fast", ParamValue::Int(10)),
        ("slow", ParamValue::Int(30)),
        ("mode", ParamValue::Choice("flip".into())),
    ];
    let params: Vec<Param> = params
        .into_iter()
        .map(|(n, v)| Param {
            name: n.into(),
            value: v,
        })
        .collect();
    code.instantiate(&params, &["GOOG".into()]).unwrap()
}

fn hostile_on(sb: &Sandbox, name: &str, iterations: i64) -> StrategyInstance {
    let code = sb.load(&component(guests::HOSTILE)).unwrap();
    code.instantiate(
        &[
            Param {
                name: "attack".into(),
                value: ParamValue::Choice(name.into()),
            },
            Param {
                name: "iterations".into(),
                value: ParamValue::Int(iterations),
            },
        ],
        &["GOOG".into()],
    )
    .unwrap()
}

fn engine_config(batch: bool) -> EngineConfig {
    EngineConfig {
        batch,
        ..EngineConfig::default()
    }
}

/// sma-cross alone on GOOG: the trades its neighbours must not change.
fn healthy_alone(batch: bool) -> String {
    let sb = Sandbox::new(SandboxConfig::default()).unwrap();
    let mut log = EventLog::default();
    let mut engine = Engine::new(engine_config(batch), vec!["GOOG".into()], &mut log);
    engine
        .add_strategy(
            "healthy",
            Box::new(sma_cross(&sb)),
            &["GOOG".into()],
            10_000.0,
            RiskLimits::default(),
        )
        .unwrap();
    engine.process(&goog());
    trades_sha256(&engine.trades(0))
}

/// The attacker (account 1) next to sma-cross (account 0), in one engine.
fn next_to_healthy(sb: &Sandbox, attack: &str, iterations: i64, batch: bool) -> Duo {
    let mut log = EventLog::default();
    let (healthy, attacker, state, logs) = {
        let mut engine = Engine::new(engine_config(batch), vec!["GOOG".into()], &mut log);
        engine
            .add_strategy(
                "healthy",
                Box::new(sma_cross(sb)),
                &["GOOG".into()],
                10_000.0,
                RiskLimits::default(),
            )
            .unwrap();
        engine
            .add_strategy(
                "attacker",
                Box::new(hostile_on(sb, attack, iterations)),
                &["GOOG".into()],
                10_000.0,
                RiskLimits::default(),
            )
            .unwrap();
        engine.process(&goog());
        let logs: Vec<String> = engine.logs(1).iter().map(|(_, _, m)| m.clone()).collect();
        (
            trades_sha256(&engine.trades(0)),
            trades_sha256(&engine.trades(1)),
            engine.state(1).clone(),
            logs,
        )
    };
    assert_eq!(
        healthy,
        healthy_alone(batch),
        "the healthy neighbour of `{attack}` traded differently"
    );
    let mut duo = Duo {
        state,
        stop_reason: None,
        accepted: 0,
        rejected: Vec::new(),
        published: Vec::new(),
        logs,
        attacker_trades: attacker,
    };
    for e in log.0 {
        match e {
            Event::OrderAccepted {
                account: 1,
                request,
                ..
            } => {
                duo.accepted += 1;
                duo.published.push(request);
            }
            Event::OrderRejected {
                account: 1,
                reason,
                request,
                ..
            } => {
                duo.rejected.push(reason);
                duo.published.push(request);
            }
            Event::StrategyStatus {
                account: 1, reason, ..
            } => duo.stop_reason = Some(reason),
            _ => {}
        }
    }
    duo
}

#[test]
fn a_peeking_guest_sees_no_future_and_decides_alike_in_every_mode() {
    let sb = Sandbox::new(SandboxConfig::default()).unwrap();
    let pulled = next_to_healthy(&sb, "peek", 0, true);
    let per_bar = next_to_healthy(&sb, "peek", 0, false);
    assert_eq!(
        pulled.state,
        StrategyState::Running,
        "{:?}",
        pulled.stop_reason
    );
    assert!(pulled.accepted > 1_000, "{} orders", pulled.accepted);
    assert_eq!(pulled.accepted, per_bar.accepted);
    assert_eq!(pulled.attacker_trades, per_bar.attacker_trades);
    // The same rule built for the frozen 0.1.0 contract, run one call per bar, trades alike.
    let code = sb.load(&component(guests::CONTRACT_V0_1)).unwrap();
    assert_eq!(code.contract_version(), ContractVersion::V0_1);
    let mut log = EventLog::default();
    let v0_1 = {
        let mut engine = Engine::new(engine_config(true), vec!["GOOG".into()], &mut log);
        let inst = code.instantiate(&[], &["GOOG".into()]).unwrap();
        assert!(!inst.pulls_bars());
        engine
            .add_strategy(
                "v0.1",
                Box::new(inst),
                &["GOOG".into()],
                10_000.0,
                RiskLimits::default(),
            )
            .unwrap();
        engine.process(&goog());
        assert_eq!(engine.state(0), &StrategyState::Running);
        trades_sha256(&engine.trades(0))
    };
    assert_eq!(v0_1, pulled.attacker_trades);
}

#[test]
fn recent_bars_over_its_cap_is_refused_not_clamped() {
    let sb = Sandbox::new(SandboxConfig::default()).unwrap();
    let mut peek = hostile_on(&sb, "peek", 0);
    let mut host = RecordingHost {
        bars: numbered_bars(3).into_iter().map(|b| (0, b)).collect(),
        ..Default::default()
    };
    peek.on_bars(&mut host).unwrap();
    assert!(peek.is_active());
    let logged: Vec<&str> = host.logs.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(
        logged,
        [
            "recent-bars(10001): count 10001 is over the cap of 10000 bars",
            "recent-bars(4294967295): count 4294967295 is over the cap of 10000 bars",
        ]
    );
}

#[test]
fn resting_order_floods_are_capped_and_cost_the_neighbour_nothing() {
    let sb = Sandbox::new(SandboxConfig::default()).unwrap();
    let duo = next_to_healthy(&sb, "resting-flood", 0, true);
    assert_eq!(duo.state, StrategyState::Running, "{:?}", duo.stop_reason);
    // 1,000 resting orders by default; every later one is refused with the reason.
    assert_eq!(duo.accepted, 1_000);
    assert!(!duo.rejected.is_empty());
    assert!(
        duo.rejected
            .iter()
            .all(|r| r.contains("max_resting_orders")),
        "{:?}",
        duo.rejected.first()
    );
}

#[test]
fn oco_group_floods_are_capped() {
    let sb = Sandbox::new(SandboxConfig::default()).unwrap();
    let duo = next_to_healthy(&sb, "oco-flood", 0, true);
    assert_eq!(duo.state, StrategyState::Running, "{:?}", duo.stop_reason);
    assert!(
        duo.accepted < 100,
        "{} orders in one OCO group",
        duo.accepted
    );
    assert!(
        duo.rejected
            .iter()
            .any(|r| r.contains("OCO") || r.contains("oco")),
        "{:?}",
        duo.rejected.first()
    );
}

#[test]
fn huge_tags_symbols_and_oco_groups_are_refused_before_anything_keeps_them() {
    let sb = Sandbox::new(SandboxConfig::default()).unwrap();
    let duo = next_to_healthy(&sb, "huge-strings", 0, true);
    assert_eq!(duo.state, StrategyState::Running, "{:?}", duo.stop_reason);
    assert_eq!(duo.accepted, 0);
    // Refused in the sandbox: no event carries the strings, the strategy hears why.
    assert!(
        duo.published.is_empty(),
        "{} orders published",
        duo.published.len()
    );
    let mut reasons: Vec<&str> = duo.logs.iter().map(String::as_str).take(3).collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "oco-group is 1048576 bytes, over the 64-byte cap",
            "symbol is 1048576 bytes, over the 32-byte cap",
            "tag is 1048576 bytes, over the 128-byte cap",
        ]
    );
}

#[test]
fn log_floods_are_capped_next_to_a_healthy_strategy() {
    let sb = Sandbox::new(SandboxConfig::default()).unwrap();
    let duo = next_to_healthy(&sb, "log-spam", 0, true);
    assert_eq!(duo.state, StrategyState::Running, "{:?}", duo.stop_reason);
    // 100 lines kept per bar, each cut to 1 KiB.
    assert!(duo.logs.iter().all(|m| m.len() <= 1024 + '…'.len_utf8()));
}

#[test]
fn a_slow_burn_under_every_per_call_limit_is_charged_and_contained() {
    let sb = Sandbox::new(SandboxConfig::default()).unwrap();
    // 200,000 loop iterations a bar: under the 10 M fuel of a call, far over a healthy one.
    let duo = next_to_healthy(&sb, "burn", 200_000, true);
    assert_eq!(duo.state, StrategyState::Running, "{:?}", duo.stop_reason);
}

#[test]
fn a_huge_describe_is_refused_at_load_naming_the_caps() {
    let e = Sandbox::new(SandboxConfig::default())
        .unwrap()
        .load(&component(guests::HUGE_DESCRIBE))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "component refused: describe output breaks its caps: description is 5000 bytes, \
         over the 4096-byte cap; parameter `pick` has 100 choices, over the cap of 64; \
         the description totals 85970 bytes, over the cap of 65536"
    );
}

#[test]
fn a_huge_configure_error_is_cut() {
    let sb = Sandbox::new(SandboxConfig::default()).unwrap();
    let code = sb.load(&component(guests::HOSTILE)).unwrap();
    let e = code
        .instantiate(
            &[Param {
                name: "attack".into(),
                value: ParamValue::Choice("huge-configure-error".into()),
            }],
            &[],
        )
        .unwrap_err();
    let SandboxError::Configure(msg) = &e else {
        panic!("{e}")
    };
    assert_eq!(msg.len(), 1024 + '…'.len_utf8());
    assert!(msg.starts_with("eeee") && msg.ends_with('…'));
}
