//! Orders, fills and positions (trades) of the paper accounts.
//!
//! An order is stored when it is placed: `accepted` (working) after the risk checks, or
//! `rejected` with the reason. The live engine fills working orders and books each execution
//! with [`record_fill`], which moves the order to `partially_filled` / `filled` and updates the
//! position. A position row is one trade: it opens with the first fill from flat and closes
//! (`closed_at`) with the fill that flattens it, so its id names the round trip.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::{Database, Encode, FromRow, QueryBuilder, Type};

use super::{Store, StoreError, StoreResult, now, with_pool};
use qtm_core::model::{OrderKind, OrderRequest, Quantity, Side, TimeInForce};
pub use qtm_core::vocab::{AccountId, OrderStatus, OrderType, PositionSide, StrategyId};

/// Account of orders placed by hand through the API.
pub const MANUAL: AccountId = AccountId::Manual;

/// A stored order.
// `Serialize` only because the live engine's events carry it; the API's JSON is the server's
// `api_types`, converted from this row.
#[derive(Debug, Clone, PartialEq, Serialize, FromRow)]
pub struct Order {
    pub id: i64,
    /// `manual` for orders placed through the API, `strategy:<id>` for a strategy's.
    #[sqlx(try_from = "String")]
    pub account: AccountId,
    /// The strategy instance that placed it, if any.
    pub instance_id: Option<i64>,
    /// The user who placed it, if any.
    pub user_id: Option<i64>,
    pub symbol: String,
    /// `buy` or `sell`.
    #[sqlx(try_from = "String")]
    pub side: Side,
    /// `market`, `limit`, `stop`, `stop_limit` or `trailing_stop`.
    #[serde(rename = "type")]
    #[sqlx(rename = "order_type", try_from = "String")]
    pub order_type: OrderType,
    /// Units.
    pub quantity: f64,
    pub limit_price: Option<f64>,
    pub stop_price: Option<f64>,
    /// `gtc`, `day`, `ioc` or `fok`.
    #[sqlx(try_from = "String")]
    pub time_in_force: TimeInForce,
    pub take_profit: Option<f64>,
    pub stop_loss: Option<f64>,
    /// `accepted`, `partially_filled`, `filled`, `cancelled` or `rejected`.
    #[sqlx(try_from = "String")]
    pub status: OrderStatus,
    pub filled_qty: f64,
    /// Average fill price, once something filled.
    pub avg_price: Option<f64>,
    /// Why it was rejected or cancelled.
    pub reason: Option<String>,
    pub tag: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
}

impl Order {
    /// Whether the order is still working (may fill, may be cancelled or modified).
    pub fn is_working(&self) -> bool {
        self.status.is_working()
    }
}

/// An order to store (already validated and risk-checked by the caller).
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub account: AccountId,
    pub instance_id: Option<i64>,
    pub user_id: Option<i64>,
    pub symbol: String,
    pub side: Side,
    pub order_type: OrderType,
    pub quantity: f64,
    pub limit_price: Option<f64>,
    pub stop_price: Option<f64>,
    pub time_in_force: TimeInForce,
    pub take_profit: Option<f64>,
    pub stop_loss: Option<f64>,
    /// [`OrderStatus::Accepted`] or [`OrderStatus::Rejected`].
    pub status: OrderStatus,
    pub reason: Option<String>,
    pub tag: Option<String>,
}

impl Default for NewOrder {
    /// An accepted manual market buy of nothing, good till cancelled: a base to fill in.
    fn default() -> NewOrder {
        NewOrder {
            account: AccountId::Manual,
            instance_id: None,
            user_id: None,
            symbol: String::new(),
            side: Side::Buy,
            order_type: OrderType::Market,
            quantity: 0.0,
            limit_price: None,
            stop_price: None,
            time_in_force: TimeInForce::Gtc,
            take_profit: None,
            stop_loss: None,
            status: OrderStatus::Accepted,
            reason: None,
            tag: None,
        }
    }
}

impl NewOrder {
    /// An accepted order of `account` as a strategy or client asked for it. Quantities that
    /// are fractions of equity are stored as given (the fill says how many units they were).
    pub fn from_request(account: AccountId, user: Option<i64>, r: &OrderRequest) -> NewOrder {
        let (limit_price, stop_price) = match r.kind {
            OrderKind::Market | OrderKind::TrailingStop(_) => (None, None),
            OrderKind::Limit(p) => (Some(p), None),
            OrderKind::Stop(p) => (None, Some(p)),
            OrderKind::StopLimit { stop, limit } => (Some(limit), Some(stop)),
        };
        let quantity = match r.quantity {
            Quantity::Units(q) => q,
            Quantity::EquityFraction(q) | Quantity::TargetPercent(q) => q,
        };
        NewOrder {
            account,
            instance_id: None,
            user_id: user,
            symbol: r.symbol.clone(),
            side: r.side,
            order_type: OrderType::of(&r.kind),
            quantity,
            limit_price,
            stop_price,
            time_in_force: r.time_in_force,
            take_profit: r.take_profit,
            stop_loss: r.stop_loss,
            status: OrderStatus::Accepted,
            reason: None,
            tag: r.tag.clone(),
        }
    }
}

pub(crate) const ORDER_COLUMNS: &str = "id, account, instance_id, user_id, symbol, side, order_type, quantity, limit_price, stop_price, time_in_force, take_profit, stop_loss, status, filled_qty, avg_price, reason, tag, created_at, updated_at";

/// Store an order: account, instance_id, user_id, symbol, side, order_type, quantity,
/// limit_price, stop_price, time_in_force, take_profit, stop_loss, status, reason, tag,
/// created_at, updated_at; returns the id.
pub(crate) const INSERT_ORDER: &str = "INSERT INTO orders (account, instance_id, user_id, symbol, side, order_type, quantity, limit_price, stop_price, time_in_force, take_profit, stop_loss, status, reason, tag, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) RETURNING id";

