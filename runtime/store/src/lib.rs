//! The store: every SQL statement of qtm lives under this module, so the schema and the code
//! that reads it change together. SQLite (embedded, WAL mode) by default, PostgreSQL by URL:
//! one schema in two dialects (`migrations/sqlite`, `migrations/postgres`), and statements
//! written once in the SQL both accept (`$1` parameters, `ON CONFLICT`, `RETURNING`), run on
//! either backend's pool through [`with_pool`].
//!
//! Each table group has its own file; all functions take `&Store` and return [`StoreError`].

// `println!`/`eprintln!` panic when their reader has gone (`qtm … | head`); the binary's
// commands print through its `cli::out`, and the server ignores a closed stdout.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod audit;
pub mod backtests;
pub mod components;
pub mod imports;
pub mod live;
pub mod market;
pub mod modules;
pub mod orders;
pub mod risk;
pub mod settings;
pub mod signals;
pub mod strategies;
pub mod summaries;
pub mod users;
pub mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgConnection, SqliteConnection};
use thiserror::Error;

/// The pool every store function runs on: one per backend.
#[derive(Debug, Clone)]
pub enum Pool {
    /// An embedded SQLite database file.
    Sqlite(sqlx::SqlitePool),
    /// A PostgreSQL server.
    Postgres(sqlx::PgPool),
}

/// Runs `$body` with `$p` bound to the store's pool of either backend. The body is compiled
/// once per backend, so a statement is written once and each driver checks its own types.
macro_rules! with_pool {
    ($store:expr, $p:ident => $body:expr) => {
        match $store.pool() {
            $crate::Pool::Sqlite($p) => $body,
            $crate::Pool::Postgres($p) => $body,
        }
    };
}
pub(crate) use with_pool;

/// Like [`with_pool`], with `$tx` an open transaction on the store's backend, committed when
/// `$body` (an async block: `return` and `?` leave it) comes to `Ok`, rolled back otherwise.
/// On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`), so it never fails halfway
/// on a lock another writer took after it started reading.
macro_rules! in_transaction {
    ($store:expr, $tx:ident => $body:expr) => {
        match $store.pool() {
            $crate::Pool::Sqlite(p) => {
                let mut $tx = p.begin_with("BEGIN IMMEDIATE").await?;
                let out: $crate::StoreResult<_> = async { $body }.await;
                if out.is_ok() {
                    $tx.commit().await?;
                }
                out
            }
            $crate::Pool::Postgres(p) => {
                let mut $tx = p.begin().await?;
                let out: $crate::StoreResult<_> = async { $body }.await;
                if out.is_ok() {
                    $tx.commit().await?;
                }
                out
            }
        }
    };
}
pub(crate) use in_transaction;

/// A connection of either backend, borrowed for one operation.
pub(crate) enum Conn<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

impl Conn<'_> {
    /// The same connection, borrowed again for one more operation.
    pub(crate) fn reborrow(&mut self) -> Conn<'_> {
        match self {
            Conn::Sqlite(c) => Conn::Sqlite(c),
            Conn::Postgres(c) => Conn::Postgres(c),
        }
    }
}

impl<'c> From<&'c mut SqliteConnection> for Conn<'c> {
    fn from(c: &'c mut SqliteConnection) -> Self {
        Conn::Sqlite(c)
    }
}

impl<'c> From<&'c mut PgConnection> for Conn<'c> {
    fn from(c: &'c mut PgConnection) -> Self {
        Conn::Postgres(c)
    }
}

/// Runs `$body` with `$c` the connection of `$conn` ([`Conn`]), compiled once per backend.
macro_rules! with_conn {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::Conn::Sqlite($c) => $body,
            $crate::Conn::Postgres($c) => $body,
        }
    };
}

pub(crate) use with_conn;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite, embedded.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database URL names a backend this build does not include.
    #[error(
        "unsupported database URL {0:?}: use sqlite://path or postgres://user:password@host/database"
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
    /// A statement the live writer ran itself failed (SQLite's message and the statement).
    #[error("database error: {0}")]
    Statement(String),
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
    /// What the live recorder's own connection ([`writer`]) opens.
    connect: Connect,
    catalog: Arc<AtomicU64>,
    /// The reference component new components are stored as deltas against, and the
    /// dictionaries read back.
    codec: Arc<components::Codec>,
    /// The directory of a `sqlite::memory:` database, removed with the last handle.
    _temp: Option<Arc<tempfile::TempDir>>,
}

/// How to open one more connection to the store's database.
#[derive(Debug, Clone)]
pub(crate) enum Connect {
    Sqlite(SqliteConnectOptions),
    Postgres(PgConnectOptions),
}

