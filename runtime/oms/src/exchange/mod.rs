//! The simulated exchange: resting orders and how they fill on bars.
//!
//! One exchange serves every account of an engine (backtest or live paper trading); there is
//! no other implementation of fills. Rules are in `docs/fills.md`; the price arithmetic is in
//! [`price`]. Fills are booked straight into the account's [`Portfolio`].
//!
//! A bar's pass costs the orders the bar can act on, not the orders that rest: each account's
//! orders on each symbol are filed by the prices that make them act (`book`), so orders far
//! from the market are never looked at. How many may rest is bounded by the risk check's
//! `max_resting_orders` and `max_oco_orders` ([`crate::risk::RiskLimits`]).

mod book;
pub mod price;
#[cfg(test)]
mod reference;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use book::{Book, Entry, Price};

use crate::portfolio::Portfolio;
use qtm_core::model::{
    Bar, OpenOrder, OrderChange, OrderKind, OrderRequest, OrderStatus, Quantity, Side, TimeInForce,
    Trail,
};

/// When market orders fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FillMode {
    /// At the open of the symbol's next bar (default).
    #[default]
    NextOpen,
    /// At the close of the bar on which the order was placed.
    Close,
}

/// Costs and fill model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExchangeConfig {
    /// Commission as a fraction of notional (0.001 = 10 bps).
    pub commission: f64,
    /// Fixed fee per order, charged on its first fill.
    pub fixed_fee: f64,
    /// Slippage against the trader on market and stop fills, in basis points.
    pub slippage_bps: f64,
    pub fill: FillMode,
    /// At most this fraction of a bar's volume fills per order per bar (partial fills).
    pub volume_participation: Option<f64>,
    /// Gross exposure may reach this multiple of equity; fills beyond it are refused.
    pub max_leverage: f64,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        Self {
            commission: 0.0,
            fixed_fee: 0.0,
            slippage_bps: 0.0,
            fill: FillMode::NextOpen,
            volume_participation: None,
            max_leverage: 1.0,
        }
    }
}

/// A resting order.
#[derive(Debug, Clone)]
struct Order {
    id: u64,
    account: usize,
    symbol: usize,
    request: OrderRequest,
    /// Engine step (global bar index) on which it was placed: eligible on later bars only.
    placed_step: u64,
    /// Bracket exits created on a bar opened by their entry's fill may act on that bar.
    active_from_step: u64,
    placed_day: i64,
    filled: f64,
    /// Total units, once resolved (fractional sizing resolves at the first fill).
    resolved: Option<f64>,
    /// A stop-limit whose stop was hit rests as a plain limit.
    triggered: bool,
    /// Best price since placement, for trailing stops.
    anchor: f64,
    /// IOC/FOK orders get exactly one eligible bar.
    seen_bar: bool,
    /// Where the order is filed in its book; kept to find it there again after its prices,
    /// trigger or anchor change.
    entry: Entry,
    /// A bracket entry's OCO group of exits, while it has one: a later partial fill adds its
    /// quantity to those exits instead of resting a new pair, so an order cut into many
    /// fills (volume cap) keeps two exits, not two per fill.
    exits_group: Option<String>,
}

impl Order {
    fn status(&self) -> OrderStatus {
        if self.filled > 0.0 {
            OrderStatus::PartiallyFilled
        } else {
            OrderStatus::Accepted
        }
    }
    fn is_stop_like(&self) -> bool {
        matches!(
            self.request.kind,
            OrderKind::Stop(_) | OrderKind::StopLimit { .. } | OrderKind::TrailingStop(_)
        )
    }
    fn trail_level(&self) -> Option<f64> {
        let OrderKind::TrailingStop(trail) = self.request.kind else {
            return None;
        };
        let dist = match trail {
            Trail::Amount(a) => a,
            Trail::Percent(p) => self.anchor * p / 100.0,
        };
        Some(match self.request.side {
            Side::Sell => self.anchor - dist,
            Side::Buy => self.anchor + dist,
        })
    }

    /// Whether it acts on every eligible bar whatever its prices (the bar may fill it, or it
    /// leaves): market orders and every time in force but GTC.
    fn eager(&self) -> bool {
        self.request.kind == OrderKind::Market || self.request.time_in_force != TimeInForce::Gtc
    }

    /// The day it was placed, for a day order: it expires on a bar of a later day.
    fn expiry_day(&self) -> Option<i64> {
        (self.request.time_in_force == TimeInForce::Day).then_some(self.placed_day)
    }

    /// Where to file it, from its kind, prices and state now.
    fn entry(&self) -> Entry {
        let side = self.request.side;
        // A limit acts when the bar comes down to a buy's price or up to a sell's; a stop the
        // other way round.
        let limit = |p: f64| match side {
            _ if p.is_nan() => Entry::Always,
            Side::Buy => Entry::Down(Price::new(p)),
            Side::Sell => Entry::Up(Price::new(p)),
        };
        let stop = |p: f64| match side {
            _ if p.is_nan() => Entry::Always,
            Side::Buy => Entry::Up(Price::new(p)),
            Side::Sell => Entry::Down(Price::new(p)),
        };
        if matches!(
            self.request.time_in_force,
            TimeInForce::Ioc | TimeInForce::Fok
        ) {
            return Entry::Always;
        }
        match self.request.kind {
            OrderKind::Market => Entry::Always,
            OrderKind::Limit(p) => limit(p),
            OrderKind::Stop(p) => stop(p),
            OrderKind::StopLimit { limit: l, .. } if self.triggered => limit(l),
            OrderKind::StopLimit { stop: s, .. } => stop(s),
            OrderKind::TrailingStop(_) => {
                let level = self.trail_level().unwrap_or(f64::NAN);
                // The anchor moves by `max`/`min` with the bar's extreme, which can change an
                // anchor that is not a number or a signed zero without the bar passing it:
                // such an order is looked at on every bar, as it always was.
                if !(self.anchor.is_finite() && self.anchor != 0.0 && level.is_finite()) {
                    return Entry::Always;
                }
                let (anchor, level) = (Price::new(self.anchor), Price::new(level));
                match side {
                    Side::Sell => Entry::TrailSell { anchor, level },
                    Side::Buy => Entry::TrailBuy { anchor, level },
                }
            }
        }
    }

