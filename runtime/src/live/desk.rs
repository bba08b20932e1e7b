//! The paper desk: the broker of the orders clients place through the API (account
//! [`MANUAL`]).
//!
//! It fills them against the live bars with the exchange the engine uses ([`Exchange`]: one
//! implementation of the fill rules, costs and buying power), books each fill with its order
//! and position in one transaction ([`store::orders::record_fill`]) and publishes what it did as
//! [`LiveEvent`]s. Orders are risk-checked when they are placed (`POST /api/orders`); the desk
//! owns them from then on, and cancels and changes go through it, so a cancel cannot race a
//! fill. On start it takes over the working manual orders in the store.
//!
//! It listens to the engine's bar broadcast only while it has working orders: an idle desk
//! costs the live engine nothing.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::{mpsc, oneshot};

use super::{LiveError, LiveEvent};
use crate::exchange::{Exchange, ExchangeConfig, ExchangeEvent};
use crate::model::{Bar, OrderChange, OrderKind, OrderRequest, Quantity, Side, TimeInForce};
use crate::oms::ExternalBook;
use crate::portfolio::Portfolio;
use crate::store::orders::{MANUAL, NewOrder, Order};
use crate::store::{self, Store, StoreError, StoreResult};

/// The exchange account of the desk (it holds one).
const ACCOUNT: usize = 0;

enum DeskCommand {
    Submit {
        order: Box<Order>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Cancel {
        id: i64,
        reason: String,
        reply: oneshot::Sender<StoreResult<Order>>,
    },
    Modify {
        id: i64,
        change: OrderChange,
        reply: oneshot::Sender<StoreResult<Order>>,
    },
    CancelAll {
        reason: String,
        reply: oneshot::Sender<StoreResult<Vec<Order>>>,
    },
    /// Replies once everything sent before is handled.
    Sync { reply: oneshot::Sender<()> },
}

/// A handle on the paper desk.
#[derive(Clone)]
pub struct Desk {
    commands: mpsc::UnboundedSender<DeskCommand>,
    report: Arc<DeskReport>,
}

/// The desk's book as the account-wide risk check counts it, kept current by the desk after
/// every order change and bar for the live engine to read ([`crate::oms::ExternalBook`]).
#[derive(Default)]
pub(crate) struct DeskReport {
    book: std::sync::RwLock<ExternalBook>,
    /// Bumped on every change, so a reader copies the book only when it changed.
    generation: std::sync::atomic::AtomicU64,
}

impl DeskReport {
    /// The book and its generation.
    pub(crate) fn read(&self) -> (u64, ExternalBook) {
        let g = self.generation.load(std::sync::atomic::Ordering::Acquire);
        let book = self
            .book
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        (g, book)
    }

    /// The generation of the book now.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn write(&self, book: ExternalBook) {
        let mut b = self
            .book
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *b != book {
            *b = book;
            self.generation
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
    }
}

impl Desk {
    /// Start the desk: it takes over the working manual orders in the store.
    pub(crate) async fn start(
        store: Store,
        events: broadcast::Sender<Arc<LiveEvent>>,
        exchange: ExchangeConfig,
        initial_cash: f64,
    ) -> Result<Desk, LiveError> {
        let cash = initial_cash + store::orders::cash_flow(&store, Some(MANUAL)).await?.0;
        let positions = store::orders::open_positions(&store, Some(MANUAL)).await?;
        let clock = store::live::cursors(&store)
            .await?
            .values()
            .map(|c| c.ts)
            .max()
            .unwrap_or(0);
        let mut task = DeskTask {
            store: store.clone(),
            events,
            exchange: Exchange::new(exchange),
            // Carried positions: their cost back into cash, then booked at their price, as
            // the engine seeds a resumed strategy's account.
            book: Portfolio::new(
                Arc::from(Vec::new()),
                cash + positions
                    .iter()
                    .map(|p| p.quantity * p.avg_price)
                    .sum::<f64>(),
            ),
            symbols: Arc::from(Vec::new()),
            step: 0,
            clock,
            working: HashMap::new(),
            bars: None,
            report: Arc::default(),
        };
        for p in &positions {
            let id = task.symbol_id(&p.symbol);
            task.book
                .apply_fill(id, p.quantity, p.avg_price, 0.0, clock);
            task.book.set_mark(id, p.avg_price);
        }
        let groups = store::orders::working_oco_groups(&store, MANUAL).await?;
        for mut order in store::orders::working(&store, Some(MANUAL)).await? {
            let group = groups.get(&order.id).cloned();
            if let Err(e) = task.submit(&order, group) {
                let reason = format!("the paper desk cannot work this order after a restart: {e}");
                tracing::warn!(order = order.id, %reason, "manual order dropped");
                order = store::orders::cancel(&store, order.id, &reason).await?;
                task.publish(LiveEvent::OrderCancelled { order });
            }
        }
        if !task.working.is_empty() {
            tracing::info!(
                orders = task.working.len(),
                "paper desk resumed working orders"
            );
        }
        task.report();
        let (commands, rx) = mpsc::unbounded_channel();
        let report = task.report.clone();
        tokio::spawn(task.run(rx));
        Ok(Desk { commands, report })
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> DeskCommand,
    ) -> Result<T, LiveError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .map_err(|_| LiveError::Stopped)?;
        rx.await.map_err(|_| LiveError::Stopped)
    }

