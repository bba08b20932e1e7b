//! Assets and their price history: CSV import, the per-asset summary the market routes read, and
//! bar queries with resampling.
//!
//! An import is all-or-nothing: the whole file goes in one transaction, so a bad row (or a
//! crash) part way through leaves the store exactly as it was. Rows are upserted on
//! `(symbol, ts)`, so importing the same file again changes nothing and importing a newer file
//! extends the series. The summary columns of `assets` (last price, 24 h change, volume) are
//! recomputed inside the same transaction, which keeps the read side to one small table.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use super::{Conn, Store, StoreError, StoreResult, now, with_conn, with_pool};
use qtm_core::model::Bar;
use qtm_market::{BarReader, DataError, IntervalEstimator};

/// What kind of instrument an asset is (groups of the heatmap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AssetClass {
    Equity,
    Fx,
    Crypto,
    Index,
}

impl AssetClass {
    /// Every class, in display order.
    pub const ALL: [AssetClass; 4] = [
        AssetClass::Equity,
        AssetClass::Fx,
        AssetClass::Crypto,
        AssetClass::Index,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AssetClass::Equity => "equity",
            AssetClass::Fx => "fx",
            AssetClass::Crypto => "crypto",
            AssetClass::Index => "index",
        }
    }

    /// A guess from the symbol alone, for imports that do not say: pairs of two currency codes
    /// are fx, pairs of a coin and a currency are crypto, everything else is equity.
    pub fn guess(symbol: &str) -> AssetClass {
        const FIAT: [&str; 10] = [
            "USD", "EUR", "GBP", "JPY", "CHF", "AUD", "CAD", "NZD", "SEK", "NOK",
        ];
        const COINS: [&str; 6] = ["BTC", "ETH", "SOL", "XRP", "LTC", "DOGE"];
        let s = symbol.to_ascii_uppercase();
        if COINS.iter().any(|c| s.starts_with(c))
            && (s.ends_with("USDT") || FIAT.iter().any(|f| s.ends_with(f)))
        {
            return AssetClass::Crypto;
        }
        if s.len() == 6 && FIAT.contains(&&s[..3]) && FIAT.contains(&&s[3..]) {
            return AssetClass::Fx;
        }
        AssetClass::Equity
    }
}

impl std::fmt::Display for AssetClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AssetClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        AssetClass::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown asset class {s:?}: use equity, fx, crypto or index"))
    }
}

