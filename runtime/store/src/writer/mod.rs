//! The live recorder's write connection.
//!
//! The recorder books everything the live engine did (orders, fills with their position
//! updates, cancels, cursors, snapshots) in one transaction per batch, on a connection of its
//! own that no API request waits behind. It runs on the recorder's thread, which is not a
//! tokio worker: a [`Writer`] drives its connection with a current-thread runtime of its own.
//!
//! Fill booking is decided in one place, [`plan_fill`]: the writer applies it to the rows it
//! holds, [`super::orders::record_fill`] (the API's path) to the rows it reads.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::{PgConnection, SqliteConnection};

mod sqlite_direct;
use sqlite_direct::{Columns, DirectSqlite, Statement};

use super::live::Cursor;
use super::orders::{
    AccountId, FillRecord, NewOrder, ORDER_COLUMNS, Order, OrderStatus, POSITION_COLUMNS, Position,
    PositionSide,
};
use super::{Conn, Connect, Store, StoreError, StoreResult, now, with_conn};
use qtm_core::model::{Bar, Side};
use qtm_oms::portfolio::Portfolio;

/// The connection a writer owns.
enum Owned {
    /// Run on the writer's own thread ([`sqlite_direct`]).
    Sqlite(DirectSqlite),
    Postgres(PgConnection),
}

/// The recorder's connection. Writes run inside a transaction that the first of them opens
/// ([`Writer::begin`]) and [`Writer::commit`] ends.
///
/// Its methods block the calling thread on the writer's own runtime, so they must not be
/// called from async code (tokio refuses to block a thread that runs tasks): the recorder has
/// a thread of its own, async callers go through `spawn_blocking`.
///
/// On PostgreSQL each statement costs a network round trip, dearer than its work; on SQLite
/// the statements run on the writer's own thread (module `sqlite_direct`: through sqlx, each would
/// be a hand-off to sqlx's connection thread and back, two thread wake-ups that wait for a
/// core on a loaded machine). So a transaction costs a fixed number of trips whatever it
/// holds: when it starts, one reads the orders and open positions the batch will touch
/// ([`Writer::prefetch`]), and the commit carries every write. In between, the writer keeps
/// the rows it read and wrote and books orders, fills and positions on them in memory. It
/// can because no other writer changes those rows meanwhile: a SQLite transaction holds the
/// database's write lock from its first statement, and on PostgreSQL the rows are read
/// `FOR UPDATE` (the recorder is the only writer of orders, fills and positions; the locks
/// make that a guarantee). A row it did not prefetch is read when first needed (one more trip).
///
/// New rows take their ids as they are booked, so the engine learns an order's id at once:
/// on SQLite the largest stored plus one (read as the transaction starts, under its write
/// lock), on PostgreSQL from the tables' own sequences, reserved [`IDS_RESERVED`] at a time.
pub struct Writer {
    rt: tokio::runtime::Runtime,
    conn: Owned,
    store: Store,
    /// Whether a transaction is open.
    open: bool,
    /// PostgreSQL: a read failed inside the open transaction, which aborted it: the commit
    /// rolls back whatever came after and says so.
    aborted: bool,
    /// Rows changed through this connection so far.
    changes: u64,
    /// Cursors to move with the commit, by symbol.
    cursors: Vec<(String, Cursor)>,
    /// Whether the open transaction wrote instance rows (snapshots), which the catalog cache
    /// must learn once it commits.
    touches_catalog: bool,
    /// What the open transaction read and wrote.
    tx: TxRows,
    /// PostgreSQL: ids taken from the sequences and not used yet. Sequences never give a
    /// number twice, rolled back or not, so these outlive transactions.
    /// Each list largest first.
    reserved: PerTable<Vec<i64>>,
}

/// One `T` for each table whose new rows take ids as they are booked.
#[derive(Debug, Clone, Copy, Default)]
struct PerTable<T> {
    order: T,
    fill: T,
    position: T,
    journal: T,
}

impl<T> PerTable<T> {
    fn get_mut(&mut self, table: Table) -> &mut T {
        match table {
            Table::Orders => &mut self.order,
            Table::Fills => &mut self.fill,
            Table::Positions => &mut self.position,
            Table::Journal => &mut self.journal,
        }
    }
}

/// Ids a PostgreSQL writer takes from a sequence at once.
pub const IDS_RESERVED: i64 = 256;

/// A table whose new rows take ids as they are booked.
#[derive(Debug, Clone, Copy)]
enum Table {
    Orders,
    Fills,
    Positions,
    Journal,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Orders => "orders",
            Table::Fills => "fills",
            Table::Positions => "positions",
            Table::Journal => "live_journal",
        }
    }
}

/// A row a transaction holds: read from the store or written by it.
#[derive(Debug)]
struct Held<T> {
    row: T,
    /// Not stored yet: inserted with the commit.
    new: bool,
    /// Stored and changed since: updated with the commit.
    dirty: bool,
}

impl<T> Held<T> {
    fn read(row: T) -> Self {
        Held {
            row,
            new: false,
            dirty: false,
        }
    }

    fn new(row: T) -> Self {
        Held {
            row,
            new: true,
            dirty: false,
        }
    }

    /// The row, to change.
    fn change(&mut self) -> &mut T {
        self.dirty = !self.new;
        &mut self.row
    }
}

/// A fill to insert.
#[derive(Debug)]
struct FillRow {
    id: i64,
    order_id: i64,
    account: AccountId,
    symbol: String,
    side: Side,
    quantity: f64,
    price: f64,
    fee: f64,
    ts: i64,
    position_id: Option<i64>,
}

/// A snapshot to store.
#[derive(Debug)]
struct SnapshotRow {
    strategy_id: i64,
    state: Vec<u8>,
    ts: i64,
    seqs: String,
}

/// What a transaction of the writer read and wrote: everything written goes to the store
/// with the commit.
#[derive(Debug, Default)]
struct TxRows {
    /// The transaction's `BEGIN` went out (on SQLite `BEGIN IMMEDIATE`, with the read of the
    /// next ids).
    started: bool,
    /// SQLite: the ids the next rows take: the largest stored plus one, read as the
    /// transaction starts (its write lock keeps anyone else from inserting until it commits).
    next: PerTable<i64>,
    orders: BTreeMap<i64, Held<Order>>,
    /// Accounts whose open positions were read: an account read with no open position in a
    /// symbol has none.
    accounts: HashSet<AccountId>,
    /// The open position of each (account, symbol) held.
    open_positions: HashMap<(AccountId, String), i64>,
    positions: BTreeMap<i64, Held<Position>>,
    fills: Vec<FillRow>,
    /// Per account: trade cash, fees, realized PnL added by the transaction.
    totals: BTreeMap<AccountId, [f64; 3]>,
    journal: Vec<(i64, Vec<u8>)>,
    /// Journal entries up to this id are deleted.
    prune_upto: Option<i64>,
    snapshots: Vec<SnapshotRow>,
}

impl TxRows {
    /// Whether the commit has anything to write.
    fn writes(&self) -> bool {
        self.orders.values().any(|o| o.new || o.dirty)
            || self.positions.values().any(|p| p.new || p.dirty)
            || !self.fills.is_empty()
            || !self.journal.is_empty()
            || self.prune_upto.is_some()
            || !self.snapshots.is_empty()
    }
}

