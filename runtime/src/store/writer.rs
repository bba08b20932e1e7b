//! The live recorder's write connection.
//!
//! The recorder books everything the live engine did (orders, fills with their position
//! updates, cancels, cursors, snapshots) in one transaction per batch, on a connection of its
//! own that no API request waits behind. It runs on the recorder's thread, which is not a
//! tokio worker: a [`Writer`] drives its connection with a current-thread runtime of its own,
//! so a statement costs one hand-off to the driver (sqlx's SQLite thread, or the PostgreSQL
//! socket) and no trip through the server's scheduler.
//!
//! Fill booking lives only here: [`super::orders::record_fill`] runs [`book_fill`] too.

use sqlx::{PgConnection, SqliteConnection};

use super::live::Cursor;
use super::orders::{FillRecord, NewOrder, Order, status};
use super::{Conn, Connect, Store, StoreError, StoreResult, now, with_conn};
use crate::model::Bar;
use crate::portfolio::Portfolio;

/// The connection a writer owns.
enum Owned {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl Owned {
    fn conn(&mut self) -> Conn<'_> {
        match self {
            Owned::Sqlite(c) => Conn::Sqlite(c),
            Owned::Postgres(c) => Conn::Postgres(c),
        }
    }
}

/// The recorder's connection. Writes run inside a transaction that the first of them opens
/// ([`Writer::begin`]) and [`Writer::commit`] ends.
///
/// Its methods block the calling thread on the writer's own runtime, so they must not be
/// called from async code (tokio refuses to block a thread that runs tasks): the recorder has
/// a thread of its own, async callers go through `spawn_blocking`.
///
/// On SQLite every hand-off to sqlx's connection thread costs more than the statements it
/// carries (rusqlite ran them on the recorder's thread), so the writer sends as few queries as
/// it can, several statements in one where it need not wait for an answer: `BEGIN` goes with
/// the transaction's first statement; orders get their ids from the writer (the transaction
/// holds the write lock, so the next id is the largest plus one) and are inserted with the
/// next statement that reads or with the commit; a fill's writes go as one query; cursors go
/// with the commit. PostgreSQL runs each statement as it comes.
pub struct Writer {
    rt: tokio::runtime::Runtime,
    conn: Owned,
    store: Store,
    /// Whether a transaction is open.
    open: bool,
    /// SQLite: `BEGIN IMMEDIATE` is still to be sent, before the next statement.
    begin_pending: bool,
    /// SQLite: the id the next order gets, once the transaction has read the largest.
    next_order_id: Option<i64>,
    /// SQLite: orders given their ids and not inserted yet (id, order, time).
    orders: Vec<(i64, NewOrder, i64)>,
    /// A statement failed inside the open transaction on PostgreSQL, which then refuses every
    /// later statement of it: the commit rolls it back and says so.
    aborted: bool,
    /// Rows changed through this connection so far.
    changes: u64,
    /// Cursors to move with the commit, by symbol.
    cursors: Vec<(String, Cursor)>,
    /// Whether the open transaction wrote instance rows (snapshots), which the catalog cache
    /// must learn once it commits.
    touches_catalog: bool,
}

/// What goes before the next statement on SQLite: the `BEGIN` and the order inserts not sent
/// yet, with the parameters of those inserts (the statement's own are numbered after them).
#[derive(Default)]
pub(crate) struct Prefix {
    sql: String,
    params: usize,
    orders: Vec<(i64, NewOrder, i64)>,
}

impl Prefix {
    /// Whether anything goes before the statement.
    fn is_empty(&self) -> bool {
        self.sql.is_empty()
    }

    /// The prefix and `sql`, its parameters renumbered after the prefix's.
    fn then(&self, sql: &str) -> String {
        format!("{}{}", self.sql, shift_params(sql, self.params))
    }
}

/// `sql` with every parameter `$n` renamed `$(n + by)` (the store's statements have no other
/// `$`).
fn shift_params(sql: &str, by: usize) -> String {
    if by == 0 {
        return sql.to_string();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut rest = sql;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + by).to_string()),
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// Columns of an order inserted with its id.
const ORDER_INSERT_COLUMNS: &str = "INSERT INTO orders (id, account, instance_id, user_id, symbol, side, order_type, quantity, limit_price, stop_price, time_in_force, take_profit, stop_loss, status, reason, tag, created_at, updated_at) VALUES ";

/// Parameters of one order row of [`ORDER_INSERT_COLUMNS`].
const ORDER_PARAMS: usize = 18;

/// Most order rows one insert carries (SQLite allows 32,766 parameters a statement).
const ORDERS_PER_STATEMENT: usize = 500;