/// Cancel an order if it is working: reason, updated_at, id.
pub(crate) const CANCEL_WORKING: &str = "UPDATE orders SET status = 'cancelled', reason = $1, updated_at = $2 WHERE id = $3 AND status IN ('accepted', 'partially_filled')";

/// Whether `symbol` is a known asset.
pub async fn symbol_exists(store: &Store, symbol: &str) -> StoreResult<bool> {
    Ok(
        with_pool!(store, p => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM assets WHERE symbol = $1")
            .bind(symbol)
            .fetch_one(p)
            .await)?
            > 0,
    )
}

/// `$q` ([`INSERT_ORDER`]) with the columns of [`NewOrder`] `$o` bound, created and updated at
/// `$t`.
macro_rules! bind_new_order {
    ($q:expr, $o:expr, $t:expr) => {{
        let (o, t) = ($o, $t);
        $q.bind(o.account.text())
            .bind(o.instance_id)
            .bind(o.user_id)
            .bind(&o.symbol)
            .bind(o.side.as_str())
            .bind(o.order_type.as_str())
            .bind(o.quantity)
            .bind(o.limit_price)
            .bind(o.stop_price)
            .bind(o.time_in_force.as_str())
            .bind(o.take_profit)
            .bind(o.stop_loss)
            .bind(o.status.as_str())
            .bind(&o.reason)
            .bind(&o.tag)
            .bind(t)
            .bind(t)
    }};
}

/// Store an order; returns it with its id.
pub async fn insert(store: &Store, o: &NewOrder) -> StoreResult<Order> {
    let t = now();
    let id: i64 = with_pool!(store, p => bind_new_order!(sqlx::query_scalar(INSERT_ORDER), o, t)
        .fetch_one(p)
        .await)?;
    get(store, id).await
}

