//! The source database: opened read-only, asked one `SELECT`, read a row at a time.
//!
//! Three guards, each enough alone: the query must be one `SELECT` (or `WITH … SELECT`)
//! statement, checked before anything runs; SQLite files open read-only with `query_only`
//! on; PostgreSQL sessions start with `default_transaction_read_only` and the query runs in a
//! `READ ONLY` transaction (which also stops a data-modifying `WITH`).

use std::pin::Pin;
use std::str::FromStr;

use futures_util::{Stream, StreamExt};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{Column, ConnectOptions, Connection, Row, TypeInfo, ValueRef};

use crate::ImportError;

/// Longest query accepted.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;

/// How long connecting to a PostgreSQL source may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long the source may take to answer the query, on PostgreSQL.
const STATEMENT_TIMEOUT_MS: u64 = 600_000;

/// One value of a source row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// UTF-8 text.
    Text(String),
    /// Text that is not UTF-8 (SQLite keeps whatever bytes were written).
    BadText(Vec<u8>),
    /// A blob.
    Bytes(Vec<u8>),
    /// A PostgreSQL text array.
    TextArray(Vec<String>),
    /// A column type qtm does not read (its SQL type name).
    Unsupported(String),
}

/// A source row: its cells, in the order of [`Rows::columns`].
pub type SourceRow = Vec<Cell>;

/// An open source database.
pub enum Source {
    /// A SQLite file, opened read-only.
    Sqlite(SqliteConnection),
    /// A PostgreSQL session whose transactions are read-only.
    Postgres(PgConnection),
}

/// The URL as it may be shown and stored: without user name and password.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    // Query parameters may carry a password too (`?password=`); they are dropped.
    let path = path.split('?').next().unwrap_or(path);
    format!("{scheme}://{host}{path}")
}

/// Check that `query` is one `SELECT` statement (a leading `WITH` allowed), before it runs.
pub fn check_query(query: &str) -> Result<(), ImportError> {
    let refuse = |why: &str| Err(ImportError::Query(why.to_string()));
    if query.len() > MAX_QUERY_BYTES {
        return refuse(&format!(
            "the query is {} bytes; at most {MAX_QUERY_BYTES}",
            query.len()
        ));
    }
    let code = strip_comments_and_strings(query);
    let code = code.trim().trim_end_matches(';').trim_end();
    if code.contains(';') {
        return refuse("only one statement may run: the query has more than one (a `;` inside it)");
    }
    let first = code
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .find(|w| !w.is_empty())
        .unwrap_or("")
        .to_ascii_uppercase();
    match first.as_str() {
        "SELECT" | "WITH" => Ok(()),
        "" => refuse("the query is empty"),
        other => refuse(&format!(
            "only a SELECT may run on the source; the query starts with {other}"
        )),
    }
}

