//! One admission path for every order: manual orders over REST (a user's token and an API
//! key) and over the `/ws/trading` WebSocket, and live strategies trading bars ingested over REST and over the WebSocket are all
//! judged by the account-wide limits and stopped by the kill switch; a restart keeps the
//! order-rate window and the halt. Runs on the bundled SPY data alone.

use std::time::Duration;

use futures_util::SinkExt;
use qtm_runtime::store::{self, market};
use qtm_tests::guests;
use qtm_tests::server::{TestServer, TradingWs, error_of};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Price of every ingested bar: order notionals are 100 × quantity.
const PRICE: f64 = 100.0;

/// A server whose store holds SPY's first bundled bars (so manual orders have a symbol and a
/// price), on the database file `db`.
async fn server_on(db: &std::path::Path) -> TestServer {
    let s = TestServer::start_on(db, |_| {}).await;
    market::import_csv(
        &s.server.state.store,
        &qtm_tests::bundled_slice(50),
        &market::ImportOptions {
            symbol: "SPY".into(),
            ..Default::default()
        },
    )
    .await
    .expect("SPY imports");
    s
}

/// Who places orders in the table's rows.
struct Sources {
    admin: String,
    trader: String,
    api_key: String,
    /// The trader's `/ws/trading` session, open for the whole test: a long-lived session must
    /// meet each limit set after it opened.
    ws: tokio::sync::Mutex<TradingWs>,
    /// Live strategies buying 1 SPY on every bar.
    strategies: Vec<i64>,
    /// Ts of the next bar to ingest.
    next_ts: i64,
}

