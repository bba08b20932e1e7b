//! One exchange pass with and without 10,000 resting orders far from the market:
//! `cargo bench -p qtm-tests --bench exchange`.
//!
//! The exchange runs natively, outside a strategy's fuel and deadline, so what an account's
//! resting orders cost on each bar is host work the strategy does not pay for. The pass must
//! cost the orders a bar can act on, not the orders that rest. One account, one symbol
//! around 100; the far orders are limits, stops and stop-limits on both sides, 50 to 90 away.
//!
//! - `idle/N`: the pass on a bar that acts on none of the account's N resting orders (for
//!   N = 0 the account has no order at all and the pass returns at once).
//! - `bar/N`: one bar with the usual work, beside the N far orders: a market order placed,
//!   then the pass that fills it (booked into the portfolio).
//!
//! Goal: the 10,000 far orders add less than the cost of one bar without them,
//! `bar/10000 − bar/0 < bar/0`. On a shared machine a preempted sample inflates criterion's
//! estimates, so the bench also times the four cases in alternating batches and prints the
//! fastest batch of each, and that ratio, at the end.

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group};
use qtm_runtime::exchange::{Exchange, ExchangeConfig};
use qtm_runtime::model::{Bar, OrderKind, OrderRequest, Quantity, Side};
use qtm_runtime::portfolio::Portfolio;

const FAR: [usize; 2] = [0, 10_000];

fn bar(ts: i64) -> Bar {
    Bar {
        ts,
        open: 100.0,
        high: 101.0,
        low: 99.0,
        close: 100.0,
        volume: 1e9,
    }
}

/// An exchange whose account 0 rests `n` orders on symbol 0, none within 50 of 100.
fn with_far_orders(n: usize) -> Exchange {
    let mut x = Exchange::new(ExchangeConfig::default());
    for i in 0..n {
        let side = if i % 2 == 0 { Side::Buy } else { Side::Sell };
        let far = 50.0 + (i % 40) as f64;
        let (limit, stop) = match side {
            Side::Buy => (100.0 - far, 100.0 + far),
            Side::Sell => (100.0 + far, 100.0 - far),
        };
        let mut o = OrderRequest::market("X", side, Quantity::Units(1.0));
        o.kind = match i % 4 {
            0 | 1 => OrderKind::Limit(limit),
            2 => OrderKind::Stop(stop),
            _ => OrderKind::StopLimit { stop, limit },
        };
        x.submit(0, 0, o, 0, 0, 100.0);
    }
    x
}

fn portfolio() -> Portfolio {
    Portfolio::new(vec!["X".to_string()].into(), 1e12)
}

fn pass(c: &mut Criterion) {
    let mut g = c.benchmark_group("exchange");
    for n in FAR {
        g.bench_with_input(BenchmarkId::new("idle", n), &n, |b, &n| {
            let mut x = with_far_orders(n);
            let mut book = portfolio();
            let mut out = Vec::new();
            let mut step = 1;
            b.iter(|| {
                x.process_bar(0, 0, step, black_box(&bar(0)), &mut book, &mut out);
                step += 1;
            });
            assert!(out.is_empty(), "a far order filled");
            assert_eq!(x.open_count(0), n);
        });
        g.bench_with_input(BenchmarkId::new("bar", n), &n, |b, &n| {
            let mut x = with_far_orders(n);
            let mut book = portfolio();
            let mut out = Vec::new();
            let mut step = 1;
            let mut k = 0u64;
            b.iter(|| {
                // Alternate sides so the position stays flat; a fresh book now and then keeps
                // its trade list from growing through the run.
                let side = if k.is_multiple_of(2) {
                    Side::Buy
                } else {
                    Side::Sell
                };
                let market = OrderRequest::market("X", side, Quantity::Units(1.0));
                x.submit(0, 0, market, step, 0, 100.0);
                x.process_bar(0, 0, step + 1, black_box(&bar(0)), &mut book, &mut out);
                step += 2;
                k += 1;
                if k.is_multiple_of(10_000) {
                    book = portfolio();
                }
                out.clear();
            });
            assert_eq!(x.open_count(0), n, "the market orders filled");
        });
    }
    g.finish();
}

/// One bar of the `bar/N` case: a market order placed, then the pass that fills it.
fn one_bar(
    x: &mut Exchange,
    book: &mut Portfolio,
    out: &mut Vec<qtm_runtime::exchange::ExchangeEvent>,
    k: u64,
) {
    let side = if k.is_multiple_of(2) {
        Side::Buy
    } else {
        Side::Sell
    };
    let step = 2 * k + 1;
    x.submit(
        0,
        0,
        OrderRequest::market("X", side, Quantity::Units(1.0)),
        step,
        0,
        100.0,
    );
    x.process_bar(0, 0, step + 1, black_box(&bar(0)), book, out);
    out.clear();
}

/// The fastest of many alternating batches per case, ns per pass.
fn fastest_batches() {
    const BATCH: u64 = 2_000;
    let mut cases: Vec<(String, Exchange, Portfolio, bool)> = Vec::new();
    for n in FAR {
        for bar_work in [false, true] {
            let name = format!("{}/{n}", if bar_work { "bar" } else { "idle" });
            cases.push((name, with_far_orders(n), portfolio(), bar_work));
        }
    }
    let mut best = vec![f64::INFINITY; cases.len()];
    let mut k = 0u64;
    let mut out = Vec::new();
    for _round in 0..200 {
        for (i, (_, x, book, bar_work)) in cases.iter_mut().enumerate() {
            *book = portfolio();
            let t = Instant::now();
            for _ in 0..BATCH {
                k += 1;
                if *bar_work {
                    one_bar(x, book, &mut out, k);
                } else {
                    x.process_bar(0, 0, 2 * k + 1, black_box(&bar(0)), book, &mut out);
                }
            }
            let ns = t.elapsed().as_secs_f64() * 1e9 / BATCH as f64;
            best[i] = best[i].min(ns);
        }
    }
    println!("fastest of 200 alternating batches of {BATCH} passes:");
    for (i, (name, ..)) in cases.iter().enumerate() {
        println!("  {name}: {:.1} ns", best[i]);
    }
    let (bar0, bar_far) = (best[1], best[3]);
    println!(
        "10,000 far orders add {:.1} ns to a bar of {bar0:.1} ns: {:.2} of it (goal < 1)",
        bar_far - bar0,
        (bar_far - bar0) / bar0
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = pass
}

fn main() {
    // `cargo test --benches` probes the binary with `--list`.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    fastest_batches();
}
