//! Modules: the parts of the platform that can be switched on and off and configured through
//! `/api/modules` (market-data feeds, the tick-ingest bridge, signal webhooks, the live
//! engine). The rows are seeded on start; their configs are JSON documents.

use sqlx::FromRow;

use super::{Store, StoreError, StoreResult, now, with_pool};

/// A module as listed.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct Module {
    /// Stable id (`replay-feed`, …).
    pub id: String,
    pub name: String,
    /// `feed`, `ingest`, `signals` or `engine`.
    pub kind: String,
    pub description: String,
    pub enabled: bool,
    /// `running`, `stopped` or an error text.
    pub status: String,
    pub updated_at: i64,
    /// The module's settings.
    #[sqlx(skip)]
    pub config: serde_json::Value,
}

/// The modules every installation has, with their default settings.
pub fn builtin() -> Vec<(
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    serde_json::Value,
)> {
    use serde_json::json;
    vec![
        (
            "replay-feed",
            "Replay feed",
            "feed",
            "Replays recorded bars (files or the database's price history) at a chosen speed, so a fresh install shows a moving market.",
            true,
            json!({"source": "database", "speed": 60.0, "loop": true, "max_pause_secs": 1.0, "symbols": []}),
        ),
        (
            "ingest-bridge",
            "Tick ingest bridge",
            "ingest",
            "Accepts ticks and bars over REST (POST /api/market) and the WebSocket ingest endpoint.",
            true,
            json!({"max_batch": 10000}),
        ),
        (
            "signal-webhooks",
            "Signal webhooks",
            "signals",
            "Receives HMAC-signed webhooks (whale activity, funding rates, on-chain metrics) and stores them as named signals strategies can read.",
            true,
            json!({"sources": ["whale-alert", "funding", "onchain"]}),
        ),
        (
            "live-engine",
            "Live paper engine",
            "engine",
            "Runs enabled strategy instances against the paper broker with the backtest's fill and risk rules.",
            true,
            // initial_cash: the paper account's starting capital (risk metrics, equity);
            // cpu_share_cap_pct: most of the engine thread one instance may take over
            // cpu_window_secs before it is disabled.
            json!({"snapshot_every_secs": 30, "initial_cash": 100000.0,
                   "cpu_share_cap_pct": 20.0, "cpu_window_secs": 5.0}),
        ),
    ]
}

/// Insert the built-in modules that are missing (existing rows keep their state).
pub async fn seed(store: &Store) -> StoreResult<()> {
    let t = now();
    for (id, name, kind, description, enabled, config) in builtin() {
        with_pool!(store, p => sqlx::query(
            "INSERT INTO modules (id, name, kind, description, enabled, status, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(name)
        .bind(kind)
        .bind(description)
        .bind(enabled)
        .bind(if enabled { "running" } else { "stopped" })
        .bind(t)
        .execute(p)
        .await.map(|r| r.rows_affected()))?;
        with_pool!(store, p => sqlx::query(
            "INSERT INTO module_configs (module_id, config, updated_at) VALUES ($1, $2, $3) ON CONFLICT (module_id) DO NOTHING",
        )
        .bind(id)
        .bind(super::to_json(&config))
        .bind(t)
        .execute(p)
        .await.map(|r| r.rows_affected()))?;
    }
    Ok(())
}

/// A `modules` row joined with its config text.
type ModuleRow = (
    String,
    String,
    String,
    String,
    bool,
    String,
    i64,
    Option<String>,
);

/// Every module with its config, by id.
pub async fn list(store: &Store) -> StoreResult<Vec<Module>> {
    let rows: Vec<ModuleRow> = with_pool!(store, p => sqlx::query_as(
        "SELECT m.id, m.name, m.kind, m.description, m.enabled, m.status, m.updated_at, c.config FROM modules m LEFT JOIN module_configs c ON c.module_id = m.id ORDER BY m.id",
    )
    .fetch_all(p)
    .await)?;
    rows.into_iter()
        .map(
            |(id, name, kind, description, enabled, status, updated_at, config)| {
                Ok(Module {
                    config: match config {
                        Some(c) => super::from_json("module_configs", &c)?,
                        None => serde_json::json!({}),
                    },
                    id,
                    name,
                    kind,
                    description,
                    enabled,
                    status,
                    updated_at,
                })
            },
        )
        .collect()
}

/// One module.
pub async fn get(store: &Store, id: &str) -> StoreResult<Module> {
    list(store)
        .await?
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| StoreError::NotFound(format!("module {id:?}")))
}

/// Switch a module on or off.
pub async fn set_enabled(store: &Store, id: &str, enabled: bool) -> StoreResult<Module> {
    let n = with_pool!(store, p => sqlx::query("UPDATE modules SET enabled = $1, status = $2, updated_at = $3 WHERE id = $4")
        .bind(enabled)
        .bind(if enabled { "running" } else { "stopped" })
        .bind(now())
        .bind(id)
        .execute(p)
        .await.map(|r| r.rows_affected()))?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("module {id:?}")));
    }
    get(store, id).await
}

/// Replace a module's config (validated by the caller).
pub async fn set_config(
    store: &Store,
    id: &str,
    config: &serde_json::Value,
    user_id: Option<i64>,
) -> StoreResult<Module> {
    get(store, id).await?;
    with_pool!(store, p => sqlx::query(
        "INSERT INTO module_configs (module_id, config, updated_by, updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (module_id) DO UPDATE SET config = excluded.config, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
    )
    .bind(id)
    .bind(super::to_json(config))
    .bind(user_id)
    .bind(now())
    .execute(p)
    .await.map(|r| r.rows_affected()))?;
    get(store, id).await
}
