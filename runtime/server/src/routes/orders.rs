//! Manual orders and the trades (positions) they make.
//!
//! The handlers parse, call one function and render. [`place`], [`cancel`] and [`modify`] are
//! those functions (the WebSocket order route calls them too): each is one command to the live
//! engine's manual account ([`qtm_live::manual`]), which judges an order on the engine
//! thread (the manual account's host bounds, then the account-wide limits, order-rate window
//! and kill switch of [`qtm_oms::oms`], the verdict every strategy's order gets) and puts it on
//! the exchange that fills the strategies' orders, in one step; the live recorder stores it,
//! and the answer is the stored row.
//!
//! The WebSocket order source (`/ws/trading`, [`crate::ws::trading`]) calls the same
//! functions ([`place_manual`], [`cancel_by`], [`modify`]), so no order source has checks of
//! its own.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api_types::orders::{FillRecord, Order, Position};
use crate::api_types::risk::RiskAlert;
use crate::auth::Principal;
use crate::auth::access::Caller;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use crate::hub::Topic;
use crate::marks;
use crate::paging::{self, Page};
use crate::state::AppState;
use qtm_core::model::{OrderChange, OrderKind, OrderRequest, Quantity, Side, TimeInForce};
use qtm_live::{ManualChange, ManualOrder};
use qtm_oms::exchange::Exchange;
use qtm_oms::oms::AccountOrder;
use qtm_store::orders::{
    AccountId, FillFilter, OrderFilter, OrderStatus, OrderType, PositionFilter,
};
use qtm_store::{self as store, risk::ACCOUNT};

/// The order and trade routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_orders, create_order))
        .routes(routes!(get_order, modify_order))
        .routes(routes!(cancel_order))
        .routes(routes!(list_trades))
        .routes(routes!(list_fills))
        .routes(routes!(get_trade))
        .routes(routes!(close_trade))
}

// ---- the order request --------------------------------------------------------------------

/// A manual order. Prices are required by type: `limit_price` for `limit`, `stop_price` for
/// `stop`, both for `stop_limit`, neither for `market`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    /// A symbol of `GET /api/market/assets`.
    pub symbol: String,
    /// `buy` or `sell`.
    pub side: String,
    /// Units, > 0.
    pub quantity: f64,
    /// `market` (default), `limit`, `stop` or `stop_limit`.
    #[serde(rename = "type", default)]
    pub order_type: Option<String>,
    pub limit_price: Option<f64>,
    pub stop_price: Option<f64>,
    /// `gtc` (default), `day`, `ioc` or `fok`.
    pub time_in_force: Option<String>,
    /// Exit price for profit, attached to the position this order opens.
    pub take_profit: Option<f64>,
    /// Exit price for loss.
    pub stop_loss: Option<f64>,
    /// Free text (≤ 64 characters) kept with the order and its fills.
    pub tag: Option<String>,
}

fn positive(field: &str, v: Option<f64>) -> ApiResult<Option<f64>> {
    match v {
        Some(p) if !(p.is_finite() && p > 0.0) => Err(ApiError::validation(
            field,
            format!("{field} must be a positive price, got {p}"),
        )),
        _ => Ok(v),
    }
}

fn require(field: &str, order_type: &str, v: Option<f64>) -> ApiResult<f64> {
    v.ok_or_else(|| ApiError::validation(field, format!("a {order_type} order needs {field}")))
}

fn forbid(field: &str, order_type: &str, v: Option<f64>) -> ApiResult<()> {
    match v {
        Some(_) => Err(ApiError::validation(
            field,
            format!("a {order_type} order takes no {field}"),
        )),
        None => Ok(()),
    }
}

