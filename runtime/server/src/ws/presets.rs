//! The product seeds' stream paths, as presets of the one stream connection ([`super::connect`]):
//! each is a list of topics (and a key filter) the connection starts subscribed to, with the
//! same authentication (`?token=`, `?api_key=`, the headers, or a first `auth` message), the
//! same frames (`{"type":"event","topic",…}`) and the same subscribe/unsubscribe/ping
//! messages as `/ws`. No hub of their own.
//!
//! | path | topics on connect |
//! |---|---|
//! | `/api/ws/dashboard` | `pnl`, `trades`, `strategy-updates`, `risk-alerts`, `system-health` |
//! | `/api/ws/trades/active` | `trades` |
//! | `/api/ws/pnl` | `pnl` |
//! | `/api/ws/notifications` | `notifications`, `risk-alerts` |
//! | `/api/ws/strategies/{id}` | `strategy-updates` of strategy `id` only (404 for an unknown strategy) |
//! | `/ws/feed` | `market-data` |
//! | `/ws/ai` | `notifications` (where received signals are published; there is no signals topic) |
//!
//! These routes are static, so they take precedence over the catch-all `/ws/{topic}`.

use std::collections::HashSet;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;

use super::{Preset, WsQuery, connect, connect_as, upfront_principal};
use crate::error::{ApiError, ApiPath};
use crate::hub::Topic;
use crate::state::AppState;

/// Each static preset: its path and the topics it starts with (every key).
pub const PRESETS: [(&str, &[Topic]); 6] = [
    (
        "/api/ws/dashboard",
        &[
            Topic::Pnl,
            Topic::Trades,
            Topic::StrategyUpdates,
            Topic::RiskAlerts,
            Topic::SystemHealth,
        ],
    ),
    ("/api/ws/trades/active", &[Topic::Trades]),
    ("/api/ws/pnl", &[Topic::Pnl]),
    (
        "/api/ws/notifications",
        &[Topic::Notifications, Topic::RiskAlerts],
    ),
    ("/ws/feed", &[Topic::MarketData]),
    ("/ws/ai", &[Topic::Notifications]),
];

/// The preset routes.
pub fn routes() -> Router<AppState> {
    let mut router = Router::new().route("/api/ws/strategies/{id}", get(connect_strategy));
    for (path, topics) in PRESETS {
        router = router.route(
            path,
            get(
                move |State(state): State<AppState>,
                      Query(q): Query<WsQuery>,
                      headers: HeaderMap,
                      upgrade: WebSocketUpgrade| async move {
                    let preset = Preset {
                        path: path.to_string(),
                        topics: topics.iter().map(|t| (*t, None)).collect(),
                    };
                    connect(state, q, headers, upgrade, preset).await
                },
            ),
        );
    }
    router
}

/// `strategy-updates` of one strategy. Credentials given with the request are checked first
/// (401 as on every stream); then a strategy that does not exist is a 404 before the upgrade.
async fn connect_strategy(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    Query(q): Query<WsQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let principal = upfront_principal(&state, &q, &headers).await?;
    qtm_store::strategies::strategy(&state.store, id).await?;
    let preset = Preset {
        path: "/api/ws/strategies/{id}".into(),
        topics: vec![(
            Topic::StrategyUpdates,
            Some(HashSet::from([id.to_string()])),
        )],
    };
    Ok(connect_as(state, principal, upgrade, preset))
}