/// `$q` with the parameters of a [`Prefix`]'s order rows bound, in its order.
macro_rules! bind_prefix {
    ($q:expr, $prefix:expr) => {{
        let mut q = $q;
        for (id, o, t) in &$prefix.orders {
            q = q
                .bind(*id)
                .bind(&o.account)
                .bind(o.instance_id)
                .bind(o.user_id)
                .bind(&o.symbol)
                .bind(&o.side)
                .bind(&o.order_type)
                .bind(o.quantity)
                .bind(o.limit_price)
                .bind(o.stop_price)
                .bind(&o.time_in_force)
                .bind(o.take_profit)
                .bind(o.stop_loss)
                .bind(&o.status)
                .bind(&o.reason)
                .bind(&o.tag)
                .bind(*t)
                .bind(*t);
        }
        q
    }};
}

/// `$q` with the parameters of [`super::live::upsert_cursors_sql`] bound: symbol, seq, ts,
/// close and `$t` for each cursor of `$cursors`.
macro_rules! bind_cursors {
    ($q:expr, $cursors:expr, $t:expr) => {{
        let mut q = $q;
        for (symbol, c) in $cursors {
            q = q.bind(symbol).bind(c.seq).bind(c.ts).bind(c.close).bind($t);
        }
        q
    }};
}

/// Drive `f` to completion on this thread without sleeping: poll it, and between polls only
/// yield the core. A SQLite statement's answer comes from sqlx's connection thread, and
/// parking this thread until it is woken took longer than the statement (the wake-up of a
/// parked thread is tens of microseconds here); polling sees the answer as it lands.
fn spin_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::yield_now();
    }
}

/// A current-thread runtime for a connection driven from a plain thread.
fn runtime() -> StoreResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StoreError::Open(format!("a runtime for the write connection: {e}")))
}

impl Writer {
    /// Open a connection to `store`'s database, set up as the pool's connections (on SQLite:
    /// WAL, `synchronous=NORMAL`, foreign keys, the store's busy timeout).
    pub fn open(store: &Store) -> StoreResult<Writer> {
        use sqlx::ConnectOptions;
        let rt = runtime()?;
        let conn = match store.connect_options() {
            Connect::Sqlite(o) => Owned::Sqlite(rt.block_on(o.connect())?),
            Connect::Postgres(o) => Owned::Postgres(rt.block_on(o.connect())?),
        };
        Ok(Writer {
            rt,
            conn,
            store: store.clone(),
            open: false,
            begin_pending: false,
            next_order_id: None,
            orders: Vec::new(),
            aborted: false,
            changes: 0,
            cursors: Vec::new(),
            touches_catalog: false,
        })
    }

    /// [`Writer::open`] for a writer on the hot path. On SQLite its commits never run a WAL
    /// checkpoint (copying pages back into the database file takes milliseconds, and SQLite
    /// runs it in the connection whose commit crosses 1,000 pages); `checkpointer` runs them
    /// beside it. PostgreSQL checkpoints by itself: its checkpointer does nothing.
    pub fn open_without_checkpoints(store: &Store) -> StoreResult<(Writer, Checkpointer)> {
        let mut w = Writer::open(store)?;
        let checkpoints = match store.connect_options() {
            Connect::Sqlite(o) => {
                let Owned::Sqlite(c) = &mut w.conn else {
                    unreachable!("a SQLite store opens a SQLite writer")
                };
                w.rt.block_on(sqlx::raw_sql("PRAGMA wal_autocheckpoint = 0").execute(c))?;
                Checkpointer::start(o.clone())?
            }
            Connect::Postgres(_) => Checkpointer::none(),
        };
        Ok((w, checkpoints))
    }

    /// Run `f` (a statement on the writer's connection) to completion: spinning on SQLite
    /// ([`spin_on`]), on the writer's runtime on PostgreSQL, whose socket needs its driver.
    fn run<F: Future>(rt: &tokio::runtime::Runtime, sqlite: bool, f: F) -> F::Output {
        if sqlite {
            let _context = rt.enter();
            spin_on(f)
        } else {
            rt.block_on(f)
        }
    }

    /// Start a transaction. On SQLite it holds the write lock from its first statement, so it
    /// can never fail halfway on a lock another writer took after it started reading. Every
    /// write opens one when none is open, so a caller with nothing to write takes no lock.
    pub fn begin(&mut self) -> StoreResult<()> {
        if self.open {
            return Ok(());
        }
        match &mut self.conn {
            Owned::Sqlite(_) => self.begin_pending = true,
            Owned::Postgres(c) => {
                self.rt.block_on(sqlx::raw_sql("BEGIN").execute(c))?;
            }
        }
        self.open = true;
        self.aborted = false;
        self.touches_catalog = false;
        Ok(())
    }