    /// Work a stored, accepted manual order from the next bar of its symbol on.
    pub async fn submit(&self, order: Order) -> Result<(), LiveError> {
        self.ask(|reply| DeskCommand::Submit {
            order: Box::new(order),
            reply,
        })
        .await?
        .map_err(LiveError::Refused)
    }

    /// Cancel a working order (the store's answer: `NotFound`, or `Conflict` when it is not
    /// working any more).
    pub async fn cancel(&self, id: i64, reason: &str) -> Result<Order, LiveError> {
        let reason = reason.to_string();
        Ok(self
            .ask(|reply| DeskCommand::Cancel { id, reason, reply })
            .await??)
    }

    /// Change the total quantity or the prices of a working order.
    pub async fn modify(&self, id: i64, change: OrderChange) -> Result<Order, LiveError> {
        Ok(self
            .ask(|reply| DeskCommand::Modify { id, change, reply })
            .await??)
    }

    /// Cancel every working order, of every account (the kill switch).
    pub async fn cancel_all(&self, reason: &str) -> Result<Vec<Order>, LiveError> {
        let reason = reason.to_string();
        Ok(self
            .ask(|reply| DeskCommand::CancelAll { reason, reply })
            .await??)
    }

    /// Its book as the account-wide risk check counts it.
    pub(crate) fn report(&self) -> Arc<DeskReport> {
        self.report.clone()
    }

    /// Wait until every command sent before and every bar received before is handled.
    pub async fn sync(&self) -> Result<(), LiveError> {
        self.ask(|reply| DeskCommand::Sync { reply }).await
    }
}

/// A working order: its row, and what of it had filled when the desk took it (the exchange
/// counts only what fills from then on).
struct Working {
    stored_id: i64,
    user_id: Option<i64>,
    filled_before: f64,
}

struct DeskTask {
    store: Store,
    events: broadcast::Sender<Arc<LiveEvent>>,
    exchange: Exchange,
    book: Portfolio,
    /// Desk symbol ids index this list.
    symbols: Arc<[String]>,
    step: u64,
    /// Time of the newest bar seen.
    clock: i64,
    /// By exchange order id.
    working: HashMap<u64, Working>,
    /// The engine's broadcast while there are working orders.
    bars: Option<broadcast::Receiver<Arc<LiveEvent>>>,
    report: Arc<DeskReport>,
}

