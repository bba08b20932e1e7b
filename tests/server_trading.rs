//! Trading through the real server: manual orders through the engine's risk checks, the
//! limits in force changed at run time, the kill switch, trades (positions) and their close,
//! risk views, and modules. Prices come from real history (`goog_1d.csv`, last close 806.19)
//! imported into the server's store; a peer data file, so every test here skips without it.

use std::sync::Arc;

use qtm_runtime::api::hub::{HubMessage, Topic};
use qtm_runtime::store::{self, Store};
use qtm_tests::server::{TestServer, error_of};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::broadcast::Receiver;

const GOOG_LAST: f64 = 806.19;

struct Desk {
    s: TestServer,
    admin: String,
    trader: String,
    viewer: String,
}

impl Desk {
    /// A desk, or `None` (the skip printed) where the peer data is missing.
    async fn open() -> Option<Desk> {
        let goog = qtm_tests::peer_file_or_skip("goog_1d.csv")?;
        Some(Self::with_goog(TestServer::start().await, &goog).await)
    }

    /// A desk on the database file `db` (kept by the caller).
    async fn open_on(db: &std::path::Path) -> Option<Desk> {
        let goog = qtm_tests::peer_file_or_skip("goog_1d.csv")?;
        Some(Self::with_goog(TestServer::start_on(db, |_| {}).await, &goog).await)
    }

    /// A server started again on the database of [`Desk::open_on`].
    async fn reopen(db: &std::path::Path) -> Desk {
        let s = TestServer::start_on(db, |_| {}).await;
        Desk {
            admin: s.admin_token().await,
            trader: s.token("tina", "tina-password").await,
            viewer: s.token("vic", "vic-password").await,
            s,
        }
    }

    async fn with_goog(s: TestServer, goog: &std::path::Path) -> Desk {
        let admin = s.admin_token().await;
        let trader = s.user_token(&admin, "tina", "trader").await;
        let viewer = s.user_token(&admin, "vic", "viewer").await;
        let summary = store::market::import_csv(
            s.store(),
            goog,
            &store::market::ImportOptions {
                symbol: "GOOG".into(),
                ..Default::default()
            },
        )
        .await
        .expect("GOOG imports");
        assert!(summary.rows > 2000);
        Desk {
            s,
            admin,
            trader,
            viewer,
        }
    }

    async fn call(
        &self,
        m: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.s.call(m, path, Some(token), body).await
    }

    async fn limits(&self, limits: Value) {
        let (st, body) = self
            .call(
                Method::PUT,
                "/api/risk/parameters",
                &self.admin,
                Some(limits),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
    }

    async fn order(&self, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, "/api/orders", &self.trader, Some(body))
            .await
    }

    /// The trader's own paper account, where their manual orders are booked.
    async fn account(&self) -> store::orders::AccountId {
        let tina = store::users::by_name(self.s.store(), "tina")
            .await
            .unwrap()
            .unwrap();
        store::orders::AccountId::User(tina.id)
    }

    async fn buy(&self, quantity: f64) -> (StatusCode, Value) {
        self.order(json!({"symbol": "GOOG", "side": "buy", "quantity": quantity, "type": "limit", "limit_price": 800.0}))
            .await
    }
}

trait StoreOf {
    fn store(&self) -> &Store;
}
impl StoreOf for TestServer {
    fn store(&self) -> &Store {
        &self.server.state.store
    }
}

/// Every message published since the last drain, as (topic, JSON).
fn drain(rx: &mut Receiver<Arc<HubMessage>>) -> Vec<(Topic, Value)> {
    let mut out = Vec::new();
    while let Ok(m) = rx.try_recv() {
        out.push((m.topic, serde_json::from_str(&m.json).unwrap()));
    }
    out
}

/// The messages of `topic` among `all`.
fn on(all: &[(Topic, Value)], topic: Topic) -> Vec<Value> {
    all.iter()
        .filter(|(t, _)| *t == topic)
        .map(|(_, v)| v.clone())
        .collect()
}

/// Audit actions recorded so far, newest first.
async fn audited(s: &TestServer) -> Vec<(String, String, i64)> {
    store::audit::recent(s.store(), 1000, None)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.action, a.outcome, a.status))
        .collect()
}

fn has_audit(rows: &[(String, String, i64)], action: &str, status: i64) -> bool {
    rows.iter().any(|(a, _, s)| a == action && *s == status)
}