    /// Open a transaction if none is, and take what the next statement starts with.
    fn prefix(&mut self) -> StoreResult<Prefix> {
        self.begin()?;
        let mut p = Prefix::default();
        if std::mem::take(&mut self.begin_pending) {
            p.sql.push_str("BEGIN IMMEDIATE; ");
        }
        p.orders = std::mem::take(&mut self.orders);
        for chunk in p.orders.chunks(ORDERS_PER_STATEMENT) {
            p.sql.push_str(ORDER_INSERT_COLUMNS);
            for i in 0..chunk.len() {
                if i > 0 {
                    p.sql.push_str(", ");
                }
                let k = p.params;
                p.sql.push('(');
                for j in 1..=ORDER_PARAMS {
                    if j > 1 {
                        p.sql.push_str(", ");
                    }
                    p.sql.push_str(&format!("${}", k + j));
                }
                p.sql.push(')');
                p.params += ORDER_PARAMS;
            }
            p.sql.push_str("; ");
        }
        Ok(p)
    }

    /// The transaction is over (committed or rolled back).
    fn ended(&mut self) {
        self.open = false;
        self.begin_pending = false;
        self.next_order_id = None;
        self.orders.clear();
        self.cursors.clear();
    }

    /// Whether a transaction is open (something was written since the last commit).
    pub fn in_transaction(&self) -> bool {
        self.open
    }

    /// Rows inserted, updated or deleted through this connection so far.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Make everything since [`Writer::begin`] durable at once. If the commit fails the
    /// transaction is rolled back, so the next `begin` starts clean.
    pub fn commit(&mut self) -> StoreResult<()> {
        if !self.open {
            return Ok(());
        }
        if self.begin_pending && self.cursors.is_empty() && self.orders.is_empty() {
            // Nothing was sent: there is nothing to commit.
            self.ended();
            return Ok(());
        }
        let cursors = std::mem::take(&mut self.cursors);
        let prefix = self.prefix()?;
        let aborted = std::mem::take(&mut self.aborted);
        let t = now();
        let done: StoreResult<u64> = match &mut self.conn {
            Owned::Sqlite(c) => Self::run(&self.rt, true, async {
                // The orders, the cursors and the commit in one query.
                let mut sql = prefix.sql.clone();
                let mut n = prefix.params;
                for chunk in cursors.chunks(CURSORS_PER_STATEMENT) {
                    sql.push_str(&shift_params(
                        &super::live::upsert_cursors_sql(chunk.len()),
                        n,
                    ));
                    sql.push_str("; ");
                    n += chunk.len() * 5;
                }
                sql.push_str("COMMIT");
                let q = bind_prefix!(sqlx::query(sqlx::AssertSqlSafe(sql)), prefix);
                let q = bind_cursors!(q, &cursors, t);
                Ok(q.execute(&mut *c).await?.rows_affected())
            }),
            Owned::Postgres(c) => self.rt.block_on(async {
                let mut changed = 0;
                if !aborted {
                    for chunk in cursors.chunks(CURSORS_PER_STATEMENT) {
                        let sql = super::live::upsert_cursors_sql(chunk.len());
                        changed += bind_cursors!(sqlx::query(sqlx::AssertSqlSafe(sql)), chunk, t)
                            .execute(&mut *c)
                            .await?
                            .rows_affected();
                    }
                }
                let end = if aborted { "ROLLBACK" } else { "COMMIT" };
                sqlx::raw_sql(end).execute(&mut *c).await?;
                Ok(changed)
            }),
        };
        self.ended();
        match done {
            Ok(changed) => self.changes += changed,
            Err(e) => {
                let _ = match &mut self.conn {
                    Owned::Sqlite(c) => self
                        .rt
                        .block_on(sqlx::raw_sql("ROLLBACK").execute(c))
                        .map(drop),
                    Owned::Postgres(c) => self
                        .rt
                        .block_on(sqlx::raw_sql("ROLLBACK").execute(c))
                        .map(drop),
                };
                return Err(e);
            }
        }
        if aborted {
            return Err(StoreError::Conflict(
                "a statement of the batch failed, which aborts a PostgreSQL transaction: the batch was rolled back".into(),
            ));
        }
        if self.touches_catalog {
            self.store.catalog_changed();
        }
        Ok(())
    }