/// `query` with its comments and the contents of its string literals and quoted names
/// blanked, so a `;` or keyword inside them is not taken for code.
fn strip_comments_and_strings(query: &str) -> String {
    let b = query.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                out.push(' ');
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
                out.push(' ');
            }
            q @ (b'\'' | b'"' | b'`') => {
                i += 1;
                loop {
                    match b.get(i) {
                        None => break,
                        // A doubled quote is an escaped quote.
                        Some(&c) if c == q && b.get(i + 1) == Some(&q) => i += 2,
                        Some(&c) if c == q => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                out.push_str("''");
            }
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

impl Source {
    /// Open the database at `url` (`sqlite://path` or `postgres://…`) read-only. Errors never
    /// show the credentials.
    pub async fn open(url: &str) -> Result<Source, ImportError> {
        let shown = redact(url);
        let open_error = |e: sqlx::Error| {
            ImportError::Source(format!("opening {shown}: {}", scrub(&e.to_string(), url)))
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url)
                .map_err(open_error)?
                .options([
                    ("default_transaction_read_only", "on".to_string()),
                    ("statement_timeout", STATEMENT_TIMEOUT_MS.to_string()),
                ]);
            let conn = tokio::time::timeout(CONNECT_TIMEOUT, opts.connect())
                .await
                .map_err(|_| {
                    ImportError::Source(format!(
                        "opening {shown}: no answer within {} s",
                        CONNECT_TIMEOUT.as_secs()
                    ))
                })?
                .map_err(open_error)?;
            Ok(Source::Postgres(conn))
        } else if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() || path.contains(":memory:") {
                return Err(ImportError::Source(format!(
                    "{shown}: name a SQLite file (sqlite://path/to/file.db)"
                )));
            }
            let path = path.split('?').next().unwrap_or(path);
            if !std::path::Path::new(path).is_file() {
                return Err(ImportError::Source(format!("{shown}: no such SQLite file")));
            }
            let opts = SqliteConnectOptions::new()
                .filename(path)
                .read_only(true)
                .create_if_missing(false)
                .pragma("query_only", "1");
            let conn = opts.connect().await.map_err(open_error)?;
            Ok(Source::Sqlite(conn))
        } else {
            Err(ImportError::Source(format!(
                "unsupported source URL {shown:?}: use sqlite://path or postgres://user:password@host/database"
            )))
        }
    }

    /// Run `query` (checked with [`check_query`] first) and stream its rows.
    pub async fn rows<'s>(&'s mut self, query: &'s str) -> Result<Rows<'s>, ImportError> {
        check_query(query)?;
        match self {
            Source::Sqlite(c) => Ok(Rows {
                columns: None,
                inner: RowsInner::Sqlite(sqlx::query(sqlx::AssertSqlSafe(query)).fetch(c)),
            }),
            Source::Postgres(c) => {
                sqlx::query("BEGIN READ ONLY")
                    .execute(&mut *c)
                    .await
                    .map_err(|e| {
                        ImportError::Source(format!("starting a read-only transaction: {e}"))
                    })?;
                Ok(Rows {
                    columns: None,
                    inner: RowsInner::Postgres(sqlx::query(sqlx::AssertSqlSafe(query)).fetch(c)),
                })
            }
        }
    }

    /// Close the connection (a PostgreSQL transaction is rolled back with it).
    pub async fn close(self) {
        match self {
            Source::Sqlite(c) => {
                let _ = c.close().await;
            }
            Source::Postgres(c) => {
                let _ = c.close().await;
            }
        }
    }
}

/// `message` without `url`'s password, should a driver echo it.
fn scrub(message: &str, url: &str) -> String {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|auth| auth.rsplit_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, pw)| pw)
        .filter(|pw| !pw.is_empty());
    match password {
        Some(pw) => message.replace(pw, "***"),
        None => message.to_string(),
    }
}

type BoxRows<'s, R> = Pin<Box<dyn Stream<Item = Result<R, sqlx::Error>> + Send + 's>>;

enum RowsInner<'s> {
    Sqlite(BoxRows<'s, SqliteRow>),
    Postgres(BoxRows<'s, PgRow>),
}

/// The rows of a query, read one at a time.
pub struct Rows<'s> {
    columns: Option<Vec<String>>,
    inner: RowsInner<'s>,
}

impl Rows<'_> {
    /// The column names, once the first row was read (none before, or for no rows).
    pub fn columns(&self) -> &[String] {
        self.columns.as_deref().unwrap_or(&[])
    }

    /// The next row, `None` at the end.
    pub async fn next(&mut self) -> Option<Result<SourceRow, ImportError>> {
        let read = |e: sqlx::Error| ImportError::Source(format!("reading the query's rows: {e}"));
        match &mut self.inner {
            RowsInner::Sqlite(s) => {
                let row = match s.next().await? {
                    Ok(r) => r,
                    Err(e) => return Some(Err(read(e))),
                };
                if self.columns.is_none() {
                    self.columns =
                        Some(row.columns().iter().map(|c| c.name().to_string()).collect());
                }
                Some(Ok((0..row.len()).map(|i| sqlite_cell(&row, i)).collect()))
            }
            RowsInner::Postgres(s) => {
                let row = match s.next().await? {
                    Ok(r) => r,
                    Err(e) => return Some(Err(read(e))),
                };
                if self.columns.is_none() {
                    self.columns =
                        Some(row.columns().iter().map(|c| c.name().to_string()).collect());
                }
                Some(Ok((0..row.len()).map(|i| pg_cell(&row, i)).collect()))
            }
        }
    }
}