impl DeskTask {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<DeskCommand>) {
        loop {
            if self.working.is_empty() {
                self.bars = None;
            } else if self.bars.is_none() {
                self.bars = Some(self.events.subscribe());
            }
            let event = match self.bars.as_mut() {
                Some(bars) => tokio::select! {
                    biased;
                    c = commands.recv() => match c {
                        Some(c) => { self.command(c).await; self.report(); continue; }
                        None => return,
                    },
                    e = bars.recv() => e,
                },
                None => match commands.recv().await {
                    Some(c) => {
                        self.command(c).await;
                        self.report();
                        continue;
                    }
                    None => return,
                },
            };
            match event {
                Ok(e) => {
                    if let LiveEvent::Bar { symbol, bar, .. } = &*e {
                        self.bar(symbol, bar).await;
                        self.report();
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "the paper desk fell behind the live events")
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    async fn command(&mut self, c: DeskCommand) {
        match c {
            DeskCommand::Submit { order, reply } => {
                let _ = reply.send(self.submit(&order, None));
            }
            DeskCommand::Cancel { id, reason, reply } => {
                if let Some(x) = self.exchange_id(id) {
                    let _ = self.exchange.cancel(ACCOUNT, x);
                    self.working.remove(&x);
                }
                let _ = reply.send(store::orders::cancel(&self.store, id, &reason).await);
            }
            DeskCommand::Modify { id, change, reply } => {
                let _ = reply.send(self.modify(id, change).await);
            }
            DeskCommand::CancelAll { reason, reply } => {
                self.exchange.cancel_all(ACCOUNT);
                self.working.clear();
                let _ = reply.send(store::orders::cancel_all_working(&self.store, &reason).await);
            }
            DeskCommand::Sync { reply } => {
                // Bars already broadcast are handled first.
                if let Some(mut bars) = self.bars.take() {
                    while let Ok(e) = bars.try_recv() {
                        if let LiveEvent::Bar { symbol, bar, .. } = &*e {
                            self.bar(symbol, bar).await;
                        }
                    }
                    self.bars = Some(bars);
                }
                let _ = reply.send(());
            }
        }
    }

    /// Tell the live engine what the book is now.
    fn report(&self) {
        let mut positions = HashMap::new();
        for (i, name) in self.symbols.iter().enumerate() {
            let q = self.book.quantity(i);
            if q != 0.0 {
                positions.insert(name.clone(), q);
            }
        }
        self.report.write(ExternalBook {
            positions,
            gross_exposure: self.book.gross_exposure(),
            open_orders: self.exchange.open_count(ACCOUNT),
        });
    }

    fn exchange_id(&self, stored_id: i64) -> Option<u64> {
        self.working
            .iter()
            .find(|(_, w)| w.stored_id == stored_id)
            .map(|(x, _)| *x)
    }

    fn symbol_id(&mut self, name: &str) -> usize {
        if let Some(i) = self.symbols.iter().position(|s| s == name) {
            return i;
        }
        let mut names = self.symbols.to_vec();
        names.push(name.to_string());
        self.symbols = names.into();
        self.book.add_symbol(self.symbols.clone());
        self.symbols.len() - 1
    }

    fn submit(&mut self, order: &Order, oco_group: Option<String>) -> Result<(), String> {
        let mut request = request_of(order)?;
        request.oco_group = oco_group;
        Exchange::validate(&request)?;
        let symbol = self.symbol_id(&order.symbol);
        let last = self.book.mark(symbol);
        let id = self.exchange.submit(
            ACCOUNT,
            symbol,
            request,
            self.step,
            self.clock,
            if last.is_finite() { last } else { 0.0 },
        );
        self.working.insert(
            id,
            Working {
                stored_id: order.id,
                user_id: order.user_id,
                filled_before: order.filled_qty,
            },
        );
        Ok(())
    }

    async fn modify(&mut self, id: i64, change: OrderChange) -> StoreResult<Order> {
        if let Some(x) = self.exchange_id(id) {
            let before = self.working[&x].filled_before;
            let on_exchange = OrderChange {
                quantity: change.quantity.map(|q| q - before),
                ..change
            };
            self.exchange
                .modify(ACCOUNT, x, on_exchange)
                .map_err(|e| StoreError::Conflict(format!("order {id}: {e}")))?;
        }
        store::orders::modify(
            &self.store,
            id,
            change.quantity,
            change.limit_price,
            change.stop_price,
        )
        .await
    }

    async fn bar(&mut self, symbol: &str, bar: &Bar) {
        let Some(sid) = self.symbols.iter().position(|s| s == symbol) else {
            return;
        };
        self.step += 1;
        self.clock = self.clock.max(bar.ts);
        let mut out = Vec::new();
        self.exchange
            .process_bar(ACCOUNT, sid, self.step, bar, &mut self.book, &mut out);
        self.book.set_mark(sid, bar.close);
        let mut user = None;
        // The stored id of the last order filled on this bar: the exchange names its own ids
        // in the reasons of one-cancels-other cancels.
        let mut last_filled = None;
        for e in out {
            match e {
                ExchangeEvent::Fill {
                    order_id,
                    symbol,
                    side,
                    quantity,
                    price,
                    fee,
                    ts,
                    tag,
                    ..
                } => {
                    let stored = match self.working.get(&order_id) {
                        Some(w) => {
                            user = w.user_id;
                            Ok(w.stored_id)
                        }
                        // Not one of ours (the exchange made it): the fill gets its own row.
                        None => {
                            let mut r = OrderRequest::market(
                                self.symbols[symbol].clone(),
                                side,
                                Quantity::Units(quantity),
                            );
                            r.tag = tag.or_else(|| Some("exchange".into()));
                            store::orders::insert(
                                &self.store,
                                &NewOrder::from_request(MANUAL, None, &r),
                            )
                            .await
                            .map(|o| o.id)
                        }
                    };
                    let booked = match stored {
                        Ok(id) => {
                            store::orders::record_fill(&self.store, id, quantity, price, fee, ts)
                                .await
                                .map(|fill| (id, fill))
                        }
                        Err(e) => Err(e),
                    };
                    match booked {
                        Ok((id, fill)) => match store::orders::get(&self.store, id).await {
                            Ok(order) => {
                                if !order.is_working() {
                                    self.working.remove(&order_id);
                                }
                                last_filled = Some(order.id);
                                self.publish(LiveEvent::OrderFilled { order, fill });
                            }
                            Err(e) => {
                                tracing::error!(order = id, error = %e, "reading a filled order")
                            }
                        },
                        Err(e) => {
                            // The store refused (the order is no longer working): stop working it.
                            tracing::error!(order = order_id, error = %e, "the paper desk could not book a fill");
                            let _ = self.exchange.cancel(ACCOUNT, order_id);
                            self.working.remove(&order_id);
                        }
                    }
                }
                ExchangeEvent::Cancelled {
                    order_id, reason, ..
                } => {
                    let Some(w) = self.working.remove(&order_id) else {
                        continue;
                    };
                    let reason = match last_filled {
                        Some(id) if reason.starts_with("OCO:") => {
                            format!("one-cancels-other: order {id} filled")
                        }
                        _ => reason,
                    };
                    match store::orders::cancel(&self.store, w.stored_id, &reason).await {
                        Ok(order) => self.publish(LiveEvent::OrderCancelled { order }),
                        Err(e) => {
                            tracing::warn!(order = w.stored_id, error = %e, "cancelling a manual order")
                        }
                    }
                }
            }
        }
        self.adopt_exits(user).await;
    }

    /// Store the exits the exchange attached to a filled bracket order as working orders of
    /// their own, in one one-cancels-other group, so clients see, change and cancel them.
    async fn adopt_exits(&mut self, user: Option<i64>) {
        let new: Vec<_> = self
            .exchange
            .open_orders(ACCOUNT)
            .into_iter()
            .filter(|o| !self.working.contains_key(&o.id))
            .collect();
        for o in new {
            let mut row = NewOrder::from_request(MANUAL, user, &o.request);
            row.tag = o.request.tag.clone();
            let stored = match store::orders::insert(&self.store, &row).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "storing a bracket exit; it is not worked");
                    let _ = self.exchange.cancel(ACCOUNT, o.id);
                    continue;
                }
            };
            if let Some(g) = &o.request.oco_group
                && let Err(e) = store::orders::set_oco_group(&self.store, stored.id, g).await
            {
                tracing::warn!(order = stored.id, error = %e, "storing an exit's OCO group");
            }
            self.working.insert(
                o.id,
                Working {
                    stored_id: stored.id,
                    user_id: user,
                    filled_before: 0.0,
                },
            );
            self.publish(LiveEvent::OrderAccepted { order: stored });
        }
    }