    /// Whether processing `bar` (engine step `step`) would change anything for it.
    fn acts(&self, step: u64, bar: &Bar) -> bool {
        if step < self.active_from_step {
            return false;
        }
        if self.request.time_in_force != TimeInForce::Gtc {
            return true;
        }
        let side = self.request.side;
        match self.request.kind {
            OrderKind::Market => true,
            OrderKind::Limit(p) => price::limit(side, p, bar).is_some(),
            OrderKind::Stop(p) => price::stop(side, p, bar).is_some(),
            OrderKind::StopLimit { stop, limit } => {
                if self.triggered {
                    price::limit(side, limit, bar).is_some()
                } else {
                    price::stop(side, stop, bar).is_some()
                }
            }
            OrderKind::TrailingStop(_) => {
                let moved = match side {
                    Side::Sell => bar.high > self.anchor,
                    Side::Buy => bar.low < self.anchor,
                };
                moved || price::stop(side, self.trail_level().unwrap_or(f64::NAN), bar).is_some()
            }
        }
    }
}

/// Something the exchange did, for the engine to publish and deliver.
#[derive(Debug, Clone, PartialEq)]
pub enum ExchangeEvent {
    Fill {
        account: usize,
        symbol: usize,
        order_id: u64,
        side: Side,
        quantity: f64,
        price: f64,
        fee: f64,
        ts: i64,
        tag: Option<String>,
    },
    Cancelled {
        account: usize,
        order_id: u64,
        ts: i64,
        reason: String,
    },
}

/// One account's resting orders.
#[derive(Debug, Clone, Default)]
struct Account {
    /// By id. Ids grow with every order the exchange accepts or creates, so this is also the
    /// order in which they were placed.
    orders: BTreeMap<u64, Order>,
    /// The orders of each symbol, filed by what makes them act.
    books: BTreeMap<usize, Book>,
    /// Ids of the orders in each OCO group.
    oco: BTreeMap<String, BTreeSet<u64>>,
}

/// All resting orders of an engine.
///
/// Orders are kept per account (an account without any costs nothing to process: with 10,000
/// live accounts, scanning every resting order for each account's bar made the exchange's
/// pass quadratic) and, within it, per symbol in a [`Book`] that finds the orders a bar can
/// act on without looking at the others.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    config: ExchangeConfig,
    /// Indexed by account.
    accounts: Vec<Account>,
    next_id: u64,
    /// The pass's to-do list, kept to spare an allocation per bar.
    todo: Vec<(bool, u64)>,
}

/// How many exits a bracket `(take_profit, stop_loss)` rests.
fn legs(bracket: (Option<f64>, Option<f64>)) -> usize {
    usize::from(bracket.0.is_some()) + usize::from(bracket.1.is_some())
}

fn direction(side: Side) -> f64 {
    match side {
        Side::Buy => 1.0,
        Side::Sell => -1.0,
    }
}

fn opposite(side: Side) -> Side {
    match side {
        Side::Buy => Side::Sell,
        Side::Sell => Side::Buy,
    }
}

/// Whole units `equity × fraction` buys at `price` after commission (the "all-in" rule).
pub fn units_for(equity: f64, fraction: f64, price: f64, commission: f64) -> f64 {
    if !(equity > 0.0 && price > 0.0) {
        return 0.0;
    }
    (equity * fraction * (1.0 - f64::EPSILON) / (price * (1.0 + commission)))
        .floor()
        .max(0.0)
}

impl Exchange {
    /// An exchange with no orders.
    pub fn new(config: ExchangeConfig) -> Self {
        Self {
            config,
            accounts: Vec::new(),
            next_id: 1,
            todo: Vec::new(),
        }
    }

    /// Add a resting order.
    fn rest(&mut self, mut order: Order) {
        let a = order.account;
        if a >= self.accounts.len() {
            self.accounts.resize_with(a + 1, Account::default);
        }
        let acc = &mut self.accounts[a];
        order.entry = order.entry();
        acc.books.entry(order.symbol).or_default().add(
            order.id,
            order.entry,
            order.expiry_day(),
            order.eager().then_some(order.active_from_step),
        );
        if let Some(g) = &order.request.oco_group {
            acc.oco.entry(g.clone()).or_default().insert(order.id);
        }
        acc.orders.insert(order.id, order);
    }

    /// Add `qty` units to the bracket exits in `group` if all `legs` of them still rest
    /// untouched; false (and nothing changed) otherwise.
    fn grow_exits(&mut self, account: usize, group: Option<&str>, qty: f64, legs: usize) -> bool {
        let Some(acc) = self.accounts.get_mut(account) else {
            return false;
        };
        let Some(members) = group.and_then(|g| acc.oco.get(g)) else {
            return false;
        };
        let pristine = members.len() == legs
            && members
                .iter()
                .all(|m| acc.orders.get(m).is_some_and(|o| o.filled == 0.0));
        if !pristine {
            return false;
        }
        for m in members {
            if let Some(o) = acc.orders.get_mut(m)
                && let Quantity::Units(q) = o.request.quantity
            {
                o.request.quantity = Quantity::Units(q + qty);
                // Units resolve to the same total whatever the position: resolve them again.
                o.resolved = None;
            }
        }
        true
    }

    /// Remove resting order `id` of `account`.
    fn unrest(&mut self, account: usize, id: u64) -> Option<Order> {
        let acc = self.accounts.get_mut(account)?;
        let o = acc.orders.remove(&id)?;
        if let Some(book) = acc.books.get_mut(&o.symbol) {
            book.remove(
                id,
                o.entry,
                o.expiry_day(),
                o.eager().then_some(o.active_from_step),
            );
            if book.is_empty() {
                acc.books.remove(&o.symbol);
            }
        }
        if let Some(g) = &o.request.oco_group
            && let Some(members) = acc.oco.get_mut(g)
        {
            members.remove(&id);
            if members.is_empty() {
                acc.oco.remove(g);
            }
        }
        Some(o)
    }

