//! The store: every SQL statement of qtm lives under this module, so the schema and the code
//! that reads it change together. SQLite (embedded, WAL mode) by default; the schema keeps to
//! types PostgreSQL shares so it can follow by URL.
//!
//! Each table group has its own file; all functions take `&Store` and return [`StoreError`].

pub mod audit;
pub mod backtests;
pub mod live;
pub mod market;
pub mod modules;
pub mod orders;
pub mod risk;
pub mod settings;
pub mod signals;
pub mod strategies;
pub mod users;
pub mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use thiserror::Error;

/// The pool every store function runs on.
pub type Pool = sqlx::SqlitePool;

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database URL names a backend this build does not include.
    #[error(
        "unsupported database URL {0:?}: use sqlite://path (PostgreSQL follows in a later release)"
    )]
    UnsupportedUrl(String),
    /// Opening the database or applying migrations failed.
    #[error("opening the database: {0}")]
    Open(String),
    /// A row the caller named does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A uniqueness rule was broken (the message names the value).
    #[error("{0}")]
    Conflict(String),
    /// A stored value could not be decoded (a corrupted or hand-edited row).
    #[error("corrupt row in {table}: {message}")]
    Corrupt {
        /// Table of the row.
        table: &'static str,
        /// What was wrong.
        message: String,
    },
    /// Any other database error.
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    /// A database error on the live recorder's connection ([`writer`]).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

impl StoreError {
    /// Whether the error is a unique-constraint violation.
    pub fn is_unique_violation(e: &sqlx::Error) -> bool {
        matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
    }
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// A handle on the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    url: String,
    path: Arc<std::path::PathBuf>,
    catalog: Arc<AtomicU64>,
    /// The directory of a `sqlite::memory:` database, removed with the last handle.
    _temp: Option<Arc<tempfile::TempDir>>,
}

/// How long a statement waits for another connection's write lock before it fails.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

impl Store {
    /// Open (creating if missing) the database at `url` and apply pending migrations.
    ///
    /// `sqlite://path` (or a bare path) opens SQLite in WAL mode with foreign keys on and
    /// `synchronous=NORMAL`, which in WAL mode is durable against process crashes (a committed
    /// transaction survives `kill -9`; only a power cut can lose the newest ones).
    ///
    /// `sqlite::memory:` gives a database that lives as long as the store: a file in a
    /// temporary directory removed with the last handle. A real file (rather than SQLite's
    /// in-memory mode, which is private to one connection) lets the live recorder write
    /// through its own connection ([`writer`]).
    pub async fn open(url: &str) -> StoreResult<Store> {
        let (sqlite_url, temp) = if url.contains(":memory:") {
            let dir = tempfile::Builder::new()
                .prefix("qtm-memory-db")
                .tempdir()
                .map_err(|e| StoreError::Open(format!("{url}: a temporary directory: {e}")))?;
            let u = format!("sqlite://{}", dir.path().join("qtm.db").display());
            (u, Some(Arc::new(dir)))
        } else if url.starts_with("sqlite:") {
            (url.to_string(), None)
        } else if url.contains("://") {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        } else {
            (format!("sqlite://{url}"), None)
        };
        let options = SqliteConnectOptions::from_str(&sqlite_url)
            .map_err(|e| StoreError::Open(format!("{url}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let path = options.get_filename().to_path_buf();
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Open(format!("{url}: {e}")))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Open(format!("migrating {url}: {e}")))?;
        Ok(Store {
            pool,
            url: url.to_string(),
            path: Arc::new(path),
            catalog: Arc::default(),
            _temp: temp,
        })
    }

    /// The database file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The connection pool, for the store's own modules.
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The URL the store was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many writes to the strategy catalog (strategies, versions, instances, finished
    /// backtests) this handle and its clones have committed. Lists built from those tables
    /// are cached against it: a list read when the count was `n` is stale once it is not.
    pub fn catalog_generation(&self) -> u64 {
        self.catalog.load(Ordering::Acquire)
    }

    /// Called after (never before) a catalog write commits, so a reader that saw the old
    /// count cannot keep a list read before the write.
    pub(crate) fn catalog_changed(&self) {
        self.catalog.fetch_add(1, Ordering::AcqRel);
    }

    /// Wait for in-flight statements and close every connection (graceful shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The schema's migrations, applied in order on open.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/sqlite");

/// Seconds since the Unix epoch, the store's time unit.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Decode a JSON text column, naming the table when the row is corrupt.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    table: &'static str,
    text: &str,
) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        table,
        message: e.to_string(),
    })
}

/// Encode a value for a JSON text column.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serializes")
}

#[cfg(test)]
pub(crate) async fn test_store() -> Store {
    Store::open("sqlite::memory:")
        .await
        .expect("in-memory store")
}