    /// Count what a write of the open transaction changed, or note a failure. `prefix` is
    /// what went before it ([`Writer::prefix`]).
    fn wrote<T>(&mut self, prefix: &Prefix, r: StoreResult<(T, u64)>) -> StoreResult<T> {
        match r {
            Ok((out, changed)) => {
                self.changes += changed;
                Ok(out)
            }
            Err(e) => {
                match &mut self.conn {
                    // The failed query carried the `BEGIN` or order inserts, which may or
                    // may not have run: roll the transaction back, so nothing is half done
                    // and the next write begins afresh rather than outside a transaction.
                    Owned::Sqlite(c) if !prefix.is_empty() => {
                        let _ = self.rt.block_on(sqlx::raw_sql("ROLLBACK").execute(c));
                        self.ended();
                    }
                    Owned::Sqlite(_) => {}
                    Owned::Postgres(_) => self.aborted |= matches!(e, StoreError::Sql(_)),
                }
                Err(e)
            }
        }
    }

    /// Store an order; its id.
    pub fn insert_order(&mut self, o: &NewOrder) -> StoreResult<i64> {
        if let Owned::Sqlite(_) = self.conn {
            let id = match self.next_order_id {
                Some(id) => id,
                None => {
                    let prefix = self.prefix()?;
                    let Owned::Sqlite(c) = &mut self.conn else {
                        unreachable!("matched above")
                    };
                    let sql = prefix.then("SELECT COALESCE(MAX(id), 0) + 1 FROM orders");
                    let r = Self::run(&self.rt, true, async {
                        let q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
                        Ok((bind_prefix!(q, prefix).fetch_one(&mut *c).await?, 0))
                    });
                    self.wrote(&prefix, r)?
                }
            };
            self.next_order_id = Some(id + 1);
            self.orders.push((id, o.clone(), now()));
            self.changes += 1;
            return Ok(id);
        }
        let prefix = self.prefix()?;
        let sqlite = matches!(self.conn, Owned::Sqlite(_));
        let conn = self.conn.conn();
        let r = Self::run(&self.rt, sqlite, async {
            Ok((insert_order(conn, o).await?, 1))
        });
        self.wrote(&prefix, r)
    }

    /// Cancel a working order; whether it was working.
    pub fn cancel_order(&mut self, id: i64, reason: &str) -> StoreResult<bool> {
        let prefix = self.prefix()?;
        let sqlite = matches!(self.conn, Owned::Sqlite(_));
        let conn = self.conn.conn();
        let sql = prefix.then(super::orders::CANCEL_WORKING);
        let r = Self::run(&self.rt, sqlite, async {
            let n = with_conn!(conn, c => bind_prefix!(sqlx::query(sqlx::AssertSqlSafe(sql)), prefix)
                .bind(reason)
                .bind(now())
                .bind(id)
                .execute(c)
                .await?
                .rows_affected());
            Ok((n > 0, n))
        });
        self.wrote(&prefix, r)
    }

    /// Book an execution of order `order_id` ([`book_fill`]) in this transaction.
    ///
    /// `Conflict` when the order is not working or the fill is larger than what is left.
    pub fn record_fill(
        &mut self,
        order_id: i64,
        quantity: f64,
        price: f64,
        fee: f64,
        ts: i64,
    ) -> StoreResult<FillRecord> {
        let prefix = self.prefix()?;
        let sqlite = matches!(self.conn, Owned::Sqlite(_));
        let conn = self.conn.conn();
        let r = Self::run(&self.rt, sqlite, async {
            let f = book_fill(conn, &prefix, order_id, quantity, price, fee, ts).await?;
            Ok((f, 4))
        });
        self.wrote(&prefix, r)
    }

    /// Move the live engine's stream cursors, with the commit: one statement per
    /// [`CURSORS_PER_STATEMENT`] of them (one row at a time, the upserts cost nearly as much
    /// as the fills of a batch). A cursor given twice moves to the later one.
    pub fn save_cursors(&mut self, cursors: &[(String, Cursor)]) -> StoreResult<()> {
        if cursors.is_empty() {
            return Ok(());
        }
        self.begin()?;
        for (symbol, c) in cursors {
            // One row per symbol: an upsert cannot move one row twice.
            match self.cursors.iter_mut().find(|(s, _)| s == symbol) {
                Some(slot) => slot.1 = *c,
                None => self.cursors.push((symbol.clone(), *c)),
            }
        }
        Ok(())
    }