async fn upload_buyer(s: &TestServer, token: &str, name: &str) -> i64 {
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(qtm_tests::component(guests::SEQ_RECORDER_V1))
                .file_name("s.wasm"),
        )
        .text("name", name.to_string());
    let resp = s
        .http
        .post(format!("{}/api/strategies", s.base))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (st, body) = TestServer::decode(resp).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let id = body["id"]
        .as_i64()
        .or(body["strategy"]["id"].as_i64())
        .unwrap();
    let (st, body) = s
        .call(
            Method::PUT,
            &format!("/api/strategies/{id}/configure"),
            Some(token),
            Some(json!({"params": {"act_every": 1}, "symbols": ["SPY"]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    enable(s, token, id).await;
    id
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
}

/// The stored orders of strategy `id`, newest first.
async fn strategy_orders_of(s: &TestServer, id: i64) -> Vec<store::orders::Order> {
    store::orders::list(
        &s.server.state.store,
        &store::orders::OrderFilter {
            account: Some(format!("strategy:{id}")),
            limit: 10_000,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// The server on `db` again, with the admin's and the trader's tokens.
async fn restart(db: &std::path::Path) -> (TestServer, String, String) {
    let s = TestServer::start_on(db, |_| {}).await;
    let admin = s.admin_token().await;
    let trader = s.token("tina", "tina-password").await;
    (s, admin, trader)
}

fn bar(ts: i64) -> Value {
    json!({"symbol": "SPY", "ts": ts, "open": PRICE, "high": PRICE, "low": PRICE,
           "close": PRICE, "volume": 1000.0})
}

impl Sources {
    async fn new(s: &TestServer) -> Sources {
        let admin = s.admin_token().await;
        let trader = s.user_token(&admin, "tina", "trader").await;
        let (st, key) = s
            .call(
                Method::POST,
                "/api/users/api-keys",
                Some(&trader),
                Some(json!({"name": "bot", "role": "trader"})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{key}");
        let api_key = key["key"].as_str().unwrap().to_string();
        let strategies = vec![
            upload_buyer(s, &admin, "buyer-a").await,
            upload_buyer(s, &admin, "buyer-b").await,
        ];
        let ws = TradingWs::connect(s, &format!("token={trader}")).await;
        assert_eq!(ws.welcome["role"], "trader", "{}", ws.welcome);
        Sources {
            admin,
            trader,
            api_key,
            ws: tokio::sync::Mutex::new(ws),
            strategies,
            // After the imported history.
            next_ts: 2_000_000_000,
        }
    }

    async fn limits(&self, s: &TestServer, limits: Value) {
        let (st, body) = s
            .call(
                Method::PUT,
                "/api/risk/parameters",
                Some(&self.admin),
                Some(limits),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
    }

    /// A manual buy of 1 SPY by the trader's token, by their API key and over their
    /// `/ws/trading` session: the three answers (the WebSocket's as the REST status and body
    /// it stands for).
    async fn manual(&self, s: &TestServer) -> [(StatusCode, Value); 3] {
        let order = json!({"symbol": "SPY", "side": "buy", "quantity": 1.0});
        let by_token = s
            .call(
                Method::POST,
                "/api/orders",
                Some(&self.trader),
                Some(order.clone()),
            )
            .await;
        let resp = s
            .http
            .post(format!("{}/api/orders", s.base))
            .header("X-API-Key", &self.api_key)
            .json(&order)
            .send()
            .await
            .unwrap();
        let by_key = TestServer::decode(resp).await;
        let by_ws = self.ws.lock().await.place(order).await;
        [by_token, by_key, by_ws]
    }

    /// One bar over `POST /api/market`, one over `/ws/ingest`; returns once the engine has
    /// handled and stored both.
    async fn two_bars(&mut self, s: &TestServer) {
        let (st, body) = s
            .call(
                Method::POST,
                "/api/market",
                Some(&self.admin),
                Some(json!({"bars": [bar(self.next_ts)]})),
            )
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{body}");
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}/ws/ingest", s.ws_base()))
            .await
            .unwrap();
        let text = |v: Value| Message::Text(v.to_string().into());
        ws.send(text(json!({"type": "auth", "token": self.admin})))
            .await
            .unwrap();
        let welcome = qtm_tests::server::next_json(&mut ws).await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        ws.send(text(json!({"id": 1, "bars": [bar(self.next_ts + 60)]})))
            .await
            .unwrap();
        let ack = qtm_tests::server::next_json(&mut ws).await;
        assert_eq!(ack, json!({"type": "ack", "id": 1, "bars": 1, "ticks": 0}));
        self.next_ts += 120;
        // The engine handles bars in arrival order: once a later command is answered, so
        // are they, and the flush waits for the recorder.
        tokio::time::timeout(Duration::from_secs(30), s.server.state.live.flush())
            .await
            .expect("engine answers")
            .unwrap();
    }

    /// (accepted, refused) orders of each strategy so far, with the refusal reasons.
    async fn strategy_orders(&self, s: &TestServer) -> Vec<(usize, Vec<String>)> {
        let mut out = Vec::new();
        for id in &self.strategies {
            let orders = strategy_orders_of(s, *id).await;
            let accepted = orders.iter().filter(|o| o.status != "rejected").count();
            let refused = orders
                .iter()
                .filter(|o| o.status == "rejected")
                .map(|o| o.reason.clone().unwrap_or_default())
                .collect();
            out.push((accepted, refused));
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_order_source_is_stopped_by_each_account_limit_and_by_the_kill_switch() {
    let dir = tempfile::tempdir().unwrap();
    let s = server_on(&dir.path().join("qtm.db")).await;
    let mut src = Sources::new(&s).await;

    // Without limits every source trades: the rows below can fail.
    src.two_bars(&s).await;
    for (st, body) in src.manual(&s).await {
        assert_eq!(st, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "accepted", "{body}");
    }
    let before = src.strategy_orders(&s).await;
    for (accepted, refused) in &before {
        assert_eq!((*accepted, refused.len()), (2, 0), "one order per bar");
    }

    // Each account-wide limit, set at run time, and the text every source is refused with.
    let table = [
        (
            json!({"max_order_quantity": 0.5}),
            "order quantity 1 exceeds max_order_quantity 0.5",
        ),
        (
            json!({"max_order_notional": 50}),
            "order notional 100.00 exceeds max_order_notional 50",
        ),
        (json!({"max_position": 3}), "exceeds max_position 3"),
        (
            json!({"max_gross_exposure": 250}),
            "exceeds max_gross_exposure 250",
        ),
        (json!({"max_open_orders": 1}), "max_open_orders is 1"),
        (
            json!({"max_orders_per_window": 3, "order_window_secs": 3600}),
            "order rate limit: 3 orders per 3600 s reached",
        ),
    ];
    for (limits, text) in table {
        src.limits(&s, limits.clone()).await;
        if limits.get("max_open_orders").is_some() {
            // Two resting orders of the desk are over the total of one.
            for price in [50.0, 51.0] {
                src.limits(&s, json!({})).await;
                let (st, body) = s
                    .call(
                        Method::POST,
                        "/api/orders",
                        Some(&src.trader),
                        Some(json!({"symbol": "SPY", "side": "buy", "quantity": 1.0, "type": "limit", "limit_price": price})),
                    )
                    .await;
                assert_eq!(st, StatusCode::OK, "{body}");
            }
            src.limits(&s, limits.clone()).await;
        }
        for (st, body) in src.manual(&s).await {
            assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{limits}: {body}");
            assert_eq!(error_of(&body).0, "risk_rejected", "{body}");
            assert!(error_of(&body).1.contains(text), "{limits}: {body}");
        }
        let was = src.strategy_orders(&s).await;
        src.two_bars(&s).await;
        let now = src.strategy_orders(&s).await;
        for ((a0, r0), (a1, r1)) in was.iter().zip(&now) {
            assert_eq!(
                a1, a0,
                "{limits}: a strategy placed an order past the limit"
            );
            assert_eq!(
                r1.len(),
                r0.len() + 2,
                "{limits}: both bars' orders refused"
            );
            let last = r1.first().expect("newest first");
            assert!(
                last.contains("account limit") && last.contains(text),
                "{limits}: {last}"
            );
        }
        src.limits(&s, json!({})).await;
        if limits.get("max_open_orders").is_some() {
            let (st, body) = s
                .call(
                    Method::GET,
                    "/api/orders?status=working",
                    Some(&src.trader),
                    None,
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{body}");
            for o in body.as_array().unwrap() {
                let path = format!("/api/orders/{}/cancel", o["id"]);
                let (st, body) = s.call(Method::POST, &path, Some(&src.trader), None).await;
                assert_eq!(st, StatusCode::OK, "{body}");
            }
        }
    }

    // The kill switch: manual orders refused, running strategies halted, and a strategy
    // enabled while it is engaged places nothing on its first bar.
    let (st, body) = s
        .call(Method::POST, "/api/risk/halt", Some(&src.admin), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    for (st, body) in src.manual(&s).await {
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(
            error_of(&body)
                .1
                .contains("trading is halted by the kill switch"),
            "{body}"
        );
    }
    let late = upload_buyer(&s, &src.admin, "late-buyer").await;
    src.strategies.push(late);
    let was = src.strategy_orders(&s).await;
    src.two_bars(&s).await;
    let now = src.strategy_orders(&s).await;
    for ((a0, _), (a1, _)) in was.iter().zip(&now) {
        assert_eq!(a1, a0, "an order passed the kill switch");
    }
    let (_, refused) = now.last().unwrap();
    assert_eq!(
        refused.len(),
        2,
        "the late strategy's two orders: {refused:?}"
    );
    assert!(
        refused[0].contains("trading is halted by the kill switch"),
        "{refused:?}"
    );

    // Released, every source trades again.
    let (st, body) = s
        .call(Method::POST, "/api/risk/resume", Some(&src.admin), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    for (st, body) in src.manual(&s).await {
        assert_eq!(st, StatusCode::OK, "{body}");
    }
    let was = src.strategy_orders(&s).await;
    src.two_bars(&s).await;
    let now = src.strategy_orders(&s).await;
    let (a0, _) = was.last().unwrap();
    let (a1, _) = now.last().unwrap();
    assert_eq!(
        *a1,
        a0 + 2,
        "the late strategy trades once the switch is released"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_order_rate_window_and_the_kill_switch() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("qtm.db");
    let s = server_on(&db).await;
    let admin = s.admin_token().await;
    let trader = s.user_token(&admin, "tina", "trader").await;
    let buy = json!({"symbol": "SPY", "side": "buy", "quantity": 1.0});
    let (st, body) = s
        .call(
            Method::PUT,
            "/api/risk/parameters",
            Some(&admin),
            Some(json!({"max_orders_per_window": 2, "order_window_secs": 3600})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    for _ in 0..2 {
        let (st, body) = s
            .call(
                Method::POST,
                "/api/orders",
                Some(&trader),
                Some(buy.clone()),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
    }
    s.stop().await;

    // The window is full after the restart as before it.
    let (s, admin, trader) = restart(&db).await;
    let (st, body) = s
        .call(
            Method::POST,
            "/api/orders",
            Some(&trader),
            Some(buy.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        error_of(&body)
            .1
            .contains("order rate limit: 2 orders per 3600 s reached"),
        "{body}"
    );
    let (st, body) = s
        .call(
            Method::PUT,
            "/api/risk/parameters",
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, body) = s
        .call(
            Method::POST,
            "/api/risk/halt",
            Some(&admin),
            Some(json!({"reason": "drill"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    s.stop().await;

    // The halt too; and a strategy enabled after the restart places nothing.
    let (s, admin, trader) = restart(&db).await;
    let (st, body) = s
        .call(
            Method::POST,
            "/api/orders",
            Some(&trader),
            Some(buy.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        error_of(&body)
            .1
            .contains("kill switch engaged by admin: drill"),
        "{body}"
    );
    let id = upload_buyer(&s, &admin, "after-restart").await;
    let (st, body) = s
        .call(
            Method::POST,
            "/api/market",
            Some(&admin),
            Some(json!({"bars": [bar(2_000_000_000)]})),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{body}");
    s.server.state.live.flush().await.unwrap();
    let orders = strategy_orders_of(&s, id).await;
    assert_eq!(orders.len(), 1, "{orders:?}");
    assert_eq!(orders[0].status, "rejected");
    let (st, _) = s
        .call(Method::POST, "/api/risk/resume", Some(&admin), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = s
        .call(Method::POST, "/api/orders", Some(&trader), Some(buy))
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_daily_loss_limit_halts_every_source_and_is_stored_as_the_kill_switch() {
    let dir = tempfile::tempdir().unwrap();
    let s = server_on(&dir.path().join("qtm.db")).await;
    let src = Sources::new(&s).await;
    let ingest = |ts: i64, price: f64| {
        let (s, admin) = (&s, src.admin.clone());
        async move {
            let mut b = bar(ts);
            for k in ["open", "high", "low", "close"] {
                b[k] = json!(price);
            }
            let (st, body) = s
                .call(
                    Method::POST,
                    "/api/market",
                    Some(&admin),
                    Some(json!({"bars": [b]})),
                )
                .await;
            assert_eq!(st, StatusCode::ACCEPTED, "{body}");
            s.server.state.live.flush().await.unwrap();
        }
    };
    // Each strategy holds SPY bought at 100.
    for ts in [2_000_000_000, 2_000_000_060] {
        ingest(ts, PRICE).await;
    }
    src.limits(&s, json!({"max_daily_loss": 10})).await;
    // The day opens at the next bar's equity; then SPY halves.
    ingest(2_000_000_120, PRICE).await;
    assert!(
        store::risk::halted(&s.server.state.store, "account")
            .await
            .unwrap()
            .is_none()
    );
    ingest(2_000_000_180, PRICE / 2.0).await;
    let halt = store::risk::halted(&s.server.state.store, "account")
        .await
        .unwrap()
        .expect("the account halted");
    assert!(
        halt.reason.starts_with("account daily loss ")
            && halt.reason.ends_with("reached max_daily_loss 10"),
        "{}",
        halt.reason
    );
    for (st, body) in src.manual(&s).await {
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(
            error_of(&body)
                .1
                .contains("trading is halted by the kill switch (account daily loss"),
            "{body}"
        );
    }
    let (st, list) = s
        .call(
            Method::GET,
            "/api/strategy-instances",
            Some(&src.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{list}");
    for id in &src.strategies {
        let i = list
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["strategy_id"] == *id)
            .expect("listed");
        assert_eq!(i["status"], "halted", "{i}");
    }
    s.stop().await;
}
