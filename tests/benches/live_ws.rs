//! The live path end to end over real sockets: `cargo bench -p qtm-tests --bench live_ws`.
//!
//! A real server in this process (the one `qtm serve` runs) on a real SQLite store, with the
//! [`live` bench](live.rs)'s book: `QTM_BENCH_LIVE_SYMBOLS` symbols (default 10) and
//! `QTM_BENCH_LIVE_INSTANCES` sma-cross instances (default 100) enabled. One WebSocket client
//! pushes ticks into `/ws/ingest` at `QTM_BENCH_LIVE_RATE` per second (default 10,000, one
//! message every millisecond) for `QTM_BENCH_LIVE_SECS` seconds (default 5); two more read
//! `/ws/trades` and `/ws/market-data`. Per fill it records the time from writing the message
//! that carried the tick that filled it to reading the fill's message on the trades socket:
//! JSON in, ingest, strategy decision (on the tick before), risk, paper fill, stored, the
//! hub, JSON out, two loopback sockets. The same for each tick's bar on the market-data socket.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use qtm_tests::bench::{
    TickTimes, cpu_ticks, env_or, latencies_us, latency_row, live_book, sma_10_30, steal_percent,
};
use qtm_tests::server::TestServer;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn main() {
    qtm_tests::bench::run_async(run());
}

type Sent = Arc<Mutex<TickTimes>>;

/// Read `url`'s events until `stop`; for each `data` the `pick` maps to (symbol, ts), the
/// time it arrived. Also counts `lagged` notices (events the hub skipped for this client).
async fn read_stream(
    url: String,
    pick: fn(&Value) -> Option<(String, i64)>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> (Vec<(String, i64, Instant)>, u64) {
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .unwrap();
    let (mut seen, mut skipped) = (Vec::new(), 0);
    loop {
        let m = tokio::select! {
            m = ws.next() => m,
            _ = stop.changed() => break,
        };
        let Some(Ok(Message::Text(text))) = m else {
            if m.is_none() {
                break;
            }
            continue;
        };
        let at = Instant::now();
        let v: Value = serde_json::from_str(&text).unwrap_or_default();
        match v["type"].as_str() {
            Some("event") => {
                if let Some((symbol, ts)) = pick(&v["data"]) {
                    seen.push((symbol, ts, at));
                }
            }
            Some("lagged") => skipped += v["skipped"].as_u64().unwrap_or(0),
            _ => {}
        }
    }
    (seen, skipped)
}

fn fill_of(d: &Value) -> Option<(String, i64)> {
    if d["event"] != "fill" {
        return None;
    }
    Some((d["symbol"].as_str()?.to_string(), d["ts"].as_i64()?))
}

fn bar_of(d: &Value) -> Option<(String, i64)> {
    if d["event"] != "bar" {
        return None;
    }
    Some((d["symbol"].as_str()?.to_string(), d["bar"]["ts"].as_i64()?))
}

async fn run() {
    let n_symbols = env_or("QTM_BENCH_LIVE_SYMBOLS", 10) as usize;
    let n_instances = env_or("QTM_BENCH_LIVE_INSTANCES", 100) as usize;
    let rate = env_or("QTM_BENCH_LIVE_RATE", 10_000);
    let secs = env_or("QTM_BENCH_LIVE_SECS", 5);

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("qtm.db");
    let book = live_book(&db, "goog_1d.csv", n_symbols, n_instances, sma_10_30).await;
    book.store.close().await;
    let s = TestServer::start_on(&db, |_| {}).await;
    let live = s.server.state.live.clone();
    for &id in &book.ids {
        live.enable(id).await.unwrap();
    }
    let token = s.admin_token().await;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let fills = tokio::spawn(read_stream(
        format!("{}/ws/trades?token={token}", s.ws_base()),
        fill_of,
        stop_rx.clone(),
    ));
    let bars = tokio::spawn(read_stream(
        format!("{}/ws/market-data?token={token}", s.ws_base()),
        bar_of,
        stop_rx,
    ));
    // Let both subscriptions settle before the first tick.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (ingest, _) =
        // A feed writes small frames: without TCP_NODELAY each would wait for the
        // server's ACK of the one before.
        tokio_tungstenite::connect_async_with_config(
            format!("{}/ws/ingest?token={token}", s.ws_base()),
            None,
            true,
        )
        .await
        .unwrap();
    let (mut tx, mut rx) = ingest.split();
    let acks = tokio::spawn(async move {
        let (mut acked, mut refused) = (0u64, Vec::new());
        while let Some(Ok(m)) = rx.next().await {
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).unwrap_or_default();
                match v["type"].as_str() {
                    Some("ack") => acked += 1,
                    Some("error") => refused.push(v),
                    _ => {}
                }
            }
        }
        (acked, refused)
    });

    let sent: Sent = Default::default();
    let per_ms = (rate / 1000).max(1) as usize;
    let total = (rate * secs) as usize;
    let ticks0 = cpu_ticks();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut k, mut batches) = (0usize, 0u64);
    while k < total {
        tick.tick().await;
        let mut ticks = Vec::with_capacity(per_ms);
        let mut keys = Vec::with_capacity(per_ms);
        for _ in 0..per_ms {
            let (sym, ts, price) = book.tick(k);
            let symbol = &book.symbols[sym];
            ticks.push(json!({"symbol": symbol, "ts": ts, "price": price, "size": 1000}));
            keys.push((symbol.clone(), ts));
            k += 1;
        }
        let text = json!({"id": batches, "ticks": ticks}).to_string();
        batches += 1;
        let now = Instant::now();
        {
            let mut m = sent.lock().unwrap();
            for key in keys {
                m.insert(key, now);
            }
        }
        tx.send(Message::text(text)).await.unwrap();
    }
    let fed_in = started.elapsed();
    let steal = steal_percent(ticks0, cpu_ticks());
    live.flush().await.unwrap();
    // What is stored is published right after; give the sockets a moment to carry it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop_tx.send(true);
    tx.close().await.unwrap();
    let (fill_events, fills_skipped) = fills.await.unwrap();
    let (bar_events, bars_skipped) = bars.await.unwrap();
    let (acked, refused) = acks.await.unwrap();
    assert!(refused.is_empty(), "ingest refused batches: {refused:?}");
    s.stop().await;

    let sent = sent.lock().unwrap();
    let bars = latencies_us(&sent, &bar_events);
    let fills = latencies_us(&sent, &fill_events);
    println!(
        "live over WebSockets: {n_instances} sma-cross instances on {n_symbols} symbols, {rate} ticks/s for {secs} s"
    );
    println!(
        "sent {total} ticks in {batches} messages in {:.2} s ({:.0} ticks/s), {acked} acknowledged",
        fed_in.as_secs_f64(),
        total as f64 / fed_in.as_secs_f64()
    );
    println!("CPU time stolen by the hypervisor while feeding: {steal:.1} %");
    println!(
        "events the hub skipped for a slow reader: {bars_skipped} bars, {fills_skipped} on trades"
    );
    println!("| path | events | p50 µs | p99 µs | max µs |");
    println!("|---|---:|---:|---:|---:|");
    for (name, v) in [
        (
            "tick written to /ws/ingest → its bar read from /ws/market-data",
            &bars,
        ),
        (
            "tick written to /ws/ingest → fill read from /ws/trades (stored first)",
            &fills,
        ),
    ] {
        println!("{}", latency_row(name, v));
    }
}
