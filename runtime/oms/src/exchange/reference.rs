//! The exchange as it was before its orders were indexed (one list, every order looked at on
//! every bar): the brute-force reference the indexed exchange must match fill for fill.

#![allow(dead_code)]

use super::{Exchange, ExchangeConfig, ExchangeEvent, price, units_for};
use crate::portfolio::Portfolio;
use qtm_core::model::{
    Bar, OpenOrder, OrderChange, OrderKind, OrderRequest, OrderStatus, Quantity, Side, TimeInForce,
    Trail,
};

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
    /// A bracket entry's current exits group (see the exchange's `Order::exits_group`).
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
}

/// All resting orders of an engine, in one list.
#[derive(Debug, Clone, Default)]
pub struct Reference {
    config: ExchangeConfig,
    orders: Vec<Order>,
    /// Resting orders per account (indexed by account): an account without any costs
    /// nothing to process. With 10,000 live accounts, scanning every resting order for each
    /// account's bar made the exchange's pass quadratic.
    resting: Vec<u32>,
    next_id: u64,
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

impl Reference {
    /// An exchange with no orders.
    pub fn new(config: ExchangeConfig) -> Self {
        Self {
            config,
            orders: Vec::new(),
            resting: Vec::new(),
            next_id: 1,
        }
    }

    /// Add a resting order.
    fn rest(&mut self, order: Order) {
        let a = order.account;
        if a >= self.resting.len() {
            self.resting.resize(a + 1, 0);
        }
        self.resting[a] += 1;
        self.orders.push(order);
    }

    /// Remove resting order `i`.
    fn unrest(&mut self, i: usize) -> Order {
        let o = self.orders.remove(i);
        self.resting[o.account] -= 1;
        o
    }