    /// Keep a strategy's snapshot, with the sequence number of the last bar it saw of each
    /// of its symbols.
    pub fn save_snapshot(
        &mut self,
        strategy_id: i64,
        state: &[u8],
        ts: i64,
        seqs: &[(String, u64)],
    ) -> StoreResult<()> {
        let seqs: serde_json::Map<String, serde_json::Value> = seqs
            .iter()
            .map(|(s, q)| (s.clone(), serde_json::Value::from(*q)))
            .collect();
        let seqs = serde_json::Value::Object(seqs).to_string();
        let prefix = self.prefix()?;
        let sqlite = matches!(self.conn, Owned::Sqlite(_));
        let conn = self.conn.conn();
        let sql = prefix.then(
            "UPDATE strategy_instances SET last_snapshot = $1, snapshot_at = $2, snapshot_seqs = $3 WHERE strategy_id = $4",
        );
        let r = Self::run(&self.rt, sqlite, async {
            let n = with_conn!(conn, c => bind_prefix!(sqlx::query(sqlx::AssertSqlSafe(sql)), prefix)
                .bind(state)
                .bind(ts)
                .bind(&seqs)
                .bind(strategy_id)
                .execute(c)
                .await?
                .rows_affected());
            Ok(((), n))
        });
        self.wrote(&prefix, r)?;
        self.touches_catalog = true;
        Ok(())
    }

    /// Journal bars the engine handled (symbol, sequence number, bar) as one entry; its id.
    pub fn save_bars(&mut self, bars: &[(String, u64, Bar)]) -> StoreResult<i64> {
        let blob = super::live::encode_bars(bars);
        let prefix = self.prefix()?;
        let sqlite = matches!(self.conn, Owned::Sqlite(_));
        let conn = self.conn.conn();
        let sql = prefix.then("INSERT INTO live_journal (bars) VALUES ($1) RETURNING id");
        let r = Self::run(&self.rt, sqlite, async {
            let id: i64 = with_conn!(conn, c => bind_prefix!(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)), prefix)
                .bind(&blob)
                .fetch_one(c)
                .await?);
            Ok((id, 1))
        });
        self.wrote(&prefix, r)
    }

    /// Drop the journal entries up to `id`: no running instance needs their bars.
    pub fn prune_bars(&mut self, id: i64) -> StoreResult<()> {
        let prefix = self.prefix()?;
        let sqlite = matches!(self.conn, Owned::Sqlite(_));
        let conn = self.conn.conn();
        let sql = prefix.then("DELETE FROM live_journal WHERE id <= $1");
        let r = Self::run(&self.rt, sqlite, async {
            let n = with_conn!(conn, c => bind_prefix!(sqlx::query(sqlx::AssertSqlSafe(sql)), prefix)
                .bind(id)
                .execute(c)
                .await?
                .rows_affected());
            Ok(((), n))
        });
        self.wrote(&prefix, r)
    }
}

/// Store an order through `conn` at once; its id.
async fn insert_order(conn: Conn<'_>, o: &NewOrder) -> StoreResult<i64> {
    let t = now();
    Ok(
        with_conn!(conn, c => sqlx::query_scalar(super::orders::INSERT_ORDER)
        .bind(&o.account)
        .bind(o.instance_id)
        .bind(o.user_id)
        .bind(&o.symbol)
        .bind(&o.side)
        .bind(&o.order_type)
        .bind(o.quantity)
        .bind(o.limit_price)
        .bind(o.stop_price)
        .bind(&o.time_in_force)
        .bind(o.take_profit)
        .bind(o.stop_loss)
        .bind(&o.status)
        .bind(&o.reason)
        .bind(&o.tag)
        .bind(t)
        .bind(t)
        .fetch_one(c)
        .await?),
    )
}

/// What fill booking reads: the order, and the open position of its account in its symbol.
#[derive(sqlx::FromRow)]
struct FillRead {
    #[sqlx(flatten)]
    order: Order,
    pos_id: Option<i64>,
    pos_quantity: Option<f64>,
    pos_avg_price: Option<f64>,
    pos_opened_at: Option<i64>,
}

/// The read of [`FillRead`], one statement (the open position through `positions_open`).
pub(crate) const FILL_READ: &str = "SELECT o.id, o.account, o.instance_id, o.user_id, o.symbol, o.side, o.order_type, o.quantity, o.limit_price, o.stop_price, o.time_in_force, o.take_profit, o.stop_loss, o.status, o.filled_qty, o.avg_price, o.reason, o.tag, o.created_at, o.updated_at, p.id AS pos_id, p.quantity AS pos_quantity, p.avg_price AS pos_avg_price, p.opened_at AS pos_opened_at FROM orders o LEFT JOIN positions p ON p.account = o.account AND p.symbol = o.symbol AND p.closed_at IS NULL WHERE o.id = $1";