/// One asset with its summary (all price fields are `None` until bars are imported).
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct Asset {
    pub symbol: String,
    pub name: String,
    /// `equity`, `fx`, `crypto` or `index`.
    pub asset_class: String,
    pub currency: String,
    /// Where the bars came from (`csv:<file name>` for imports).
    pub source: String,
    /// Bar interval in seconds (the most common gap between bars).
    pub interval_s: Option<i64>,
    /// Open time of the first bar, unix seconds.
    pub first_ts: Option<i64>,
    /// Open time of the last bar, unix seconds.
    pub last_ts: Option<i64>,
    /// Number of bars stored.
    pub bars: i64,
    /// Close of the last bar.
    pub last_price: Option<f64>,
    /// Time of the reference bar of the change: the newest bar before the UTC calendar day of
    /// the last price (the previous day's close; the previous bar for daily data); without
    /// one, the first bar of that day.
    pub ref_ts: Option<i64>,
    /// Close of the reference bar (its open when it is the first bar of the day).
    pub ref_price: Option<f64>,
    /// `100 × (last_price / ref_price − 1)`: the change since the previous day's close.
    pub change_pct: Option<f64>,
    /// Volume of the bars after `last_ts` − 24 h (the last bar for daily data).
    pub volume_24h: Option<f64>,
    /// Highest high over the same bars.
    pub high_24h: Option<f64>,
    /// Lowest low over the same bars.
    pub low_24h: Option<f64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const ASSET_COLUMNS: &str = "symbol, name, asset_class, currency, source, interval_s, first_ts, \
    last_ts, bars, last_close AS last_price, ref_ts, ref_close AS ref_price, change_pct, \
    volume_24h, high_24h, low_24h, created_at, updated_at";

/// Every asset, by symbol in byte order (the order the API pages them in on every database,
/// whatever its collation).
pub async fn list_assets(store: &Store) -> StoreResult<Vec<Asset>> {
    static SQL: OnceLock<Arc<str>> = OnceLock::new();
    let sql =
        SQL.get_or_init(|| format!("SELECT {ASSET_COLUMNS} FROM assets ORDER BY symbol").into());
    let mut assets = with_pool!(store, p => sqlx::query_as::<_, Asset>(sqlx::AssertSqlSafe(sql.clone()))
        .fetch_all(p)
        .await)?;
    assets.sort_by(|a, b| a.symbol.cmp(&b.symbol));
    Ok(assets)
}

/// How long [`list_assets_cached`] may serve a list without reading the table again. Imports
/// made through this process invalidate it at once; an import by another process (`qtm data
/// import` next to a running server) shows within this time.
pub const ASSETS_CACHE_TTL: Duration = Duration::from_secs(1);

/// The cached list of one database, and how many imports it has seen.
#[derive(Default)]
struct CachedAssets {
    /// Bumped after every committed import, so a list read before it is not kept.
    generation: u64,
    list: Option<(Instant, Arc<Vec<Asset>>)>,
}

fn assets_cache() -> &'static RwLock<HashMap<String, CachedAssets>> {
    static CACHE: OnceLock<RwLock<HashMap<String, CachedAssets>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

pub(super) fn invalidate_assets(store: &Store) {
    let mut cache = assets_cache().write().unwrap_or_else(|p| p.into_inner());
    let entry = cache.entry(store.url().to_string()).or_default();
    entry.generation += 1;
    entry.list = None;
}

/// [`list_assets`] through a per-database cache. The market routes are read far more often than
/// assets change (only imports change them), and the query round trip was most of the cost of
/// `GET /api/market/assets`. In-memory databases are never cached: one URL names many of them.
pub async fn list_assets_cached(store: &Store) -> StoreResult<Arc<Vec<Asset>>> {
    if store.url().contains(":memory:") {
        return Ok(Arc::new(list_assets(store).await?));
    }
    let generation = {
        let cache = assets_cache().read().unwrap_or_else(|p| p.into_inner());
        match cache.get(store.url()) {
            Some(CachedAssets {
                list: Some((read_at, list)),
                ..
            }) if read_at.elapsed() < ASSETS_CACHE_TTL => return Ok(list.clone()),
            Some(c) => c.generation,
            None => 0,
        }
    };
    let read_at = Instant::now();
    let assets = Arc::new(list_assets(store).await?);
    let mut cache = assets_cache().write().unwrap_or_else(|p| p.into_inner());
    let entry = cache.entry(store.url().to_string()).or_default();
    // An import committed while this read ran: its result may predate it, so do not keep it.
    if entry.generation == generation {
        entry.list = Some((read_at, assets.clone()));
    }
    Ok(assets)
}

/// The asset `symbol` (exact, as stored: symbols are uppercase).
pub async fn asset(store: &Store, symbol: &str) -> StoreResult<Asset> {
    static SQL: OnceLock<Arc<str>> = OnceLock::new();
    let sql =
        SQL.get_or_init(|| format!("SELECT {ASSET_COLUMNS} FROM assets WHERE symbol = $1").into());
    with_pool!(store, p => sqlx::query_as::<_, Asset>(sqlx::AssertSqlSafe(sql.clone()))
        .bind(symbol)
        .fetch_optional(p)
        .await)?
    .ok_or_else(|| StoreError::NotFound(format!("symbol {symbol:?}")))
}

/// Check and normalise a symbol: 1 to 32 characters from letters, digits and `. _ - ^ = :`,
/// uppercased (so `goog` and `GOOG` are one asset). No `/`, since the symbol is a URL path
/// segment.
pub fn normalize_symbol(symbol: &str) -> Result<String, String> {
    let s = symbol.trim();
    if s.is_empty() || s.len() > 32 {
        return Err(format!("symbol {symbol:?} must have 1 to 32 characters"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-^=:".contains(*c)))
    {
        return Err(format!(
            "symbol {symbol:?} contains {c:?}; use letters, digits and . _ - ^ = :"
        ));
    }
    Ok(s.to_ascii_uppercase())
}

/// How to file an import. `None` fields keep the asset's current value, or take a default for a
/// new asset (name = symbol, class guessed from the symbol, currency USD).
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub symbol: String,
    pub name: Option<String>,
    pub asset_class: Option<AssetClass>,
    pub currency: Option<String>,
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    /// Rows read from the file (all written).
    pub rows: u64,
    /// Bars the symbol did not have before (the rest replaced bars with the same time).
    pub new_bars: u64,
    /// The asset after the import.
    pub asset: Asset,
    /// Wall time of the import.
    pub elapsed: Duration,
}

/// Why an import failed. In every case nothing of the import was written.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file is unreadable or has a bad row (the message names the file and line).
    #[error("{0}; nothing was imported")]
    Data(DataError),
    /// An option is invalid.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ImportError {
    fn from(e: sqlx::Error) -> Self {
        ImportError::Store(e.into())
    }
}

/// Bars handed from the reading thread to the writer per message.
const CHUNK_BARS: usize = 8192;
/// Rows per INSERT statement: one statement round trip per row would dominate an import; 7
/// parameters a row keeps this well under SQLite's and PostgreSQL's parameter limits.
const ROWS_PER_INSERT: usize = 256;
const SECONDS_PER_DAY: i64 = 86_400;

fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO price_history (symbol, ts, open, high, low, close, volume) VALUES ",
    );
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        let k = i * 7;
        sql.push_str(&format!(
            "(${},${},${},${},${},${},${})",
            k + 1,
            k + 2,
            k + 3,
            k + 4,
            k + 5,
            k + 6,
            k + 7
        ));
    }
    sql.push_str(
        " ON CONFLICT (symbol, ts) DO UPDATE SET open = excluded.open, high = excluded.high, \
         low = excluded.low, close = excluded.close, volume = excluded.volume",
    );
    sql
}

