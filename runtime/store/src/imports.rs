//! Strategies imported from other databases (SQL import): where each came from, and the one
//! write that applies a whole import.
//!
//! A row is identified by its source (the database URL without credentials, or
//! `upload:<file name>`) and its key. Importing a key again with the same content hash changes
//! nothing; with another hash it becomes the next version of the strategy that key made
//! (parameters and symbols with it); a key the source never gave before (or whose strategy was
//! deleted) makes a new strategy.

use serde_json::Value;
use sqlx::FromRow;

use super::components::Encoded;
use super::strategies::{NewStrategy, NewVersion, insert_strategy, insert_version};
use super::{
    Conn, Store, StoreError, StoreResult, in_transaction, now, to_json, with_conn, with_pool,
};

/// Where an imported strategy came from, as stored and shown.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct Provenance {
    pub strategy_id: i64,
    /// The source database's URL without credentials, or `upload:<file name>`.
    pub source: String,
    /// The query that read it.
    pub query: String,
    /// The row's key.
    pub row_key: String,
    /// Hex SHA-256 of what the row defined (component, parameters, symbols, name).
    pub content_sha256: String,
    /// The strategy version the latest import of the row made or kept.
    pub version: i64,
    pub imported_by: Option<i64>,
    /// Unix seconds.
    pub imported_at: i64,
}

/// One import: the source, the query and who runs it.
#[derive(Debug, Clone)]
pub struct ImportSource<'a> {
    pub source: &'a str,
    pub query: &'a str,
    pub user_id: Option<i64>,
}

/// One checked row, ready to store.
#[derive(Debug, Clone)]
pub struct ImportRow {
    pub key: String,
    pub name: String,
    pub description: String,
    /// `rules`, `template` or `wasm`: how the row defined its code.
    pub kind: String,
    pub content_sha256: String,
    pub component_sha256: String,
    pub contract_version: String,
    pub describe: Value,
    /// The component as stored ([`Store::encode_component`]); `None` when an earlier row of
    /// the same import carries the same component.
    pub component: Option<Encoded>,
    /// The component's own size.
    pub component_size: usize,
    /// Resolved parameters.
    pub params: Value,
    pub symbols: Vec<String>,
}

/// What an import did (or, in a dry run, would do) with a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A new strategy.
    Created { strategy_id: i64 },
    /// A new version of the key's strategy.
    Updated { strategy_id: i64, version: i64 },
    /// The same content as the key's last import.
    Unchanged { strategy_id: i64 },
}

impl Outcome {
    /// The strategy the row made or kept.
    pub fn strategy_id(self) -> i64 {
        match self {
            Outcome::Created { strategy_id }
            | Outcome::Updated { strategy_id, .. }
            | Outcome::Unchanged { strategy_id } => strategy_id,
        }
    }
}

const PROVENANCE_COLUMNS: &str =
    "strategy_id, source, query, row_key, content_sha256, version, imported_by, imported_at";

/// The last import of `key` from `source`, if its strategy still exists.
pub async fn previous(store: &Store, source: &str, key: &str) -> StoreResult<Option<Provenance>> {
    Ok(
        with_pool!(store, p => sqlx::query_as::<_, Provenance>(sqlx::AssertSqlSafe(format!(
        "SELECT {PROVENANCE_COLUMNS} FROM strategy_imports WHERE source = $1 AND row_key = $2"
    )))
    .bind(source)
    .bind(key)
    .fetch_optional(p)
    .await)?,
    )
}

/// Where strategy `strategy_id` was imported from, if it was.
pub async fn provenance(store: &Store, strategy_id: i64) -> StoreResult<Option<Provenance>> {
    Ok(
        with_pool!(store, p => sqlx::query_as::<_, Provenance>(sqlx::AssertSqlSafe(format!(
        "SELECT {PROVENANCE_COLUMNS} FROM strategy_imports WHERE strategy_id = $1 ORDER BY imported_at DESC, id DESC LIMIT 1"
    )))
    .bind(strategy_id)
    .fetch_optional(p)
    .await)?,
    )
}

