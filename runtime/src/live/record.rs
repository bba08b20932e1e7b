//! The recorder: stores what the engine did, then broadcasts it. It runs on the async runtime
//! and takes records in the engine's order, so an order row exists before its fills, and a
//! symbol's cursor moves only after the effects of its bars are stored.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::broadcast;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::oneshot;

use super::LiveEvent;
use super::instances::account as account_name;
use crate::events::{Event, StrategyState};
use crate::model::{Bar, LogLevel, OrderRequest, Quantity};
use crate::store::live::Cursor;
use crate::store::orders::{NewOrder, side_str, status};
use crate::store::{self, Store, StoreError};

/// What the engine thread hands the recorder.
pub(crate) enum Record {
    /// Engine account `account` is strategy `strategy_id` from now on.
    Registered {
        account: usize,
        strategy_id: i64,
        instance_id: i64,
    },
    /// The next status change of `account` is a requested stop, not a trap.
    Retiring {
        account: usize,
    },
    Engine(Event),
    Bar {
        symbol: String,
        seq: u64,
        bar: Bar,
    },
    /// Every bar up to these is handled.
    Done {
        cursors: Vec<(String, Cursor)>,
    },
    Log {
        strategy_id: i64,
        ts: i64,
        level: LogLevel,
        message: String,
    },
    Equity {
        strategy_id: i64,
        ts: i64,
        equity: f64,
        cash: f64,
    },
    Snapshot {
        strategy_id: i64,
        state: Vec<u8>,
        ts: i64,
    },
    Status {
        strategy_id: i64,
        status: String,
        reason: String,
        version: Option<i64>,
        pause_us: Option<f64>,
    },
    Flush(oneshot::Sender<()>),
}

#[derive(Clone, Copy)]
struct Owner {
    strategy_id: i64,
    instance_id: i64,
}

struct Recorder {
    store: Store,
    events: broadcast::Sender<Arc<LiveEvent>>,
    owners: HashMap<usize, Owner>,
    retiring: std::collections::HashSet<usize>,
    /// Engine (account, order id) → stored order id.
    orders: HashMap<(usize, u64), i64>,
    /// Orders sized as a fraction of equity: stored at their first fill, when their units are
    /// known.
    sized_at_fill: HashMap<(usize, u64), OrderRequest>,
    cursors: HashMap<String, Cursor>,
}

/// Records until the engine thread is gone.
pub(crate) async fn run(
    store: Store,
    mut records: UnboundedReceiver<Record>,
    events: broadcast::Sender<Arc<LiveEvent>>,
) {
    let mut r = Recorder {
        store,
        events,
        owners: HashMap::new(),
        retiring: Default::default(),
        orders: HashMap::new(),
        sized_at_fill: HashMap::new(),
        cursors: HashMap::new(),
    };
    let mut batch = Vec::new();
    while records.recv_many(&mut batch, 4096).await > 0 {
        for rec in batch.drain(..) {
            if let Err(e) = r.record(rec).await {
                tracing::error!(error = %e, "live recorder: storing an engine event failed");
            }
        }
        r.save_cursors().await;
    }
}

impl Recorder {
    fn publish(&self, e: LiveEvent) {
        let _ = self.events.send(Arc::new(e));
    }

    async fn save_cursors(&mut self) {
        if self.cursors.is_empty() {
            return;
        }
        let list: Vec<(String, Cursor)> = self.cursors.drain().collect();
        if let Err(e) = store::live::save_cursors(&self.store, &list).await {
            tracing::error!(error = %e, "live recorder: saving feed cursors failed");
        }
    }

    async fn record(&mut self, rec: Record) -> Result<(), StoreError> {
        match rec {
            Record::Registered {
                account,
                strategy_id,
                instance_id,
            } => {
                self.owners.insert(
                    account,
                    Owner {
                        strategy_id,
                        instance_id,
                    },
                );
            }
            Record::Retiring { account } => {
                self.retiring.insert(account);
            }
            Record::Bar { symbol, seq, bar } => self.publish(LiveEvent::Bar { symbol, seq, bar }),
            Record::Done { cursors } => self.cursors.extend(cursors),
            Record::Log {
                strategy_id,
                ts,
                level,
                message,
            } => self.publish(LiveEvent::Log {
                strategy_id,
                ts,
                level,
                message,
            }),
            Record::Equity {
                strategy_id,
                ts,
                equity,
                cash,
            } => self.publish(LiveEvent::Equity {
                strategy_id,
                ts,
                equity,
                cash,
            }),
            Record::Snapshot {
                strategy_id,
                state,
                ts,
            } => store::live::save_snapshot(&self.store, strategy_id, &state, ts).await?,
            Record::Status {
                strategy_id,
                status,
                reason,
                version,
                pause_us,
            } => self.publish(LiveEvent::Status {
                strategy_id,
                status,
                reason,
                version,
                pause_us,
            }),
            Record::Flush(done) => {
                self.save_cursors().await;
                let _ = done.send(());
            }
            Record::Engine(e) => self.engine_event(e).await?,
        }
        Ok(())
    }

    async fn insert_order(
        &mut self,
        account: usize,
        owner: Owner,
        order_id: u64,
        request: &OrderRequest,
        units: Option<f64>,
        ts: i64,
    ) -> Result<i64, StoreError> {
        let mut o = NewOrder::from_request(&account_name(owner.strategy_id), None, request);
        o.instance_id = Some(owner.instance_id);
        if let Some(u) = units {
            o.quantity = u;
        }
        let stored = store::orders::insert(&self.store, &o).await?;
        self.orders.insert((account, order_id), stored.id);
        self.publish(LiveEvent::Order {
            strategy_id: owner.strategy_id,
            order_id: stored.id,
            symbol: stored.symbol.clone(),
            side: stored.side.clone(),
            quantity: stored.quantity,
            order_type: stored.order_type.clone(),
            status: stored.status.clone(),
            reason: None,
            ts,
        });
        Ok(stored.id)
    }