/// The order as the engine's types, checked field by field (each error names its field).
fn to_request(o: &PlaceOrder) -> ApiResult<OrderRequest> {
    let symbol = o.symbol.trim();
    if symbol.is_empty() {
        return Err(ApiError::validation("symbol", "symbol is empty"));
    }
    let side = match o.side.as_str() {
        "buy" => Side::Buy,
        "sell" => Side::Sell,
        other => {
            return Err(ApiError::validation(
                "side",
                format!("side must be \"buy\" or \"sell\", got {other:?}"),
            ));
        }
    };
    if !(o.quantity.is_finite() && o.quantity > 0.0) {
        return Err(ApiError::validation(
            "quantity",
            format!(
                "quantity must be a positive number of units, got {}",
                o.quantity
            ),
        ));
    }
    let limit = positive("limit_price", o.limit_price)?;
    let stop = positive("stop_price", o.stop_price)?;
    let order_type = o.order_type.as_deref().unwrap_or("market");
    let kind = match order_type {
        "market" => {
            forbid("limit_price", order_type, limit)?;
            forbid("stop_price", order_type, stop)?;
            OrderKind::Market
        }
        "limit" => {
            forbid("stop_price", order_type, stop)?;
            OrderKind::Limit(require("limit_price", order_type, limit)?)
        }
        "stop" => {
            forbid("limit_price", order_type, limit)?;
            OrderKind::Stop(require("stop_price", order_type, stop)?)
        }
        "stop_limit" => OrderKind::StopLimit {
            stop: require("stop_price", order_type, stop)?,
            limit: require("limit_price", order_type, limit)?,
        },
        other => {
            return Err(ApiError::validation(
                "type",
                format!("type must be market, limit, stop or stop_limit, got {other:?}"),
            ));
        }
    };
    let time_in_force = match o.time_in_force.as_deref().unwrap_or("gtc") {
        "gtc" => TimeInForce::Gtc,
        "day" => TimeInForce::Day,
        "ioc" => TimeInForce::Ioc,
        "fok" => TimeInForce::Fok,
        other => {
            return Err(ApiError::validation(
                "time_in_force",
                format!("time_in_force must be gtc, day, ioc or fok, got {other:?}"),
            ));
        }
    };
    let take_profit = positive("take_profit", o.take_profit)?;
    let stop_loss = positive("stop_loss", o.stop_loss)?;
    if let (Some(tp), Some(sl)) = (take_profit, stop_loss) {
        let ok = match side {
            Side::Buy => tp > sl,
            Side::Sell => tp < sl,
        };
        if !ok {
            return Err(ApiError::validation(
                "take_profit",
                format!(
                    "take_profit {tp} must lie {} stop_loss {sl} for a {} order",
                    if side == Side::Buy { "above" } else { "below" },
                    o.side
                ),
            ));
        }
    }
    if let Some(tag) = &o.tag
        && tag.chars().count() > 64
    {
        return Err(ApiError::validation(
            "tag",
            "tag has more than 64 characters",
        ));
    }
    let request = OrderRequest {
        symbol: symbol.to_string(),
        side,
        quantity: Quantity::Units(o.quantity),
        kind,
        time_in_force,
        take_profit,
        stop_loss,
        oco_group: None,
        tag: o.tag.clone(),
    };
    // The exchange's own admission rules, as for a strategy's order.
    Exchange::validate(&request)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", e))?;
    Ok(request)
}

// ---- the order path ------------------------------------------------------------------------

/// A risk refusal: recorded as an alert, published on `risk-alerts`, returned as 422
/// `risk_rejected`.
async fn refuse(
    state: &AppState,
    symbol: &str,
    reason: &str,
    order_id: Option<i64>,
) -> ApiResult<ApiError> {
    let alert =
        store::risk::add_alert(&state.store, ACCOUNT, "order_rejected", reason, None).await?;
    state.hub.publish(
        Topic::RiskAlerts,
        Some(symbol.to_string()),
        &json!({"event": "order_rejected", "alert": RiskAlert::from(alert), "order_id": order_id}),
    );
    let stored = order_id.map_or(String::new(), |id| format!(" (stored as order {id})"));
    Ok(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "risk_rejected",
        format!("order rejected by the risk checks: {reason}{stored}"),
    ))
}