/// Store every row of `rows` in one transaction: all of them or, on the first error (a row
/// the spool cannot give back, a database error), none. `on_row` hears each outcome.
pub async fn apply<I>(
    store: &Store,
    src: &ImportSource<'_>,
    rows: I,
    mut on_row: impl FnMut(&ImportRow, Outcome),
) -> StoreResult<()>
where
    I: Iterator<Item = StoreResult<ImportRow>>,
{
    let t = now();
    let mut changed = false;
    let result = in_transaction!(store, tx => {
        for row in rows {
            let row = row?;
            let outcome = apply_one((&mut *tx).into(), src, &row, t).await?;
            changed |= !matches!(outcome, Outcome::Unchanged { .. });
            on_row(&row, outcome);
        }
        StoreResult::Ok(())
    });
    if changed && result.is_ok() {
        store.catalog_changed();
    }
    result
}

async fn apply_one(
    mut conn: Conn<'_>,
    src: &ImportSource<'_>,
    row: &ImportRow,
    t: i64,
) -> StoreResult<Outcome> {
    let encoded = row.component.as_ref();
    let prev: Option<(i64, String)> = with_conn!(&mut conn, tx => sqlx::query_as(
        "SELECT strategy_id, content_sha256 FROM strategy_imports WHERE source = $1 AND row_key = $2",
    )
    .bind(src.source)
    .bind(&row.key)
    .fetch_optional(&mut **tx)
    .await)?;
    let version = NewVersion {
        content_sha256: &row.component_sha256,
        contract_version: &row.contract_version,
        describe: &row.describe,
        component: &[],
        size: Some(row.component_size),
        created_by: src.user_id,
    };
    let outcome = match prev {
        Some((strategy_id, hash)) if hash == row.content_sha256 => {
            return Ok(Outcome::Unchanged { strategy_id });
        }
        Some((strategy_id, _)) => {
            let next: i64 = with_conn!(&mut conn, tx => sqlx::query_scalar(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM strategy_versions WHERE strategy_id = $1",
            )
            .bind(strategy_id)
            .fetch_one(&mut **tx)
            .await)?;
            let version_id =
                insert_version(conn.reborrow(), strategy_id, next, &version, encoded, t).await?;
            // The row says what the strategy is now: its code, configuration and name. A
            // running instance keeps running its version until it is swapped.
            with_conn!(&mut conn, tx => sqlx::query(
                "UPDATE strategy_instances SET version_id = $1, params = $2, symbols = $3, updated_at = $4 WHERE strategy_id = $5 AND status <> 'enabled'",
            )
            .bind(version_id)
            .bind(to_json(&row.params))
            .bind(to_json(&row.symbols))
            .bind(t)
            .bind(strategy_id)
            .execute(&mut **tx)
            .await
    .map(|_| ()))?;
            with_conn!(&mut conn, tx => sqlx::query(
                "UPDATE strategies SET name = $1, description = $2, updated_at = $3 WHERE id = $4",
            )
            .bind(&row.name)
            .bind(&row.description)
            .bind(t)
            .bind(strategy_id)
            .execute(&mut **tx)
            .await
    .map(|_| ()))?;
            Outcome::Updated {
                strategy_id,
                version: next,
            }
        }
        None => {
            let strategy = NewStrategy {
                name: &row.name,
                description: &row.description,
                owner_id: src.user_id,
                source: "import",
                cloned_from: None,
            };
            let strategy_id = insert_strategy(
                conn.reborrow(),
                &strategy,
                &version,
                encoded,
                &row.params,
                &row.symbols,
                t,
            )
            .await?;
            Outcome::Created { strategy_id }
        }
    };
    let version = match outcome {
        Outcome::Updated { version, .. } => version,
        _ => 1,
    };
    with_conn!(&mut conn, tx => sqlx::query(
        "INSERT INTO strategy_imports (strategy_id, source, query, row_key, content_sha256, version, imported_by, imported_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (source, row_key) DO UPDATE SET strategy_id = excluded.strategy_id, query = excluded.query, content_sha256 = excluded.content_sha256, version = excluded.version, imported_by = excluded.imported_by, imported_at = excluded.imported_at",
    )
    .bind(outcome.strategy_id())
    .bind(src.source)
    .bind(src.query)
    .bind(&row.key)
    .bind(&row.content_sha256)
    .bind(version)
    .bind(src.user_id)
    .bind(t)
    .execute(&mut **tx)
    .await
    .map(|_| ()))?;
    Ok(outcome)
}

