//! The real `qtm serve` on PostgreSQL (a throwaway server, `qtm_tests::postgres`): users and
//! API keys, a strategy uploaded, configured and backtested over the bundled data, then run
//! live on the paper feed until its fills are stored, and a restart on the same database that
//! finds all of it again. Skips (and passes) where PostgreSQL is not installed.

use std::path::Path;
use std::time::{Duration, Instant};

use qtm_runtime::store::market::{self, ImportOptions};
use qtm_runtime::store::{self, Backend, Store};
use qtm_tests::guests;
use qtm_tests::postgres::{database_url, print_skip};
use qtm_tests::server::{ADMIN, TestServer, qtm_binary, spawn_serve};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A client of one spawned server.
struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        TestServer::decode(req.send().await.expect("request sent")).await
    }

    /// An access token, retried while the server is still starting.
    async fn token(&self, user: &str, password: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self
                .http
                .post(format!("{}/api/auth/login", self.base))
                .json(&json!({"username": user, "password": password}))
                .send()
                .await;
            if let Ok(r) = r {
                let (status, body) = TestServer::decode(r).await;
                assert_eq!(status, StatusCode::OK, "login {user}: {body}");
                return body["access_token"].as_str().unwrap().to_string();
            }
            assert!(Instant::now() < deadline, "the server did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET path` with an API key.
    async fn get_with_key(&self, path: &str, key: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("X-API-Key", key)
            .send()
            .await
            .unwrap();
        TestServer::decode(r).await
    }

    /// Poll `GET path` until `done` holds for the body (`secs` at most); the last body.
    async fn wait_for(
        &self,
        path: &str,
        token: &str,
        secs: u64,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (status, body) = self.call(Method::GET, path, Some(token), None).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
            if done(&body) {
                return body;
            }
            assert!(Instant::now() < deadline, "{path} never got there: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `qtm serve` on `url` and a client of it.
fn serve(url: &str, dir: &Path) -> (std::process::Child, Client) {
    let data = qtm_tests::bundled_data();
    let (child, listen) = spawn_serve(
        &qtm_binary(),
        url,
        dir,
        &[("QTM_DATA_DIR", data.to_str().unwrap())],
    );
    let client = Client {
        base: format!("http://{listen}"),
        http: reqwest::Client::new(),
    };
    (child, client)
}

/// Stop the server as an operator would (SIGTERM, so it stores its snapshots), and check it
/// exited cleanly.
fn stop(mut child: std::process::Child, dir: &Path) {
    let pid = child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the server did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "qtm serve exited with {status}: {}",
        std::fs::read_to_string(dir.join("serve.err")).unwrap_or_default()
    );
}

fn fills_of(body: &Value) -> usize {
    body["items"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qtm_serve_runs_its_main_flows_on_postgresql_and_keeps_them_across_a_restart() {
    let url = match tokio::task::spawn_blocking(database_url).await.unwrap() {
        Ok(url) => url,
        Err(why) => {
            print_skip(&why);
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();

    // The bundled bars in the store, and the paper feed replaying them in a loop.
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    market::import_csv(
        &store,
        &qtm_tests::bundled("spy_1m_2011.csv"),
        &ImportOptions {
            symbol: "SPY".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    store::modules::seed(&store).await.unwrap();
    store::modules::set_config(
        &store,
        "replay-feed",
        &json!({"source": "database", "speed": 2_000_000.0, "loop": true,
                "max_pause_secs": null, "symbols": ["SPY"]}),
        None,
    )
    .await
    .unwrap();
    store.close().await;

    let (child, c) = serve(&url, dir.path());
    let admin = c.token(ADMIN.0, ADMIN.1).await;

    // A trader and an API key of theirs.
    let (status, body) = c
        .call(
            Method::POST,
            "/api/users",
            Some(&admin),
            Some(json!({"username": "pat", "password": "pat-password-1", "role": "trader"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let trader = c.token("pat", "pat-password-1").await;
    let (status, key) = c
        .call(
            Method::POST,
            "/api/users/api-keys",
            Some(&trader),
            Some(json!({"name": "bot", "role": "viewer"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let key = key["key"].as_str().unwrap().to_string();
    let (status, me) = c.get_with_key("/api/users/profile", &key).await;
    assert_eq!(
        (status, me["username"].as_str()),
        (StatusCode::OK, Some("pat"))
    );

    // sma-cross uploaded and configured on SPY.
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(qtm_tests::component(guests::SMA_CROSS))
                .file_name("sma.wasm"),
        )
        .text("name", "crossing");
    let r = c
        .http
        .post(format!("{}/api/strategies", c.base))
        .bearer_auth(&trader)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (status, created) = TestServer::decode(r).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"]
        .as_i64()
        .or(created["strategy"]["id"].as_i64())
        .unwrap();
    let (status, inst) = c
        .call(
            Method::PUT,
            &format!("/api/strategies/{id}/configure"),
            Some(&trader),
            Some(
                json!({"params": {"fast": 5, "slow": 20, "mode": "flip", "sizing": "fixed",
                                   "quantity": 1}, "symbols": ["SPY"]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{inst}");

    // A backtest over the bundled file.
    let (status, queued) = c
        .call(
            Method::POST,
            "/api/backtests",
            Some(&trader),
            Some(
                json!({"strategy_id": id, "data": ["spy_1m_2011.csv"], "cash": 10000,
                        "commission": 0.001, "slippage_bps": 0, "fill": "next-open",
                        "close_at_end": false}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let bt = queued["id"].as_i64().unwrap();
    let done = c
        .wait_for(&format!("/api/backtests/{bt}"), &trader, 180, |b| {
            b["status"] != "queued" && b["status"] != "running"
        })
        .await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["version"], 1, "{done}");
    assert!(done["metrics"]["n_trades"].as_u64().unwrap() > 0, "{done}");

    // Live on the paper feed: its fills are booked in PostgreSQL.
    let (status, body) = c
        .call(
            Method::POST,
            &format!("/api/strategies/{id}/enable"),
            Some(&trader),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let account = format!("strategy:{id}");
    let fills_path = format!("/api/trades/fills?account={account}&limit=1000");
    let fills = c
        .wait_for(&fills_path, &trader, 60, |f| fills_of(f) >= 3)
        .await;
    assert_eq!(fills["items"][0]["symbol"], "SPY", "{fills}");
    stop(child, dir.path());

    // What the live run stored adds up: every fill's order, each order's filled quantity.
    let store = Store::open(&url).await.unwrap();
    let stored = store::orders::fills(
        &store,
        &store::orders::FillFilter {
            account: Some(account.parse().unwrap()),
            limit: 100_000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(stored.len() >= 3);
    let mut per_order = std::collections::HashMap::<i64, f64>::new();
    for f in &stored {
        *per_order.entry(f.order_id).or_default() += f.quantity;
    }
    for (order_id, filled) in per_order {
        let o = store::orders::get(&store, order_id).await.unwrap();
        assert!((o.filled_qty - filled).abs() < 1e-9, "{o:?}");
    }
    let cursor = store::live::cursors(&store).await.unwrap()["SPY"];
    assert!(cursor.seq > 0, "{cursor:?}");
    assert!(store::live::snapshot(&store, id).await.unwrap().is_some());
    store.close().await;

    // A restart on the same database finds everything, and the instance trades on.
    let (child, c) = serve(&url, dir.path());
    let trader = c.token("pat", "pat-password-1").await;
    let (status, me) = c.get_with_key("/api/users/profile", &key).await;
    assert_eq!(
        (status, me["username"].as_str()),
        (StatusCode::OK, Some("pat"))
    );
    let (status, got) = c
        .call(
            Method::GET,
            &format!("/api/backtests/{bt}"),
            Some(&trader),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["status"], "done");
    assert_eq!(got["metrics"], done["metrics"]);
    let (status, strategies) = c
        .call(Method::GET, "/api/strategies", Some(&trader), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{strategies}");
    let listed = strategies["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("strategy {id} listed: {strategies}"));
    assert_eq!(listed["instance"]["status"], "enabled", "{listed}");
    assert_eq!(listed["instance"]["symbols"], json!(["SPY"]), "{listed}");
    let before = stored.len();
    c.wait_for(&fills_path, &trader, 60, |f| fills_of(f) > before)
        .await;
    stop(child, dir.path());
}