// The writes of a fill, all numbered alike: $1 order id, $2 account, $3 symbol, $4 order side,
// $5 quantity, $6 price, $7 fee, $8 ts, $9 now, $10 order's filled quantity, $11 its average
// price, $12 its status, $13 trade cash, $14 realized PnL, $15 open position id, $16 side,
// $17 quantity and $18 average price of the position after, $19 fee of the open position,
// $20 fee of a new one, $21 the fill's position when known (else the open one after).
// On SQLite they go as one multi-statement query (one hand-off to sqlx's connection thread
// instead of one each, which is what the statements cost); on PostgreSQL one by one.

/// Closes the open position.
const FILL_CLOSE: &str = "UPDATE positions SET quantity = 0, realized_pnl = realized_pnl + $14, fees = fees + $19, closed_at = $8, updated_at = $9 WHERE id = $15";
/// Grows or reduces the open position.
const FILL_MOVE: &str = "UPDATE positions SET quantity = $17, avg_price = $18, realized_pnl = realized_pnl + $14, fees = fees + $19, updated_at = $9 WHERE id = $15";
/// Opens a position.
const FILL_OPEN: &str = "INSERT INTO positions (account, symbol, side, quantity, avg_price, realized_pnl, fees, opened_at, updated_at) VALUES ($2, $3, $16, $17, $18, 0, $20, $8, $9)";
/// Moves the order.
const FILL_ORDER: &str = "UPDATE orders SET filled_qty = $10, avg_price = $11, status = $12, updated_at = $9 WHERE id = $1";
/// The account's running totals, so reading its cash is not a pass over its fills.
const FILL_TOTALS: &str = "INSERT INTO account_totals (account, trade_cash, fees, realized_pnl) VALUES ($2, $13, $7, $14) ON CONFLICT (account) DO UPDATE SET trade_cash = account_totals.trade_cash + excluded.trade_cash, fees = account_totals.fees + excluded.fees, realized_pnl = account_totals.realized_pnl + excluded.realized_pnl";
/// The fill row, last: the one statement that returns a row.
const FILL_INSERT: &str = "INSERT INTO fills (order_id, account, symbol, side, quantity, price, fee, ts, position_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, COALESCE($21, (SELECT id FROM positions WHERE account = $2 AND symbol = $3 AND closed_at IS NULL))) RETURNING id, position_id";

/// What a fill does to the open position.
#[derive(Clone, Copy)]
enum PositionMove {
    /// None open: opens one.
    Open,
    /// Grows or reduces it.
    Move,
    /// Flattens it.
    Close,
    /// Goes through flat: closes it and opens the remainder the other way.
    Reverse,
}

impl PositionMove {
    fn statements(self) -> &'static [&'static str] {
        match self {
            PositionMove::Open => &[FILL_OPEN, FILL_ORDER, FILL_TOTALS, FILL_INSERT],
            PositionMove::Move => &[FILL_MOVE, FILL_ORDER, FILL_TOTALS, FILL_INSERT],
            PositionMove::Close => &[FILL_CLOSE, FILL_ORDER, FILL_TOTALS, FILL_INSERT],
            PositionMove::Reverse => &[FILL_CLOSE, FILL_OPEN, FILL_ORDER, FILL_TOTALS, FILL_INSERT],
        }
    }

    /// The statements as one SQLite query.
    fn joined(self) -> String {
        self.statements().join("; ")
    }
}

