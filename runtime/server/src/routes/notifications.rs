//! `GET /api/notifications`: one feed, newest first, of what the store records happening —
//! risk alerts, strategy lifecycle changes (the successful calls of the lifecycle routes, from
//! the audit log) and backtests that ended — paged by the feed's own key, so pages are full
//! and never overlap however the three sources interleave.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiJson, ApiQuery, ApiResult, ErrorBody};
use crate::paging::{self, Page};
use crate::state::AppState;
use qtm_store::summaries::{self, FeedItem, FeedKey, FeedSource};

/// The notifications route.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_notifications))
}

/// The lifecycle routes whose successful calls are notifications: (audit action, kind, what
/// the caller did).
pub const LIFECYCLE: [(&str, &str, &str); 12] = [
    (
        "POST /api/strategies",
        "strategy.created",
        "uploaded a strategy",
    ),
    (
        "POST /api/strategies/{id}/versions",
        "strategy.version",
        "uploaded a new version of strategy",
    ),
    (
        "PUT /api/strategies/{id}/configure",
        "strategy.configured",
        "configured strategy",
    ),
    (
        "PUT /api/strategies/{id}/parameters",
        "strategy.configured",
        "changed the parameters of strategy",
    ),
    (
        "POST /api/strategies/{id}/enable",
        "strategy.enabled",
        "enabled strategy",
    ),
    (
        "POST /api/strategies/{id}/disable",
        "strategy.disabled",
        "disabled strategy",
    ),
    (
        "DELETE /api/strategies/{id}",
        "strategy.deleted",
        "deleted strategy",
    ),
    (
        "POST /api/strategies/{id}/clone",
        "strategy.cloned",
        "cloned strategy",
    ),
    (
        "POST /api/strategy-instances/{id}/swap",
        "strategy.swapped",
        "swapped strategy instance",
    ),
    (
        "POST /api/strategy-instances/{id}/rollback",
        "strategy.swapped",
        "rolled back strategy instance",
    ),
    (
        "POST /api/strategy-instances/{id}/clone",
        "strategy.cloned",
        "cloned strategy instance",
    ),
    (
        "POST /api/strategy-instances/{id}/halt",
        "strategy.halted",
        "halted strategy instance",
    ),
];

/// One notification.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Notification {
    /// `<source>:<id of the row>`: `alert:12`, `audit:40`, `backtest:3`.
    #[schema(example = "alert:12")]
    pub id: String,
    /// Unix seconds.
    pub ts: i64,
    /// `risk_alert`, `strategy` or `backtest`.
    pub source: String,
    /// Alerts: their kind (`order_rejected`, `kill_switch`, …); lifecycle: `strategy.enabled`,
    /// `strategy.disabled`, `strategy.configured`, …; backtests: `backtest.done`,
    /// `backtest.failed`, `backtest.cancelled`.
    pub kind: String,
    /// `info`, `warning` or `critical`.
    #[schema(pattern = "^(info|warning|critical)$")]
    pub severity: String,
    pub message: String,
    /// The strategy it is about, when known.
    pub strategy_id: Option<i64>,
}

fn severity_of_alert(kind: &str) -> &'static str {
    match kind {
        "kill_switch" | "margin_call" => "critical",
        "kill_switch_released" => "info",
        _ => "warning",
    }
}

/// The strategy id in a lifecycle path (`/api/strategies/7/enable` → 7).
fn strategy_in(path: &str) -> Option<i64> {
    let rest = path.strip_prefix("/api/strategies/")?;
    rest.split('/').next()?.parse().ok()
}

impl From<FeedItem> for Notification {
    fn from(f: FeedItem) -> Self {
        let (source, prefix) = match f.source {
            FeedSource::Alert => ("risk_alert", "alert"),
            FeedSource::Audit => ("strategy", "audit"),
            FeedSource::Backtest => ("backtest", "backtest"),
        };
        let id = format!("{prefix}:{}", f.id);
        let (kind, severity, message, strategy_id) = match f.source {
            FeedSource::Alert => (
                f.kind.clone(),
                severity_of_alert(&f.kind),
                f.text,
                f.strategy_id,
            ),
            FeedSource::Audit => {
                let (kind, did) = LIFECYCLE
                    .iter()
                    .find(|(action, _, _)| *action == f.kind)
                    .map_or(("strategy.changed", "changed strategy"), |(_, k, d)| {
                        (*k, *d)
                    });
                let who = f.extra.as_deref().unwrap_or("someone");
                let strategy_id = strategy_in(&f.text);
                // The id the path names (a strategy or an instance), when it names one.
                let what = f
                    .text
                    .rsplit('/')
                    .find(|seg| seg.parse::<i64>().is_ok())
                    .map(|n| format!(" {n}"))
                    .unwrap_or_default();
                (
                    kind.to_string(),
                    "info",
                    format!("{who} {did}{what}"),
                    strategy_id,
                )
            }
            FeedSource::Backtest => {
                let severity = if f.kind == "failed" {
                    "warning"
                } else {
                    "info"
                };
                let mut message = format!("backtest {} {}", f.id, f.kind);
                if !f.text.is_empty() {
                    message.push_str(&format!(": {}", f.text));
                }
                (
                    format!("backtest.{}", f.kind),
                    severity,
                    message,
                    f.strategy_id,
                )
            }
        };
        Notification {
            id,
            ts: f.ts,
            source: source.into(),
            kind,
            severity: severity.into(),
            message,
            strategy_id,
        }
    }
}