    /// File order `id` of `account` again after its prices, trigger or anchor changed.
    fn refile(&mut self, account: usize, id: u64) {
        let Some(acc) = self.accounts.get_mut(account) else {
            return;
        };
        let Some(o) = acc.orders.get_mut(&id) else {
            return;
        };
        let entry = o.entry();
        if entry != o.entry
            && let Some(book) = acc.books.get_mut(&o.symbol)
        {
            book.refile(id, o.entry, entry);
            o.entry = entry;
        }
    }

    fn order_mut(&mut self, account: usize, id: u64) -> Option<&mut Order> {
        self.accounts.get_mut(account)?.orders.get_mut(&id)
    }

    /// The cost and fill model.
    pub fn config(&self) -> &ExchangeConfig {
        &self.config
    }

    /// Check an order's own fields (prices, quantity) before risk and acceptance.
    pub fn validate(request: &OrderRequest) -> Result<(), String> {
        let finite_pos = |v: f64| v.is_finite() && v > 0.0;
        match request.quantity {
            Quantity::Units(q) if !finite_pos(q) => {
                return Err(format!(
                    "quantity must be a positive number of units, got {q}"
                ));
            }
            Quantity::EquityFraction(f) if !(f.is_finite() && f > 0.0 && f <= 10.0) => {
                return Err(format!("equity fraction must be in (0, 10], got {f}"));
            }
            Quantity::TargetPercent(t) if !(t.is_finite() && t.abs() <= 10.0) => {
                return Err(format!("target percent must be in [-10, 10], got {t}"));
            }
            _ => {}
        }
        let price_ok = match request.kind {
            OrderKind::Market => true,
            OrderKind::Limit(p) | OrderKind::Stop(p) => finite_pos(p),
            OrderKind::StopLimit { stop, limit } => finite_pos(stop) && finite_pos(limit),
            OrderKind::TrailingStop(Trail::Amount(a)) => finite_pos(a),
            OrderKind::TrailingStop(Trail::Percent(p)) => finite_pos(p) && p < 100.0,
        };
        if !price_ok {
            return Err(format!(
                "order prices must be positive numbers: {:?}",
                request.kind
            ));
        }
        for (name, v) in [
            ("take_profit", request.take_profit),
            ("stop_loss", request.stop_loss),
        ] {
            if let Some(v) = v
                && !finite_pos(v)
            {
                return Err(format!("{name} must be a positive price, got {v}"));
            }
        }
        if request.symbol.is_empty() {
            return Err("order has no symbol".into());
        }
        Ok(())
    }

    /// Accept an order placed on engine step `step` at time `ts`; `last_price` seeds trailing
    /// stops. Returns its id. The caller has validated and risk-checked it.
    pub fn submit(
        &mut self,
        account: usize,
        symbol: usize,
        request: OrderRequest,
        step: u64,
        ts: i64,
        last_price: f64,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.rest(Order {
            id,
            account,
            symbol,
            request,
            placed_step: step,
            active_from_step: step + 1,
            placed_day: ts.div_euclid(86_400),
            filled: 0.0,
            resolved: None,
            triggered: false,
            anchor: last_price,
            seen_bar: false,
            entry: Entry::Always,
            exits_group: None,
        });
        id
    }

    /// Cancel one of `account`'s orders.
    pub fn cancel(&mut self, account: usize, id: u64) -> Result<(), String> {
        self.unrest(account, id)
            .map(|_| ())
            .ok_or_else(|| format!("no open order {id}"))
    }

    /// Cancel every order of `account`; returns the ids.
    pub fn cancel_all(&mut self, account: usize) -> Vec<u64> {
        let Some(acc) = self.accounts.get_mut(account) else {
            return Vec::new();
        };
        std::mem::take(acc).orders.into_keys().collect()
    }

    /// Change the quantity or prices of one of `account`'s resting orders.
    pub fn modify(&mut self, account: usize, id: u64, change: OrderChange) -> Result<(), String> {
        let o = self
            .order_mut(account, id)
            .ok_or_else(|| format!("no open order {id}"))?;
        let mut request = o.request.clone();
        if let Some(q) = change.quantity {
            if q <= o.filled {
                return Err(format!(
                    "new quantity {q} is not above the {} already filled",
                    o.filled
                ));
            }
            request.quantity = Quantity::Units(q);
        }
        match (&mut request.kind, change.limit_price, change.stop_price) {
            (_, None, None) => {}
            (OrderKind::Limit(p), Some(l), None) => *p = l,
            (OrderKind::Stop(p), None, Some(s)) => *p = s,
            (OrderKind::StopLimit { stop, limit }, l, s) => {
                if let Some(l) = l {
                    *limit = l;
                }
                if let Some(s) = s {
                    *stop = s;
                }
            }
            (kind, _, _) => return Err(format!("cannot change those prices of a {kind:?} order")),
        }
        Self::validate(&request)?;
        if change.quantity.is_some() {
            o.resolved = None;
        }
        o.request = request;
        self.refile(account, id);
        Ok(())
    }

    /// Resting orders of `account`, in the order they were placed.
    pub fn open_orders(&self, account: usize) -> Vec<OpenOrder> {
        let Some(acc) = self.accounts.get(account) else {
            return Vec::new();
        };
        acc.orders
            .values()
            .map(|o| OpenOrder {
                id: o.id,
                request: o.request.clone(),
                filled: o.filled,
                status: o.status(),
            })
            .collect()
    }

    /// Number of resting orders of `account`.
    pub fn open_count(&self, account: usize) -> usize {
        self.accounts.get(account).map_or(0, |a| a.orders.len())
    }

    /// Number of resting orders over every account.
    pub fn open_total(&self) -> usize {
        self.accounts.iter().map(|a| a.orders.len()).sum()
    }

