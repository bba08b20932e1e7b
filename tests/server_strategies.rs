//! Strategies and backtests through the real server: upload (multipart and raw), the upload
//! gate's refusals, size limits, configuration checked against `describe`, versions, clones,
//! enable/disable, ownership on delete, and the full login → upload → backtest → results flow
//! watched on a WebSocket, with results equal to the library's own run of the same inputs.

use std::time::Duration;

use futures_util::StreamExt;
use qtm_runtime::backtest::{self, BacktestConfig, DataSource};
use qtm_runtime::model::{Param, ParamValue};
use qtm_runtime::sandbox::{Sandbox, SandboxConfig};
use qtm_tests::guests;
use qtm_tests::server::{TestServer, error_of};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Digest;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_connect(s: &TestServer, path: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}{path}", s.ws_base()))
        .await
        .expect("ws connects");
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    ws
}

/// The next message, skipping the live engine's own events (`status`, `log`: tested in
/// `live.rs`); these tests follow what the API announces.
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("message in time")
            .expect("open")
            .expect("ok");
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if matches!(v["data"]["event"].as_str(), Some("status" | "log")) {
                continue;
            }
            return v;
        }
    }
}

/// POST a component as multipart with optional extra text fields.
async fn upload_multipart(
    s: &TestServer,
    path: &str,
    token: &str,
    bytes: Vec<u8>,
    fields: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name("strategy.wasm"),
    );
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    let resp = s
        .http
        .post(format!("{}{path}", s.base))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .expect("sent");
    TestServer::decode(resp).await
}

/// POST raw bytes with a content type.
async fn upload_raw(
    s: &TestServer,
    path: &str,
    token: &str,
    bytes: Vec<u8>,
    content_type: &str,
) -> (StatusCode, Value) {
    let resp = s
        .http
        .post(format!("{}{path}", s.base))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .expect("sent");
    TestServer::decode(resp).await
}

/// The error's field, code and message.
#[track_caller]
fn field_error(body: &Value) -> (String, String, String) {
    let (code, message) = error_of(body);
    let field = body["error"]["field"].as_str().unwrap_or("").to_string();
    (field, code, message)
}

fn sma_bytes() -> Vec<u8> {
    qtm_tests::component(guests::SMA_CROSS)
}