fn check_options(opts: &ImportOptions) -> Result<ImportOptions, ImportError> {
    let invalid = |field, message| ImportError::Invalid { field, message };
    let symbol = normalize_symbol(&opts.symbol).map_err(|m| invalid("symbol", m))?;
    let name = match &opts.name {
        Some(n) if n.trim().is_empty() || n.chars().count() > 100 => {
            return Err(invalid("name", "name must have 1 to 100 characters".into()));
        }
        Some(n) => Some(n.trim().to_string()),
        None => None,
    };
    let currency = match &opts.currency {
        Some(c) => {
            let c = c.trim().to_ascii_uppercase();
            if !(3..=5).contains(&c.len()) || !c.chars().all(|ch| ch.is_ascii_alphanumeric()) {
                return Err(invalid(
                    "currency",
                    format!("currency {c:?} must be a 3 to 5 letter code such as USD"),
                ));
            }
            Some(c)
        }
        None => None,
    };
    Ok(ImportOptions {
        symbol,
        name,
        asset_class: opts.asset_class,
        currency,
    })
}

/// Import the bar CSV at `path` into `opts.symbol` (see the module docs for the guarantees).
///
/// The file is parsed on a blocking thread while this task writes, so parsing and SQLite work
/// overlap. The write lock is held for the whole import (about a second per million rows); other
/// writers wait on the store's busy timeout meanwhile.
pub async fn import_csv(
    store: &Store,
    path: &Path,
    opts: &ImportOptions,
) -> Result<ImportSummary, ImportError> {
    let reader = BarReader::open(path).map_err(ImportError::Data)?;
    import_bars(store, reader, opts).await
}