    /// The cost and fill model.
    pub fn config(&self) -> &ExchangeConfig {
        &self.config
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
            exits_group: None,
        });
        id
    }

    /// Cancel one of `account`'s orders.
    pub fn cancel(&mut self, account: usize, id: u64) -> Result<(), String> {
        let i = self
            .orders
            .iter()
            .position(|o| o.id == id && o.account == account)
            .ok_or_else(|| format!("no open order {id}"))?;
        self.unrest(i);
        Ok(())
    }

    /// Cancel every order of `account`; returns the ids.
    pub fn cancel_all(&mut self, account: usize) -> Vec<u64> {
        if !self.has_orders(account) {
            return Vec::new();
        }
        let ids = self
            .orders
            .iter()
            .filter(|o| o.account == account)
            .map(|o| o.id)
            .collect();
        self.orders.retain(|o| o.account != account);
        self.resting[account] = 0;
        ids
    }

    /// Change the quantity or prices of one of `account`'s resting orders.
    pub fn modify(&mut self, account: usize, id: u64, change: OrderChange) -> Result<(), String> {
        let o = self
            .orders
            .iter_mut()
            .find(|o| o.id == id && o.account == account)
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
        Exchange::validate(&request)?;
        if change.quantity.is_some() {
            o.resolved = None;
        }
        o.request = request;
        Ok(())
    }

    /// Resting orders of `account`.
    pub fn open_orders(&self, account: usize) -> Vec<OpenOrder> {
        if !self.has_orders(account) {
            return Vec::new();
        }
        self.orders
            .iter()
            .filter(|o| o.account == account)
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
        self.resting.get(account).map_or(0, |&n| n as usize)
    }

    /// Whether `account` has any resting order.
    #[inline]
    pub fn has_orders(&self, account: usize) -> bool {
        self.resting.get(account).is_some_and(|&n| n > 0)
    }

    /// Whether processing `bar` (engine step `step`) would change anything for `account`:
    /// a fill, a trigger, an expiry or a trailing stop's anchor. Pure: lets the engine hand a
    /// strategy a run of bars on which the exchange has nothing to do.
    pub fn would_act(&self, account: usize, symbol: usize, step: u64, bar: &Bar) -> bool {
        self.has_orders(account)
            && self.orders.iter().any(|o| {
                if o.account != account || o.symbol != symbol || step < o.active_from_step {
                    return false;
                }
                if o.request.time_in_force != TimeInForce::Gtc {
                    return true;
                }
                let side = o.request.side;
                match o.request.kind {
                    OrderKind::Market => true,
                    OrderKind::Limit(p) => price::limit(side, p, bar).is_some(),
                    OrderKind::Stop(p) => price::stop(side, p, bar).is_some(),
                    OrderKind::StopLimit { stop, limit } => {
                        if o.triggered {
                            price::limit(side, limit, bar).is_some()
                        } else {
                            price::stop(side, stop, bar).is_some()
                        }
                    }
                    OrderKind::TrailingStop(_) => {
                        let moved = match side {
                            Side::Sell => bar.high > o.anchor,
                            Side::Buy => bar.low < o.anchor,
                        };
                        moved
                            || price::stop(side, o.trail_level().unwrap_or(f64::NAN), bar).is_some()
                    }
                }
            })
    }

    /// Process `bar` of `symbol` (engine step `step`) for `account`: expire, trigger and fill
    /// its eligible orders, booking fills into `book`.
    pub fn process_bar(
        &mut self,
        account: usize,
        symbol: usize,
        step: u64,
        bar: &Bar,
        book: &mut Portfolio,
        out: &mut Vec<ExchangeEvent>,
    ) {
        if !self.has_orders(account) {
            return;
        }
        let mut ids: Vec<(bool, u64)> = self
            .orders
            .iter()
            .filter(|o| o.account == account && o.symbol == symbol && step >= o.active_from_step)
            // Within an OCO group, stops go before limits: when a bar touches both a bracket's
            // stop-loss and its take-profit, the conservative side fills.
            .map(|o| (o.request.oco_group.is_some() && !o.is_stop_like(), o.id))
            .collect();
        if ids.is_empty() {
            return;
        }
        ids.sort_unstable();
        for (_, id) in ids {
            let Some(i) = self.orders.iter().position(|o| o.id == id) else {
                continue;
            }; // cancelled by OCO
            self.process_order(i, step, bar, book, out);
        }
    }

    fn process_order(
        &mut self,
        i: usize,
        step: u64,
        bar: &Bar,
        book: &mut Portfolio,
        out: &mut Vec<ExchangeEvent>,
    ) {
        let cfg = self.config.clone();
        let o = &mut self.orders[i];
        let day = bar.ts.div_euclid(86_400);
        if o.request.time_in_force == TimeInForce::Day && day > o.placed_day {
            self.drop_order(i, bar.ts, "expired at the end of its day", out);
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
        let Some(price) = fill_price else {
            if one_shot {
                self.drop_order(i, bar.ts, "not filled on its first bar (IOC/FOK)", out);
            }
            return;
        };
        let at_open = price == bar.open || matches!(o.request.kind, OrderKind::Market);
        self.fill(i, step, price, at_open, bar, book, out);
    }

    /// Remove order `i` and report why: the one way an order leaves without filling completely.
    fn drop_order(
        &mut self,
        i: usize,
        ts: i64,
        reason: impl Into<String>,
        out: &mut Vec<ExchangeEvent>,
    ) {
        let o = self.unrest(i);
        out.push(ExchangeEvent::Cancelled {
            account: o.account,
            order_id: o.id,
            ts,
            reason: reason.into(),
        });
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
        let ids: Vec<u64> = self
            .orders
            .iter()
            .filter(|o| {
                o.account == account
                    && o.symbol == symbol
                    && o.placed_step == step
                    && o.request.kind == OrderKind::Market
            })
            .map(|o| o.id)
            .collect();
        for id in ids {
            if let Some(i) = self.orders.iter().position(|o| o.id == id) {
                let side = self.orders[i].request.side;
                let price = price::slip(side, bar.close, self.config.slippage_bps);
                // Exits of a bracket entered at the close can act from the next bar on.
                self.fill(i, step, price, false, bar, book, out);
            }
        }
    }

    /// Resolve the quantity, cap it by volume, book the fill, then handle OCO, brackets and
    /// time in force.
    #[allow(clippy::too_many_arguments)]
    fn fill(
        &mut self,
        i: usize,
        step: u64,
        price: f64,
        at_open: bool,
        bar: &Bar,
        book: &mut Portfolio,
        out: &mut Vec<ExchangeEvent>,
    ) {
        let cfg = self.config.clone();
        let o = &mut self.orders[i];
        let (account, id, symbol) = (o.account, o.id, o.symbol);
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
            self.drop_order(i, bar.ts, reason, out);
            return;
        }
        let side = if total > 0.0 { Side::Buy } else { Side::Sell };
        let mut qty = remaining;
        if let Some(part) = cfg.volume_participation {
            let cap = (bar.volume * part).floor();
            if cap < qty {
                if o.request.time_in_force == TimeInForce::Fok {
                    self.drop_order(
                        i,
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
                    i,
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
            self.drop_order(i, bar.ts, "rest of an immediate-or-cancel order", out);
        } else if done {
            self.unrest(i);
        }
        if let Some(group) = oco {
            let siblings: Vec<u64> = self
                .orders
                .iter()
                .filter(|s| {
                    s.account == account
                        && s.id != id
                        && s.request.oco_group.as_deref() == Some(group.as_str())
                })
                .map(|s| s.id)
                .collect();
            for sid in siblings {
                if let Some(j) = self.orders.iter().position(|s| s.id == sid) {
                    self.unrest(j);
                }
                out.push(ExchangeEvent::Cancelled {
                    account,
                    order_id: sid,
                    ts: bar.ts,
                    reason: format!("OCO: order {id} filled"),
                });
            }
        }
        // An earlier part's exits, all still resting untouched, take this part's quantity too.
        let legs = usize::from(bracket.0.is_some()) + usize::from(bracket.1.is_some());
        let pair: Vec<usize> = exits_group
            .as_deref()
            .map(|g| {
                (0..self.orders.len())
                    .filter(|&j| {
                        self.orders[j].account == account
                            && self.orders[j].request.oco_group.as_deref() == Some(g)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let grown =
            legs > 0 && pair.len() == legs && pair.iter().all(|&j| self.orders[j].filled == 0.0);
        if grown {
            for j in pair {
                let e = &mut self.orders[j];
                if let Quantity::Units(q) = e.request.quantity {
                    e.request.quantity = Quantity::Units(q + qty);
                    e.resolved = None;
                }
            }
        } else if bracket.0.is_some() || bracket.1.is_some() {
            // Exits for the quantity just filled, as an OCO pair; the stop is created first so
            // it wins a bar that touches both. Entered at the open, they may act on this bar.
            let group = format!("bracket-{id}-{}", self.next_id);
            if !done && let Some(entry) = self.orders.iter_mut().find(|e| e.id == id) {
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
                    exits_group: None,
                });
                exits.push(exit_id);
            }
            if at_open {
                // Check the new exits against the rest of this bar right away, stop first.
                for exit_id in exits {
                    if let Some(j) = self.orders.iter().position(|x| x.id == exit_id) {
                        self.process_order(j, step, bar, book, out);
                    }
                }
            }
        }
    }
}
