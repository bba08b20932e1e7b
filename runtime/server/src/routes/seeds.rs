//! The product seeds' routes that are another name for, or a thin layer over, what the API
//! already does (`docs/server.md`, "Seed routes"): the active strategies, a strategy's
//! parameters, the recent trades, a trade's stop-loss, the MT4-style `POST /api/trade`, and
//! the market's coin state. Each calls the existing route's function, so it meets the same
//! validation, owner rules, risk checks and answers.

use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::orders::{
    ModifyOrder, PlaceOrder, Trade, TradeQuery, list_trades, place, place_manual,
    require_order_owner,
};
use super::strategies::{
    ConfigureRequest, StrategyView, configure_strategy, info_of, require_owner, view,
};
use super::summaries::live_data;
use crate::api_types::orders::Order;
use crate::api_types::strategies::Instance;
use crate::auth::access::Caller;
use crate::cache::CachedJson;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use crate::marks::{PriceSource, price_assets};
use crate::paging::{Page, PageQuery};
use crate::state::AppState;
use qtm_core::model::{OrderKind, OrderRequest, ParamKind, Quantity, Side, TimeInForce};
use qtm_oms::exchange::Exchange;
use qtm_store::orders::{AccountId, OrderFilter};
use qtm_store::{self as store};

/// The seed alias routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(active_strategies))
        .routes(routes!(get_strategy_parameters, put_strategy_parameters))
        .routes(routes!(recent_trades))
        .routes(routes!(
            get_stoploss,
            put_stoploss,
            post_stoploss,
            delete_stoploss
        ))
        .routes(routes!(mt4_trade))
        .routes(routes!(coinstate))
}

// ---- strategies -----------------------------------------------------------------------------

/// Alias of `GET /api/strategies` keeping only the strategies whose default instance is
/// enabled (the ones the live engine runs, or holds halted), by id, one page at a time; the
/// same `StrategyView` items.
#[utoipa::path(get, path = "/api/strategies/active", tag = "strategies", params(PageQuery),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Page<StrategyView>), (status = 422, body = ErrorBody)))]
async fn active_strategies(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<CachedJson> {
    let records = store::strategies::list(&state.store).await?;
    let latest = store::backtests::latest_done(&state.store).await?;
    let page = q.page_by_id(
        records
            .into_iter()
            .filter(|r| r.instance.status == "enabled"),
        |r| r.strategy.id,
        |r| {
            let l = latest.get(&r.strategy.id);
            view(r, l)
        },
    )?;
    CachedJson::of(&page)
}

/// One declared parameter of a strategy, with its current value.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ParameterSpec {
    pub name: String,
    pub description: String,
    /// `int`, `float`, `boolean` or `choice`.
    #[serde(rename = "type")]
    #[schema(pattern = "^(int|float|boolean|choice)$")]
    pub kind: String,
    /// Range of `int` and `float` parameters (inclusive).
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub step: Option<f64>,
    /// The values a `choice` parameter takes.
    pub choices: Option<Vec<String>>,
    /// The default the component declares.
    #[schema(schema_with = param_value_schema)]
    pub default: Value,
    /// The value the default instance runs with.
    #[schema(schema_with = param_value_schema)]
    pub value: Value,
}

/// A parameter's value: a number (`int`, `float`), a boolean or a string (`choice`).
fn param_value_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(
            [Type::Boolean, Type::Number, Type::String]
                .into_iter()
                .collect::<SchemaType>(),
        )
        .description(Some(
            "a number (int, float), a boolean or a string (choice)",
        ))
        .build()
}

/// `GET /api/strategies/{id}/parameters`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StrategyParameters {
    pub strategy_id: i64,
    /// The version whose `describe` declares them (the instance's current version).
    pub version: i64,
    /// The current parameters, `{"name": value}` (the instance's `params`).
    #[schema(value_type = Object)]
    pub params: Value,
    /// Every declared parameter: type, range or choices, default and current value.
    pub schema: Vec<ParameterSpec>,
}

/// A strategy's current parameters with their declared schema: for each, the type and range
/// or choices its component's `describe` declares, its default and the value the default
/// instance runs with.
#[utoipa::path(get, path = "/api/strategies/{id}/parameters", tag = "strategies",
    params(("id" = i64, Path, description = "strategy id")),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = StrategyParameters), (status = 404, body = ErrorBody)))]
