//! Strategies, their versions (uploaded components, kept in the database with their hash,
//! contract and `describe` output) and their instances (parameters, symbols, status).
//!
//! Every strategy has one default instance, created with it, that `configure`, `enable` and
//! `disable` act on; the live engine runs the enabled ones.

use serde_json::Value;
use sqlx::FromRow;

use super::components::{self, Encoded};
use super::{
    Conn, Store, StoreError, StoreResult, from_json, in_transaction, now, to_json, with_conn,
    with_pool,
};

/// A strategy as stored.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct Strategy {
    pub id: i64,
    pub name: String,
    pub description: String,
    /// The user who uploaded it (`None` once that user is deleted).
    pub owner_id: Option<i64>,
    /// `upload` or `clone`.
    pub source: String,
    /// The strategy this one was cloned from.
    pub cloned_from: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One uploaded component of a strategy (without its bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    pub id: i64,
    pub strategy_id: i64,
    /// 1, 2, … per strategy.
    pub version: i64,
    /// Hex SHA-256 of the component bytes.
    pub content_sha256: String,
    /// The contract the component was built for, e.g. `qtm:strategy@0.1.0`.
    pub contract_version: String,
    /// The component's `describe` output: name, version, description, symbols, params.
    pub describe: Value,
    pub size_bytes: i64,
    pub created_by: Option<i64>,
    pub created_at: i64,
}

/// A configured, runnable use of a strategy version.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub id: i64,
    pub strategy_id: i64,
    pub version_id: i64,
    /// The version number `version_id` has.
    pub version: i64,
    /// Resolved parameters, `{"name": value}`, every declared parameter present.
    pub params: Value,
    pub symbols: Vec<String>,
    /// `disabled`, `enabled`, `halted` or `failed`.
    pub status: String,
    pub status_reason: Option<String>,
    pub snapshot_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A strategy with the version its default instance runs and that instance.
#[derive(Debug, Clone, PartialEq)]
pub struct StrategyRecord {
    pub strategy: Strategy,
    pub current_version: Version,
    pub instance: Instance,
}

/// A component to store as a version.
#[derive(Debug, Clone)]
pub struct NewVersion<'a> {
    pub content_sha256: &'a str,
    pub contract_version: &'a str,
    /// The `describe` output as JSON.
    pub describe: &'a Value,
    pub component: &'a [u8],
    /// The component's size when `component` is left empty because the bytes are stored
    /// already (SQL import); else `None` (the size of `component`).
    pub size: Option<usize>,
    pub created_by: Option<i64>,
}

impl NewVersion<'_> {
    fn size_bytes(&self) -> i64 {
        self.size.unwrap_or(self.component.len()) as i64
    }
}

/// A strategy to create.
#[derive(Debug, Clone)]
pub struct NewStrategy<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub owner_id: Option<i64>,
    /// `upload` or `clone`.
    pub source: &'a str,
    pub cloned_from: Option<i64>,
}

const VERSION_COLUMNS: &str = "id, strategy_id, version, content_sha256, contract_version, describe, size_bytes, created_by, created_at";

#[derive(FromRow)]
struct VersionRow {
    id: i64,
    strategy_id: i64,
    version: i64,
    content_sha256: String,
    contract_version: String,
    describe: String,
    size_bytes: i64,
    created_by: Option<i64>,
    created_at: i64,
}

impl VersionRow {
    fn decode(self) -> StoreResult<Version> {
        Ok(Version {
            id: self.id,
            strategy_id: self.strategy_id,
            version: self.version,
            content_sha256: self.content_sha256,
            contract_version: self.contract_version,
            describe: from_json("strategy_versions", &self.describe)?,
            size_bytes: self.size_bytes,
            created_by: self.created_by,
            created_at: self.created_at,
        })
    }
}

const INSTANCE_COLUMNS: &str = "i.id, i.strategy_id, i.version_id, v.version, i.params, i.symbols, i.status, i.status_reason, i.snapshot_at, i.created_at, i.updated_at";