fn sqlite_cell(row: &SqliteRow, i: usize) -> Cell {
    let Ok(raw) = row.try_get_raw(i) else {
        return Cell::Unsupported("unreadable".into());
    };
    if raw.is_null() {
        return Cell::Null;
    }
    // SQLite types each value, whatever the column says.
    match raw.type_info().name() {
        "INTEGER" => row
            .try_get::<i64, _>(i)
            .map_or(Cell::Unsupported("INTEGER".into()), Cell::Int),
        "REAL" => row
            .try_get::<f64, _>(i)
            .map_or(Cell::Unsupported("REAL".into()), Cell::Float),
        "TEXT" => match row.try_get::<Vec<u8>, _>(i) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(s) => Cell::Text(s),
                Err(e) => Cell::BadText(e.into_bytes()),
            },
            Err(_) => Cell::Unsupported("TEXT".into()),
        },
        "BLOB" => row
            .try_get::<Vec<u8>, _>(i)
            .map_or(Cell::Unsupported("BLOB".into()), Cell::Bytes),
        other => Cell::Unsupported(other.to_string()),
    }
}

fn pg_cell(row: &PgRow, i: usize) -> Cell {
    let Ok(raw) = row.try_get_raw(i) else {
        return Cell::Unsupported("unreadable".into());
    };
    if raw.is_null() {
        return Cell::Null;
    }
    let name = raw.type_info().name().to_string();
    let got = match name.as_str() {
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" => {
            row.try_get::<String, _>(i).map(Cell::Text)
        }
        "JSON" | "JSONB" => row
            .try_get::<sqlx::types::Json<serde_json::Value>, _>(i)
            .map(|j| Cell::Text(j.0.to_string())),
        "INT2" => row.try_get::<i16, _>(i).map(|v| Cell::Int(v.into())),
        "INT4" => row.try_get::<i32, _>(i).map(|v| Cell::Int(v.into())),
        "INT8" => row.try_get::<i64, _>(i).map(Cell::Int),
        "FLOAT4" => row.try_get::<f32, _>(i).map(|v| Cell::Float(v.into())),
        "FLOAT8" => row.try_get::<f64, _>(i).map(Cell::Float),
        "BOOL" => row.try_get::<bool, _>(i).map(Cell::Bool),
        "BYTEA" => row.try_get::<Vec<u8>, _>(i).map(Cell::Bytes),
        "TEXT[]" | "VARCHAR[]" => row.try_get::<Vec<String>, _>(i).map(Cell::TextArray),
        _ => return Cell::Unsupported(name),
    };
    got.unwrap_or(Cell::Unsupported(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_select_passes() {
        for ok in [
            "SELECT * FROM s",
            "  select name, rules from s;  ",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "SELECT ';' AS semi, 'DROP TABLE s; --' FROM s -- trailing ; comment",
            "SELECT \"a;b\" FROM s /* ; */",
        ] {
            check_query(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, why) in [
            ("DELETE FROM s", "starts with DELETE"),
            ("SELECT 1; DROP TABLE s", "more than one"),
            ("", "empty"),
            ("-- only a comment", "empty"),
            ("PRAGMA writable_schema = 1", "starts with PRAGMA"),
            ("ATTACH 'x.db' AS x", "starts with ATTACH"),
        ] {
            let e = check_query(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(check_query(&"x".repeat(MAX_QUERY_BYTES + 1)).is_err());
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact("postgres://team:s3cret@db.local:5432/strategies?sslmode=require&password=x"),
            "postgres://db.local:5432/strategies"
        );
        assert_eq!(redact("sqlite://data/team.db"), "sqlite://data/team.db");
        assert_eq!(
            scrub(
                "password authentication failed: s3cret",
                "postgres://u:s3cret@h/d"
            ),
            "password authentication failed: ***"
        );
    }
}