async fn get_strategy_parameters(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<ApiJson<StrategyParameters>> {
    let record = store::strategies::get(&state.store, id).await?;
    let info = info_of(&record.current_version)?;
    let current = &record.instance.params;
    let schema = info
        .params
        .iter()
        .map(|p| {
            let (kind, min, max, step, choices) = match &p.kind {
                ParamKind::Int { min, max, step } => (
                    "int",
                    Some(*min as f64),
                    Some(*max as f64),
                    Some(*step as f64),
                    None,
                ),
                ParamKind::Float { min, max, step } => {
                    ("float", Some(*min), Some(*max), Some(*step), None)
                }
                ParamKind::Boolean => ("boolean", None, None, None, None),
                ParamKind::Choice { choices } => {
                    ("choice", None, None, None, Some(choices.clone()))
                }
            };
            let default = serde_json::to_value(&p.default).unwrap_or(Value::Null);
            ParameterSpec {
                name: p.name.clone(),
                description: p.description.clone(),
                kind: kind.into(),
                min,
                max,
                step,
                choices,
                value: current.get(&p.name).cloned().unwrap_or(default.clone()),
                default,
            }
        })
        .collect();
    Ok(ApiJson(StrategyParameters {
        strategy_id: id,
        version: record.instance.version,
        params: current.clone(),
        schema,
    }))
}

/// New parameter values.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ParametersRequest {
    /// `{"fast": 10, …}`: checked against the version's `describe`; parameters not named
    /// keep their current values.
    #[schema(value_type = Object)]
    pub params: Value,
}

/// Alias of `PUT /api/strategies/{id}/configure` with only `params`: the same function, so
/// the same owner check (traders change only their own strategies), the same validation
/// (unknown names, wrong types and out-of-range values refused naming `params.<name>`, then
/// the strategy's own check) and the same answer, the instance with its resolved parameters.
/// The symbols stay as they are.
#[utoipa::path(put, path = "/api/strategies/{id}/parameters", tag = "strategies",
    params(("id" = i64, Path, description = "strategy id")),
    request_body = ParametersRequest,
    security(("bearer" = ["trader"]), ("api_key" = ["trader"])),
    responses((status = 200, body = Instance), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn put_strategy_parameters(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<i64>,
    req: Request,
) -> ApiResult<ApiJson<Instance>> {
    // The owner first: a non-owner is told so whatever the body holds.
    require_owner(&state, &p, id, "configure").await?;
    let ApiJson(body) = ApiJson::<ParametersRequest>::from_request(req, &state).await?;
    configure_strategy(
        State(state),
        Caller(p),
        ApiPath(id),
        ApiJson(ConfigureRequest {
            params: Some(body.params),
            symbols: None,
        }),
    )
    .await
}

// ---- trades ---------------------------------------------------------------------------------

/// Alias of `GET /api/trades?status=all`: every trade, open and closed, newest first, paged
/// with `limit` and `cursor` as that list is.
#[utoipa::path(get, path = "/api/trades/recent", tag = "orders", params(PageQuery),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Page<Trade>), (status = 422, body = ErrorBody)))]
async fn recent_trades(
    state: State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<ApiJson<Page<Trade>>> {
    list_trades(
        state,
        ApiQuery(TradeQuery {
            status: Some("all".into()),
            symbol: None,
            account: None,
            limit: q.limit,
            cursor: q.cursor,
        }),
    )
    .await
}

/// The tag of a trade's stop-loss order.
fn stoploss_tag(trade: i64) -> String {
    format!("stoploss:{trade}")
}

/// The working stop-loss order of trade `id` (404 for an unknown trade).
async fn working_stop(state: &AppState, id: i64) -> ApiResult<Option<store::orders::Order>> {
    store::orders::position(&state.store, id).await?;
    Ok(store::orders::list(
        &state.store,
        &OrderFilter {
            status: Some("working".into()),
            tag: Some(stoploss_tag(id)),
            limit: 1,
            ..OrderFilter::default()
        },
    )
    .await?
    .into_iter()
    .next())
}

/// The working stop order protecting a trade: the one `PUT /api/trades/{id}/stoploss`
/// placed (tagged `stoploss:<id>`). 404 for an unknown trade, and for a trade without a
/// working stop-loss order.
#[utoipa::path(get, path = "/api/trades/{id}/stoploss", tag = "orders",
    params(("id" = i64, Path, description = "trade (position) id")),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Order),
        (status = 404, description = "no such trade, or it has no working stop-loss order", body = ErrorBody)))]