/// The mark an order of `symbol` is judged at: the live market's last price, else the newest
/// stored close; a validation error without either.
async fn mark_of(state: &AppState, symbol: &str) -> ApiResult<f64> {
    match marks::mark(state, symbol).await? {
        Some(m) => Ok(m.price),
        None => Err(ApiError::validation(
            "symbol",
            format!(
                "no price for {symbol} yet: import its history (`qtm data import`) before trading it"
            ),
        )),
    }
}

/// Place an order of `account` (`request` already parsed by [`to_request`]): its symbol and
/// mark looked up, then one command to the live engine, which judges it and puts it on the
/// exchange; the answer is the stored row, published on `trades`. A refusal is stored
/// `rejected`, recorded as a risk alert and answered 422 `risk_rejected`. The one path of
/// every order the API places (new orders, trade closes, API-key and WebSocket clients).
pub(crate) async fn place(
    state: &AppState,
    account: AccountId,
    caller: &Principal,
    request: OrderRequest,
) -> ApiResult<store::orders::Order> {
    if !store::orders::symbol_exists(&state.store, &request.symbol).await? {
        return Err(ApiError::validation(
            "symbol",
            format!(
                "unknown symbol {:?}: see GET /api/market/assets",
                request.symbol
            ),
        ));
    }
    if !matches!(request.quantity, Quantity::Units(_)) {
        return Err(ApiError::validation(
            "quantity",
            "quantity must be in units",
        ));
    }
    let last_price = mark_of(state, &request.symbol).await?;
    let stored = state
        .live
        .place_manual(ManualOrder {
            account,
            user_id: Some(caller.user_id),
            request,
            last_price,
        })
        .await
        .map_err(super::strategies::live_error)?;
    if stored.status == OrderStatus::Rejected {
        let reason = stored.reason.clone().unwrap_or_default();
        return Err(refuse(state, &stored.symbol, &reason, Some(stored.id)).await?);
    }
    state.hub.publish(
        Topic::Trades,
        Some(stored.symbol.clone()),
        &json!({"event": "order_accepted", "order": Order::from(&stored)}),
    );
    Ok(stored)
}

/// Cancel a working manual order with `reason`; publish it. 409 for a live strategy's order
/// or one that is not working, 404 for an unknown one.
pub(crate) async fn cancel(
    state: &AppState,
    id: i64,
    reason: &str,
) -> ApiResult<store::orders::Order> {
    refuse_live_order(&store::orders::get(&state.store, id).await?)?;
    let order = state
        .live
        .cancel_manual(id, reason)
        .await
        .map_err(super::strategies::live_error)?;
    state.hub.publish(
        Topic::Trades,
        Some(order.symbol.clone()),
        &json!({"event": "order_cancelled", "order": Order::from(&order)}),
    );
    Ok(order)
}

