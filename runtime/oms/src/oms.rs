//! Order management: the account-wide admission every order passes, whatever placed it.
//!
//! Each strategy's account has its own limits ([`crate::risk`], checked by the engine for its
//! own book). Above them sits the trading account as a whole: the limits of
//! `PUT /api/risk/parameters`, the order-rate window, the loss limits on the total equity and
//! the kill switch. [`AccountGuard`] holds that state and judges every order against the
//! totals of all accounts: the engine runs it for strategy orders and for orders placed from
//! outside (manual orders, API clients: an account of the engine's own), on the engine's thread, so there is one window, one
//! halt and one verdict for all of them.
//!
//! The guard counts in wall-clock seconds set by its driver ([`AccountGuard::set_now`]): a
//! rate limit or a daily loss limit is an operational control over what actually happens
//! now, whatever time the bars being traded carry (a replayed feed plays 2004).

use crate::risk::{OrderCheck, RiskLimits, RiskState, SavedRisk};

/// The account-wide totals an order is judged against.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AccountTotals {
    /// Signed position in the order's symbol, summed over accounts.
    pub position: f64,
    /// Σ |position × mark| over accounts and symbols.
    pub gross_exposure: f64,
    /// Resting orders over all accounts.
    pub open_orders: usize,
}

impl std::ops::Add for AccountTotals {
    type Output = AccountTotals;
    fn add(self, o: AccountTotals) -> AccountTotals {
        AccountTotals {
            position: self.position + o.position,
            gross_exposure: self.gross_exposure + o.gross_exposure,
            open_orders: self.open_orders + o.open_orders,
        }
    }
}

/// An order as the account-wide check sees it.
#[derive(Debug, Clone, Copy)]
pub struct AccountOrder {
    /// Units.
    pub quantity: f64,
    /// +1 buy, −1 sell.
    pub direction: f64,
    /// Last price of the symbol.
    pub last_price: f64,
    /// Limit or stop price, if any.
    pub order_price: Option<f64>,
}

/// The account-wide risk state and limits (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct AccountGuard {
    limits: RiskLimits,
    state: RiskState,
    now: i64,
}

/// What the account-wide guard carries across a restart.
pub type SavedGuard = SavedRisk;

impl AccountGuard {
    /// A guard with no limits and no halt: it lets everything through.
    pub fn new() -> Self {
        Self {
            limits: trading_limits(&RiskLimits {
                max_resting_orders: None,
                max_oco_orders: None,
                ..RiskLimits::default()
            }),
            ..Self::default()
        }
    }

    /// Put `limits` in force for the next order.
    ///
    /// `max_resting_orders` and `max_oco_orders` bound the host's work per account: each
    /// account applies them to itself, so they are not account-wide totals.
    pub fn set_limits(&mut self, limits: &RiskLimits) {
        self.limits = trading_limits(limits);
    }

    /// Count the orders accepted at `times` (unix seconds) in the order-rate window, in place
    /// of what it held: the orders of every source in the store when a rate limit is set.
    pub fn set_window(&mut self, times: Vec<i64>) {
        self.state.set_window(times);
    }

    /// The account-wide limits in force (without the per-account host bounds).
    pub fn limits(&self) -> &RiskLimits {
        &self.limits
    }

    /// The wall clock, unix seconds: the time of the next orders and equity checks.
    pub fn set_now(&mut self, now: i64) {
        self.now = now;
    }

    /// Whether an order can be refused at all: a limit is set or trading is halted. Totals
    /// over accounts are summed only then.
    pub fn is_active(&self) -> bool {
        self.state.halted().is_some() || self.limits != RiskLimits::default_trading()
    }

    /// Why trading is halted, if it is.
    pub fn halted(&self) -> Option<&str> {
        self.state.halted()
    }

    /// Engage the kill switch: every order is refused until [`AccountGuard::resume`]. A
    /// second halt keeps the first reason.
    pub fn halt(&mut self, reason: &str) {
        self.state.halt(reason.to_string());
    }

    /// Release the kill switch; returns the reason it had.
    pub fn resume(&mut self) -> Option<String> {
        self.state.resume()
    }

    /// The state to carry across a restart.
    pub fn save(&self) -> SavedGuard {
        self.state.save()
    }

    /// Take over the state a previous run saved.
    pub fn restore(&mut self, saved: SavedGuard) {
        self.state = RiskState::restore(saved);
    }

    /// Judge an order against the account's totals now; on `Ok` it counts in the rate
    /// window. `Err` is the reason, in the words a trader reads.
    pub fn check(&mut self, order: &AccountOrder, totals: &AccountTotals) -> Result<(), String> {
        if let Some(reason) = self.state.halted() {
            return Err(format!(
                "trading is halted by the kill switch ({reason}); an admin must POST /api/risk/resume"
            ));
        }
        let check = OrderCheck {
            quantity: order.quantity,
            direction: order.direction,
            last_price: order.last_price,
            order_price: order.order_price,
            position: totals.position,
            gross_exposure: totals.gross_exposure,
            open_orders: totals.open_orders,
            oco_orders: None,
            ts: self.now,
        };
        self.state.check_order(&self.limits, &check)
    }

    /// [`AccountGuard::check`] for a change to a working order: no new order is placed, so
    /// the order-rate window neither applies nor counts it.
    pub fn check_change(
        &mut self,
        order: &AccountOrder,
        totals: &AccountTotals,
    ) -> Result<(), String> {
        let limits = self.limits.clone();
        self.limits.max_orders_per_window = None;
        let verdict = self.check(order, totals);
        self.limits = limits;
        verdict
    }

