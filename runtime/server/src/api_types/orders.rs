//! Orders, positions (trades) and fills.

use serde::Serialize;
use utoipa::ToSchema;

use qtm_core::model::{Side, TimeInForce};
use qtm_core::vocab::{AccountId, OrderStatus, OrderType, PositionSide};
use qtm_store::orders as rows;

/// A stored order.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Order {
    pub id: i64,
    /// `user:<id>` for orders a user placed through the API (their own paper account),
    /// `strategy:<id>` for a strategy's, `manual` for the shared manual account of earlier
    /// versions.
    #[schema(value_type = String, example = "user:1")]
    pub account: AccountId,
    /// The strategy instance that placed it, if any.
    pub instance_id: Option<i64>,
    /// The user who placed it, if any.
    pub user_id: Option<i64>,
    pub symbol: String,
    /// `buy` or `sell`.
    #[schema(value_type = String, example = "buy")]
    pub side: Side,
    /// `market`, `limit`, `stop`, `stop_limit` or `trailing_stop`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "limit")]
    pub order_type: OrderType,
    /// Units.
    pub quantity: f64,
    pub limit_price: Option<f64>,
    pub stop_price: Option<f64>,
    /// `gtc`, `day`, `ioc` or `fok`.
    #[schema(value_type = String, example = "gtc")]
    pub time_in_force: TimeInForce,
    pub take_profit: Option<f64>,
    pub stop_loss: Option<f64>,
    /// `accepted`, `partially_filled`, `filled`, `cancelled` or `rejected`.
    #[schema(value_type = String, example = "accepted")]
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

impl From<rows::Order> for Order {
    fn from(o: rows::Order) -> Self {
        Order {
            id: o.id,
            account: o.account,
            instance_id: o.instance_id,
            user_id: o.user_id,
            symbol: o.symbol,
            side: o.side,
            order_type: o.order_type,
            quantity: o.quantity,
            limit_price: o.limit_price,
            stop_price: o.stop_price,
            time_in_force: o.time_in_force,
            take_profit: o.take_profit,
            stop_loss: o.stop_loss,
            status: o.status,
            filled_qty: o.filled_qty,
            avg_price: o.avg_price,
            reason: o.reason,
            tag: o.tag,
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

impl From<&rows::Order> for Order {
    fn from(o: &rows::Order) -> Self {
        o.clone().into()
    }
}

/// A position, open or closed: one round trip in one symbol of one account. Its id is the
/// trade id of `/api/trades/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Position {
    pub id: i64,
    #[schema(value_type = String, example = "user:1")]
    pub account: AccountId,
    pub symbol: String,
    /// `long` or `short`: the direction it was opened in.
    #[schema(value_type = String, example = "long")]
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

impl From<rows::Position> for Position {
    fn from(p: rows::Position) -> Self {
        Position {
            id: p.id,
            account: p.account,
            symbol: p.symbol,
            side: p.side,
            quantity: p.quantity,
            avg_price: p.avg_price,
            realized_pnl: p.realized_pnl,
            fees: p.fees,
            opened_at: p.opened_at,
            closed_at: p.closed_at,
            updated_at: p.updated_at,
        }
    }
}

/// A fill with the order it executed.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FillRecord {
    pub id: i64,
    pub order_id: i64,
    /// The trade (position) it belongs to.
    pub position_id: Option<i64>,
    #[schema(value_type = String, example = "user:1")]
    pub account: AccountId,
    pub symbol: String,
    /// `buy` or `sell`.
    #[schema(value_type = String, example = "buy")]
    pub side: Side,
    pub quantity: f64,
    pub price: f64,
    pub fee: f64,
    /// Time of the execution, unix seconds.
    pub ts: i64,
    /// The order's type, tag and placer.
    #[schema(value_type = String, example = "market")]
    pub order_type: OrderType,
    pub tag: Option<String>,
    pub user_id: Option<i64>,
}

impl From<rows::FillRecord> for FillRecord {
    fn from(f: rows::FillRecord) -> Self {
        FillRecord {
            id: f.id,
            order_id: f.order_id,
            position_id: f.position_id,
            account: f.account,
            symbol: f.symbol,
            side: f.side,
            quantity: f.quantity,
            price: f.price,
            fee: f.fee,
            ts: f.ts,
            order_type: f.order_type,
            tag: f.tag,
            user_id: f.user_id,
        }
    }
}

impl From<&rows::FillRecord> for FillRecord {
    fn from(f: &rows::FillRecord) -> Self {
        f.clone().into()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    /// A stored limit order with every field set.
    pub(crate) fn order_row() -> rows::Order {
        rows::Order {
            id: 7,
            account: AccountId::Manual,
            instance_id: None,
            user_id: Some(2),
            symbol: "SPY".into(),
            side: Side::Buy,
            order_type: OrderType::Limit,
            quantity: 3.0,
            limit_price: Some(99.5),
            stop_price: None,
            time_in_force: TimeInForce::Gtc,
            take_profit: Some(110.0),
            stop_loss: Some(90.0),
            status: OrderStatus::PartiallyFilled,
            filled_qty: 1.0,
            avg_price: Some(99.4),
            reason: None,
            tag: Some("t".into()),
            created_at: 100,
            updated_at: 101,
        }
    }

    /// A fill of [`order_row`].
    pub(crate) fn fill_row() -> rows::FillRecord {
        rows::FillRecord {
            id: 9,
            order_id: 7,
            position_id: Some(4),
            account: AccountId::Manual,
            symbol: "SPY".into(),
            side: Side::Buy,
            quantity: 1.0,
            price: 99.4,
            fee: 0.1,
            ts: 101,
            order_type: OrderType::Limit,
            tag: Some("t".into()),
            user_id: Some(2),
        }
    }

    #[test]
    fn an_order_has_the_shape_clients_read() {
        assert_eq!(
            serde_json::to_value(Order::from(order_row())).unwrap(),
            json!({"id": 7, "account": "manual", "instance_id": null, "user_id": 2,
                   "symbol": "SPY", "side": "buy", "type": "limit", "quantity": 3.0,
                   "limit_price": 99.5, "stop_price": null, "time_in_force": "gtc",
                   "take_profit": 110.0, "stop_loss": 90.0, "status": "partially_filled",
                   "filled_qty": 1.0, "avg_price": 99.4, "reason": null, "tag": "t",
                   "created_at": 100, "updated_at": 101})
        );
        assert_eq!(
            serde_json::to_value(FillRecord::from(fill_row())).unwrap(),
            json!({"id": 9, "order_id": 7, "position_id": 4, "account": "manual",
                   "symbol": "SPY", "side": "buy", "quantity": 1.0, "price": 99.4,
                   "fee": 0.1, "ts": 101, "order_type": "limit", "tag": "t", "user_id": 2})
        );
    }

    #[test]
    fn a_position_has_the_shape_clients_read() {
        let p = rows::Position {
            id: 4,
            account: AccountId::Strategy(qtm_core::vocab::StrategyId(3)),
            symbol: "SPY".into(),
            side: PositionSide::Short,
            quantity: -2.0,
            avg_price: 50.0,
            realized_pnl: 1.5,
            fees: 0.2,
            opened_at: 10,
            closed_at: None,
            updated_at: 11,
        };
        assert_eq!(
            serde_json::to_value(Position::from(p)).unwrap(),
            json!({"id": 4, "account": "strategy:3", "symbol": "SPY", "side": "short",
                   "quantity": -2.0, "avg_price": 50.0, "realized_pnl": 1.5, "fees": 0.2,
                   "opened_at": 10, "closed_at": null, "updated_at": 11})
        );
    }
}