/// Change the quantity or prices of a working manual order, judged again as a replacement;
/// publish it. A refusal leaves the order as it was, is recorded as a risk alert and is
/// answered 422 `risk_rejected`.
pub(crate) async fn modify(
    state: &AppState,
    p: &Principal,
    id: i64,
    req: &ModifyOrder,
) -> ApiResult<store::orders::Order> {
    let order = store::orders::get(&state.store, id).await?;
    refuse_live_order(&order)?;
    require_order_owner(p, &order)?;
    if !order.is_working() {
        return Err(ApiError::conflict(format!(
            "order {id} is {}, not working: only accepted or partially filled orders can be modified",
            order.status
        )));
    }
    if req.quantity.is_none() && req.limit_price.is_none() && req.stop_price.is_none() {
        return Err(ApiError::validation(
            "quantity",
            "nothing to change: give quantity, limit_price or stop_price",
        ));
    }
    if let Some(q) = req.quantity
        && !(q.is_finite() && q > order.filled_qty && q > 0.0)
    {
        return Err(ApiError::validation(
            "quantity",
            format!(
                "quantity must be a number of units above the {} already filled, got {q}",
                order.filled_qty
            ),
        ));
    }
    positive("limit_price", req.limit_price)?;
    positive("stop_price", req.stop_price)?;
    let t = order.order_type;
    if req.limit_price.is_some() && !matches!(t, OrderType::Limit | OrderType::StopLimit) {
        return Err(ApiError::validation(
            "limit_price",
            format!("a {t} order has no limit_price"),
        ));
    }
    if req.stop_price.is_some() && !matches!(t, OrderType::Stop | OrderType::StopLimit) {
        return Err(ApiError::validation(
            "stop_price",
            format!("a {t} order has no stop_price"),
        ));
    }
    let limit = req.limit_price.or(order.limit_price);
    let stop = req.stop_price.or(order.stop_price);
    let quantity = req.quantity.unwrap_or(order.quantity);
    let changed = to_request(&PlaceOrder {
        symbol: order.symbol.clone(),
        side: order.side.to_string(),
        quantity,
        order_type: Some(order.order_type.to_string()),
        limit_price: limit,
        stop_price: stop,
        time_in_force: Some(order.time_in_force.to_string()),
        take_profit: order.take_profit,
        stop_loss: order.stop_loss,
        tag: order.tag.clone(),
    })?;
    let last_price = mark_of(state, &order.symbol).await?;
    let verdict = state
        .live
        .modify_manual(ManualChange {
            id,
            account: order.account,
            change: OrderChange {
                quantity: req.quantity,
                limit_price: req.limit_price,
                stop_price: req.stop_price,
            },
            symbol: order.symbol.clone(),
            order: AccountOrder {
                // What is left of it is what may still trade.
                quantity: quantity - order.filled_qty,
                direction: if changed.side == Side::Buy { 1.0 } else { -1.0 },
                last_price,
                order_price: match changed.kind {
                    OrderKind::Limit(p) | OrderKind::Stop(p) => Some(p),
                    OrderKind::StopLimit { limit, .. } => Some(limit),
                    _ => None,
                },
            },
        })
        .await
        .map_err(super::strategies::live_error)?;
    let order = match verdict {
        Ok(order) => order,
        Err(reason) => return Err(refuse(state, &order.symbol, &reason, Some(id)).await?),
    };
    state.hub.publish(
        Topic::Trades,
        Some(order.symbol.clone()),
        &json!({"event": "order_modified", "order": Order::from(&order)}),
    );
    Ok(order)
}

// ---- handlers -----------------------------------------------------------------------------

/// Filters of `GET /api/orders`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderQuery {
    /// `accepted`, `partially_filled`, `filled`, `cancelled`, `rejected`, or `working` (the
    /// first two).
    #[param(pattern = "^(working|accepted|partially_filled|filled|cancelled|rejected)$")]
    pub status: Option<String>,
    pub symbol: Option<String>,
    /// `user:<id>` (a user's own manual orders), `strategy:<id>`, or `manual` (the shared
    /// manual account of earlier versions).
    #[param(pattern = "^(manual|(user|strategy):[0-9]{1,18})$")]
    pub account: Option<String>,
    /// At most this many, newest first (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Continue after this cursor: the `next_cursor` of the page before.
    #[param(pattern = r"^[0-9]{0,18}$")]
    pub cursor: Option<String>,
}

fn limit_of(limit: Option<i64>) -> ApiResult<i64> {
    paging::limit(limit, paging::MAX_LIMIT)
}

/// The `account` of a query: `manual`, `user:<id>` or `strategy:<id>`; anything else is a 422 that says so.
fn account_filter(account: Option<String>) -> ApiResult<Option<AccountId>> {
    account
        .map(|a| {
            a.parse()
                .map_err(|e| ApiError::validation("account", format!("{e}")))
        })
        .transpose()
}