    /// Mark-to-market check of the total equity; returns the kill-switch reason when one
    /// fires now (the guard is then halted).
    pub fn check_equity(&mut self, equity: f64) -> Option<String> {
        if self.limits.max_daily_loss.is_none() && self.limits.max_drawdown_pct.is_none() {
            return None;
        }
        let fired = self.state.check_equity(&self.limits, self.now, equity)?;
        // Halted in the account's words: the reason every refused order then quotes.
        let reason = format!("account {fired}");
        self.state.resume();
        self.state.halt(reason.clone());
        Some(reason)
    }
}

/// `limits` without the per-account host bounds.
fn trading_limits(limits: &RiskLimits) -> RiskLimits {
    RiskLimits {
        max_resting_orders: None,
        max_oco_orders: None,
        ..limits.clone()
    }
}

impl RiskLimits {
    /// No trading limit at all (and no host bound): what an idle [`AccountGuard`] holds.
    pub fn default_trading() -> Self {
        trading_limits(&RiskLimits::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buy(quantity: f64) -> AccountOrder {
        AccountOrder {
            quantity,
            direction: 1.0,
            last_price: 100.0,
            order_price: None,
        }
    }

    #[test]
    fn an_idle_guard_lets_everything_through_and_sums_nothing() {
        let mut g = AccountGuard::new();
        assert!(!g.is_active());
        assert!(g.check(&buy(1e9), &AccountTotals::default()).is_ok());
        // The host bounds are per account, never account-wide totals.
        g.set_limits(&RiskLimits::default());
        assert!(!g.is_active());
        let totals = AccountTotals {
            open_orders: 5_000,
            ..Default::default()
        };
        assert!(g.check(&buy(1.0), &totals).is_ok());
    }

    #[test]
    fn limits_apply_to_the_totals_and_the_halt_to_everything() {
        let mut g = AccountGuard::new();
        g.set_limits(&RiskLimits {
            max_order_quantity: Some(1.0),
            max_position: Some(3.0),
            ..Default::default()
        });
        assert!(g.is_active());
        let t = AccountTotals {
            position: 2.5,
            ..Default::default()
        };
        assert_eq!(
            g.check(&buy(2.0), &t).unwrap_err(),
            "order quantity 2 exceeds max_order_quantity 1"
        );
        assert_eq!(
            g.check(&buy(1.0), &t).unwrap_err(),
            "position after the order 3.5 exceeds max_position 3"
        );
        assert!(g.check(&buy(0.5), &t).is_ok());
        g.halt("kill switch engaged by ada");
        g.halt("a second press keeps the first reason");
        assert_eq!(
            g.check(&buy(0.1), &AccountTotals::default()).unwrap_err(),
            "trading is halted by the kill switch (kill switch engaged by ada); an admin must POST /api/risk/resume"
        );
        assert_eq!(g.resume().as_deref(), Some("kill switch engaged by ada"));
        assert!(g.check(&buy(0.1), &AccountTotals::default()).is_ok());
    }

    #[test]
    fn the_rate_window_runs_on_the_wall_clock_and_survives_a_restart() {
        let mut g = AccountGuard::new();
        g.set_limits(&RiskLimits {
            max_orders_per_window: Some(2),
            order_window_secs: Some(10),
            ..Default::default()
        });
        g.set_now(1_000);
        assert!(g.check(&buy(1.0), &AccountTotals::default()).is_ok());
        g.set_now(1_005);
        assert!(g.check(&buy(1.0), &AccountTotals::default()).is_ok());
        let refused = g.check(&buy(1.0), &AccountTotals::default());
        assert_eq!(
            refused.unwrap_err(),
            "order rate limit: 2 orders per 10 s reached"
        );
        // A restart takes the window over: still full until the first order leaves it.
        let mut again = AccountGuard::new();
        again.set_limits(g.limits());
        again.restore(g.save());
        again.set_now(1_009);
        assert!(again.check(&buy(1.0), &AccountTotals::default()).is_err());
        again.set_now(1_010);
        assert!(again.check(&buy(1.0), &AccountTotals::default()).is_ok());
    }

    #[test]
    fn the_daily_loss_counts_from_the_day_s_opening_across_a_restart() {
        let mut g = AccountGuard::new();
        g.set_limits(&RiskLimits {
            max_daily_loss: Some(100.0),
            ..Default::default()
        });
        g.set_now(86_400 * 10 + 60);
        assert_eq!(g.check_equity(10_000.0), None);
        assert_eq!(g.check_equity(9_950.0), None);
        let mut again = AccountGuard::new();
        again.set_limits(g.limits());
        again.restore(g.save());
        again.set_now(86_400 * 10 + 3_600);
        assert_eq!(
            again.check_equity(9_900.0).as_deref(),
            Some("account daily loss 100.00 reached max_daily_loss 100")
        );
        assert_eq!(
            again.halted(),
            Some("account daily loss 100.00 reached max_daily_loss 100")
        );
        // The next day starts from its own opening.
        let mut next = AccountGuard::new();
        next.set_limits(g.limits());
        next.restore(g.save());
        next.set_now(86_400 * 11 + 1);
        assert_eq!(next.check_equity(9_850.0), None);
    }
}