    /// Number of resting orders of `account` in OCO group `group`; `None` without a group.
    /// What the per-group cap of the risk check counts.
    pub fn oco_count(&self, account: usize, group: Option<&str>) -> Option<usize> {
        let group = group?;
        Some(
            self.accounts
                .get(account)
                .and_then(|a| a.oco.get(group))
                .map_or(0, BTreeSet::len),
        )
    }

    /// Whether `account` has any resting order.
    #[inline]
    pub fn has_orders(&self, account: usize) -> bool {
        self.accounts
            .get(account)
            .is_some_and(|a| !a.orders.is_empty())
    }

    /// Whether processing `bar` (engine step `step`) would change anything for `account`:
    /// a fill, a trigger, an expiry or a trailing stop's anchor. Pure: lets the engine hand a
    /// strategy a run of bars on which the exchange has nothing to do.
    pub fn would_act(&self, account: usize, symbol: usize, step: u64, bar: &Bar) -> bool {
        let Some(acc) = self.accounts.get(account) else {
            return false;
        };
        let Some(book) = acc.books.get(&symbol) else {
            return false;
        };
        book.eager_from().is_some_and(|s| s <= step)
            || book
                .candidates(bar)
                .any(|id| acc.orders.get(&id).is_some_and(|o| o.acts(step, bar)))
    }

    /// Process `bar` of `symbol` (engine step `step`) for `account`: expire, trigger and fill
    /// its eligible orders, booking fills into `book`.
    ///
    /// The orders the bar can act on are processed in id (placement) order, except that
    /// limit-like members of an OCO group go after every other order (see below). Orders
    /// created during the pass (bracket exits) are not in that list: an exit entered at the
    /// open is processed right after its entry's fill instead.
    pub fn process_bar(
        &mut self,
        account: usize,
        symbol: usize,
        step: u64,
        bar: &Bar,
        book: &mut Portfolio,
        out: &mut Vec<ExchangeEvent>,
    ) {
        let Some(acc) = self.accounts.get(account) else {
            return;
        };
        let Some(index) = acc.books.get(&symbol) else {
            return;
        };
        let mut todo = std::mem::take(&mut self.todo);
        todo.clear();
        for id in index.candidates(bar) {
            if let Some(o) = acc.orders.get(&id)
                && step >= o.active_from_step
            {
                // Within an OCO group, stops go before limits: when a bar touches both a
                // bracket's stop-loss and its take-profit, the conservative side fills.
                todo.push((o.request.oco_group.is_some() && !o.is_stop_like(), id));
            }
        }
        // Orders the bar leaves alone are not in the list; processing them changed nothing,
        // so the ones it acts on keep the order they always had.
        todo.sort_unstable();
        todo.dedup();
        for &(_, id) in &todo {
            // Skipped when cancelled by OCO earlier in the pass.
            if self.accounts[account].orders.contains_key(&id) {
                self.process_order(account, id, step, bar, book, out);
            }
        }
        self.todo = todo;
    }

    fn process_order(
        &mut self,
        account: usize,
        id: u64,
        step: u64,
        bar: &Bar,
        book: &mut Portfolio,
        out: &mut Vec<ExchangeEvent>,
    ) {
        let cfg = self.config.clone();
        let Some(o) = self.order_mut(account, id) else {
            return;
        };
        let day = bar.ts.div_euclid(86_400);
        if o.request.time_in_force == TimeInForce::Day && day > o.placed_day {
            self.drop_order(account, id, bar.ts, "expired at the end of its day", out);
            return;
        }
        let side = o.request.side;
        let fill_price = match o.request.kind {
            OrderKind::Market => Some(price::slip(side, bar.open, cfg.slippage_bps)),
            OrderKind::Limit(p) => price::limit(side, p, bar),
            OrderKind::Stop(p) => {
                price::stop(side, p, bar).map(|x| price::slip(side, x, cfg.slippage_bps))
            }
            OrderKind::StopLimit { stop, limit } => {
                if o.triggered {
                    price::limit(side, limit, bar)
                } else {
                    match price::stop_limit(side, stop, limit, bar) {
                        Ok(p) => {
                            o.triggered = true;
                            p
                        }
                        Err(()) => None,
                    }
                }
            }
            OrderKind::TrailingStop(_) => {
                let level = o.trail_level().unwrap_or(f64::NAN);
                let hit =
                    price::stop(side, level, bar).map(|x| price::slip(side, x, cfg.slippage_bps));
                if hit.is_none() {
                    // Conservative: the anchor moves only after the bar failed to trigger.
                    o.anchor = match side {
                        Side::Sell => o.anchor.max(bar.high),
                        Side::Buy => o.anchor.min(bar.low),
                    };
                }
                hit
            }
        };
        let one_shot = matches!(o.request.time_in_force, TimeInForce::Ioc | TimeInForce::Fok);
        o.seen_bar = true;
        let at_open = fill_price.is_some_and(|p| p == bar.open)
            || matches!(o.request.kind, OrderKind::Market);
        // A trigger or a moved anchor files the order elsewhere.
        self.refile(account, id);
        let Some(price) = fill_price else {
            if one_shot {
                self.drop_order(
                    account,
                    id,
                    bar.ts,
                    "not filled on its first bar (IOC/FOK)",
                    out,
                );
            }
            return;
        };
        self.fill(account, id, step, price, at_open, bar, book, out);
    }

    /// Remove order `id` and report why: the one way an order leaves without filling completely.
    fn drop_order(
        &mut self,
        account: usize,
        id: u64,
        ts: i64,
        reason: impl Into<String>,
        out: &mut Vec<ExchangeEvent>,
    ) {
        if let Some(o) = self.unrest(account, id) {
            out.push(ExchangeEvent::Cancelled {
                account: o.account,
                order_id: o.id,
                ts,
                reason: reason.into(),
            });
        }
    }

