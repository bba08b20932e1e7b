//! The writer's SQLite statements, run on the writer's own thread.
//!
//! sqlx runs every SQLite connection on a thread of its own and hands each query to it and
//! back. For the live recorder the hand-off cost more than the statements: each trip wakes
//! two threads, and on a loaded 2-core machine a woken thread waits for a core (tick → fill
//! p99 11 ms through sqlx's thread against about 1 ms with the statements on the recorder's
//! thread). sqlx lets a caller hold its connection's SQLite handle for as long as it likes
//! ([`SqliteConnection::lock_handle`]; its thread waits meanwhile). [`DirectSqlite`] takes it
//! once, for its whole life, and runs statements through SQLite's C API on the calling
//! thread, each prepared once and kept. sqlx still opens, configures and closes the
//! connection; PostgreSQL is not concerned (its trips are network round trips either way).
//!
//! All of the writer's `unsafe` is here.

use std::collections::HashMap;
use std::ffi::{CStr, c_int};
use std::ptr::NonNull;

use libsqlite3_sys as ffi;
use sqlx::sqlite::{LockedSqliteHandle, SqliteConnection};

use super::Val;
use crate::{StoreError, StoreResult};

/// One SQL statement and the values of its parameters (`?`, in order).
pub(super) struct Statement {
    pub(super) sql: String,
    pub(super) args: Vec<Val>,
}

/// A value read from a row.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// Most prepared statements kept. The writer's statements are a few dozen fixed texts; the
/// bound only keeps a caller that writes many distinct texts from growing without end.
const MAX_PREPARED: usize = 256;

/// A SQLite connection opened by sqlx whose handle this thread holds for good.
pub(super) struct DirectSqlite {
    db: NonNull<ffi::sqlite3>,
    prepared: HashMap<String, NonNull<ffi::sqlite3_stmt>>,
    /// The lock on the connection's handle; released (in `Drop`) before `conn` is dropped.
    locked: Option<LockedSqliteHandle<'static>>,
    /// The connection, from `Box::into_raw`: `locked` borrows it, so it must not move or be
    /// reachable through another owner while the lock is held.
    conn: NonNull<SqliteConnection>,
}

// SAFETY: the connection is used by one thread at a time (every method takes `&mut self`),
// which SQLite's multi-thread mode (sqlx opens connections with `SQLITE_OPEN_NOMUTEX`)
// allows from any thread; the lock guard is an async mutex's, not tied to a thread.
unsafe impl Send for DirectSqlite {}

impl DirectSqlite {
    /// Take `conn`'s handle for the life of the result (one trip to sqlx's thread).
    pub(super) fn lock(rt: &tokio::runtime::Runtime, conn: SqliteConnection) -> StoreResult<Self> {
        let conn = NonNull::from(Box::leak(Box::new(conn)));
        // SAFETY: `conn` stays at this heap address, owned by nothing else, until `Drop`
        // releases the lock that borrows it and only then frees it, so the borrow given a
        // 'static lifetime here never outlives the connection.
        let conn_ref: &'static mut SqliteConnection = unsafe { &mut *conn.as_ptr() };
        match rt.block_on(conn_ref.lock_handle()) {
            Ok(mut locked) => {
                let db = locked.as_raw_handle();
                Ok(DirectSqlite {
                    db,
                    prepared: HashMap::new(),
                    locked: Some(locked),
                    conn,
                })
            }
            Err(e) => {
                // SAFETY: the failed lock holds no borrow; the box is ours again.
                drop(unsafe { Box::from_raw(conn.as_ptr()) });
                Err(e.into())
            }
        }
    }

    /// Run `statements` in order; the rows they return, appended to `rows`, and the number
    /// of rows they inserted, updated or deleted. Stops at the first that fails.
    pub(super) fn run(
        &mut self,
        statements: &[Statement],
        rows: &mut Vec<Vec<Value>>,
    ) -> StoreResult<u64> {
        let mut changed = 0;
        for s in statements {
            let stmt = self.prepare(&s.sql)?;
            let done = self.execute(stmt, s, rows);
            // SAFETY: `stmt` is a live prepared statement of this connection. Resetting and
            // clearing its bindings drops every pointer into `s.args` (bound without a copy).
            unsafe {
                ffi::sqlite3_reset(stmt.as_ptr());
                ffi::sqlite3_clear_bindings(stmt.as_ptr());
            }
            changed += done?;
        }
        Ok(changed)
    }