/// A value bound to a [`Script`]'s next parameter.
enum Val {
    Int(i64),
    OptInt(Option<i64>),
    Real(f64),
    OptReal(Option<f64>),
    Text(String),
    OptText(Option<String>),
    Blob(Vec<u8>),
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}
impl From<Option<i64>> for Val {
    fn from(v: Option<i64>) -> Self {
        Val::OptInt(v)
    }
}
impl From<f64> for Val {
    fn from(v: f64) -> Self {
        Val::Real(v)
    }
}
impl From<Option<f64>> for Val {
    fn from(v: Option<f64>) -> Self {
        Val::OptReal(v)
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Text(v)
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Text(v.to_string())
    }
}
impl From<Option<String>> for Val {
    fn from(v: Option<String>) -> Self {
        Val::OptText(v)
    }
}
impl From<Vec<u8>> for Val {
    fn from(v: Vec<u8>) -> Self {
        Val::Blob(v)
    }
}

/// The SQLite statements of one trip, written with their values: each value bound writes the
/// parameter it fills, so the two cannot drift apart.
///
/// Parameters are anonymous (`?`), taken in order: SQLite looks a named parameter (`$n`) up
/// in a list of the statement's names, one by one, which made a 300-order commit (6,000
/// parameters) cost 50 ms. Rows are written one statement each: the statements run on the
/// writer's thread ([`sqlite_direct`]), prepared once, so a row costs a bind and a step
/// rather than a trip, and every statement's text is one of a few fixed ones.
#[derive(Default)]
struct Script {
    statements: Vec<Statement>,
    /// The statement being written.
    sql: String,
    args: Vec<Val>,
}

impl Script {
    fn push(&mut self, sql: &str) {
        self.sql.push_str(sql);
    }

    /// Bind `v` to the next parameter, whose `?` the caller wrote.
    fn bind(&mut self, v: impl Into<Val>) {
        self.args.push(v.into());
    }

    /// Bind `v` to the next parameter and write it (`?`).
    fn param(&mut self, v: impl Into<Val>) {
        self.bind(v);
        self.push("?");
    }

    /// End the statement being written.
    fn end(&mut self) {
        if !self.sql.is_empty() {
            self.statements.push(Statement {
                sql: std::mem::take(&mut self.sql),
                args: std::mem::take(&mut self.args),
            });
        }
    }

    /// `head` followed by each of `items`, one statement each.
    fn each(&mut self, head: &str, items: impl IntoIterator<Item = Val>) {
        for item in items {
            self.push(head);
            self.param(item);
            self.end();
        }
    }

    /// One statement per item: `head`, the item's row `(v1, v2, …)`, `tail`.
    fn rows<T>(
        &mut self,
        head: &str,
        tail: &str,
        items: impl IntoIterator<Item = T>,
        row: impl Fn(T) -> Vec<Val>,
    ) {
        for item in items {
            self.push(head);
            self.push("(");
            for (i, v) in row(item).into_iter().enumerate() {
                if i > 0 {
                    self.push(", ");
                }
                self.param(v);
            }
            self.push(")");
            self.push(tail);
            self.end();
        }
    }

    /// The statements written.
    fn finish(mut self) -> Vec<Statement> {
        self.end();
        self.statements
    }
}

/// `sql`, whose parameters `$1`, `$2`, … appear in that order, with each made `?` (see
/// [`Script`]).
fn positional(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    let mut expected = 1;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        out.push('?');
        rest = &rest[i + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        debug_assert_eq!(rest[..digits].parse::<usize>().ok(), Some(expected));
        expected += 1;
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// A current-thread runtime for a connection driven from a plain thread.
fn runtime() -> StoreResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StoreError::Open(format!("a runtime for the write connection: {e}")))
}

/// `ROLLBACK`, for the SQLite connection.
fn rollback() -> Statement {
    Statement {
        sql: "ROLLBACK".into(),
        args: Vec::new(),
    }
}

/// An order read by [`ORDER_COLUMNS`] through the writer's own SQLite statements.
fn order_from(row: &[sqlite_direct::Value]) -> StoreResult<Order> {
    let mut c = Columns::of(row, "orders");
    Ok(Order {
        id: c.int()?,
        account: c.parse()?,
        instance_id: c.opt_int()?,
        user_id: c.opt_int()?,
        symbol: c.text()?,
        side: c.parse()?,
        order_type: c.parse()?,
        quantity: c.real()?,
        limit_price: c.opt_real()?,
        stop_price: c.opt_real()?,
        time_in_force: c.parse()?,
        take_profit: c.opt_real()?,
        stop_loss: c.opt_real()?,
        status: c.parse()?,
        filled_qty: c.real()?,
        avg_price: c.opt_real()?,
        reason: c.opt_text()?,
        tag: c.opt_text()?,
        created_at: c.int()?,
        updated_at: c.int()?,
    })
}

/// A position read by [`POSITION_COLUMNS`] through the writer's own SQLite statements.
fn position_from(row: &[sqlite_direct::Value]) -> StoreResult<Position> {
    let mut c = Columns::of(row, "positions");
    Ok(Position {
        id: c.int()?,
        account: c.parse()?,
        symbol: c.text()?,
        side: c.parse()?,
        quantity: c.real()?,
        avg_price: c.real()?,
        realized_pnl: c.real()?,
        fees: c.real()?,
        opened_at: c.int()?,
        closed_at: c.opt_int()?,
        updated_at: c.int()?,
    })
}

/// Columns of the row that reads a SQLite transaction's next ids.
const NEXT_IDS: &str = "SELECT (SELECT COALESCE(MAX(id), 0) + 1 FROM orders), (SELECT COALESCE(MAX(id), 0) + 1 FROM fills), (SELECT COALESCE(MAX(id), 0) + 1 FROM positions), (SELECT COALESCE(MAX(id), 0) + 1 FROM live_journal)";

impl Writer {
    /// Open a connection to `store`'s database, set up as the pool's connections (on SQLite:
    /// WAL, `synchronous=NORMAL`, foreign keys, the store's busy timeout).
    pub fn open(store: &Store) -> StoreResult<Writer> {
        Writer::connect(store, true)
    }

    fn connect(store: &Store, checkpoints: bool) -> StoreResult<Writer> {
        use sqlx::ConnectOptions;
        let rt = runtime()?;
        let conn = match store.connect_options() {
            Connect::Sqlite(o) => {
                let mut c = rt.block_on(o.connect())?;
                if !checkpoints {
                    rt.block_on(sqlx::raw_sql("PRAGMA wal_autocheckpoint = 0").execute(&mut c))?;
                }
                Owned::Sqlite(DirectSqlite::lock(&rt, c)?)
            }
            Connect::Postgres(o) => Owned::Postgres(rt.block_on(o.connect())?),
        };
        Ok(Writer {
            rt,
            conn,
            store: store.clone(),
            open: false,
            aborted: false,
            changes: 0,
            cursors: Vec::new(),
            touches_catalog: false,
            tx: TxRows::default(),
            reserved: PerTable::default(),
        })
    }