    async fn engine_event(&mut self, e: Event) -> Result<(), StoreError> {
        match e {
            Event::OrderAccepted {
                account,
                order_id,
                ts,
                request,
            } => {
                let Some(&owner) = self.owners.get(&account) else {
                    return Ok(());
                };
                if matches!(request.quantity, Quantity::Units(_)) {
                    self.insert_order(account, owner, order_id, &request, None, ts)
                        .await?;
                } else {
                    self.sized_at_fill.insert((account, order_id), request);
                }
            }
            Event::OrderRejected {
                account,
                ts,
                reason,
                request,
            } => {
                let Some(&owner) = self.owners.get(&account) else {
                    return Ok(());
                };
                let mut o =
                    NewOrder::from_request(&account_name(owner.strategy_id), None, &request);
                o.instance_id = Some(owner.instance_id);
                o.status = status::REJECTED.into();
                o.reason = Some(reason.clone());
                let stored = store::orders::insert(&self.store, &o).await?;
                self.publish(LiveEvent::Order {
                    strategy_id: owner.strategy_id,
                    order_id: stored.id,
                    symbol: stored.symbol,
                    side: stored.side,
                    quantity: stored.quantity,
                    order_type: stored.order_type,
                    status: stored.status,
                    reason: Some(reason),
                    ts,
                });
            }
            Event::OrderCancelled {
                account,
                order_id,
                ts,
                reason,
            } => {
                self.sized_at_fill.remove(&(account, order_id));
                let (Some(&owner), Some(&id)) = (
                    self.owners.get(&account),
                    self.orders.get(&(account, order_id)),
                ) else {
                    return Ok(());
                };
                match store::orders::cancel(&self.store, id, &reason).await {
                    Ok(o) => self.publish(LiveEvent::Order {
                        strategy_id: owner.strategy_id,
                        order_id: id,
                        symbol: o.symbol,
                        side: o.side,
                        quantity: o.quantity,
                        order_type: o.order_type,
                        status: o.status,
                        reason: Some(reason),
                        ts,
                    }),
                    // Already filled or cancelled: nothing left to cancel.
                    Err(StoreError::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Event::Fill(f) => {
                let Some(&owner) = self.owners.get(&f.account) else {
                    return Ok(());
                };
                let key = (f.account, f.order_id);
                let id = match self.orders.get(&key) {
                    Some(&id) => id,
                    None => {
                        // Sized at fill time, or made by the exchange itself (a bracket's
                        // exit, a liquidation): the order row is the fill's own.
                        let request = self.sized_at_fill.remove(&key).unwrap_or(OrderRequest {
                            symbol: f.symbol.clone(),
                            side: f.side,
                            quantity: Quantity::Units(f.quantity),
                            kind: crate::model::OrderKind::Market,
                            time_in_force: Default::default(),
                            take_profit: None,
                            stop_loss: None,
                            oco_group: None,
                            tag: f.tag.clone().or_else(|| Some("exchange".into())),
                        });
                        self.insert_order(
                            f.account,
                            owner,
                            f.order_id,
                            &request,
                            Some(f.quantity),
                            f.ts,
                        )
                        .await?
                    }
                };
                let stored =
                    store::orders::record_fill(&self.store, id, f.quantity, f.price, f.fee, f.ts)
                        .await?;
                self.publish(LiveEvent::Fill {
                    strategy_id: owner.strategy_id,
                    order_id: id,
                    fill_id: stored.id,
                    position_id: stored.position_id,
                    symbol: f.symbol,
                    side: side_str(f.side).into(),
                    quantity: f.quantity,
                    price: f.price,
                    fee: f.fee,
                    ts: f.ts,
                });
            }
            Event::Position {
                account,
                symbol,
                quantity,
                avg_price,
                ts,
            } => {
                if let Some(owner) = self.owners.get(&account) {
                    self.publish(LiveEvent::Position {
                        strategy_id: owner.strategy_id,
                        symbol,
                        quantity,
                        avg_price,
                        ts,
                    });
                }
            }
            Event::Equity { .. } => {}
            Event::RiskAlert {
                account,
                ts,
                kind,
                message,
            } => {
                let Some(&owner) = self.owners.get(&account) else {
                    return Ok(());
                };
                store::risk::add_alert(
                    &self.store,
                    &account_name(owner.strategy_id),
                    &kind,
                    &message,
                    Some(owner.strategy_id),
                )
                .await?;
                self.publish(LiveEvent::RiskAlert {
                    strategy_id: owner.strategy_id,
                    kind,
                    message,
                    ts,
                });
            }
            Event::StrategyStatus {
                account,
                state,
                reason,
                ..
            } => {
                let Some(&owner) = self.owners.get(&account) else {
                    return Ok(());
                };
                if self.retiring.remove(&account) {
                    return Ok(());
                }
                let status = match state {
                    StrategyState::Running => "enabled",
                    StrategyState::Halted => "halted",
                    StrategyState::Disabled => "failed",
                };
                store::strategies::set_status(
                    &self.store,
                    owner.strategy_id,
                    status,
                    Some(&reason),
                )
                .await?;
                self.publish(LiveEvent::Status {
                    strategy_id: owner.strategy_id,
                    status: status.into(),
                    reason,
                    version: None,
                    pause_us: None,
                });
            }
        }
        Ok(())
    }
}
