//! External signals received by signed webhooks, and the lookup strategies read them through.
//!
//! Every row carries the webhook's MAC (hex) as its `signature`, made unique per row by the
//! signal's index in the request (`<mac>:<i>`), so the UNIQUE constraint on the column turns an
//! exact replay of a request into a conflict while one request may still carry many signals.

use super::{Store, StoreError, StoreResult, from_json, in_transaction, now, to_json, with_pool};
use qtm_core::model::Signal;

/// A signal to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSignal {
    pub name: String,
    pub value: f64,
    /// Event time in unix seconds as the sender stated it; the receive time when absent.
    pub ts: Option<i64>,
    /// The signal's whole JSON object as received.
    pub payload: serde_json::Value,
}

/// A stored signal.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSignal {
    pub id: i64,
    /// The webhook source it came through (`POST /api/webhooks/{source}`).
    pub source: String,
    pub name: String,
    pub value: f64,
    /// Event time, unix seconds (the receive time if the sender gave none).
    pub ts: i64,
    /// When the server received it, unix seconds.
    pub received_at: i64,
    /// The signal object as received.
    pub payload: serde_json::Value,
}

type Row = (i64, String, String, Option<f64>, String, Option<i64>, i64);

const COLUMNS: &str = "id, source, name, value, payload, event_ts, received_at";

fn decode(
    (id, source, name, value, payload, event_ts, received_at): Row,
) -> StoreResult<StoredSignal> {
    Ok(StoredSignal {
        id,
        source,
        name,
        value: value.unwrap_or(f64::NAN),
        ts: event_ts.unwrap_or(received_at),
        received_at,
        payload: from_json("signals", &payload)?,
    })
}