#[track_caller]
fn validation_field(st: StatusCode, body: &Value) -> String {
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_of(body).0, "validation", "{body}");
    body["error"]["field"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_accepted_at_each_limit_and_refused_one_past_it() {
    let Some(d) = Desk::open().await else {
        return;
    };
    let mut rx = d.s.server.state.hub.subscribe();
    d.limits(json!({"max_order_quantity": 10, "max_open_orders": 3}))
        .await;

    // Exactly at max_order_quantity: accepted and working.
    let (st, a) = d.buy(10.0).await;
    assert_eq!(st, StatusCode::OK, "{a}");
    assert_eq!(a["status"], "accepted");
    assert_eq!(a["account"], d.account().await.text());
    assert!(a["account"].as_str().unwrap().starts_with("user:"), "{a}");
    assert_eq!(a["type"], "limit");
    assert_eq!(a["limit_price"], 800.0);
    // One unit above: refused with the engine's reason, stored as rejected.
    let (st, e) = d.buy(11.0).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (code, msg) = error_of(&e);
    assert_eq!(code, "risk_rejected");
    assert!(
        msg.contains("order quantity 11 exceeds max_order_quantity 10"),
        "{msg}"
    );
    let (_, rejected) = d
        .call(Method::GET, "/api/orders?status=rejected", &d.viewer, None)
        .await;
    assert_eq!(rejected["items"].as_array().unwrap().len(), 1);
    assert_eq!(rejected["items"][0]["quantity"], 11.0);
    assert_eq!(
        rejected["items"][0]["reason"],
        "order quantity 11 exceeds max_order_quantity 10"
    );
    let (_, alerts) = d
        .call(Method::GET, "/api/risk/alerts", &d.viewer, None)
        .await;
    assert_eq!(alerts["items"][0]["kind"], "order_rejected");
    assert_eq!(
        alerts["items"][0]["message"],
        "order quantity 11 exceeds max_order_quantity 10"
    );
    let all = drain(&mut rx);
    let published = on(&all, Topic::RiskAlerts);
    assert!(
        published
            .iter()
            .any(|m| m["data"]["event"] == "order_rejected" && m["key"] == "GOOG"),
        "{published:?}"
    );
    let trades = on(&all, Topic::Trades);
    assert_eq!(trades.len(), 1, "only the accepted order is on trades");
    assert_eq!(trades[0]["data"]["order"]["id"], a["id"]);

    // max_open_orders 3: the third working order fits, the fourth does not.
    for _ in 0..2 {
        let (st, o) = d.buy(1.0).await;
        assert_eq!(st, StatusCode::OK, "{o}");
    }
    let (st, e) = d.buy(1.0).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        error_of(&e)
            .1
            .contains("3 open orders already; max_open_orders is 3"),
        "{e}"
    );
    // Another trader may neither cancel nor modify tina's order; an admin may.
    let id = a["id"].as_i64().unwrap();
    let tom = d.s.user_token(&d.admin, "tom", "trader").await;
    for (method, path, body) in [
        (Method::POST, format!("/api/orders/{id}/cancel"), None),
        (
            Method::PUT,
            format!("/api/orders/{id}"),
            Some(json!({"quantity": 2.0})),
        ),
    ] {
        let (st, e) = d.call(method, &path, &tom, body).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{path}: {e}");
        assert_eq!(
            error_of(&e).1,
            format!("order {id} was placed by another user: only they or an admin may change it")
        );
    }
    // Cancelling one frees a slot.
    let (st, c) = d
        .call(
            Method::POST,
            &format!("/api/orders/{id}/cancel"),
            &d.trader,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(c["status"], "cancelled");
    assert_eq!(c["reason"], "cancelled by tina");
    let (st, _) = d.buy(1.0).await;
    assert_eq!(st, StatusCode::OK);

    // Order rate: the window counts every order accepted in it (4 so far, cancelled or not).
    d.limits(json!({"max_orders_per_window": 5, "order_window_secs": 3600}))
        .await;
    let (st, _) = d.buy(1.0).await;
    assert_eq!(st, StatusCode::OK);
    let (st, e) = d.buy(1.0).await;
    assert!(
        st == StatusCode::UNPROCESSABLE_ENTITY
            && error_of(&e)
                .1
                .contains("order rate limit: 5 orders per 3600 s reached"),
        "{e}"
    );

    // Notional is priced at the latest close of the imported history.
    d.limits(json!({"max_order_notional": 8000})).await;
    let (st, e) = d.buy(10.0).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        error_of(&e)
            .1
            .contains("order notional 8061.90 exceeds max_order_notional 8000"),
        "{e}"
    );
    // Price collar around 806.19: 5% is [765.88, 846.50].
    d.limits(json!({"price_collar_pct": 5})).await;
    let (st, e) = d
        .order(json!({"symbol": "GOOG", "side": "sell", "quantity": 1, "type": "limit", "limit_price": 850}))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_of(&e).1.contains("outside the 5% collar"), "{e}");
    let (st, _) = d
        .order(json!({"symbol": "GOOG", "side": "sell", "quantity": 1, "type": "limit", "limit_price": 846}))
        .await;
    assert_eq!(st, StatusCode::OK);

    // Field-named validation, before any risk check.
    for (body, field) in [
        (
            json!({"symbol": "NOPE", "side": "buy", "quantity": 1}),
            "symbol",
        ),
        (
            json!({"symbol": "GOOG", "side": "buy", "quantity": 1, "type": "limit"}),
            "limit_price",
        ),
        (
            json!({"symbol": "GOOG", "side": "buy", "quantity": 1, "type": "stop_limit", "stop_price": 810}),
            "limit_price",
        ),
        (
            json!({"symbol": "GOOG", "side": "buy", "quantity": 1, "limit_price": 800}),
            "limit_price",
        ),
        (
            json!({"symbol": "GOOG", "side": "buy", "quantity": 0}),
            "quantity",
        ),
        (
            json!({"symbol": "GOOG", "side": "buy", "quantity": -2}),
            "quantity",
        ),
        (
            json!({"symbol": "GOOG", "side": "long", "quantity": 1}),
            "side",
        ),
        (
            json!({"symbol": "GOOG", "side": "buy", "quantity": 1, "type": "iceberg"}),
            "type",
        ),
        (
            json!({"symbol": "GOOG", "side": "buy", "quantity": 1, "time_in_force": "forever"}),
            "time_in_force",
        ),
        (
            json!({"symbol": "GOOG", "side": "buy", "quantity": 1, "take_profit": 700, "stop_loss": 750}),
            "take_profit",
        ),
        (
            json!({"symbol": "GOOG", "side": "buy", "quantity": 1, "stop_loss": -1}),
            "stop_loss",
        ),
    ] {
        let (st, e) = d.order(body.clone()).await;
        assert_eq!(validation_field(st, &e), field, "{body} → {e}");
    }
    let (st, e) = d
        .order(json!({"symbol": "GOOG", "side": "buy", "quantity": 1, "leverage": 5}))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_of(&e).1.contains("unknown field `leverage`"), "{e}");
    // Viewers read but do not trade.
    let (st, _) = d
        .call(
            Method::POST,
            "/api/orders",
            &d.viewer,
            Some(json!({"symbol": "GOOG", "side": "buy", "quantity": 1})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Listing and filters.
    let (_, working) = d
        .call(
            Method::GET,
            "/api/orders?status=working&symbol=GOOG",
            &d.viewer,
            None,
        )
        .await;
    assert_eq!(working["items"].as_array().unwrap().len(), 5);
    let (_, two) = d
        .call(Method::GET, "/api/orders?limit=2", &d.viewer, None)
        .await;
    assert_eq!(two["items"].as_array().unwrap().len(), 2);
    assert!(two["items"][0]["id"].as_i64() > two["items"][1]["id"].as_i64());
    let (st, e) = d
        .call(Method::GET, "/api/orders?status=done", &d.viewer, None)
        .await;
    assert_eq!(validation_field(st, &e), "status");
    let (st, one) = d
        .call(Method::GET, &format!("/api/orders/{id}"), &d.viewer, None)
        .await;
    assert_eq!(
        (st, one["status"].as_str()),
        (StatusCode::OK, Some("cancelled"))
    );

    let audit = audited(&d.s).await;
    assert!(has_audit(&audit, "POST /api/orders", 200));
    assert!(has_audit(&audit, "POST /api/orders", 422));
    assert!(has_audit(&audit, "POST /api/orders/{id}/cancel", 200));
    assert!(has_audit(&audit, "PUT /api/risk/parameters", 200));
    d.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_admin_only_validated_and_in_force_at_once() {
    let Some(d) = Desk::open().await else {
        return;
    };
    let mut rx = d.s.server.state.hub.subscribe();
    let (st, e) = d
        .call(
            Method::PUT,
            "/api/risk/parameters",
            &d.trader,
            Some(json!({"max_order_quantity": 1})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{e}");
    for (body, field) in [
        (json!({"max_order_quantity": 0}), "max_order_quantity"),
        (json!({"max_position": -5}), "max_position"),
        (json!({"max_drawdown_pct": 150}), "max_drawdown_pct"),
        (json!({"price_collar_pct": 0}), "price_collar_pct"),
        (json!({"max_open_orders": 1.5}), "max_open_orders"),
        (json!({"order_window_secs": 0}), "order_window_secs"),
        (json!({"max_gross_exposure": "lots"}), "max_gross_exposure"),
        (json!({"max_postion": 5}), "max_postion"),
    ] {
        let (st, e) = d
            .call(
                Method::PUT,
                "/api/risk/parameters",
                &d.admin,
                Some(body.clone()),
            )
            .await;
        assert_eq!(validation_field(st, &e), field, "{body} → {e}");
    }
    let (_, e) = d
        .call(
            Method::PUT,
            "/api/risk/parameters",
            &d.admin,
            Some(json!({"max_postion": 5})),
        )
        .await;
    assert!(
        error_of(&e)
            .1
            .contains("unknown risk parameter `max_postion`"),
        "{e}"
    );
    // Nothing invalid reached the running server.
    assert_eq!(*d.s.server.state.risk.read().unwrap(), Default::default());

    let (st, _) = d.buy(7.0).await;
    assert_eq!(st, StatusCode::OK);
    d.limits(json!({"max_order_quantity": 5, "max_gross_exposure": 1e6}))
        .await;
    // The very next order sees the new limit.
    let (st, e) = d.buy(7.0).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        error_of(&e).1.contains("exceeds max_order_quantity 5"),
        "{e}"
    );
    let (st, _) = d.buy(5.0).await;
    assert_eq!(st, StatusCode::OK);
    let (_, p) = d
        .call(Method::GET, "/api/risk/parameters", &d.viewer, None)
        .await;
    assert_eq!(p["max_order_quantity"], 5.0);
    assert_eq!(p["max_gross_exposure"], 1e6);
    assert_eq!(p["max_position"], Value::Null);
    // Stored, so a restart keeps it.
    let stored = store::risk::account_limits(d.s.store())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.max_order_quantity, Some(5.0));
    let changed = on(&drain(&mut rx), Topic::RiskAlerts);
    assert!(
        changed
            .iter()
            .any(|m| m["data"]["event"] == "limits_changed" && m["data"]["by"] == "admin"),
        "{changed:?}"
    );

    // The seed's alias replaces the whole set the same way.
    let (st, p) = d
        .call(
            Method::POST,
            "/api/risk/configure",
            &d.admin,
            Some(json!({"max_open_orders": 2})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(p["max_order_quantity"], Value::Null);
    let (st, e) = d.buy(7.0).await;
    assert_eq!(
        st,
        StatusCode::UNPROCESSABLE_ENTITY,
        "two orders work already: {e}"
    );
    assert!(error_of(&e).1.contains("max_open_orders is 2"), "{e}");
    let (st, _) = d
        .call(
            Method::POST,
            "/api/risk/configure",
            &d.trader,
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    let audit = audited(&d.s).await;
    assert!(has_audit(&audit, "PUT /api/risk/parameters", 403));
    assert!(has_audit(&audit, "PUT /api/risk/parameters", 422));
    assert!(has_audit(&audit, "POST /api/risk/configure", 200));
    d.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_switch_cancels_working_orders_and_refuses_new_ones_until_resumed() {
    let Some(d) = Desk::open().await else {
        return;
    };
    let mut rx = d.s.server.state.hub.subscribe();
    let mut ids = Vec::new();
    for q in [1.0, 2.0, 3.0] {
        let (st, o) = d.buy(q).await;
        assert_eq!(st, StatusCode::OK);
        ids.push(o["id"].as_i64().unwrap());
    }
    let (st, _) = d
        .call(Method::POST, "/api/risk/halt", &d.trader, None)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, h) = d
        .call(
            Method::POST,
            "/api/risk/halt",
            &d.admin,
            Some(json!({"reason": "fat finger"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{h}");
    assert_eq!(h["halted"], true);
    assert_eq!(
        h["halt"]["reason"],
        "kill switch engaged by admin: fat finger"
    );
    assert_eq!(h["cancelled_orders"].as_array().unwrap().len(), 3);
    for id in &ids {
        let o = store::orders::get(d.s.store(), *id).await.unwrap();
        assert_eq!(
            (o.status.as_str(), o.reason.as_deref()),
            ("cancelled", Some("kill switch"))
        );
    }
    let published = on(&drain(&mut rx), Topic::RiskAlerts);
    assert!(
        published.iter().any(|m| m["data"]["event"] == "kill_switch"
            && m["data"]["cancelled"].as_array().unwrap().len() == 3),
        "{published:?}"
    );

    // New orders are refused, stored as rejected, with the reason.
    let (st, e) = d.buy(1.0).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (code, msg) = error_of(&e);
    assert_eq!(code, "risk_rejected");
    assert!(
        msg.contains("halted by the kill switch (kill switch engaged by admin: fat finger)"),
        "{msg}"
    );
    let (_, m) = d
        .call(Method::GET, "/api/risk/metrics", &d.viewer, None)
        .await;
    assert_eq!(m["halted"], true);
    assert_eq!(m["open_orders"], 0);
    // A second press is harmless and keeps the first reason.
    let (st, h) = d.call(Method::POST, "/api/risk/halt", &d.admin, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        h["halt"]["reason"],
        "kill switch engaged by admin: fat finger"
    );

    let (st, r) = d
        .call(Method::POST, "/api/risk/resume", &d.admin, None)
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["halted"], false);
    let (st, _) = d.buy(1.0).await;
    assert_eq!(st, StatusCode::OK);
    let (_, alerts) = d
        .call(Method::GET, "/api/risk/alerts?limit=10", &d.viewer, None)
        .await;
    let kinds: Vec<&str> = alerts["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "kill_switch_released",
            "kill_switch",
            "order_rejected",
            "kill_switch"
        ]
    );
    let (_, none) = d
        .call(
            Method::GET,
            &format!("/api/risk/alerts?since={}", store::now() + 3600),
            &d.viewer,
            None,
        )
        .await;
    assert_eq!(none["items"], json!([]));
    let (st, e) = d
        .call(Method::GET, "/api/risk/alerts?limit=0", &d.viewer, None)
        .await;
    assert_eq!(validation_field(st, &e), "limit");

    let audit = audited(&d.s).await;
    assert!(has_audit(&audit, "POST /api/risk/halt", 200));
    assert!(has_audit(&audit, "POST /api/risk/halt", 403));
    assert!(has_audit(&audit, "POST /api/risk/resume", 200));
    d.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_modify_and_trades_close_through_the_same_checks() {
    let Some(d) = Desk::open().await else {
        return;
    };
    d.limits(json!({"max_order_quantity": 10})).await;
    let (_, o) = d.buy(4.0).await;
    let id = o["id"].as_i64().unwrap();

    // Modify: new price and quantity, re-checked by risk.
    let (st, m) = d
        .call(
            Method::PUT,
            &format!("/api/orders/{id}"),
            &d.trader,
            Some(json!({"limit_price": 790.5, "quantity": 6})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{m}");
    assert_eq!(
        (m["limit_price"].as_f64(), m["quantity"].as_f64()),
        (Some(790.5), Some(6.0))
    );
    let (st, e) = d
        .call(
            Method::PUT,
            &format!("/api/orders/{id}"),
            &d.trader,
            Some(json!({"quantity": 12})),
        )
        .await;
    assert_eq!(
        (st, error_of(&e).0.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "risk_rejected")
    );
    assert_eq!(
        store::orders::get(d.s.store(), id).await.unwrap().quantity,
        6.0
    );
    let (st, e) = d
        .call(
            Method::PUT,
            &format!("/api/orders/{id}"),
            &d.trader,
            Some(json!({"stop_price": 700})),
        )
        .await;
    assert_eq!(validation_field(st, &e), "stop_price");
    let (st, e) = d
        .call(
            Method::PUT,
            &format!("/api/orders/{id}"),
            &d.trader,
            Some(json!({})),
        )
        .await;
    assert_eq!(validation_field(st, &e), "quantity");
    let (st, _) = d
        .call(
            Method::PUT,
            "/api/orders/999999",
            &d.trader,
            Some(json!({"quantity": 1})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // The live engine books executions through the store; here one fill, as it would.
    store::orders::record_fill(d.s.store(), id, 6.0, 790.5, 1.5, 1_700_000_000)
        .await
        .unwrap();
    let (st, e) = d
        .call(
            Method::POST,
            &format!("/api/orders/{id}/cancel"),
            &d.trader,
            None,
        )
        .await;
    assert_eq!(
        st,
        StatusCode::CONFLICT,
        "a filled order cannot be cancelled: {e}"
    );
    assert!(error_of(&e).1.contains("is filled, not working"), "{e}");
    let (st, _) = d
        .call(
            Method::PUT,
            &format!("/api/orders/{id}"),
            &d.trader,
            Some(json!({"quantity": 8})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);

    // The open trade, marked at GOOG's last close.
    let (_, trades) = d.call(Method::GET, "/api/trades", &d.viewer, None).await;
    let t = &trades["items"][0];
    let tid = t["id"].as_i64().unwrap();
    assert_eq!(
        (
            t["status"].as_str(),
            t["side"].as_str(),
            t["quantity"].as_f64()
        ),
        (Some("open"), Some("long"), Some(6.0))
    );
    assert_eq!(t["mark_price"], GOOG_LAST);
    let upnl = 6.0 * (GOOG_LAST - 790.5);
    assert!(
        (t["unrealized_pnl"].as_f64().unwrap() - upnl).abs() < 1e-6,
        "{t}"
    );

    // Risk views over the same book: 100,000 start, 6 × 790.5 + 1.5 fee spent.
    let (_, m) = d
        .call(Method::GET, "/api/risk/metrics", &d.viewer, None)
        .await;
    let cash = 100_000.0 - 6.0 * 790.5 - 1.5;
    let equity = cash + 6.0 * GOOG_LAST;
    assert!((m["cash"].as_f64().unwrap() - cash).abs() < 1e-6, "{m}");
    assert!((m["equity"].as_f64().unwrap() - equity).abs() < 1e-6, "{m}");
    assert!((m["gross_exposure"].as_f64().unwrap() - 6.0 * GOOG_LAST).abs() < 1e-6);
    assert_eq!(m["open_positions"], 1);
    assert_eq!(m["fees"], 1.5);
    let (_, x) = d
        .call(Method::GET, "/api/risk/exposure", &d.viewer, None)
        .await;
    let g = &x["symbols"][0];
    assert_eq!(
        (
            g["symbol"].as_str(),
            g["side"].as_str(),
            g["quantity"].as_f64()
        ),
        (Some("GOOG"), Some("long"), Some(6.0))
    );
    let pct = 6.0 * GOOG_LAST / equity * 100.0;
    assert!(
        (g["pct_of_equity"].as_f64().unwrap() - pct).abs() < 1e-9,
        "{x}"
    );

    // Close: a market sell of the whole position, through risk (max 10 units: 6 passes).
    let (st, c) = d
        .call(
            Method::POST,
            &format!("/api/trades/{tid}/close"),
            &d.trader,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(
        (
            c["side"].as_str(),
            c["type"].as_str(),
            c["quantity"].as_f64()
        ),
        (Some("sell"), Some("market"), Some(6.0))
    );
    assert_eq!(c["tag"], format!("close-trade:{tid}"));
    let (st, e) = d
        .call(
            Method::POST,
            &format!("/api/trades/{tid}/close"),
            &d.trader,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "a close is already working: {e}");
    store::orders::record_fill(
        d.s.store(),
        c["id"].as_i64().unwrap(),
        6.0,
        806.0,
        1.5,
        1_700_000_060,
    )
    .await
    .unwrap();
    let (_, detail) = d
        .call(Method::GET, &format!("/api/trades/{tid}"), &d.viewer, None)
        .await;
    assert_eq!(detail["status"], "closed");
    assert!(
        (detail["realized_pnl"].as_f64().unwrap() - 6.0 * 15.5).abs() < 1e-6,
        "{detail}"
    );
    assert_eq!(detail["fills"].as_array().unwrap().len(), 2);
    let (st, _) = d
        .call(
            Method::POST,
            &format!("/api/trades/{tid}/close"),
            &d.trader,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, _) = d
        .call(Method::POST, "/api/trades/999999/close", &d.trader, None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, open) = d.call(Method::GET, "/api/trades", &d.viewer, None).await;
    assert_eq!(open["items"], json!([]));
    let (_, closed) = d
        .call(Method::GET, "/api/trades?status=closed", &d.viewer, None)
        .await;
    assert_eq!(closed["items"].as_array().unwrap().len(), 1);
    let (_, fills) = d
        .call(
            Method::GET,
            &format!("/api/trades/fills?trade_id={tid}"),
            &d.viewer,
            None,
        )
        .await;
    assert_eq!(fills["items"][0]["side"], "sell");
    assert_eq!(fills["items"][1]["order_type"], "limit");

    // A live strategy's order and trade are the live engine's: refused, and nothing changes.
    let describe = json!({"name": "live", "params": []});
    let strategy = store::strategies::create(
        d.s.store(),
        &store::strategies::NewStrategy {
            name: "live",
            description: "",
            owner_id: None,
            source: "upload",
            cloned_from: None,
        },
        &store::strategies::NewVersion {
            content_sha256: "00",
            contract_version: "qtm:strategy@0.1.0",
            describe: &describe,
            component: b"\0asm",
            size: None,
            created_by: None,
        },
        &json!({}),
        &["GOOG".to_string()],
    )
    .await
    .unwrap();
    let live = store::orders::insert(
        d.s.store(),
        &store::orders::NewOrder {
            account: qtm_runtime::live::strategy_account(strategy.strategy.id),
            instance_id: Some(strategy.instance.id),
            symbol: "GOOG".into(),
            side: qtm_runtime::model::Side::Buy,
            order_type: qtm_runtime::store::orders::OrderType::Market,
            quantity: 3.0,
            time_in_force: qtm_runtime::model::TimeInForce::Gtc,
            status: store::orders::OrderStatus::Accepted,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let fill = store::orders::record_fill(d.s.store(), live.id, 1.0, 790.0, 0.0, 1_700_000_100)
        .await
        .unwrap();
    for (method, path, body) in [
        (
            Method::POST,
            format!("/api/orders/{}/cancel", live.id),
            None,
        ),
        (
            Method::PUT,
            format!("/api/orders/{}", live.id),
            Some(json!({"quantity": 2})),
        ),
        (
            Method::POST,
            format!("/api/trades/{}/close", fill.position_id.unwrap()),
            None,
        ),
    ] {
        let (st, e) = d.call(method, &path, &d.trader, body).await;
        assert_eq!(st, StatusCode::CONFLICT, "{path}: {e}");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains("live"), "{message}");
    }
    let after = store::orders::get(d.s.store(), live.id).await.unwrap();
    assert_eq!(
        (after.status.as_str(), after.quantity, after.filled_qty),
        ("partially_filled", 3.0, 1.0)
    );

    let audit = audited(&d.s).await;
    assert!(has_audit(&audit, "PUT /api/orders/{id}", 200));
    assert!(has_audit(&audit, "PUT /api/orders/{id}", 409));
    assert!(has_audit(&audit, "POST /api/trades/{id}/close", 200));
    assert!(has_audit(&audit, "POST /api/trades/{id}/close", 404));
    d.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_toggle_and_configure_with_checked_settings() {
    let Some(d) = Desk::open().await else {
        return;
    };
    let mut rx = d.s.server.state.hub.subscribe();
    let (_, list) = d.call(Method::GET, "/api/modules", &d.viewer, None).await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "ingest-bridge",
            "live-engine",
            "replay-feed",
            "signal-webhooks"
        ]
    );

    // Without a body the module flips; with one it takes the given state.
    let (st, m) = d
        .call(
            Method::PUT,
            "/api/modules/replay-feed/toggle",
            &d.admin,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{m}");
    assert_eq!(
        (m["enabled"].as_bool(), m["status"].as_str()),
        (Some(false), Some("stopped"))
    );
    let (_, m) = d
        .call(
            Method::PUT,
            "/api/modules/replay-feed/toggle",
            &d.admin,
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(m["enabled"], false);
    let (_, m) = d
        .call(
            Method::PUT,
            "/api/modules/replay-feed/toggle",
            &d.admin,
            None,
        )
        .await;
    assert_eq!(m["enabled"], true);
    let (st, _) = d
        .call(
            Method::PUT,
            "/api/modules/replay-feed/toggle",
            &d.trader,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = d
        .call(Method::PUT, "/api/modules/nope/toggle", &d.admin, None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, e) = d
        .call(
            Method::PUT,
            "/api/modules/replay-feed/toggle",
            &d.admin,
            Some(json!({"enabled": "yes"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");

    // Configure: only the given keys change.
    let (st, m) = d
        .call(
            Method::POST,
            "/api/modules/replay-feed/configure",
            &d.admin,
            Some(json!({"config": {"speed": 120, "symbols": ["GOOG"]}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{m}");
    assert_eq!(
        m["config"],
        json!({"source": "database", "speed": 120, "loop": true, "max_pause_secs": 1.0, "symbols": ["GOOG"]})
    );
    for (body, field) in [
        (json!({"config": {"speed": 0}}), "config.speed"),
        (json!({"config": {"speed": 100000001}}), "config.speed"),
        (json!({"config": {"loop": 1}}), "config.loop"),
        (
            json!({"config": {"max_pause_secs": 0}}),
            "config.max_pause_secs",
        ),
        (json!({"config": {"source": "kafka"}}), "config.source"),
        (json!({"config": {"symbols": "GOOG"}}), "config.symbols"),
        (json!({"config": {"sped": 5}}), "config.sped"),
        (json!({"config": {}}), "config"),
    ] {
        let (st, e) = d
            .call(
                Method::POST,
                "/api/modules/replay-feed/configure",
                &d.admin,
                Some(body.clone()),
            )
            .await;
        assert_eq!(validation_field(st, &e), field, "{body} → {e}");
    }
    let stored = store::modules::get(d.s.store(), "replay-feed")
        .await
        .unwrap();
    assert_eq!(
        stored.config["speed"], 120,
        "refused settings were not stored"
    );
    let (st, _) = d
        .call(
            Method::POST,
            "/api/modules/replay-feed/configure",
            &d.trader,
            Some(json!({"config": {"speed": 2}})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // The engine's starting capital drives the risk metrics.
    let (st, _) = d
        .call(
            Method::POST,
            "/api/modules/live-engine/configure",
            &d.admin,
            Some(json!({"initial_cash": 50000})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, m) = d
        .call(Method::GET, "/api/risk/metrics", &d.viewer, None)
        .await;
    assert_eq!(
        (m["initial_capital"].as_f64(), m["equity"].as_f64()),
        (Some(50_000.0), Some(50_000.0))
    );
    // An empty book's sums are zero, not negative zero.
    assert_eq!(m["gross_exposure"].to_string(), "0.0", "{m}");
    assert!(!m.to_string().contains("-0.0"), "{m}");

    let health = on(&drain(&mut rx), Topic::SystemHealth);
    assert!(
        health
            .iter()
            .any(|m| m["key"] == "replay-feed" && m["data"]["event"] == "module_configured")
    );
    assert!(
        health
            .iter()
            .any(|m| m["data"]["event"] == "module_toggled")
    );
    let audit = audited(&d.s).await;
    assert!(has_audit(&audit, "PUT /api/modules/{id}/toggle", 200));
    assert!(has_audit(&audit, "PUT /api/modules/{id}/toggle", 403));
    assert!(has_audit(&audit, "POST /api/modules/{id}/configure", 422));
    d.s.stop().await;
}

/// One bar of GOOG through the bridge, then wait until the engine handled it and the recorder
/// stored what it did (manual fills included).
async fn goog_bar(d: &Desk, ts: i64, open: f64, high: f64, low: f64, close: f64) {
    let (st, body) = d
        .call(
            Method::POST,
            "/api/market",
            &d.trader,
            Some(json!({"bars": [{"symbol": "GOOG", "ts": ts, "open": open, "high": high, "low": low, "close": close, "volume": 1e6}]})),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{body}");
    let live = &d.s.server.state.live;
    live.flush().await.unwrap();
}

async fn order_of(d: &Desk, id: i64) -> store::orders::Order {
    store::orders::get(d.s.store(), id).await.unwrap()
}

async fn place(d: &Desk, body: Value) -> i64 {
    let (st, o) = d.order(body).await;
    assert_eq!(st, StatusCode::OK, "{o}");
    assert_eq!(o["status"], "accepted");
    o["id"].as_i64().unwrap()
}

/// The working exits of the manual account, (type, price) by id.
async fn working_exits(d: &Desk) -> Vec<(i64, String, f64)> {
    let mut out: Vec<(i64, String, f64)> =
        store::orders::working(d.s.store(), Some(d.account().await))
            .await
            .unwrap()
            .into_iter()
            .filter(|o| o.side == qtm_runtime::model::Side::Sell)
            .map(|o| {
                let price = o.limit_price.or(o.stop_price).unwrap();
                (o.id, o.order_type.to_string(), price)
            })
            .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_orders_fill_on_the_next_bars_with_the_engine_rules() {
    let Some(d) = Desk::open().await else {
        return;
    };
    let cfg = d.s.server.state.live.config().engine.exchange.clone();
    let (slip, commission) = (cfg.slippage_bps / 1e4, cfg.commission);
    let mut rx = d.s.server.state.hub.subscribe();
    let t = 1_800_000_000;

    let market = place(&d, json!({"symbol": "GOOG", "side": "buy", "quantity": 5})).await;
    let limit = place(&d, json!({"symbol": "GOOG", "side": "buy", "quantity": 3, "type": "limit", "limit_price": 790})).await;
    let bracket = place(&d, json!({"symbol": "GOOG", "side": "buy", "quantity": 2, "take_profit": 830, "stop_loss": 780, "tag": "br"})).await;
    let far = place(&d, json!({"symbol": "GOOG", "side": "buy", "quantity": 1, "type": "limit", "limit_price": 700})).await;
    // Nothing fills before a bar.
    assert_eq!(order_of(&d, market).await.status.as_str(), "accepted");

    // Bar 1: market orders fill at its open; the limit at 790 is not reached (low 795).
    goog_bar(&d, t, 805.0, 812.0, 795.0, 808.0).await;
    let at_open = 805.0 * (1.0 + slip);
    for (id, q) in [(market, 5.0), (bracket, 2.0)] {
        let o = order_of(&d, id).await;
        assert_eq!((o.status.as_str(), o.filled_qty), ("filled", q), "{o:?}");
        assert!((o.avg_price.unwrap() - at_open).abs() < 1e-9, "{o:?}");
    }
    assert_eq!(order_of(&d, limit).await.status.as_str(), "accepted");
    // The bracket's exits are working orders of their own.
    let exits = working_exits(&d).await;
    assert_eq!(
        exits
            .iter()
            .map(|e| (e.1.as_str(), e.2))
            .collect::<Vec<_>>(),
        [("limit", 830.0), ("stop", 780.0)],
        "{exits:?}"
    );
    let (take_profit, stop_loss) = (exits[0].0, exits[1].0);
    assert_eq!(order_of(&d, take_profit).await.tag.as_deref(), Some("br"));

    // A cancelled order never fills, even when the price gets there.
    let (st, c) = d
        .call(
            Method::POST,
            &format!("/api/orders/{far}/cancel"),
            &d.trader,
            None,
        )
        .await;
    assert_eq!(
        (st, c["status"].as_str()),
        (StatusCode::OK, Some("cancelled")),
        "{c}"
    );

    // Bar 2: the limit buy fills at 790; the take-profit at 830 fills and cancels the stop.
    goog_bar(&d, t + 86_400, 800.0, 835.0, 785.0, 830.0).await;
    let l = order_of(&d, limit).await;
    assert_eq!((l.status.as_str(), l.avg_price), ("filled", Some(790.0)));
    let tp = order_of(&d, take_profit).await;
    assert_eq!((tp.status.as_str(), tp.avg_price), ("filled", Some(830.0)));
    let sl = order_of(&d, stop_loss).await;
    assert_eq!(sl.status.as_str(), "cancelled");
    assert_eq!(
        sl.reason.as_deref(),
        Some(format!("one-cancels-other: order {take_profit} filled").as_str())
    );
    goog_bar(&d, t + 2 * 86_400, 690.0, 700.0, 650.0, 660.0).await;
    let f = order_of(&d, far).await;
    assert_eq!((f.status.as_str(), f.filled_qty), ("cancelled", 0.0));

    // The book: 7 at the open, 3 at 790, 2 sold at 830 (average price kept when reducing).
    let open = store::orders::open_positions(d.s.store(), Some(d.account().await))
        .await
        .unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    let avg = (7.0 * at_open + 3.0 * 790.0) / 10.0;
    assert_eq!(open[0].quantity, 8.0);
    assert!((open[0].avg_price - avg).abs() < 1e-9, "{:?}", open[0]);
    assert!(
        (open[0].realized_pnl - 2.0 * (830.0 - avg)).abs() < 1e-6,
        "{:?}",
        open[0]
    );
    let fills = store::orders::fills(
        d.s.store(),
        &store::orders::FillFilter {
            limit: 100,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(fills.len(), 4);
    let fees: f64 = fills.iter().map(|f| f.fee).sum();
    let notional = 7.0 * at_open + 3.0 * 790.0 + 2.0 * 830.0;
    assert!((fees - notional * commission - 4.0 * cfg.fixed_fee).abs() < 1e-6);

    // Every step went out on `trades`, keyed by symbol.
    let trades = on(&drain(&mut rx), Topic::Trades);
    let named = |e: &str| {
        trades
            .iter()
            .filter(|m| m["data"]["event"] == e)
            .map(|m| m["data"]["order"]["id"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(named("order_filled"), [market, bracket, limit, take_profit]);
    assert_eq!(
        named("order_accepted"),
        [market, limit, bracket, far, stop_loss, take_profit]
    );
    assert_eq!(named("order_cancelled"), [far, stop_loss]);
    let filled = trades
        .iter()
        .find(|m| m["data"]["event"] == "order_filled")
        .unwrap();
    assert_eq!(filled["key"], "GOOG");
    assert_eq!(filled["data"]["fill"]["quantity"], 5.0);
    // And the account's position after each fill (as the bar's fills left it: 7 after bar 1,
    // 8 after bar 2).
    let mut positions: Vec<f64> = trades
        .iter()
        .filter(|m| m["data"]["event"] == "manual_position")
        .map(|m| {
            assert_eq!(m["key"], "GOOG");
            m["data"]["quantity"].as_f64().unwrap()
        })
        .collect();
    assert_eq!(positions.len(), 4, "one a fill");
    positions.dedup();
    assert_eq!(positions, [7.0, 8.0]);
    d.s.stop().await;
}

/// A manual order the store cannot keep (its batch fails to commit) is taken off the
/// exchange again: the caller hears why with a 503, and it never fills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_order_the_store_cannot_keep_never_fills() {
    use sqlx::{Connection, Executor};
    let Some(d) = Desk::open().await else {
        return;
    };
    let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{}", d.s.db.display()))
        .await
        .unwrap();
    // Only the order as placed (by a user): were it left on the exchange, its fill would be
    // stored under a row of its own (no user), and the position would show it.
    db.execute("CREATE TRIGGER refuse_poison BEFORE INSERT ON orders WHEN NEW.tag = 'poison' AND NEW.user_id IS NOT NULL BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
        .await
        .unwrap();
    db.close().await.unwrap();
    let (st, body) = d
        .order(json!({"symbol": "GOOG", "side": "buy", "quantity": 5, "tag": "poison"}))
        .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "not_stored", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("refused by the test"), "{message}");
    // The next order is stored as usual, and only it fills on the next bar.
    let kept = place(&d, json!({"symbol": "GOOG", "side": "buy", "quantity": 1})).await;
    goog_bar(&d, 1_800_000_000, 805.0, 806.0, 804.0, 805.0).await;
    goog_bar(&d, 1_800_086_400, 806.0, 807.0, 805.0, 806.0).await;
    assert_eq!(order_of(&d, kept).await.status.as_str(), "filled");
    let open = store::orders::open_positions(d.s.store(), Some(d.account().await))
        .await
        .unwrap();
    assert_eq!(
        open.iter().map(|p| p.quantity).collect::<Vec<_>>(),
        [1.0],
        "{open:?}"
    );
    d.s.stop().await;
}

/// The manual account out of money gets the margin call a strategy's account gets: working
/// orders cancelled, the position closed at the bar's close (an order of its own, tagged
/// `liquidation`), a stored alert, and events on `trades` and `risk_alerts`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manual_account_out_of_money_gets_a_margin_call() {
    let Some(d) = Desk::open().await else {
        return;
    };
    let mut rx = d.s.server.state.hub.subscribe();
    let t = 1_800_000_000;
    // Short 120 at about 805 on 100,000 of cash, and a buy resting far below.
    let short = place(
        &d,
        json!({"symbol": "GOOG", "side": "sell", "quantity": 120}),
    )
    .await;
    let resting = place(&d, json!({"symbol": "GOOG", "side": "buy", "quantity": 1, "type": "limit", "limit_price": 100})).await;
    goog_bar(&d, t, 805.0, 806.0, 804.0, 805.0).await;
    assert_eq!(order_of(&d, short).await.status.as_str(), "filled");
    // Equity at 1,000: 100,000 + 120 × (805 − 1,000) − costs > 0: nothing happens.
    goog_bar(&d, t + 86_400, 1000.0, 1000.0, 1000.0, 1000.0).await;
    assert_eq!(order_of(&d, resting).await.status.as_str(), "accepted");
    // At 1,700: 100,000 + 120 × (805 − 1,700) < 0.
    goog_bar(&d, t + 2 * 86_400, 1700.0, 1700.0, 1700.0, 1700.0).await;

    let r = order_of(&d, resting).await;
    assert_eq!(r.status.as_str(), "cancelled");
    let reason = r.reason.unwrap();
    assert!(
        reason.starts_with("margin call: equity fell to -"),
        "{reason}"
    );
    let open = store::orders::open_positions(d.s.store(), Some(d.account().await))
        .await
        .unwrap();
    assert!(open.is_empty(), "{open:?}");
    let (st, orders) = d
        .call(Method::GET, "/api/orders?limit=10", &d.viewer, None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let liquidation = orders["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["tag"] == "liquidation")
        .unwrap_or_else(|| panic!("no liquidation order in {orders}"));
    assert_eq!(
        (
            &liquidation["side"],
            &liquidation["status"],
            &liquidation["filled_qty"],
            &liquidation["avg_price"]
        ),
        (
            &json!("buy"),
            &json!("filled"),
            &json!(120.0),
            &json!(1700.0)
        ),
        "{liquidation}"
    );
    let (st, alerts) = d
        .call(Method::GET, "/api/risk/alerts", &d.viewer, None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        alerts["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "margin_call" && a["message"] == reason.as_str()),
        "{alerts}"
    );
    let all = drain(&mut rx);
    assert!(
        on(&all, Topic::RiskAlerts)
            .iter()
            .any(|m| m["data"]["event"] == "manual_alert"
                && m["data"]["alert"]["kind"] == "margin_call"),
        "{all:?}"
    );
    let last_position = on(&all, Topic::Trades)
        .into_iter()
        .rfind(|m| m["data"]["event"] == "manual_position")
        .unwrap();
    assert_eq!(last_position["data"]["quantity"], 0.0);
    d.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn working_manual_orders_and_bracket_exits_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("qtm.db");
    let t = 1_800_000_000;
    let (bracket, far) = {
        let Some(d) = Desk::open_on(&db).await else {
            return;
        };
        let bracket = place(&d, json!({"symbol": "GOOG", "side": "buy", "quantity": 2, "take_profit": 830, "stop_loss": 780})).await;
        let far = place(&d, json!({"symbol": "GOOG", "side": "buy", "quantity": 1, "type": "limit", "limit_price": 680})).await;
        goog_bar(&d, t, 805.0, 812.0, 795.0, 808.0).await;
        assert_eq!(order_of(&d, bracket).await.status.as_str(), "filled");
        assert_eq!(working_exits(&d).await.len(), 2);
        d.s.stop().await;
        (bracket, far)
    };
    let d = Desk::reopen(&db).await;
    let slip = d.s.server.state.live.config().engine.exchange.slippage_bps / 1e4;
    let exits = working_exits(&d).await;
    let (take_profit, stop_loss) = (exits[0].0, exits[1].0);
    // The stop is hit (low 690): it fills at 780 and, linked again after the restart, cancels
    // the take-profit; the resting limit buy at 680 is not reached yet.
    goog_bar(&d, t + 86_400, 790.0, 795.0, 690.0, 700.0).await;
    let sl = order_of(&d, stop_loss).await;
    assert_eq!(sl.status.as_str(), "filled", "{sl:?}");
    let stop_fill = 780.0 * (1.0 - slip);
    assert!((sl.avg_price.unwrap() - stop_fill).abs() < 1e-9, "{sl:?}");
    let tp = order_of(&d, take_profit).await;
    assert_eq!(tp.status.as_str(), "cancelled", "{tp:?}");
    assert_eq!(order_of(&d, far).await.status.as_str(), "accepted");
    let closed = store::orders::position(
        d.s.store(),
        store::orders::fills(
            d.s.store(),
            &store::orders::FillFilter {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .iter()
        .find(|f| f.order_id == bracket)
        .unwrap()
        .position_id
        .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(closed.quantity, 0.0);
    let entry = 805.0 * (1.0 + slip);
    assert!(
        (closed.realized_pnl - 2.0 * (stop_fill - entry)).abs() < 1e-6,
        "{closed:?}"
    );
    // The order placed before the restart fills when the price comes down to it.
    goog_bar(&d, t + 2 * 86_400, 700.0, 705.0, 670.0, 690.0).await;
    let f = order_of(&d, far).await;
    assert_eq!((f.status.as_str(), f.avg_price), ("filled", Some(680.0)));
    d.s.stop().await;
}
