//! Hot swap and clone at the sandbox level, under a stream of numbered bars: nothing lost,
//! nothing seen twice, the new code runs afterwards, and a failed swap changes nothing.

use std::sync::Arc;

use qtm_runtime::model::{Param, ParamValue};
use qtm_runtime::sandbox::{
    Limits, Sandbox, SandboxConfig, SandboxError, StrategyCode, StrategyInstance,
};
use qtm_tests::{RecordingHost, component, guests, numbered_bars};

fn sandbox() -> Sandbox {
    // Every bar logs a line; keep them all, even in big batches.
    let limits = Limits {
        log_lines_per_call: 100_000,
        ..Default::default()
    };
    Sandbox::new(SandboxConfig {
        limits,
        ..Default::default()
    })
    .unwrap()
}

fn act_every(n: i64) -> Vec<Param> {
    vec![Param {
        name: "act_every".into(),
        value: ParamValue::Int(n),
    }]
}

/// `(version, seq, count)` from each seq-recorder log line.
fn seen(host: &RecordingHost) -> Vec<(String, i64, u64)> {
    host.logs
        .iter()
        .map(|(_, m)| {
            let mut it = m.split(' ');
            let v = it.next().unwrap().to_string();
            let seq = it
                .next()
                .unwrap()
                .trim_start_matches("seq=")
                .parse()
                .unwrap();
            let count = it
                .next()
                .unwrap()
                .trim_start_matches("count=")
                .parse()
                .unwrap();
            (v, seq, count)
        })
        .collect()
}

/// Every seq in 1..=n exactly once, in order, with `count` continuing across swaps.
fn assert_exactly_once(seen: &[(String, i64, u64)], n: usize) {
    let seqs: Vec<i64> = seen.iter().map(|s| s.1).collect();
    assert_eq!(seqs, (1..=n as i64).collect::<Vec<_>>());
    let counts: Vec<u64> = seen.iter().map(|s| s.2).collect();
    assert_eq!(
        counts,
        (1..=n as u64).collect::<Vec<_>>(),
        "state carried across the swap"
    );
}

fn codes(sb: &Sandbox) -> (Arc<StrategyCode>, Arc<StrategyCode>) {
    (
        sb.load(&component(guests::SEQ_RECORDER_V1)).unwrap(),
        sb.load(&component(guests::SEQ_RECORDER_V2)).unwrap(),
    )
}

#[test]
fn hot_swap_between_bars_loses_and_repeats_nothing() {
    let sb = sandbox();
    let (v1, v2) = codes(&sb);
    let symbols = vec!["S".to_string()];
    let mut inst = v1.instantiate(&[], &symbols).unwrap();
    let mut host = RecordingHost::default();
    let bars = numbered_bars(1_000);

    // Bars keep flowing while v2 is prepared on another thread (off the hot path).
    let (code, params, syms) = (v2.clone(), inst.params().to_vec(), symbols.clone());
    let preparing = std::thread::spawn(move || code.instantiate(&params, &syms));
    let mut i = 0;
    // Keep the flow going while v2 compiles, but leave bars for after the swap on a slow day.
    while i < 400 || (!preparing.is_finished() && i < bars.len() - 100) {
        inst.on_bar(&mut host, 0, &bars[i]).unwrap();
        i += 1;
    }
    let prepared: StrategyInstance = preparing.join().unwrap().unwrap();
    let swapped_at = i;
    let old = inst.swap(prepared).unwrap();
    drop(old);
    for bar in &bars[i..] {
        inst.on_bar(&mut host, 0, bar).unwrap();
    }

    let seen = seen(&host);
    assert_exactly_once(&seen, 1_000);
    assert!(seen[..swapped_at].iter().all(|s| s.0 == "v1"));
    assert!(
        seen[swapped_at..].iter().all(|s| s.0 == "v2"),
        "the new code runs after the swap"
    );
    assert_eq!(inst.code().info().version, "v2");
}