/// Store the signals of one verified webhook request in one transaction. `mac_hex` is the
/// request's MAC; a request already stored gives [`StoreError::Conflict`] and stores nothing.
pub async fn insert_batch(
    store: &Store,
    source: &str,
    mac_hex: &str,
    signals: &[NewSignal],
) -> StoreResult<Vec<StoredSignal>> {
    let received_at = now();
    in_transaction!(store, tx => {
    let mut out = Vec::with_capacity(signals.len());
    for (i, s) in signals.iter().enumerate() {
        let payload = to_json(&s.payload);
        let ts = s.ts.unwrap_or(received_at);
        let res: Result<i64, sqlx::Error> = sqlx::query_scalar(
            "INSERT INTO signals (source, name, value, payload, signature, event_ts, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(source)
        .bind(&s.name)
        .bind(s.value)
        .bind(&payload)
        .bind(format!("{mac_hex}:{i}"))
        .bind(ts)
        .bind(received_at)
        .fetch_one(&mut *tx)
        .await;
        let id = match res {
            Ok(id) => id,
            Err(e) if StoreError::is_unique_violation(&e) => {
                return Err(StoreError::Conflict(
                    "this webhook request was already received (replayed signature)".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        out.push(StoredSignal {
            id,
            source: source.to_string(),
            name: s.name.clone(),
            value: s.value,
            ts,
            received_at,
            payload: s.payload.clone(),
        });
    }
    Ok(out)
    })
}

/// A family of signals with its own list route. A signal belongs to it when it came from one of
/// `sources` or its name starts with one of `prefixes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Category {
    /// The route's last segment (`/api/signals/{route}`).
    pub route: &'static str,
    pub sources: &'static [&'static str],
    pub prefixes: &'static [&'static str],
}

/// Whale transfers: source `whale-alert` or `whales`, or names `whale.*` / `whale-activity.*`.
pub const WHALE_ACTIVITY: Category = Category {
    route: "whale-activity",
    sources: &["whale-alert", "whales"],
    prefixes: &["whale.", "whale-activity."],
};

/// Perpetual funding rates: source `funding` or `funding-rates`, or names `funding.*` /
/// `funding-rate.*`.
pub const FUNDING_RATES: Category = Category {
    route: "funding-rates",
    sources: &["funding", "funding-rates"],
    prefixes: &["funding.", "funding-rate."],
};

/// On-chain metrics: source `onchain` or `glassnode`, or names `onchain.*`.
pub const ONCHAIN: Category = Category {
    route: "onchain",
    sources: &["onchain", "glassnode"],
    prefixes: &["onchain."],
};

/// Glassnode metrics: source `glassnode`, or names `glassnode.*` (from any source).
pub const GLASSNODE: Category = Category {
    route: "glassnode",
    sources: &["glassnode"],
    prefixes: &["glassnode."],
};

/// Which signals to list. Newest received first.
#[derive(Debug, Clone, Default)]
pub struct SignalFilter {
    pub category: Option<Category>,
    /// Exact signal name.
    pub name: Option<String>,
    /// Exact webhook source.
    pub source: Option<String>,
    /// Only signals received at or after this unix second.
    pub since: Option<i64>,
    /// Only signals with an id below this one (the keyset of the page after it).
    pub before: Option<i64>,
    /// Only signals whose payload has a numeric `confidence` at or above this.
    pub min_confidence: Option<f64>,
    pub limit: i64,
}

/// The SQL test of [`SignalFilter::min_confidence`] on `store`'s dialect, `param` its bound
/// value: the payload is JSON text, and a signal without a numeric `confidence` (absent, a
/// string, a boolean) never passes.
fn confidence_at_least(store: &Store, param: &str) -> String {
    match store.backend() {
        super::Backend::Sqlite => format!(
            "(CASE WHEN json_type(payload, '$.confidence') IN ('integer', 'real') \
             THEN json_extract(payload, '$.confidence') >= {param} ELSE 0 END)"
        ),
        super::Backend::Postgres => format!(
            "(CASE WHEN jsonb_typeof(payload::jsonb -> 'confidence') = 'number' \
             THEN (payload::jsonb ->> 'confidence')::double precision >= {param} ELSE FALSE END)"
        ),
    }
}

/// The signals matching `f`, newest received first.
pub async fn list(store: &Store, f: &SignalFilter) -> StoreResult<Vec<StoredSignal>> {
    let mut clauses: Vec<String> = Vec::new();
    let mut binds: Vec<String> = Vec::new();
    // Parameters are numbered in the order they are bound below.
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    if let Some(c) = &f.category {
        let mut any = Vec::new();
        if !c.sources.is_empty() {
            let list: Vec<String> = c.sources.iter().map(|_| next()).collect();
            any.push(format!("source IN ({})", list.join(",")));
            binds.extend(c.sources.iter().map(|s| s.to_string()));
        }
        for p in c.prefixes {
            let (a, b) = (next(), next());
            any.push(format!("substr(name, 1, length({a})) = {b}"));
            binds.push(p.to_string());
            binds.push(p.to_string());
        }
        clauses.push(format!("({})", any.join(" OR ")));
    }
    if let Some(name) = &f.name {
        clauses.push(format!("name = {}", next()));
        binds.push(name.clone());
    }
    if let Some(s) = &f.source {
        clauses.push(format!("source = {}", next()));
        binds.push(s.clone());
    }
    let mut sql = format!("SELECT {COLUMNS} FROM signals");
    if f.since.is_some() {
        clauses.push(format!("received_at >= {}", next()));
    }
    if f.before.is_some() {
        clauses.push(format!("id < {}", next()));
    }
    if f.min_confidence.is_some() {
        clauses.push(confidence_at_least(store, &next()));
    }
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", next()));
    let rows = with_pool!(store, p => {
        let mut q = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql));
        for b in binds {
            q = q.bind(b);
        }
        if let Some(since) = f.since {
            q = q.bind(since);
        }
        if let Some(before) = f.before {
            q = q.bind(before);
        }
        if let Some(min) = f.min_confidence {
            q = q.bind(min);
        }
        q.bind(f.limit.max(0)).fetch_all(p).await
    })?;
    rows.into_iter().map(decode).collect()
}

