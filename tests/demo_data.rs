//! A bare `qtm serve` on a fresh machine shows a moving market: the bundled demo data is
//! embedded in the binary and imported on a first start whose database has no bars, from any
//! directory, and the replay feed trades it.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use qtm_tests::server::{ADMIN, qtm_binary, spawn_serve};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

async fn login(http: &reqwest::Client, base: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = http
            .post(format!("{base}/api/auth/login"))
            .json(&json!({"username": ADMIN.0, "password": ADMIN.1}))
            .send()
            .await;
        if let Ok(r) = answer
            && r.status().is_success()
        {
            let body: Value = r.json().await.unwrap();
            return body["access_token"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The first page of `GET /api/market/assets` (its items).
async fn list_assets(http: &reqwest::Client, base: &str, token: &str) -> Value {
    http.get(format!("{base}/api/market/assets"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["items"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_serve_imports_the_embedded_demo_data_and_replays_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("fresh.db").display());
    // No data directory anywhere near: the test runs from the tests' folder.
    let (mut child, listen) = spawn_serve(
        &qtm_binary(),
        &url,
        dir.path(),
        &[("QTM_DEMO_DATA", "true"), ("QTM_DATA_DIR", "no-such-dir")],
    );
    let base = format!("http://{listen}");
    let http = reqwest::Client::new();
    let token = login(&http, &base).await;

    let assets = list_assets(&http, &base, &token).await;
    let spy = assets
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["symbol"] == "SPY")
        .unwrap_or_else(|| panic!("SPY is imported: {assets}"));
    let csv_rows = std::fs::read_to_string(qtm_tests::bundled_data().join("spy_1m_2011.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count() as u64;
    assert_eq!(spy["bars"].as_u64(), Some(csv_rows), "{spy}");

    // The replay feed moves it: bars arrive on the market-data stream.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{listen}/ws/market-data?token={token}"))
            .await
            .unwrap();
    let mut bars = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while bars < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .expect("replayed bars arrive within 30 s")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["key"] == "SPY" && v["data"]["bar"]["close"].is_number() {
                bars += 1;
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // A second start on the same database imports nothing again.
    let (mut child, listen) = spawn_serve(
        &qtm_binary(),
        &url,
        dir.path(),
        &[("QTM_DEMO_DATA", "true"), ("QTM_REPLAY", "false")],
    );
    let base = format!("http://{listen}");
    let token = login(&http, &base).await;
    let assets = list_assets(&http, &base, &token).await;
    assert_eq!(assets.as_array().unwrap().len(), 1, "{assets}");
    assert_eq!(assets[0]["bars"].as_u64(), Some(csv_rows));
    child.kill().unwrap();
    child.wait().unwrap();
}
