//! Sandbox benchmarks: `cargo bench -p qtm-tests --bench sandbox`.
//!
//! Every ratio is measured in one run on the same data, so machine noise cancels out:
//! - ns per bar for `sma-cross`: native (the guest's own crossover source compiled natively),
//!   WASM one call per bar, WASM pulling bars with exact semantics (`on-bars` + `next-bar`), and the
//!   same on a trending series with no signals (pure compute + transfer);
//! - instantiate + configure µs (on-demand and pooled), load from the `.cwasm` cache µs;
//! - hot-swap pause p50/p99 (snapshot → restore → swap; the new instance prepared off the path);
//! - RSS per live instance.
//!
//! Environment: `QTM_BENCH_BARS` (default 1,000,000), `QTM_BENCH_INSTANCES` (default 10,000).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use qtm_runtime::model::{
    Bar, LogLevel, OpenOrder, OrderChange, OrderRequest, Param, ParamValue, Position, Signal,
};
use qtm_runtime::sandbox::{Sandbox, SandboxConfig, StrategyCode, StrategyHost};
use qtm_tests::bench::rss_kib;
use qtm_tests::sma_crossover::Crossover;
use qtm_tests::{bench_data, component, guests, read_bars};

/// The cheapest possible host: counts orders, answers queries with constants, and hands out
/// `bars[next..end]` when pulled.
#[derive(Default)]
struct CountingHost<'a> {
    orders: u64,
    bars: &'a [Bar],
    next: usize,
    end: usize,
}

impl StrategyHost for CountingHost<'_> {
    fn log(&mut self, _: LogLevel, _: &str) {}
    fn submit_order(&mut self, _: OrderRequest) -> Result<u64, String> {
        self.orders += 1;
        Ok(self.orders)
    }
    fn cancel_order(&mut self, _: u64) -> Result<(), String> {
        Ok(())
    }
    fn modify_order(&mut self, _: u64, _: OrderChange) -> Result<(), String> {
        Ok(())
    }
    fn position(&mut self, _: &str) -> Position {
        Position::default()
    }
    fn cash(&mut self) -> f64 {
        0.0
    }
    fn equity(&mut self) -> f64 {
        0.0
    }
    fn open_orders(&mut self) -> Vec<OpenOrder> {
        Vec::new()
    }
    fn signal(&mut self, _: &str) -> Option<Signal> {
        None
    }
    fn now_ns(&mut self) -> i64 {
        0
    }
    fn recent_bars(&mut self, _: &str, _: u32) -> Result<Vec<Bar>, String> {
        Ok(Vec::new())
    }
    fn next_bar(&mut self) -> Option<(u32, Bar)> {
        let b = *self.bars[..self.end].get(self.next)?;
        self.next += 1;
        Some((0, b))
    }
}

/// The 1M-bar series of `shared/data/README.md`, built in memory from `bt_index_1m_2006.csv`:
/// even copies forward, odd copies reversed with open and close swapped, ts on a 60 s grid.
fn bench_series(n: usize) -> Vec<Bar> {
    let src = read_bars(&bench_data("bt_index_1m_2006.csv"));
    let first_ts = src[0].ts;
    let mut out = Vec::with_capacity(n);
    let mut copy = 0;
    while out.len() < n {
        let forward = copy % 2 == 0;
        for k in 0..src.len() {
            if out.len() == n {
                break;
            }
            let b = if forward {
                src[k]
            } else {
                src[src.len() - 1 - k]
            };
            let (open, close) = if forward {
                (b.open, b.close)
            } else {
                (b.close, b.open)
            };
            let ts = first_ts + 60 * out.len() as i64;
            out.push(Bar {
                ts,
                open,
                close,
                ..b
            });
        }
        copy += 1;
    }
    out
}