#[derive(FromRow)]
struct InstanceRow {
    id: i64,
    strategy_id: i64,
    version_id: i64,
    version: i64,
    params: String,
    symbols: String,
    status: String,
    status_reason: Option<String>,
    snapshot_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl InstanceRow {
    fn decode(self) -> StoreResult<Instance> {
        Ok(Instance {
            id: self.id,
            strategy_id: self.strategy_id,
            version_id: self.version_id,
            version: self.version,
            params: from_json("strategy_instances", &self.params)?,
            symbols: from_json("strategy_instances", &self.symbols)?,
            status: self.status,
            status_reason: self.status_reason,
            snapshot_at: self.snapshot_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Insert version `version` of a strategy, and its component (`encoded`, as
/// [`Store::encode_component`] gives it) unless stored already; `None` when an earlier
/// statement of the same transaction stored it. `size` is the component's own size.
pub(crate) async fn insert_version(
    conn: Conn<'_>,
    strategy_id: i64,
    version: i64,
    v: &NewVersion<'_>,
    encoded: Option<&Encoded>,
    t: i64,
) -> StoreResult<i64> {
    with_conn!(conn, tx => {
    if let Some(encoded) = encoded {
        sqlx::query("INSERT INTO components (sha256, bytes, encoding, dictionary_sha256, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sha256) DO NOTHING")
            .bind(v.content_sha256)
            .bind(&encoded.bytes)
            .bind(&encoded.encoding)
            .bind(encoded.dictionary.as_deref())
            .bind(t)
            .execute(&mut *tx)
            .await?;
    }
    // The bytes are in `components`; the old column keeps an empty value.
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO strategy_versions (strategy_id, version, content_sha256, contract_version, describe, size_bytes, component, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(strategy_id)
    .bind(version)
    .bind(v.content_sha256)
    .bind(v.contract_version)
    .bind(to_json(v.describe))
    .bind(v.size_bytes())
    .bind(Vec::<u8>::new())
    .bind(v.created_by)
    .bind(t)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| {
        if StoreError::is_unique_violation(&e) {
            StoreError::Conflict(format!(
                "strategy {strategy_id} already has a version {version}; retry the upload"
            ))
        } else {
            e.into()
        }
    })?;
    Ok(id)
    })
}

/// Create a strategy with its version 1 and its default instance (disabled) configured with
/// `params` (resolved) and `symbols`.
pub async fn create(
    store: &Store,
    s: &NewStrategy<'_>,
    v: &NewVersion<'_>,
    params: &Value,
    symbols: &[String],
) -> StoreResult<StrategyRecord> {
    let t = now();
    let encoded = components::encode(store, v.component);
    let id = in_transaction!(store, tx => {
        insert_strategy((&mut *tx).into(), s, v, Some(&encoded), params, symbols, t).await
    })?;
    store.catalog_changed();
    get(store, id).await
}

/// [`create`] on an open transaction; the new strategy's id.
pub(crate) async fn insert_strategy(
    mut conn: Conn<'_>,
    s: &NewStrategy<'_>,
    v: &NewVersion<'_>,
    encoded: Option<&Encoded>,
    params: &Value,
    symbols: &[String],
    t: i64,
) -> StoreResult<i64> {
    let id: i64 = with_conn!(&mut conn, tx => sqlx::query_scalar(
        "INSERT INTO strategies (name, description, owner_id, source, cloned_from, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(s.name)
    .bind(s.description)
    .bind(s.owner_id)
    .bind(s.source)
    .bind(s.cloned_from)
    .bind(t)
    .bind(t)
    .fetch_one(&mut **tx)
    .await)?;
    let version_id = insert_version(conn.reborrow(), id, 1, v, encoded, t).await?;
    with_conn!(&mut conn, tx => sqlx::query(
        "INSERT INTO strategy_instances (strategy_id, version_id, params, symbols, status, created_at, updated_at) VALUES ($1, $2, $3, $4, 'disabled', $5, $6)",
    )
    .bind(id)
    .bind(version_id)
    .bind(to_json(params))
    .bind(to_json(&symbols))
    .bind(t)
    .bind(t)
    .execute(&mut **tx)
    .await
    .map(|_| ()))?;
    Ok(id)
}

/// Add the next version of a strategy. With `activate`, the default instance moves to it
/// with `params` (resolved against the new version); otherwise the instance stays.
pub async fn add_version(
    store: &Store,
    strategy_id: i64,
    v: &NewVersion<'_>,
    activate: Option<&Value>,
) -> StoreResult<Version> {
    let t = now();
    let encoded = components::encode(store, v.component);
    let version_id = in_transaction!(store, tx => {
    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM strategies WHERE id = $1")
        .bind(strategy_id)
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_none() {
        return Err(StoreError::NotFound(format!("strategy {strategy_id}")));
    }
    let next: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(version), 0) + 1 FROM strategy_versions WHERE strategy_id = $1",
    )
    .bind(strategy_id)
    .fetch_one(&mut *tx)
    .await?;
    let version_id =
        insert_version((&mut *tx).into(), strategy_id, next, v, Some(&encoded), t).await?;
    if let Some(params) = activate {
        sqlx::query(
            "UPDATE strategy_instances SET version_id = $1, params = $2, updated_at = $3 WHERE strategy_id = $4",
        )
        .bind(version_id)
        .bind(to_json(params))
        .bind(t)
        .bind(strategy_id)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("UPDATE strategies SET updated_at = $1 WHERE id = $2")
        .bind(t)
        .bind(strategy_id)
        .execute(&mut *tx)
        .await?;
    StoreResult::Ok(version_id)
    })?;
    store.catalog_changed();
    version_by_id(store, version_id).await
}

/// The strategy row alone.
pub async fn strategy(store: &Store, id: i64) -> StoreResult<Strategy> {
    with_pool!(store, p => sqlx::query_as::<_, Strategy>(
        "SELECT id, name, description, owner_id, source, cloned_from, created_at, updated_at FROM strategies WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(p)
    .await)?
    .ok_or_else(|| StoreError::NotFound(format!("strategy {id}")))
}

/// The default instance of a strategy.
pub async fn instance(store: &Store, strategy_id: i64) -> StoreResult<Instance> {
    with_pool!(store, p => sqlx::query_as::<_, InstanceRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {INSTANCE_COLUMNS} FROM strategy_instances i JOIN strategy_versions v ON v.id = i.version_id WHERE i.strategy_id = $1 ORDER BY i.id LIMIT 1"
    )))
    .bind(strategy_id)
    .fetch_optional(p)
    .await)?
    .ok_or_else(|| StoreError::NotFound(format!("strategy {strategy_id}")))?
    .decode()
}

/// A strategy with its current version and default instance.
pub async fn get(store: &Store, id: i64) -> StoreResult<StrategyRecord> {
    let strategy = strategy(store, id).await?;
    let instance = instance(store, id).await?;
    let current_version = version_by_id(store, instance.version_id).await?;
    Ok(StrategyRecord {
        strategy,
        current_version,
        instance,
    })
}

/// Every strategy, by id.
pub async fn list(store: &Store) -> StoreResult<Vec<StrategyRecord>> {
    let strategies = with_pool!(store, p => sqlx::query_as::<_, Strategy>(
        "SELECT id, name, description, owner_id, source, cloned_from, created_at, updated_at FROM strategies ORDER BY id",
    )
    .fetch_all(p)
    .await)?;
    let instances = with_pool!(store, p => sqlx::query_as::<_, InstanceRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {INSTANCE_COLUMNS} FROM strategy_instances i JOIN strategy_versions v ON v.id = i.version_id ORDER BY i.id"
    )))
    .fetch_all(p)
    .await)?;
    let versions = with_pool!(store, p => sqlx::query_as::<_, VersionRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM strategy_versions WHERE id IN (SELECT version_id FROM strategy_instances)",
        VERSION_COLUMNS
    )))
    .fetch_all(p)
    .await)?;
    let mut by_strategy = std::collections::HashMap::new();
    for row in instances {
        // The first (default) instance of each strategy.
        by_strategy.entry(row.strategy_id).or_insert(row);
    }
    let versions: std::collections::HashMap<i64, Version> = versions
        .into_iter()
        .map(|r| r.decode().map(|v| (v.id, v)))
        .collect::<StoreResult<_>>()?;
    let mut out = Vec::with_capacity(strategies.len());
    for strategy in strategies {
        let Some(row) = by_strategy.remove(&strategy.id) else {
            continue;
        };
        let instance = row.decode()?;
        let current_version = match versions.get(&instance.version_id) {
            Some(v) => v.clone(),
            None => version_by_id(store, instance.version_id).await?,
        };
        out.push(StrategyRecord {
            strategy,
            current_version,
            instance,
        });
    }
    Ok(out)
}