/// [`import_csv`] from any reader of bar CSV (the bundled data embedded in the binary, an
/// upload); the reader's name stands for the file in the summary and in errors.
pub async fn import_bars<R: std::io::BufRead + Send + 'static>(
    store: &Store,
    reader: BarReader<R>,
    opts: &ImportOptions,
) -> Result<ImportSummary, ImportError> {
    let started = Instant::now();
    let opts = check_options(opts)?;
    let path = reader.path().to_path_buf();
    let path = path.as_path();
    let (tx_chunks, mut rx_chunks) = tokio::sync::mpsc::channel::<Result<Vec<Bar>, DataError>>(4);
    let parser = tokio::task::spawn_blocking(move || {
        let mut chunk = Vec::with_capacity(CHUNK_BARS);
        for bar in reader {
            match bar {
                Ok(b) => {
                    chunk.push(b);
                    if chunk.len() == CHUNK_BARS {
                        let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_BARS));
                        if tx_chunks.blocking_send(Ok(full)).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx_chunks.blocking_send(Err(e));
                    return;
                }
            }
        }
        if !chunk.is_empty() {
            let _ = tx_chunks.blocking_send(Ok(chunk));
        }
    });

    let full_sql: Arc<str> = {
        static SQL: OnceLock<Arc<str>> = OnceLock::new();
        SQL.get_or_init(|| insert_sql(ROWS_PER_INSERT).into())
            .clone()
    };
    let symbol = opts.symbol.as_str();
    // SQLite: take the write lock at once. A deferred transaction reads first and upgrades
    // later, and the upgrade fails at once (not after the busy timeout) when another
    // connection, e.g. the live recorder, wrote in between.
    let begin = match store.backend() {
        super::Backend::Sqlite => "BEGIN IMMEDIATE",
        super::Backend::Postgres => "BEGIN",
    };
    let (rows, bars_before, bars_after) = with_pool!(store, p => {
    let mut tx = p.begin_with(begin).await?;
    let bars_before = upsert_asset((&mut *tx).into(), &opts, path).await?;
    let mut rows = 0u64;
    let mut intervals = IntervalEstimator::new();
    while let Some(chunk) = rx_chunks.recv().await {
        // A bad row drops `tx` on return, which rolls back everything written so far.
        let chunk = chunk.map_err(ImportError::Data)?;
        for part in chunk.chunks(ROWS_PER_INSERT) {
            let sql = if part.len() == ROWS_PER_INSERT {
                sqlx::AssertSqlSafe(full_sql.clone())
            } else {
                sqlx::AssertSqlSafe(Arc::from(insert_sql(part.len())))
            };
            let mut q = sqlx::query(sql);
            for b in part {
                intervals.push(b.ts);
                q = q
                    .bind(symbol)
                    .bind(b.ts)
                    .bind(b.open)
                    .bind(b.high)
                    .bind(b.low)
                    .bind(b.close)
                    .bind(b.volume);
            }
            q.execute(&mut *tx).await?;
        }
        rows += chunk.len() as u64;
    }
    // The channel closes only when the parser is done (or gave up after an error it sent).
    parser
        .await
        .map_err(|e| StoreError::Open(format!("CSV reader thread failed: {e}")))?;
    refresh_summary((&mut *tx).into(), symbol, intervals.estimate()).await?;
    let bars_after: i64 = sqlx::query_scalar("SELECT bars FROM assets WHERE symbol = $1")
        .bind(symbol)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    (rows, bars_before, bars_after)
    });
    invalidate_assets(store);
    Ok(ImportSummary {
        rows,
        new_bars: (bars_after - bars_before).max(0) as u64,
        asset: asset(store, symbol).await?,
        elapsed: started.elapsed(),
    })
}

/// Create the asset or update the fields the import names; returns its bar count before.
async fn upsert_asset(conn: Conn<'_>, opts: &ImportOptions, path: &Path) -> StoreResult<i64> {
    let t = now();
    let file = path.file_name().unwrap_or(path.as_os_str());
    let source = format!("csv:{}", file.to_string_lossy());
    with_conn!(conn, conn => {
    let existing: Option<i64> = sqlx::query_scalar("SELECT bars FROM assets WHERE symbol = $1")
        .bind(&opts.symbol)
        .fetch_optional(&mut *conn)
        .await?;
    match existing {
        Some(bars) => {
            sqlx::query(
                "UPDATE assets SET name = COALESCE($1, name), asset_class = COALESCE($2, asset_class), \
                 currency = COALESCE($3, currency), source = $4, updated_at = $5 WHERE symbol = $6",
            )
            .bind(opts.name.as_deref())
            .bind(opts.asset_class.map(AssetClass::as_str))
            .bind(opts.currency.as_deref())
            .bind(&source)
            .bind(t)
            .bind(&opts.symbol)
            .execute(&mut *conn)
            .await?;
            Ok(bars)
        }
        None => {
            sqlx::query(
                "INSERT INTO assets (symbol, name, asset_class, currency, source, bars, created_at, \
                 updated_at) VALUES ($1, $2, $3, $4, $5, 0, $6, $7)",
            )
            .bind(&opts.symbol)
            .bind(opts.name.as_deref().unwrap_or(&opts.symbol))
            .bind(
                opts.asset_class
                    .unwrap_or_else(|| AssetClass::guess(&opts.symbol))
                    .as_str(),
            )
            .bind(opts.currency.as_deref().unwrap_or("USD"))
            .bind(&source)
            .bind(t)
            .bind(t)
            .execute(&mut *conn)
            .await?;
            Ok(0)
        }
    }
    })
}

