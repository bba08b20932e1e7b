//! Pre-trade risk checks and kill switches: native, applied to every order, the same code in
//! backtest and live.
//!
//! Every limit is inclusive: a value exactly at the limit passes, anything beyond is refused.
//! A refusal reaches the strategy as the error of `submit-order` and is published as a risk
//! alert. Kill switches (daily loss, drawdown) halt the strategy and cancel its orders.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Limits for one strategy's account. `None` disables a limit.
///
/// Every limit is off by default except the two that bound the work the host does for an
/// account outside the strategy's fuel and deadline: `max_resting_orders` and
/// `max_oco_orders`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RiskLimits {
    /// Largest order, in units.
    pub max_order_quantity: Option<f64>,
    /// Largest order notional (units × price).
    pub max_order_notional: Option<f64>,
    /// Largest absolute position per symbol, in units, after the order.
    pub max_position: Option<f64>,
    /// Largest sum of |position × price| over symbols, after the order.
    pub max_gross_exposure: Option<f64>,
    /// Most resting orders at once.
    pub max_open_orders: Option<usize>,
    /// Most resting orders at once, as a bound on the host's work and memory for the account
    /// (default [`DEFAULT_MAX_RESTING_ORDERS`]); `max_open_orders` is the trading limit.
    pub max_resting_orders: Option<usize>,
    /// Most resting orders in one OCO group (default [`DEFAULT_MAX_OCO_ORDERS`]): a fill
    /// cancels the rest of its group at once.
    pub max_oco_orders: Option<usize>,
    /// Most orders accepted per `order_window_secs` of market time.
    pub max_orders_per_window: Option<u32>,
    /// Window of the order-rate limit, seconds (default 60).
    pub order_window_secs: Option<i64>,
    /// Limit and stop prices must lie within this percentage of the last price.
    pub price_collar_pct: Option<f64>,
    /// Halt when equity falls this much (currency) below the day's opening equity.
    pub max_daily_loss: Option<f64>,
    /// Halt when equity falls this many percent below its peak.
    pub max_drawdown_pct: Option<f64>,
}

/// Default of [`RiskLimits::max_resting_orders`].
pub const DEFAULT_MAX_RESTING_ORDERS: usize = 1_000;
/// Default of [`RiskLimits::max_oco_orders`].
pub const DEFAULT_MAX_OCO_ORDERS: usize = 16;

impl Default for RiskLimits {
    fn default() -> Self {
        Self {
            max_order_quantity: None,
            max_order_notional: None,
            max_position: None,
            max_gross_exposure: None,
            max_open_orders: None,
            max_resting_orders: Some(DEFAULT_MAX_RESTING_ORDERS),
            max_oco_orders: Some(DEFAULT_MAX_OCO_ORDERS),
            max_orders_per_window: None,
            order_window_secs: None,
            price_collar_pct: None,
            max_daily_loss: None,
            max_drawdown_pct: None,
        }
    }
}

impl RiskLimits {
    /// Refuse nonsensical limits (negative, NaN) with the field's name.
    pub fn validate(&self) -> Result<(), String> {
        let fields = [
            ("max_order_quantity", self.max_order_quantity),
            ("max_order_notional", self.max_order_notional),
            ("max_position", self.max_position),
            ("max_gross_exposure", self.max_gross_exposure),
            ("price_collar_pct", self.price_collar_pct),
            ("max_daily_loss", self.max_daily_loss),
            ("max_drawdown_pct", self.max_drawdown_pct),
        ];
        for (name, v) in fields {
            if let Some(v) = v
                && !(v.is_finite() && v >= 0.0)
            {
                return Err(format!(
                    "risk limit {name} must be a non-negative number, got {v}"
                ));
            }
        }
        if self.order_window_secs.is_some_and(|w| w <= 0) {
            return Err("risk limit order_window_secs must be positive".into());
        }
        Ok(())
    }
}

