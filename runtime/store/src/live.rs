//! What the live engine keeps between runs: per-symbol stream cursors, instance snapshots, the
//! version an instance runs, and the record of hot swaps.

use std::collections::HashMap;

use sqlx::FromRow;

use super::{Store, StoreResult, now, with_pool};
use qtm_core::model::Bar;

/// How far the live engine got in one symbol's stream.
#[derive(Debug, Clone, Copy, PartialEq, FromRow)]
pub struct Cursor {
    /// Sequence number of the last bar whose effects are stored.
    pub seq: i64,
    /// Its time (unix seconds) and close.
    pub ts: i64,
    pub close: f64,
}

/// Every stored cursor, by symbol.
pub async fn cursors(store: &Store) -> StoreResult<HashMap<String, Cursor>> {
    let rows: Vec<(String, i64, i64, f64)> = with_pool!(store, p => sqlx::query_as("SELECT symbol, seq, ts, close FROM live_cursors")
            .fetch_all(p)
            .await)?;
    Ok(rows
        .into_iter()
        .map(|(s, seq, ts, close)| (s, Cursor { seq, ts, close }))
        .collect())
}

/// Insert or move `n` cursors in one statement (symbol, seq, ts, close, updated_at for each).
/// The recorder writes cursors through [`super::writer::Writer::save_cursors`], in the
/// transaction of the bars' effects.
pub(crate) fn upsert_cursors_sql(n: usize) -> String {
    let rows: Vec<String> = (0..n)
        .map(|i| {
            let k = i * 5;
            format!(
                "(${}, ${}, ${}, ${}, ${})",
                k + 1,
                k + 2,
                k + 3,
                k + 4,
                k + 5
            )
        })
        .collect();
    let rows = rows.join(", ");
    format!(
        "INSERT INTO live_cursors (symbol, seq, ts, close, updated_at) VALUES {rows} ON CONFLICT (symbol) DO UPDATE SET seq = excluded.seq, ts = excluded.ts, close = excluded.close, updated_at = excluded.updated_at"
    )
}

/// Bars of `symbol` after `after` (unix seconds; all when `None`), oldest first.
pub async fn history_after(
    store: &Store,
    symbol: &str,
    after: Option<i64>,
) -> StoreResult<Vec<Bar>> {
    let rows: Vec<(i64, f64, f64, f64, f64, f64)> = with_pool!(store, p => sqlx::query_as(
        "SELECT ts, open, high, low, close, volume FROM price_history WHERE symbol = $1 AND ts > $2 ORDER BY ts",
    )
    .bind(symbol)
    .bind(after.unwrap_or(i64::MIN))
    .fetch_all(p)
    .await)?;
    Ok(rows
        .into_iter()
        .map(|(ts, open, high, low, close, volume)| Bar {
            ts,
            open,
            high,
            low,
            close,
            volume,
        })
        .collect())
}

/// A strategy's latest snapshot, if it has one.
pub async fn snapshot(store: &Store, strategy_id: i64) -> StoreResult<Option<Vec<u8>>> {
    Ok(
        with_pool!(store, p => sqlx::query_scalar::<_, Option<Vec<u8>>>(
        "SELECT last_snapshot FROM strategy_instances WHERE strategy_id = $1 ORDER BY id LIMIT 1",
    )
    .bind(strategy_id)
    .fetch_optional(p)
    .await)?
        .flatten(),
    )
}