/// Every version of a strategy, oldest first.
pub async fn versions(store: &Store, strategy_id: i64) -> StoreResult<Vec<Version>> {
    strategy(store, strategy_id).await?;
    with_pool!(store, p => sqlx::query_as::<_, VersionRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {VERSION_COLUMNS} FROM strategy_versions WHERE strategy_id = $1 ORDER BY version"
    )))
    .bind(strategy_id)
    .fetch_all(p)
    .await)?
    .into_iter()
    .map(VersionRow::decode)
    .collect()
}

/// A version by its row id.
pub async fn version_by_id(store: &Store, id: i64) -> StoreResult<Version> {
    with_pool!(store, p => sqlx::query_as::<_, VersionRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {VERSION_COLUMNS} FROM strategy_versions WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(p)
    .await)?
    .ok_or_else(|| StoreError::NotFound(format!("strategy version {id}")))?
    .decode()
}

/// Version number `version` of a strategy.
pub async fn version(store: &Store, strategy_id: i64, version: i64) -> StoreResult<Version> {
    with_pool!(store, p => sqlx::query_as::<_, VersionRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {VERSION_COLUMNS} FROM strategy_versions WHERE strategy_id = $1 AND version = $2"
    )))
    .bind(strategy_id)
    .bind(version)
    .fetch_optional(p)
    .await)?
    .ok_or_else(|| StoreError::NotFound(format!("version {version} of strategy {strategy_id}")))?
    .decode()
}