    /// `sql` prepared, from the kept statements when it ran before.
    fn prepare(&mut self, sql: &str) -> StoreResult<NonNull<ffi::sqlite3_stmt>> {
        if let Some(stmt) = self.prepared.get(sql) {
            return Ok(*stmt);
        }
        if self.prepared.len() >= MAX_PREPARED {
            self.finalize_all();
        }
        let len = c_int::try_from(sql.len())
            .map_err(|_| StoreError::Statement(format!("a statement of {} bytes", sql.len())))?;
        let mut stmt = std::ptr::null_mut();
        let mut tail = std::ptr::null();
        // SAFETY: `sql` is valid for `len` bytes; SQLite writes the two out-pointers.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                self.db.as_ptr(),
                sql.as_ptr().cast(),
                len,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut stmt,
                &mut tail,
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(self.error(sql));
        }
        let Some(stmt) = NonNull::new(stmt) else {
            return Err(StoreError::Statement(format!("no statement in {sql:?}")));
        };
        // SAFETY: `tail` points into `sql` (at or before its end).
        let rest = unsafe { tail.cast::<u8>().offset_from(sql.as_ptr()) } as usize;
        if !sql[rest.min(sql.len())..].trim().is_empty() {
            // SAFETY: prepared above and not kept.
            unsafe { ffi::sqlite3_finalize(stmt.as_ptr()) };
            return Err(StoreError::Statement(format!(
                "more than one statement in {sql:?}"
            )));
        }
        self.prepared.insert(sql.to_string(), stmt);
        Ok(stmt)
    }

    /// Bind `s`'s values to `stmt` and step it to its end.
    fn execute(
        &self,
        stmt: NonNull<ffi::sqlite3_stmt>,
        s: &Statement,
        rows: &mut Vec<Vec<Value>>,
    ) -> StoreResult<u64> {
        let st = stmt.as_ptr();
        // SAFETY (every block below): `st` is a live prepared statement of this connection,
        // and parameter and column indexes stay within the counts SQLite reports.
        let wanted = unsafe { ffi::sqlite3_bind_parameter_count(st) } as usize;
        if wanted != s.args.len() {
            return Err(StoreError::Statement(format!(
                "{} values for the {wanted} parameters of {:?}",
                s.args.len(),
                s.sql
            )));
        }
        for (i, v) in s.args.iter().enumerate() {
            let at = i as c_int + 1;
            // Texts and blobs are bound without a copy (`SQLITE_STATIC`): `run` clears the
            // bindings before `s` can go away.
            let rc = unsafe {
                match v {
                    Val::Int(v) | Val::OptInt(Some(v)) => ffi::sqlite3_bind_int64(st, at, *v),
                    Val::Real(v) | Val::OptReal(Some(v)) => ffi::sqlite3_bind_double(st, at, *v),
                    Val::Text(v) | Val::OptText(Some(v)) => ffi::sqlite3_bind_text64(
                        st,
                        at,
                        v.as_ptr().cast(),
                        v.len() as u64,
                        ffi::SQLITE_STATIC(),
                        ffi::SQLITE_UTF8 as u8,
                    ),
                    Val::Blob(v) => ffi::sqlite3_bind_blob64(
                        st,
                        at,
                        v.as_ptr().cast(),
                        v.len() as u64,
                        ffi::SQLITE_STATIC(),
                    ),
                    Val::OptInt(None) | Val::OptReal(None) | Val::OptText(None) => {
                        ffi::sqlite3_bind_null(st, at)
                    }
                }
            };
            if rc != ffi::SQLITE_OK {
                return Err(self.error(&s.sql));
            }
        }
        loop {
            match unsafe { ffi::sqlite3_step(st) } {
                ffi::SQLITE_ROW => {
                    let n = unsafe { ffi::sqlite3_column_count(st) };
                    rows.push((0..n).map(|c| unsafe { column(st, c) }).collect());
                }
                ffi::SQLITE_DONE => break,
                _ => return Err(self.error(&s.sql)),
            }
        }
        if unsafe { ffi::sqlite3_stmt_readonly(st) } != 0 {
            return Ok(0);
        }
        Ok(unsafe { ffi::sqlite3_changes64(self.db.as_ptr()) }.max(0) as u64)
    }

    /// The connection's last error, naming `sql`; a broken uniqueness rule is a conflict.
    fn error(&self, sql: &str) -> StoreError {
        // SAFETY: SQLite's message is a NUL-terminated string it owns until the next call.
        let (code, message) = unsafe {
            (
                ffi::sqlite3_extended_errcode(self.db.as_ptr()),
                CStr::from_ptr(ffi::sqlite3_errmsg(self.db.as_ptr()))
                    .to_string_lossy()
                    .into_owned(),
            )
        };
        let statement: String = sql.chars().take(120).collect();
        match code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                StoreError::Conflict(format!("{message} (in {statement:?})"))
            }
            _ => StoreError::Statement(format!("{message} (in {statement:?})")),
        }
    }

    fn finalize_all(&mut self) {
        for (_, stmt) in self.prepared.drain() {
            // SAFETY: each was prepared on this connection and is finalized once.
            unsafe { ffi::sqlite3_finalize(stmt.as_ptr()) };
        }
    }
}

