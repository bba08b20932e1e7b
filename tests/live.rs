//! Live paper trading through the real server: strategies enabled over the API trade bars fed
//! over `POST /api/market` or replayed from the database; hot swap and clone under flow; a
//! trapping strategy next to a healthy one; restart resumes from the stored state.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use qtm_runtime::live::LiveEvent;
use qtm_runtime::store::market::{self, ImportOptions};
use qtm_runtime::store::{self, Store};
use qtm_tests::guests;
use qtm_tests::server::{TestServer, error_of, next_json, qtm_binary, spawn_serve};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::broadcast::Receiver;

/// A database with GOOG's real daily bars (a peer data file), so the live engine trades GOOG;
/// `None` (the skip printed) where the peer data is missing.
async fn database_with_goog(dir: &Path) -> Option<std::path::PathBuf> {
    let goog = qtm_tests::peer_file_or_skip("goog_1d.csv")?;
    let db = dir.join("qtm.db");
    let store = Store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    market::import_csv(
        &store,
        &goog,
        &ImportOptions {
            symbol: "GOOG".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    store.close().await;
    Some(db)
}

/// POST a guest's component as multipart (with a `name` field when given) to `path`; expects
/// 201 and returns the body.
async fn post_component(
    s: &TestServer,
    token: &str,
    path: &str,
    module: &str,
    name: Option<&str>,
) -> Value {
    let mut form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(qtm_tests::component(module)).file_name("s.wasm"),
    );
    if let Some(n) = name {
        form = form.text("name", n.to_string());
    }
    let resp = s
        .http
        .post(format!("{}{path}", s.base))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (st, body) = TestServer::decode(resp).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    body
}

/// Upload a component as a new strategy trading GOOG with `params`; returns (strategy id,
/// instance id).
async fn upload(
    s: &TestServer,
    token: &str,
    module: &str,
    name: &str,
    params: Value,
) -> (i64, i64) {
    upload_on(s, token, module, name, params, "GOOG").await
}

/// [`upload`] trading `symbol`.
async fn upload_on(
    s: &TestServer,
    token: &str,
    module: &str,
    name: &str,
    params: Value,
    symbol: &str,
) -> (i64, i64) {
    let body = post_component(s, token, "/api/strategies", module, Some(name)).await;
    let id = body["id"]
        .as_i64()
        .or(body["strategy"]["id"].as_i64())
        .unwrap();
    let (st, inst) = s
        .call(
            Method::PUT,
            &format!("/api/strategies/{id}/configure"),
            Some(token),
            Some(json!({"params": params, "symbols": [symbol]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{inst}");
    (id, inst["id"].as_i64().unwrap())
}

async fn upload_version(s: &TestServer, token: &str, id: i64, module: &str) -> i64 {
    let path = format!("/api/strategies/{id}/versions");
    post_component(s, token, &path, module, None).await["version"]
        .as_i64()
        .unwrap()
}

async fn enable(s: &TestServer, token: &str, id: i64) {
    let (st, body) = s
        .call(
            Method::POST,
            &format!("/api/strategies/{id}/enable"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "enabled");
}

/// Bars numbered by `ts` (from..=to) for GOOG.
fn bars(from: i64, to: i64) -> Vec<Value> {
    (from..=to)
        .map(|i| {
            let p = 100.0 + 10.0 * ((i as f64) / 17.0).sin();
            json!({"symbol": "GOOG", "ts": i, "open": p, "high": p + 1.0, "low": p - 1.0,
                   "close": p + 0.25, "volume": 1000.0})
        })
        .collect()
}

async fn ingest(s: &TestServer, token: &str, bars: Vec<Value>) {
    let n = bars.len();
    let (st, body) = s
        .call(
            Method::POST,
            "/api/market",
            Some(token),
            Some(json!({"bars": bars})),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["bars"], n);
}

/// The seq-recorder lines `(version, seq, count)` of strategy `id` received so far, waiting
/// until one with `seq == until` arrives.
async fn seq_lines(
    rx: &mut Receiver<Arc<LiveEvent>>,
    id: i64,
    until: i64,
    out: &mut Vec<(String, i64, u64)>,
) {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let e = rx.recv().await.expect("live events");
            if let LiveEvent::Log {
                strategy_id,
                message,
                ..
            } = &*e
                && *strategy_id == id
            {
                // "<version> seq=<ts> count=<n>"
                let mut it = message.split_whitespace();
                let v = it.next().unwrap().to_string();
                let seq: i64 = it.next().unwrap()["seq=".len()..].parse().unwrap();
                let count: u64 = it.next().unwrap()["count=".len()..].parse().unwrap();
                out.push((v, seq, count));
                if seq == until {
                    return;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("strategy {id} never reached seq {until}: {out:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_and_clone_under_flow_handle_every_bar_once_and_a_bad_version_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = database_with_goog(dir.path()).await else {
        return;
    };
    let s = TestServer::start_on(&db, |_| {}).await;
    let token = s.admin_token().await;
    let mut rx = s.server.state.live.subscribe();
    let (id, instance) = upload(&s, &token, guests::SEQ_RECORDER_V1, "recorder", json!({})).await;
    enable(&s, &token, id).await;

    // Bars flow while version 2 is uploaded and swapped in.
    let mut lines = Vec::new();
    ingest(&s, &token, bars(1, 150)).await;
    let v2 = upload_version(&s, &token, id, guests::SEQ_RECORDER_V2).await;
    assert_eq!(v2, 2);
    // The flow goes on until the swap is done and for a while after it.
    let swapped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flow = {
        let (base, http, token) = (s.base.clone(), s.http.clone(), token.clone());
        let swapped = swapped.clone();
        tokio::spawn(async move {
            let (mut next, mut after) = (151, 0);
            while after < 10 {
                if swapped.load(std::sync::atomic::Ordering::SeqCst) {
                    after += 1;
                }
                let r = http
                    .post(format!("{base}/api/market"))
                    .bearer_auth(&token)
                    .json(&json!({"bars": bars(next, next + 4)}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::ACCEPTED);
                next += 5;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            next - 1
        })
    };
    let (st, swap) = s
        .call(
            Method::POST,
            &format!("/api/strategy-instances/{instance}/swap"),
            Some(&token),
            None,
        )
        .await;
    swapped.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(st, StatusCode::OK, "{swap}");
    assert_eq!(
        (swap["from_version"].as_i64(), swap["to_version"].as_i64()),
        (Some(1), Some(2))
    );
    let pause = swap["pause_us"].as_f64().unwrap();
    assert!(pause > 0.0 && pause < 1e6, "pause {pause} µs");
    let last = flow.await.unwrap();
    seq_lines(&mut rx, id, last, &mut lines).await;

    // Every bar exactly once, in order, the count carried across the swap, and the new code
    // handling everything after it.
    let seqs: Vec<i64> = lines.iter().map(|l| l.1).collect();
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
    let counts: Vec<u64> = lines.iter().map(|l| l.2).collect();
    assert_eq!(counts, (1..=last as u64).collect::<Vec<_>>());
    let first_v2 = lines.iter().position(|l| l.0 == "v2").expect("v2 ran");
    assert!(
        first_v2 >= 150,
        "v2 ran before it was swapped in: {first_v2}"
    );
    assert!(lines[..first_v2].iter().all(|l| l.0 == "v1"));
    assert!(lines[first_v2..].iter().all(|l| l.0 == "v2"));

    // A version that cannot take the running state (another strategy's code) is refused; the
    // running version goes on.
    let v3 = upload_version(&s, &token, id, guests::SMA_CROSS).await;
    let (st, body) = s
        .call(
            Method::POST,
            &format!("/api/strategy-instances/{instance}/swap"),
            Some(&token),
            Some(json!({"version": v3})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (_, message) = error_of(&body);
    assert!(message.contains("running state"), "{message}");
    ingest(&s, &token, bars(last + 1, last + 10)).await;
    lines.clear();
    seq_lines(&mut rx, id, last + 10, &mut lines).await;
    assert!(lines.iter().all(|l| l.0 == "v2"), "{lines:?}");
    assert_eq!(lines.last().unwrap().2, last as u64 + 10);

    // The upload did not move the running instance (only a swap does): after the refused
    // swap the store still says what runs.
    let (_, listed) = s
        .call(Method::GET, "/api/strategy-instances", Some(&token), None)
        .await;
    let mine = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["strategy_id"] == id)
        .unwrap()
        .clone();
    assert_eq!(mine["version"], 2, "{mine}");
    assert_eq!(mine["live"]["version"], 2, "{mine}");

    // Rollback to version 1, then clone from the running state with other parameters.
    let (st, body) = s
        .call(
            Method::POST,
            &format!("/api/strategy-instances/{instance}/rollback"),
            Some(&token),
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, cloned) = s
        .call(
            Method::POST,
            &format!("/api/strategy-instances/{instance}/clone"),
            Some(&token),
            Some(json!({"name": "recorder copy", "params": {"act_every": 1000}, "start": "from_snapshot"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{cloned}");
    let clone_id = cloned["strategy_id"].as_i64().unwrap();
    assert_eq!(cloned["instance"]["status"], "enabled");
    ingest(&s, &token, bars(last + 11, last + 20)).await;
    let mut source_lines = Vec::new();
    seq_lines(&mut rx, id, last + 20, &mut source_lines).await;
    assert!(source_lines.iter().all(|l| l.0 == "v1"), "{source_lines:?}");
    assert_eq!(source_lines.last().unwrap().2, last as u64 + 20);
    s.server.state.live.flush().await.unwrap();

    // The swaps are on record: ok, failed, ok (rollback).
    let (_, swaps) = s
        .call(
            Method::GET,
            &format!("/api/strategy-instances/{instance}/swaps"),
            Some(&token),
            None,
        )
        .await;
    let outcomes: Vec<(&str, i64)> = swaps["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["outcome"].as_str().unwrap(),
                w["to_version"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(outcomes, [("ok", 2), ("failed", v3), ("ok", 1)]);
    // The clone runs next to its source and got the 10 bars since it started.
    let (_, list) = s
        .call(Method::GET, "/api/strategy-instances", Some(&token), None)
        .await;
    let live_of = |sid: i64| {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["strategy_id"] == sid)
            .unwrap()["live"]
            .clone()
    };
    assert_eq!(live_of(clone_id)["bars"], 10);
    assert_eq!(live_of(id)["version"], 1);
    s.stop().await;
}

/// Strategy log events of `id` received so far, without waiting.
fn drain_logs(rx: &mut Receiver<Arc<LiveEvent>>) -> BTreeMap<i64, usize> {
    let mut n = BTreeMap::new();
    while let Ok(e) = rx.try_recv() {
        if let LiveEvent::Log { strategy_id, .. } = &*e {
            *n.entry(*strategy_id).or_default() += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_strategy_is_disabled_and_the_healthy_one_misses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = database_with_goog(dir.path()).await else {
        return;
    };
    let s = TestServer::start_on(&db, |_| {}).await;
    let token = s.admin_token().await;
    let mut rx = s.server.state.live.subscribe();
    let (healthy, _) = upload(&s, &token, guests::SEQ_RECORDER_V1, "healthy", json!({})).await;
    let (hostile, _) = upload(
        &s,
        &token,
        guests::HOSTILE,
        "hostile",
        json!({"attack": "infinite-loop"}),
    )
    .await;
    enable(&s, &token, hostile).await;
    enable(&s, &token, healthy).await;
    // A bad entry is named and nothing of its batch is taken.
    let mut bad = bars(1, 3);
    bad[1]["low"] = json!(1e9);
    let (st, body) = s
        .call(
            Method::POST,
            "/api/market",
            Some(&token),
            Some(json!({"bars": bad})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "bars[1]");
    let (_, message) = error_of(&body);
    assert!(message.contains("is below low"), "{message}");
    let (st, body) = s
        .call(
            Method::POST,
            "/api/market",
            Some(&token),
            Some(json!({"ticks": [{"symbol": "no/slash", "ts": 1, "price": 1.0}]})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "ticks[0].symbol");
    ingest(&s, &token, bars(1, 50)).await;
    let mut lines = Vec::new();
    seq_lines(&mut rx, healthy, 50, &mut lines).await;
    assert_eq!(
        lines.iter().map(|l| l.1).collect::<Vec<_>>(),
        (1..=50).collect::<Vec<_>>()
    );
    s.server.state.live.flush().await.unwrap();
    let _ = drain_logs(&mut rx);
    let (_, h) = s
        .call(
            Method::GET,
            &format!("/api/strategies/{hostile}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(h["instance"]["status"], "failed", "{h}");
    let reason = h["instance"]["status_reason"].as_str().unwrap();
    assert!(reason.contains("fuel"), "{reason}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bars_pushed_over_the_websocket_ingest_endpoint_are_traded_once_and_bad_batches_change_nothing()
 {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = database_with_goog(dir.path()).await else {
        return;
    };
    let s = TestServer::start_on(&db, |_| {}).await;
    let token = s.admin_token().await;
    let viewer = s.user_token(&token, "watcher", "viewer").await;
    let mut rx = s.server.state.live.subscribe();
    let (id, _) = upload(&s, &token, guests::SEQ_RECORDER_V1, "pushed", json!({})).await;
    enable(&s, &token, id).await;

    // A viewer may watch but not feed: refused before the upgrade.
    let refused =
        tokio_tungstenite::connect_async(format!("{}/ws/ingest?token={viewer}", s.ws_base()))
            .await
            .unwrap_err();
    assert!(refused.to_string().contains("403"), "{refused}");

    // First-message auth, then batches answered in order.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}/ws/ingest", s.ws_base()))
        .await
        .unwrap();
    let send = |v: Value| Message::Text(v.to_string().into());
    ws.send(send(json!({"type": "auth", "token": token})))
        .await
        .unwrap();
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["max_entries"], 10_000);
    ws.send(send(json!({"id": 1, "bars": bars(1, 20)})))
        .await
        .unwrap();
    let mut bad = bars(21, 23);
    bad[1]["high"] = json!(-1.0);
    ws.send(send(json!({"id": "b", "bars": bad})))
        .await
        .unwrap();
    ws.send(Message::Text("{\"bars\": [".into())).await.unwrap();
    ws.send(send(json!({"type": "ping", "id": 9})))
        .await
        .unwrap();
    ws.send(send(json!({"id": 2, "bars": bars(21, 40)})))
        .await
        .unwrap();
    let ack = next_json(&mut ws).await;
    assert_eq!(ack, json!({"type": "ack", "id": 1, "bars": 20, "ticks": 0}));
    let e = next_json(&mut ws).await;
    assert_eq!(
        (e["type"].as_str(), e["id"].as_str()),
        (Some("error"), Some("b")),
        "{e}"
    );
    assert_eq!(e["error"]["field"], "bars[1]", "{e}");
    let e = next_json(&mut ws).await;
    assert_eq!(e["error"]["code"], "malformed_json", "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("line 1"),
        "{e}"
    );
    assert_eq!(next_json(&mut ws).await, json!({"type": "pong", "id": 9}));
    assert_eq!(next_json(&mut ws).await["id"], 2);

    // Every pushed bar reached the strategy once and in order; the refused batch did not.
    let mut lines = Vec::new();
    seq_lines(&mut rx, id, 40, &mut lines).await;
    assert_eq!(
        lines.iter().map(|l| l.1).collect::<Vec<_>>(),
        (1..=40).collect::<Vec<_>>()
    );

    // Bars without orders leave only their cursor to store; it is committed within the
    // recorder's short delay even when nothing else follows (no flush asked for).
    let stored = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            let c = store::live::cursors(&s.server.state.store).await.unwrap();
            if c.get("GOOG").is_some_and(|c| c.ts == 40) {
                return c["GOOG"];
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the cursor of the last pushed bar is stored without a flush");
    let close = 100.0 + 10.0 * (40.0_f64 / 17.0).sin() + 0.25;
    assert!((stored.close - close).abs() < 1e-9, "{stored:?}");

    // The bridge is a module: switched off, both ingest paths refuse and say how to switch it on.
    let (st, body) = s
        .call(
            Method::PUT,
            "/api/modules/ingest-bridge/toggle",
            Some(&token),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    ws.send(send(json!({"id": 3, "bars": bars(41, 41)})))
        .await
        .unwrap();
    let e = next_json(&mut ws).await;
    assert_eq!(e["error"]["code"], "conflict", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ingest-bridge"),
        "{e}"
    );
    let (st, _) = s
        .call(
            Method::POST,
            "/api/market",
            Some(&token),
            Some(json!({"bars": bars(41, 41)})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_feed_plays_the_data_directory_files_and_a_bad_file_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = database_with_goog(dir.path()).await else {
        return;
    };
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    // 30 minute bars of GOOG that the database does not have: their ts give them away.
    let mut csv = String::from("ts,open,high,low,close,volume\n");
    for i in 1..=30 {
        let p = 100.0 + i as f64;
        csv += &format!(
            "{},{p},{},{},{p},10\n",
            2_000_000_000 + 60 * i,
            p + 1.0,
            p - 1.0
        );
    }
    std::fs::write(data.join("goog_1m.csv"), &csv).unwrap();
    let data_dir = data.clone();
    let s = TestServer::start_on(&db, move |c| {
        c.replay = true;
        c.data_dir = data_dir;
    })
    .await;
    let token = s.admin_token().await;
    let mut rx = s.server.state.live.subscribe();
    let (id, _) = upload(&s, &token, guests::SEQ_RECORDER_V1, "from-files", json!({})).await;
    enable(&s, &token, id).await;
    let (st, body) = s
        .call(
            Method::POST,
            "/api/modules/replay-feed/configure",
            Some(&token),
            Some(json!({"config": {"source": "files", "speed": 1_000_000.0, "loop": false}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    // The strategy sees the file's bars, each once, in order.
    let mut lines = Vec::new();
    seq_lines(&mut rx, id, 2_000_000_000 + 60 * 30, &mut lines).await;
    let ts: Vec<i64> = lines.iter().map(|l| l.1).collect();
    assert_eq!(
        ts,
        (1..=30).map(|i| 2_000_000_000 + 60 * i).collect::<Vec<_>>()
    );

    // A broken file stops the configure with the file and line, and the feed is not changed.
    csv += "2000009999,1,0.5,0.9,1,1\n";
    std::fs::write(data.join("goog_1m.csv"), &csv).unwrap();
    let (st, body) = s
        .call(
            Method::POST,
            "/api/modules/replay-feed/configure",
            Some(&token),
            Some(json!({"config": {"speed": 2_000_000.0}})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (_, message) = error_of(&body);
    assert!(
        message.contains("goog_1m.csv") && message.contains("32"),
        "{message}"
    );
    let (_, module) = s
        .call(Method::GET, "/api/modules/replay-feed", Some(&token), None)
        .await;
    assert_eq!(module["config"]["speed"], 1_000_000.0, "{module}");
    assert_eq!(module["config"]["source"], "files", "{module}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_trading_is_stored_consistently_and_a_restart_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = database_with_goog(dir.path()).await else {
        return;
    };
    let s = TestServer::start_on(&db, |c| c.replay = true).await;
    let token = s.admin_token().await;
    // Replay GOOG fast, without looping, so a known number of bars flows.
    let (st, body) = s
        .call(
            Method::POST,
            "/api/modules/replay-feed/configure",
            Some(&token),
            Some(json!({"config": {"speed": 10_000_000.0, "loop": false, "symbols": ["GOOG"]}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    // The configure restarted the replay from GOOG's first bar; a recorder buying every 7th
    // bar trades along.
    let (id, _) = upload(
        &s,
        &token,
        guests::SEQ_RECORDER_V1,
        "buyer",
        json!({"act_every": 7}),
    )
    .await;
    enable(&s, &token, id).await;
    let mut ws = {
        let url = format!("{}/ws/trades?token={token}", s.ws_base());
        tokio_tungstenite::connect_async(url).await.unwrap().0
    };
    // Let it run a little, then stop gracefully and restart on the same database.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let store = s.server.state.store.clone();
    let before = store::live::cursors(&store).await.unwrap()["GOOG"];
    let status = s.server.state.live.status().await.unwrap();
    let bars_seen = status.iter().find(|i| i.strategy_id == id).unwrap().bars;
    assert!(
        before.seq > 0 && bars_seen > 7,
        "no flow: {before:?}, {bars_seen} bars"
    );
    // Fills reached WebSocket clients.
    use futures_util::StreamExt;
    let first = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let m = ws.next().await.unwrap().unwrap();
            let v: Value = serde_json::from_str(m.to_text().unwrap_or("{}")).unwrap_or_default();
            if v["type"] == "event" && v["data"]["event"] == "fill" {
                return v;
            }
        }
    })
    .await
    .expect("a fill on the trades stream");
    assert_eq!(first["key"], id.to_string());
    drop(ws);
    s.stop().await;

    assert!(
        check_consistency(&db, &format!("strategy:{id}")).await > 0,
        "the strategy traded"
    );
    let store = Store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let stopped_at = store::live::cursors(&store).await.unwrap()["GOOG"];
    let snapshot = store::live::snapshot(&store, id).await.unwrap();
    assert!(snapshot.is_some(), "a snapshot is stored on shutdown");
    store.close().await;

    // Restart: the strategy runs again from its snapshot, and the replay continues after the
    // last stored bar with the next sequence number.
    let s = TestServer::start_on(&db, |c| c.replay = true).await;
    let mut rx = s.server.state.live.subscribe();
    let next = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let LiveEvent::Bar { seq, bar, .. } = &*rx.recv().await.unwrap() {
                return (*seq, bar.ts);
            }
        }
    })
    .await
    .unwrap();
    // Numbering goes on from the stored cursor: the first bar seen after the restart is as
    // many bars past it as GOOG has between the two times.
    let after = store::live::history_after(&s.server.state.store, "GOOG", Some(stopped_at.ts))
        .await
        .unwrap();
    let k = after
        .iter()
        .position(|b| b.ts == next.1)
        .expect("a GOOG bar") as i64;
    assert_eq!(
        next.0 as i64,
        stopped_at.seq + 1 + k,
        "{next:?} after {stopped_at:?}"
    );
    let status = s.server.state.live.status().await.unwrap();
    assert!(
        status
            .iter()
            .any(|i| i.strategy_id == id && i.state == "running")
    );
    let count = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let LiveEvent::Log {
                strategy_id,
                message,
                ..
            } = &*rx.recv().await.unwrap()
                && *strategy_id == id
            {
                return message.clone();
            }
        }
    })
    .await
    .unwrap();
    // The count carried over the restart (it does not start again at 1).
    let n: u64 = count.rsplit("count=").next().unwrap().parse().unwrap();
    assert!(n > 7, "state was not restored: {count}");
    // Stopped, its performance shows what its paper trading booked, across both runs.
    let (st, body) = s
        .call(
            Method::POST,
            &format!("/api/strategies/{id}/disable"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, perf) = s
        .call(
            Method::GET,
            &format!("/api/strategies/{id}/performance"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{perf}");
    assert!(perf["live"].is_null(), "{perf}");
    let account = format!("strategy:{id}");
    let booked = booked_totals(&s.server.state.store, &account).await;
    assert_eq!(perf["paper"]["account"], account.as_str());
    let initial = s.server.state.live.config().initial_cash;
    for (field, want) in [
        ("cash", initial + booked.cash_flow),
        ("realized_pnl", booked.realized_pnl),
        ("fees", booked.fees),
    ] {
        let got = perf["paper"][field].as_f64().unwrap();
        assert!((got - want).abs() < 1e-6, "{field}: {got} against {want}");
    }
    // The recorder only buys: its cash went into shares.
    assert!(booked.cash_flow < 0.0, "it bought: {perf}");
    s.stop().await;
    check_consistency(&db, &account).await;
}

/// `account`'s totals summed from its fills and trades themselves.
async fn booked_totals(store: &Store, account: &str) -> store::orders::AccountTotals {
    let fills = store::orders::fills(
        store,
        &store::orders::FillFilter {
            account: Some(account.parse().unwrap()),
            limit: i64::MAX,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let trades = store::orders::positions(
        store,
        &store::orders::PositionFilter {
            account: Some(account.parse().unwrap()),
            limit: i64::MAX,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let fees: f64 = fills.iter().map(|f| f.fee).sum();
    let moved: f64 = fills
        .iter()
        .map(|f| {
            if f.side.as_str() == "buy" {
                -f.quantity * f.price
            } else {
                f.quantity * f.price
            }
        })
        .sum();
    store::orders::AccountTotals {
        cash_flow: moved - fees,
        fees,
        realized_pnl: trades.iter().map(|p| p.realized_pnl).sum(),
    }
}

/// The replay feed looping GOOG's stored bars at `speed` and the live engine's `engine`
/// settings, as `qtm serve` will read them from the store.
async fn loop_goog_replay(store: &Store, speed: f64, engine: Value) {
    store::modules::seed(store).await.unwrap();
    store::modules::set_config(
        store,
        "replay-feed",
        &json!({"source": "database", "speed": speed, "loop": true, "max_pause_secs": null,
                "symbols": ["GOOG"]}),
        None,
    )
    .await
    .unwrap();
    store::modules::set_config(store, "live-engine", &engine, None)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_leaves_orders_fills_and_positions_consistent() {
    let qtm = qtm_binary();
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = database_with_goog(dir.path()).await else {
        return;
    };
    let url = format!("sqlite://{}", db.display());
    // A strategy trading every third bar, enabled, and a fast looping replay of GOOG.
    let id = {
        let store = Store::open(&url).await.unwrap();
        let id = enabled_seq_recorder(&store, "crash", json!({"act_every": 3})).await;
        // Frequent snapshots, so kills land between and during them.
        loop_goog_replay(
            &store,
            20_000_000.0,
            json!({"snapshot_every_secs": 0.2, "initial_cash": 100000.0}),
        )
        .await;
        store.close().await;
        id
    };
    let mut fills_seen = Vec::new();
    let mut manual_seen = Vec::new();
    let mut placed_before = 0;
    // Deterministic "random" kill times between 0.4 and 2.3 s.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..4 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let after = Duration::from_millis(400 + x % 1900);
        let (mut child, listen) = spawn_serve(&qtm, &url, dir.path(), &[]);
        // Manual orders placed as fast as the server takes them, filled by the engine's manual
        // account, until the kill.
        let trader = tokio::spawn(place_manual_orders(format!("http://{listen}")));
        tokio::time::sleep(after).await;
        assert!(
            child.try_wait().unwrap().is_none(),
            "round {round}: the server exited early (a stale {} from before a migration? \
             `cargo test --workspace` rebuilds it): {}",
            qtm.display(),
            std::fs::read_to_string(dir.path().join("serve.err")).unwrap_or_default()
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let placed = trader.await.unwrap();
        let n = check_consistency(&db, &format!("strategy:{id}")).await;
        let m = check_consistency(&db, "user:1").await;
        eprintln!(
            "round {round}: killed after {after:?}, {n} strategy fills and {m} manual fills stored ({placed} manual orders placed)"
        );
        // Every manual order placed before this round's start was worked after the restart
        // (a market order fills on the next bar).
        assert!(
            m >= placed_before,
            "round {round}: {m} manual fills, {placed_before} orders placed in earlier rounds"
        );
        placed_before += placed;
        fills_seen.push(n);
        manual_seen.push(m);
    }
    assert!(
        manual_seen.windows(2).all(|w| w[1] >= w[0]) && manual_seen.last() > Some(&0),
        "manual fills per round: {manual_seen:?}"
    );
    // Trading made progress across the kills.
    assert!(
        fills_seen.windows(2).all(|w| w[1] >= w[0]) && fills_seen.last() > fills_seen.first(),
        "fills per round: {fills_seen:?}"
    );
}

/// Store a `seq-recorder` v1 strategy with `params` on GOOG, enabled (the live engine
/// resumes it when it starts); its id.
async fn enabled_seq_recorder(store: &Store, name: &str, params: Value) -> i64 {
    enabled_strategy(store, guests::SEQ_RECORDER_V1, name, params, "GOOG").await
}

/// Store a strategy running the guest `module` with `params` on `symbol`, enabled; its id.
async fn enabled_strategy(
    store: &Store,
    module: &str,
    name: &str,
    params: Value,
    symbol: &str,
) -> i64 {
    let sandbox = qtm_runtime::sandbox::Sandbox::new(Default::default()).unwrap();
    let id = qtm_tests::store_strategy(store, &sandbox, module, name, &params, symbol).await;
    store::strategies::set_status(store, id, "enabled", None)
        .await
        .unwrap();
    id
}

/// Log in to the server at `base` once it is up, then place market orders of one GOOG,
/// buying and selling in turn, until it is gone. Returns how many it accepted.
async fn place_manual_orders(base: String) -> usize {
    let http = reqwest::Client::new();
    let mut token = None;
    for _ in 0..200 {
        let r = http
            .post(format!("{base}/api/auth/login"))
            .json(&json!({"username": "admin", "password": "admin-password-1"}))
            .send()
            .await;
        if let Ok(r) = r
            && let Ok(v) = r.json::<Value>().await
            && let Some(t) = v["access_token"].as_str()
        {
            token = Some(t.to_string());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let Some(token) = token else { return 0 };
    let mut placed = 0;
    for i in 0.. {
        let side = if i % 2 == 0 { "buy" } else { "sell" };
        let r = http
            .post(format!("{base}/api/orders"))
            .bearer_auth(&token)
            .json(&json!({"symbol": "GOOG", "side": side, "quantity": 1}))
            .send()
            .await;
        match r {
            Ok(r) if r.status() == StatusCode::OK => placed += 1,
            Ok(_) => {}
            Err(_) => return placed,
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    placed
}

/// Every fill's order exists and belongs to the account, each order's filled quantity is the
/// sum of its fills (no fill stored twice, none lost), and the open position equals the sum of
/// the fills. Returns the number of fills.
async fn check_consistency(db: &Path, account: &str) -> usize {
    let store = Store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let account: store::orders::AccountId = account.parse().unwrap();
    let fills = store::orders::fills(
        &store,
        &store::orders::FillFilter {
            account: Some(account),
            limit: i64::MAX,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut per_order: BTreeMap<i64, f64> = BTreeMap::new();
    let mut net = 0.0;
    for f in &fills {
        *per_order.entry(f.order_id).or_default() += f.quantity;
        net += if f.side.as_str() == "buy" {
            f.quantity
        } else {
            -f.quantity
        };
    }
    for (order, sum) in &per_order {
        let o = store::orders::get(&store, *order).await.unwrap();
        assert_eq!(o.account, account);
        assert!(
            (o.filled_qty - sum).abs() < 1e-9,
            "order {order}: filled {} != fills {sum}",
            o.filled_qty
        );
        assert!(o.filled_qty <= o.quantity + 1e-9);
    }
    let open: f64 = store::orders::open_positions(&store, Some(account))
        .await
        .unwrap()
        .iter()
        .map(|p| p.quantity)
        .sum();
    assert!((open - net).abs() < 1e-9, "positions {open} != fills {net}");
    // The account's running totals were moved in the transactions that booked the fills.
    let kept = store::orders::totals(&store, Some(account)).await.unwrap();
    let summed = booked_totals(&store, &account.text()).await;
    for (what, k, s) in [
        ("cash flow", kept.cash_flow, summed.cash_flow),
        ("fees", kept.fees, summed.fees),
        ("realized PnL", kept.realized_pnl, summed.realized_pnl),
    ] {
        assert!(
            (k - s).abs() < 1e-6 * (1.0 + s.abs()),
            "{what}: totals {k} != fills and trades {s}"
        );
    }
    store.close().await;
    fills.len()
}

/// A crash between two snapshots: the restarted instance is restored from its snapshot and
/// replayed the bars it had handled since (orders held back), so its state matches the stored
/// cursor, and the journal keeps only the bars some snapshot has not seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_each_instance_is_replayed_from_its_snapshot_to_the_cursor() {
    use qtm_runtime::live::{LiveConfig, LiveEngine};
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = database_with_goog(dir.path()).await else {
        return;
    };
    let store = Store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let sandbox = Arc::new(qtm_runtime::sandbox::Sandbox::new(Default::default()).unwrap());
    // Buys on every 4th bar: the replayed 8th must not buy again.
    let id = enabled_seq_recorder(&store, "replayed", json!({"act_every": 4})).await;
    let config = LiveConfig {
        snapshot_every_secs: 3600.0,
        ..LiveConfig::default()
    };
    let bar = |i: i64| {
        let p = 100.0 + i as f64;
        (
            "GOOG".to_string(),
            qtm_runtime::model::Bar {
                ts: 1_900_000_000 + i * 60,
                open: p,
                high: p + 1.0,
                low: p - 1.0,
                close: p,
                volume: 10.0,
            },
        )
    };
    let journalled = |store: Store| async move {
        let (_, bars) = store::live::journal(&store).await.unwrap();
        bars.get("GOOG").map_or(0, Vec::len)
    };
    let crashed = LiveEngine::start(store.clone(), sandbox.clone(), config.clone())
        .await
        .unwrap();
    crashed.ingest((1..=5).map(bar).collect()).unwrap();
    crashed.snapshot_all().await.unwrap();
    assert_eq!(
        journalled(store.clone()).await,
        0,
        "every bar is in a snapshot"
    );
    crashed.ingest((6..=9).map(bar).collect()).unwrap();
    crashed.flush().await.unwrap();
    assert_eq!(journalled(store.clone()).await, 4);
    let orders_before = store::orders::fills(
        &store,
        &store::orders::FillFilter {
            account: Some(qtm_runtime::live::strategy_account(id)),
            limit: 100,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .len();
    // The crash: no shutdown, no last snapshot. (The old engine stays idle.)
    let live = LiveEngine::start(store.clone(), sandbox.clone(), config)
        .await
        .unwrap();
    let mut rx = live.subscribe();
    live.ingest(vec![bar(10)]).unwrap();
    live.flush().await.unwrap();
    let mut logged = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let LiveEvent::Log {
            strategy_id,
            message,
            ..
        } = &*e
            && *strategy_id == id
        {
            logged.push(message.clone());
        }
    }
    // Restored at 5, replayed 6–9, then bar 10 live: its tenth bar, not its sixth.
    assert_eq!(
        logged,
        [format!("v1 seq={} count=10", 1_900_000_000 + 600)],
        "{logged:?}"
    );
    live.flush().await.unwrap();
    let fills = store::orders::fills(
        &store,
        &store::orders::FillFilter {
            account: Some(qtm_runtime::live::strategy_account(id)),
            limit: 100,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // One buy on bar 4 and one on bar 8 filled by bar 9; the replay placed none.
    assert_eq!((orders_before, fills.len()), (2, 2), "{fills:?}");
    live.shutdown().await;
    assert_eq!(journalled(store.clone()).await, 0);
}

/// Book `fills` (side, quantity, price, fee) for `strategy_id`'s account as the live engine
/// would have: an order of its instance per fill. Returns the account's cash flow.
async fn book_fills(store: &Store, strategy_id: i64, fills: &[(&str, f64, f64, f64)]) -> f64 {
    let instance = store::strategies::instance(store, strategy_id)
        .await
        .unwrap();
    let mut flow = 0.0;
    for (k, &(side, quantity, price, fee)) in fills.iter().enumerate() {
        let o = store::orders::insert(
            store,
            &store::orders::NewOrder {
                account: qtm_runtime::live::strategy_account(strategy_id),
                instance_id: Some(instance.id),
                symbol: "GOOG".into(),
                side: side.parse().unwrap(),
                order_type: store::orders::OrderType::Market,
                quantity,
                time_in_force: qtm_runtime::model::TimeInForce::Gtc,
                status: store::orders::OrderStatus::Accepted,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        store::orders::record_fill(store, o.id, quantity, price, fee, 1_000 + k as i64)
            .await
            .unwrap();
        let signed = if side == "buy" { -quantity } else { quantity };
        flow += signed * price - fee;
    }
    flow
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_every_instance_with_the_cash_its_fills_left_it() {
    // Each instance reads its own account's row of the cash totals the fills keep
    // (`account_totals`), whatever the number of accounts beside it.
    for n in [2usize, 13] {
        let dir = tempfile::tempdir().unwrap();
        let Some(db) = database_with_goog(dir.path()).await else {
            return;
        };
        let store = Store::open(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let mut expected = Vec::new();
        for i in 0..n {
            let id = enabled_seq_recorder(&store, &format!("r{i}"), json!({})).await;
            // Bought 10 + i, sold 4 of them, paid fees.
            let q = 10.0 + i as f64;
            let flow = book_fills(
                &store,
                id,
                &[("buy", q, 100.0, 1.0), ("sell", 4.0, 110.0 + i as f64, 0.5)],
            )
            .await;
            expected.push((id, flow, q - 4.0));
        }
        let sandbox = Arc::new(qtm_runtime::sandbox::Sandbox::new(Default::default()).unwrap());
        let config = qtm_runtime::live::LiveConfig::default();
        let initial = config.initial_cash;
        let live = qtm_runtime::live::LiveEngine::start(store.clone(), sandbox, config)
            .await
            .unwrap();
        let status = live.status().await.unwrap();
        assert_eq!(status.len(), n);
        for (id, flow, held) in expected {
            let i = status.iter().find(|i| i.strategy_id == id).unwrap();
            assert_eq!(i.state, "running", "{n} instances: {i:?}");
            // Cash is the starting capital plus the fills' cash flow, so buying power and
            // PnL go on from where the previous run left them.
            assert!(
                (i.cash - (initial + flow)).abs() < 1e-6,
                "{n} instances, strategy {id}: cash {} against {}",
                i.cash,
                initial + flow
            );
            // The position it still holds is carried at its average price.
            assert!(
                (i.equity - (i.cash + held * 100.0)).abs() < 1e-6,
                "{n} instances, strategy {id}: equity {} cash {} held {held}",
                i.equity,
                i.cash
            );
        }
        live.shutdown().await;
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_shortens_long_gaps_to_its_pause_limit_and_keeps_the_recorded_times() {
    // SPY's real minute bars open with the sparse pre-market: the first 21 bars span 167
    // minutes, 167 s at 60×. With a 50 ms pause limit they all arrive at once, times intact.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("qtm.db").display()))
        .await
        .unwrap();
    let csv = qtm_tests::bundled("spy_1m_2011.csv");
    market::import_csv(
        &store,
        &csv,
        &ImportOptions {
            symbol: "SPY".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let recorded: Vec<i64> = std::fs::read_to_string(&csv)
        .unwrap()
        .lines()
        .skip(1)
        .take(21)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!((recorded[20] - recorded[0]) / 60, 167);

    let sandbox = Arc::new(qtm_runtime::sandbox::Sandbox::new(Default::default()).unwrap());
    let live = qtm_runtime::live::LiveEngine::start(store.clone(), sandbox, Default::default())
        .await
        .unwrap();
    let mut rx = live.subscribe();
    live.start_replay(&qtm_runtime::live::ReplaySettings {
        speed: 60.0,
        looped: false,
        max_pause_secs: Some(0.05),
        ..Default::default()
    })
    .await
    .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        let mut seen = Vec::new();
        while seen.len() < 21 {
            if let LiveEvent::Bar { seq, bar, .. } = &*rx.recv().await.unwrap() {
                seen.push((*seq, bar.ts));
            }
        }
        seen
    })
    .await
    .expect("21 bars within 20 s: the gaps were not shortened");
    let expected: Vec<(u64, i64)> = (1..).zip(recorded).collect();
    assert_eq!(seen, expected);
    live.shutdown().await;
    store.close().await;
}

/// Loop iterations of the hostile guest's `burn` that stay just under the 10,000,000 fuel of a
/// call (about 10.3 fuel each): the heaviest bar a guest can make without trapping, about a
/// millisecond.
const BURN_UNDER_FUEL: i64 = 950_000;

/// Change the `live-engine` module's settings (admin).
async fn configure_engine(s: &TestServer, token: &str, config: Value) {
    let (st, body) = s
        .call(
            Method::POST,
            "/api/modules/live-engine/configure",
            Some(token),
            Some(json!({ "config": config })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
}

/// The `live` part of strategy `id`'s entry in `GET /api/strategy-instances`.
async fn listed(s: &TestServer, token: &str, id: i64) -> Value {
    let (st, list) = s
        .call(Method::GET, "/api/strategy-instances", Some(token), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{list}");
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["strategy_id"] == id)
        .unwrap_or_else(|| panic!("strategy {id} is not listed: {list}"))["live"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_over_its_cpu_share_cap_is_disabled_with_its_reason_listed_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = database_with_goog(dir.path()).await else {
        return;
    };
    let s = TestServer::start_on(&db, |_| {}).await;
    let token = s.admin_token().await;
    let mut rx = s.server.state.live.subscribe();
    let mut updates = s.server.state.live.subscribe();
    let (healthy, healthy_instance) =
        upload(&s, &token, guests::SEQ_RECORDER_V1, "healthy", json!({})).await;
    let (burner, burner_instance) = upload(
        &s,
        &token,
        guests::HOSTILE,
        "burner",
        json!({"attack": "burn", "iterations": BURN_UNDER_FUEL}),
    )
    .await;
    // A 5 % cap over 1 s, which the burner (about a millisecond a bar) passes within a few
    // dozen bars; the healthy one is given a cap of its own.
    configure_engine(
        &s,
        &token,
        json!({"cpu_share_cap_pct": 5, "cpu_window_secs": 1,
               "cpu_share_cap_pct_by_instance": {healthy_instance.to_string(): 100}}),
    )
    .await;
    enable(&s, &token, healthy).await;
    enable(&s, &token, burner).await;
    let live = listed(&s, &token, burner).await;
    assert_eq!(live["state"], "running", "{live}");
    assert!(live["reason"].is_null(), "{live}");
    assert_eq!(live["cpu_share_cap_pct"], 5.0, "{live}");

    // Bars until the list shows the burner stopped.
    let mut next = 1;
    let stopped = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            ingest(&s, &token, bars(next, next + 99)).await;
            next += 100;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let live = listed(&s, &token, burner).await;
            if live["state"] != "running" {
                return live;
            }
        }
    })
    .await
    .expect("the burner is stopped by its cap");
    assert_eq!(stopped["state"], "disabled", "{stopped}");
    let reason = stopped["reason"].as_str().unwrap().to_string();
    assert!(
        reason.starts_with("cpu share ")
            && reason.ends_with(" % of the engine thread over the last 1 s, over the 5 % cap"),
        "{reason}"
    );
    let share: f64 = reason["cpu share ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(share > 5.0, "{reason}");

    // The healthy neighbour got every bar, in order.
    let last = next - 1;
    let mut lines = Vec::new();
    seq_lines(&mut rx, healthy, last, &mut lines).await;
    assert_eq!(
        lines.iter().map(|l| l.1).collect::<Vec<_>>(),
        (1..=last).collect::<Vec<_>>()
    );
    assert_eq!(listed(&s, &token, healthy).await["state"], "running");

    // Stored and announced as a trap is: status `failed` with the reason.
    s.server.state.live.flush().await.unwrap();
    let (_, h) = s
        .call(
            Method::GET,
            &format!("/api/strategies/{burner}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(h["instance"]["status"], "failed", "{h}");
    assert_eq!(h["instance"]["status_reason"], reason.as_str(), "{h}");
    let mut announced = false;
    while let Ok(e) = updates.try_recv() {
        if let LiveEvent::Status {
            strategy_id,
            status,
            reason: why,
            ..
        } = &*e
            && *strategy_id == burner
            && status != "running"
        {
            assert_eq!((status.as_str(), why.as_str()), ("failed", reason.as_str()));
            announced = true;
        }
    }
    assert!(announced, "the stop is published on strategy-updates");

    // With a cap of its own it can be enabled again and runs.
    configure_engine(
        &s,
        &token,
        json!({"cpu_share_cap_pct_by_instance": {
            healthy_instance.to_string(): 100, burner_instance.to_string(): 100}}),
    )
    .await;
    enable(&s, &token, burner).await;
    let live = listed(&s, &token, burner).await;
    assert_eq!(live["state"], "running", "{live}");
    assert!(live["reason"].is_null(), "{live}");
    assert_eq!(live["bars"], 0, "a fresh start: {live}");
    ingest(&s, &token, bars(next, next + 9)).await;
    s.server.state.live.flush().await.unwrap();
    let status = s.server.state.live.status().await.unwrap();
    let again = status.iter().find(|i| i.strategy_id == burner).unwrap();
    assert_eq!((again.state.as_str(), again.bars), ("running", 10));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_the_engine_heartbeat_and_answers_503_once_the_engine_has_stopped() {
    let s = TestServer::start().await;
    let token = s.admin_token().await;
    // Idle, the engine thread still beats.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (st, body) = s.call(Method::GET, "/health", None, None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["engine"], "ok", "{body}");
    let age = body["engine_heartbeat_age_ms"].as_u64().unwrap();
    assert!(age < 2000, "{body}");
    let (st, body) = s
        .call(Method::GET, "/api/system/status", Some(&token), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["status"], &body["engine"]),
        (&json!("ok"), &json!("ok"))
    );
    assert!(body["engine_heartbeat_age_ms"].as_u64().unwrap() < 2000);

    s.server.state.live.shutdown().await;
    let (st, body) = s.call(Method::GET, "/health", None, None).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        (
            &body["status"],
            &body["engine"],
            &body["engine_heartbeat_age_ms"]
        ),
        (&json!("degraded"), &json!("stopped"), &Value::Null),
        "{body}"
    );
    s.stop().await;
}

/// `n` bars of `symbol` numbered by `ts` from 1, for [`LiveEngine::ingest`].
fn engine_bars(symbol: &str, n: i64) -> Vec<(String, qtm_runtime::model::Bar)> {
    (1..=n)
        .map(|i| {
            let p = 100.0 + 10.0 * ((i as f64) / 17.0).sin();
            let bar = qtm_runtime::model::Bar {
                ts: i,
                open: p,
                high: p + 1.0,
                low: p - 1.0,
                close: p + 0.25,
                volume: 1000.0,
            };
            (symbol.to_string(), bar)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_list_and_health_answer_at_once_while_the_engine_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = database_with_goog(dir.path()).await else {
        return;
    };
    let s = TestServer::start_on(&db, |_| {}).await;
    let token = s.admin_token().await;
    // Busy instances that stay busy: no CPU cap.
    configure_engine(&s, &token, json!({"cpu_share_cap_pct": 100})).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let params = json!({"attack": "burn", "iterations": BURN_UNDER_FUEL});
        ids.push(
            upload(&s, &token, guests::HOSTILE, &format!("burner-{i}"), params)
                .await
                .0,
        );
    }
    ids.push(
        upload(&s, &token, guests::SEQ_RECORDER_V1, "healthy", json!({}))
            .await
            .0,
    );
    for &id in &ids {
        enable(&s, &token, id).await;
    }
    // Half a minute or more of work queued for the engine thread.
    s.server
        .state
        .live
        .ingest(engine_bars("GOOG", 10_000))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut took = Vec::new();
    let mut last = Value::Null;
    for _ in 0..200 {
        let t = std::time::Instant::now();
        let (st, list) = s
            .call(Method::GET, "/api/strategy-instances", Some(&token), None)
            .await;
        took.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(st, StatusCode::OK, "{list}");
        last = list;
    }
    took.sort_by(f64::total_cmp);
    let p99 = took[(took.len() - 1) * 99 / 100];
    eprintln!(
        "GET /api/strategy-instances while loaded: p50 {:.1} ms, p99 {p99:.1} ms, max {:.1} ms",
        took[took.len() / 2],
        took[took.len() - 1]
    );
    // The goal is 100 ms (measured by `cargo bench -p qtm-tests --bench live_isolation`);
    // this bound only says the list does not wait behind the queue (seconds), on a machine
    // shared with anything.
    assert!(p99 < 500.0, "p99 {p99:.1} ms: {took:?}");
    let healthy = last["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["strategy_id"] == ids[3])
        .unwrap()["live"]
        .clone();
    assert_eq!(healthy["state"], "running", "{healthy}");
    let seen = healthy["bars"].as_u64().unwrap();
    assert!(
        seen > 0 && seen < 10_000,
        "the engine was working through the queue all along: {seen} bars seen: {last}"
    );
    // Its heartbeat is fresh while it works.
    let (st, body) = s.call(Method::GET, "/health", None, None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(
        body["engine_heartbeat_age_ms"].as_u64().unwrap() < 2000,
        "{body}"
    );

    let t = std::time::Instant::now();
    s.stop().await;
    let stopped_in = t.elapsed();
    assert!(
        stopped_in < Duration::from_secs(5),
        "stopped in {stopped_in:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_under_load_takes_under_5_s_and_loses_nothing_that_was_published() {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = database_with_goog(dir.path()).await else {
        return;
    };
    let s = TestServer::start_on(&db, |c| c.replay = true).await;
    let token = s.admin_token().await;
    configure_engine(&s, &token, json!({"cpu_share_cap_pct": 100})).await;
    // A slow burner on bars pushed over the bridge, and sma-cross trading GOOG's replay.
    let (burner, _) = upload_on(
        &s,
        &token,
        guests::HOSTILE,
        "burner",
        json!({"attack": "burn", "iterations": BURN_UNDER_FUEL}),
        "MSFT",
    )
    .await;
    let (trader, _) = upload(
        &s,
        &token,
        guests::SMA_CROSS,
        "trader",
        json!({"fast": 3, "slow": 8, "mode": "flip", "sizing": "fixed", "quantity": 1}),
    )
    .await;
    enable(&s, &token, burner).await;
    enable(&s, &token, trader).await;

    // Everything published from now on.
    let mut rx = s.server.state.live.subscribe();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let collector = tokio::spawn(async move {
        let mut seqs: BTreeMap<String, u64> = BTreeMap::new();
        let (mut fills, mut lagged) = (Vec::new(), 0u64);
        let mut take = |e: &LiveEvent| match e {
            LiveEvent::Bar { symbol, seq, .. } => {
                let s = seqs.entry(symbol.clone()).or_default();
                *s = (*s).max(*seq);
            }
            LiveEvent::Fill { fill_id, .. } => fills.push(*fill_id),
            _ => {}
        };
        loop {
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(e) => take(&e),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => lagged += n,
                    Err(_) => break,
                },
                _ = &mut stop_rx => {
                    while let Ok(e) = rx.try_recv() {
                        take(&e);
                    }
                    break;
                }
            }
        }
        (seqs, fills, lagged)
    });
    // A fast looping replay (about a thousand bars a second), then seconds of work for the
    // burner queued in front of the rest of it.
    let (st, body) = s
        .call(
            Method::POST,
            "/api/modules/replay-feed/configure",
            Some(&token),
            Some(
                json!({"config": {"speed": 1e8, "loop": true, "max_pause_secs": null,
                                   "symbols": ["GOOG"]}}),
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    s.server
        .state
        .live
        .ingest(engine_bars("MSFT", 10_000))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let t = std::time::Instant::now();
    s.stop().await;
    let stopped_in = t.elapsed();
    let _ = stop_tx.send(());
    let (published, fills, lagged) = collector.await.unwrap();
    eprintln!(
        "stopped in {stopped_in:?}; last bars published {published:?}, {} fills, {lagged} events skipped",
        fills.len()
    );
    assert!(
        stopped_in < Duration::from_secs(5),
        "stopped in {stopped_in:?}"
    );

    let store = Store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let cursors = store::live::cursors(&store).await.unwrap();
    // The burner's queue was not worked through: the shutdown did not wait for it.
    let msft = cursors["MSFT"].seq as u64;
    assert!(msft > 0 && msft < 10_000, "MSFT cursor {msft}");
    // Every bar published was handled, and its cursor stored; none after it.
    for (symbol, seq) in &published {
        let stored = cursors[symbol.as_str()].seq as u64;
        if lagged == 0 {
            assert_eq!(stored, *seq, "{symbol}");
        } else {
            assert!(stored >= *seq, "{symbol}: stored {stored}, published {seq}");
        }
    }
    // Every fill published is stored (and, with nothing skipped, only those).
    let account = format!("strategy:{trader}");
    let stored_fills: Vec<i64> = store::orders::fills(
        &store,
        &store::orders::FillFilter {
            account: Some(account.parse().unwrap()),
            limit: i64::MAX,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .iter()
    .map(|f| f.id)
    .collect();
    assert!(!fills.is_empty(), "sma-cross traded");
    for f in &fills {
        assert!(
            stored_fills.contains(f),
            "fill {f} was published, not stored"
        );
    }
    if lagged == 0 {
        assert_eq!(stored_fills.len(), fills.len());
    }
    // The last snapshots saw every bar handled, so a restart replays nothing twice.
    let seen = store::live::snapshot_seqs(&store, trader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen["GOOG"], cursors["GOOG"].seq as u64);
    let seen = store::live::snapshot_seqs(&store, burner)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen["MSFT"], msft);
    store.close().await;
    assert!(check_consistency(&db, &account).await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_qtm_serve_under_load_within_5_s_with_its_trading_stored() {
    let qtm = qtm_binary();
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = database_with_goog(dir.path()).await else {
        return;
    };
    let url = format!("sqlite://{}", db.display());
    // sma-cross trading a fast looping replay of GOOG next to three burners on it, with no
    // CPU cap: the engine cannot keep up, and the replay's bars queue.
    let trader = {
        let store = Store::open(&url).await.unwrap();
        let trader = enabled_strategy(
            &store,
            guests::SMA_CROSS,
            "trader",
            json!({"fast": 3, "slow": 8, "mode": "flip", "sizing": "fixed", "quantity": 1}),
            "GOOG",
        )
        .await;
        for i in 0..3 {
            enabled_strategy(
                &store,
                guests::HOSTILE,
                &format!("burner-{i}"),
                json!({"attack": "burn", "iterations": BURN_UNDER_FUEL}),
                "GOOG",
            )
            .await;
        }
        loop_goog_replay(
            &store,
            1e9,
            json!({"snapshot_every_secs": 30, "initial_cash": 100000.0, "cpu_share_cap_pct": 100}),
        )
        .await;
        store.close().await;
        trader
    };
    let cache = dir.path().join("cache");
    let (mut child, listen) = spawn_serve(
        &qtm,
        &url,
        dir.path(),
        &[
            ("QTM_LOG", "info,qtm_runtime::live=warn"),
            ("QTM_CACHE_DIR", cache.to_str().unwrap()),
        ],
    );
    // Up, trading, and behind.
    let http = reqwest::Client::new();
    let health = format!("http://{listen}/health");
    let up = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(r) = http.get(&health).send().await {
                return r.json::<Value>().await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the server comes up");
    assert_eq!(up["engine"], "ok", "{up}");
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let t = std::time::Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if t.elapsed() > Duration::from_secs(10) {
            child.kill().unwrap();
            panic!("qtm serve still running 10 s after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let stopped_in = t.elapsed();
    let stderr = std::fs::read_to_string(dir.path().join("serve.err")).unwrap_or_default();
    eprintln!("qtm serve exited {exit} {stopped_in:?} after SIGTERM");
    assert!(exit.success(), "{exit}: {stderr}");
    assert!(
        stopped_in < Duration::from_secs(5),
        "{stopped_in:?}: {stderr}"
    );
    // Written to a file, the log is plain text: no terminal colour codes.
    assert!(stderr.contains("INFO"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a log file: {stderr:?}"
    );
    // The compiled components were cached where QTM_CACHE_DIR says.
    let cached = std::fs::read_dir(dir.path().join("cache")).map_or(0, |d| d.count());
    assert!(cached > 0, "nothing in the component cache");

    // Stored as a graceful stop leaves it: consistent fills, the last snapshot at the cursor.
    let account = format!("strategy:{trader}");
    assert!(
        check_consistency(&db, &account).await > 0,
        "sma-cross traded"
    );
    let store = Store::open(&url).await.unwrap();
    let cursor = store::live::cursors(&store).await.unwrap()["GOOG"].seq as u64;
    let seen = store::live::snapshot_seqs(&store, trader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen["GOOG"], cursor);
    store.close().await;
}

/// Stored components of the first contract resume after an upgrade: a `qtm:strategy@0.1.0`
/// component (built from the frozen WIT without the SDK) stored and enabled before the host
/// learned 0.2.0 starts with the live engine, gets every bar one call at a time, and trades
/// exactly as its 0.2.0 twin (the hostile guest's `peek`, the same rule) next to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enabled_0_1_0_component_resumes_live_and_trades_as_its_0_2_0_twin() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("qtm.db");
    let url = format!("sqlite://{}", db.display());
    let store = Store::open(&url).await.unwrap();
    let old = enabled_strategy(&store, guests::CONTRACT_V0_1, "v0.1", json!({}), "SPY").await;
    let twin = enabled_strategy(
        &store,
        guests::HOSTILE,
        "peek",
        json!({"attack": "peek", "iterations": 0}),
        "SPY",
    )
    .await;
    let stored = store::strategies::get(&store, old).await.unwrap();
    assert_eq!(
        stored.current_version.contract_version,
        "qtm:strategy@0.1.0"
    );
    let sandbox = Arc::new(qtm_runtime::sandbox::Sandbox::new(Default::default()).unwrap());
    let live = qtm_runtime::live::LiveEngine::start(store.clone(), sandbox, Default::default())
        .await
        .unwrap();
    let bars: Vec<(String, qtm_runtime::model::Bar)> = qtm_tests::numbered_bars(300)
        .into_iter()
        .map(|mut b| {
            b.ts += 1_700_000_000;
            ("SPY".to_string(), b)
        })
        .collect();
    live.ingest(bars).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let status = live.status().await.unwrap();
            if status.iter().all(|i| i.bars >= 300) {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("both instances get the 300 bars");
    for id in [old, twin] {
        let i = status.iter().find(|i| i.strategy_id == id).unwrap();
        assert_eq!((i.state.as_str(), i.bars), ("running", 300), "{i:?}");
    }
    live.flush().await.unwrap();
    live.shutdown().await;
    store.close().await;
    let fills_old = check_consistency(&db, &format!("strategy:{old}")).await;
    let fills_twin = check_consistency(&db, &format!("strategy:{twin}")).await;
    assert!(fills_old > 100, "{fills_old} fills");
    assert_eq!(fills_old, fills_twin);
}

/// A clone that cannot start leaves nothing behind: the source's state is over the snapshot
/// cap, so a clone from it is refused, and the strategy the request had stored is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_that_cannot_start_leaves_no_strategy_behind() {
    let s = TestServer::start().await;
    let token = s.admin_token().await;
    let (id, instance) = upload(
        &s,
        &token,
        guests::HOSTILE,
        "huge state",
        json!({"attack": "huge-snapshot", "iterations": 0}),
    )
    .await;
    enable(&s, &token, id).await;
    ingest(&s, &token, bars(1, 20)).await;
    let count = |list: &Value| list["items"].as_array().map(Vec::len);
    let before = s
        .call(Method::GET, "/api/strategies", Some(&token), None)
        .await
        .1;
    let (st, body) = s
        .call(
            Method::POST,
            &format!("/api/strategy-instances/{instance}/clone"),
            Some(&token),
            Some(json!({"name": "cannot start", "start": "from_snapshot"})),
        )
        .await;
    assert!(st.is_client_error(), "{st}: {body}");
    let (_, message) = error_of(&body);
    assert!(message.contains("snapshot"), "{message}");
    let after = s
        .call(Method::GET, "/api/strategies", Some(&token), None)
        .await
        .1;
    assert_eq!(count(&after), count(&before), "{after}");
    assert!(!after.to_string().contains("cannot start"), "{after}");
    // A fresh clone of the same instance starts.
    let (st, body) = s
        .call(
            Method::POST,
            &format!("/api/strategy-instances/{instance}/clone"),
            Some(&token),
            Some(json!({"name": "fresh copy"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
}