/// What the risk engine needs to know about an order to check it.
#[derive(Debug, Clone, Copy)]
pub struct OrderCheck {
    /// Estimated units (for fractional sizing: resolved at the last price).
    pub quantity: f64,
    /// +1 buy, −1 sell.
    pub direction: f64,
    /// Last price of the symbol.
    pub last_price: f64,
    /// Limit or stop price, if any.
    pub order_price: Option<f64>,
    /// Signed position in the symbol now.
    pub position: f64,
    /// Gross exposure of the account now.
    pub gross_exposure: f64,
    /// Resting orders of the account now.
    pub open_orders: usize,
    /// Resting orders of the account in the order's OCO group now; `None` without a group.
    pub oco_orders: Option<usize>,
    /// Market time of the order, unix seconds.
    pub ts: i64,
}

/// What [`RiskState`] carries across a restart: the order-rate window, the day's opening and
/// the peak equity the loss limits measure from, and the halt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedRisk {
    /// Times of the accepted orders still in the rate window, oldest first.
    pub accepted: Vec<i64>,
    /// The day (days since the epoch) `day_start_equity` belongs to.
    pub day: Option<i64>,
    /// Equity when the day began.
    pub day_start_equity: f64,
    /// Highest equity seen.
    pub peak_equity: f64,
    /// Why trading is halted, if it is.
    pub halted: Option<String>,
}

/// Mutable risk state of one account.
#[derive(Debug, Clone, Default)]
pub struct RiskState {
    accepted: VecDeque<i64>,
    day: Option<i64>,
    day_start_equity: f64,
    peak_equity: f64,
    halted: Option<String>,
}

impl RiskState {
    /// Why the account is halted, if it is.
    pub fn halted(&self) -> Option<&str> {
        self.halted.as_deref()
    }

    /// Halt by hand (the API's kill switch).
    pub fn halt(&mut self, reason: String) {
        self.halted.get_or_insert(reason);
    }

    /// Release a halt; returns the reason it had.
    pub fn resume(&mut self) -> Option<String> {
        self.halted.take()
    }

    /// Forget the order [`RiskState::check_order`] just passed under `limits`: a later check
    /// refused it, so it does not count in the rate window.
    pub fn unrecord_last(&mut self, limits: &RiskLimits) {
        if limits.max_orders_per_window.is_some() {
            self.accepted.pop_back();
        }
    }

    /// Replace the order-rate window with the orders accepted at `times` (unix seconds).
    pub fn set_window(&mut self, mut times: Vec<i64>) {
        times.sort_unstable();
        self.accepted = times.into();
    }

    /// The state to carry across a restart.
    pub fn save(&self) -> SavedRisk {
        SavedRisk {
            accepted: self.accepted.iter().copied().collect(),
            day: self.day,
            day_start_equity: self.day_start_equity,
            peak_equity: self.peak_equity,
            halted: self.halted.clone(),
        }
    }

    /// The state saved by [`RiskState::save`].
    pub fn restore(saved: SavedRisk) -> Self {
        let mut accepted: Vec<i64> = saved.accepted;
        accepted.sort_unstable();
        Self {
            accepted: accepted.into(),
            day: saved.day,
            day_start_equity: saved.day_start_equity,
            peak_equity: saved.peak_equity,
            halted: saved.halted,
        }
    }