/// Per symbol, the sequence number of the last bar a strategy's latest snapshot saw (`None`
/// for snapshots stored without them).
pub async fn snapshot_seqs(
    store: &Store,
    strategy_id: i64,
) -> StoreResult<Option<HashMap<String, u64>>> {
    let text = with_pool!(store, p => sqlx::query_scalar::<_, Option<String>>(
        "SELECT snapshot_seqs FROM strategy_instances WHERE strategy_id = $1 ORDER BY id LIMIT 1",
    )
    .bind(strategy_id)
    .fetch_optional(p)
    .await)?
    .flatten();
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

/// The live engine's journal: per symbol, the bars with their sequence numbers, oldest
/// first, and the id of the newest entry.
pub async fn journal(
    store: &Store,
) -> StoreResult<(Option<i64>, HashMap<String, Vec<(u64, Bar)>>)> {
    let rows: Vec<(i64, Vec<u8>)> = with_pool!(store, p => sqlx::query_as("SELECT id, bars FROM live_journal ORDER BY id")
        .fetch_all(p)
        .await)?;
    let mut out: HashMap<String, Vec<(u64, Bar)>> = HashMap::new();
    let newest = rows.last().map(|(id, _)| *id);
    for (id, blob) in rows {
        let bars = decode_bars(&blob).map_err(|e| super::StoreError::Corrupt {
            table: "live_journal",
            message: format!("entry {id}: {e}"),
        })?;
        for (s, seq, b) in bars {
            out.entry(s).or_default().push((seq, b));
        }
    }
    Ok((newest, out))
}

/// Bars packed for the journal: per bar, the symbol's length (u16) and UTF-8 bytes, the
/// sequence number (u64), the time (i64) and open, high, low, close, volume (f64), all
/// little-endian.
pub(crate) fn encode_bars(bars: &[(String, u64, Bar)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bars.len() * 64);
    for (s, seq, b) in bars {
        out.extend_from_slice(&(s.len().min(u16::MAX as usize) as u16).to_le_bytes());
        out.extend_from_slice(&s.as_bytes()[..s.len().min(u16::MAX as usize)]);
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&b.ts.to_le_bytes());
        for v in [b.open, b.high, b.low, b.close, b.volume] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// The bars of [`encode_bars`]; an error says where the bytes stop making sense.
pub(crate) fn decode_bars(bytes: &[u8]) -> Result<Vec<(String, u64, Bar)>, String> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let err = |what: &str| format!("truncated {what} at byte {pos} of {}", bytes.len());
        let n = u16::from_le_bytes(
            rest.get(..2)
                .ok_or_else(|| err("symbol length"))?
                .try_into()
                .expect("2 bytes"),
        ) as usize;
        let symbol = rest.get(2..2 + n).ok_or_else(|| err("symbol"))?;
        let symbol = std::str::from_utf8(symbol)
            .map_err(|e| format!("symbol at byte {pos}: {e}"))?
            .to_string();
        let fixed = rest.get(2 + n..2 + n + 56).ok_or_else(|| err("bar"))?;
        let w = |k: usize| -> [u8; 8] { fixed[k * 8..k * 8 + 8].try_into().expect("8 bytes") };
        let f = |k: usize| f64::from_le_bytes(w(k));
        out.push((
            symbol,
            u64::from_le_bytes(w(0)),
            Bar {
                ts: i64::from_le_bytes(w(1)),
                open: f(2),
                high: f(3),
                low: f(4),
                close: f(5),
                volume: f(6),
            },
        ));
        pos += 2 + n + 56;
    }
    Ok(out)
}

/// Point a strategy's default instance at another of its versions (swap, rollback).
pub async fn set_version(store: &Store, strategy_id: i64, version_id: i64) -> StoreResult<()> {
    with_pool!(store, p => sqlx::query(
        "UPDATE strategy_instances SET version_id = $1, updated_at = $2 WHERE strategy_id = $3",
    )
    .bind(version_id)
    .bind(now())
    .bind(strategy_id)
    .execute(p)
    .await.map(|r| r.rows_affected()))?;
    store.catalog_changed();
    Ok(())
}

/// One hot swap as it is recorded.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct SwapRecord {
    pub id: i64,
    pub strategy_id: i64,
    /// Version numbers (not ids).
    pub from_version: Option<i64>,
    pub to_version: i64,
    /// `ok` or `failed`.
    pub outcome: String,
    pub reason: Option<String>,
    /// How long the engine stood still for the swap, microseconds.
    pub pause_us: Option<f64>,
    pub user_id: Option<i64>,
    pub created_at: i64,
}