    /// Fill market orders of `account` placed on `step` at that bar's close (`--fill close`).
    pub fn fill_at_close(
        &mut self,
        account: usize,
        symbol: usize,
        step: u64,
        bar: &Bar,
        book: &mut Portfolio,
        out: &mut Vec<ExchangeEvent>,
    ) {
        let Some(acc) = self.accounts.get(account) else {
            return;
        };
        let Some(index) = acc.books.get(&symbol) else {
            return;
        };
        // Market orders are filed as `Always`, in id order.
        let ids: Vec<u64> = index
            .always()
            .filter(|id| {
                acc.orders
                    .get(id)
                    .is_some_and(|o| o.placed_step == step && o.request.kind == OrderKind::Market)
            })
            .collect();
        for id in ids {
            if let Some(o) = self.accounts[account].orders.get(&id) {
                let side = o.request.side;
                let price = price::slip(side, bar.close, self.config.slippage_bps);
                // Exits of a bracket entered at the close can act from the next bar on.
                self.fill(account, id, step, price, false, bar, book, out);
            }
        }
    }

    /// Resolve the quantity, cap it by volume, book the fill, then handle OCO, brackets and
    /// time in force.
    #[allow(clippy::too_many_arguments)]
    fn fill(
        &mut self,
        account: usize,
        id: u64,
        step: u64,
        price: f64,
        at_open: bool,
        bar: &Bar,
        book: &mut Portfolio,
        out: &mut Vec<ExchangeEvent>,
    ) {
        let cfg = self.config.clone();
        let Some(o) = self.order_mut(account, id) else {
            return;
        };
        let symbol = o.symbol;
        let c = cfg.commission;
        // Signed total units of the order, resolved once.
        let total = match o.resolved {
            Some(t) => t,
            None => {
                let pos = book.quantity(symbol);
                let dir = direction(o.request.side);
                let t = match o.request.quantity {
                    Quantity::Units(q) => dir * q,
                    Quantity::EquityFraction(f) => {
                        if pos * dir < 0.0 {
                            // Reversal: close at `price` with commission, size on what is left.
                            let equity = book.equity_at(symbol, price) - pos.abs() * price * c;
                            dir * (pos.abs() + units_for(equity, f, price, c))
                        } else {
                            let free = book.equity_at(symbol, price) - (pos * price).abs();
                            dir * units_for(free, f, price, c)
                        }
                    }
                    Quantity::TargetPercent(t) => {
                        let target = t.signum()
                            * units_for(book.equity_at(symbol, price), t.abs(), price, c);
                        target - pos
                    }
                };
                o.resolved = Some(t);
                t
            }
        };
        let remaining = total.abs() - o.filled;
        if remaining <= 0.0 {
            let reason = match o.request.quantity {
                Quantity::TargetPercent(_) => "already at the target",
                _ => "not enough equity for one unit",
            };
            self.drop_order(account, id, bar.ts, reason, out);
            return;
        }
        let side = if total > 0.0 { Side::Buy } else { Side::Sell };
        let mut qty = remaining;
        if let Some(part) = cfg.volume_participation {
            let cap = (bar.volume * part).floor();
            if cap < qty {
                if o.request.time_in_force == TimeInForce::Fok {
                    self.drop_order(
                        account,
                        id,
                        bar.ts,
                        format!("fill or kill: only {cap} of {qty} available"),
                        out,
                    );
                    return;
                }
                qty = cap;
            }
        }
        if qty <= 0.0 {
            return;
        }
        // Buying power: the part that opens or grows a position must fit within leverage.
        let pos = book.quantity(symbol);
        let signed = direction(side) * qty;
        let opening = (pos + signed).abs() - pos.abs();
        if opening > 0.0 {
            let equity = book.equity_at(symbol, price);
            let gross_after = book.gross_exposure() - (pos * book.mark(symbol)).abs().min(f64::MAX)
                + ((pos + signed) * price).abs();
            let gross_after = if gross_after.is_finite() {
                gross_after
            } else {
                ((pos + signed) * price).abs()
            };
            if gross_after > equity * cfg.max_leverage * (1.0 + 1e-9) + 1e-9 {
                self.drop_order(
                    account,
                    id,
                    bar.ts,
                    format!(
                        "insufficient buying power: exposure {gross_after:.2} would exceed {:.2}",
                        equity * cfg.max_leverage
                    ),
                    out,
                );
                return;
            }
        }
        let mut fee = qty * price * c;
        if o.filled == 0.0 {
            fee += cfg.fixed_fee;
        }
        o.filled += qty;
        book.apply_fill(symbol, signed, price, fee, bar.ts);
        out.push(ExchangeEvent::Fill {
            account,
            symbol,
            order_id: id,
            side,
            quantity: qty,
            price,
            fee,
            ts: bar.ts,
            tag: o.request.tag.clone(),
        });

        let done = o.filled >= total.abs() - 1e-9;
        let oco = o.request.oco_group.clone();
        let bracket = (o.request.take_profit, o.request.stop_loss);
        let exits_group = o.exits_group.clone();
        let tag = o.request.tag.clone();
        let one_shot = matches!(o.request.time_in_force, TimeInForce::Ioc | TimeInForce::Fok);
        let request_symbol = o.request.symbol.clone();
        if !done && one_shot {
            self.drop_order(
                account,
                id,
                bar.ts,
                "rest of an immediate-or-cancel order",
                out,
            );
        } else if done {
            self.unrest(account, id);
        }
        if let Some(group) = oco {
            // The other members, in id order; an order partly filled stays in its group.
            let siblings: Vec<u64> = self.accounts[account]
                .oco
                .get(&group)
                .map(|m| m.iter().copied().filter(|&s| s != id).collect())
                .unwrap_or_default();
            for sid in siblings {
                self.unrest(account, sid);
                out.push(ExchangeEvent::Cancelled {
                    account,
                    order_id: sid,
                    ts: bar.ts,
                    reason: format!("OCO: order {id} filled"),
                });
            }
        }
        if (bracket.0.is_some() || bracket.1.is_some())
            && self.grow_exits(account, exits_group.as_deref(), qty, legs(bracket))
        {
            // Added to the exits of an earlier fill of this order, which have not acted yet.
        } else if bracket.0.is_some() || bracket.1.is_some() {
            // Exits for the quantity just filled, as an OCO pair; the stop is created first so
            // it wins a bar that touches both. Entered at the open, they may act on this bar.
            let group = format!("bracket-{id}-{}", self.next_id);
            if !done && let Some(entry) = self.accounts[account].orders.get_mut(&id) {
                entry.exits_group = Some(group.clone());
            }
            let active = if at_open { step } else { step + 1 };
            let exit_side = opposite(side);
            let mut exits = Vec::new();
            for kind in [
                bracket.1.map(OrderKind::Stop),
                bracket.0.map(OrderKind::Limit),
            ]
            .into_iter()
            .flatten()
            {
                let exit_id = self.next_id;
                self.next_id += 1;
                self.rest(Order {
                    id: exit_id,
                    account,
                    symbol,
                    request: OrderRequest {
                        symbol: request_symbol.clone(),
                        side: exit_side,
                        quantity: Quantity::Units(qty),
                        kind,
                        time_in_force: TimeInForce::Gtc,
                        take_profit: None,
                        stop_loss: None,
                        oco_group: Some(group.clone()),
                        tag: tag.clone(),
                    },
                    placed_step: step,
                    active_from_step: active,
                    placed_day: bar.ts.div_euclid(86_400),
                    filled: 0.0,
                    resolved: None,
                    triggered: false,
                    anchor: price,
                    seen_bar: false,
                    entry: Entry::Always,
                    exits_group: None,
                });
                exits.push(exit_id);
            }
            if at_open {
                // Check the new exits against the rest of this bar right away, stop first.
                for exit_id in exits {
                    if self.accounts[account].orders.contains_key(&exit_id) {
                        self.process_order(account, exit_id, step, bar, book, out);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use qtm_core::model::{OrderKind, OrderRequest, Quantity, Side};

    fn bar(price: f64) -> Bar {
        Bar {
            ts: 1_000,
            open: price,
            high: price + 1.0,
            low: price - 1.0,
            close: price,
            volume: 1e6,
        }
    }

    fn stop(side: Side, at: f64, group: Option<&str>) -> OrderRequest {
        let mut o = OrderRequest::market("X", side, Quantity::Units(1.0));
        o.kind = OrderKind::Stop(at);
        o.oco_group = group.map(Into::into);
        o
    }

    #[test]
    fn resting_counts_follow_every_way_an_order_leaves() {
        let mut x = Exchange::new(ExchangeConfig::default());
        let mut book = Portfolio::new(vec!["X".to_string()].into(), 1e6);
        let mut out = Vec::new();
        // Account 7 first: the counts grow to any account id.
        let m = OrderRequest::market("X", Side::Buy, Quantity::Units(1.0));
        x.submit(7, 0, m.clone(), 0, 0, 100.0);
        let cancelled = x.submit(7, 0, m, 0, 0, 100.0);
        x.submit(2, 0, stop(Side::Buy, 200.0, Some("g")), 0, 0, 100.0);
        x.submit(2, 0, stop(Side::Sell, 99.5, Some("g")), 0, 0, 100.0);
        assert_eq!(
            (x.open_count(7), x.open_count(2), x.open_count(0)),
            (2, 2, 0)
        );
        assert!(!x.has_orders(1_000), "an account never seen has none");

        x.cancel(7, cancelled).unwrap();
        assert_eq!(x.open_count(7), 1);
        // The market order fills; the sell stop fills and cancels its OCO sibling.
        x.process_bar(7, 0, 1, &bar(100.0), &mut book, &mut out);
        x.process_bar(2, 0, 1, &bar(100.0), &mut book, &mut out);
        assert!(!x.has_orders(7) && !x.has_orders(2), "{out:?}");
        assert!(x.open_orders(2).is_empty());

        x.submit(3, 0, stop(Side::Buy, 500.0, None), 1, 0, 100.0);
        x.submit(3, 0, stop(Side::Buy, 600.0, None), 1, 0, 100.0);
        assert_eq!(x.cancel_all(3).len(), 2);
        assert_eq!(x.open_count(3), 0);
        assert!(
            x.accounts
                .iter()
                .all(|a| a.orders.is_empty() && a.books.is_empty())
        );
    }

    /// A small seeded generator (xorshift64*): the randomized test is the same on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
        /// Uniform in [a, b).
        fn range(&mut self, a: f64, b: f64) -> f64 {
            a + (b - a) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
        /// On a grid of 0.25, so that bars often touch order prices exactly.
        fn price(&mut self, a: f64, b: f64) -> f64 {
            ((self.range(a, b) * 4.0).round() / 4.0).max(0.25)
        }
    }

    fn random_order(rng: &mut Rng, symbol: &str, last: f64) -> OrderRequest {
        let side = if rng.chance(50) {
            Side::Buy
        } else {
            Side::Sell
        };
        // Some near the market, most far from it (what the index must skip).
        let spread = if rng.chance(30) { 0.03 } else { 0.6 };
        let mut p = || rng.price(last * (1.0 - spread), last * (1.0 + spread));
        let (a, b) = (p(), p());
        let kind = match rng.below(10) {
            0 => OrderKind::Market,
            1..=3 => OrderKind::Limit(a),
            4..=5 => OrderKind::Stop(a),
            6..=7 => OrderKind::StopLimit { stop: a, limit: b },
            8 => OrderKind::TrailingStop(Trail::Amount((a - last).abs().max(0.25))),
            _ => OrderKind::TrailingStop(Trail::Percent(rng.range(0.1, 20.0))),
        };
        let quantity = match rng.below(10) {
            0 => Quantity::EquityFraction(rng.range(0.01, 0.3)),
            1 => Quantity::TargetPercent(rng.range(-0.3, 0.3)),
            _ => Quantity::Units((1 + rng.below(20)) as f64),
        };
        let time_in_force = match rng.below(20) {
            0..=1 => TimeInForce::Day,
            2 => TimeInForce::Ioc,
            3 => TimeInForce::Fok,
            _ => TimeInForce::Gtc,
        };
        let mut o = OrderRequest::market(symbol, side, quantity);
        o.kind = kind;
        o.time_in_force = time_in_force;
        if rng.chance(15) {
            let d = rng.price(0.25, last * 0.1);
            let (tp, sl) = match side {
                Side::Buy => (last + d, (last - d).max(0.25)),
                Side::Sell => ((last - d).max(0.25), last + d),
            };
            o.take_profit = rng.chance(80).then_some(tp);
            o.stop_loss = rng.chance(80).then_some(sl);
        }
        if rng.chance(20) {
            o.oco_group = Some(format!("g{}", rng.below(4)));
        }
        if rng.chance(10) {
            o.tag = Some(format!("t{}", rng.below(100)));
        }
        o
    }

    fn state_of(books: &[Portfolio], symbols: usize) -> String {
        books
            .iter()
            .map(|b| {
                let q: Vec<f64> = (0..symbols).map(|s| b.quantity(s)).collect();
                format!("{} {} {q:?} {:?}", b.cash(), b.fees(), b.all_trades())
            })
            .collect()
    }

    /// The test that fails if the index ever misses an order or changes the order of fills:
    /// random order sets of every kind (hundreds resting, near and far from the market) over
    /// many bars, against the exchange as it was (every order looked at on every bar).
    #[test]
    fn indexed_fills_match_the_brute_force_reference() {
        const ACCOUNTS: usize = 3;
        const SYMBOLS: usize = 3;
        let names: Arc<[String]> = (0..SYMBOLS).map(|s| format!("S{s}")).collect();
        let mut max_resting = 0;
        let mut fills = 0;
        for seed in 1..=6u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let config = ExchangeConfig {
                commission: [0.0, 0.001][rng.below(2) as usize],
                fixed_fee: [0.0, 1.0][rng.below(2) as usize],
                slippage_bps: [0.0, 5.0][rng.below(2) as usize],
                fill: FillMode::NextOpen,
                volume_participation: rng.chance(40).then_some(0.01),
                max_leverage: [1.0, 4.0][rng.below(2) as usize],
            };
            let at_close = rng.chance(30);
            let mut x = Exchange::new(config.clone());
            let mut r = reference::Reference::new(config);
            let mut xb: Vec<Portfolio> = (0..ACCOUNTS)
                .map(|_| Portfolio::new(names.clone(), 1e6))
                .collect();
            let mut rb = xb.clone();
            let mut last = [100.0; SYMBOLS];
            let mut ts = 1_700_000_000;
            for step in 0..400u64 {
                let s = rng.below(SYMBOLS as u64) as usize;
                ts += 900 * (1 + rng.below(8) as i64);
                let prev = last[s];
                let open = if rng.chance(10) {
                    rng.price(prev * 0.9, prev * 1.1)
                } else {
                    prev
                };
                let close = rng.price(open * 0.97, open * 1.03);
                let bar = Bar {
                    ts,
                    open,
                    high: open.max(close) + rng.price(0.0, 2.0) - 0.25,
                    low: (open.min(close) - rng.price(0.0, 2.0) + 0.25).max(0.25),
                    close,
                    volume: [5.0, 200.0, 1e6][rng.below(3) as usize],
                };
                last[s] = close;
                for a in 0..ACCOUNTS {
                    assert_eq!(
                        x.would_act(a, s, step, &bar),
                        r.would_act(a, s, step, &bar),
                        "seed {seed} step {step} account {a}"
                    );
                    let (mut xo, mut ro) = (Vec::new(), Vec::new());
                    x.process_bar(a, s, step, &bar, &mut xb[a], &mut xo);
                    r.process_bar(a, s, step, &bar, &mut rb[a], &mut ro);
                    assert_eq!(
                        format!("{xo:?}"),
                        format!("{ro:?}"),
                        "seed {seed} step {step}"
                    );
                    fills += xo
                        .iter()
                        .filter(|e| matches!(e, ExchangeEvent::Fill { .. }))
                        .count();
                    xb[a].set_mark(s, bar.close);
                    rb[a].set_mark(s, bar.close);
                    // The strategy's turn: new orders, cancels, changes.
                    for _ in 0..rng.below(6) {
                        let o = random_order(&mut rng, &names[s], bar.close);
                        let mark = xb[a].mark(s);
                        let ia = x.submit(a, s, o.clone(), step, ts, mark);
                        let ib = r.submit(a, s, o, step, ts, mark);
                        assert_eq!(ia, ib);
                    }
                    let open = r.open_orders(a);
                    if !open.is_empty() && rng.chance(20) {
                        let id = open[rng.below(open.len() as u64) as usize].id;
                        assert_eq!(x.cancel(a, id), r.cancel(a, id));
                    }
                    if !open.is_empty() && rng.chance(20) {
                        let id = open[rng.below(open.len() as u64) as usize].id;
                        let p = rng.price(bar.close * 0.9, bar.close * 1.1);
                        let change = OrderChange {
                            quantity: rng.chance(30).then(|| (1 + rng.below(30)) as f64),
                            limit_price: rng.chance(50).then_some(p),
                            stop_price: rng.chance(50).then_some(p),
                        };
                        assert_eq!(x.modify(a, id, change), r.modify(a, id, change));
                    }
                    if step % 250 == 249 && rng.chance(50) {
                        assert_eq!(x.cancel_all(a), r.cancel_all(a));
                    }
                    if at_close {
                        let (mut xo, mut ro) = (Vec::new(), Vec::new());
                        x.fill_at_close(a, s, step, &bar, &mut xb[a], &mut xo);
                        r.fill_at_close(a, s, step, &bar, &mut rb[a], &mut ro);
                        assert_eq!(format!("{xo:?}"), format!("{ro:?}"), "seed {seed}");
                    }
                    assert_eq!(
                        x.open_orders(a),
                        r.open_orders(a),
                        "seed {seed} step {step}"
                    );
                    assert_eq!(x.open_count(a), r.open_count(a));
                    max_resting = max_resting.max(x.open_count(a));
                    let group = Some("g1");
                    assert_eq!(
                        x.oco_count(a, group),
                        Some(
                            r.open_orders(a)
                                .iter()
                                .filter(|o| o.request.oco_group.as_deref() == group)
                                .count()
                        )
                    );
                }
                assert_eq!(
                    state_of(&xb, SYMBOLS),
                    state_of(&rb, SYMBOLS),
                    "seed {seed}"
                );
            }
        }
        // The test means something only if orders piled up and many filled.
        assert!(max_resting >= 150, "{max_resting}");
        assert!(fills >= 2_000, "{fills}");
    }

    #[test]
    fn a_pass_over_ten_thousand_far_orders_looks_at_none_of_them() {
        let mut x = Exchange::new(ExchangeConfig::default());
        let mut book = Portfolio::new(vec!["X".to_string()].into(), 1e6);
        let mut out = Vec::new();
        for i in 0..10_000 {
            let side = if i % 2 == 0 { Side::Buy } else { Side::Sell };
            let far = 50.0 + (i % 40) as f64;
            let (limit, stop) = match side {
                Side::Buy => (100.0 - far, 100.0 + far),
                Side::Sell => (100.0 + far, 100.0 - far),
            };
            let mut o = OrderRequest::market("X", side, Quantity::Units(1.0));
            o.kind = match i % 4 {
                0 | 1 => OrderKind::Limit(limit),
                2 => OrderKind::Stop(stop),
                _ => OrderKind::StopLimit { stop, limit },
            };
            // Day orders from the 8,000th on: they are due on a later day's bar.
            if i >= 8_000 {
                o.time_in_force = TimeInForce::Day;
            }
            x.submit(0, 0, o, 0, 1_000, 100.0);
        }
        let near = x.submit(0, 0, stop(Side::Sell, 99.5, None), 0, 1_000, 100.0);
        let b = bar(100.0);
        let examined = |x: &Exchange| x.accounts[0].books[&0].candidates(&b).count();
        assert_eq!(examined(&x), 1, "only the near stop");
        assert!(x.would_act(0, 0, 1, &b));
        x.process_bar(0, 0, 1, &b, &mut book, &mut out);
        assert!(
            matches!(&out[..], [ExchangeEvent::Fill { order_id, .. }] if *order_id == near),
            "{out:?}"
        );
        assert_eq!(examined(&x), 0);
        // As before the index, resting day orders keep the engine from batching bars.
        assert!(x.would_act(0, 0, 2, &b));
        out.clear();
        x.process_bar(0, 0, 2, &b, &mut book, &mut out);
        assert!(out.is_empty());
        assert_eq!(x.open_count(0), 10_000);
        // The next day, the day orders (and only they) are due.
        let mut next_day = b;
        next_day.ts += 86_400;
        assert_eq!(examined_at(&x, &next_day), 2_000);
        x.process_bar(0, 0, 3, &next_day, &mut book, &mut out);
        assert_eq!(out.len(), 2_000);
        assert_eq!(x.open_count(0), 8_000);
        assert_eq!(examined_at(&x, &next_day), 0);
        assert!(!x.would_act(0, 0, 4, &next_day));
    }

    fn examined_at(x: &Exchange, b: &Bar) -> usize {
        x.accounts[0].books[&0].candidates(b).count()
    }

    #[test]
    fn a_bracket_filled_in_parts_keeps_one_pair_of_exits_for_all_of_it() {
        let mut x = Exchange::new(ExchangeConfig {
            volume_participation: Some(0.01),
            ..ExchangeConfig::default()
        });
        let mut book = Portfolio::new(vec!["X".to_string()].into(), 1e6);
        let mut out = Vec::new();
        let mut entry = OrderRequest::market("X", Side::Buy, Quantity::Units(10.0));
        entry.take_profit = Some(200.0);
        entry.stop_loss = Some(50.0);
        x.submit(0, 0, entry, 0, 0, 100.0);
        // 100 of volume a bar: one unit of the entry fills on each.
        let thin = Bar {
            volume: 100.0,
            ..bar(100.0)
        };
        let exits = |x: &Exchange| -> Vec<f64> {
            x.open_orders(0)
                .iter()
                .filter(|o| o.request.side == Side::Sell)
                .map(|o| match o.request.quantity {
                    Quantity::Units(q) => q,
                    _ => f64::NAN,
                })
                .collect()
        };
        for step in 1..=10u64 {
            x.process_bar(0, 0, step, &thin, &mut book, &mut out);
            let units = step as f64;
            assert_eq!(exits(&x), [units, units], "bar {step}: {out:?}");
            assert_eq!(x.open_count(0), if step < 10 { 3 } else { 2 });
        }
        // The take-profit, cut by volume too, sells the whole position in its parts.
        let mut high = thin;
        high.high = 201.0;
        for step in 11..=20u64 {
            x.process_bar(0, 0, step, &high, &mut book, &mut out);
        }
        assert_eq!(book.quantity(0), 0.0);
        assert_eq!(x.open_count(0), 0);
    }

    #[test]
    fn oco_groups_are_counted_per_account() {
        let mut x = Exchange::new(ExchangeConfig::default());
        for _ in 0..3 {
            x.submit(1, 0, stop(Side::Sell, 50.0, Some("g")), 0, 0, 100.0);
        }
        let other = x.submit(2, 0, stop(Side::Sell, 50.0, Some("g")), 0, 0, 100.0);
        assert_eq!(x.oco_count(1, Some("g")), Some(3));
        assert_eq!(x.oco_count(1, Some("h")), Some(0));
        assert_eq!(x.oco_count(1, None), None);
        x.cancel(2, other).unwrap();
        assert_eq!(x.oco_count(2, Some("g")), Some(0));
        x.cancel_all(1);
        assert_eq!(x.oco_count(1, Some("g")), Some(0));
    }
}