    /// [`Writer::open`] for a writer on the hot path. On SQLite its commits never run a WAL
    /// checkpoint (copying pages back into the database file takes milliseconds, and SQLite
    /// runs it in the connection whose commit crosses 1,000 pages); `checkpointer` runs them
    /// beside it. PostgreSQL checkpoints by itself: its checkpointer does nothing.
    pub fn open_without_checkpoints(store: &Store) -> StoreResult<(Writer, Checkpointer)> {
        let w = Writer::connect(store, false)?;
        let checkpoints = match store.connect_options() {
            Connect::Sqlite(o) => Checkpointer::start(o.clone())?,
            Connect::Postgres(_) => Checkpointer::none(),
        };
        Ok((w, checkpoints))
    }

    /// Start a transaction. Its `BEGIN` goes out with its first read or at its commit; on
    /// SQLite it holds the write lock from then on, so it can never fail halfway on a lock
    /// another writer took after it started reading. Every write opens one when none is open,
    /// so a caller with nothing to write takes no lock.
    pub fn begin(&mut self) -> StoreResult<()> {
        if self.open {
            return Ok(());
        }
        self.open = true;
        self.aborted = false;
        self.touches_catalog = false;
        self.tx = TxRows::default();
        Ok(())
    }

    /// Read, in one trip, the orders `orders` and the open positions of `accounts` that the
    /// coming writes will touch. Only a saving: what is not prefetched is read when needed.
    pub fn prefetch(&mut self, orders: &[i64], accounts: &[AccountId]) -> StoreResult<()> {
        self.begin()?;
        self.load(orders, accounts)
    }

    /// Start the transaction if it has not (on SQLite with the read of the next ids), and
    /// read the orders and accounts' open positions not held yet.
    fn load(&mut self, orders: &[i64], accounts: &[AccountId]) -> StoreResult<()> {
        let mut orders: Vec<i64> = orders
            .iter()
            .copied()
            .filter(|id| !self.tx.orders.contains_key(id))
            .collect();
        orders.sort_unstable();
        orders.dedup();
        let mut accounts: Vec<AccountId> = accounts
            .iter()
            .copied()
            .filter(|a| !self.tx.accounts.contains(a))
            .collect();
        accounts.sort_unstable();
        accounts.dedup();
        let starts = !self.tx.started;
        if !starts && orders.is_empty() && accounts.is_empty() {
            return Ok(());
        }
        if let Owned::Postgres(c) = &mut self.conn {
            let names: Vec<String> = accounts.iter().map(|a| a.text()).collect();
            let read = self.rt.block_on(pg_load(c, starts, &orders, &names));
            let (positions, orders) = match read {
                Ok(read) => read,
                Err(e) => {
                    // A failed statement aborts a PostgreSQL transaction. End it now; the
                    // batch stays open as failed, so its commit rolls back whatever was
                    // written since and says so, and no half of it is ever stored.
                    let _ = self.rt.block_on(sqlx::raw_sql("ROLLBACK").execute(&mut *c));
                    self.tx = TxRows::default();
                    self.aborted = !starts;
                    if starts {
                        self.ended();
                    }
                    return Err(e);
                }
            };
            self.tx.started = true;
            for p in positions {
                self.tx
                    .open_positions
                    .insert((p.account, p.symbol.clone()), p.id);
                self.tx.positions.insert(p.id, Held::read(p));
            }
            for o in orders {
                self.tx.orders.insert(o.id, Held::read(o));
            }
            self.tx.accounts.extend(accounts);
            return Ok(());
        }
        let mut q = Script::default();
        if starts {
            q.push("BEGIN IMMEDIATE");
            q.end();
            q.push(NEXT_IDS);
            q.end();
        }
        q.each(
            &format!(
                "SELECT {POSITION_COLUMNS} FROM positions WHERE closed_at IS NULL AND account = "
            ),
            accounts.iter().map(|a| Val::from(a.text())),
        );
        q.each(
            &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = "),
            orders.iter().map(|id| Val::from(*id)),
        );
        let Owned::Sqlite(c) = &mut self.conn else {
            unreachable!("loads are SQLite's")
        };
        let mut rows = Vec::new();
        if let Err(e) = c.run(&q.finish(), &mut rows) {
            if starts {
                // The BEGIN may have run: end whatever it opened.
                let _ = c.run(&[rollback()], &mut Vec::new());
                self.ended();
            }
            return Err(e);
        }
        self.tx.started = true;
        let order_columns = ORDER_COLUMNS.split(',').count();
        let position_columns = POSITION_COLUMNS.split(',').count();
        for row in rows {
            let n = row.len();
            if n == 4 {
                let mut c = Columns::of(&row, "orders");
                self.tx.next = PerTable {
                    order: c.int()?,
                    fill: c.int()?,
                    position: c.int()?,
                    journal: c.int()?,
                };
            } else if n == position_columns {
                let p = position_from(&row)?;
                self.tx
                    .open_positions
                    .insert((p.account, p.symbol.clone()), p.id);
                self.tx.positions.insert(p.id, Held::read(p));
            } else if n == order_columns {
                let o = order_from(&row)?;
                self.tx.orders.insert(o.id, Held::read(o));
            }
        }
        self.tx.accounts.extend(accounts);
        Ok(())
    }