async fn get_stoploss(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<ApiJson<Order>> {
    match working_stop(&state, id).await? {
        Some(o) => Ok(ApiJson(o.into())),
        None => Err(ApiError::not_found(format!(
            "trade {id} has no working stop-loss order: place one with PUT /api/trades/{id}/stoploss"
        ))),
    }
}

/// The stop price.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StopLossRequest {
    /// The stop price, > 0: below the mark for a long trade, above it for a short one.
    #[schema(exclusive_minimum = 0.0)]
    pub stop_price: f64,
}

/// Place or replace the stop-loss order of trade `id` for `caller`; `true` when placed.
async fn set_stoploss(
    state: &AppState,
    caller: &crate::auth::Principal,
    id: i64,
    req: &StopLossRequest,
) -> ApiResult<(bool, store::orders::Order)> {
    let stop = req.stop_price;
    if !(stop.is_finite() && stop > 0.0) {
        return Err(ApiError::validation(
            "stop_price",
            format!("stop_price must be a positive price, got {stop}"),
        ));
    }
    let p = store::orders::position(&state.store, id).await?;
    if p.closed_at.is_some() || p.quantity == 0.0 {
        return Err(ApiError::conflict(format!(
            "trade {id} is closed: nothing to protect"
        )));
    }
    if let AccountId::Strategy(strategy) = p.account {
        // Its position is the live engine's: an order stored here would never reach it.
        return Err(ApiError::conflict(format!(
            "trade {id} belongs to live strategy {strategy}; the live engine holds its position: the strategy manages its exits"
        )));
    }
    super::orders::require_account_owner(caller, p.account, &format!("trade {id}"))?;
    let long = p.quantity > 0.0;
    if let Some(mark) = crate::marks::mark(state, &p.symbol).await? {
        let wrong_side = if long {
            stop >= mark.price
        } else {
            stop <= mark.price
        };
        if wrong_side {
            return Err(ApiError::validation(
                "stop_price",
                format!(
                    "a stop-loss of a {} trade must lie {} the mark {} of {}, got {stop}",
                    if long { "long" } else { "short" },
                    if long { "below" } else { "above" },
                    mark.price,
                    p.symbol
                ),
            ));
        }
    }
    let quantity = p.quantity.abs();
    if let Some(existing) = working_stop(state, id).await? {
        // Replace: the working order changes in place (same id), judged again by the risk
        // checks as any modification is.
        let change = ModifyOrder {
            quantity: (existing.quantity != quantity).then_some(quantity),
            limit_price: None,
            stop_price: Some(stop),
        };
        let order = super::orders::modify(state, caller, existing.id, &change).await?;
        return Ok((false, order));
    }
    let request = OrderRequest {
        symbol: p.symbol.clone(),
        side: if long { Side::Sell } else { Side::Buy },
        quantity: Quantity::Units(quantity),
        kind: OrderKind::Stop(stop),
        time_in_force: TimeInForce::Gtc,
        take_profit: None,
        stop_loss: None,
        oco_group: None,
        tag: Some(stoploss_tag(id)),
    };
    Exchange::validate(&request)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", e))?;
    Ok((true, place(state, p.account, caller, request).await?))
}

async fn stoploss_answer(
    state: &AppState,
    caller: &crate::auth::Principal,
    id: i64,
    req: &StopLossRequest,
) -> ApiResult<(StatusCode, ApiJson<Order>)> {
    let (placed, order) = set_stoploss(state, caller, id, req).await?;
    let status = if placed {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, ApiJson(order.into())))
}