impl Drop for DirectSqlite {
    fn drop(&mut self) {
        // SQLite refuses to close a connection with statements left.
        self.finalize_all();
        drop(self.locked.take());
        // SAFETY: from `Box::leak` in `lock`; the lock that borrowed it is released.
        drop(unsafe { Box::from_raw(self.conn.as_ptr()) });
    }
}

/// Column `c` of the row `st` stands on.
///
/// # Safety
/// `st` must stand on a row (its last step answered `SQLITE_ROW`) and `c` be one of its columns.
unsafe fn column(st: *mut ffi::sqlite3_stmt, c: c_int) -> Value {
    // SAFETY: guaranteed by the caller; the text and blob pointers are valid for the byte
    // counts read right after them, until the next step.
    unsafe {
        match ffi::sqlite3_column_type(st, c) {
            ffi::SQLITE_INTEGER => Value::Int(ffi::sqlite3_column_int64(st, c)),
            ffi::SQLITE_FLOAT => Value::Real(ffi::sqlite3_column_double(st, c)),
            ffi::SQLITE_TEXT => {
                let p = ffi::sqlite3_column_text(st, c);
                let n = ffi::sqlite3_column_bytes(st, c).max(0) as usize;
                if p.is_null() {
                    Value::Text(String::new())
                } else {
                    let bytes = std::slice::from_raw_parts(p, n);
                    Value::Text(String::from_utf8_lossy(bytes).into_owned())
                }
            }
            ffi::SQLITE_BLOB => {
                let p = ffi::sqlite3_column_blob(st, c).cast::<u8>();
                let n = ffi::sqlite3_column_bytes(st, c).max(0) as usize;
                if p.is_null() {
                    Value::Blob(Vec::new())
                } else {
                    Value::Blob(std::slice::from_raw_parts(p, n).to_vec())
                }
            }
            _ => Value::Null,
        }
    }
}

/// Reads a row's columns in order, each as the type the caller expects.
pub(super) struct Columns<'a> {
    row: &'a [Value],
    table: &'static str,
    next: usize,
}

impl<'a> Columns<'a> {
    /// The columns of `row`, read from `table`.
    pub(super) fn of(row: &'a [Value], table: &'static str) -> Self {
        Columns {
            row,
            table,
            next: 0,
        }
    }