    /// The transaction is over (committed or rolled back).
    fn ended(&mut self) {
        self.open = false;
        self.cursors.clear();
        self.tx = TxRows::default();
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
        let cursors = std::mem::take(&mut self.cursors);
        let aborted = std::mem::take(&mut self.aborted);
        if !aborted && !self.tx.started && !self.tx.writes() && cursors.is_empty() {
            // Nothing was sent and nothing is to be: there is nothing to commit.
            self.ended();
            return Ok(());
        }
        let t = now();
        let done: StoreResult<u64> = match &mut self.conn {
            Owned::Sqlite(c) => c.run(
                &commit_script(&self.tx, &cursors, t).finish(),
                &mut Vec::new(),
            ),
            Owned::Postgres(c) if aborted => self
                .rt
                .block_on(sqlx::raw_sql("ROLLBACK").execute(&mut *c))
                .map(|_| 0)
                .map_err(StoreError::from),
            Owned::Postgres(c) => self.rt.block_on(pg_commit(c, &self.tx, &cursors, t)),
        };
        self.ended();
        match done {
            Ok(changed) => self.changes += changed,
            Err(e) => {
                let _ = match &mut self.conn {
                    Owned::Sqlite(c) => c.run(&[rollback()], &mut Vec::new()).map(drop),
                    Owned::Postgres(c) => self
                        .rt
                        .block_on(sqlx::raw_sql("ROLLBACK").execute(c))
                        .map(drop)
                        .map_err(StoreError::from),
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

    /// The id the next new row of `table` takes.
    fn take_id(&mut self, table: Table) -> StoreResult<i64> {
        let c = match &mut self.conn {
            Owned::Sqlite(_) => {
                self.load(&[], &[])?;
                let slot = self.tx.next.get_mut(table);
                *slot += 1;
                return Ok(*slot - 1);
            }
            Owned::Postgres(c) => c,
        };
        let ids = self.reserved.get_mut(table);
        if ids.is_empty() {
            // Outside the transaction's fate: a sequence never gives a number twice.
            let sql = format!(
                "SELECT nextval(pg_get_serial_sequence('{}', 'id')) FROM generate_series(1, {IDS_RESERVED})",
                table.name()
            );
            let mut taken: Vec<i64> = self
                .rt
                .block_on(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(c))?;
            taken.sort_unstable_by(|a, b| b.cmp(a));
            *ids = taken;
        }
        ids.pop().ok_or_else(|| StoreError::Corrupt {
            table: table.name(),
            message: "its sequence gave no ids".into(),
        })
    }

    /// Store an order; its id.
    pub fn insert_order(&mut self, o: &NewOrder) -> StoreResult<i64> {
        self.begin()?;
        let id = self.take_id(Table::Orders)?;
        let t = now();
        let order = Order {
            id,
            account: o.account,
            instance_id: o.instance_id,
            user_id: o.user_id,
            symbol: o.symbol.clone(),
            side: o.side,
            order_type: o.order_type,
            quantity: o.quantity,
            limit_price: o.limit_price,
            stop_price: o.stop_price,
            time_in_force: o.time_in_force,
            take_profit: o.take_profit,
            stop_loss: o.stop_loss,
            status: o.status,
            filled_qty: 0.0,
            avg_price: None,
            reason: o.reason.clone(),
            tag: o.tag.clone(),
            created_at: t,
            updated_at: t,
        };
        self.tx.orders.insert(id, Held::new(order));
        Ok(id)
    }

    /// Cancel a working order; whether it was working.
    pub fn cancel_order(&mut self, id: i64, reason: &str) -> StoreResult<bool> {
        self.begin()?;
        self.load(&[id], &[])?;
        let Some(held) = self.tx.orders.get_mut(&id) else {
            return Ok(false);
        };
        if !held.row.is_working() {
            return Ok(false);
        }
        let o = held.change();
        o.status = OrderStatus::Cancelled;
        o.reason = Some(reason.to_string());
        o.updated_at = now();
        Ok(true)
    }

    /// Book an execution of order `order_id` ([`plan_fill`]) in this transaction.
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
        self.begin()?;
        self.load(&[order_id], &[])?;
        let account = match self.tx.orders.get(&order_id) {
            Some(o) => o.row.account,
            None => return Err(StoreError::NotFound(format!("order {order_id}"))),
        };
        self.load(&[], std::slice::from_ref(&account))?;
        let order = &self.tx.orders[&order_id].row;
        let key = (account, order.symbol.clone());
        let open = self.tx.open_positions.get(&key).map(|id| {
            let p = &self.tx.positions[id].row;
            OpenPosition {
                id: p.id,
                quantity: p.quantity,
                avg_price: p.avg_price,
                opened_at: p.opened_at,
            }
        });
        let plan = plan_fill(order, open, quantity, price, fee, ts)?;
        let fill_id = self.take_id(Table::Fills)?;
        let new_position_id = match plan.step {
            PositionMove::Open | PositionMove::Reverse => Some(self.take_id(Table::Positions)?),
            PositionMove::Move | PositionMove::Close => None,
        };
        let t = now();
        let tx = &mut self.tx;
        let o = tx.orders.get_mut(&order_id).expect("held above").change();
        o.filled_qty = plan.filled;
        o.avg_price = Some(plan.avg_price);
        o.status = plan.status;
        o.updated_at = t;
        let record = FillRecord {
            id: fill_id,
            order_id,
            position_id: None,
            account: o.account,
            symbol: o.symbol.clone(),
            side: o.side,
            quantity,
            price,
            fee,
            ts,
            order_type: o.order_type,
            tag: o.tag.clone(),
            user_id: o.user_id,
        };
        // Close or move what is open, then open what the fill starts.
        if let Some(open) = open {
            let p = tx.positions.get_mut(&open.id).expect("held").change();
            p.realized_pnl += plan.realized;
            p.fees += plan.open_fee;
            p.updated_at = t;
            match plan.step {
                PositionMove::Move => {
                    p.quantity = plan.quantity_after;
                    p.avg_price = plan.avg_price_after;
                }
                _ => {
                    p.quantity = 0.0;
                    p.closed_at = Some(ts);
                    tx.open_positions.remove(&key);
                }
            }
        }
        // A fill that goes through flat belongs to the trade it closes.
        let mut position_id = open.map(|p| p.id);
        if let Some(id) = new_position_id {
            tx.positions.insert(
                id,
                Held::new(Position {
                    id,
                    account: key.0,
                    symbol: key.1.clone(),
                    side: plan.position_side,
                    quantity: plan.quantity_after,
                    avg_price: plan.avg_price_after,
                    realized_pnl: 0.0,
                    fees: plan.new_fee,
                    opened_at: ts,
                    closed_at: None,
                    updated_at: t,
                }),
            );
            tx.open_positions.insert(key.clone(), id);
            position_id = position_id.or(Some(id));
        }
        let totals = tx.totals.entry(key.0).or_default();
        totals[0] += plan.trade_cash;
        totals[1] += fee;
        totals[2] += plan.realized;
        tx.fills.push(FillRow {
            id: record.id,
            order_id,
            account: key.0,
            symbol: key.1,
            side: record.side,
            quantity,
            price,
            fee,
            ts,
            position_id,
        });
        Ok(FillRecord {
            position_id,
            ..record
        })
    }

    /// Move the live engine's stream cursors, with the commit. A cursor given twice moves to
    /// the later one.
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
        self.begin()?;
        // The later snapshot of a strategy replaces the earlier one of the same batch.
        self.tx.snapshots.retain(|s| s.strategy_id != strategy_id);
        self.tx.snapshots.push(SnapshotRow {
            strategy_id,
            state: state.to_vec(),
            ts,
            seqs,
        });
        self.touches_catalog = true;
        Ok(())
    }

    /// Journal bars the engine handled (symbol, sequence number, bar) as one entry; its id.
    pub fn save_bars(&mut self, bars: &[(String, u64, Bar)]) -> StoreResult<i64> {
        let blob = super::live::encode_bars(bars);
        self.begin()?;
        let id = self.take_id(Table::Journal)?;
        self.tx.journal.push((id, blob));
        Ok(id)
    }

    /// Drop the journal entries up to `id`: no running instance needs their bars.
    pub fn prune_bars(&mut self, id: i64) -> StoreResult<()> {
        self.begin()?;
        self.tx.prune_upto = Some(self.tx.prune_upto.map_or(id, |u| u.max(id)));
        Ok(())
    }
}

/// Stores a snapshot: $1 state, $2 ts, $3 sequence numbers, $4 strategy.
const SAVE_SNAPSHOT: &str = "UPDATE strategy_instances SET last_snapshot = $1, snapshot_at = $2, snapshot_seqs = $3 WHERE strategy_id = $4";

/// The query that commits a SQLite transaction: `BEGIN IMMEDIATE` when nothing went out
/// yet, every write the transaction holds, the cursors (at `t`) and `COMMIT`.
///
/// Statement order keeps every constraint true at every step: orders before the fills that
/// name them; stored positions updated (closed) before new ones are inserted (one open
/// position per account and symbol), both before the fills that name them.
fn commit_script(tx: &TxRows, cursors: &[(String, Cursor)], t: i64) -> Script {
    let mut q = Script::default();
    if !tx.started {
        q.push("BEGIN IMMEDIATE");
        q.end();
    }
    q.rows(
        "INSERT INTO orders (id, account, instance_id, user_id, symbol, side, order_type, quantity, limit_price, stop_price, time_in_force, take_profit, stop_loss, status, filled_qty, avg_price, reason, tag, created_at, updated_at) VALUES ",
        "",
        tx.orders.values().filter(|o| o.new),
        |o| {
            let o = &o.row;
            vec![
                o.id.into(),
                o.account.text().into(),
                o.instance_id.into(),
                o.user_id.into(),
                o.symbol.as_str().into(),
                o.side.as_str().into(),
                o.order_type.as_str().into(),
                o.quantity.into(),
                o.limit_price.into(),
                o.stop_price.into(),
                o.time_in_force.as_str().into(),
                o.take_profit.into(),
                o.stop_loss.into(),
                o.status.as_str().into(),
                o.filled_qty.into(),
                o.avg_price.into(),
                o.reason.clone().into(),
                o.tag.clone().into(),
                o.created_at.into(),
                o.updated_at.into(),
            ]
        },
    );
    // Stored rows change one statement each, by primary key: SQLite runs an `UPDATE … FROM
    // (VALUES …)` as a scan of the whole table.
    for p in tx.positions.values().filter(|p| p.dirty) {
        let p = &p.row;
        q.push("UPDATE positions SET quantity = ");
        q.param(p.quantity);
        q.push(", avg_price = ");
        q.param(p.avg_price);
        q.push(", realized_pnl = ");
        q.param(p.realized_pnl);
        q.push(", fees = ");
        q.param(p.fees);
        q.push(", closed_at = ");
        q.param(p.closed_at);
        q.push(", updated_at = ");
        q.param(p.updated_at);
        q.push(" WHERE id = ");
        q.param(p.id);
        q.end();
    }
    q.rows(
        "INSERT INTO positions (id, account, symbol, side, quantity, avg_price, realized_pnl, fees, opened_at, closed_at, updated_at) VALUES ",
        "",
        tx.positions.values().filter(|p| p.new),
        |p| {
            let p = &p.row;
            vec![
                p.id.into(),
                p.account.text().into(),
                p.symbol.as_str().into(),
                p.side.as_str().into(),
                p.quantity.into(),
                p.avg_price.into(),
                p.realized_pnl.into(),
                p.fees.into(),
                p.opened_at.into(),
                p.closed_at.into(),
                p.updated_at.into(),
            ]
        },
    );
    q.rows(
        "INSERT INTO fills (id, order_id, account, symbol, side, quantity, price, fee, ts, position_id) VALUES ",
        "",
        &tx.fills,
        |f| {
            vec![
                f.id.into(),
                f.order_id.into(),
                f.account.text().into(),
                f.symbol.as_str().into(),
                f.side.as_str().into(),
                f.quantity.into(),
                f.price.into(),
                f.fee.into(),
                f.ts.into(),
                f.position_id.into(),
            ]
        },
    );
    for o in tx.orders.values().filter(|o| o.dirty) {
        let o = &o.row;
        q.push("UPDATE orders SET filled_qty = ");
        q.param(o.filled_qty);
        q.push(", avg_price = ");
        q.param(o.avg_price);
        q.push(", status = ");
        q.param(o.status.as_str());
        q.push(", reason = ");
        q.param(o.reason.clone());
        q.push(", updated_at = ");
        q.param(o.updated_at);
        q.push(" WHERE id = ");
        q.param(o.id);
        q.end();
    }
    q.rows(
        "INSERT INTO account_totals (account, trade_cash, fees, realized_pnl) VALUES ",
        " ON CONFLICT (account) DO UPDATE SET trade_cash = account_totals.trade_cash + excluded.trade_cash, fees = account_totals.fees + excluded.fees, realized_pnl = account_totals.realized_pnl + excluded.realized_pnl",
        &tx.totals,
        |(account, [cash, fees, realized])| {
            vec![
                account.text().into(),
                (*cash).into(),
                (*fees).into(),
                (*realized).into(),
            ]
        },
    );
    q.rows(
        "INSERT INTO live_journal (id, bars) VALUES ",
        "",
        &tx.journal,
        |(id, bars)| vec![(*id).into(), bars.clone().into()],
    );
    if let Some(upto) = tx.prune_upto {
        q.push("DELETE FROM live_journal WHERE id <= ");
        q.param(upto);
        q.end();
    }
    for s in &tx.snapshots {
        q.push(&positional(SAVE_SNAPSHOT));
        q.bind(s.state.clone());
        q.bind(s.ts);
        q.bind(s.seqs.as_str());
        q.bind(s.strategy_id);
        q.end();
    }
    let upsert_cursor = positional(&super::live::upsert_cursors_sql(1));
    for (symbol, c) in cursors {
        q.push(&upsert_cursor);
        q.bind(symbol.as_str());
        q.bind(c.seq);
        q.bind(c.ts);
        q.bind(c.close);
        q.bind(t);
        q.end();
    }
    q.push("COMMIT");
    q.end();
    q
}

/// PostgreSQL: start the transaction when `starts`, and read the open positions of
/// `accounts` and the orders `orders`, locked for the transaction (`FOR UPDATE`).
async fn pg_load(
    c: &mut PgConnection,
    starts: bool,
    orders: &[i64],
    accounts: &[String],
) -> StoreResult<(Vec<Position>, Vec<Order>)> {
    if starts {
        sqlx::raw_sql("BEGIN").execute(&mut *c).await?;
    }
    let positions = if accounts.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {POSITION_COLUMNS} FROM positions WHERE closed_at IS NULL AND account = ANY($1) FOR UPDATE"
        )))
        .bind(accounts)
        .fetch_all(&mut *c)
        .await?
    };
    let orders = if orders.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE id = ANY($1) FOR UPDATE"
        )))
        .bind(orders)
        .fetch_all(&mut *c)
        .await?
    };
    Ok((positions, orders))
}