    fn publish(&self, e: LiveEvent) {
        let _ = self.events.send(Arc::new(e));
    }
}

/// The request a stored order stands for, with what is left of it.
fn request_of(o: &Order) -> Result<OrderRequest, String> {
    let side = match o.side.as_str() {
        "buy" => Side::Buy,
        "sell" => Side::Sell,
        other => return Err(format!("side {other:?}")),
    };
    let need = |v: Option<f64>, what: &str| {
        v.ok_or_else(|| format!("a {} order without {what}", o.order_type))
    };
    let kind = match o.order_type.as_str() {
        "market" => OrderKind::Market,
        "limit" => OrderKind::Limit(need(o.limit_price, "limit_price")?),
        "stop" => OrderKind::Stop(need(o.stop_price, "stop_price")?),
        "stop_limit" => OrderKind::StopLimit {
            stop: need(o.stop_price, "stop_price")?,
            limit: need(o.limit_price, "limit_price")?,
        },
        other => return Err(format!("order type {other:?} is not worked by the desk")),
    };
    let time_in_force = match o.time_in_force.as_str() {
        "gtc" => TimeInForce::Gtc,
        "day" => TimeInForce::Day,
        "ioc" => TimeInForce::Ioc,
        "fok" => TimeInForce::Fok,
        other => return Err(format!("time in force {other:?}")),
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
        side,
        quantity: Quantity::Units(left),
        kind,
        time_in_force,
        take_profit: o.take_profit,
        stop_loss: o.stop_loss,
        oco_group: None,
        tag: o.tag.clone(),
    })
}