/// A conflict for the import as a whole (the store's error kinds, for callers that map them).
pub fn conflict(message: impl Into<String>) -> StoreError {
    StoreError::Conflict(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(key: &str, code: &[u8], fast: i64) -> ImportRow {
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(code));
        ImportRow {
            key: key.into(),
            name: format!("strategy {key}"),
            description: String::new(),
            kind: "wasm".into(),
            content_sha256: format!("{sha}-{fast}"),
            component_sha256: sha,
            contract_version: "qtm:strategy@0.2.0".into(),
            describe: json!({"name": "t", "params": []}),
            component: Some(Encoded {
                encoding: "raw".into(),
                dictionary: None,
                bytes: code.to_vec(),
                raw_len: code.len(),
            }),
            component_size: code.len(),
            params: json!({"fast": fast}),
            symbols: vec!["SPY".into()],
        }
    }

    #[tokio::test]
    async fn rows_create_then_stay_then_version_and_a_failure_leaves_nothing() {
        for s in crate::test_stores().await {
            let src = ImportSource {
                source: "sqlite://team.db",
                query: "SELECT * FROM strategies",
                user_id: None,
            };
            let mut seen = Vec::new();
            apply(
                &s,
                &src,
                [Ok(row("a", b"\0asm-a", 10)), Ok(row("b", b"\0asm-b", 10))].into_iter(),
                |r, o| seen.push((r.key.clone(), o)),
            )
            .await
            .unwrap();
            let a = seen[0].1.strategy_id();
            assert!(matches!(seen[0].1, Outcome::Created { .. }));
            // Again: unchanged. Then a changed parameter: version 2 of the same strategy.
            seen.clear();
            apply(
                &s,
                &src,
                [Ok(row("a", b"\0asm-a", 10)), Ok(row("b", b"\0asm-b", 12))].into_iter(),
                |r, o| seen.push((r.key.clone(), o)),
            )
            .await
            .unwrap();
            assert_eq!(seen[0].1, Outcome::Unchanged { strategy_id: a });
            let b = match seen[1].1 {
                Outcome::Updated {
                    strategy_id,
                    version,
                } => {
                    assert_eq!(version, 2);
                    strategy_id
                }
                other => panic!("{other:?}"),
            };
            let rec = crate::strategies::get(&s, b).await.unwrap();
            assert_eq!(rec.instance.params, json!({"fast": 12}));
            assert_eq!(rec.instance.version, 2);
            let p = provenance(&s, b).await.unwrap().unwrap();
            assert_eq!(
                (p.source.as_str(), p.row_key.as_str(), p.version),
                ("sqlite://team.db", "b", 2)
            );
            // A failing row rolls back the rows before it.
            let before = crate::strategies::list(&s).await.unwrap().len();
            let err = apply(
                &s,
                &src,
                [Ok(row("c", b"\0asm-c", 10)), Err(conflict("spool damaged"))].into_iter(),
                |_, _| {},
            )
            .await
            .unwrap_err();
            assert_eq!(err.to_string(), "spool damaged");
            assert_eq!(crate::strategies::list(&s).await.unwrap().len(), before);
            assert_eq!(previous(&s, "sqlite://team.db", "c").await.unwrap(), None);
        }
    }
}
