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
            account: Some(qtm_runtime::live::strategy_account(id)),
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
        assert_eq!(st, StatusCode::CREATED, "{key}");
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
            let accepted = orders
                .iter()
                .filter(|o| o.status.as_str() != "rejected")
                .count();
            let refused = orders
                .iter()
                .filter(|o| o.status.as_str() == "rejected")
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
            // Two resting manual orders are over the total of one.
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
            for o in body["items"].as_array().unwrap() {
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
    assert_eq!(orders[0].status.as_str(), "rejected");
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
        let i = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["strategy_id"] == *id)
            .expect("listed");
        assert_eq!(i["status"], "halted", "{i}");
    }
    s.stop().await;
}

/// One bar of SPY over `POST /api/market`; returns once the engine has handled it and the
/// recorder has stored what it did.
async fn spy_bar(s: &TestServer, token: &str, ts: i64, ohlc: [f64; 4]) {
    let [open, high, low, close] = ohlc;
    let b = json!({"symbol": "SPY", "ts": ts, "open": open, "high": high, "low": low,
                   "close": close, "volume": 1000.0});
    let (st, body) = s
        .call(
            Method::POST,
            "/api/market",
            Some(token),
            Some(json!({"bars": [b]})),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{body}");
    s.server.state.live.flush().await.unwrap();
}

/// The fills of `account`, oldest first.
async fn fills_of(s: &TestServer, account: &str) -> Vec<store::orders::FillRecord> {
    let mut fills = store::orders::fills(
        &s.server.state.store,
        &store::orders::FillFilter {
            account: Some(account.parse().unwrap()),
            limit: 1000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    fills.reverse();
    fills
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_and_strategy_orders_fill_in_one_engine_at_one_price() {
    let dir = tempfile::tempdir().unwrap();
    let s = server_on(&dir.path().join("qtm.db")).await;
    let src = Sources::new(&s).await;
    let strategy = format!("strategy:{}", src.strategies[0]);
    let cfg = s.server.state.live.config().engine.exchange.clone();
    // Bar 1: each strategy buys 1 at market, to fill on bar 2.
    spy_bar(&s, &src.admin, 2_000_000_000, [PRICE; 4]).await;
    // The manual buys go in between: they too fill on bar 2.
    // One order from each manual source (token, API key, WebSocket).
    let placed = src.manual(&s).await;
    for (st, body) in &placed {
        assert_eq!(*st, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "accepted", "{body}");
    }
    // Every source books to the placing user's own account.
    let account = placed[0].1["account"].as_str().unwrap().to_string();
    assert!(account.starts_with("user:"), "{account}");
    assert!(placed.iter().all(|(_, o)| o["account"] == account.as_str()));
    assert!(
        fills_of(&s, &account).await.is_empty(),
        "nothing fills before a bar"
    );
    // Bar 2 opens away from the last close: market orders fill at its open, with slippage.
    spy_bar(&s, &src.admin, 2_000_000_060, [103.0, 105.0, 101.0, 104.0]).await;
    let manual = fills_of(&s, &account).await;
    let by_strategy = fills_of(&s, &strategy).await;
    assert_eq!(manual.len(), placed.len(), "{manual:?}");
    assert_eq!(by_strategy.len(), 1, "{by_strategy:?}");
    let price = 103.0 * (1.0 + cfg.slippage_bps / 1e4);
    let fee = price * cfg.commission + cfg.fixed_fee;
    for f in manual.iter().chain(&by_strategy) {
        // One exchange, one set of rules: the same price and costs for both accounts.
        assert_eq!(f.price, by_strategy[0].price, "{f:?}");
        assert_eq!(f.fee, by_strategy[0].fee, "{f:?}");
        assert!((f.price - price).abs() < 1e-9, "{f:?}");
        assert!((f.fee - fee).abs() < 1e-9, "{f:?}");
        assert_eq!(f.ts, 2_000_000_060);
    }
    // The manual position and the account's cash, as the store totals them.
    let account: store::orders::AccountId = account.parse().unwrap();
    let open = store::orders::open_positions(&s.server.state.store, Some(account))
        .await
        .unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    let n = placed.len() as f64;
    assert_eq!(open[0].quantity, n);
    assert!((open[0].avg_price - price).abs() < 1e-9);
    let (cash_flow, fees) = store::orders::cash_flow(&s.server.state.store, Some(account))
        .await
        .unwrap();
    assert!((cash_flow + n * price).abs() < 1e-6, "{cash_flow}");
    assert!((fees - n * fee).abs() < 1e-9, "{fees}");
    // The risk views read the same book: equity at the close of bar 2.
    let (st, m) = s
        .call(Method::GET, "/api/risk/metrics", Some(&src.admin), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{m}");
    assert_eq!(
        m["open_positions"].as_i64(),
        Some(1 + src.strategies.len() as i64),
        "{m}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_manual_limit_order_is_worked_again_after_a_restart_and_fills() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("qtm.db");
    let s = server_on(&db).await;
    let admin = s.admin_token().await;
    let trader = s.user_token(&admin, "tina", "trader").await;
    let limit = json!({"symbol": "SPY", "side": "buy", "quantity": 2.0, "type": "limit", "limit_price": 95.0});
    let (st, o) = s
        .call(Method::POST, "/api/orders", Some(&trader), Some(limit))
        .await;
    assert_eq!(st, StatusCode::OK, "{o}");
    let id = o["id"].as_i64().unwrap();
    // Not reached before the restart.
    spy_bar(&s, &admin, 2_000_000_000, [PRICE; 4]).await;
    assert_eq!(
        store::orders::get(&s.server.state.store, id)
            .await
            .unwrap()
            .status
            .as_str(),
        "accepted"
    );
    s.stop().await;

    let (s, admin, _) = restart(&db).await;
    spy_bar(&s, &admin, 2_000_000_060, [97.0, 98.0, 94.0, 96.0]).await;
    let o = store::orders::get(&s.server.state.store, id).await.unwrap();
    assert_eq!(
        (o.status.as_str(), o.avg_price),
        ("filled", Some(95.0)),
        "{o:?}"
    );
    let open = store::orders::open_positions(&s.server.state.store, Some(o.account))
        .await
        .unwrap();
    assert_eq!((open.len(), open[0].quantity), (1, 2.0), "{open:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_switch_takes_the_manual_orders_off_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let s = server_on(&dir.path().join("qtm.db")).await;
    let admin = s.admin_token().await;
    let trader = s.user_token(&admin, "tina", "trader").await;
    let mut events = s.server.state.live.subscribe();
    let mut ids = Vec::new();
    for price in [50.0, 60.0] {
        let (st, o) = s
            .call(
                Method::POST,
                "/api/orders",
                Some(&trader),
                Some(json!({"symbol": "SPY", "side": "buy", "quantity": 1.0, "type": "limit", "limit_price": price})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{o}");
        ids.push(o["id"].as_i64().unwrap());
    }
    let (st, h) = s
        .call(Method::POST, "/api/risk/halt", Some(&admin), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{h}");
    let cancelled: Vec<i64> = h["cancelled_orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect();
    assert_eq!(cancelled, ids, "{h}");
    for id in &ids {
        let o = store::orders::get(&s.server.state.store, *id)
            .await
            .unwrap();
        assert_eq!(
            (o.status.as_str(), o.reason.as_deref()),
            ("cancelled", Some("kill switch"))
        );
    }
    // The engine announced each cancel as it stored it.
    let mut announced = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let qtm_runtime::live::LiveEvent::OrderCancelled { order } = &*e {
            announced.push(order.id);
        }
    }
    assert_eq!(announced, ids);
    // Off the exchange, not only in the store: a bar through both prices fills nothing,
    // after the switch is released too.
    let (st, _) = s
        .call(Method::POST, "/api/risk/resume", Some(&admin), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    spy_bar(&s, &admin, 2_000_000_000, [55.0, 70.0, 40.0, 45.0]).await;
    let account = store::orders::get(&s.server.state.store, ids[0])
        .await
        .unwrap()
        .account;
    assert!(fills_of(&s, &account.text()).await.is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_manual_orders_cannot_both_pass_a_limit_only_one_fits() {
    let dir = tempfile::tempdir().unwrap();
    let s = server_on(&dir.path().join("qtm.db")).await;
    let admin = s.admin_token().await;
    let trader = s.user_token(&admin, "tina", "trader").await;
    let (st, body) = s
        .call(
            Method::PUT,
            "/api/risk/parameters",
            Some(&admin),
            Some(json!({"max_open_orders": 3})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    // Judged and placed in one step on the engine thread: no lock, and still never a fourth.
    let order = json!({"symbol": "SPY", "side": "buy", "quantity": 1.0, "type": "limit", "limit_price": 50.0});
    let answers = futures_util::future::join_all((0..12).map(|_| {
        s.call(
            Method::POST,
            "/api/orders",
            Some(&trader),
            Some(order.clone()),
        )
    }))
    .await;
    let accepted = answers
        .iter()
        .filter(|(st, _)| *st == StatusCode::OK)
        .count();
    assert_eq!(accepted, 3, "{answers:?}");
    for (st, body) in answers.iter().filter(|(st, _)| *st != StatusCode::OK) {
        assert_eq!(*st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(error_of(body).1.contains("max_open_orders is 3"), "{body}");
    }
    let working = store::orders::working(&s.server.state.store, None)
        .await
        .unwrap();
    assert_eq!(working.len(), 3);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_trades_their_own_account_and_only_they_or_an_admin_close_its_trades() {
    let dir = tempfile::tempdir().unwrap();
    let s = server_on(&dir.path().join("qtm.db")).await;
    let admin = s.admin_token().await;
    let tina = s.user_token(&admin, "tina", "trader").await;
    let tom = s.user_token(&admin, "tom", "trader").await;
    let buy = |q: f64| json!({"symbol": "SPY", "side": "buy", "quantity": q});
    let (st, a) = s
        .call(Method::POST, "/api/orders", Some(&tina), Some(buy(2.0)))
        .await;
    assert_eq!(st, StatusCode::OK, "{a}");
    let (st, b) = s
        .call(Method::POST, "/api/orders", Some(&tom), Some(buy(3.0)))
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let (tinas, toms) = (
        a["account"].as_str().unwrap(),
        b["account"].as_str().unwrap(),
    );
    assert!(
        tinas.starts_with("user:") && toms.starts_with("user:"),
        "{a} {b}"
    );
    assert_ne!(tinas, toms);
    spy_bar(&s, &admin, 2_000_000_000, [PRICE; 4]).await;

    // Each account holds its own position and paid for its own fills only.
    let store = &s.server.state.store;
    for (account, quantity) in [(tinas, 2.0), (toms, 3.0)] {
        let fills = fills_of(&s, account).await;
        assert_eq!(fills.len(), 1, "{account}: {fills:?}");
        let id: store::orders::AccountId = account.parse().unwrap();
        let open = store::orders::open_positions(store, Some(id))
            .await
            .unwrap();
        assert_eq!(
            open.iter().map(|p| p.quantity).collect::<Vec<_>>(),
            vec![quantity],
            "{account}"
        );
        let (flow, fees) = store::orders::cash_flow(store, Some(id)).await.unwrap();
        assert!(
            (flow + quantity * fills[0].price).abs() < 1e-6,
            "{account}: {flow}"
        );
        assert!((fees - fills[0].fee).abs() < 1e-9, "{account}: {fees}");
    }

    // Tom may not close Tina's trade; Tina may, and the close is booked to her account.
    let (st, trades) = s
        .call(
            Method::GET,
            &format!("/api/trades?account={tinas}"),
            Some(&tom),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{trades}");
    let trade = trades["items"][0]["id"].as_i64().unwrap();
    let close = format!("/api/trades/{trade}/close");
    let (st, e) = s.call(Method::POST, &close, Some(&tom), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{e}");
    let (code, message) = error_of(&e);
    assert_eq!(code, "forbidden");
    assert!(
        message.contains(&format!("another user's account ({tinas})")),
        "{message}"
    );
    let (st, o) = s.call(Method::POST, &close, Some(&tina), None).await;
    assert_eq!(st, StatusCode::OK, "{o}");
    assert_eq!(
        (o["account"].as_str(), o["side"].as_str()),
        (Some(tinas), Some("sell"))
    );

    // Each trader's portfolio lists their own account, whatever else traded.
    let (st, p) = s
        .call(Method::GET, "/api/portfolio", Some(&tom), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    let listed: Vec<&str> = p["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account"].as_str().unwrap())
        .collect();
    assert!(
        listed.contains(&toms) && listed.contains(&tinas),
        "{listed:?}"
    );
    s.stop().await;
}