/// Place or replace a trade's stop-loss: a stop order for the trade's whole quantity the
/// other way, in the trade's account, tagged `stoploss:<id>`, through the order path every
/// order takes (the same risk checks as `POST /api/trades/{id}/close`). With a stop-loss
/// working, it is changed in place (same order id; only its placer or an admin may, as for
/// `PUT /api/orders/{id}`). 201 when placed, 200 when replaced; 404 for an unknown trade,
/// 409 when it is closed or belongs to a live strategy, 422 for a stop on the wrong side of
/// the mark or refused by the risk checks (`risk_rejected`). The stop stays working until it
/// fills or is cancelled (`DELETE`): closing the trade another way does not cancel it.
#[utoipa::path(put, path = "/api/trades/{id}/stoploss", tag = "orders",
    params(("id" = i64, Path, description = "trade (position) id")),
    request_body = StopLossRequest,
    security(("bearer" = ["trader"]), ("api_key" = ["trader"])),
    responses((status = 200, description = "the stop-loss order, replaced", body = Order),
        (status = 201, description = "the stop-loss order, placed", body = Order),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn put_stoploss(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<StopLossRequest>,
) -> ApiResult<(StatusCode, ApiJson<Order>)> {
    stoploss_answer(&state, &p, id, &req).await
}

/// The same as `PUT /api/trades/{id}/stoploss`.
#[utoipa::path(post, path = "/api/trades/{id}/stoploss", tag = "orders",
    operation_id = "post_stoploss",
    params(("id" = i64, Path, description = "trade (position) id")),
    request_body = StopLossRequest,
    security(("bearer" = ["trader"]), ("api_key" = ["trader"])),
    responses((status = 200, description = "the stop-loss order, replaced", body = Order),
        (status = 201, description = "the stop-loss order, placed", body = Order),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn post_stoploss(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<StopLossRequest>,
) -> ApiResult<(StatusCode, ApiJson<Order>)> {
    stoploss_answer(&state, &p, id, &req).await
}

/// Cancel a trade's stop-loss order (as `POST /api/orders/{id}/cancel` does; only its placer
/// or an admin may). 404 for an unknown trade or one without a working stop-loss order.
#[utoipa::path(delete, path = "/api/trades/{id}/stoploss", tag = "orders",
    params(("id" = i64, Path, description = "trade (position) id")),
    security(("bearer" = ["trader"]), ("api_key" = ["trader"])),
    responses((status = 200, description = "the cancelled stop-loss order", body = Order),
        (status = 403, body = ErrorBody),
        (status = 404, description = "no such trade, or it has no working stop-loss order", body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn delete_stoploss(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<ApiJson<Order>> {
    // Whose trade it is decides before whether it has a stop (no probing others' trades).
    let trade = store::orders::position(&state.store, id).await?;
    super::orders::require_account_owner(&p, trade.account, &format!("trade {id}"))?;
    let Some(order) = working_stop(&state, id).await? else {
        return Err(ApiError::not_found(format!(
            "trade {id} has no working stop-loss order"
        )));
    };
    require_order_owner(&p, &order)?;
    let reason = format!("stop-loss of trade {id} cancelled by {}", p.username);
    Ok(ApiJson(
        super::orders::cancel(&state, order.id, &reason)
            .await?
            .into(),
    ))
}

// ---- the MT4-style trade ----------------------------------------------------------------------

/// The seeds' MT4-style trade request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TradeRequest {
    /// A symbol of `GET /api/market/assets`.
    #[schema(min_length = 1, max_length = 32)]
    pub symbol: String,
    /// `buy` or `sell`.
    #[serde(rename = "type")]
    #[schema(pattern = "^(buy|sell)$")]
    pub side: String,
    /// Size in units (a lot is one unit here), > 0.
    #[schema(exclusive_minimum = 0.0)]
    pub lots: f64,
    /// Stop-loss price (also `stop_loss`): the exit for loss of the position it opens.
    #[serde(rename = "stopLoss", alias = "stop_loss")]
    #[schema(exclusive_minimum = 0.0)]
    pub stop_loss: Option<f64>,
    /// Take-profit price (also `take_profit`).
    #[serde(rename = "takeProfit", alias = "take_profit")]
    #[schema(exclusive_minimum = 0.0)]
    pub take_profit: Option<f64>,
    /// Free text of at most 64 characters, kept as the order's tag.
    #[schema(max_length = 64)]
    pub comment: Option<String>,
}

/// What `POST /api/trade` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct TradeTicket {
    /// Always true (failures are errors).
    pub success: bool,
    /// The order's id.
    pub ticket: i64,
    pub message: String,
    /// The order as `POST /api/orders` answers it.
    pub order: Order,
}

/// The seed's name of a field of `POST /api/orders`.
fn seed_field(field: &str) -> &str {
    match field {
        "side" => "type",
        "quantity" => "lots",
        "stop_loss" => "stopLoss",
        "take_profit" => "takeProfit",
        "tag" => "comment",
        other => other,
    }
}

/// The seeds' MT4-style trade: a manual market order of `lots` units, `type` `buy` or
/// `sell`, with `stopLoss`/`takeProfit` (or `stop_loss`/`take_profit`) as its bracket and
/// `comment` as its tag, placed through exactly the path of `POST /api/orders` (the same
/// validation, risk checks and kill switch). 201 with `{"success": true, "ticket": <order id>,
/// "message", "order"}`; errors in the one error shape, their `field` in the seed's names
/// (`lots`, `type`, `stopLoss`, …): 422 `validation` or `risk_rejected`.
#[utoipa::path(post, path = "/api/trade", tag = "orders", request_body = TradeRequest,
    security(("bearer" = ["trader"]), ("api_key" = ["trader"])),
    responses((status = 201, body = TradeTicket),
        (status = 422, description = "invalid field (`validation`) or refused by risk (`risk_rejected`)", body = ErrorBody)))]
async fn mt4_trade(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiJson(req): ApiJson<TradeRequest>,
) -> ApiResult<(StatusCode, ApiJson<TradeTicket>)> {
    let order = PlaceOrder {
        symbol: req.symbol,
        side: req.side,
        quantity: req.lots,
        order_type: None,
        limit_price: None,
        stop_price: None,
        time_in_force: None,
        take_profit: req.take_profit,
        stop_loss: req.stop_loss,
        tag: req.comment,
    };
    let placed = place_manual(&state, &p, &order).await.map_err(|mut e| {
        if let Some(f) = &e.field {
            e.field = Some(seed_field(f).to_string());
        }
        e
    })?;
    let order = Order::from(placed);
    Ok((
        StatusCode::CREATED,
        ApiJson(TradeTicket {
            success: true,
            ticket: order.id,
            message: format!(
                "order {} placed: {} {} {} at market",
                order.id, order.side, order.quantity, order.symbol
            ),
            order,
        }),
    ))
}

// ---- the market -----------------------------------------------------------------------------

/// One symbol of the coin state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CoinState {
    pub symbol: String,
    /// The mark: the live market's last price, else the newest stored close.
    pub last_price: Option<f64>,
    /// Change since the previous UTC day's close, percent.
    pub change_pct: Option<f64>,
    /// Of the stored bars of the 24 hours before the last stored one.
    pub volume_24h: Option<f64>,
    pub high_24h: Option<f64>,
    pub low_24h: Option<f64>,
    /// Open time of the bar `last_price` is the close of, unix seconds.
    pub mark_ts: Option<i64>,
    /// `live` or `stored`.
    pub source: Option<PriceSource>,
}

