//! Booking fills in the store, as the live recorder does it: `cargo bench -p qtm-tests --bench
//! fill_booking`.
//!
//! A real SQLite store (WAL) in a temporary directory (or the PostgreSQL database of
//! `QTM_BENCH_BOOK_DATABASE_URL`; `postgres` starts a throwaway server), `QTM_BENCH_BOOK_ACCOUNTS` strategy
//! accounts (default 100) trading one symbol each, flipping between long and short. Each round
//! is what the recorder writes for one millisecond batch of the live bench: the orders the
//! strategies placed (one transaction), then the fills of `QTM_BENCH_BOOK_FILLS` of them
//! (default 3) with the bar cursors of 10 symbols and a journal entry (one transaction, what a
//! fill waits for before it is published). Prints the cost of each part per round.

use std::time::Instant;

use qtm_runtime::model::{Bar, OrderKind, OrderRequest, Quantity, Side};
use qtm_runtime::store::live::Cursor;
use qtm_runtime::store::orders::{AccountId, NewOrder};
use qtm_runtime::store::strategies::{NewStrategy, NewVersion};
use qtm_runtime::store::writer::Writer;
use qtm_runtime::store::{self, Store};
use qtm_tests::bench::{cpu_ticks, env_or, io_bytes, pct, steal_percent};
use serde_json::json;

fn main() {
    qtm_tests::bench::run_async(run());
}

async fn run() {
    let accounts = env_or("QTM_BENCH_BOOK_ACCOUNTS", 100) as usize;
    let fills = env_or("QTM_BENCH_BOOK_FILLS", 3) as usize;
    let rounds = env_or("QTM_BENCH_BOOK_ROUNDS", 5000) as usize;

    let dir = tempfile::tempdir().unwrap();
    let url = qtm_tests::bench::bench_database_url("QTM_BENCH_BOOK_DATABASE_URL", dir.path());
    let store = Store::open(&url).await.unwrap();
    let describe = json!({});
    let version = NewVersion {
        content_sha256: &"0".repeat(64),
        contract_version: "qtm:strategy@0.1.0",
        describe: &describe,
        component: b"bench",
        size: None,
        created_by: None,
    };
    let mut owners = Vec::new();
    for i in 0..accounts {
        let r = store::strategies::create(
            &store,
            &NewStrategy {
                name: &format!("s-{i}"),
                description: "",
                owner_id: None,
                source: "bench",
                cloned_from: None,
            },
            &version,
            &json!({}),
            &[format!("S{}", i % 10)],
        )
        .await
        .unwrap();
        let instance = store::strategies::instance(&store, r.strategy.id)
            .await
            .unwrap();
        owners.push((
            qtm_runtime::live::strategy_account(r.strategy.id),
            instance.id,
        ));
    }

    // The writer blocks its thread, as on the recorder's own thread: off the runtime.
    tokio::task::spawn_blocking(move || book(&store, &owners, accounts, fills, rounds))
        .await
        .unwrap();
}

/// The rounds themselves, on a thread of their own.
fn book(store: &Store, owners: &[(AccountId, i64)], accounts: usize, fills: usize, rounds: usize) {
    let (mut db, _checkpoints) = Writer::open_without_checkpoints(store).unwrap();
    let bar = Bar {
        ts: 0,
        open: 100.0,
        high: 100.0,
        low: 100.0,
        close: 100.0,
        volume: 1.0,
    };
    let (mut t_orders, mut t_fills, mut t_commit) = (Vec::new(), Vec::new(), Vec::new());
    let mut next = 0usize;
    let started = Instant::now();
    let ticks0 = cpu_ticks();
    let wchar0 = io_bytes("wchar:");
    for round in 0..rounds {
        let ts = 1_700_000_000 + round as i64;
        // The orders of this round's accounts (filled below, as on the next bar live).
        let t0 = Instant::now();
        let mut placed = Vec::with_capacity(fills);
        let mut placed_by = Vec::with_capacity(fills);
        for _ in 0..fills {
            let (account, instance) = &owners[next % accounts];
            let k = next / accounts;
            next += 1;
            let side = if k.is_multiple_of(2) {
                Side::Buy
            } else {
                Side::Sell
            };
            let quantity = if k == 0 { 1.0 } else { 2.0 };
            let request = OrderRequest {
                symbol: format!("S{}", (next - 1) % 10),
                side,
                quantity: Quantity::Units(quantity),
                kind: OrderKind::Market,
                time_in_force: Default::default(),
                take_profit: None,
                stop_loss: None,
                oco_group: None,
                tag: None,
            };
            let mut o = NewOrder::from_request(*account, None, &request);
            o.instance_id = Some(*instance);
            placed.push((db.insert_order(&o).unwrap(), quantity));
            placed_by.push(*account);
        }
        db.commit().unwrap();
        let t1 = Instant::now();
        // As the recorder does: the batch's orders and accounts read at once.
        let ids: Vec<i64> = placed.iter().map(|(id, _)| *id).collect();
        db.prefetch(&ids, &placed_by).unwrap();
        for (id, quantity) in placed {
            db.record_fill(id, quantity, 100.0 + (round % 7) as f64, 0.1, ts)
                .unwrap();
        }
        let cursors: Vec<(String, Cursor)> = (0..10)
            .map(|s| {
                (
                    format!("S{s}"),
                    Cursor {
                        seq: round as i64,
                        ts,
                        close: 100.0,
                    },
                )
            })
            .collect();
        let bars: Vec<(String, u64, Bar)> = (0..10)
            .map(|s| (format!("S{s}"), round as u64, bar))
            .collect();
        db.save_bars(&bars).unwrap();
        db.save_cursors(&cursors).unwrap();
        let t2 = Instant::now();
        db.commit().unwrap();
        let t3 = Instant::now();
        t_orders.push((t1 - t0).as_secs_f64() * 1e6);
        t_fills.push((t2 - t1).as_secs_f64() * 1e6);
        t_commit.push((t3 - t2).as_secs_f64() * 1e6);
    }
    let elapsed = started.elapsed();
    let steal = steal_percent(ticks0, cpu_ticks());
    let written = io_bytes("wchar:").saturating_sub(wchar0);
    println!(
        "fill booking: {accounts} accounts, {fills} fills per round, {rounds} rounds in {:.2} s",
        elapsed.as_secs_f64()
    );
    println!("CPU time stolen by the hypervisor meanwhile: {steal:.1} %");
    // Deterministic where the times are not: one commit per round, whole WAL pages.
    println!(
        "store writes: {:.1} KiB per fill with its order",
        written as f64 / 1024.0 / (rounds * fills).max(1) as f64
    );
    println!("| part (per round) | p50 µs | p99 µs |");
    println!("|---|---:|---:|");
    for (name, v) in [
        ("orders placed, committed", &mut t_orders),
        ("fills + cursors + journal (statements)", &mut t_fills),
        ("their commit", &mut t_commit),
    ] {
        v.sort_by(f64::total_cmp);
        println!("| {name} | {:.1} | {:.1} |", pct(v, 0.5), pct(v, 0.99));
    }
}