/// The bundled SPY minute bars, stored as `SPY`.
async fn import_spy(s: &TestServer) {
    qtm_runtime::store::market::import_csv(
        &s.server.state.store,
        &qtm_tests::bundled("spy_1m_2011.csv"),
        &qtm_runtime::store::market::ImportOptions {
            symbol: "SPY".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
}

/// Poll a backtest until it leaves queued/running.
async fn wait_backtest(s: &TestServer, token: &str, id: i64) -> Value {
    for _ in 0..600 {
        let (status, b) = s
            .call(
                Method::GET,
                &format!("/api/backtests/{id}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{b}");
        if b["status"] == "done" || b["status"] == "failed" {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("backtest {id} did not finish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_upload_configure_backtest_on_ws_and_results_equal_the_library_run() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let trader = s.user_token(&admin, "tess", "trader").await;
    let viewer = s.user_token(&admin, "vera", "viewer").await;
    let bytes = sma_bytes();

    // A viewer may read but not upload. (A small body: the gate answers before reading it,
    // and a client still sending a large one may see the connection close first.)
    let (status, e) =
        upload_multipart(&s, "/api/strategies", &viewer, b"\0asm".to_vec(), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{e}");

    let (status, created) = upload_multipart(
        &s,
        "/api/strategies",
        &trader,
        bytes.clone(),
        &[("name", "my crossover"), ("description", "GOOG daily")],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["name"], "my crossover");
    assert_eq!(created["description"], "GOOG daily");
    assert_eq!(created["source"], "upload");
    let v = &created["current_version"];
    assert_eq!(v["version"], 1);
    assert_eq!(
        v["content_sha256"],
        hex::encode(sha2::Sha256::digest(&bytes))
    );
    assert_eq!(v["contract_version"], "qtm:strategy@0.2.0");
    assert_eq!(v["size_bytes"], bytes.len());
    assert_eq!(created["info"]["name"], "sma-cross");
    assert_eq!(created["info"]["params"].as_array().unwrap().len(), 5);
    assert_eq!(created["instance"]["status"], "disabled");
    assert_eq!(
        created["instance"]["params"],
        json!({"fast": 10, "slow": 30, "mode": "long_only", "sizing": "fixed", "quantity": 1.0})
    );

    let (status, list) = s
        .call(Method::GET, "/api/strategies", Some(&viewer), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["id"], id);
    assert!(list["items"][0]["latest_backtest"].is_null());

    // Configuration checked against describe, each error naming its parameter.
    let configure = format!("/api/strategies/{id}/configure");
    for (params, field, message) in [
        (
            json!({"fast": 0}),
            "params.fast",
            "parameter `fast` = 0 is outside 1..=500",
        ),
        (
            json!({"speed": 3}),
            "params.speed",
            "unknown parameter `speed` for sma-cross (known: fast, slow, mode, sizing, quantity)",
        ),
        (
            json!({"mode": "sideways"}),
            "params.mode",
            "parameter `mode` = `sideways` is not one of: long_only, flip",
        ),
        (
            json!({"fast": "quick"}),
            "params.fast",
            "parameter `fast` must be an integer, got `quick`",
        ),
        (
            json!({"quantity": [1]}),
            "params.quantity",
            "parameter `quantity` must be a number, boolean or string, got [1]",
        ),
    ] {
        let (status, e) = s
            .call(
                Method::PUT,
                &configure,
                Some(&trader),
                Some(json!({ "params": params })),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
        assert_eq!(
            field_error(&e),
            (field.into(), "validation".into(), message.into())
        );
    }
    // In range, but the strategy itself refuses it.
    let (status, e) = s
        .call(
            Method::PUT,
            &configure,
            Some(&trader),
            Some(json!({"params": {"fast": 40}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (field, _, message) = field_error(&e);
    assert_eq!(field, "params");
    assert!(
        message.contains("fast (40) must be shorter than slow (30)"),
        "{message}"
    );
    let (status, e) = s
        .call(
            Method::PUT,
            &configure,
            Some(&trader),
            Some(json!({"symbols": ["GO OG"]})),
        )
        .await;
    assert_eq!(
        (status, field_error(&e).0.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "symbols")
    );
    let (status, inst) = s
        .call(
            Method::PUT,
            &configure,
            Some(&trader),
            Some(json!({"params": {"fast": 10, "slow": 30, "mode": "flip", "sizing": "equity", "quantity": 1}, "symbols": ["GOOG"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{inst}");
    assert_eq!(
        inst["params"],
        json!({"fast": 10, "slow": 30, "mode": "flip", "sizing": "equity", "quantity": 1.0})
    );
    assert_eq!(inst["symbols"], json!(["GOOG"]));
    // The list (served from a cached body) shows the change at once.
    let (_, list) = s
        .call(Method::GET, "/api/strategies", Some(&viewer), None)
        .await;
    assert_eq!(
        list["items"][0]["instance"]["symbols"],
        json!(["GOOG"]),
        "{list}"
    );
    assert_eq!(
        list["items"][0]["instance"]["params"]["mode"], "flip",
        "{list}"
    );

    // Watch the strategy's updates and the notifications.
    let mut updates = ws_connect(&s, &format!("/ws/strategy-updates?token={viewer}")).await;
    let mut notes = ws_connect(&s, &format!("/ws/notifications?token={viewer}")).await;

    let (status, queued) = s
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
    assert_eq!(queued["status"], "queued");
    assert_eq!(queued["version"], 1);
    let bt = queued["id"].as_i64().unwrap();

    // Progress, then completion, in order, all keyed by the strategy.
    let mut statuses = Vec::new();
    let done = loop {
        let m = next_json(&mut updates).await;
        assert_eq!(m["topic"], "strategy-updates");
        assert_eq!(m["key"], id.to_string());
        let d = &m["data"];
        assert_eq!(d["backtest_id"], bt);
        statuses.push(d["status"].as_str().unwrap().to_string());
        match d["status"].as_str().unwrap() {
            "done" => break d.clone(),
            "failed" => panic!("backtest failed: {d}"),
            "running" => {
                assert!(d["bars_done"].as_u64().is_some(), "{d}");
                assert!(d["bars_total"].as_u64().unwrap() > 1000, "{d}");
            }
            _ => {}
        }
    };
    assert_eq!(statuses.first().map(String::as_str), Some("queued"));
    assert!(statuses.iter().any(|s| s == "running"), "{statuses:?}");
    let note = next_json(&mut notes).await;
    assert_eq!(note["data"]["event"], "backtest.done");
    assert_eq!(note["data"]["backtest_id"], bt);

    // The library's own run of the same inputs.
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let code = sandbox.load(&bytes).unwrap();
    let p = |name: &str, value: ParamValue| Param {
        name: name.into(),
        value,
    };
    let instance = code
        .instantiate(
            &[
                p("fast", ParamValue::Int(10)),
                p("slow", ParamValue::Int(30)),
                p("mode", ParamValue::Choice("flip".into())),
                p("sizing", ParamValue::Choice("equity".into())),
                p("quantity", ParamValue::Float(1.0)),
            ],
            &["SPY".to_string()],
        )
        .unwrap();
    let mut config = BacktestConfig {
        cash: 10_000.0,
        ..Default::default()
    };
    config.engine.exchange.commission = 0.001;
    let reference = backtest::run(
        "sma-cross",
        Box::new(instance),
        &[DataSource::csv(
            "SPY",
            qtm_tests::bundled("spy_1m_2011.csv"),
        )],
        &config,
        &mut |_| {},
    )
    .unwrap();
    assert!(reference.metrics.n_trades > 10, "a real run trades");

    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    assert_eq!(done["trades_sha256"], reference.trades_sha256);
    assert_eq!(done["metrics"]["n_trades"], reference.metrics.n_trades);
    assert_eq!(done["bars_done"], reference.bars);

    let (status, got) = s
        .call(
            Method::GET,
            &format!("/api/backtests/{bt}"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["status"], "done");
    assert_eq!(got["strategy_id"], id);
    assert_eq!(got["version"], 1);
    assert_eq!(got["bars_done"], reference.bars);
    assert_eq!(got["bars_total"], reference.bars);
    assert_eq!(got["trades_sha256"], reference.trades_sha256);
    assert_eq!(got["metrics"]["n_trades"], reference.metrics.n_trades);
    assert_eq!(got["metrics"]["n_open"], reference.metrics.n_open);
    assert!(close(
        got["metrics"]["final_equity"].as_f64().unwrap(),
        reference.metrics.final_equity
    ));
    assert!(close(
        got["metrics"]["sharpe"].as_f64().unwrap(),
        reference.metrics.sharpe
    ));
    assert_eq!(
        got["trades"].as_array().unwrap().len(),
        reference.trades.len()
    );
    assert_eq!(got["trades"][0]["entry_ts"], reference.trades[0].entry_ts);
    let equity = got["equity"].as_array().unwrap();
    // The stored curve is the chart reduction of the full one.
    let curve = qtm_runtime::report::chart_curve(&reference.equity, 2000);
    assert_eq!(equity.len(), curve.len());
    assert!(equity.len() < reference.equity.len(), "reduced");
    assert_eq!(equity[0]["ts"], curve[0].ts);
    assert!(close(
        equity.last().unwrap()["equity"].as_f64().unwrap(),
        reference.metrics.final_equity
    ));
    assert_eq!(got["request"]["params"], inst["params"]);
    assert_eq!(got["request"]["data"], json!(["spy_1m_2011.csv"]));
    assert_eq!(got["request"]["commission"], 0.001);

    // Listed without the bulky parts; the strategy shows its latest run and performance.
    let (_, runs) = s
        .call(
            Method::GET,
            &format!("/api/backtests?strategy_id={id}"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(runs["items"].as_array().unwrap().len(), 1);
    assert_eq!(runs["items"][0]["id"], bt);
    assert!(runs[0].get("trades").is_none() && runs[0].get("equity").is_none());
    let (_, one) = s
        .call(
            Method::GET,
            &format!("/api/strategies/{id}"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(one["latest_backtest"]["id"], bt);
    let (_, list) = s
        .call(Method::GET, "/api/strategies", Some(&viewer), None)
        .await;
    assert_eq!(list["items"][0]["latest_backtest"]["id"], bt, "{list}");
    assert_eq!(
        one["latest_backtest"]["n_trades"],
        reference.metrics.n_trades
    );
    let (status, perf) = s
        .call(
            Method::GET,
            &format!("/api/strategies/{id}/performance"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(perf["latest"]["id"], bt);
    assert_eq!(perf["best_by_sharpe"]["id"], bt);
    assert_eq!(perf["runs"].as_array().unwrap().len(), 1);
    assert!(perf["live"].is_null());
    assert!(perf["live_note"].as_str().unwrap().contains("live engine"));
    // Never traded live: its paper account holds the starting capital.
    assert_eq!(
        perf["paper"],
        serde_json::json!({"account": format!("strategy:{id}"), "cash": 100000.0, "realized_pnl": 0.0, "fees": 0.0,
            "unrealized_pnl": 0.0, "market_value": 0.0, "equity": 100000.0, "open_positions": 0})
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upload_gate_refuses_bad_components_and_oversized_uploads_get_413() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let trader = s.user_token(&admin, "tim", "trader").await;

    let (status, e) = upload_raw(
        &s,
        "/api/strategies?name=junk",
        &trader,
        b"definitely not wasm".to_vec(),
        "application/wasm",
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (field, code, message) = field_error(&e);
    assert_eq!((field.as_str(), code.as_str()), ("file", "validation"));
    assert_eq!(
        message.lines().next(),
        Some("component refused: not a WebAssembly binary (missing the \\0asm header)")
    );
    assert!(message.contains("fix: "), "{message}");
    // A core module: refused with the hint to componentize.
    let core = std::fs::read(guests::SMA_CROSS).unwrap();
    let (status, e) = upload_raw(
        &s,
        "/api/strategies",
        &trader,
        core,
        "application/octet-stream",
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(field_error(&e).2.contains("not a component"), "{e}");

    let (status, e) = upload_multipart(
        &s,
        "/api/strategies",
        &trader,
        qtm_tests::component(guests::FORBIDDEN_IMPORT),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (field, _, message) = field_error(&e);
    assert_eq!(field, "file");
    assert!(
        message.contains("`qtm:strategy/socket@0.1.0`")
            && message.contains("outside the qtm contract"),
        "{message}"
    );

    let (status, e) = upload_multipart(
        &s,
        "/api/strategies",
        &trader,
        qtm_tests::component(guests::WRONG_CONTRACT),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(
        field_error(&e).2.lines().next(),
        Some(
            "component refused: component was built for contract qtm:strategy@0.3.0, but this host implements qtm:strategy@0.1.0 and qtm:strategy@0.2.0"
        )
    );

    // Every reason at once: WASI imports and the wrong exports.
    let (status, e) = upload_multipart(
        &s,
        "/api/strategies",
        &trader,
        qtm_tests::component(guests::WASI_COMMAND),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let message = field_error(&e).2;
    assert!(
        message.starts_with("component refused: 2 problems:\n1. "),
        "{message}"
    );
    assert!(message.contains("--stub-wasi"), "{message}");

    // Wrong forms of upload.
    let (status, e) = s
        .call(
            Method::POST,
            "/api/strategies",
            Some(&trader),
            Some(json!({})),
        )
        .await;
    // JSON is a rule program (`{"name", "rules"}`): an empty object says what it lacks.
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(error_of(&e).1.contains("missing field `name`"), "{e}");
    assert!(error_of(&e).1.contains("\"rules\""), "{e}");
    let resp = s
        .http
        .post(format!("{}/api/strategies", s.base))
        .bearer_auth(&trader)
        .header("content-type", "text/plain")
        .body("not a component")
        .send()
        .await
        .unwrap();
    let (status, e) = TestServer::decode(resp).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{e}");
    assert!(error_of(&e).1.contains("multipart/form-data"), "{e}");
    assert!(error_of(&e).1.contains("rule program as JSON"), "{e}");
    let form = reqwest::multipart::Form::new().text("name", "no file");
    let resp = s
        .http
        .post(format!("{}/api/strategies", s.base))
        .bearer_auth(&trader)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (status, e) = TestServer::decode(resp).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field_error(&e).0, "file");
    let (status, e) = upload_multipart(
        &s,
        "/api/strategies",
        &trader,
        sma_bytes(),
        &[("colour", "red")],
    )
    .await;
    assert_eq!(
        (status, field_error(&e).0.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "colour")
    );
    let long_name = "n".repeat(101);
    let (status, e) = upload_multipart(
        &s,
        "/api/strategies",
        &trader,
        sma_bytes(),
        &[("name", &long_name)],
    )
    .await;
    assert_eq!(
        (status, field_error(&e).0.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "name")
    );

    // Above the upload limit (the gate's component size limit, 32 MiB by default, larger than
    // the JSON body limit): 413 JSON, raw or multipart. Below it, a large upload reaches the
    // gate.
    let limit = s.server.state.config.max_upload_bytes;
    assert_eq!(limit, 32 << 20);
    assert_eq!(limit, s.server.state.sandbox.config().max_component_bytes);
    let mut big = b"\0asm".to_vec();
    big.resize(limit + 1, 0);
    let (status, e) = upload_raw(
        &s,
        "/api/strategies",
        &trader,
        big.clone(),
        "application/wasm",
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{e}");
    assert_eq!(error_of(&e).0, "payload_too_large");
    assert!(error_of(&e).1.contains(&limit.to_string()), "{e}");
    let (status, e) = upload_multipart(&s, "/api/strategies", &trader, big, &[]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{e}");
    assert_eq!(field_error(&e).0, "file");
    let mut two_mib = b"\0asm\x0d\0\x01\0".to_vec();
    two_mib.resize(2 << 20, 0);
    let (status, e) = upload_raw(&s, "/api/strategies", &trader, two_mib, "application/wasm").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(
        field_error(&e)
            .2
            .starts_with("component refused: malformed component"),
        "{e}"
    );

    // Nothing was stored.
    let (_, list) = s
        .call(Method::GET, "/api/strategies", Some(&trader), None)
        .await;
    assert_eq!(list["items"], json!([]));
    s.stop().await;
}

/// `bytes` grown to `size` bytes by a custom section at the end: the same component, as large
/// as one with a language runtime inside (componentize-py makes about 18 MiB).
fn padded(mut bytes: Vec<u8>, size: usize) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"padding";
    // Section content: the name's length (one byte), the name, the payload; lengths of four
    // LEB128 bytes cover sizes up to 256 MiB.
    let content = size - bytes.len() - 1 - 4;
    bytes.push(0);
    let before = bytes.len();
    leb128(content, &mut bytes);
    assert_eq!(bytes.len() - before, 4);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.resize(size, 0);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_between_16_and_32_mib_is_accepted() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let trader = s.user_token(&admin, "tim", "trader").await;
    let big = padded(sma_bytes(), 20 << 20);
    let (status, created) = upload_raw(
        &s,
        "/api/strategies?name=big",
        &trader,
        big.clone(),
        "application/wasm",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "big");
    let (status, created) = upload_multipart(
        &s,
        "/api/strategies",
        &trader,
        big,
        &[("name", "big-multipart")],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_clone_enable_disable_delete_and_ownership() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let alice = s.user_token(&admin, "alice", "trader").await;
    let bob = s.user_token(&admin, "bob", "trader").await;
    let bytes = sma_bytes();

    let (status, created) = upload_raw(
        &s,
        "/api/strategies?name=alpha",
        &alice,
        bytes.clone(),
        "application/wasm",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["name"], "alpha");
    assert_eq!(
        created["description"],
        "Moving-average crossover (long_only or flip), fixed or equity sizing"
    );

    let mut updates = ws_connect(&s, &format!("/ws/strategy-updates?token={bob}")).await;

    // Enabling needs symbols.
    let (status, e) = s
        .call(
            Method::POST,
            &format!("/api/strategies/{id}/enable"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (field, _, message) = field_error(&e);
    assert_eq!(field, "symbols");
    assert!(message.contains("no symbols"), "{message}");
    let (status, _) = s
        .call(
            Method::PUT,
            &format!("/api/strategies/{id}/configure"),
            Some(&alice),
            Some(json!({"params": {"fast": 5}, "symbols": ["SPY"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        next_json(&mut updates).await["data"]["event"],
        "strategy.configured"
    );
    let (status, on) = s
        .call(
            Method::POST,
            &format!("/api/strategies/{id}/enable"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{on}");
    assert_eq!(on["status"], "enabled");
    let m = next_json(&mut updates).await;
    assert_eq!(
        (
            m["key"].clone(),
            m["data"]["event"].clone(),
            m["data"]["status"].clone()
        ),
        (
            json!(id.to_string()),
            json!("strategy.enabled"),
            json!("enabled")
        )
    );

    // Versions: not activated, then activated (parameters carried over).
    let (status, v2) = upload_multipart(
        &s,
        &format!("/api/strategies/{id}/versions?activate=false"),
        &alice,
        bytes.clone(),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v2}");
    assert_eq!(v2["version"], 2);
    let (_, one) = s
        .call(
            Method::GET,
            &format!("/api/strategies/{id}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(one["instance"]["version"], 1);
    let (status, v3) = upload_raw(
        &s,
        &format!("/api/strategies/{id}/versions"),
        &alice,
        bytes.clone(),
        "application/wasm",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v3}");
    assert_eq!(v3["version"], 3);
    let (_, one) = s
        .call(
            Method::GET,
            &format!("/api/strategies/{id}"),
            Some(&bob),
            None,
        )
        .await;
    // Running live, the instance is not moved by the upload: only a swap changes what runs,
    // and a swap without a version takes the newest.
    assert_eq!(one["instance"]["version"], 1);
    let instance = one["instance"]["id"].as_i64().unwrap();
    let (status, swapped) = s
        .call(
            Method::POST,
            &format!("/api/strategy-instances/{instance}/swap"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{swapped}");
    assert_eq!(
        (&swapped["from_version"], &swapped["to_version"]),
        (&json!(1), &json!(3))
    );
    let (_, one) = s
        .call(
            Method::GET,
            &format!("/api/strategies/{id}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(one["instance"]["version"], 3);
    assert_eq!(one["current_version"]["id"], v3["id"]);
    assert_eq!(one["instance"]["params"]["fast"], 5);
    let (_, versions) = s
        .call(
            Method::GET,
            &format!("/api/strategies/{id}/versions"),
            Some(&bob),
            None,
        )
        .await;
    let numbers: Vec<i64> = versions["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, vec![1, 2, 3]);
    let (status, e) = upload_raw(
        &s,
        &format!("/api/strategies/{id}/versions"),
        &alice,
        b"junk".to_vec(),
        "application/wasm",
    )
    .await;
    assert_eq!(
        (status, field_error(&e).0.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "file")
    );
    let (status, _) = upload_raw(
        &s,
        "/api/strategies/999999/versions",
        &alice,
        bytes.clone(),
        "application/wasm",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Clone: Bob's copy with one parameter changed.
    let (status, e) = s
        .call(
            Method::POST,
            &format!("/api/strategies/{id}/clone"),
            Some(&bob),
            Some(json!({"params": {"fast": -1}})),
        )
        .await;
    assert_eq!(
        (status, field_error(&e).0.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "params.fast")
    );
    let (status, clone) = s
        .call(
            Method::POST,
            &format!("/api/strategies/{id}/clone"),
            Some(&bob),
            Some(json!({"name": "beta", "params": {"slow": 60}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{clone}");
    let clone_id = clone["id"].as_i64().unwrap();
    assert_eq!(clone["name"], "beta");
    assert_eq!(
        (clone["source"].clone(), clone["cloned_from"].clone()),
        (json!("clone"), json!(id))
    );
    assert_eq!(clone["instance"]["params"]["fast"], 5);
    assert_eq!(clone["instance"]["params"]["slow"], 60);
    assert_eq!(clone["instance"]["symbols"], json!(["SPY"]));
    assert_eq!(clone["instance"]["status"], "disabled");
    assert_eq!(clone["current_version"]["version"], 1);
    assert_eq!(
        clone["current_version"]["content_sha256"],
        v3["content_sha256"]
    );

    // Templates now read the uploaded component's own describe output.
    let (_, templates) = s
        .call(Method::GET, "/api/strategies/templates", Some(&bob), None)
        .await;
    let names: Vec<&str> = templates
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "my-strategy",
            "sma-cross",
            "rsi-reversion",
            "donchian-breakout"
        ]
    );
    assert!(
        templates[1]["params_from"]
            .as_str()
            .unwrap()
            .starts_with("stored-version:")
    );
    assert_eq!(templates[1]["defaults"]["slow"], 30);
    assert_eq!(templates[2]["params_from"], "source");
    assert_eq!(templates[2]["defaults"]["period"], 14);
    assert_eq!(
        templates[0]["defaults"],
        json!({"period": 20, "quantity": 1.0})
    );
    let (_, types) = s
        .call(Method::GET, "/api/strategies/types", Some(&bob), None)
        .await;
    assert_eq!(types[0]["kind"], "upload");
    assert_eq!(types[1]["name"], "sma-cross");
    assert_eq!(types[1]["uploaded"], json!([id, clone_id]));
    assert_eq!(
        types[3]["how"],
        "qtm strategy build strategies/donchian-breakout, then upload the component it prints"
    );

    // A finished backtest survives its strategy.
    let (status, q) = s
        .call(
            Method::POST,
            "/api/backtests",
            Some(&alice),
            Some(
                json!({"strategy_id": id, "version": 2, "data": ["spy_1m_2011.csv"], "symbols": ["G"]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{q}");
    let bt = wait_backtest(&s, &alice, q["id"].as_i64().unwrap()).await;
    assert_eq!(bt["status"], "done", "{bt}");
    assert_eq!(bt["version"], 2);
    assert_eq!(bt["request"]["symbols"], json!(["G"]));
    // Version 2 is not the instance's: defaults, not the configured fast = 5.
    assert_eq!(bt["request"]["params"]["fast"], 10);

    let (status, _) = s
        .call(
            Method::POST,
            &format!("/api/strategies/{id}/disable"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, one) = s
        .call(
            Method::GET,
            &format!("/api/strategies/{id}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(one["instance"]["status"], "disabled");

    // Only the owner or an admin deletes.
    let (status, e) = s
        .call(
            Method::DELETE,
            &format!("/api/strategies/{id}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        error_of(&e).1,
        format!("only the owner of strategy {id} or an admin may delete it")
    );
    let (status, d) = s
        .call(
            Method::DELETE,
            &format!("/api/strategies/{id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["backtests_kept"], 1);
    let (status, _) = s
        .call(
            Method::GET,
            &format!("/api/strategies/{id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, kept) = s
        .call(
            Method::GET,
            &format!("/api/backtests/{}", bt["id"]),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(kept["status"], "done");
    assert!(kept["strategy_id"].is_null());
    assert_eq!(kept["trades_sha256"], bt["trades_sha256"]);
    // The clone keeps its own copy of the code.
    let (status, c) = s
        .call(
            Method::GET,
            &format!("/api/strategies/{clone_id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(c["cloned_from"].is_null(), "source deleted: {c}");
    let (status, _) = s
        .call(
            Method::DELETE,
            &format!("/api/strategies/{clone_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backtest_requests_are_checked_and_failures_are_recorded() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let trader = s.user_token(&admin, "tara", "trader").await;
    let (_, created) = upload_raw(
        &s,
        "/api/strategies",
        &trader,
        sma_bytes(),
        "application/wasm",
    )
    .await;
    let id = created["id"].as_i64().unwrap();

    for (body, field, needle) in [
        (
            json!({"strategy_id": 424242, "data": ["spy_1m_2011.csv"]}),
            "strategy_id",
            "there is no strategy 424242",
        ),
        (
            json!({"strategy_id": id, "version": 7, "data": ["spy_1m_2011.csv"]}),
            "version",
            "has no version 7",
        ),
        (
            json!({"strategy_id": id, "data": ["../data/goog_1d.csv"]}),
            "data",
            "without any path",
        ),
        (
            json!({"strategy_id": id, "data": ["/etc/passwd"]}),
            "data",
            "without any path",
        ),
        (
            json!({"strategy_id": id, "data": ["nope.csv"]}),
            "data",
            "spy_1m_2011.csv",
        ),
        (json!({"strategy_id": id}), "data", "give `data`"),
        (
            json!({"strategy_id": id, "data": ["spy_1m_2011.csv", "nvda_1d.csv"], "symbols": ["A"]}),
            "symbols",
            "one symbol per file",
        ),
        (
            json!({"strategy_id": id, "data": ["spy_1m_2011.csv"], "params": {"slow": 1}}),
            "params.slow",
            "outside 2..=2000",
        ),
        (
            json!({"strategy_id": id, "data": ["spy_1m_2011.csv"], "fill": "whenever"}),
            "fill",
            "next-open",
        ),
        (
            json!({"strategy_id": id, "data": ["spy_1m_2011.csv"], "commission": -0.1}),
            "commission",
            "commission must be a non-negative number, got -0.1",
        ),
        (
            json!({"strategy_id": id, "data": ["spy_1m_2011.csv"], "cash": 0}),
            "cash",
            "cash must be a positive number",
        ),
        (
            json!({"strategy_id": id, "data": ["spy_1m_2011.csv"], "risk": {"max_position": -1}}),
            "risk",
            "max_position",
        ),
        (
            json!({"strategy_id": id, "data": ["spy_1m_2011.csv"], "risk": {"nonsense": 1}}),
            "risk",
            "nonsense",
        ),
    ] {
        let (status, e) = s
            .call(
                Method::POST,
                "/api/backtests",
                Some(&trader),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {e}");
        let (f, _, message) = field_error(&e);
        assert_eq!(f, field, "{body}: {e}");
        assert!(message.contains(needle), "{body}: {message}");
    }
    let (status, e) = s
        .call(
            Method::POST,
            "/api/backtests",
            Some(&trader),
            Some(json!({"strategy_id": id, "dta": []})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_of(&e).1.contains("unknown field `dta`"), "{e}");

    // Stored price history that is not there: accepted, then failed with the reason.
    let (status, q) = s
        .call(
            Method::POST,
            "/api/backtests",
            Some(&trader),
            Some(json!({"strategy_id": id, "symbols": ["ZZZ"]})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{q}");
    let failed = wait_backtest(&s, &trader, q["id"].as_i64().unwrap()).await;
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .starts_with("no stored price history for ZZZ"),
        "{failed}"
    );
    // The strategy refusing its parameters at run time is a failed run, not a crash.
    let (status, q) = s
        .call(
            Method::POST,
            "/api/backtests",
            Some(&trader),
            Some(json!({"strategy_id": id, "data": ["spy_1m_2011.csv"], "params": {"fast": 50, "slow": 20}})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let failed = wait_backtest(&s, &trader, q["id"].as_i64().unwrap()).await;
    assert_eq!(failed["status"], "failed");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("fast (50) must be shorter than slow (20)"),
        "{error}"
    );
    assert!(!error.contains('/'), "no server paths in errors: {error}");

    let (status, e) = s
        .call(Method::GET, "/api/backtests?limit=0", Some(&trader), None)
        .await;
    assert_eq!(
        (status, field_error(&e).0.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "limit")
    );
    let (_, all) = s
        .call(Method::GET, "/api/backtests", Some(&trader), None)
        .await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    let (status, _) = s
        .call(Method::GET, "/api/backtests/999999", Some(&trader), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_answered_before_its_body_is_read_closes_the_connection_and_the_next_request_works()
 {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let bytes = qtm_tests::component(guests::SMA_CROSS);
    let post = |path: &str, token: Option<&str>| {
        let mut req = s
            .http
            .post(format!("{}{path}", s.base))
            .header("content-type", "application/wasm")
            .body(bytes.clone());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let connection = |r: &reqwest::Response| {
        r.headers()
            .get("connection")
            .map(|v| v.to_str().unwrap().to_string())
    };
    // A version for a strategy that does not exist: the upload is read, then refused, and the
    // connection stays usable.
    let r = post("/api/strategies/999999/versions", Some(&admin))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(connection(&r), None);
    // No token: refused before the body is read, so the server says it closes.
    for _ in 0..20 {
        let r = post("/api/strategies", None).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(connection(&r).as_deref(), Some("close"));
        // The client does not reuse that connection: the next request gets its answer.
        let (st, body) = s
            .call(Method::GET, "/api/strategies", Some(&admin), None)
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
    }
}

/// Start a backtest of `strategy_id` on the bundled minute bars (in every data directory a test
/// server gets) with a strategy that spends some 200 µs a bar (within its fuel), so it runs for
/// seconds unless stopped; returns its id once it runs.
async fn start_slow_backtest(s: &TestServer, token: &str, strategy_id: i64) -> i64 {
    let (status, q) = s
        .call(
            Method::POST,
            "/api/backtests",
            Some(token),
            Some(
                json!({"strategy_id": strategy_id, "data": ["spy_1m_2011.csv"],
                        "params": {"attack": "burn", "iterations": 50000}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{q}");
    let id = q["id"].as_i64().unwrap();
    for _ in 0..600 {
        let (_, b) = s
            .call(
                Method::GET,
                &format!("/api/backtests/{id}"),
                Some(token),
                None,
            )
            .await;
        match b["status"].as_str() {
            Some("queued") => tokio::time::sleep(Duration::from_millis(20)).await,
            Some("running") => return id,
            _ => panic!("backtest {id} ended before it could be stopped: {b}"),
        }
    }
    panic!("backtest {id} never started");
}

/// Wait until no backtest job is left in the server (the run itself has stopped).
async fn jobs_end(s: &TestServer, within: Duration) {
    let started = std::time::Instant::now();
    while s.server.state.backtest_jobs.active() > 0 {
        assert!(
            started.elapsed() < within,
            "the backtest job still runs after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backtest_jobs_are_cancelled_by_their_owner_or_an_admin_and_time_out() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let tara = s.user_token(&admin, "tara", "trader").await;
    let otto = s.user_token(&admin, "otto", "trader").await;
    let vic = s.user_token(&admin, "vic", "viewer").await;
    let (status, created) = upload_raw(
        &s,
        "/api/strategies",
        &tara,
        qtm_tests::component(guests::HOSTILE),
        "application/wasm",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let sid = created["id"].as_i64().unwrap();
    let mut ws = ws_connect(&s, &format!("/ws/notifications?token={tara}")).await;

    let bt = start_slow_backtest(&s, &tara, sid).await;
    let cancel = format!("/api/backtests/{bt}/cancel");
    for (who, token, code) in [("otto", &otto, "forbidden"), ("vic", &vic, "forbidden")] {
        let (status, e) = s.call(Method::POST, &cancel, Some(token), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who}: {e}");
        assert_eq!(error_of(&e).0, code);
    }
    let (status, e) = s.call(Method::POST, &cancel, Some(&otto), None).await;
    assert!(
        error_of(&e)
            .1
            .contains("only the user who started backtest"),
        "{status} {e}"
    );
    let asked = std::time::Instant::now();
    let (status, b) = s.call(Method::POST, &cancel, Some(&tara), None).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(
        (b["status"].as_str(), b["error"].as_str()),
        (Some("cancelled"), Some("cancelled by tara"))
    );
    jobs_end(&s, Duration::from_secs(5)).await;
    eprintln!(
        "the cancelled job ended {:?} after the call",
        asked.elapsed()
    );
    let (_, b) = s
        .call(
            Method::GET,
            &format!("/api/backtests/{bt}"),
            Some(&tara),
            None,
        )
        .await;
    assert_eq!(
        b["status"], "cancelled",
        "a result arriving late is not stored: {b}"
    );
    assert!(
        b["metrics"].is_null() && b["trades_sha256"].is_null(),
        "{b}"
    );
    loop {
        let m = next_json(&mut ws).await;
        if m["data"]["backtest_id"] == bt && m["data"]["event"] != "backtest.queued" {
            assert_eq!(m["data"]["event"], "backtest.cancelled", "{m}");
            break;
        }
    }
    // Ended backtests cannot be cancelled; unknown ones are not found.
    let (status, e) = s.call(Method::POST, &cancel, Some(&tara), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{e}");
    assert!(error_of(&e).1.contains("already ended (cancelled)"), "{e}");
    let (status, _) = s
        .call(
            Method::POST,
            "/api/backtests/999999/cancel",
            Some(&tara),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // An admin may cancel anyone's.
    let bt = start_slow_backtest(&s, &tara, sid).await;
    let (status, b) = s
        .call(
            Method::POST,
            &format!("/api/backtests/{bt}/cancel"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        (status, b["error"].as_str()),
        (StatusCode::OK, Some("cancelled by admin")),
        "{b}"
    );
    jobs_end(&s, Duration::from_secs(5)).await;
    s.stop().await;

    // A job past the server's time limit fails with the reason.
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_on(&dir.path().join("qtm.db"), |c| c.backtest_timeout_secs = 1).await;
    let admin = s.admin_token().await;
    let (_, created) = upload_raw(
        &s,
        "/api/strategies",
        &admin,
        qtm_tests::component(guests::HOSTILE),
        "application/wasm",
    )
    .await;
    let bt = start_slow_backtest(&s, &admin, created["id"].as_i64().unwrap()).await;
    let started = std::time::Instant::now();
    let b = wait_backtest(&s, &admin, bt).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(b["status"], "failed", "{b}");
    let error = b["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "timed out: backtest stopped after 1 s (the server's backtest_timeout_secs)"
        ),
        "{error}"
    );
    jobs_end(&s, Duration::from_secs(5)).await;
    s.stop().await;
}

/// A backtest over the store's history (no `data` files) runs those bars from memory and
/// trades exactly as the same bars read from their file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backtest_over_stored_bars_trades_as_one_over_their_file() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    import_spy(&s).await;
    let (status, up) = upload_multipart(
        &s,
        "/api/strategies",
        &admin,
        sma_bytes(),
        &[("name", "sma")],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{up}");
    let id = up["id"].as_i64().or(up["strategy"]["id"].as_i64()).unwrap();
    let mut done = Vec::new();
    for request in [
        json!({"strategy_id": id, "symbols": ["SPY"]}),
        json!({"strategy_id": id, "data": ["spy_1m_2011.csv"], "symbols": ["SPY"]}),
    ] {
        let (status, q) = s
            .call(Method::POST, "/api/backtests", Some(&admin), Some(request))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{q}");
        let bt = wait_backtest(&s, &admin, q["id"].as_i64().unwrap()).await;
        assert_eq!(bt["status"], "done", "{bt}");
        done.push(bt);
    }
    assert_eq!(done[0]["trades_sha256"], done[1]["trades_sha256"]);
    assert_eq!(done[0]["bars_done"], done[1]["bars_done"]);
    assert!(
        done[0]["metrics"]["n_trades"].as_u64().unwrap() > 10,
        "{}",
        done[0]
    );
}

/// `POST /api/strategies` with a rule program as JSON: an ordinary strategy whose component the
/// server built; its backtest trades exactly as the uploaded sma-cross with the same settings.
/// A program with problems gets a 422 that names each at its `line:col`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_program_posted_as_json_is_a_strategy_that_trades_as_sma_cross() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    import_spy(&s).await;
    let program = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../strategies/rules/examples/sma-cross.rules"),
    )
    .unwrap();
    let (status, rules) = s
        .call(
            Method::POST,
            "/api/strategies",
            Some(&admin),
            Some(json!({"name": "sma rules", "rules": program})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rules}");
    let strategy = if rules["strategy"].is_object() {
        &rules["strategy"]
    } else {
        &rules
    };
    assert_eq!(strategy["source"], "rules", "{rules}");
    assert_eq!(strategy["name"], "sma rules", "{rules}");
    let params: Vec<&str> = rules["info"]["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["fast", "slow"], "{rules}");
    let rules_id = strategy["id"].as_i64().unwrap();

    let (status, up) = upload_multipart(
        &s,
        "/api/strategies",
        &admin,
        sma_bytes(),
        &[("name", "sma")],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{up}");
    let sma_id = up["id"].as_i64().or(up["strategy"]["id"].as_i64()).unwrap();

    let mut hashes = Vec::new();
    for request in [
        json!({"strategy_id": rules_id, "symbols": ["SPY"]}),
        json!({"strategy_id": sma_id, "symbols": ["SPY"],
               "params": {"mode": "flip", "sizing": "equity", "quantity": 1.0}}),
    ] {
        let (status, q) = s
            .call(Method::POST, "/api/backtests", Some(&admin), Some(request))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{q}");
        let bt = wait_backtest(&s, &admin, q["id"].as_i64().unwrap()).await;
        assert_eq!(bt["status"], "done", "{}", bt["error"]);
        let trades = bt["trades"].as_array().map_or(0, Vec::len);
        assert!(trades > 10, "{trades} trades");
        hashes.push(bt["trades_sha256"].clone());
    }
    assert_eq!(hashes[0], hashes[1]);

    // Every problem, each at its place; nothing stored.
    let (status, bad) = s
        .call(
            Method::POST,
            "/api/strategies",
            Some(&admin),
            Some(json!({"name": "bad", "rules": "param fast = int(10, 2, 200)\nlet f = smaa(close, fast)\nentry_long = f\n"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    let (field, code, message) = field_error(&bad);
    assert_eq!(
        (field.as_str(), code.as_str()),
        ("rules", "validation"),
        "{bad}"
    );
    assert!(
        message.starts_with("the rule program has 2 problem(s): "),
        "{message}"
    );
    assert!(
        message.contains("2:9: unknown function `smaa`"),
        "{message}"
    );
    assert!(
        message.contains("4:1: the program has no `size` rule"),
        "{message}"
    );
    let (status, list) = s
        .call(Method::GET, "/api/strategies", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2), "{list}");

    // Unknown fields and malformed JSON are refused with what was expected.
    let (status, body) = s
        .call(
            Method::POST,
            "/api/strategies",
            Some(&admin),
            Some(json!({"name": "x", "rule": "…"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(error_of(&body).1.contains("unknown field `rule`"), "{body}");
    assert!(error_of(&body).1.contains("\"name\", \"rules\""), "{body}");
    s.stop().await;
}