fn trend_series(n: usize) -> Vec<Bar> {
    (0..n)
        .map(|i| {
            let p = 100.0 + i as f64 * 0.001;
            Bar {
                ts: i as i64 * 60,
                open: p,
                high: p + 0.01,
                low: p - 0.01,
                close: p,
                volume: 1.0,
            }
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn params() -> Vec<Param> {
    let p = |n: &str, v| Param {
        name: n.into(),
        value: v,
    };
    vec![
        p("fast", ParamValue::Int(10)),
        p("slow", ParamValue::Int(30)),
        p("mode", ParamValue::Choice("flip".into())),
    ]
}

fn native(bars: &[Bar]) -> u64 {
    let mut cross = Crossover::new(10, 30);
    let mut orders = 0u64;
    let mut last = None;
    for b in bars {
        if let Some(c) = cross.update(black_box(b.close))
            && last.replace(c) != Some(c)
        {
            orders += 1;
        }
    }
    orders
}

fn per_call(code: &Arc<StrategyCode>, bars: &[Bar]) -> u64 {
    let mut inst = code.instantiate(&params(), &["X".into()]).unwrap();
    let mut host = CountingHost::default();
    for b in bars {
        inst.on_bar(&mut host, 0, b).unwrap();
    }
    host.orders
}

/// Pulled runs of up to `batch_size` bars (`on-bars` + `next-bar`), as the engine offers them.
fn pulled(code: &Arc<StrategyCode>, bars: &[Bar], batch_size: usize) -> u64 {
    let mut inst = code.instantiate(&params(), &["X".into()]).unwrap();
    let mut host = CountingHost {
        bars,
        ..Default::default()
    };
    while host.next < bars.len() {
        host.end = (host.next + batch_size).min(bars.len());
        while host.next < host.end && inst.on_bars(&mut host).unwrap() > 0 {}
    }
    host.orders
}

/// Median ns/bar over `reps` runs, checking every run gives `expect` orders.
fn time_ns_per_bar(reps: usize, bars: usize, expect: u64, mut f: impl FnMut() -> u64) -> f64 {
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                let orders = f();
                let ns = t.elapsed().as_nanos() as f64 / bars as f64;
                assert_eq!(orders, expect, "order count differs from native");
                ns
            })
            .collect(),
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probes with --list
    }
    let n: usize = std::env::var("QTM_BENCH_BARS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let instances: usize = std::env::var("QTM_BENCH_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let reps = 5;
    let sb = Sandbox::new(SandboxConfig::default()).unwrap();
    let bytes = component(guests::SMA_CROSS);
    let code = sb.load(&bytes).unwrap();
    // For profiling one path: `QTM_BENCH_ONLY=trend perf record …`.
    match std::env::var("QTM_BENCH_ONLY").as_deref() {
        Ok("trend") => {
            let trend = trend_series(n);
            for _ in 0..20 {
                pulled(&code, &trend, 4096);
            }
            return;
        }
        Ok("per-call") => {
            let bars = bench_series(n);
            for _ in 0..3 {
                per_call(&code, &bars);
            }
            return;
        }
        Ok("orders") => {
            let bars = bench_series(n);
            for _ in 0..10 {
                pulled(&code, &bars, 4096);
            }
            return;
        }
        _ => {}
    }

    println!("## sma-cross 10/30 flip, {n} bars (bench series), median of {reps} runs\n");
    let bars = bench_series(n);
    let expect = native(&bars);
    let nat = time_ns_per_bar(reps, n, expect, || native(&bars));
    let call = time_ns_per_bar(3, n, expect, || per_call(&code, &bars));
    let b1k = time_ns_per_bar(reps, n, expect, || pulled(&code, &bars, 1024));
    let b4k = time_ns_per_bar(reps, n, expect, || pulled(&code, &bars, 4096));
    println!(
        "orders: {expect} ({:.2} % of bars)\n",
        expect as f64 * 100.0 / n as f64
    );
    println!("| mode | ns/bar | × native |\n|---|---:|---:|");
    println!("| native (same crossover source) | {nat:.2} | 1.00 |");
    println!("| WASM, one call per bar | {call:.1} | {:.1} |", call / nat);
    println!(
        "| WASM, pulled, runs of up to 1,024 | {b1k:.2} | {:.2} |",
        b1k / nat
    );
    println!(
        "| WASM, pulled, runs of up to 4,096 | {b4k:.2} | {:.2} |",
        b4k / nat
    );

    let trend = trend_series(n);
    let nat_t = time_ns_per_bar(reps, n, 0, || native(&trend));
    let b4k_t = time_ns_per_bar(reps, n, 0, || pulled(&code, &trend, 4096));
    println!("| native, trending series (no signals) | {nat_t:.2} | 1.00 |");
    println!(
        "| WASM, pulled, runs of up to 4,096, no signals | {b4k_t:.2} | {:.2} |\n",
        b4k_t / nat_t
    );

    println!("## Instantiation and loading\n");
    let inst_us = |sb: &Sandbox| {
        let code = sb.load(&bytes).unwrap();
        let mut v: Vec<f64> = (0..2_000)
            .map(|_| {
                let t = Instant::now();
                let i = code.instantiate(&params(), &["X".into()]).unwrap();
                let us = t.elapsed().as_secs_f64() * 1e6;
                drop(i);
                us
            })
            .collect();
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[v.len() * 99 / 100])
    };
    let (d50, d99) = inst_us(&sb);
    let pooled = Sandbox::new(SandboxConfig {
        pool_slots: 64,
        ..Default::default()
    })
    .unwrap();
    let (p50, p99) = inst_us(&pooled);
    println!("| instantiate + configure | p50 µs | p99 µs |\n|---|---:|---:|");
    println!("| on-demand allocator | {d50:.1} | {d99:.1} |");
    println!("| pooling allocator (slot reuse) | {p50:.1} | {p99:.1} |\n");

    let dir = tempfile::tempdir().unwrap();
    let cached = SandboxConfig {
        cache_dir: Some(dir.path().into()),
        ..Default::default()
    };
    let cold = Sandbox::new(cached.clone()).unwrap().load(&bytes).unwrap();
    let warm: Vec<f64> = (0..50)
        .map(|_| {
            let sb = Sandbox::new(cached.clone()).unwrap();
            let t = Instant::now();
            let c = sb.load(&bytes).unwrap();
            assert!(c.from_cache());
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    println!("| load (gate + sha256 + compile or `.cwasm` + describe) | µs |\n|---|---:|");
    println!(
        "| compile with Cranelift (cold) | {:.0} |",
        cold.compile_time().as_secs_f64() * 1e6
    );
    println!(
        "| from the `.cwasm` cache, median of 50 | {:.0} |\n",
        median(warm)
    );

    println!("## Hot-swap pause (snapshot → restore → swap; new instance prepared off the path)\n");
    let mut inst = code.instantiate(&params(), &["X".into()]).unwrap();
    let mut host = CountingHost::default();
    let mut pauses = Vec::new();
    for (i, b) in bars[..200_000].iter().enumerate() {
        inst.on_bar(&mut host, 0, b).unwrap();
        if i % 200 == 199 {
            let next = inst.prepare_swap(&code).unwrap();
            let t = Instant::now();
            let old = inst.swap(next).unwrap();
            pauses.push(t.elapsed());
            drop(old);
        }
    }
    pauses.sort();
    println!("| swaps | p50 µs | p99 µs | max µs |\n|---:|---:|---:|---:|");
    println!(
        "| {} | {:.1} | {:.1} | {:.1} |\n",
        pauses.len(),
        percentile(&pauses, 0.5).as_secs_f64() * 1e6,
        percentile(&pauses, 0.99).as_secs_f64() * 1e6,
        pauses.last().unwrap().as_secs_f64() * 1e6
    );

    println!("## RSS per live instance ({instances} sma-cross instances, 100 bars each)\n");
    let before = rss_kib();
    let t = Instant::now();
    let mut live: Vec<_> = (0..instances)
        .map(|_| code.instantiate(&params(), &["X".into()]).unwrap())
        .collect();
    let create = t.elapsed();
    let after_init = rss_kib();
    for b in &bars[..100] {
        for i in &mut live {
            i.on_bar(&mut host, 0, b).unwrap();
        }
    }
    let after_bars = rss_kib();
    println!(
        "| after configure | after 100 bars | total Δ RSS | create each |\n|---:|---:|---:|---:|"
    );
    println!(
        "| {:.1} KiB | {:.1} KiB | {:.1} MiB | {:.1} µs |",
        (after_init - before) as f64 / instances as f64,
        (after_bars - before) as f64 / instances as f64,
        (after_bars - before) as f64 / 1024.0,
        create.as_secs_f64() * 1e6 / instances as f64
    );
    black_box(live);
}
