//! The manual accounts: orders placed through the API are booked to the placing user's own
//! account (`user:<id>`), an account of the live engine itself with no strategy; the shared
//! account [`MANUAL`] of earlier versions is kept, with its positions and working orders.
//!
//! The engine thread admits each one (its own host bounds, then the account-wide limits,
//! order-rate window and kill switch of [`qtm_oms::oms`]) and puts it on the exchange that
//! fills the strategies' orders, in one step, so no lock is needed around the check. The
//! recorder stores it and answers the caller with the stored row; fills, cancels and bracket
//! exits of manual orders are booked by the recorder like a strategy's and published as
//! [`super::LiveEvent::OrderFilled`], [`super::LiveEvent::OrderCancelled`] and
//! [`super::LiveEvent::OrderAccepted`]. An account opens with the engine's starting capital
//! on its first order; on start every manual account takes its cash and open positions from
//! the store, and its working orders are put on the exchange again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use super::LiveError;
use qtm_core::model::{OpenOrder, OrderChange, OrderKind, OrderRequest, Quantity};
use qtm_oms::oms::AccountOrder;
use qtm_store::orders::{AccountId, NewOrder, Order, OrderStatus, OrderType};

pub use qtm_store::orders::MANUAL;

/// An order placed through the API, for [`super::LiveEngine::place_manual`].
#[derive(Debug, Clone)]
pub struct ManualOrder {
    /// The account it is stored under and trades in: the placing user's `user:<id>` (or
    /// [`MANUAL`] for a position of earlier versions' shared account).
    pub account: AccountId,
    /// Who placed it.
    pub user_id: Option<i64>,
    /// The order; its quantity in units.
    pub request: OrderRequest,
    /// The symbol's price it is judged at (its mark: the live market's last price, else its
    /// newest stored close).
    pub last_price: f64,
}

/// A change to a working manual order, for [`super::LiveEngine::modify_manual`].
#[derive(Debug, Clone)]
pub struct ManualChange {
    /// The stored order's id.
    pub id: i64,
    /// The stored order's account.
    pub account: AccountId,
    /// Its new total quantity and prices (absent ones stay).
    pub change: OrderChange,
    /// Its symbol.
    pub symbol: String,
    /// The order as it would stand, as the risk checks see it (quantity: what is left of it).
    pub order: AccountOrder,
}

/// Where a working manual order is on the exchange: its exchange id, and what of it had filled
/// when the exchange took it (the exchange counts only what fills from then on).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OnExchange {
    pub exchange_id: u64,
    pub filled_before: f64,
}

/// Stored id → place on the exchange of every working manual order. The recorder adds an
/// order when it has stored it (before it answers the caller, so any id a client can know is
/// here) and removes it when it stops working; the engine thread reads it to cancel and change
/// orders by their stored ids. It also carries, the other way, the exchange ids of orders the
/// recorder could not store, which the engine thread takes off the exchange.
#[derive(Clone, Default)]
pub(crate) struct ManualIndex(Arc<Mutex<IndexInner>>);

#[derive(Default)]
struct IndexInner {
    by_id: HashMap<i64, OnExchange>,
    unstored: Vec<u64>,
}

impl ManualIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, IndexInner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, id: i64) -> Option<OnExchange> {
        self.lock().by_id.get(&id).copied()
    }

    pub(crate) fn insert(&self, id: i64, at: OnExchange) {
        self.lock().by_id.insert(id, at);
    }

    pub(crate) fn remove(&self, id: i64) {
        self.lock().by_id.remove(&id);
    }

    /// Have the engine thread take these exchange orders off the exchange.
    pub(crate) fn drop_unstored(&self, exchange_ids: Vec<u64>) {
        if !exchange_ids.is_empty() {
            self.lock().unstored.extend(exchange_ids);
        }
    }

    /// The exchange orders to take off, once each.
    pub(crate) fn take_unstored(&self) -> Vec<u64> {
        std::mem::take(&mut self.lock().unstored)
    }
}

/// The answer of a command about one stored order.
pub(crate) type Reply = oneshot::Sender<Result<Order, LiveError>>;

/// The answer of a change: `Ok(Err(reason))` when the risk checks refused it.
pub(crate) type ModifyReply = oneshot::Sender<Result<Result<Order, String>, LiveError>>;

/// What the engine thread hands the recorder about the manual accounts.
pub(crate) enum ManualRecord {
    /// A manual account opened on the engine as account `engine`.
    Account { engine: usize, account: AccountId },
    /// A working order of the previous run, on the exchange again as `exchange_id`.
    Resumed { exchange_id: u64, order: Box<Order> },
    /// A new order: on the exchange as `exchange_id`, or refused (`row` says why). The reply
    /// goes once the row is committed.
    Placed {
        exchange_id: Option<u64>,
        row: Box<NewOrder>,
        reply: Reply,
    },
    /// Cancel a stored order (taken off the exchange already, if it was there).
    Cancel {
        id: i64,
        reason: String,
        reply: Reply,
    },
    /// Change a stored order (changed on the exchange already, if it was there).
    Modify {
        id: i64,
        change: OrderChange,
        reply: ModifyReply,
    },
    /// Orders the exchange made for the account (the exits of a filled bracket), in the order
    /// it made them: stored as working orders of their own, so clients see, change and
    /// cancel them.
    Exits {
        account: AccountId,
        orders: Vec<OpenOrder>,
    },
}