    /// Pre-trade check; `Err` is the reason given to the strategy.
    pub fn check_order(&mut self, limits: &RiskLimits, o: &OrderCheck) -> Result<(), String> {
        if let Some(reason) = &self.halted {
            return Err(format!("strategy halted: {reason}"));
        }
        let q = o.quantity.abs();
        if let Some(max) = limits.max_order_quantity
            && q > max
        {
            return Err(format!(
                "order quantity {q} exceeds max_order_quantity {max}"
            ));
        }
        let notional = q * o.last_price;
        if let Some(max) = limits.max_order_notional
            && notional > max
        {
            return Err(format!(
                "order notional {notional:.2} exceeds max_order_notional {max}"
            ));
        }
        let after = o.position + o.direction * q;
        if let Some(max) = limits.max_position
            && after.abs() > max
        {
            return Err(format!(
                "position after the order {after} exceeds max_position {max}"
            ));
        }
        if let Some(max) = limits.max_gross_exposure {
            let gross =
                o.gross_exposure - (o.position * o.last_price).abs() + (after * o.last_price).abs();
            if gross > max {
                return Err(format!(
                    "gross exposure after the order {gross:.2} exceeds max_gross_exposure {max}"
                ));
            }
        }
        if let Some(max) = limits.max_open_orders
            && o.open_orders + 1 > max
        {
            return Err(format!(
                "{} open orders already; max_open_orders is {max}",
                o.open_orders
            ));
        }
        if let Some(max) = limits.max_resting_orders
            && o.open_orders + 1 > max
        {
            return Err(format!(
                "{} resting orders already; max_resting_orders is {max}",
                o.open_orders
            ));
        }
        if let (Some(max), Some(n)) = (limits.max_oco_orders, o.oco_orders)
            && n + 1 > max
        {
            return Err(format!(
                "{n} orders in its OCO group already; max_oco_orders is {max}"
            ));
        }
        if let (Some(pct), Some(price)) = (limits.price_collar_pct, o.order_price) {
            let band = o.last_price * pct / 100.0;
            if (price - o.last_price).abs() > band {
                return Err(format!(
                    "price {price} is outside the {pct}% collar around the last price {}",
                    o.last_price
                ));
            }
        }
        if let Some(max) = limits.max_orders_per_window {
            let window = limits.order_window_secs.unwrap_or(60);
            while self.accepted.front().is_some_and(|&t| t <= o.ts - window) {
                self.accepted.pop_front();
            }
            if self.accepted.len() as u32 >= max {
                return Err(format!(
                    "order rate limit: {max} orders per {window} s reached"
                ));
            }
            self.accepted.push_back(o.ts);
        }
        Ok(())
    }

    /// Mark-to-market check after a bar; returns the kill-switch reason when one fires now.
    pub fn check_equity(&mut self, limits: &RiskLimits, ts: i64, equity: f64) -> Option<String> {
        let day = ts.div_euclid(86_400);
        if self.day != Some(day) {
            self.day = Some(day);
            self.day_start_equity = equity;
        }
        if equity > self.peak_equity || self.peak_equity == 0.0 {
            self.peak_equity = equity;
        }
        if self.halted.is_some() {
            return None;
        }
        let reason = self.breach(limits, equity)?;
        self.halted = Some(reason.clone());
        Some(reason)
    }

    /// Whether `equity` at `ts` would fire a kill switch, without changing anything.
    pub fn would_breach(&self, limits: &RiskLimits, ts: i64, equity: f64) -> bool {
        if self.halted.is_some() {
            return false;
        }
        let mut probe = self.clone();
        probe.check_equity(limits, ts, equity).is_some()
    }