/// One order.
pub async fn get(store: &Store, id: i64) -> StoreResult<Order> {
    with_pool!(store, p => sqlx::query_as::<_, Order>(sqlx::AssertSqlSafe(format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(p)
    .await)?
    .ok_or_else(|| StoreError::NotFound(format!("order {id}")))
}

/// Which orders to list; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    /// One status, or `working` for both working statuses.
    pub status: Option<String>,
    pub symbol: Option<String>,
    pub account: Option<AccountId>,
    /// Tag, exactly.
    pub tag: Option<String>,
    /// Only rows with an id below this one (the keyset of the page after it).
    pub before: Option<i64>,
    pub limit: i64,
}

/// Orders matching `f`, newest first.
pub async fn list(store: &Store, f: &OrderFilter) -> StoreResult<Vec<Order>> {
    Ok(with_pool!(store, p => list_query(f)
        .build_query_as::<Order>()
        .fetch_all(p)
        .await)?)
}

/// The SQL of [`list`].
fn list_query<DB: Database>(f: &OrderFilter) -> QueryBuilder<DB>
where
    String: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
{
    let working = f.status.as_deref() == Some("working");
    let status = f.status.clone().filter(|_| !working);
    // Working orders are a few among all of them: read those through their index instead of
    // every order newest first (the open-orders view asks this all the time).
    let only_working = working
        || status
            .as_deref()
            .is_some_and(|s| OrderStatus::WORKING.iter().any(|w| w.as_str() == s));
    let from = if !only_working {
        LIST_FROM
    } else if is_sqlite::<DB>() {
        LIST_WORKING_FROM
    } else {
        LIST_WORKING_FROM_PG
    };
    let mut q = QueryBuilder::new(format!("SELECT {ORDER_COLUMNS} {from}"));
    and_equal(&mut q, "status", status);
    and_equal(&mut q, "symbol", f.symbol.clone());
    and_equal(&mut q, "account", f.account.map(AccountId::text));
    and_equal(&mut q, "tag", f.tag.clone());
    and_before(&mut q, "id", f.before);
    q.push(" ORDER BY id DESC LIMIT ").push_bind(f.limit);
    q
}

/// Every order, for [`list`].
const LIST_FROM: &str = "FROM orders WHERE TRUE";

/// The working orders only, for [`list`].
const LIST_WORKING_FROM: &str =
    "FROM orders INDEXED BY orders_working WHERE status IN ('accepted', 'partially_filled')";

/// [`LIST_WORKING_FROM`] on PostgreSQL, which has no `INDEXED BY`: its planner picks the
/// partial index from the statistics.
const LIST_WORKING_FROM_PG: &str = "FROM orders WHERE status IN ('accepted', 'partially_filled')";

/// Whether `DB` is SQLite, for the few statements written per dialect.
fn is_sqlite<DB: Database>() -> bool {
    DB::NAME == <sqlx::Sqlite as Database>::NAME
}

/// Add `AND column = value` to a query whose WHERE clause is open, for a filter that is
/// given. An absent filter adds nothing: written as `(? IS NULL OR column = ?)` it would keep
/// the planner from reading the column's index for the filters that are given.
fn and_equal<DB: Database, T>(q: &mut QueryBuilder<DB>, column: &str, value: Option<T>)
where
    T: for<'t> Encode<'t, DB> + Type<DB>,
{
    if let Some(v) = value {
        q.push(format!(" AND {column} = ")).push_bind(v);
    }
}

/// `AND column < before` when paging past `before` (ids descending).
fn and_before<DB: Database>(q: &mut QueryBuilder<DB>, column: &str, before: Option<i64>)
where
    i64: for<'t> Encode<'t, DB> + Type<DB>,
{
    if let Some(b) = before {
        q.push(format!(" AND {column} < ")).push_bind(b);
    }
}

/// The working orders (of one account, given twice, or all for NULL), read through the
/// partial index `orders_working` rather than every order.
const WORKING_ORDERS: &str = "FROM orders WHERE status IN ('accepted', 'partially_filled') AND ($1 IS NULL OR account = $2) ORDER BY id";

/// An account's manual orders accepted since a time (index `orders_account`).
const ACCEPTED_SINCE: &str = "SELECT created_at FROM orders WHERE account = $1 AND instance_id IS NULL AND created_at >= $2 AND status <> 'rejected' ORDER BY created_at";

/// An account's working orders in one-cancels-other groups. The working orders are few and
/// an account's orders many, so the planner is told which index to read.
const WORKING_OCO: &str = "SELECT id, oco_group FROM orders INDEXED BY orders_working WHERE account = $1 AND oco_group IS NOT NULL AND status IN ('accepted', 'partially_filled')";

/// [`WORKING_OCO`] without the SQLite index hint.
const WORKING_OCO_PG: &str = "SELECT id, oco_group FROM orders WHERE account = $1 AND oco_group IS NOT NULL AND status IN ('accepted', 'partially_filled')";

/// Working orders of `account` (every account when `None`), oldest first.
pub async fn working(store: &Store, account: Option<AccountId>) -> StoreResult<Vec<Order>> {
    Ok(
        with_pool!(store, p => sqlx::query_as::<_, Order>(sqlx::AssertSqlSafe(format!(
        "SELECT {ORDER_COLUMNS} {WORKING_ORDERS}"
    )))
    .bind(account.map(AccountId::text))
    .bind(account.map(AccountId::text))
    .fetch_all(p)
    .await)?,
    )
}

/// The manual accounts with orders: the shared `manual` account of earlier versions and each
/// user's own (`user:<id>`), in account order.
pub async fn manual_accounts(store: &Store) -> StoreResult<Vec<AccountId>> {
    let texts: Vec<String> = with_pool!(store, p => sqlx::query_scalar(
        "SELECT DISTINCT account FROM orders WHERE account = 'manual' OR account LIKE 'user:%'",
    )
    .fetch_all(p)
    .await)?;
    let mut accounts: Vec<AccountId> = texts.iter().filter_map(|t| t.parse().ok()).collect();
    accounts.sort();
    Ok(accounts)
}

/// Creation times (unix seconds) of the orders of every account created at or after `since`
/// and not rejected, oldest first: the account-wide order-rate window after a restart.
pub async fn accepted_since_any(store: &Store, since: i64) -> StoreResult<Vec<i64>> {
    Ok(with_pool!(store, p => sqlx::query_scalar(
        "SELECT created_at FROM orders WHERE created_at >= $1 AND status <> 'rejected' ORDER BY created_at",
    )
    .bind(since)
    .fetch_all(p)
    .await)?)
}

/// Creation times of the manual orders (placed through the API, not by a strategy instance)
/// of `account` accepted at or after `since`, whatever became of them later: what the
/// order-rate limit of manual orders counts. The engine limits each instance's own orders
/// from memory.
pub async fn accepted_since(
    store: &Store,
    account: AccountId,
    since: i64,
) -> StoreResult<Vec<i64>> {
    Ok(with_pool!(store, p => sqlx::query_scalar(ACCEPTED_SINCE)
        .bind(account.text())
        .bind(since)
        .fetch_all(p)
        .await)?)
}

/// Why an order cannot change: missing (`NotFound`) or no longer working (`Conflict`).
async fn not_working(store: &Store, id: i64) -> StoreError {
    match get(store, id).await {
        Ok(o) => StoreError::Conflict(format!(
            "order {id} is {}, not working: only accepted or partially filled orders can change",
            o.status
        )),
        Err(e) => e,
    }
}

/// Cancel a working order with `reason`.
pub async fn cancel(store: &Store, id: i64, reason: &str) -> StoreResult<Order> {
    let n = with_pool!(store, p => sqlx::query(CANCEL_WORKING)
        .bind(reason)
        .bind(now())
        .bind(id)
        .execute(p)
        .await.map(|r| r.rows_affected()))?;
    if n == 0 {
        return Err(not_working(store, id).await);
    }
    get(store, id).await
}

/// Put a stored order in a one-cancels-other group (the exits of a bracket).
pub async fn set_oco_group(store: &Store, id: i64, group: &str) -> StoreResult<()> {
    with_pool!(store, p => sqlx::query("UPDATE orders SET oco_group = $1 WHERE id = $2")
        .bind(group)
        .bind(id)
        .execute(p)
        .await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// The one-cancels-other groups of `account`'s working orders, by order id.
pub async fn working_oco_groups(
    store: &Store,
    account: AccountId,
) -> StoreResult<HashMap<i64, String>> {
    let sql = match store.backend() {
        super::Backend::Sqlite => WORKING_OCO,
        super::Backend::Postgres => WORKING_OCO_PG,
    };
    let rows: Vec<(i64, String)> = with_pool!(store, p => sqlx::query_as(sql)
        .bind(account.text())
        .fetch_all(p)
        .await)?;
    Ok(rows.into_iter().collect())
}

/// Cancel every working order (through `orders_working`).
const CANCEL_ALL_WORKING: &str = "UPDATE orders SET status = 'cancelled', reason = $1, updated_at = $2 WHERE status IN ('accepted', 'partially_filled')";

/// Cancel every working order (of every account) with `reason`; returns the cancelled orders.
pub async fn cancel_all_working(store: &Store, reason: &str) -> StoreResult<Vec<Order>> {
    Ok(
        with_pool!(store, p => sqlx::query_as::<_, Order>(sqlx::AssertSqlSafe(format!(
        "{CANCEL_ALL_WORKING} RETURNING {ORDER_COLUMNS}"
    )))
    .bind(reason)
    .bind(now())
    .fetch_all(p)
    .await)?,
    )
}

/// Replace the quantity and prices of a working order (`None` keeps a value).
pub async fn modify(
    store: &Store,
    id: i64,
    quantity: Option<f64>,
    limit_price: Option<f64>,
    stop_price: Option<f64>,
) -> StoreResult<Order> {
    let n = with_pool!(store, p => sqlx::query(
        "UPDATE orders SET quantity = COALESCE($1, quantity), limit_price = COALESCE($2, limit_price), stop_price = COALESCE($3, stop_price), updated_at = $4 WHERE id = $5 AND status IN ('accepted', 'partially_filled')",
    )
    .bind(quantity)
    .bind(limit_price)
    .bind(stop_price)
    .bind(now())
    .bind(id)
    .execute(p)
    .await.map(|r| r.rows_affected()))?;
    if n == 0 {
        return Err(not_working(store, id).await);
    }
    get(store, id).await
}

// ---- positions (trades) and fills ---------------------------------------------------------

/// A position, open or closed: one round trip in one symbol of one account. Its id is the
/// trade id of `/api/trades/{id}`.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct Position {
    pub id: i64,
    #[sqlx(try_from = "String")]
    pub account: AccountId,
    pub symbol: String,
    /// `long` or `short`: the direction it was opened in.
    #[sqlx(try_from = "String")]
    pub side: PositionSide,
    /// Signed units now (negative when short, 0 once closed).
    pub quantity: f64,
    /// Average entry price of what is open.
    pub avg_price: f64,
    /// Price PnL of the closed part, before fees.
    pub realized_pnl: f64,
    /// Every fee paid on its fills.
    pub fees: f64,
    /// Unix seconds.
    pub opened_at: i64,
    /// Set once flat.
    pub closed_at: Option<i64>,
    pub updated_at: i64,
}

pub(crate) const POSITION_COLUMNS: &str = "id, account, symbol, side, quantity, avg_price, realized_pnl, fees, opened_at, closed_at, updated_at";

/// One position by id.
pub async fn position(store: &Store, id: i64) -> StoreResult<Position> {
    with_pool!(store, p => sqlx::query_as::<_, Position>(sqlx::AssertSqlSafe(format!(
        "SELECT {POSITION_COLUMNS} FROM positions WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(p)
    .await)?
    .ok_or_else(|| StoreError::NotFound(format!("trade {id}")))
}

/// Which positions to list.
#[derive(Debug, Clone, Default)]
pub struct PositionFilter {
    /// `Some(true)`: open only; `Some(false)`: closed only.
    pub open: Option<bool>,
    pub symbol: Option<String>,
    pub account: Option<AccountId>,
    /// Only rows with an id below this one (the keyset of the page after it).
    pub before: Option<i64>,
    pub limit: i64,
}

/// Positions matching `f`, newest first.
pub async fn positions(store: &Store, f: &PositionFilter) -> StoreResult<Vec<Position>> {
    Ok(with_pool!(store, p => positions_query(f)
        .build_query_as::<Position>()
        .fetch_all(p)
        .await)?)
}

/// The SQL of [`positions`].
fn positions_query<DB: Database>(f: &PositionFilter) -> QueryBuilder<DB>
where
    String: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
{
    // Open positions are a few among every position ever held: read those through their
    // index (what the positions view asks most).
    let from = match f.open {
        Some(true) if is_sqlite::<DB>() => OPEN_POSITIONS_FROM,
        Some(true) => OPEN_POSITIONS_FROM_PG,
        Some(false) => "FROM positions WHERE closed_at IS NOT NULL",
        None => "FROM positions WHERE TRUE",
    };
    let mut q = QueryBuilder::new(format!("SELECT {POSITION_COLUMNS} {from}"));
    and_equal(&mut q, "symbol", f.symbol.clone());
    and_equal(&mut q, "account", f.account.map(AccountId::text));
    and_before(&mut q, "id", f.before);
    q.push(" ORDER BY id DESC LIMIT ").push_bind(f.limit);
    q
}

/// The open positions, through the partial index of them.
const OPEN_POSITIONS_FROM: &str =
    "FROM positions INDEXED BY positions_open WHERE closed_at IS NULL";

/// [`OPEN_POSITIONS_FROM`] without the SQLite index hint.
const OPEN_POSITIONS_FROM_PG: &str = "FROM positions WHERE closed_at IS NULL";

/// Every open position of `account` (every account when `None`).
pub async fn open_positions(
    store: &Store,
    account: Option<AccountId>,
) -> StoreResult<Vec<Position>> {
    let from = match store.backend() {
        super::Backend::Sqlite => OPEN_POSITIONS_FROM,
        super::Backend::Postgres => OPEN_POSITIONS_FROM_PG,
    };
    Ok(
        with_pool!(store, p => sqlx::query_as::<_, Position>(sqlx::AssertSqlSafe(format!(
        "SELECT {POSITION_COLUMNS} {from} AND ($1 IS NULL OR account = $2) ORDER BY id"
    )))
    .bind(account.map(AccountId::text))
    .bind(account.map(AccountId::text))
    .fetch_all(p)
    .await)?,
    )
}

/// A fill with the order it executed.
// `Serialize` only because the live engine's events carry it; the API's JSON is the server's
// `api_types`, converted from this row.
#[derive(Debug, Clone, PartialEq, Serialize, FromRow)]
pub struct FillRecord {
    pub id: i64,
    pub order_id: i64,
    /// The trade (position) it belongs to.
    pub position_id: Option<i64>,
    #[sqlx(try_from = "String")]
    pub account: AccountId,
    pub symbol: String,
    /// `buy` or `sell`.
    #[sqlx(try_from = "String")]
    pub side: Side,
    pub quantity: f64,
    pub price: f64,
    pub fee: f64,
    /// Time of the execution, unix seconds.
    pub ts: i64,
    /// The order's type, tag and placer.
    #[sqlx(try_from = "String")]
    pub order_type: OrderType,
    pub tag: Option<String>,
    pub user_id: Option<i64>,
}

const FILL_SELECT: &str = "SELECT f.id, f.order_id, f.position_id, f.account, f.symbol, f.side, f.quantity, f.price, f.fee, f.ts, o.order_type, o.tag, o.user_id FROM fills f JOIN orders o ON o.id = f.order_id";

/// Which fills to list.
#[derive(Debug, Clone, Default)]
pub struct FillFilter {
    pub symbol: Option<String>,
    pub account: Option<AccountId>,
    pub order_id: Option<i64>,
    pub position_id: Option<i64>,
    /// Only rows with an id below this one (the keyset of the page after it).
    pub before: Option<i64>,
    pub limit: i64,
}

/// Fills matching `f`, newest first: the last booked first (fills are booked as they happen,
/// so this is the order of their times too).
pub async fn fills(store: &Store, f: &FillFilter) -> StoreResult<Vec<FillRecord>> {
    Ok(with_pool!(store, p => fills_query(f)
        .build_query_as::<FillRecord>()
        .fetch_all(p)
        .await)?)
}

/// The SQL of [`fills`]. Newest first by id, not by `ts`: the id is the table's key, so the
/// newest fills are read first and the scan stops at the limit, where an order by `ts` sorted
/// every fill (0.56 s for 1,000,000 of them) or needed an index on every fill booked.
fn fills_query<DB: Database>(f: &FillFilter) -> QueryBuilder<DB>
where
    String: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::new(format!("{FILL_SELECT} WHERE TRUE"));
    and_equal(&mut q, "f.symbol", f.symbol.clone());
    and_equal(&mut q, "f.account", f.account.map(AccountId::text));
    and_equal(&mut q, "f.order_id", f.order_id);
    and_equal(&mut q, "f.position_id", f.position_id);
    and_before(&mut q, "f.id", f.before);
    q.push(" ORDER BY f.id DESC LIMIT ").push_bind(f.limit);
    q
}

/// What an account's fills and trades add up to, from the per-account totals fill booking
/// keeps in the fill's transaction (`account_totals`, migration 0010): one row read at any
/// number of fills, where these were passes over every fill and every position.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AccountTotals {
    /// Minus what buys cost, plus what sells brought, minus fees: starting capital plus this
    /// is the account's cash.
    pub cash_flow: f64,
    /// Fees paid.
    pub fees: f64,
    /// Realized PnL of its trades, open or closed (fees apart).
    pub realized_pnl: f64,
}

/// The totals of `account` (of every account when `None`); zeros for an account that never
/// traded.
pub async fn totals(store: &Store, account: Option<AccountId>) -> StoreResult<AccountTotals> {
    let row: (Option<f64>, Option<f64>, Option<f64>) = with_pool!(store, p => match account {
        Some(a) => sqlx::query_as(ACCOUNT_TOTALS).bind(a.text()),
        None => sqlx::query_as(
            "SELECT SUM(trade_cash), SUM(fees), SUM(realized_pnl) FROM account_totals",
        ),
    }
    .fetch_one(p)
    .await)?;
    let fees = row.1.unwrap_or(0.0);
    Ok(AccountTotals {
        cash_flow: row.0.unwrap_or(0.0) - fees,
        fees,
        realized_pnl: row.2.unwrap_or(0.0),
    })
}

/// One account's row of `account_totals` (aggregated, so an account without fills reads NULLs).
const ACCOUNT_TOTALS: &str =
    "SELECT SUM(trade_cash), SUM(fees), SUM(realized_pnl) FROM account_totals WHERE account = $1";

/// The cash flow and fees of [`totals`].
pub async fn cash_flow(store: &Store, account: Option<AccountId>) -> StoreResult<(f64, f64)> {
    let t = totals(store, account).await?;
    Ok((t.cash_flow, t.fees))
}

/// Book one execution of a working order, as the live engine reports it: the fill row, the
/// order's filled quantity, average price and status, and the position (opened, grown,
/// reduced, closed, or closed and reopened the other way when the fill crosses flat). The
/// position arithmetic is the engine's own ([`Portfolio::apply_fill`]), so stored PnL matches
/// a backtest's.
///
/// `Conflict` when the order is not working or the fill is larger than what is left of it.
pub async fn record_fill(
    store: &Store,
    order_id: i64,
    quantity: f64,
    price: f64,
    fee: f64,
    ts: i64,
) -> StoreResult<FillRecord> {
    // One implementation of fill booking, the live recorder's; an error drops the
    // transaction, which rolls it back.
    super::in_transaction!(store, tx => {
        super::writer::book_fill((&mut *tx).into(), order_id, quantity, price, fee, ts).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A strategy's account, for accounts other than the manual one.
    fn acct(id: i64) -> AccountId {
        AccountId::Strategy(StrategyId(id))
    }

    /// The plan SQLite picks for `sql` (every parameter NULL), one step per line.
    async fn plan(store: &Store, sql: &str) -> String {
        let mut q = sqlx::query_as::<_, (i64, i64, i64, String)>(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {sql}"
        )));
        for _ in 0..sql.matches('$').count() {
            q = q.bind(None::<i64>);
        }
        let rows = q.fetch_all(store.sqlite()).await.unwrap();
        rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n")
    }

    #[tokio::test]
    async fn listing_working_orders_reads_only_those_newest_first() {
        for s in crate::test_stores().await {
            let a = insert(&s, &order("buy", 1.0)).await.unwrap();
            let b = insert(&s, &order("sell", 2.0)).await.unwrap();
            let c = insert(&s, &order("buy", 3.0)).await.unwrap();
            cancel(&s, b.id, "by hand").await.unwrap();
            let ids = |status: &str, symbol: Option<&str>| {
                let f = OrderFilter {
                    status: Some(status.into()),
                    symbol: symbol.map(Into::into),
                    limit: 10,
                    ..Default::default()
                };
                let s = s.clone();
                async move {
                    list(&s, &f)
                        .await
                        .unwrap()
                        .iter()
                        .map(|o| o.id)
                        .collect::<Vec<_>>()
                }
            };
            assert_eq!(ids("working", None).await, [c.id, a.id]);
            assert_eq!(ids("accepted", None).await, [c.id, a.id]);
            assert_eq!(ids("partially_filled", None).await, Vec::<i64>::new());
            assert_eq!(ids("cancelled", None).await, [b.id]);
            assert_eq!(ids("working", Some("NOPE")).await, Vec::<i64>::new());
            assert_eq!(ids("working", Some(&a.symbol)).await, [c.id, a.id]);
        }
    }

    #[tokio::test]
    async fn order_reads_use_the_small_indexes_the_write_path_keeps() {
        let s = Store::open("sqlite::memory:").await.unwrap();
        let working = plan(&s, &format!("SELECT {ORDER_COLUMNS} {WORKING_ORDERS}")).await;
        assert_eq!(working, "SCAN orders USING INDEX orders_working");
        let since = plan(&s, ACCEPTED_SINCE).await;
        assert!(
            since.starts_with(
                "SEARCH orders USING INDEX orders_account (account=? AND created_at>?)"
            ),
            "{since}"
        );
        let listing = |status: &str| {
            list_query::<sqlx::Sqlite>(&OrderFilter {
                status: Some(status.into()),
                symbol: Some("X".into()),
                ..Default::default()
            })
            .into_string()
        };
        assert_eq!(
            plan(&s, &listing("working")).await,
            "SCAN orders USING INDEX orders_working"
        );
        assert_eq!(
            plan(&s, &listing("accepted")).await,
            "SCAN orders USING INDEX orders_working"
        );
        let positions = plan(
            &s,
            &format!("SELECT {POSITION_COLUMNS} {OPEN_POSITIONS_FROM} AND ($1 IS NULL OR account = $2) ORDER BY id"),
        )
        .await;
        assert!(
            positions.starts_with("SCAN positions USING INDEX positions_open"),
            "{positions}"
        );
        let closed = plan(
            &s,
            &positions_query::<sqlx::Sqlite>(&PositionFilter {
                open: Some(false),
                account: Some(acct(1)),
                ..Default::default()
            })
            .into_string(),
        )
        .await;
        assert_eq!(closed, "SCAN positions");
        let oco = plan(&s, WORKING_OCO).await;
        assert_eq!(oco, "SCAN orders USING INDEX orders_working");
        let cancel_all = plan(&s, CANCEL_ALL_WORKING).await;
        assert_eq!(cancel_all, "SCAN orders USING INDEX orders_working");
    }

    #[tokio::test]
    async fn fill_listings_read_newest_first_by_key_and_through_the_order_index() {
        let s = Store::open("sqlite::memory:").await.unwrap();
        let sql = |f: FillFilter| fills_query::<sqlx::Sqlite>(&f).into_string();
        // Newest first by the table's key: no sort of every fill, the scan stops at the limit.
        let newest = plan(&s, &sql(FillFilter::default())).await;
        assert!(newest.starts_with("SCAN f\n"), "{newest}");
        assert!(!newest.contains("TEMP B-TREE"), "{newest}");
        let of_account = plan(
            &s,
            &sql(FillFilter {
                account: Some(acct(1)),
                symbol: Some("X".into()),
                ..Default::default()
            }),
        )
        .await;
        assert!(!of_account.contains("TEMP B-TREE"), "{of_account}");
        // The fills of an order: through its index, not a scan of every fill.
        let of_order = plan(
            &s,
            &sql(FillFilter {
                order_id: Some(1),
                ..Default::default()
            }),
        )
        .await;
        assert!(
            of_order.contains("SEARCH f USING INDEX fills_order (order_id=?)"),
            "{of_order}"
        );
    }

    #[tokio::test]
    async fn fills_list_newest_first_with_only_the_filters_given() {
        for s in crate::test_stores().await {
            let buy = insert(&s, &order("buy", 10.0)).await.unwrap();
            let f1 = record_fill(&s, buy.id, 4.0, 100.0, 0.0, 10).await.unwrap();
            let f2 = record_fill(&s, buy.id, 6.0, 101.0, 0.0, 20).await.unwrap();
            let mut other = order("sell", 1.0);
            other.account = acct(9);
            let sell = insert(&s, &other).await.unwrap();
            let f3 = record_fill(&s, sell.id, 1.0, 102.0, 0.0, 30).await.unwrap();
            let ids = |f: FillFilter| {
                let s = s.clone();
                async move {
                    fills(&s, &FillFilter { limit: 10, ..f })
                        .await
                        .unwrap()
                        .iter()
                        .map(|x| x.id)
                        .collect::<Vec<_>>()
                }
            };
            assert_eq!(ids(FillFilter::default()).await, [f3.id, f2.id, f1.id]);
            assert_eq!(
                ids(FillFilter {
                    order_id: Some(buy.id),
                    ..Default::default()
                })
                .await,
                [f2.id, f1.id]
            );
            assert_eq!(
                ids(FillFilter {
                    account: Some(acct(9)),
                    ..Default::default()
                })
                .await,
                [f3.id]
            );
            assert_eq!(
                ids(FillFilter {
                    account: Some(acct(9)),
                    order_id: Some(buy.id),
                    ..Default::default()
                })
                .await,
                Vec::<i64>::new()
            );
            assert_eq!(
                ids(FillFilter {
                    position_id: f1.position_id,
                    ..Default::default()
                })
                .await,
                [f2.id, f1.id]
            );
            let one = fills(
                &s,
                &FillFilter {
                    limit: 1,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            assert_eq!(one.len(), 1);
            assert_eq!((one[0].id, one[0].price, one[0].ts), (f3.id, 102.0, 30));
        }
    }

    #[tokio::test]
    async fn account_totals_follow_every_fill_booked() {
        for s in crate::test_stores().await {
            assert_eq!(cash_flow(&s, Some(MANUAL)).await.unwrap(), (0.0, 0.0));
            let buy = insert(&s, &order("buy", 10.0)).await.unwrap();
            record_fill(&s, buy.id, 4.0, 100.0, 1.0, 10).await.unwrap();
            record_fill(&s, buy.id, 6.0, 101.5, 0.25, 11).await.unwrap();
            let mut other = order("sell", 2.0);
            other.account = acct(9);
            let sell = insert(&s, &other).await.unwrap();
            record_fill(&s, sell.id, 2.0, 50.0, 0.5, 20).await.unwrap();

            // What the fills themselves say, summed in the order they were booked.
            let all = FillFilter {
                limit: 100,
                ..FillFilter::default()
            };
            let listed = fills(&s, &all).await.unwrap();
            assert_eq!(listed.len(), 3);
            let of = |account: AccountId| {
                let (mut trade, mut fees) = (0.0, 0.0);
                for f in listed.iter().rev().filter(|f| f.account == account) {
                    trade -= f.side.signed(f.quantity) * f.price;
                    fees += f.fee;
                }
                (trade - fees, fees)
            };
            assert_eq!(cash_flow(&s, Some(MANUAL)).await.unwrap(), (-1010.25, 1.25));
            assert_eq!(cash_flow(&s, Some(MANUAL)).await.unwrap(), of(MANUAL));
            assert_eq!(cash_flow(&s, Some(acct(9))).await.unwrap(), (99.5, 0.5));
            assert_eq!(cash_flow(&s, Some(acct(9))).await.unwrap(), of(acct(9)));
            assert_eq!(cash_flow(&s, None).await.unwrap(), (-910.75, 1.75));
            assert_eq!(cash_flow(&s, Some(acct(99))).await.unwrap(), (0.0, 0.0));
            if s.backend() == crate::Backend::Sqlite {
                assert_eq!(
                    plan(&s, ACCOUNT_TOTALS).await,
                    "SEARCH account_totals USING PRIMARY KEY (account=?)"
                );
            }

            // Realized PnL: nothing while trades only open; then a close and a partial cover.
            assert_eq!(totals(&s, None).await.unwrap().realized_pnl, 0.0);
            let close = insert(&s, &order("sell", 10.0)).await.unwrap();
            record_fill(&s, close.id, 10.0, 105.0, 0.0, 30)
                .await
                .unwrap();
            let mut cover = order("buy", 1.0);
            cover.account = acct(9);
            let cover = insert(&s, &cover).await.unwrap();
            record_fill(&s, cover.id, 1.0, 45.0, 0.0, 40).await.unwrap();
            let every = PositionFilter {
                limit: 100,
                ..PositionFilter::default()
            };
            let per_trade: Vec<f64> = positions(&s, &every)
                .await
                .unwrap()
                .iter()
                .map(|p| p.realized_pnl)
                .collect();
            assert_eq!(per_trade.len(), 2);
            let booked = totals(&s, None).await.unwrap().realized_pnl;
            assert!(
                (booked - (10.0 * (105.0 - 100.9) + 5.0)).abs() < 1e-9,
                "{booked}"
            );
            assert!((booked - per_trade.iter().sum::<f64>()).abs() < 1e-9);
        }
    }

    #[tokio::test]
    async fn a_store_from_before_the_cash_totals_gets_them_from_its_fills() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let url = format!("sqlite://{}", path.display());
        {
            use sqlx::sqlite::SqliteConnectOptions;
            use std::str::FromStr;
            let options = SqliteConnectOptions::from_str(&url)
                .unwrap()
                .create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
            crate::MIGRATOR.run_to(9, &pool).await.unwrap();
            sqlx::query(
                "INSERT INTO positions (account, symbol, side, quantity, avg_price, realized_pnl, opened_at, closed_at, updated_at) VALUES ('strategy:1', 'X', 'long', 0, 10, 6, 0, 0, 0), ('strategy:2', 'X', 'short', -1, 7, 0, 0, NULL, 0), ('strategy:3', 'X', 'long', 0, 1, -2.5, 0, 0, 0)",
            )
            .execute(&pool)
            .await
            .unwrap();
            for (id, account, side, qty, price, fee) in [
                (1, "strategy:1", "buy", 3.0, 10.0, 0.5),
                (2, "strategy:1", "sell", 3.0, 12.0, 0.5),
                (3, "strategy:2", "sell", 1.0, 7.0, 0.0),
            ] {
                sqlx::query(
                    "INSERT INTO orders (id, account, symbol, side, order_type, quantity, time_in_force, status, filled_qty, avg_price, created_at, updated_at) VALUES ($1, $2, 'X', $3, 'market', $4, 'gtc', 'filled', $5, $6, 0, 0)",
                )
                .bind(id).bind(account).bind(side).bind(qty).bind(qty).bind(price)
                .execute(&pool).await.unwrap();
                sqlx::query(
                    "INSERT INTO fills (order_id, account, symbol, side, quantity, price, fee, ts) VALUES ($1, $2, 'X', $3, $4, $5, $6, 0)",
                )
                .bind(id).bind(account).bind(side).bind(qty).bind(price).bind(fee)
                .execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
        let s = Store::open(&url).await.unwrap();
        assert_eq!(cash_flow(&s, Some(acct(1))).await.unwrap(), (5.0, 1.0));
        assert_eq!(cash_flow(&s, Some(acct(2))).await.unwrap(), (7.0, 0.0));
        assert_eq!(cash_flow(&s, None).await.unwrap(), (12.0, 1.0));
        // A trade without fills of its own still counts (account `c`).
        assert_eq!(totals(&s, None).await.unwrap().realized_pnl, 3.5);
        assert_eq!(
            totals(&s, Some(acct(1))).await.unwrap(),
            AccountTotals {
                cash_flow: 5.0,
                fees: 1.0,
                realized_pnl: 6.0
            }
        );
    }

    #[test]
    fn the_writer_reads_the_columns_the_async_side_reads() {
        // The fill booking's read decodes an `Order` from the order's columns, in order.
        let columns: Vec<String> = ORDER_COLUMNS
            .split(", ")
            .map(|c| format!("o.{c}"))
            .collect();
        assert!(
            super::super::writer::FILL_READ
                .starts_with(&format!("SELECT {}, p.id AS pos_id", columns.join(", "))),
            "{}",
            super::super::writer::FILL_READ
        );
    }

    fn order(side: &str, quantity: f64) -> NewOrder {
        NewOrder {
            account: MANUAL,
            symbol: "GOOG".into(),
            side: side.parse().unwrap(),
            quantity,
            ..NewOrder::default()
        }
    }

    #[tokio::test]
    async fn fills_open_grow_reduce_and_close_a_trade_then_reopen_the_other_way() {
        for s in crate::test_stores().await {
            let buy = insert(&s, &order("buy", 10.0)).await.unwrap();
            let f1 = record_fill(&s, buy.id, 4.0, 100.0, 1.0, 10).await.unwrap();
            let f2 = record_fill(&s, buy.id, 6.0, 110.0, 1.0, 20).await.unwrap();
            assert_eq!(f1.position_id, f2.position_id);
            let buy = get(&s, buy.id).await.unwrap();
            assert_eq!(buy.status, OrderStatus::Filled);
            assert!((buy.avg_price.unwrap() - 106.0).abs() < 1e-9);
            let trade = position(&s, f1.position_id.unwrap()).await.unwrap();
            assert_eq!((trade.side.as_str(), trade.quantity), ("long", 10.0));
            assert!((trade.avg_price - 106.0).abs() < 1e-9);
            // A filled order cannot fill again.
            assert!(matches!(
                record_fill(&s, buy.id, 1.0, 100.0, 0.0, 30).await,
                Err(StoreError::Conflict(_))
            ));

            // Sell 15: closes the 10 long (realized (120 - 106) * 10) and opens 5 short.
            let sell = insert(&s, &order("sell", 15.0)).await.unwrap();
            let f3 = record_fill(&s, sell.id, 15.0, 120.0, 3.0, 40)
                .await
                .unwrap();
            assert_eq!(f3.position_id, Some(trade.id));
            let closed = position(&s, trade.id).await.unwrap();
            assert_eq!(closed.quantity, 0.0);
            assert_eq!(closed.closed_at, Some(40));
            assert!((closed.realized_pnl - 140.0).abs() < 1e-9, "{closed:?}");
            // Entry fees 2 plus 2/3 of the exit fee; the last third goes with the short.
            assert!((closed.fees - 4.0).abs() < 1e-9);
            let open = open_positions(&s, Some(MANUAL)).await.unwrap();
            assert_eq!(open.len(), 1);
            assert_eq!((open[0].side.as_str(), open[0].quantity), ("short", -5.0));
            assert!((open[0].avg_price - 120.0).abs() < 1e-9);
            assert!((open[0].fees - 1.0).abs() < 1e-9);
            let listed = |open: Option<bool>| {
                let s = s.clone();
                async move {
                    let f = PositionFilter {
                        open,
                        limit: 10,
                        ..Default::default()
                    };
                    let p = positions(&s, &f).await.unwrap();
                    p.iter().map(|p| p.id).collect::<Vec<_>>()
                }
            };
            assert_eq!(listed(Some(true)).await, [open[0].id]);
            assert_eq!(listed(Some(false)).await, [trade.id]);
            assert_eq!(listed(None).await, [open[0].id, trade.id]);

            // Cash: -400 - 660 + 1800 - 5 fees.
            let (cash, fees) = cash_flow(&s, None).await.unwrap();
            assert!((cash - 735.0).abs() < 1e-9 && (fees - 5.0).abs() < 1e-9);
            let listed = fills(
                &s,
                &FillFilter {
                    position_id: Some(trade.id),
                    limit: 10,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            assert_eq!(listed.len(), 3);
            assert_eq!(listed[0].order_type, OrderType::Market);
        }
    }

    #[tokio::test]
    async fn cancel_and_modify_only_touch_working_orders() {
        for s in crate::test_stores().await {
            let a = insert(&s, &order("buy", 1.0)).await.unwrap();
            let b = insert(&s, &order("buy", 2.0)).await.unwrap();
            let m = modify(&s, a.id, Some(3.0), None, None).await.unwrap();
            assert_eq!(m.quantity, 3.0);
            let c = cancel(&s, a.id, "by hand").await.unwrap();
            assert_eq!(
                (c.status.as_str(), c.reason.as_deref()),
                ("cancelled", Some("by hand"))
            );
            let e = cancel(&s, a.id, "again").await.unwrap_err();
            assert!(e.to_string().contains("is cancelled, not working"), "{e}");
            assert!(matches!(
                modify(&s, 999, Some(1.0), None, None).await,
                Err(StoreError::NotFound(_))
            ));
            let all = cancel_all_working(&s, "kill switch").await.unwrap();
            assert_eq!(all.iter().map(|o| o.id).collect::<Vec<_>>(), [b.id]);
            assert!(working(&s, None).await.unwrap().is_empty());
            let listed = list(
                &s,
                &OrderFilter {
                    status: Some("cancelled".into()),
                    limit: 10,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            assert_eq!(listed.len(), 2);
            assert_eq!(accepted_since(&s, MANUAL, 0).await.unwrap().len(), 2);
        }
    }
}