/// Orders, newest first.
#[utoipa::path(get, path = "/api/orders", tag = "orders", params(OrderQuery),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Page<Order>), (status = 422, body = ErrorBody)))]
async fn list_orders(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<OrderQuery>,
) -> ApiResult<ApiJson<Page<Order>>> {
    if let Some(s) = &q.status
        && s != "working"
        && !OrderStatus::ALL
            .iter()
            .any(|v| v.as_str() == s && *v != OrderStatus::Pending)
    {
        let stored: Vec<&str> = OrderStatus::ALL
            .iter()
            .filter(|v| **v != OrderStatus::Pending)
            .map(|v| v.as_str())
            .collect();
        return Err(ApiError::validation(
            "status",
            format!("status must be working, {}; got {s:?}", stored.join(", ")),
        ));
    }
    let limit = limit_of(q.limit)?;
    let orders = store::orders::list(
        &state.store,
        &OrderFilter {
            status: q.status,
            symbol: q.symbol,
            account: account_filter(q.account)?,
            tag: None,
            before: paging::id_cursor(q.cursor.as_deref())?,
            limit: limit + 1,
        },
    )
    .await?;
    Ok(ApiJson(Page::from_overfetch(
        orders,
        limit,
        |o| o.id.to_string(),
        Order::from,
    )))
}

/// One order.
#[utoipa::path(get, path = "/api/orders/{id}", tag = "orders",
    params(("id" = i64, Path, description = "order id")),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Order), (status = 404, body = ErrorBody)))]
async fn get_order(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<ApiJson<Order>> {
    Ok(ApiJson(store::orders::get(&state.store, id).await?.into()))
}

/// Place a manual order (account `manual`). It passes the engine's pre-trade risk checks
/// against the stored account (positions at the mark price, working orders, order
/// rate, kill switch): a refusal is stored as a `rejected` order, recorded as a risk alert,
/// published on `risk-alerts` and answered 422 `risk_rejected` with the reason. An accepted
/// order is stored `accepted` and published on `trades` (key: symbol); it stays working until
/// the live paper engine fills it.
#[utoipa::path(post, path = "/api/orders", tag = "orders", request_body = PlaceOrder,
    security(("bearer" = ["trader"]), ("api_key" = ["trader"])),
    responses((status = 200, body = Order),
        (status = 422, description = "invalid field (`validation`) or refused by risk (`risk_rejected`)", body = ErrorBody)))]
async fn create_order(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiJson(req): ApiJson<PlaceOrder>,
) -> ApiResult<ApiJson<Order>> {
    Ok(ApiJson(place_manual(&state, &p, &req).await?.into()))
}

/// Place a manual order for `caller`: the whole of `POST /api/orders` after the body is read.
/// Every manual order source (REST, `/ws/trading`) calls this, so each meets the same
/// validation and the one admission path ([`place`]).
pub(crate) async fn place_manual(
    state: &AppState,
    caller: &Principal,
    req: &PlaceOrder,
) -> ApiResult<store::orders::Order> {
    let request = to_request(req)?;
    // Each user trades their own paper account: its own cash, positions and host bounds.
    place(state, AccountId::User(caller.user_id), caller, request).await
}

/// Orders a live strategy placed are held by the live engine's paper exchange; changing only
/// their stored copy would let the two disagree (the engine could still fill a "cancelled"
/// order). They change through the strategy: halt or disable it and its orders are cancelled.
fn refuse_live_order(order: &store::orders::Order) -> ApiResult<()> {
    match order.instance_id {
        Some(instance) => Err(ApiError::conflict(format!(
            "order {} belongs to live strategy instance {instance} ({}); the live engine manages it: halt (POST /api/strategy-instances/{instance}/halt) or disable the strategy to cancel its orders",
            order.id, order.account
        ))),
        None => Ok(()),
    }
}

/// Why it is cancelled.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    pub reason: Option<String>,
}