/// The fields of a new [`SwapRecord`].
#[derive(Debug, Clone)]
pub struct NewSwap<'a> {
    pub strategy_id: i64,
    pub from_version: Option<i64>,
    pub to_version: i64,
    pub outcome: &'a str,
    pub reason: Option<&'a str>,
    pub pause_us: Option<f64>,
    pub user_id: Option<i64>,
}

/// Record a swap attempt.
pub async fn record_swap(store: &Store, s: &NewSwap<'_>) -> StoreResult<SwapRecord> {
    Ok(with_pool!(store, p => sqlx::query_as::<_, SwapRecord>(
        "INSERT INTO instance_swaps (strategy_id, from_version, to_version, outcome, reason, pause_us, user_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id, strategy_id, from_version, to_version, outcome, reason, pause_us, user_id, created_at",
    )
    .bind(s.strategy_id)
    .bind(s.from_version)
    .bind(s.to_version)
    .bind(s.outcome)
    .bind(s.reason)
    .bind(s.pause_us)
    .bind(s.user_id)
    .bind(now())
    .fetch_one(p)
    .await)?)
}

/// A strategy's swaps, oldest first.
pub async fn swaps(store: &Store, strategy_id: i64) -> StoreResult<Vec<SwapRecord>> {
    Ok(with_pool!(store, p => sqlx::query_as::<_, SwapRecord>(
        "SELECT id, strategy_id, from_version, to_version, outcome, reason, pause_us, user_id, created_at FROM instance_swaps WHERE strategy_id = $1 ORDER BY id",
    )
    .bind(strategy_id)
    .fetch_all(p)
    .await)?)
}

/// Strategies whose default instance is enabled (the live engine resumes them on start).
pub async fn enabled_strategies(store: &Store) -> StoreResult<Vec<i64>> {
    Ok(with_pool!(store, p => sqlx::query_scalar(
        "SELECT DISTINCT strategy_id FROM strategy_instances WHERE status = 'enabled' ORDER BY strategy_id",
    )
    .fetch_all(p)
    .await)?)
}

/// Every symbol with stored bars.
pub async fn symbols(store: &Store) -> StoreResult<Vec<String>> {
    Ok(
        with_pool!(store, p => sqlx::query_scalar("SELECT symbol FROM assets ORDER BY symbol")
            .fetch_all(p)
            .await)?,
    )
}

/// The strategy a stored instance belongs to.
pub async fn strategy_of_instance(store: &Store, instance_id: i64) -> StoreResult<i64> {
    with_pool!(store, p => sqlx::query_scalar("SELECT strategy_id FROM strategy_instances WHERE id = $1")
        .bind(instance_id)
        .fetch_optional(p)
        .await)?
        .ok_or_else(|| super::StoreError::NotFound(format!("strategy instance {instance_id}")))
}

#[cfg(test)]
mod journal_tests {
    use super::*;

    fn bar(ts: i64) -> Bar {
        Bar {
            ts,
            open: 1.5,
            high: 2.0,
            low: 1.0,
            close: 1.75,
            volume: 1e6,
        }
    }

    #[test]
    fn journal_entries_round_trip_and_truncation_is_named() {
        let bars = vec![
            ("GOOG".to_string(), 7, bar(100)),
            ("BRK.B".to_string(), 1, bar(-5)),
        ];
        let bytes = encode_bars(&bars);
        assert_eq!(bytes.len(), 2 * (2 + 56) + 4 + 5);
        assert_eq!(decode_bars(&bytes).unwrap(), bars);
        let e = decode_bars(&bytes[..bytes.len() - 3]).unwrap_err();
        assert_eq!(e, "truncated bar at byte 62 of 122");
        assert!(decode_bars(&[]).unwrap().is_empty());
    }
}