/// `t` as PostgreSQL text can hold it: without NUL, which it refuses (and with it the whole
/// batch). A guest's tag or a refused order's symbol may carry one; it is stored as U+FFFD.
fn pg_text(t: &str) -> String {
    t.replace('\0', "\u{FFFD}")
}

/// PostgreSQL: write everything `tx` holds and the cursors (at `t`), and commit; the rows
/// changed.
///
/// Each table's rows go as one statement whatever their number, its values bound as one
/// array per column (`UNNEST`), so a commit costs a trip per table it touches, not per row.
/// The statements run in [`commit_script`]'s order, for the same constraints.
async fn pg_commit(
    c: &mut PgConnection,
    tx: &TxRows,
    cursors: &[(String, Cursor)],
    t: i64,
) -> StoreResult<u64> {
    fn col<T, U>(rows: &[&T], f: impl Fn(&T) -> U) -> Vec<U> {
        rows.iter().map(|r| f(r)).collect()
    }
    if !tx.started {
        sqlx::raw_sql("BEGIN").execute(&mut *c).await?;
    }
    let mut changed = 0;
    let new_orders: Vec<&Order> = tx
        .orders
        .values()
        .filter(|o| o.new)
        .map(|o| &o.row)
        .collect();
    if !new_orders.is_empty() {
        let o = &new_orders;
        changed += sqlx::query(
            "INSERT INTO orders (id, account, instance_id, user_id, symbol, side, order_type, quantity, limit_price, stop_price, time_in_force, take_profit, stop_loss, status, filled_qty, avg_price, reason, tag, created_at, updated_at) \
             SELECT * FROM UNNEST($1::int8[], $2::text[], $3::int8[], $4::int8[], $5::text[], $6::text[], $7::text[], $8::float8[], $9::float8[], $10::float8[], $11::text[], $12::float8[], $13::float8[], $14::text[], $15::float8[], $16::float8[], $17::text[], $18::text[], $19::int8[], $20::int8[])",
        )
        .bind(col(o, |o| o.id))
        .bind(col(o, |o| o.account.text()))
        .bind(col(o, |o| o.instance_id))
        .bind(col(o, |o| o.user_id))
        .bind(col(o, |o| pg_text(&o.symbol)))
        .bind(col(o, |o| o.side.as_str()))
        .bind(col(o, |o| pg_text(o.order_type.as_str())))
        .bind(col(o, |o| o.quantity))
        .bind(col(o, |o| o.limit_price))
        .bind(col(o, |o| o.stop_price))
        .bind(col(o, |o| pg_text(o.time_in_force.as_str())))
        .bind(col(o, |o| o.take_profit))
        .bind(col(o, |o| o.stop_loss))
        .bind(col(o, |o| o.status.as_str()))
        .bind(col(o, |o| o.filled_qty))
        .bind(col(o, |o| o.avg_price))
        .bind(col(o, |o| o.reason.as_deref().map(pg_text)))
        .bind(col(o, |o| o.tag.as_deref().map(pg_text)))
        .bind(col(o, |o| o.created_at))
        .bind(col(o, |o| o.updated_at))
        .execute(&mut *c)
        .await?
        .rows_affected();
    }
    let moved: Vec<&Position> = tx
        .positions
        .values()
        .filter(|p| p.dirty)
        .map(|p| &p.row)
        .collect();
    if !moved.is_empty() {
        let p = &moved;
        changed += sqlx::query(
            "UPDATE positions p SET quantity = v.quantity, avg_price = v.avg_price, realized_pnl = v.realized_pnl, fees = v.fees, closed_at = v.closed_at, updated_at = v.updated_at \
             FROM UNNEST($1::int8[], $2::float8[], $3::float8[], $4::float8[], $5::float8[], $6::int8[], $7::int8[]) AS v (id, quantity, avg_price, realized_pnl, fees, closed_at, updated_at) \
             WHERE p.id = v.id",
        )
        .bind(col(p, |p| p.id))
        .bind(col(p, |p| p.quantity))
        .bind(col(p, |p| p.avg_price))
        .bind(col(p, |p| p.realized_pnl))
        .bind(col(p, |p| p.fees))
        .bind(col(p, |p| p.closed_at))
        .bind(col(p, |p| p.updated_at))
        .execute(&mut *c)
        .await?
        .rows_affected();
    }
    let opened: Vec<&Position> = tx
        .positions
        .values()
        .filter(|p| p.new)
        .map(|p| &p.row)
        .collect();
    if !opened.is_empty() {
        let p = &opened;
        changed += sqlx::query(
            "INSERT INTO positions (id, account, symbol, side, quantity, avg_price, realized_pnl, fees, opened_at, closed_at, updated_at) \
             SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::float8[], $7::float8[], $8::float8[], $9::int8[], $10::int8[], $11::int8[])",
        )
        .bind(col(p, |p| p.id))
        .bind(col(p, |p| p.account.text()))
        .bind(col(p, |p| pg_text(&p.symbol)))
        .bind(col(p, |p| p.side.as_str()))
        .bind(col(p, |p| p.quantity))
        .bind(col(p, |p| p.avg_price))
        .bind(col(p, |p| p.realized_pnl))
        .bind(col(p, |p| p.fees))
        .bind(col(p, |p| p.opened_at))
        .bind(col(p, |p| p.closed_at))
        .bind(col(p, |p| p.updated_at))
        .execute(&mut *c)
        .await?
        .rows_affected();
    }
    if !tx.fills.is_empty() {
        let f: Vec<&FillRow> = tx.fills.iter().collect();
        let f = &f;
        changed += sqlx::query(
            "INSERT INTO fills (id, order_id, account, symbol, side, quantity, price, fee, ts, position_id) \
             SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::float8[], $7::float8[], $8::float8[], $9::int8[], $10::int8[])",
        )
        .bind(col(f, |f| f.id))
        .bind(col(f, |f| f.order_id))
        .bind(col(f, |f| f.account.text()))
        .bind(col(f, |f| pg_text(&f.symbol)))
        .bind(col(f, |f| f.side.as_str()))
        .bind(col(f, |f| f.quantity))
        .bind(col(f, |f| f.price))
        .bind(col(f, |f| f.fee))
        .bind(col(f, |f| f.ts))
        .bind(col(f, |f| f.position_id))
        .execute(&mut *c)
        .await?
        .rows_affected();
    }
    let updated: Vec<&Order> = tx
        .orders
        .values()
        .filter(|o| o.dirty)
        .map(|o| &o.row)
        .collect();
    if !updated.is_empty() {
        let o = &updated;
        changed += sqlx::query(
            "UPDATE orders o SET filled_qty = v.filled_qty, avg_price = v.avg_price, status = v.status, reason = v.reason, updated_at = v.updated_at \
             FROM UNNEST($1::int8[], $2::float8[], $3::float8[], $4::text[], $5::text[], $6::int8[]) AS v (id, filled_qty, avg_price, status, reason, updated_at) \
             WHERE o.id = v.id",
        )
        .bind(col(o, |o| o.id))
        .bind(col(o, |o| o.filled_qty))
        .bind(col(o, |o| o.avg_price))
        .bind(col(o, |o| o.status.as_str()))
        .bind(col(o, |o| o.reason.as_deref().map(pg_text)))
        .bind(col(o, |o| o.updated_at))
        .execute(&mut *c)
        .await?
        .rows_affected();
    }
    if !tx.totals.is_empty() {
        let accounts: Vec<String> = tx.totals.keys().map(|a| a.text()).collect();
        let total = |i: usize| -> Vec<f64> { tx.totals.values().map(|t| t[i]).collect() };
        changed += sqlx::query(
            "INSERT INTO account_totals (account, trade_cash, fees, realized_pnl) \
             SELECT * FROM UNNEST($1::text[], $2::float8[], $3::float8[], $4::float8[]) \
             ON CONFLICT (account) DO UPDATE SET trade_cash = account_totals.trade_cash + excluded.trade_cash, fees = account_totals.fees + excluded.fees, realized_pnl = account_totals.realized_pnl + excluded.realized_pnl",
        )
        .bind(accounts)
        .bind(total(0))
        .bind(total(1))
        .bind(total(2))
        .execute(&mut *c)
        .await?
        .rows_affected();
    }
    if !tx.journal.is_empty() {
        let j: Vec<&(i64, Vec<u8>)> = tx.journal.iter().collect();
        let j = &j;
        changed += sqlx::query(
            "INSERT INTO live_journal (id, bars) SELECT * FROM UNNEST($1::int8[], $2::bytea[])",
        )
        .bind(col(j, |(id, _)| *id))
        .bind(col(j, |(_, bars)| bars.clone()))
        .execute(&mut *c)
        .await?
        .rows_affected();
    }
    if let Some(upto) = tx.prune_upto {
        changed += sqlx::query("DELETE FROM live_journal WHERE id <= $1")
            .bind(upto)
            .execute(&mut *c)
            .await?
            .rows_affected();
    }
    if !tx.snapshots.is_empty() {
        let s: Vec<&SnapshotRow> = tx.snapshots.iter().collect();
        let s = &s;
        changed += sqlx::query(
            "UPDATE strategy_instances i SET last_snapshot = v.state, snapshot_at = v.ts, snapshot_seqs = v.seqs \
             FROM UNNEST($1::int8[], $2::bytea[], $3::int8[], $4::text[]) AS v (strategy_id, state, ts, seqs) \
             WHERE i.strategy_id = v.strategy_id",
        )
        .bind(col(s, |s| s.strategy_id))
        .bind(col(s, |s| s.state.clone()))
        .bind(col(s, |s| s.ts))
        .bind(col(s, |s| s.seqs.clone()))
        .execute(&mut *c)
        .await?
        .rows_affected();
    }
    if !cursors.is_empty() {
        let k: Vec<&(String, Cursor)> = cursors.iter().collect();
        let k = &k;
        changed += sqlx::query(
            "INSERT INTO live_cursors (symbol, seq, ts, close, updated_at) \
             SELECT v.*, $5 FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::float8[]) AS v \
             ON CONFLICT (symbol) DO UPDATE SET seq = excluded.seq, ts = excluded.ts, close = excluded.close, updated_at = excluded.updated_at",
        )
        .bind(col(k, |(s, _)| pg_text(s)))
        .bind(col(k, |(_, c)| c.seq))
        .bind(col(k, |(_, c)| c.ts))
        .bind(col(k, |(_, c)| c.close))
        .bind(t)
        .execute(&mut *c)
        .await?
        .rows_affected();
    }
    sqlx::raw_sql("COMMIT").execute(&mut *c).await?;
    Ok(changed)
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
#[derive(Debug, Clone, Copy)]
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

/// The open position a fill finds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenPosition {
    id: i64,
    quantity: f64,
    avg_price: f64,
    opened_at: i64,
}