/// Book an execution of order `order_id` through `conn`, inside the caller's transaction
/// (`prefix` goes before its first statement, see [`Writer::prefix`]): the fill row, the
/// order's filled quantity, average price and status, and the position (opened, grown,
/// reduced, closed, or closed and reversed, with realized PnL kept apart from fees), and the
/// account's running totals.
///
/// `Conflict` when the order is not working or the fill is larger than what is left.
pub(crate) async fn book_fill(
    conn: Conn<'_>,
    prefix: &Prefix,
    order_id: i64,
    quantity: f64,
    price: f64,
    fee: f64,
    ts: i64,
) -> StoreResult<FillRecord> {
    if !(quantity.is_finite()
        && quantity > 0.0
        && price.is_finite()
        && price > 0.0
        && fee.is_finite()
        && fee >= 0.0)
    {
        return Err(StoreError::Conflict(format!(
            "fill of order {order_id} needs a positive quantity and price and a non-negative fee, got {quantity} @ {price} fee {fee}"
        )));
    }
    let sqlite = matches!(conn, Conn::Sqlite(_));
    with_conn!(conn, c => {
        let read = sqlx::query_as::<_, FillRead>(sqlx::AssertSqlSafe(prefix.then(FILL_READ)));
        let read = bind_prefix!(read, prefix)
            .bind(order_id)
            .fetch_optional(&mut *c)
            .await?;
        let FillRead {
            order,
            pos_id,
            pos_quantity,
            pos_avg_price,
            pos_opened_at,
        } = read.ok_or_else(|| StoreError::NotFound(format!("order {order_id}")))?;
        if !order.is_working() {
            return Err(StoreError::Conflict(format!(
                "order {order_id} is {}, it cannot fill",
                order.status
            )));
        }
        let left = order.quantity - order.filled_qty;
        if quantity > left * (1.0 + 1e-9) {
            return Err(StoreError::Conflict(format!(
                "fill of {quantity} exceeds the {left} left of order {order_id}"
            )));
        }
        let signed = if order.side == "buy" {
            quantity
        } else {
            -quantity
        };
        let open = match (pos_id, pos_quantity, pos_avg_price, pos_opened_at) {
            (Some(id), Some(q), Some(avg), Some(at)) => Some((id, q, avg, at)),
            _ => None,
        };
        let mut book = Portfolio::new(vec![order.symbol.clone()].into(), 0.0);
        if let Some((_, q, avg, at)) = open {
            book.apply_fill(0, q, avg, 0.0, at);
        }
        // Fees are kept apart (the `fees` column), so realized PnL is the price move alone.
        book.apply_fill(0, signed, price, 0.0, ts);
        let after = book.position(0);
        let realized = book.realized();
        let (step, open_fee, new_fee) = match open {
            Some(_) if after.quantity == 0.0 => (PositionMove::Close, fee, 0.0),
            Some((_, q, _, _)) if (after.quantity > 0.0) != (q > 0.0) => {
                // Through flat: the closing part pays its share of the fee.
                let closing_fee = fee * q.abs() / quantity;
                (PositionMove::Reverse, closing_fee, fee - closing_fee)
            }
            Some(_) => (PositionMove::Move, fee, 0.0),
            None => (PositionMove::Open, 0.0, fee),
        };
        let filled = order.filled_qty + quantity;
        let avg =
            (order.avg_price.unwrap_or(0.0) * order.filled_qty + price * quantity) / filled;
        let new_status = if filled >= order.quantity * (1.0 - 1e-9) {
            status::FILLED
        } else {
            status::PARTIALLY_FILLED
        };
        let trade_cash = if order.side == "buy" {
            -quantity * price
        } else {
            quantity * price
        };
        let position_side = if after.quantity < 0.0 { "short" } else { "long" };
        let known_position = match step {
            PositionMove::Open => None,
            _ => pos_id,
        };
        let args = |sql: String| {
            sqlx::query_as::<_, (i64, Option<i64>)>(sqlx::AssertSqlSafe(sql))
                .bind(order_id)
                .bind(&order.account)
                .bind(&order.symbol)
                .bind(&order.side)
                .bind(quantity)
                .bind(price)
                .bind(fee)
                .bind(ts)
                .bind(now())
                .bind(filled)
                .bind(avg)
                .bind(new_status)
                .bind(trade_cash)
                .bind(realized)
                .bind(pos_id)
                .bind(position_side)
                .bind(after.quantity)
                .bind(after.avg_price)
                .bind(open_fee)
                .bind(new_fee)
                .bind(known_position)
        };
        let row = if sqlite {
            // Every statement runs: `fetch_all` steps them all (a fetch of one row would
            // stop at the first row).
            args(step.joined())
                .fetch_all(&mut *c)
                .await?
                .pop()
        } else {
            let statements = step.statements();
            let (last, before) = statements.split_last().expect("statements");
            for sql in before {
                args((*sql).to_string()).fetch_all(&mut *c).await?;
            }
            args((*last).to_string()).fetch_all(&mut *c).await?.pop()
        };
        let (fill_id, position_id) = row.ok_or_else(|| StoreError::Corrupt {
            table: "fills",
            message: format!("booking a fill of order {order_id} returned no row"),
        })?;
        Ok(FillRecord {
            id: fill_id,
            order_id,
            position_id,
            account: order.account,
            symbol: order.symbol,
            side: order.side,
            quantity,
            price,
            fee,
            ts,
            order_type: order.order_type,
            tag: order.tag,
            user_id: order.user_id,
        })
    })
}

/// Most cursors one upsert statement moves (5 parameters each).
const CURSORS_PER_STATEMENT: usize = 64;

/// Checkpoints a SQLite WAL every [`CHECKPOINT_EVERY`] on its own thread, passively (it never
/// waits for or blocks writers), until dropped.
pub struct Checkpointer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How often [`Checkpointer`] runs.
pub const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