/// The newest value of the signal `name` (by event time; the later received on a tie), as the
/// strategy contract's signal lookup returns it.
pub async fn latest_signal(store: &Store, name: &str) -> StoreResult<Option<Signal>> {
    let row: Option<(Option<f64>, Option<i64>, i64, String)> = with_pool!(store, p => sqlx::query_as(
        "SELECT value, event_ts, received_at, payload FROM signals WHERE name = $1 \
         ORDER BY event_ts DESC NULLS LAST, id DESC LIMIT 1",
    )
    .bind(name)
    .fetch_optional(p)
    .await)?;
    Ok(row.map(|(value, event_ts, received_at, payload)| Signal {
        value: value.unwrap_or(f64::NAN),
        ts_ns: event_ts
            .unwrap_or(received_at)
            .saturating_mul(1_000_000_000),
        payload,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sig(name: &str, value: f64, ts: Option<i64>) -> NewSignal {
        NewSignal {
            name: name.into(),
            value,
            ts,
            payload: json!({"name": name, "value": value}),
        }
    }

    #[tokio::test]
    async fn batches_replays_categories_and_latest() {
        for s in crate::test_stores().await {
            let stored = insert_batch(
                &s,
                "whale-alert",
                "aa",
                &[
                    sig("btc.transfer", 1500.0, Some(100)),
                    sig("btc.transfer", 20.0, Some(50)),
                ],
            )
            .await
            .unwrap();
            assert_eq!(stored.len(), 2);
            insert_batch(&s, "binance", "bb", &[sig("funding.btc", 0.0001, None)])
                .await
                .unwrap();
            insert_batch(&s, "glassnode", "cc", &[sig("mvrv", 2.5, Some(10))])
                .await
                .unwrap();
            let e = insert_batch(&s, "whale-alert", "aa", &[sig("x", 1.0, None)])
                .await
                .unwrap_err();
            assert!(matches!(e, StoreError::Conflict(_)), "{e}");

            let whales = list(
                &s,
                &SignalFilter {
                    category: Some(WHALE_ACTIVITY),
                    limit: 10,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            assert_eq!(
                whales.iter().map(|w| w.value).collect::<Vec<_>>(),
                [20.0, 1500.0]
            );
            for (cat, name) in [(FUNDING_RATES, "funding.btc"), (ONCHAIN, "mvrv")] {
                let l = list(
                    &s,
                    &SignalFilter {
                        category: Some(cat),
                        limit: 10,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
                assert_eq!(
                    l.iter().map(|x| x.name.as_str()).collect::<Vec<_>>(),
                    [name]
                );
            }
            let latest = latest_signal(&s, "btc.transfer").await.unwrap().unwrap();
            assert_eq!((latest.value, latest.ts_ns), (1500.0, 100_000_000_000));
            assert_eq!(latest_signal(&s, "nothing").await.unwrap(), None);
            let since = list(
                &s,
                &SignalFilter {
                    since: Some(now() + 60),
                    limit: 10,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            assert!(since.is_empty());
        }
    }

    #[tokio::test]
    async fn min_confidence_keeps_numeric_confidences_at_or_above_it_in_sql() {
        for s in crate::test_stores().await {
            let with = |name: &str, confidence: serde_json::Value| NewSignal {
                name: name.into(),
                value: 1.0,
                ts: None,
                payload: json!({"name": name, "value": 1.0, "confidence": confidence}),
            };
            insert_batch(
                &s,
                "ai",
                "dd",
                &[
                    with("a", json!(0.9)),
                    with("b", json!(0.7)),
                    with("c", json!(0.69)),
                    with("d", json!("0.95")),
                    with("e", json!(true)),
                    with("f", json!(1)),
                    sig("g", 1.0, None),
                    with("glassnode.mvrv", json!(0.8)),
                ],
            )
            .await
            .unwrap();
            let names = |f: SignalFilter| {
                let s = s.clone();
                async move {
                    list(&s, &f)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|x| x.name)
                        .collect::<Vec<_>>()
                }
            };
            let at = |min: f64, limit: i64, before: Option<i64>| SignalFilter {
                min_confidence: Some(min),
                before,
                limit,
                ..Default::default()
            };
            assert_eq!(
                names(at(0.7, 10, None)).await,
                ["glassnode.mvrv", "f", "b", "a"]
            );
            assert_eq!(names(at(0.0, 10, None)).await.len(), 5);
            assert!(names(at(1.5, 10, None)).await.is_empty());
            // Filtered before the limit: a page of two is two matches.
            let page = list(&s, &at(0.7, 2, None)).await.unwrap();
            assert_eq!(page.len(), 2);
            assert_eq!(names(at(0.7, 2, Some(page[1].id))).await, ["b", "a"]);
            let glassnode = SignalFilter {
                category: Some(GLASSNODE),
                limit: 10,
                ..Default::default()
            };
            assert_eq!(names(glassnode).await, ["glassnode.mvrv"]);
        }
    }
}