/// Paging of the feed.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationQuery {
    /// At most this many items (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Continue after this cursor: the `next_cursor` of the page before
    /// (`<ts>.<source>.<id>`).
    #[param(pattern = r"^[0-9]{1,18}\.[0-2]\.[0-9]{1,18}$")]
    pub cursor: Option<String>,
}

/// The key of a feed item as a cursor: `<ts>.<source rank>.<id>`.
fn cursor_of(f: &FeedItem) -> String {
    format!("{}.{}.{}", f.ts, f.source.rank(), f.id)
}

fn parse_cursor(c: &str) -> ApiResult<FeedKey> {
    let bad = || {
        ApiError::validation(
            "cursor",
            format!(
                "cursor {:?} is not one this list gave: pass the next_cursor of the page before, or leave cursor out for the first page",
                c.chars().take(40).collect::<String>()
            ),
        )
    };
    let parts: Vec<&str> = c.split('.').collect();
    let [ts, rank, id] = parts.as_slice() else {
        return Err(bad());
    };
    let number = |s: &str| (1..=18).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    if !(number(ts) && number(id) && ["0", "1", "2"].contains(rank)) {
        return Err(bad());
    }
    let source = match *rank {
        "0" => FeedSource::Audit,
        "1" => FeedSource::Alert,
        _ => FeedSource::Backtest,
    };
    Ok(FeedKey {
        ts: ts.parse().map_err(|_| bad())?,
        source,
        id: id.parse().map_err(|_| bad())?,
    })
}

/// Notifications, newest first: risk alerts (rejected orders, kill switch, margin calls),
/// strategy lifecycle changes (uploaded, configured, enabled, disabled, deleted, cloned,
/// swapped, halted: the successful calls of those routes the audit log records) and
/// backtests that ended. Built from what is stored, so it is the same after a restart; live
/// ones arrive on the `notifications` and `risk-alerts` streams (`/api/ws/notifications`).
#[utoipa::path(get, path = "/api/notifications", tag = "summaries", params(NotificationQuery),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Page<Notification>), (status = 422, body = ErrorBody)))]
async fn list_notifications(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<NotificationQuery>,
) -> ApiResult<ApiJson<Page<Notification>>> {
    let limit = paging::limit(q.limit, paging::MAX_LIMIT)?;
    let after = q.cursor.as_deref().map(parse_cursor).transpose()?;
    let actions: Vec<&str> = LIFECYCLE.iter().map(|(a, _, _)| *a).collect();
    let rows = summaries::feed(&state.store, &actions, after, limit + 1).await?;
    Ok(ApiJson(Page::from_overfetch(
        rows,
        limit,
        cursor_of,
        Notification::from,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back_and_bad_ones_name_the_field() {
        let f = FeedItem {
            ts: 1_700_000_000,
            source: FeedSource::Alert,
            id: 42,
            kind: "kill_switch".into(),
            text: "halted".into(),
            strategy_id: None,
            extra: None,
        };
        let k = parse_cursor(&cursor_of(&f)).unwrap();
        assert_eq!(
            (k.ts, k.source, k.id),
            (1_700_000_000, FeedSource::Alert, 42)
        );
        for bad in ["", "1.2", "1.3.4", "a.1.2", "1.1.2.3", "-1.1.2"] {
            assert_eq!(
                parse_cursor(bad).unwrap_err().field.as_deref(),
                Some("cursor"),
                "{bad}"
            );
        }
        let n = Notification::from(f);
        assert_eq!(
            (n.id.as_str(), n.severity.as_str()),
            ("alert:42", "critical")
        );
    }

    #[test]
    fn lifecycle_rows_say_who_did_what_to_which_strategy() {
        let n = Notification::from(FeedItem {
            ts: 5,
            source: FeedSource::Audit,
            id: 9,
            kind: "POST /api/strategies/{id}/enable".into(),
            text: "/api/strategies/7/enable".into(),
            strategy_id: None,
            extra: Some("ann".into()),
        });
        assert_eq!(n.kind, "strategy.enabled");
        assert_eq!(n.message, "ann enabled strategy 7");
        assert_eq!(n.strategy_id, Some(7));
        assert_eq!(n.id, "audit:9");
    }
}