/// The component bytes of a version.
pub async fn component(store: &Store, version_id: i64) -> StoreResult<Vec<u8>> {
    let (bytes, encoding, dictionary): (Vec<u8>, String, Option<String>) = with_pool!(store, p => sqlx::query_as(
        "SELECT c.bytes, c.encoding, c.dictionary_sha256 FROM strategy_versions v JOIN components c ON c.sha256 = v.content_sha256 WHERE v.id = $1",
    )
        .bind(version_id)
        .fetch_optional(p)
        .await)?
        .ok_or_else(|| StoreError::NotFound(format!("strategy version {version_id}")))?;
    components::decode(store, &encoding, dictionary.as_deref(), bytes).await
}

/// The newest stored version whose `describe` names `name` (any strategy), for templates.
pub async fn latest_described_as(store: &Store, name: &str) -> StoreResult<Option<Version>> {
    // The name is a member of the stored JSON text: `->>` reads it on both backends, once
    // PostgreSQL is told the text is JSON.
    let describe = super::dialect(store, "describe", "describe::jsonb");
    with_pool!(store, p => sqlx::query_as::<_, VersionRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {VERSION_COLUMNS} FROM strategy_versions WHERE {describe} ->> 'name' = $1 ORDER BY id DESC LIMIT 1"
    )))
    .bind(name)
    .fetch_optional(p)
    .await)?
    .map(VersionRow::decode)
    .transpose()
}

/// Replace the default instance's parameters (resolved) and symbols.
pub async fn configure(
    store: &Store,
    strategy_id: i64,
    params: &Value,
    symbols: &[String],
) -> StoreResult<Instance> {
    let r = with_pool!(store, p => sqlx::query(
        "UPDATE strategy_instances SET params = $1, symbols = $2, updated_at = $3 WHERE strategy_id = $4",
    )
    .bind(to_json(params))
    .bind(to_json(&symbols))
    .bind(now())
    .bind(strategy_id)
    .execute(p)
    .await.map(|r| r.rows_affected()))?;
    if r == 0 {
        return Err(StoreError::NotFound(format!("strategy {strategy_id}")));
    }
    touch(store, strategy_id).await?;
    instance(store, strategy_id).await
}

/// Set the default instance's status (`enabled`, `disabled`, `halted`, `failed`) and reason.
pub async fn set_status(
    store: &Store,
    strategy_id: i64,
    status: &str,
    reason: Option<&str>,
) -> StoreResult<Instance> {
    let r = with_pool!(store, p => sqlx::query(
        "UPDATE strategy_instances SET status = $1, status_reason = $2, updated_at = $3 WHERE strategy_id = $4",
    )
    .bind(status)
    .bind(reason)
    .bind(now())
    .bind(strategy_id)
    .execute(p)
    .await.map(|r| r.rows_affected()))?;
    if r == 0 {
        return Err(StoreError::NotFound(format!("strategy {strategy_id}")));
    }
    touch(store, strategy_id).await?;
    instance(store, strategy_id).await
}

/// Mark the strategy updated; this also tells the catalog cache that the instance update
/// before it committed.
async fn touch(store: &Store, strategy_id: i64) -> StoreResult<()> {
    let r = with_pool!(store, p => sqlx::query("UPDATE strategies SET updated_at = $1 WHERE id = $2")
        .bind(now())
        .bind(strategy_id)
        .execute(p)
        .await.map(|r| r.rows_affected()));
    store.catalog_changed();
    r?;
    Ok(())
}

