//! Order construction: a builder over the contract's `order-request`.

use crate::{OrderKind, OrderRequest, Quantity, Side, StopLimit, TimeInForce, Trail};

/// An order ready to [`submit`](crate::Context::submit).
///
/// ```
/// use qtm_guest_sdk::{Order, Quantity, Side, TimeInForce};
/// // Buy 10 at 99.5 or better, with a take-profit at 105 and a stop-loss at 97 (a bracket).
/// let o = Order::limit("SPY", Side::Buy, Quantity::Units(10.0), 99.5)
///     .take_profit(105.0)
///     .stop_loss(97.0)
///     .time_in_force(TimeInForce::Day)
///     .tag("breakout");
/// assert_eq!(o.request().take_profit, Some(105.0));
/// ```
#[derive(Debug, Clone)]
pub struct Order(OrderRequest);

impl Order {
    fn new(symbol: &str, side: Side, quantity: Quantity, kind: OrderKind) -> Self {
        Self(OrderRequest {
            symbol: symbol.into(),
            side,
            quantity,
            kind,
            time_in_force: TimeInForce::Gtc,
            take_profit: None,
            stop_loss: None,
            oco_group: None,
            tag: None,
        })
    }
    /// Fill at the next bar's open (or the next tick).
    pub fn market(symbol: &str, side: Side, quantity: Quantity) -> Self {
        Self::new(symbol, side, quantity, OrderKind::Market)
    }
    /// Fill at `price` or better.
    pub fn limit(symbol: &str, side: Side, quantity: Quantity, price: f64) -> Self {
        Self::new(symbol, side, quantity, OrderKind::Limit(price))
    }
    /// Become a market order once the price trades through `stop`.
    pub fn stop(symbol: &str, side: Side, quantity: Quantity, stop: f64) -> Self {
        Self::new(symbol, side, quantity, OrderKind::Stop(stop))
    }
    /// Become a limit order at `limit` once the price trades through `stop`.
    pub fn stop_limit(symbol: &str, side: Side, quantity: Quantity, stop: f64, limit: f64) -> Self {
        Self::new(
            symbol,
            side,
            quantity,
            OrderKind::StopLimit(StopLimit { stop, limit }),
        )
    }
    /// A stop that follows the best price by `trail`.
    pub fn trailing_stop(symbol: &str, side: Side, quantity: Quantity, trail: Trail) -> Self {
        Self::new(symbol, side, quantity, OrderKind::TrailingStop(trail))
    }
    /// Attach a take-profit exit (makes a bracket).
    pub fn take_profit(mut self, price: f64) -> Self {
        self.0.take_profit = Some(price);
        self
    }
    /// Attach a stop-loss exit (makes a bracket).
    pub fn stop_loss(mut self, price: f64) -> Self {
        self.0.stop_loss = Some(price);
        self
    }
    /// How long the order rests (default GTC).
    pub fn time_in_force(mut self, tif: TimeInForce) -> Self {
        self.0.time_in_force = tif;
        self
    }
    /// Join an OCO group: the first fill in the group cancels the others.
    pub fn oco(mut self, group: &str) -> Self {
        self.0.oco_group = Some(group.into());
        self
    }
    /// Free text echoed back on fills.
    pub fn tag(mut self, tag: &str) -> Self {
        self.0.tag = Some(tag.into());
        self
    }
    /// The request as it will be sent.
    pub fn request(&self) -> &OrderRequest {
        &self.0
    }
    /// Take the request out of the builder.
    pub fn into_request(self) -> OrderRequest {
        self.0
    }
}