/// Cancel a working order (409 when it is filled, cancelled or rejected). Body optional:
/// `{"reason"}`.
#[utoipa::path(post, path = "/api/orders/{id}/cancel", tag = "orders",
    params(("id" = i64, Path, description = "order id")), request_body(content = Option<CancelRequest>),
    security(("bearer" = ["trader"]), ("api_key" = ["trader"])),
    responses((status = 200, body = Order), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn cancel_order(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<i64>,
    body: axum::body::Bytes,
) -> ApiResult<ApiJson<Order>> {
    let req: CancelRequest = optional_body(&body)?;
    Ok(ApiJson(cancel_by(&state, &p, id, &req).await?.into()))
}

/// Cancel working order `id` for `p`: the whole of `POST /api/orders/{id}/cancel` after the
/// body is read (REST and `/ws/trading` both call it).
pub(crate) async fn cancel_by(
    state: &AppState,
    p: &Principal,
    id: i64,
    req: &CancelRequest,
) -> ApiResult<store::orders::Order> {
    let reason = match req.reason.as_deref().map(str::trim) {
        Some(r) if r.chars().count() > 200 => {
            return Err(ApiError::validation(
                "reason",
                "reason has more than 200 characters",
            ));
        }
        Some(r) if !r.is_empty() => format!("cancelled by {}: {r}", p.username),
        _ => format!("cancelled by {}", p.username),
    };
    require_order_owner(p, &store::orders::get(&state.store, id).await?)?;
    cancel(state, id, &reason).await
}

/// A trader acts only on the manual orders they placed; admins on all. Strategy orders are
/// left to the caller's own refusal (they are changed through their instance, not here).
pub(crate) fn require_order_owner(p: &Principal, order: &store::orders::Order) -> ApiResult<()> {
    let strategy_order = !order.account.is_manual();
    if strategy_order || p.role >= crate::auth::Role::Admin || order.user_id == Some(p.user_id) {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "order {} was placed by another user: only they or an admin may change it",
        order.id
    )))
}

/// A trader acts only on the positions of their own account (`user:<id>`) and of the shared
/// manual account of earlier versions; admins on every manual account.
pub(crate) fn require_account_owner(
    p: &Principal,
    account: AccountId,
    what: &str,
) -> ApiResult<()> {
    match account {
        AccountId::User(owner) if owner != p.user_id && p.role < crate::auth::Role::Admin => {
            Err(ApiError::forbidden(format!(
                "{what} is in another user's account ({account}): only they or an admin may trade it"
            )))
        }
        _ => Ok(()),
    }
}

/// A JSON body that may be absent (empty body means the defaults).
pub(crate) fn optional_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> ApiResult<T> {
    // No body, or JSON `null`, is the empty request.
    let text = body.trim_ascii();
    if text.is_empty() || text == b"null" {
        return Ok(T::default());
    }
    crate::error::json_object(body)
}

/// New values for a working order; absent fields stay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModifyOrder {
    /// Total units of the order (more than what already filled).
    pub quantity: Option<f64>,
    /// For `limit` and `stop_limit` orders.
    pub limit_price: Option<f64>,
    /// For `stop` and `stop_limit` orders.
    pub stop_price: Option<f64>,
}

/// Change the quantity or prices of a working order. The changed order passes the risk checks
/// again (as a replacement: it does not count as an extra open order or towards the order
/// rate); a refusal leaves the order as it was, is recorded as a risk alert and answered 422
/// `risk_rejected`.
#[utoipa::path(put, path = "/api/orders/{id}", tag = "orders", request_body = ModifyOrder,
    params(("id" = i64, Path, description = "order id")),
    security(("bearer" = ["trader"]), ("api_key" = ["trader"])),
    responses((status = 200, body = Order), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn modify_order(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<ModifyOrder>,
) -> ApiResult<ApiJson<Order>> {
    Ok(ApiJson(modify(&state, &p, id, &req).await?.into()))
}

// ---- trades -------------------------------------------------------------------------------

/// A trade: one position from the fill that opened it to the fill that flattened it, marked
/// at the symbol's mark price (the live market's last price, else its newest stored close).
/// Its `id` is the one `POST /api/trades/{id}/close` takes.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Trade {
    #[serde(flatten)]
    pub position: Position,
    /// `open` or `closed`.
    pub status: String,
    /// The symbol's mark: the live engine's last price, else its newest stored close (absent
    /// without either).
    pub mark_price: Option<f64>,
    /// Open time of the bar `mark_price` is the close of, unix seconds.
    pub mark_ts: Option<i64>,
    /// `live` or `stored`.
    pub mark_source: Option<marks::PriceSource>,
    /// quantity × (mark − avg_price) of what is open.
    pub unrealized_pnl: f64,
    /// Signed quantity × mark.
    pub market_value: f64,
}