/// The manual accounts when the engine starts.
#[derive(Default)]
pub(crate) struct ManualSetup {
    /// Every manual account with orders in the store, in account order.
    pub accounts: Vec<ManualAccountSetup>,
    /// Time of the newest stored bar (the clock day orders count from).
    pub clock: i64,
}

/// A manual account's cash, positions and working orders when the engine starts.
pub(crate) struct ManualAccountSetup {
    /// Which account.
    pub account: AccountId,
    /// Cash: the starting capital plus the cash flow of its stored fills.
    pub cash: f64,
    /// Open positions: symbol, signed quantity, average price, mark.
    pub positions: Vec<(String, f64, f64, f64)>,
    /// Working orders with what is left of each as a request (with its OCO group).
    pub orders: Vec<(Order, OrderRequest)>,
}

/// The user a manual account's orders belong to, when the account is one user's.
pub(crate) fn user_of(account: AccountId) -> Option<i64> {
    match account {
        AccountId::User(id) => Some(id),
        _ => None,
    }
}

/// The request a stored order stands for, with what is left of it.
pub(crate) fn request_of(o: &Order) -> Result<OrderRequest, String> {
    let need = |v: Option<f64>, what: &str| {
        v.ok_or_else(|| format!("a {} order without {what}", o.order_type))
    };
    let kind = match o.order_type {
        OrderType::Market => OrderKind::Market,
        OrderType::Limit => OrderKind::Limit(need(o.limit_price, "limit_price")?),
        OrderType::Stop => OrderKind::Stop(need(o.stop_price, "stop_price")?),
        OrderType::StopLimit => OrderKind::StopLimit {
            stop: need(o.stop_price, "stop_price")?,
            limit: need(o.limit_price, "limit_price")?,
        },
        other => return Err(format!("order type {other:?} is not taken from the API")),
    };
    let left = o.quantity - o.filled_qty;
    if left.is_nan() || left <= 0.0 {
        return Err(format!(
            "nothing left to fill ({} of {})",
            o.filled_qty, o.quantity
        ));
    }
    Ok(OrderRequest {
        symbol: o.symbol.clone(),
        side: o.side,
        quantity: Quantity::Units(left),
        kind,
        time_in_force: o.time_in_force,
        take_profit: o.take_profit,
        stop_loss: o.stop_loss,
        oco_group: None,
        tag: o.tag.clone(),
    })
}

/// The row `row` stored as order `id` at `ts`, as the store reads it back.
pub(crate) fn stored(id: i64, row: &NewOrder, ts: i64) -> Order {
    Order {
        id,
        account: row.account,
        instance_id: row.instance_id,
        user_id: row.user_id,
        symbol: row.symbol.clone(),
        side: row.side,
        order_type: row.order_type,
        quantity: row.quantity,
        limit_price: row.limit_price,
        stop_price: row.stop_price,
        time_in_force: row.time_in_force,
        take_profit: row.take_profit,
        stop_loss: row.stop_loss,
        status: row.status,
        filled_qty: 0.0,
        avg_price: None,
        reason: row.reason.clone(),
        tag: row.tag.clone(),
        created_at: ts,
        updated_at: ts,
    }
}

/// `o` after a fill of `quantity` at `price` at `ts`, as the store books it.
pub(crate) fn after_fill(o: &mut Order, quantity: f64, price: f64, ts: i64) {
    let filled = o.filled_qty + quantity;
    o.avg_price = Some((o.avg_price.unwrap_or(0.0) * o.filled_qty + price * quantity) / filled);
    o.filled_qty = filled;
    o.status = if filled >= o.quantity * (1.0 - 1e-9) {
        OrderStatus::Filled
    } else {
        OrderStatus::PartiallyFilled
    };
    o.updated_at = ts;
}

#[cfg(test)]
mod tests {
    use super::*;
    use qtm_core::model::Side;

    fn limit_buy() -> NewOrder {
        NewOrder::from_request(
            MANUAL,
            Some(7),
            &OrderRequest {
                kind: OrderKind::Limit(95.0),
                tag: Some("t".into()),
                ..OrderRequest::market("SPY", Side::Buy, Quantity::Units(4.0))
            },
        )
    }

    #[test]
    fn fills_move_the_kept_row_as_the_store_books_them() {
        let mut o = stored(12, &limit_buy(), 1_000);
        assert_eq!(
            (o.id, o.status, o.user_id),
            (12, OrderStatus::Accepted, Some(7))
        );
        after_fill(&mut o, 1.0, 95.0, 1_001);
        assert_eq!(o.status, OrderStatus::PartiallyFilled);
        after_fill(&mut o, 3.0, 94.0, 1_002);
        assert_eq!((o.status, o.filled_qty), (OrderStatus::Filled, 4.0));
        assert!((o.avg_price.unwrap() - (95.0 + 3.0 * 94.0) / 4.0).abs() < 1e-12);
        assert_eq!(o.updated_at, 1_002);
    }

    #[test]
    fn a_stored_order_is_worked_again_for_what_is_left_of_it() {
        let mut o = stored(3, &limit_buy(), 0);
        o.filled_qty = 1.5;
        let r = request_of(&o).unwrap();
        assert_eq!(r.quantity, Quantity::Units(2.5));
        assert_eq!(r.kind, OrderKind::Limit(95.0));
        assert_eq!(r.tag.as_deref(), Some("t"));
        o.filled_qty = 4.0;
        assert!(request_of(&o).unwrap_err().contains("nothing left"));
        o.order_type = OrderType::TrailingStop;
        o.filled_qty = 0.0;
        assert!(request_of(&o).is_err());
    }
}