/// Recompute the summary columns of `symbol` from its bars; every query here is a range on the
/// `(symbol, ts)` key, so this costs a few index lookups plus one day of bars.
pub(super) async fn refresh_summary(
    conn: Conn<'_>,
    symbol: &str,
    interval_s: Option<i64>,
) -> StoreResult<()> {
    with_conn!(conn, conn => {
    let (first_ts, last_ts, bars): (Option<i64>, Option<i64>, i64) =
        sqlx::query_as("SELECT MIN(ts), MAX(ts), COUNT(*) FROM price_history WHERE symbol = $1")
            .bind(symbol)
            .fetch_one(&mut *conn)
            .await?;
    let mut last_close = None;
    let mut reference: Option<(i64, f64)> = None;
    let mut window: (Option<f64>, Option<f64>, Option<f64>) = (None, None, None);
    if let Some(last) = last_ts {
        last_close = sqlx::query_scalar::<_, f64>(
            "SELECT close FROM price_history WHERE symbol = $1 AND ts = $2",
        )
        .bind(symbol)
        .bind(last)
        .fetch_optional(&mut *conn)
        .await?;
        let day_before = last - SECONDS_PER_DAY;
        let today = qtm_core::model::day_start(last);
        reference = sqlx::query_as(
            "SELECT ts, close FROM price_history WHERE symbol = $1 AND ts < $2 ORDER BY ts DESC LIMIT 1",
        )
        .bind(symbol)
        .bind(today)
        .fetch_optional(&mut *conn)
        .await?;
        if reference.is_none() {
            // Nothing before the last bar's day: the change since that day's first open.
            reference = sqlx::query_as(
                "SELECT ts, open FROM price_history WHERE symbol = $1 AND ts >= $2 ORDER BY ts LIMIT 1",
            )
            .bind(symbol)
            .bind(today)
            .fetch_optional(&mut *conn)
            .await?;
        }
        window = sqlx::query_as(
            "SELECT SUM(volume), MAX(high), MIN(low) FROM price_history WHERE symbol = $1 AND ts > $2",
        )
        .bind(symbol)
        .bind(day_before)
        .fetch_one(&mut *conn)
        .await?;
    }
    let change_pct = match (last_close, reference) {
        (Some(last), Some((_, r))) if r != 0.0 => Some(100.0 * (last / r - 1.0)),
        _ => None,
    };
    sqlx::query(
        "UPDATE assets SET first_ts = $1, last_ts = $2, bars = $3, interval_s = COALESCE($4, interval_s), \
         last_close = $5, ref_ts = $6, ref_close = $7, change_pct = $8, volume_24h = $9, high_24h = $10, \
         low_24h = $11, updated_at = $12 WHERE symbol = $13",
    )
    .bind(first_ts)
    .bind(last_ts)
    .bind(bars)
    .bind(interval_s)
    .bind(last_close)
    .bind(reference.map(|r| r.0))
    .bind(reference.map(|r| r.1))
    .bind(change_pct)
    .bind(window.0)
    .bind(window.1)
    .bind(window.2)
    .bind(now())
    .bind(symbol)
    .execute(&mut *conn)
    .await?;
    Ok(())
    })
}

/// Most bars one query returns.
pub const MAX_BARS: usize = 10_000;

/// A bar query: `[from, to]` inclusive (unix seconds; open ends when `None`), optionally
/// resampled into buckets of `interval_s` seconds, at most `limit` bars.
#[derive(Debug, Clone, Copy)]
pub struct BarQuery {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub interval_s: Option<i64>,
    pub limit: usize,
}

/// A page of bars, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct BarPage {
    pub bars: Vec<Bar>,
    /// More bars follow in the range; ask again with `from = next_from`.
    pub truncated: bool,
    pub next_from: Option<i64>,
}