    fn take(&mut self) -> StoreResult<&'a Value> {
        let v = self.row.get(self.next).ok_or_else(|| StoreError::Corrupt {
            table: self.table,
            message: format!("a row of {} columns read as more", self.row.len()),
        })?;
        self.next += 1;
        Ok(v)
    }

    fn wrong(&self, wanted: &str, got: &Value) -> StoreError {
        StoreError::Corrupt {
            table: self.table,
            message: format!("column {} is {got:?}, not {wanted}", self.next - 1),
        }
    }

    pub(super) fn int(&mut self) -> StoreResult<i64> {
        match self.take()? {
            Value::Int(v) => Ok(*v),
            other => Err(self.wrong("an integer", other)),
        }
    }

    pub(super) fn opt_int(&mut self) -> StoreResult<Option<i64>> {
        match self.take()? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            other => Err(self.wrong("an integer or NULL", other)),
        }
    }

    /// A number; REAL columns hold whole numbers as integers when SQLite saves space.
    pub(super) fn real(&mut self) -> StoreResult<f64> {
        match self.take()? {
            Value::Real(v) => Ok(*v),
            Value::Int(v) => Ok(*v as f64),
            other => Err(self.wrong("a number", other)),
        }
    }

    pub(super) fn opt_real(&mut self) -> StoreResult<Option<f64>> {
        match self.take()? {
            Value::Null => Ok(None),
            Value::Real(v) => Ok(Some(*v)),
            Value::Int(v) => Ok(Some(*v as f64)),
            other => Err(self.wrong("a number or NULL", other)),
        }
    }

    pub(super) fn text(&mut self) -> StoreResult<String> {
        match self.take()? {
            Value::Text(v) => Ok(v.clone()),
            other => Err(self.wrong("text", other)),
        }
    }

    pub(super) fn opt_text(&mut self) -> StoreResult<Option<String>> {
        match self.take()? {
            Value::Null => Ok(None),
            Value::Text(v) => Ok(Some(v.clone())),
            other => Err(self.wrong("text or NULL", other)),
        }
    }

    /// A text column holding one of a vocabulary's words.
    pub(super) fn parse<T>(&mut self) -> StoreResult<T>
    where
        T: TryFrom<String>,
        T::Error: std::fmt::Display,
    {
        let text = self.text()?;
        T::try_from(text).map_err(|e| StoreError::Corrupt {
            table: self.table,
            message: format!("column {}: {e}", self.next - 1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::ConnectOptions;

    fn statement(sql: &str, args: Vec<Val>) -> Statement {
        Statement {
            sql: sql.into(),
            args,
        }
    }

    fn open() -> (tokio::runtime::Runtime, DirectSqlite, tempfile::TempDir) {
        let rt = super::super::runtime().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("t.db"))
            .create_if_missing(true);
        let conn = rt.block_on(options.connect()).unwrap();
        let db = DirectSqlite::lock(&rt, conn).unwrap();
        (rt, db, dir)
    }

    #[test]
    fn values_go_in_and_come_out_as_they_were() {
        let (_rt, mut db, _dir) = open();
        let mut rows = Vec::new();
        let changed = db
            .run(
                &[
                    statement(
                        "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n INTEGER)",
                        vec![],
                    ),
                    statement(
                        "INSERT INTO t VALUES (?, ?, ?, ?, ?)",
                        vec![
                            Val::Int(-7),
                            Val::Real(2.5),
                            Val::Text("a\0b é".into()),
                            Val::Blob(vec![0, 1, 255]),
                            Val::OptInt(None),
                        ],
                    ),
                    statement("INSERT INTO t (i) VALUES (?)", vec![Val::OptInt(Some(8))]),
                    statement("SELECT i, r, s, b, n FROM t ORDER BY rowid", vec![]),
                ],
                &mut rows,
            )
            .unwrap();
        assert_eq!(changed, 2);
        assert_eq!(
            rows,
            vec![
                vec![
                    Value::Int(-7),
                    Value::Real(2.5),
                    Value::Text("a\0b é".into()),
                    Value::Blob(vec![0, 1, 255]),
                    Value::Null,
                ],
                vec![
                    Value::Int(8),
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::Null
                ],
            ]
        );
        // The same text again runs the kept statement.
        let kept = db.prepared.len();
        db.run(
            &[statement("INSERT INTO t (i) VALUES (?)", vec![Val::Int(9)])],
            &mut rows,
        )
        .unwrap();
        assert_eq!(db.prepared.len(), kept);
    }

    #[test]
    fn a_failing_statement_says_what_and_where_and_the_connection_goes_on() {
        let (_rt, mut db, _dir) = open();
        let mut rows = Vec::new();
        db.run(
            &[statement("CREATE TABLE t (id INTEGER PRIMARY KEY)", vec![])],
            &mut rows,
        )
        .unwrap();
        let err = db
            .run(&[statement("SELEC 1", vec![])], &mut rows)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("syntax error") && err.contains("SELEC 1"),
            "{err}"
        );
        let insert = |id| statement("INSERT INTO t (id) VALUES (?)", vec![Val::Int(id)]);
        db.run(&[insert(1)], &mut rows).unwrap();
        let err = db.run(&[insert(1)], &mut rows).unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict(m) if m.contains("UNIQUE") || m.contains("PRIMARY")),
            "{err}"
        );
        let err = db
            .run(&[statement("SELECT ?, ?", vec![Val::Int(1)])], &mut rows)
            .unwrap_err()
            .to_string();
        assert!(err.contains("1 values for the 2 parameters"), "{err}");
        let err = db
            .run(&[statement("SELECT 1; SELECT 2", vec![])], &mut rows)
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than one statement"), "{err}");
        // Still usable after each failure.
        db.run(
            &[insert(2), statement("SELECT COUNT(*) FROM t", vec![])],
            &mut rows,
        )
        .unwrap();
        assert_eq!(rows.last(), Some(&vec![Value::Int(2)]));
    }
}