#[test]
fn hot_swap_between_pulls_continues_with_the_next_bar_in_the_new_code() {
    let sb = sandbox();
    let (v1, v2) = codes(&sb);
    let symbols = vec!["S".to_string()];
    let mut inst = v1.instantiate(&act_every(100), &symbols).unwrap();
    let mut host = RecordingHost {
        bars: numbered_bars(1_000).into_iter().map(|b| (0, b)).collect(),
        ..Default::default()
    };
    // Bar 100 placed an order: the pull stops right after it.
    assert_eq!(inst.on_bars(&mut host).unwrap(), 100);
    assert_eq!(host.orders.len(), 1);
    // Swap back and forth at every stop: v1 → v2 → v1 (rollback) → …
    let mut versions = vec![];
    loop {
        let next_code = if inst.code().info().version == "v1" {
            &v2
        } else {
            &v1
        };
        let prepared = inst.prepare_swap(next_code).unwrap();
        inst.swap(prepared).unwrap();
        versions.push(inst.code().info().version.clone());
        let n = inst.on_bars(&mut host).unwrap();
        if n == 0 {
            break;
        }
        assert_eq!(n, 100);
    }
    let seen = seen(&host);
    assert_exactly_once(&seen, 1_000);
    for (k, chunk) in seen.chunks(100).enumerate() {
        let want = if k % 2 == 0 { "v1" } else { "v2" };
        assert!(
            chunk.iter().all(|s| s.0 == want),
            "bars {}..: {:?}",
            k * 100 + 1,
            chunk[0]
        );
    }
    assert_eq!(host.orders.len(), 10);
    // Each order came on the 100th bar of its pull: the host had handed out exactly that many.
    assert_eq!(
        host.order_at,
        (1..=10).map(|k| k * 100).collect::<Vec<u32>>()
    );
    assert_eq!(versions.len(), 10);
}

#[test]
fn a_failed_swap_keeps_the_old_code_running() {
    let sb = sandbox();
    let (v1, _) = codes(&sb);
    let symbols = vec!["S".to_string()];
    let mut inst = v1.instantiate(&[], &symbols).unwrap();
    let mut host = RecordingHost::default();
    let bars = numbered_bars(100);
    for bar in &bars[..50] {
        inst.on_bar(&mut host, 0, bar).unwrap();
    }
    // sma-cross cannot take seq-recorder's state: restore fails, nothing changes.
    let sma = sb.load(&component(guests::SMA_CROSS)).unwrap();
    let wrong = sma.instantiate(&[], &symbols).unwrap();
    let e = inst.swap(wrong).unwrap_err();
    assert!(matches!(e, SandboxError::Restore(_)), "{e}");
    assert!(e.to_string().contains("sma-cross state version"), "{e}");
    // Preparing with parameters the new code refuses fails before touching anything either.
    let e = sma.instantiate(
        &[Param {
            name: "act_every".into(),
            value: ParamValue::Int(1),
        }],
        &symbols,
    );
    assert!(e.is_err());
    for bar in &bars[50..] {
        inst.on_bar(&mut host, 0, bar).unwrap();
    }
    let seen = seen(&host);
    assert_exactly_once(&seen, 100);
    assert!(seen.iter().all(|s| s.0 == "v1"));
}

#[test]
fn clone_with_or_without_state_and_with_new_parameters() {
    let sb = sandbox();
    let (v1, _) = codes(&sb);
    let symbols = vec!["S".to_string()];
    let mut inst = v1.instantiate(&[], &symbols).unwrap();
    let bars = numbered_bars(20);
    let mut host = RecordingHost::default();
    for bar in &bars[..10] {
        inst.on_bar(&mut host, 0, bar).unwrap();
    }
    let mut with_state = inst.clone_with(None, true).unwrap();
    let mut fresh = inst.clone_with(Some(&act_every(2)), false).unwrap();
    assert_eq!(fresh.params()[0].value, ParamValue::Int(2));

    let (mut h1, mut h2) = (RecordingHost::default(), RecordingHost::default());
    for bar in &bars[10..] {
        with_state.on_bar(&mut h1, 0, bar).unwrap();
        fresh.on_bar(&mut h2, 0, bar).unwrap();
    }
    // The stateful clone continues the count; the fresh one starts over and, with its own
    // parameters, buys every second bar.
    assert_eq!(seen(&h1).first().unwrap(), &("v1".to_string(), 11, 11));
    assert_eq!(seen(&h2).first().unwrap(), &("v1".to_string(), 11, 1));
    assert_eq!(h1.orders.len(), 0);
    assert_eq!(h2.orders.len(), 5);
    // The source is untouched.
    inst.on_bar(&mut host, 0, &bars[10]).unwrap();
    assert_eq!(seen(&host).last().unwrap(), &("v1".to_string(), 11, 11));
}