    fn breach(&self, limits: &RiskLimits, equity: f64) -> Option<String> {
        if let Some(max) = limits.max_daily_loss {
            let loss = self.day_start_equity - equity;
            if loss >= max && max > 0.0 {
                return Some(format!("daily loss {loss:.2} reached max_daily_loss {max}"));
            }
        }
        if let Some(max) = limits.max_drawdown_pct
            && self.peak_equity > 0.0
        {
            let dd = (self.peak_equity - equity) / self.peak_equity * 100.0;
            if dd >= max && max > 0.0 {
                return Some(format!("drawdown {dd:.2}% reached max_drawdown_pct {max}"));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(quantity: f64) -> OrderCheck {
        OrderCheck {
            quantity,
            direction: 1.0,
            last_price: 100.0,
            order_price: None,
            position: 0.0,
            gross_exposure: 0.0,
            open_orders: 0,
            oco_orders: None,
            ts: 1_000,
        }
    }

    #[test]
    fn the_host_work_caps_refuse_exactly_past_their_boundary() {
        let mut s = RiskState::default();
        let l = RiskLimits::default();
        assert_eq!(
            (l.max_resting_orders, l.max_oco_orders),
            (Some(1_000), Some(16))
        );
        let resting = |n| OrderCheck {
            open_orders: n,
            ..order(1.0)
        };
        assert!(s.check_order(&l, &resting(999)).is_ok());
        assert_eq!(
            s.check_order(&l, &resting(1_000)).unwrap_err(),
            "1000 resting orders already; max_resting_orders is 1000"
        );
        let oco = |n| OrderCheck {
            oco_orders: n,
            ..order(1.0)
        };
        assert!(s.check_order(&l, &oco(Some(15))).is_ok());
        assert!(s.check_order(&l, &oco(None)).is_ok(), "no group, no count");
        assert_eq!(
            s.check_order(&l, &oco(Some(16))).unwrap_err(),
            "16 orders in its OCO group already; max_oco_orders is 16"
        );
        // Configurable, and `None` lifts them.
        let l = RiskLimits {
            max_resting_orders: Some(2),
            max_oco_orders: None,
            ..Default::default()
        };
        assert!(s.check_order(&l, &resting(1)).is_ok());
        assert!(s.check_order(&l, &resting(2)).is_err());
        assert!(s.check_order(&l, &oco(Some(1_000))).is_ok());
        let l: RiskLimits = toml::from_str("max_resting_orders = 5\nmax_oco_orders = 2\n").unwrap();
        assert_eq!((l.max_resting_orders, l.max_oco_orders), (Some(5), Some(2)));
        let l: RiskLimits = toml::from_str("max_position = 1.0\n").unwrap();
        assert_eq!(
            (l.max_resting_orders, l.max_oco_orders),
            (Some(1_000), Some(16)),
            "a file that does not name them keeps the defaults"
        );
        // A refused order does not count against the order-rate limit.
        let l = RiskLimits {
            max_resting_orders: Some(1),
            max_orders_per_window: Some(1),
            ..Default::default()
        };
        assert!(s.check_order(&l, &resting(1)).is_err());
        assert!(s.check_order(&l, &resting(0)).is_ok());
    }

    #[test]
    fn every_limit_rejects_exactly_past_its_boundary() {
        let mut s = RiskState::default();
        let l = RiskLimits {
            max_order_quantity: Some(10.0),
            ..Default::default()
        };
        assert!(s.check_order(&l, &order(10.0)).is_ok());
        assert_eq!(
            s.check_order(&l, &order(10.5)).unwrap_err(),
            "order quantity 10.5 exceeds max_order_quantity 10"
        );

        let l = RiskLimits {
            max_order_notional: Some(1_000.0),
            ..Default::default()
        };
        assert!(s.check_order(&l, &order(10.0)).is_ok());
        assert!(
            s.check_order(&l, &order(10.01))
                .unwrap_err()
                .contains("max_order_notional 1000")
        );

        let l = RiskLimits {
            max_position: Some(15.0),
            ..Default::default()
        };
        let o = OrderCheck {
            position: 5.0,
            ..order(10.0)
        };
        assert!(s.check_order(&l, &o).is_ok());
        let o = OrderCheck {
            position: 5.5,
            ..order(10.0)
        };
        assert!(
            s.check_order(&l, &o)
                .unwrap_err()
                .contains("exceeds max_position 15")
        );
        // Reducing a short through the limit's mirror is judged on the result.
        let o = OrderCheck {
            position: -20.0,
            ..order(10.0)
        };
        assert!(s.check_order(&l, &o).is_ok());

        let l = RiskLimits {
            max_gross_exposure: Some(2_000.0),
            ..Default::default()
        };
        let o = OrderCheck {
            gross_exposure: 1_000.0,
            ..order(10.0)
        };
        assert!(s.check_order(&l, &o).is_ok());
        let o = OrderCheck {
            gross_exposure: 1_000.5,
            ..order(10.0)
        };
        assert!(
            s.check_order(&l, &o)
                .unwrap_err()
                .contains("max_gross_exposure 2000")
        );

        let l = RiskLimits {
            max_open_orders: Some(3),
            ..Default::default()
        };
        assert!(
            s.check_order(
                &l,
                &OrderCheck {
                    open_orders: 2,
                    ..order(1.0)
                }
            )
            .is_ok()
        );
        assert_eq!(
            s.check_order(
                &l,
                &OrderCheck {
                    open_orders: 3,
                    ..order(1.0)
                }
            )
            .unwrap_err(),
            "3 open orders already; max_open_orders is 3"
        );

        let l = RiskLimits {
            price_collar_pct: Some(5.0),
            ..Default::default()
        };
        assert!(
            s.check_order(
                &l,
                &OrderCheck {
                    order_price: Some(105.0),
                    ..order(1.0)
                }
            )
            .is_ok()
        );
        assert!(
            s.check_order(
                &l,
                &OrderCheck {
                    order_price: Some(95.0),
                    ..order(1.0)
                }
            )
            .is_ok()
        );
        assert!(
            s.check_order(
                &l,
                &OrderCheck {
                    order_price: Some(105.01),
                    ..order(1.0)
                }
            )
            .is_err()
        );
        assert!(
            s.check_order(
                &l,
                &OrderCheck {
                    order_price: Some(94.99),
                    ..order(1.0)
                }
            )
            .is_err()
        );
    }

    #[test]
    fn the_order_rate_limit_counts_accepted_orders_in_a_sliding_window() {
        let mut s = RiskState::default();
        let l = RiskLimits {
            max_orders_per_window: Some(3),
            order_window_secs: Some(60),
            ..Default::default()
        };
        for ts in [0, 10, 59] {
            assert!(s.check_order(&l, &OrderCheck { ts, ..order(1.0) }).is_ok());
        }
        let e = s
            .check_order(
                &l,
                &OrderCheck {
                    ts: 59,
                    ..order(1.0)
                },
            )
            .unwrap_err();
        assert_eq!(e, "order rate limit: 3 orders per 60 s reached");
        // At ts 60 the order from ts 0 has left the window.
        assert!(
            s.check_order(
                &l,
                &OrderCheck {
                    ts: 60,
                    ..order(1.0)
                }
            )
            .is_ok()
        );
        assert!(
            s.check_order(
                &l,
                &OrderCheck {
                    ts: 60,
                    ..order(1.0)
                }
            )
            .is_err()
        );
    }

    #[test]
    fn kill_switches_fire_at_the_boundary_and_halt() {
        let l = RiskLimits {
            max_drawdown_pct: Some(10.0),
            ..Default::default()
        };
        let mut s = RiskState::default();
        assert_eq!(s.check_equity(&l, 0, 1_000.0), None);
        assert_eq!(s.check_equity(&l, 60, 1_200.0), None);
        assert_eq!(s.check_equity(&l, 120, 1_080.01), None);
        assert!(!s.would_breach(&l, 180, 1_080.01));
        assert!(s.would_breach(&l, 180, 1_080.0));
        let r = s.check_equity(&l, 180, 1_080.0).unwrap();
        assert_eq!(r, "drawdown 10.00% reached max_drawdown_pct 10");
        assert_eq!(s.halted(), Some(r.as_str()));
        assert!(
            s.check_order(&l, &order(1.0))
                .unwrap_err()
                .starts_with("strategy halted: drawdown")
        );

        let l = RiskLimits {
            max_daily_loss: Some(100.0),
            ..Default::default()
        };
        let mut s = RiskState::default();
        assert_eq!(s.check_equity(&l, 0, 1_000.0), None);
        assert_eq!(s.check_equity(&l, 60, 900.01), None);
        // A new day starts from that day's first equity.
        assert_eq!(s.check_equity(&l, 86_400, 850.0), None);
        assert_eq!(
            s.check_equity(&l, 86_460, 750.0).unwrap(),
            "daily loss 100.00 reached max_daily_loss 100"
        );
    }

    #[test]
    fn limits_load_from_toml_and_unknown_fields_are_named() {
        let l: RiskLimits =
            toml::from_str("max_position = 100.0\nmax_orders_per_window = 5\n").unwrap();
        assert_eq!(
            (l.max_position, l.max_orders_per_window),
            (Some(100.0), Some(5))
        );
        let e = toml::from_str::<RiskLimits>("max_postion = 1.0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `max_postion`"), "{e}");
    }

    #[test]
    fn nonsensical_limits_are_refused() {
        let l = RiskLimits {
            max_position: Some(-1.0),
            ..Default::default()
        };
        assert_eq!(
            l.validate().unwrap_err(),
            "risk limit max_position must be a non-negative number, got -1"
        );
        let l = RiskLimits {
            order_window_secs: Some(0),
            ..Default::default()
        };
        assert!(l.validate().is_err());
    }
}