impl Checkpointer {
    fn start(options: sqlx::sqlite::SqliteConnectOptions) -> StoreResult<Checkpointer> {
        use sqlx::ConnectOptions;
        let rt = runtime()?;
        let mut conn = rt.block_on(options.connect())?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("qtm-wal-checkpoint".into())
            .spawn(move || {
                let checkpoint = |conn: &mut SqliteConnection| {
                    rt.block_on(sqlx::raw_sql("PRAGMA wal_checkpoint(PASSIVE)").execute(conn))
                };
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_EVERY)
                {
                    if let Err(e) = checkpoint(&mut conn) {
                        tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
                    }
                }
                let _ = checkpoint(&mut conn);
                let _ = rt.block_on(sqlx::Connection::close(conn));
            })
            .ok();
        Ok(Checkpointer {
            stop: Some(stop),
            thread,
        })
    }

    /// A checkpointer with nothing to do (PostgreSQL).
    fn none() -> Checkpointer {
        Checkpointer {
            stop: None,
            thread: None,
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(seq: i64) -> Cursor {
        Cursor {
            seq,
            ts: 1_000 + seq,
            close: 10.0 + seq as f64,
        }
    }

    #[tokio::test]
    async fn cursors_are_inserted_and_moved_many_per_statement() {
        for store in crate::store::test_stores().await {
            let w = store.clone();
            tokio::task::spawn_blocking(move || {
                let mut w = Writer::open(&w).unwrap();
                // More than one statement's worth, then a few moved and one new.
                let first: Vec<(String, Cursor)> = (0..CURSORS_PER_STATEMENT as i64 + 6)
                    .map(|i| (format!("S{i}"), cursor(i)))
                    .collect();
                w.save_cursors(&first).unwrap();
                w.commit().unwrap();
                w.save_cursors(&[
                    ("S1".into(), cursor(500)),
                    ("S3".into(), cursor(700)),
                    ("NEW".into(), cursor(9)),
                ])
                .unwrap();
                w.commit().unwrap();
            })
            .await
            .unwrap();
            let stored = crate::store::live::cursors(&store).await.unwrap();
            assert_eq!(stored.len(), CURSORS_PER_STATEMENT + 7);
            assert_eq!(stored["S0"], cursor(0));
            assert_eq!(stored["S1"], cursor(500));
            assert_eq!(stored["S3"], cursor(700));
            assert_eq!(stored["NEW"], cursor(9));
            let last = format!("S{}", CURSORS_PER_STATEMENT + 5);
            assert_eq!(stored[&last], cursor(CURSORS_PER_STATEMENT as i64 + 5));
        }
    }

    #[test]
    fn parameters_are_renumbered_after_a_prefix() {
        assert_eq!(
            shift_params("a = $1 AND b IN ($2, $10)", 18),
            "a = $19 AND b IN ($20, $28)"
        );
        assert_eq!(shift_params("x = $3", 0), "x = $3");
    }

    #[tokio::test]
    async fn orders_placed_filled_and_cancelled_in_one_batch_are_all_stored() {
        use crate::store::orders;
        for store in crate::store::test_stores().await {
            let s = store.clone();
            let (a, b, c, fill) = tokio::task::spawn_blocking(move || {
                let mut w = Writer::open(&s).unwrap();
                let order = |side: &str| NewOrder {
                    account: "acct".into(),
                    symbol: "X".into(),
                    side: side.into(),
                    order_type: "market".into(),
                    quantity: 2.0,
                    time_in_force: "gtc".into(),
                    status: status::ACCEPTED.into(),
                    ..NewOrder::default()
                };
                let a = w.insert_order(&order("buy")).unwrap();
                let b = w.insert_order(&order("sell")).unwrap();
                // Reads and changes of orders not sent yet see them.
                let fill = w.record_fill(a, 2.0, 10.0, 0.5, 100).unwrap();
                assert!(w.cancel_order(b, "test").unwrap());
                let c = w.insert_order(&order("buy")).unwrap();
                w.commit().unwrap();
                (a, b, c, fill)
            })
            .await
            .unwrap();
            assert!(a < b && b < c, "{a} {b} {c}");
            assert_eq!(orders::get(&store, a).await.unwrap().status, status::FILLED);
            assert_eq!(orders::get(&store, b).await.unwrap().status, "cancelled");
            assert_eq!(
                orders::get(&store, c).await.unwrap().status,
                status::ACCEPTED
            );
            assert_eq!((fill.order_id, fill.quantity), (a, 2.0));
            let position = orders::position(&store, fill.position_id.unwrap())
                .await
                .unwrap();
            assert_eq!((position.quantity, position.fees), (2.0, 0.5));
            assert_eq!(
                orders::cash_flow(&store, Some("acct")).await.unwrap(),
                (-20.5, 0.5)
            );
        }
    }
}