/// Filters of `GET /api/trades`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TradeQuery {
    /// `open` (default), `closed` or `all`.
    #[param(pattern = "^(open|closed|all)$")]
    pub status: Option<String>,
    pub symbol: Option<String>,
    /// `user:<id>` (a user's manual trades), `strategy:<id>`, or `manual` (earlier
    /// versions' shared manual account).
    #[param(pattern = "^(manual|(user|strategy):[0-9]{1,18})$")]
    pub account: Option<String>,
    /// 1–1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Continue after this cursor: the `next_cursor` of the page before.
    #[param(pattern = r"^[0-9]{0,18}$")]
    pub cursor: Option<String>,
}

pub(crate) async fn mark_trades(
    state: &AppState,
    positions: Vec<store::orders::Position>,
) -> ApiResult<Vec<Trade>> {
    let marks = marks::marks(state, positions.iter().map(|p| p.symbol.as_str())).await?;
    Ok(positions
        .into_iter()
        .map(|p| {
            let at = marks.get(&p.symbol);
            let mark = at.map(|m| m.price);
            let m = mark.unwrap_or(p.avg_price);
            Trade {
                status: if p.closed_at.is_none() {
                    "open"
                } else {
                    "closed"
                }
                .into(),
                mark_price: mark,
                mark_ts: at.map(|m| m.ts),
                mark_source: at.map(|m| m.source),
                unrealized_pnl: p.quantity * (m - p.avg_price),
                market_value: p.quantity * m,
                position: p.into(),
            }
        })
        .collect())
}

/// Trades (positions), newest first: open ones by default.
#[utoipa::path(get, path = "/api/trades", tag = "orders", params(TradeQuery),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Page<Trade>), (status = 422, body = ErrorBody)))]
pub(crate) async fn list_trades(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<TradeQuery>,
) -> ApiResult<ApiJson<Page<Trade>>> {
    let open = match q.status.as_deref().unwrap_or("open") {
        "open" => Some(true),
        "closed" => Some(false),
        "all" => None,
        other => {
            return Err(ApiError::validation(
                "status",
                format!("status must be open, closed or all, got {other:?}"),
            ));
        }
    };
    let limit = limit_of(q.limit)?;
    let positions = store::orders::positions(
        &state.store,
        &PositionFilter {
            open,
            symbol: q.symbol,
            account: account_filter(q.account)?,
            before: paging::id_cursor(q.cursor.as_deref())?,
            limit: limit + 1,
        },
    )
    .await?;
    let page = Page::from_overfetch(positions, limit, |p| p.id.to_string(), |p| p);
    Ok(ApiJson(Page {
        items: mark_trades(&state, page.items).await?,
        next_cursor: page.next_cursor,
    }))
}

/// Filters of `GET /api/trades/fills`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FillQuery {
    pub symbol: Option<String>,
    /// `user:<id>` (a user's manual trades), `strategy:<id>`, or `manual` (earlier
    /// versions' shared manual account).
    #[param(pattern = "^(manual|(user|strategy):[0-9]{1,18})$")]
    pub account: Option<String>,
    pub order_id: Option<i64>,
    /// Trade id.
    pub trade_id: Option<i64>,
    /// 1–1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Continue after this cursor: the `next_cursor` of the page before.
    #[param(pattern = r"^[0-9]{0,18}$")]
    pub cursor: Option<String>,
}