/// How long a statement waits for another connection's write lock before it fails.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections of a store's pool.
const POOL_SIZE: u32 = 8;

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
    ///
    /// `postgres://user:password@host:port/database` (or `postgresql://`) opens an existing
    /// PostgreSQL database and creates or updates the schema in it
    /// (`migrations/postgres`).
    pub async fn open(url: &str) -> StoreResult<Store> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Store::open_postgres(url).await;
        }
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
            return Err(StoreError::UnsupportedUrl(redact(url)));
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
        let pool = SqlitePoolOptions::new()
            .max_connections(POOL_SIZE)
            .connect_with(options.clone())
            .await
            .map_err(|e| StoreError::Open(format!("{url}: {e}")))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Open(format!("migrating {url}: {e}")))?;
        Ok(Store {
            pool: Pool::Sqlite(pool),
            url: url.to_string(),
            connect: Connect::Sqlite(options),
            catalog: Arc::default(),
            codec: Arc::default(),
            _temp: temp,
        })
    }

    async fn open_postgres(url: &str) -> StoreResult<Store> {
        // The URL is not echoed in errors: it may carry a password.
        let shown = redact(url);
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Open(format!("{shown}: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(BUSY_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(|e| StoreError::Open(format!("{shown}: {e}")))?;
        PG_MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Open(format!("migrating {shown}: {e}")))?;
        Ok(Store {
            pool: Pool::Postgres(pool),
            url: url.to_string(),
            connect: Connect::Postgres(options),
            catalog: Arc::default(),
            codec: Arc::default(),
            _temp: None,
        })
    }

    /// Which database the store runs on.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// The SQLite database file; `None` on PostgreSQL.
    pub fn path(&self) -> Option<&std::path::Path> {
        match &self.connect {
            Connect::Sqlite(o) => Some(o.get_filename()),
            Connect::Postgres(_) => None,
        }
    }

    /// The connection pool, for the store's own modules.
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// How to open a connection of the store's own (the live recorder's).
    pub(crate) fn connect_options(&self) -> &Connect {
        &self.connect
    }

    /// The SQLite pool, for tests of SQLite's own behaviour (query plans, its migrations).
    #[cfg(test)]
    pub(crate) fn sqlite(&self) -> &sqlx::SqlitePool {
        match &self.pool {
            Pool::Sqlite(p) => p,
            Pool::Postgres(_) => panic!("a SQLite store was expected"),
        }
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
        match &self.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }
}

/// `url` with its password replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// `sqlite` on SQLite, `postgres` on PostgreSQL: for the few statements written per dialect.
pub(crate) fn dialect<'a>(store: &Store, sqlite: &'a str, postgres: &'a str) -> &'a str {
    match store.backend() {
        Backend::Sqlite => sqlite,
        Backend::Postgres => postgres,
    }
}

/// The schema's migrations on SQLite, applied in order on open.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// The same schema on PostgreSQL.
pub(crate) static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

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
pub(crate) mod test_postgres;

/// A store on a fresh `sqlite::memory:` database.
#[cfg(test)]
pub(crate) async fn test_store() -> Store {
    Store::open("sqlite::memory:")
        .await
        .expect("in-memory store")
}

/// A store on a fresh database of the test PostgreSQL server, or `None` (with the reason
/// printed) when PostgreSQL is not installed.
#[cfg(test)]
pub(crate) async fn test_pg_store() -> Option<Store> {
    match tokio::task::spawn_blocking(test_postgres::database_url)
        .await
        .expect("creating a test database")
    {
        Ok(url) => Some(Store::open(&url).await.expect("a PostgreSQL test store")),
        Err(why) => {
            test_postgres::print_skip(&why);
            None
        }
    }
}

/// A fresh store on each backend (PostgreSQL only when installed), for tests that must hold
/// on both; each names its backend as the loop reaches it, so a failure says which one.
#[cfg(test)]
#[allow(clippy::print_stdout)] // Captured by libtest: shown with a failure, which it names.
pub(crate) async fn test_stores() -> impl Iterator<Item = Store> {
    let mut stores = vec![test_store().await];
    stores.extend(test_pg_store().await);
    stores
        .into_iter()
        .inspect(|s| println!("store on {:?}", s.backend()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(
            redact("postgres://qtm:secret@db.local:5432/qtm"),
            "postgres://qtm:***@db.local:5432/qtm"
        );
        assert_eq!(redact("postgres://qtm@db/qtm"), "postgres://qtm@db/qtm");
        assert_eq!(redact("sqlite://qtm.db"), "sqlite://qtm.db");
    }

    #[tokio::test]
    async fn other_databases_are_refused_by_name_without_the_password() {
        let e = Store::open("mysql://u:pw@h/db").await.unwrap_err();
        assert!(
            matches!(&e, StoreError::UnsupportedUrl(u) if u == "mysql://u:***@h/db"),
            "{e}"
        );
    }
}
