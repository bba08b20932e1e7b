//! WebSocket fan-out: `cargo bench -p qtm-tests --bench server_ws`.
//!
//! A real server in this process; `QTM_BENCH_WS_CLIENTS` (default 1,000) WebSocket clients
//! subscribed to `market-data`; the hub publishes `QTM_BENCH_WS_RATE` messages per second
//! (default 100) for `QTM_BENCH_WS_SECS` seconds (default 10). Each client records, per
//! message, the lag from publish to receipt. Prints the delivery rate, the share delivered
//! (the rest was skipped by clients that fell behind), and lag percentiles. Clients and server
//! share the machine's cores, as they would on one box.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use qtm_runtime::api::hub::Topic;
use qtm_tests::bench::env_or;
use qtm_tests::server::TestServer;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// `"t":<n>` from the event text without parsing the whole message (clients stay cheap).
fn field(text: &str, name: &str) -> Option<u64> {
    let at = text.find(name)? + name.len();
    let rest = &text[at..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[derive(Default)]
struct ClientStats {
    lags_us: Vec<u32>,
    skipped: u64,
}

fn main() {
    qtm_tests::bench::run_async(run());
}

async fn run() {
    let clients = env_or("QTM_BENCH_WS_CLIENTS", 1000) as usize;
    let rate = env_or("QTM_BENCH_WS_RATE", 100);
    let secs = env_or("QTM_BENCH_WS_SECS", 10);
    let messages = rate * secs;
    let s = TestServer::start().await;
    let token = s.admin_token().await;
    let url = format!("{}/ws/market-data?token={token}", s.ws_base());

    let epoch = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(clients);
    for _ in 0..clients {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("connect");
        let ready = ready_tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut stats = ClientStats::default();
            stats.lags_us.reserve(messages as usize);
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(text) = msg else { continue };
                if text.contains("\"type\":\"welcome\"") {
                    let _ = ready.send(()).await;
                    continue;
                }
                if text.contains("\"type\":\"lagged\"") {
                    stats.skipped += field(&text, "\"skipped\":").unwrap_or(0);
                    continue;
                }
                if text.contains("\"stop\":true") {
                    break;
                }
                if let Some(t) = field(&text, "\"t\":") {
                    let now = epoch.elapsed().as_nanos() as u64;
                    stats.lags_us.push((now.saturating_sub(t) / 1_000) as u32);
                }
            }
            stats
        }));
    }
    for _ in 0..clients {
        ready_rx.recv().await.unwrap();
    }
    println!(
        "{clients} clients connected to /ws/market-data; publishing {rate} msg/s for {secs} s"
    );

    let hub = &s.server.state.hub;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for i in 0..messages {
        tick.tick().await;
        let t = epoch.elapsed().as_nanos() as u64;
        hub.publish(
            Topic::MarketData,
            Some("SPY".into()),
            &json!({"symbol": "SPY", "i": i, "t": t, "open": 470.1, "high": 470.5, "low": 469.9, "close": 470.3, "volume": 12000}),
        );
    }
    let publish_secs = started.elapsed().as_secs_f64();
    hub.publish(
        Topic::MarketData,
        Some("SPY".into()),
        &json!({"stop": true}),
    );
    let mut lags: Vec<u32> = Vec::with_capacity(clients * messages as usize);
    let mut skipped = 0;
    for t in tasks {
        let st = t.await.unwrap();
        lags.extend_from_slice(&st.lags_us);
        skipped += st.skipped;
    }
    let wall = started.elapsed().as_secs_f64();
    let delivered = lags.len() as u64;
    let expected = clients as u64 * messages;
    lags.sort_unstable();
    let pct = |q: f64| {
        lags.get(((lags.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "published {messages} messages in {publish_secs:.2} s; all clients done after {wall:.2} s"
    );
    println!(
        "delivered {delivered} of {expected} ({:.2} %), skipped (lagged) {skipped}; delivery rate {:.0} msg/s",
        delivered as f64 / expected as f64 * 100.0,
        delivered as f64 / wall
    );
    println!(
        "lag ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
    s.stop().await;
}
