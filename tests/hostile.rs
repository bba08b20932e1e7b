//! Hostile guests are contained: each is stopped with the right reason, in bounded time, and a
//! healthy strategy in the same process receives every bar.

use std::time::{Duration, Instant};

use qtm_runtime::model::{Param, ParamValue};
use qtm_runtime::sandbox::{
    InstanceStatus, Limits, Sandbox, SandboxConfig, SandboxError, StrategyInstance, TrapReason,
};
use qtm_tests::{RecordingHost, component, guests, numbered_bars};

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
fn bad_return_from_resume_disables_the_instance() {
    let sb = Sandbox::new(SandboxConfig::default()).unwrap();
    let mut bad = attack(&sb, "bad-return");
    let mut batch = qtm_runtime::sandbox::BarBatch::default();
    for b in numbered_bars(10) {
        batch.push(0, &b);
    }
    bad.load_bars(&batch).unwrap();
    let e = bad.resume(&mut RecordingHost::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the strategy trapped: trap: bad return: resume reported 1000000 bars handled but only 10 were loaded"
    );
    assert!(!bad.is_active());
    let e = bad.resume(&mut RecordingHost::default()).unwrap_err();
    assert!(matches!(e, SandboxError::Disabled(_)), "{e}");
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
    assert_eq!(bad.stats().logs_dropped, 2 * 1_900);
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
fn a_trapped_batch_leaves_other_instances_untouched() {
    let sb = Sandbox::new(SandboxConfig::default()).unwrap();
    let mut bad = attack(&sb, "panic");
    let mut good = attack(&sb, "none");
    let mut batch = qtm_runtime::sandbox::BarBatch::default();
    for b in numbered_bars(100) {
        batch.push(0, &b);
    }
    bad.load_bars(&batch).unwrap();
    good.load_bars(&batch).unwrap();
    let mut host = RecordingHost::default();
    assert!(matches!(
        bad.resume(&mut host),
        Err(SandboxError::Trapped(TrapReason::Panic))
    ));
    assert_eq!(good.resume(&mut host).unwrap(), 100);
    assert_eq!(good.snapshot().unwrap(), 100u64.to_le_bytes());
}