/// Start of the bucket of `ts`. Buckets are aligned to the Unix epoch (UTC), except that whole
/// weeks start on Monday 00:00 UTC rather than on the epoch's Thursday.
pub fn bucket_start(ts: i64, interval_s: i64) -> i64 {
    ts - (ts - bucket_origin(interval_s)).rem_euclid(interval_s)
}

/// A time at which a bucket of `interval_s` starts.
fn bucket_origin(interval_s: i64) -> i64 {
    const FIRST_MONDAY: i64 = 4 * SECONDS_PER_DAY;
    if interval_s % (7 * SECONDS_PER_DAY) == 0 {
        FIRST_MONDAY
    } else {
        0
    }
}

/// The bars of `symbol` for `q` (the symbol must exist; see [`asset`]).
///
/// Resampling aggregates in SQL (open of the first bar, highest high, lowest low, close of the
/// last bar, summed volume; the bucket's `ts` is its start, see [`bucket_start`]), so only the
/// page's buckets leave SQLite, not every bar of the range. Only bars inside `[from, to]` count,
/// so the first and last bucket can be partial.
pub async fn bars(store: &Store, symbol: &str, q: BarQuery) -> StoreResult<BarPage> {
    let limit = q.limit.clamp(1, MAX_BARS);
    let from = q.from.unwrap_or(i64::MIN);
    let to = q.to.unwrap_or(i64::MAX);
    let mut page = BarPage {
        bars: Vec::with_capacity(limit.min(1024)),
        truncated: false,
        next_from: None,
    };
    match q.interval_s {
        None => {
            let mut rows = with_pool!(store, p => sqlx::query_as::<_, (i64, f64, f64, f64, f64, f64)>(
                "SELECT ts, open, high, low, close, volume FROM price_history \
                 WHERE symbol = $1 AND ts >= $2 AND ts <= $3 ORDER BY ts LIMIT $4",
            )
            .bind(symbol)
            .bind(from)
            .bind(to)
            .bind(limit as i64 + 1)
            .fetch_all(p)
            .await)?;
            if rows.len() > limit {
                page.truncated = true;
                page.next_from = Some(rows[limit].0);
                rows.truncate(limit);
            }
            page.bars = rows.into_iter().map(bar_of).collect();
        }
        Some(interval) => {
            // `((x % i) + i) % i` is the floor remainder SQLite's truncating `%` lacks, so
            // bucket starts match [`bucket_start`] for times before the origin too.
            let origin = bucket_origin(interval);
            let mut rows = with_pool!(store, p => sqlx::query_as::<_, (i64, f64, f64, f64, f64, f64)>(
                "WITH b AS ( \
                   SELECT ts - (((ts - $1) % $2) + $3) % $4 AS start, MIN(ts) AS first_ts, \
                          MAX(ts) AS last_ts, MAX(high) AS high, MIN(low) AS low, \
                          SUM(volume) AS volume \
                   FROM price_history WHERE symbol = $5 AND ts >= $6 AND ts <= $7 \
                   GROUP BY start ORDER BY start LIMIT $8) \
                 SELECT b.start, o.open, b.high, b.low, c.close, b.volume FROM b \
                 JOIN price_history o ON o.symbol = $9 AND o.ts = b.first_ts \
                 JOIN price_history c ON c.symbol = $10 AND c.ts = b.last_ts \
                 ORDER BY b.start",
            )
            .bind(origin)
            .bind(interval)
            .bind(interval)
            .bind(interval)
            .bind(symbol)
            .bind(from)
            .bind(to)
            .bind(limit as i64 + 1)
            .bind(symbol)
            .bind(symbol)
            .fetch_all(p)
            .await)?;
            if rows.len() > limit {
                page.truncated = true;
                page.next_from = Some(rows[limit].0);
                rows.truncate(limit);
            }
            page.bars = rows.into_iter().map(bar_of).collect();
        }
    }
    Ok(page)
}