/// What a fill does to its order, its account's position and its account's totals.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FillPlan {
    step: PositionMove,
    /// The order's filled quantity, average fill price and status after the fill.
    filled: f64,
    avg_price: f64,
    status: OrderStatus,
    /// Cash the trade moves (negative for a buy), before fees.
    trade_cash: f64,
    /// Price PnL the fill realizes, all of it on the position it reduces or closes.
    realized: f64,
    /// Side, signed quantity and average price of the position open after the fill.
    position_side: PositionSide,
    quantity_after: f64,
    avg_price_after: f64,
    /// The fee's share of the position the fill finds, and of the one it opens.
    open_fee: f64,
    new_fee: f64,
}

/// Decide what a fill of `quantity` at `price` with `fee` at `ts` does to `order` and to the
/// open position of its account in its symbol (`open`), with realized PnL kept apart from
/// fees: the one implementation of fill booking.
///
/// `Conflict` when the order is not working, the fill is larger than what is left, or its
/// numbers are not positive and finite.
pub(crate) fn plan_fill(
    order: &Order,
    open: Option<OpenPosition>,
    quantity: f64,
    price: f64,
    fee: f64,
    ts: i64,
) -> StoreResult<FillPlan> {
    let order_id = order.id;
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
    let signed = order.side.signed(quantity);
    let mut book = Portfolio::new(vec![order.symbol.clone()].into(), 0.0);
    if let Some(p) = open {
        book.apply_fill(0, p.quantity, p.avg_price, 0.0, p.opened_at);
    }
    // Fees are kept apart (the `fees` column), so realized PnL is the price move alone.
    book.apply_fill(0, signed, price, 0.0, ts);
    let after = book.position(0);
    let (step, open_fee, new_fee) = match open {
        Some(_) if after.quantity == 0.0 => (PositionMove::Close, fee, 0.0),
        Some(p) if (after.quantity > 0.0) != (p.quantity > 0.0) => {
            // Through flat: the closing part pays its share of the fee.
            let closing_fee = fee * p.quantity.abs() / quantity;
            (PositionMove::Reverse, closing_fee, fee - closing_fee)
        }
        Some(_) => (PositionMove::Move, fee, 0.0),
        None => (PositionMove::Open, 0.0, fee),
    };
    let filled = order.filled_qty + quantity;
    Ok(FillPlan {
        step,
        filled,
        avg_price: (order.avg_price.unwrap_or(0.0) * order.filled_qty + price * quantity) / filled,
        status: if filled >= order.quantity * (1.0 - 1e-9) {
            OrderStatus::Filled
        } else {
            OrderStatus::PartiallyFilled
        },
        trade_cash: -order.side.signed(quantity) * price,
        realized: book.realized(),
        position_side: PositionSide::of(after.quantity),
        quantity_after: after.quantity,
        avg_price_after: after.avg_price,
        open_fee,
        new_fee,
    })
}