/// Executions, newest first, with their order's type, tag and placer.
#[utoipa::path(get, path = "/api/trades/fills", tag = "orders", params(FillQuery),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Page<FillRecord>), (status = 422, body = ErrorBody)))]
async fn list_fills(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<FillQuery>,
) -> ApiResult<ApiJson<Page<FillRecord>>> {
    let limit = limit_of(q.limit)?;
    let fills = store::orders::fills(
        &state.store,
        &FillFilter {
            symbol: q.symbol,
            account: account_filter(q.account)?,
            order_id: q.order_id,
            position_id: q.trade_id,
            before: paging::id_cursor(q.cursor.as_deref())?,
            limit: limit + 1,
        },
    )
    .await?;
    Ok(ApiJson(Page::from_overfetch(
        fills,
        limit,
        |f| f.id.to_string(),
        FillRecord::from,
    )))
}

/// A trade with its fills.
#[derive(Debug, Serialize, ToSchema)]
pub struct TradeDetail {
    #[serde(flatten)]
    pub trade: Trade,
    /// Oldest first.
    pub fills: Vec<FillRecord>,
}

/// One trade with its fills.
#[utoipa::path(get, path = "/api/trades/{id}", tag = "orders",
    params(("id" = i64, Path, description = "trade (position) id")),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = TradeDetail), (status = 404, body = ErrorBody)))]
async fn get_trade(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<ApiJson<TradeDetail>> {
    let p = store::orders::position(&state.store, id).await?;
    let fills = store::orders::fills(
        &state.store,
        &FillFilter {
            position_id: Some(id),
            limit: 10_000,
            ..FillFilter::default()
        },
    )
    .await?;
    let fills = fills.into_iter().rev().map(FillRecord::from).collect();
    let trade = mark_trades(&state, vec![p]).await?.remove(0);
    Ok(ApiJson(TradeDetail { trade, fills }))
}

/// Close an open trade: a market order for its whole quantity the other way, in the trade's
/// account, tagged `close-trade:<id>`, through the same risk checks as any order. 404 for an
/// unknown trade; 409 when it is already closed or a close order for it is still working.
#[utoipa::path(post, path = "/api/trades/{id}/close", tag = "orders",
    params(("id" = i64, Path, description = "trade (position) id")),
    security(("bearer" = ["trader"]), ("api_key" = ["trader"])),
    responses((status = 200, description = "the closing order", body = Order), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn close_trade(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<ApiJson<Order>> {
    let p = store::orders::position(&state.store, id).await?;
    if p.closed_at.is_some() || p.quantity == 0.0 {
        return Err(ApiError::conflict(format!(
            "trade {id} is already closed: nothing to close"
        )));
    }
    if let AccountId::Strategy(strategy) = p.account {
        // Its position is the live engine's: an order stored here would never reach it.
        return Err(ApiError::conflict(format!(
            "trade {id} belongs to live strategy {strategy}; the live engine holds its position: disable the strategy or let it close the trade"
        )));
    }
    require_account_owner(&caller, p.account, &format!("trade {id}"))?;
    let tag = format!("close-trade:{id}");
    let pending = store::orders::list(
        &state.store,
        &OrderFilter {
            status: Some("working".into()),
            tag: Some(tag.clone()),
            limit: 1,
            ..OrderFilter::default()
        },
    )
    .await?;
    if let Some(o) = pending.first() {
        return Err(ApiError::conflict(format!(
            "order {} closing trade {id} is still working",
            o.id
        )));
    }
    let request = OrderRequest {
        symbol: p.symbol.clone(),
        side: if p.quantity > 0.0 {
            Side::Sell
        } else {
            Side::Buy
        },
        quantity: Quantity::Units(p.quantity.abs()),
        kind: OrderKind::Market,
        time_in_force: TimeInForce::Gtc,
        take_profit: None,
        stop_loss: None,
        oco_group: None,
        tag: Some(tag),
    };
    Ok(ApiJson(
        place(&state, p.account, &caller, request).await?.into(),
    ))
}