/// Delete a strategy with its versions and instances; its backtests stay, detached.
pub async fn delete(store: &Store, id: i64) -> StoreResult<()> {
    let r = with_pool!(store, p => sqlx::query("DELETE FROM strategies WHERE id = $1")
        .bind(id)
        .execute(p)
        .await.map(|r| r.rows_affected()))?;
    store.catalog_changed();
    // Code no version uses any more (its versions went with the strategy).
    with_pool!(store, p => sqlx::query(
        "DELETE FROM components WHERE NOT EXISTS (SELECT 1 FROM strategy_versions v WHERE v.content_sha256 = components.sha256)",
    )
    .execute(p)
    .await.map(|r| r.rows_affected()))?;
    if r == 0 {
        return Err(StoreError::NotFound(format!("strategy {id}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn component_version<'a>(sha: &'a str, describe: &'a Value) -> NewVersion<'a> {
        NewVersion {
            content_sha256: sha,
            contract_version: "qtm:strategy@0.1.0",
            describe,
            component: b"\0asm-bytes",
            size: None,
            created_by: None,
        }
    }

    #[tokio::test]
    async fn migration_6_moves_the_bytes_of_existing_versions_into_the_shared_table() {
        use std::str::FromStr;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("old.db").display());
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
            .unwrap()
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        sqlx::migrate!("migrations/sqlite")
            .run_to(5, &pool)
            .await
            .unwrap();
        // Two strategies as the schema before it stored them: the bytes in each version row.
        for id in [1, 2] {
            sqlx::query("INSERT INTO strategies (id, name, description, source, created_at, updated_at) VALUES ($1, $2, '', 'upload', 1, 1)")
                .bind(id)
                .bind(format!("old-{id}"))
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("INSERT INTO strategy_versions (strategy_id, version, content_sha256, contract_version, describe, size_bytes, component, created_at) VALUES ($1, 1, 'ab', 'qtm:strategy@0.1.0', '{}', 4, x'0061736d', 1)")
                .bind(id)
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;

        let s = Store::open(&url).await.unwrap();
        for id in [1, 2] {
            let v = version(&s, id, 1).await.unwrap();
            assert_eq!(component(&s, v.id).await.unwrap(), b"\0asm");
            assert_eq!(v.size_bytes, 4);
        }
        let (rows, left): (i64, i64) = with_pool!(s, p => sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM components), (SELECT COALESCE(SUM(LENGTH(component)), 0) FROM strategy_versions)",
        )
        .fetch_one(p)
        .await)
        .unwrap();
        assert_eq!(
            (rows, left),
            (1, 0),
            "one shared copy, none left in the versions"
        );
    }

    #[tokio::test]
    async fn one_component_is_stored_once_however_many_strategies_use_it() {
        for s in crate::test_stores().await {
            let d = json!({"name": "t", "params": []});
            let stored = || async {
                let n: i64 =
                    with_pool!(s, p => sqlx::query_scalar("SELECT COUNT(*) FROM components")
                .fetch_one(p)
                .await)
                    .unwrap();
                n
            };
            let mut ids = Vec::new();
            for name in ["a", "b", "c"] {
                let r = create(
                    &s,
                    &NewStrategy {
                        name,
                        description: "",
                        owner_id: None,
                        source: "upload",
                        cloned_from: None,
                    },
                    &component_version("same", &d),
                    &json!({}),
                    &[],
                )
                .await
                .unwrap();
                assert_eq!(r.current_version.size_bytes, 10);
                ids.push((r.strategy.id, r.current_version.id));
            }
            assert_eq!(stored().await, 1);
            delete(&s, ids[0].0).await.unwrap();
            // The others still read their bytes.
            assert_eq!(component(&s, ids[1].1).await.unwrap(), b"\0asm-bytes");
            delete(&s, ids[1].0).await.unwrap();
            delete(&s, ids[2].0).await.unwrap();
            assert_eq!(stored().await, 0, "bytes no version uses are removed");
        }
    }

    #[tokio::test]
    async fn every_catalog_write_moves_the_generation_once_it_has_committed() {
        for s in crate::test_stores().await {
            let d = json!({"name": "t", "params": []});
            let mut seen = s.catalog_generation();
            let moved = |seen: &mut u64, what: &str| {
                let now = s.catalog_generation();
                assert!(now > *seen, "{what} did not move the catalog generation");
                *seen = now;
            };
            let rec = create(
                &s,
                &NewStrategy {
                    name: "g",
                    description: "",
                    owner_id: None,
                    source: "upload",
                    cloned_from: None,
                },
                &component_version("aa", &d),
                &json!({}),
                &["SPY".to_string()],
            )
            .await
            .unwrap();
            moved(&mut seen, "create");
            let id = rec.strategy.id;
            let v2 = add_version(&s, id, &component_version("bb", &d), None)
                .await
                .unwrap();
            moved(&mut seen, "add_version");
            configure(&s, id, &json!({}), &["QQQ".to_string()])
                .await
                .unwrap();
            moved(&mut seen, "configure");
            set_status(&s, id, "enabled", None).await.unwrap();
            moved(&mut seen, "set_status");
            crate::live::set_version(&s, id, v2.id).await.unwrap();
            moved(&mut seen, "set_version");
            // The writer blocks its thread on its own runtime: off this test's runtime.
            let store = s.clone();
            let mut w = tokio::task::spawn_blocking(move || {
                let mut w = crate::writer::Writer::open(&store).unwrap();
                w.begin().unwrap();
                w.save_snapshot(id, b"state", 7, &[]).unwrap();
                w
            })
            .await
            .unwrap();
            assert_eq!(s.catalog_generation(), seen, "moved before the commit");
            w = tokio::task::spawn_blocking(move || {
                w.commit().unwrap();
                w
            })
            .await
            .unwrap();
            moved(&mut seen, "a snapshot");
            // Reads and batches without instance rows leave it alone.
            get(&s, id).await.unwrap();
            tokio::task::spawn_blocking(move || {
                w.begin().unwrap();
                w.commit().unwrap();
            })
            .await
            .unwrap();
            assert_eq!(s.catalog_generation(), seen);
            delete(&s, id).await.unwrap();
            moved(&mut seen, "delete");
        }
    }

    #[tokio::test]
    async fn versions_instances_and_cascading_delete() {
        for s in crate::test_stores().await {
            let d = json!({"name": "t", "params": []});
            let rec = create(
                &s,
                &NewStrategy {
                    name: "mine",
                    description: "d",
                    owner_id: None,
                    source: "upload",
                    cloned_from: None,
                },
                &component_version("aa", &d),
                &json!({"fast": 10}),
                &["SPY".to_string()],
            )
            .await
            .unwrap();
            assert_eq!(rec.current_version.version, 1);
            assert_eq!(rec.instance.status, "disabled");
            assert_eq!(rec.instance.symbols, vec!["SPY"]);
            assert_eq!(rec.instance.params, json!({"fast": 10}));
            assert_eq!(
                component(&s, rec.current_version.id).await.unwrap(),
                b"\0asm-bytes"
            );

            // A version that is not activated leaves the instance where it was.
            let v2 = add_version(&s, rec.strategy.id, &component_version("bb", &d), None)
                .await
                .unwrap();
            assert_eq!(v2.version, 2);
            assert_eq!(instance(&s, rec.strategy.id).await.unwrap().version, 1);
            let v3 = add_version(
                &s,
                rec.strategy.id,
                &component_version("cc", &d),
                Some(&json!({"fast": 5})),
            )
            .await
            .unwrap();
            let got = get(&s, rec.strategy.id).await.unwrap();
            assert_eq!((got.current_version.id, got.instance.version), (v3.id, 3));
            assert_eq!(got.instance.params, json!({"fast": 5}));
            assert_eq!(versions(&s, rec.strategy.id).await.unwrap().len(), 3);
            assert_eq!(version(&s, rec.strategy.id, 2).await.unwrap().id, v2.id);
            assert_eq!(
                latest_described_as(&s, "t").await.unwrap().unwrap().id,
                v3.id
            );

            let on = set_status(&s, rec.strategy.id, "enabled", None)
                .await
                .unwrap();
            assert_eq!(on.status, "enabled");
            assert_eq!(list(&s).await.unwrap().len(), 1);

            delete(&s, rec.strategy.id).await.unwrap();
            assert!(matches!(
                get(&s, rec.strategy.id).await,
                Err(StoreError::NotFound(_))
            ));
            assert!(matches!(
                delete(&s, rec.strategy.id).await,
                Err(StoreError::NotFound(m)) if m == format!("strategy {}", rec.strategy.id)
            ));
            let left: i64 =
                with_pool!(s, p => sqlx::query_scalar("SELECT COUNT(*) FROM strategy_versions")
            .fetch_one(p)
            .await)
                .unwrap();
            assert_eq!(left, 0);
        }
    }
}