/// Book an execution of order `order_id` through `conn`, inside the caller's transaction:
/// read the order and its open position, [`plan_fill`], and write the fill row, the order,
/// the position (opened, grown, reduced, closed, or closed and reversed) and the account's
/// running totals.
///
/// `Conflict` when the order is not working or the fill is larger than what is left.
pub(crate) async fn book_fill(
    conn: Conn<'_>,
    order_id: i64,
    quantity: f64,
    price: f64,
    fee: f64,
    ts: i64,
) -> StoreResult<FillRecord> {
    let sqlite = matches!(conn, Conn::Sqlite(_));
    with_conn!(conn, c => {
        let read = sqlx::query_as::<_, FillRead>(FILL_READ)
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
        let open = match (pos_id, pos_quantity, pos_avg_price, pos_opened_at) {
            (Some(id), Some(quantity), Some(avg_price), Some(opened_at)) => Some(OpenPosition {
                id,
                quantity,
                avg_price,
                opened_at,
            }),
            _ => None,
        };
        let plan = plan_fill(&order, open, quantity, price, fee, ts)?;
        let known_position = match plan.step {
            PositionMove::Open => None,
            _ => pos_id,
        };
        let args = |sql: String| {
            sqlx::query_as::<_, (i64, Option<i64>)>(sqlx::AssertSqlSafe(sql))
                .bind(order_id)
                .bind(order.account.text())
                .bind(&order.symbol)
                .bind(order.side.as_str())
                .bind(quantity)
                .bind(price)
                .bind(fee)
                .bind(ts)
                .bind(now())
                .bind(plan.filled)
                .bind(plan.avg_price)
                .bind(plan.status.as_str())
                .bind(plan.trade_cash)
                .bind(plan.realized)
                .bind(pos_id)
                .bind(plan.position_side.as_str())
                .bind(plan.quantity_after)
                .bind(plan.avg_price_after)
                .bind(plan.open_fee)
                .bind(plan.new_fee)
                .bind(known_position)
        };
        let row = if sqlite {
            // Every statement runs: `fetch_all` steps them all (a fetch of one row would
            // stop at the first row).
            args(plan.step.joined())
                .fetch_all(&mut *c)
                .await?
                .pop()
        } else {
            let statements = plan.step.statements();
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

    /// Quotes, backslashes, a statement's end and non-ASCII text.
    const HOSTILE: &str = "it's \\' \\\\'; DROP TABLE orders; -- é ✓ \\x00";

    const ACCT: AccountId = AccountId::Strategy(qtm_core::vocab::StrategyId(1));

    fn cursor(seq: i64) -> Cursor {
        Cursor {
            seq,
            ts: 1_000 + seq,
            close: 10.0 + seq as f64,
        }
    }

    #[tokio::test]
    async fn a_nul_in_a_tag_is_stored_without_failing_the_batch() {
        for store in crate::test_stores().await {
            let s = store.clone();
            let id = tokio::task::spawn_blocking(move || {
                let mut w = Writer::open(&s).unwrap();
                let id = w
                    .insert_order(&NewOrder {
                        account: ACCT,
                        symbol: "X".into(),
                        quantity: 1.0,
                        tag: Some("a\0b".into()),
                        ..NewOrder::default()
                    })
                    .unwrap();
                w.commit().unwrap();
                id
            })
            .await
            .unwrap();
            // PostgreSQL text cannot hold NUL; SQLite keeps it.
            let expected = match store.backend() {
                crate::Backend::Sqlite => "a\0b",
                crate::Backend::Postgres => "a\u{FFFD}b",
            };
            let tag = crate::orders::get(&store, id).await.unwrap().tag;
            assert_eq!(tag.as_deref(), Some(expected));
        }
    }

    #[tokio::test]
    async fn many_cursors_are_inserted_then_moved_in_one_commit_each() {
        const MANY: usize = 70;
        for store in crate::test_stores().await {
            let w = store.clone();
            tokio::task::spawn_blocking(move || {
                let mut w = Writer::open(&w).unwrap();
                // Many, then a few moved and one new.
                let first: Vec<(String, Cursor)> = (0..MANY as i64)
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
            let stored = crate::live::cursors(&store).await.unwrap();
            assert_eq!(stored.len(), MANY + 1);
            assert_eq!(stored["S0"], cursor(0));
            assert_eq!(stored["S1"], cursor(500));
            assert_eq!(stored["S3"], cursor(700));
            assert_eq!(stored["NEW"], cursor(9));
            let last = format!("S{}", MANY - 1);
            assert_eq!(stored[&last], cursor(MANY as i64 - 1));
        }
    }

    #[test]
    fn numbered_parameters_become_positional() {
        assert_eq!(
            positional("UPDATE t SET a = $1, b = $2 WHERE id = $3"),
            "UPDATE t SET a = ?, b = ?, id = ?".replace(", id", " WHERE id")
        );
    }

    #[tokio::test]
    async fn orders_placed_filled_and_cancelled_in_one_batch_are_all_stored() {
        use crate::orders;
        for store in crate::test_stores().await {
            let s = store.clone();
            let (a, b, c, fill) = tokio::task::spawn_blocking(move || {
                let mut w = Writer::open(&s).unwrap();
                let order = |side: &str| NewOrder {
                    account: ACCT,
                    symbol: "X".into(),
                    side: side.parse().unwrap(),
                    quantity: 2.0,
                    ..NewOrder::default()
                };
                // Text that must arrive as it was, whatever quoting the statement needs.
                let tagged = NewOrder {
                    tag: Some(HOSTILE.into()),
                    ..order("buy")
                };
                let a = w.insert_order(&tagged).unwrap();
                let b = w.insert_order(&order("sell")).unwrap();
                // Reads and changes of orders not sent yet see them.
                let fill = w.record_fill(a, 2.0, 10.0, 0.5, 100).unwrap();
                assert!(w.cancel_order(b, HOSTILE).unwrap());
                let c = w.insert_order(&order("buy")).unwrap();
                w.commit().unwrap();
                (a, b, c, fill)
            })
            .await
            .unwrap();
            assert!(a < b && b < c, "{a} {b} {c}");
            let stored = orders::get(&store, a).await.unwrap();
            assert_eq!(
                (stored.status, stored.tag.as_deref()),
                (OrderStatus::Filled, Some(HOSTILE))
            );
            assert_eq!(
                orders::get(&store, b).await.unwrap().reason.as_deref(),
                Some(HOSTILE)
            );
            assert_eq!(
                orders::get(&store, b).await.unwrap().status,
                OrderStatus::Cancelled
            );
            assert_eq!(
                orders::get(&store, c).await.unwrap().status,
                OrderStatus::Accepted
            );
            assert_eq!((fill.order_id, fill.quantity), (a, 2.0));
            let position = orders::position(&store, fill.position_id.unwrap())
                .await
                .unwrap();
            assert_eq!((position.quantity, position.fees), (2.0, 0.5));
            assert_eq!(
                orders::cash_flow(&store, Some(ACCT)).await.unwrap(),
                (-20.5, 0.5)
            );
        }
    }

    #[tokio::test]
    async fn a_reversal_and_the_journal_are_booked_alike_on_every_store() {
        use crate::orders;
        let bar = |ts: i64| Bar {
            ts,
            open: 1.0,
            high: 1.0,
            low: 1.0,
            close: 1.0,
            volume: 1.0,
        };
        for store in crate::test_stores().await {
            let s = store.clone();
            let (first, second, journal) = tokio::task::spawn_blocking(move || {
                let mut w = Writer::open(&s).unwrap();
                let order = |side: &str, quantity: f64| NewOrder {
                    account: ACCT,
                    symbol: "X".into(),
                    side: side.parse().unwrap(),
                    quantity,
                    ..NewOrder::default()
                };
                let buy = w.insert_order(&order("buy", 3.0)).unwrap();
                let first = w.record_fill(buy, 3.0, 10.0, 0.0, 100).unwrap();
                w.save_bars(&[("X".into(), 1, bar(100))]).unwrap();
                w.commit().unwrap();
                // Next batch: through flat (the stored long closes, a short opens), and the
                // journal grows and its first entry is pruned.
                w.prefetch(&[], &[ACCT]).unwrap();
                let sell = w.insert_order(&order("sell", 5.0)).unwrap();
                let second = w.record_fill(sell, 5.0, 12.0, 1.0, 200).unwrap();
                let kept = w.save_bars(&[("X".into(), 2, bar(200))]).unwrap();
                w.prune_bars(kept - 1).unwrap();
                w.commit().unwrap();
                (first, second, kept)
            })
            .await
            .unwrap();
            let long = orders::position(&store, first.position_id.unwrap())
                .await
                .unwrap();
            assert_eq!(
                (long.quantity, long.realized_pnl, long.closed_at),
                (0.0, 6.0, Some(200))
            );
            // The reversing fill belongs to the trade it closes; the short holds the rest.
            assert_eq!(second.position_id, first.position_id);
            let open = orders::open_positions(&store, Some(ACCT)).await.unwrap();
            assert_eq!(open.len(), 1, "{open:?}");
            assert_eq!(
                (open[0].side, open[0].quantity),
                (PositionSide::Short, -2.0)
            );
            assert!(open[0].id > long.id);
            // 3 bought at 10, 5 sold at 12, fee 1.
            assert_eq!(
                orders::cash_flow(&store, Some(ACCT)).await.unwrap(),
                (-30.0 + 60.0 - 1.0, 1.0)
            );
            let (newest, bars) = crate::live::journal(&store).await.unwrap();
            assert_eq!(newest, Some(journal));
            assert_eq!(bars["X"].iter().map(|b| b.0).collect::<Vec<_>>(), [2]);
        }
    }
}