/// `GET /api/coinstate`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CoinStateReport {
    /// Every asset, by symbol.
    pub symbols: Vec<CoinState>,
    /// Whether the live market moved in the last minute.
    pub live_data: bool,
    /// Now, unix seconds.
    pub timestamp: i64,
    /// `live` when at least one price is the live market's, else `stored`.
    #[schema(pattern = "^(live|stored)$")]
    pub source: String,
}

/// The market's state in the seeds' shape: every asset with its last price (the mark, as
/// `GET /api/market/assets` shows it), daily change, 24 h volume, high and low, and the time
/// and source of the price; `live_data` (did the live market move in the last minute),
/// `timestamp` (unix seconds) and `source` (`live` when any price is the live market's, else
/// `stored`).
#[utoipa::path(get, path = "/api/coinstate", tag = "market",
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = CoinStateReport)))]
async fn coinstate(State(state): State<AppState>) -> ApiResult<ApiJson<CoinStateReport>> {
    let assets = store::market::list_assets_cached(&state.store).await?;
    let symbols: Vec<CoinState> = price_assets(&state, &assets)
        .into_iter()
        .map(|v| CoinState {
            symbol: v.asset.symbol.into_owned(),
            last_price: v.asset.last_price,
            change_pct: v.asset.change_pct,
            volume_24h: v.asset.volume_24h,
            high_24h: v.asset.high_24h,
            low_24h: v.asset.low_24h,
            mark_ts: v.price_ts,
            source: v.price_source,
        })
        .collect();
    let any_live = symbols.iter().any(|s| s.source == Some(PriceSource::Live));
    Ok(ApiJson(CoinStateReport {
        symbols,
        live_data: live_data(&state),
        timestamp: store::now(),
        source: if any_live { "live" } else { "stored" }.into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn order_fields_take_the_seed_names() {
        for (ours, seed) in [
            ("side", "type"),
            ("quantity", "lots"),
            ("stop_loss", "stopLoss"),
            ("take_profit", "takeProfit"),
            ("tag", "comment"),
            ("symbol", "symbol"),
        ] {
            assert_eq!(seed_field(ours), seed);
        }
        let t: TradeRequest = serde_json::from_value(
            json!({"symbol": "SPY", "type": "buy", "lots": 1, "stop_loss": 90, "takeProfit": 110}),
        )
        .unwrap();
        assert_eq!((t.stop_loss, t.take_profit), (Some(90.0), Some(110.0)));
    }

    #[test]
    fn every_seed_route_is_documented_with_what_it_is() {
        let (_, doc) = crate::api_routes().split_for_parts();
        let mut doc = serde_json::to_value(&doc).unwrap();
        crate::openapi::complete(&mut doc).unwrap();
        let op = |method: &str, path: &str| {
            doc["paths"][path][method]
                .as_object()
                .unwrap_or_else(|| panic!("{method} {path} is not in the document"))
                .clone()
        };
        let text = |o: &serde_json::Map<String, Value>| {
            format!(
                "{} {}",
                o.get("summary").and_then(Value::as_str).unwrap_or(""),
                o.get("description").and_then(Value::as_str).unwrap_or("")
            )
        };
        for (method, path, alias_of) in [
            ("get", "/api/dashboard/summary", None),
            ("get", "/api/pnl/summary", None),
            ("get", "/api/trades/active/summary", None),
            ("get", "/api/risk/dashboard", None),
            ("get", "/api/strategies/{id}/parameters", None),
            (
                "put",
                "/api/strategies/{id}/parameters",
                Some("PUT /api/strategies/{id}/configure"),
            ),
            ("get", "/api/strategies/active", Some("GET /api/strategies")),
            (
                "get",
                "/api/trades/recent",
                Some("GET /api/trades?status=all"),
            ),
            ("get", "/api/trades/{id}/stoploss", None),
            ("put", "/api/trades/{id}/stoploss", None),
            ("post", "/api/trades/{id}/stoploss", None),
            ("delete", "/api/trades/{id}/stoploss", None),
            ("get", "/api/health", None),
            ("get", "/api/signals/glassnode", None),
            ("get", "/api/signals", None),
            ("get", "/api/v1/plugins", None),
            ("post", "/api/v1/plugins/{name}/execute", None),
            ("get", "/api/v1/webhooks", None),
            (
                "post",
                "/api/v1/webhooks/{type}",
                Some("POST /api/webhooks/{source}"),
            ),
            ("get", "/api/v1/websocket/stats", None),
            ("post", "/api/trade", None),
            ("get", "/api/coinstate", None),
            ("get", "/api/portfolio", None),
            ("get", "/api/analytics/performance", None),
            ("get", "/api/notifications", None),
        ] {
            let o = op(method, path);
            let t = text(&o);
            assert!(t.len() > 40, "{method} {path} says too little: {t:?}");
            if let Some(of) = alias_of {
                assert!(
                    t.contains(&format!("Alias of `{of}`")),
                    "{method} {path}: {t:?}"
                );
            }
            for (status, r) in o["responses"].as_object().unwrap() {
                // Health answers its own body when degraded; the rest, the one error shape.
                let own_body =
                    status.starts_with('2') || (path == "/api/health" && status == "503");
                if !own_body {
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
        // The one public route among them, and the alias of a public one.
        assert_eq!(op("get", "/api/health")["security"], json!([{}]));
        assert_eq!(
            op("post", "/api/v1/webhooks/{type}")["security"],
            json!([{}])
        );
        // Constraints are in the schema.
        let signals = op("get", "/api/signals");
        let min = signals["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "min_confidence")
            .unwrap();
        assert_eq!(
            (
                min["schema"]["minimum"].as_f64(),
                min["schema"]["maximum"].as_f64()
            ),
            (Some(0.0), Some(1.0))
        );
        let trade = &doc["components"]["schemas"]["TradeRequest"]["properties"];
        assert_eq!(trade["comment"]["maxLength"], 64);
        assert_eq!(trade["lots"]["exclusiveMinimum"].as_f64(), Some(0.0));
    }
}