fn bar_of((ts, open, high, low, close, volume): (i64, f64, f64, f64, f64, f64)) -> Bar {
    Bar {
        ts,
        open,
        high,
        low,
        close,
        volume,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qtm_test_support::{bundled, fixture, peer_file_or_skip};

    fn opts(symbol: &str) -> ImportOptions {
        ImportOptions {
            symbol: symbol.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn import_summarises_and_reimport_changes_nothing() {
        let Some(path) = peer_file_or_skip("goog_1d.csv") else {
            return;
        };
        for s in crate::test_stores().await {
            let all = qtm_market::load_bars(&path).unwrap();
            let first = import_csv(&s, &path, &opts("goog")).await.unwrap();
            assert_eq!(first.rows, all.len() as u64);
            assert_eq!(first.new_bars, all.len() as u64);
            let a = &first.asset;
            assert_eq!(a.symbol, "GOOG");
            assert_eq!(
                (a.asset_class.as_str(), a.currency.as_str()),
                ("equity", "USD")
            );
            assert_eq!(a.source, "csv:goog_1d.csv");
            assert_eq!(a.bars, all.len() as i64);
            assert_eq!(a.interval_s, Some(86_400));
            let (last, prev) = (all[all.len() - 1], all[all.len() - 2]);
            assert_eq!((a.first_ts, a.last_ts), (Some(all[0].ts), Some(last.ts)));
            assert_eq!(a.last_price, Some(last.close));
            assert_eq!((a.ref_ts, a.ref_price), (Some(prev.ts), Some(prev.close)));
            assert_eq!(a.change_pct, Some(100.0 * (last.close / prev.close - 1.0)));
            assert_eq!(a.volume_24h, Some(last.volume));

            let again = import_csv(&s, &path, &opts("GOOG")).await.unwrap();
            assert_eq!((again.rows, again.new_bars), (all.len() as u64, 0));
            assert_eq!(again.asset.bars, a.bars);
            assert_eq!(again.asset.change_pct, a.change_pct);
        }
    }

    #[tokio::test]
    async fn the_migration_recomputes_the_change_as_an_import_does() {
        let s = crate::test_store().await;
        let a = import_csv(&s, &bundled("spy_1m_2011.csv"), &opts("SPY"))
            .await
            .unwrap()
            .asset;
        // The reference is the previous UTC day's last close.
        let last = a.last_ts.unwrap();
        let today = last - last.rem_euclid(SECONDS_PER_DAY);
        assert!(a.ref_ts.unwrap() < today && a.ref_ts.unwrap() >= today - SECONDS_PER_DAY * 4);
        sqlx::query(
            "UPDATE assets SET ref_ts = 1, ref_close = 1, change_pct = 0, last_close = NULL",
        )
        .execute(s.sqlite())
        .await
        .unwrap();
        sqlx::raw_sql(include_str!(
            "../migrations/sqlite/0012_change_since_previous_day.sql"
        ))
        .execute(s.sqlite())
        .await
        .unwrap();
        let again = asset(&s, "SPY").await.unwrap();
        assert_eq!(
            (
                again.last_price,
                again.ref_ts,
                again.ref_price,
                again.change_pct
            ),
            (a.last_price, a.ref_ts, a.ref_price, a.change_pct)
        );
    }

    #[tokio::test]
    async fn a_bad_row_leaves_nothing_behind() {
        for s in crate::test_stores().await {
            let (_dir, path) = fixture(
                "bad_1d.csv",
                "ts,open,high,low,close,volume\n1,10,11,9,10,5\n2,10,11,9,10,5\n3,10,9,11,10,5\n",
            );
            let e = import_csv(&s, &path, &opts("BAD")).await.unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains("bad_1d.csv:4:"), "{msg}");
            assert!(msg.ends_with("nothing was imported"), "{msg}");
            assert!(matches!(
                asset(&s, "BAD").await,
                Err(StoreError::NotFound(_))
            ));
            let n: i64 =
                with_pool!(s, p => sqlx::query_scalar("SELECT COUNT(*) FROM price_history")
            .fetch_one(p)
            .await)
                .unwrap();
            assert_eq!(n, 0);
        }
    }

    #[tokio::test]
    async fn options_are_checked_and_kept_on_reimport() {
        for s in crate::test_stores().await {
            let (_dir, path) = fixture(
                "x.csv",
                "ts,open,high,low,close,volume\n0,10,11,9,10,5\n60,10,12,9,11,7\n",
            );
            let e = import_csv(&s, &path, &opts("a/b")).await.unwrap_err();
            assert!(
                matches!(
                    e,
                    ImportError::Invalid {
                        field: "symbol",
                        ..
                    }
                ),
                "{e}"
            );
            let o = ImportOptions {
                symbol: "eurusd".into(),
                name: Some("Euro / US dollar".into()),
                currency: Some("usd".into()),
                asset_class: None,
            };
            let a = import_csv(&s, &path, &o).await.unwrap().asset;
            assert_eq!(
                (a.asset_class.as_str(), a.name.as_str()),
                ("fx", "Euro / US dollar")
            );
            // Shorter than a day: the change runs from the first open.
            assert_eq!(
                (a.ref_ts, a.ref_price, a.last_price),
                (Some(0), Some(10.0), Some(11.0))
            );
            assert_eq!(a.volume_24h, Some(12.0));
            let a = import_csv(&s, &path, &opts("EURUSD")).await.unwrap().asset;
            assert_eq!(a.name, "Euro / US dollar");
            assert_eq!(AssetClass::guess("BTCUSD"), AssetClass::Crypto);
            assert_eq!(AssetClass::guess("SPY"), AssetClass::Equity);
        }
    }

    #[tokio::test]
    async fn the_cached_list_follows_imports_at_once_and_other_writers_within_the_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&format!("sqlite://{}", dir.path().join("c.db").display()))
            .await
            .unwrap();
        assert!(list_assets_cached(&s).await.unwrap().is_empty());
        import_csv(&s, &bundled("spy_1m_2011.csv"), &opts("SPY"))
            .await
            .unwrap();
        let listed = list_assets_cached(&s).await.unwrap();
        assert_eq!(listed.len(), 1);
        // Another writer (as `qtm data import` in another process would be).
        with_pool!(s, p => sqlx::query("UPDATE assets SET name = 'Alphabet'")
            .execute(p)
            .await.map(|r| r.rows_affected()))
        .unwrap();
        assert_eq!(list_assets_cached(&s).await.unwrap()[0].name, "SPY");
        tokio::time::sleep(ASSETS_CACHE_TTL + Duration::from_millis(50)).await;
        assert_eq!(list_assets_cached(&s).await.unwrap()[0].name, "Alphabet");
    }

    #[tokio::test]
    async fn sql_buckets_match_bucket_start_before_and_after_the_origin() {
        for s in crate::test_stores().await {
            let mut csv = String::from("ts,open,high,low,close,volume\n");
            let times: Vec<i64> = (0..40).map(|i| -10 * 86_400 + i * 43_200 + 7).collect();
            for (i, ts) in times.iter().enumerate() {
                let p = 100.0 + i as f64;
                csv.push_str(&format!("{ts},{p},{},{},{p},{}\n", p + 1.0, p - 1.0, i + 1));
            }
            let (_dir, path) = fixture("neg.csv", &csv);
            import_csv(&s, &path, &opts("NEG")).await.unwrap();
            for interval in [3_600, 86_400, 3 * 86_400, 7 * 86_400] {
                let page = bars(
                    &s,
                    "NEG",
                    BarQuery {
                        from: None,
                        to: None,
                        interval_s: Some(interval),
                        limit: MAX_BARS,
                    },
                )
                .await
                .unwrap();
                let mut want: Vec<Bar> = Vec::new();
                for (i, &ts) in times.iter().enumerate() {
                    let p = 100.0 + i as f64;
                    let start = bucket_start(ts, interval);
                    match want.last_mut() {
                        Some(w) if w.ts == start => {
                            w.high = p + 1.0;
                            w.close = p;
                            w.volume += (i + 1) as f64;
                        }
                        _ => want.push(Bar {
                            ts: start,
                            open: p,
                            high: p + 1.0,
                            low: p - 1.0,
                            close: p,
                            volume: (i + 1) as f64,
                        }),
                    }
                }
                assert_eq!(page.bars, want, "interval {interval}");
            }
        }
    }

    #[test]
    fn buckets_align_to_the_epoch_and_weeks_to_monday() {
        assert_eq!(bucket_start(3599, 3600), 0);
        assert_eq!(bucket_start(-1, 60), -60);
        // 1970-01-05 was a Monday.
        assert_eq!(bucket_start(5 * 86_400, 7 * 86_400), 4 * 86_400);
        assert_eq!(bucket_start(3 * 86_400, 7 * 86_400), -3 * 86_400);
    }
}
