//! The recorder: stores what the engine did, then broadcasts it (bars, market data rather than
//! state, are broadcast by the engine thread itself). It runs on its own thread
//! and takes records in the engine's order, so an order row exists before its fills, and a
//! symbol's cursor moves only after the effects of its bars are stored. Everything taken from
//! the channel at once is written in one transaction, so a burst of fills costs one commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};

use tokio::sync::broadcast;
use tokio::sync::oneshot;

use super::instances::account as account_name;
use super::manual::{self, ManualIndex, ManualRecord, OnExchange, Reply};
use super::{LiveError, LiveEvent};
use qtm_core::events::{Event, StrategyState};
use qtm_core::model::{Bar, LogLevel, OrderRequest, Quantity, Side};
use qtm_store::live::Cursor;
use qtm_store::orders::{AccountId, NewOrder, Order, OrderStatus};
use qtm_store::writer::Writer;
use qtm_store::{self as store, Store, StoreError};

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
    /// The account-wide risk state to carry across a restart.
    AccountRisk(qtm_oms::oms::SavedGuard),
    /// The account's own loss limits halted it: stored as the kill switch is.
    AccountHalted(String),
    /// Every bar up to these is handled; `bars` are those bars, for the journal.
    Done {
        cursors: Vec<(String, Cursor)>,
        bars: Vec<(String, u64, Bar)>,
    },
    /// Journalled bars up to these sequence numbers are needed by no running instance.
    Prune {
        upto: Vec<(String, u64)>,
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
        /// The last sequence number it saw of each of its symbols.
        seqs: Vec<(String, u64)>,
    },
    Status {
        strategy_id: i64,
        status: String,
        reason: String,
        version: Option<i64>,
        pause_us: Option<f64>,
    },
    Flush(oneshot::Sender<()>),
    /// About the manual account: its orders placed, cancelled and changed through the API.
    Manual(ManualRecord),
}

#[derive(Clone, Copy)]
struct Owner {
    strategy_id: i64,
    instance_id: i64,
}

/// What an order event says about the order, kept for its cancel.
struct OrderView {
    symbol: String,
    side: Side,
    quantity: f64,
    order_type: store::orders::OrderType,
}

struct Recorder {
    store: Store,
    /// The recorder's own write connection.
    db: Writer,
    /// For the store's async functions.
    rt: tokio::runtime::Handle,
    events: broadcast::Sender<Arc<LiveEvent>>,
    owners: HashMap<usize, Owner>,
    retiring: std::collections::HashSet<usize>,
    /// Engine (account, order id) → stored order id and what it was.
    orders: HashMap<(usize, u64), (i64, OrderView)>,
    /// Orders sized as a fraction of equity: stored at their first fill, when their units are
    /// known.
    sized_at_fill: HashMap<(usize, u64), OrderRequest>,
    cursors: HashMap<String, Cursor>,
    /// Bars handled and not journalled yet (they go with the cursors).
    journal: Vec<(String, u64, Bar)>,
    /// Journal entries of this run, oldest first: id and newest sequence number per symbol.
    journalled: std::collections::VecDeque<(i64, HashMap<String, u64>)>,
    /// The newest journal entry of the previous run and the cursors it had stored.
    journal_before: Option<(i64, HashMap<String, u64>)>,
    /// Events of the records in the open batch: published once it is committed.
    pending: Vec<LiveEvent>,
    flushes: Vec<oneshot::Sender<()>>,
    /// Refused orders and their risk alerts kept per instance and second.
    refusals: Refusals,
    /// The manual accounts' orders.
    manual: ManualBook,
    /// Callers waiting for an order row of the open batch, with the order's place on the
    /// exchange: answered once it is committed.
    answers: Vec<(Reply, Order, Option<u64>)>,
}

/// The manual accounts as the recorder books them.
#[derive(Default)]
struct ManualBook {
    /// Engine account → manual account, as the engine opened them.
    accounts: HashMap<usize, AccountId>,
    /// Their working orders by exchange id (unique across accounts), as stored.
    orders: HashMap<u64, Order>,
    /// Stored id → exchange id, shared with the engine thread.
    index: ManualIndex,
    /// The stored id and placer of the order that filled last (the exits of a bracket are
    /// its placer's; a one-cancels-other cancel names it).
    last_fill: Option<(i64, Option<i64>)>,
}

impl ManualBook {
    /// Work `order` as exchange order `exchange_id`.
    fn track(&mut self, exchange_id: u64, order: Order) {
        self.index.insert(
            order.id,
            OnExchange {
                exchange_id,
                filled_before: order.filled_qty,
            },
        );
        self.orders.insert(exchange_id, order);
    }

    /// Stop working exchange order `exchange_id`.
    fn untrack(&mut self, exchange_id: u64) -> Option<Order> {
        let o = self.orders.remove(&exchange_id)?;
        self.index.remove(o.id);
        Some(o)
    }
}

/// Refused orders (and the risk alerts they raise) stored per instance and kind in one
/// second; past it they are counted, and the count is stored as one alert when the second
/// is over. A strategy can have thousands of orders refused a bar, and storing each took the
/// recorder's thread (and the core it shares with the engine) for seconds after the strategy
/// had been stopped.
const REFUSALS_PER_SEC: u32 = 20;

/// The window of [`REFUSALS_PER_SEC`].
const REFUSAL_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

/// One instance's refusals of one kind in the current window.
struct RefusalWindow {
    start: std::time::Instant,
    kept: u32,
    dropped: u64,
    /// The last refusal not kept: reason and bar time.
    last: String,
    last_ts: i64,
}

impl RefusalWindow {
    fn new(start: std::time::Instant) -> Self {
        RefusalWindow {
            start,
            kept: 0,
            dropped: 0,
            last: String::new(),
            last_ts: 0,
        }
    }
}

/// A count of refusals not stored: account, kind, how many, the last reason and bar time.
type Dropped = (usize, &'static str, u64, String, i64);

/// Per (account, kind) windows of [`REFUSALS_PER_SEC`].
#[derive(Default)]
struct Refusals(HashMap<(usize, &'static str), RefusalWindow>);

impl Refusals {
    /// Whether to store this refusal; counts it otherwise.
    fn admit(&mut self, account: usize, kind: &'static str, reason: &str, ts: i64) -> bool {
        let now = std::time::Instant::now();
        let w = self
            .0
            .entry((account, kind))
            .or_insert_with(|| RefusalWindow::new(now));
        if now.duration_since(w.start) >= REFUSAL_WINDOW && w.dropped == 0 {
            *w = RefusalWindow::new(now);
        }
        if w.kept < REFUSALS_PER_SEC && w.dropped == 0 {
            w.kept += 1;
            return true;
        }
        w.dropped += 1;
        w.last_ts = ts;
        if w.last.is_empty() || w.dropped.is_multiple_of(1024) {
            w.last = reason.chars().take(200).collect();
        }
        false
    }

    /// The counts of windows that are over (all of them with `all`), taken out.
    fn due(&mut self, all: bool) -> Vec<Dropped> {
        let now = std::time::Instant::now();
        let mut out = Vec::new();
        for (&(account, kind), w) in self.0.iter_mut() {
            if w.dropped > 0 && (all || now.duration_since(w.start) >= REFUSAL_WINDOW) {
                out.push((
                    account,
                    kind,
                    w.dropped,
                    std::mem::take(&mut w.last),
                    w.last_ts,
                ));
                *w = RefusalWindow::new(now);
            }
        }
        out
    }
}

/// Records until the engine thread is gone. Runs on its own thread: it writes through a
/// synchronous connection, and reaches the async store (alerts, status changes) through `rt`.
pub(crate) fn run(
    store: Store,
    records: Receiver<Record>,
    events: broadcast::Sender<Arc<LiveEvent>>,
    rt: tokio::runtime::Handle,
    journal_before: Option<(i64, HashMap<String, u64>)>,
    manual_index: ManualIndex,
) {
    let (db, _checkpoints) = match Writer::open_without_checkpoints(&store) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "live recorder: the store cannot be opened for writing; nothing the live engine does is stored");
            return;
        }
    };
    let mut r = Recorder {
        store,
        db,
        rt,
        events,
        owners: HashMap::new(),
        retiring: Default::default(),
        orders: HashMap::new(),
        sized_at_fill: HashMap::new(),
        cursors: HashMap::new(),
        journal: Vec::new(),
        journalled: Default::default(),
        journal_before,
        pending: Vec::new(),
        flushes: Vec::new(),
        refusals: Refusals::default(),
        manual: ManualBook {
            index: manual_index,
            ..Default::default()
        },
        answers: Vec::new(),
    };
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // When cursors first waited uncommitted (see below).
    let mut cursors_since: Option<std::time::Instant> = None;
    loop {
        let first = match cursors_since {
            None => records.recv().ok(),
            Some(t) => match records.recv_timeout(CURSOR_DELAY.saturating_sub(t.elapsed())) {
                Ok(next) => Some(next),
                Err(RecvTimeoutError::Timeout) => {
                    r.commit();
                    cursors_since = None;
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => None,
            },
        };
        let Some(first) = first else { break };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match records.try_recv() {
                Ok(rec) => batch.push(rec),
                Err(_) => break,
            }
        }
        r.prefetch(&batch);
        for rec in batch.drain(..) {
            if let Err(e) = r.record(rec) {
                tracing::error!(error = %e, "live recorder: storing an engine event failed");
            }
        }
        r.store_refusal_counts(false);
        // Bars that caused no order, fill or snapshot leave only their cursors to store, and
        // a commit per millisecond batch of those cost most of the recorder's time. Such
        // cursors wait (at most CURSOR_DELAY) for the next batch that writes: should the
        // process die first, the bars after the stored cursor are replayed, and they had no
        // stored effects to repeat. What they published (equity, logs) is not stored either,
        // so it goes out at once.
        let must_commit = r.db.in_transaction()
            || !r.flushes.is_empty()
            || !r.answers.is_empty()
            || cursors_since.is_some_and(|t| t.elapsed() >= CURSOR_DELAY);
        if must_commit {
            r.commit();
            cursors_since = None;
        } else {
            r.publish_pending();
            if !r.cursors.is_empty() && cursors_since.is_none() {
                cursors_since = Some(std::time::Instant::now());
            }
        }
    }
    r.store_refusal_counts(true);
    r.commit();
}

/// Longest time a bar's cursor waits uncommitted when its bar wrote nothing else.
const CURSOR_DELAY: std::time::Duration = std::time::Duration::from_millis(20);

/// Most records stored in one transaction.
const MAX_BATCH: usize = 4096;

impl Recorder {
    fn publish(&mut self, e: LiveEvent) {
        self.pending.push(e);
    }

    /// Read at once the stored orders the batch fills or cancels and the open positions of
    /// the accounts it fills, so booking them costs no read each ([`Writer::prefetch`]).
    fn prefetch(&mut self, batch: &[Record]) {
        let mut orders = Vec::new();
        let mut accounts = Vec::new();
        for rec in batch {
            let (account, order_id, fills) = match rec {
                Record::Engine(Event::Fill(f)) => (f.account, f.order_id, true),
                Record::Engine(Event::OrderCancelled {
                    account, order_id, ..
                }) => (*account, *order_id, false),
                _ => continue,
            };
            if let Some((id, _)) = self.orders.get(&(account, order_id)) {
                orders.push(*id);
            }
            if fills && let Some(owner) = self.owners.get(&account) {
                accounts.push(account_name(owner.strategy_id));
            }
        }
        if orders.is_empty() && accounts.is_empty() {
            return;
        }
        if let Err(e) = self.db.prefetch(&orders, &accounts) {
            tracing::warn!(error = %e, "live recorder: reading the batch's orders failed; they are read one by one");
        }
    }

    /// Store the cursors, commit, then publish what was stored and answer flushes.
    fn commit(&mut self) {
        let cursors: Vec<(String, Cursor)> = self.cursors.drain().collect();
        let stored = self
            .save_journal()
            .and_then(|()| self.db.save_cursors(&cursors))
            .and_then(|()| self.db.commit());
        let failed = stored.as_ref().err().map(ToString::to_string);
        if let Err(e) = stored {
            tracing::error!(error = %e, "live recorder: committing a batch failed");
        }
        let mut unstored = Vec::new();
        for (reply, order, exchange_id) in std::mem::take(&mut self.answers) {
            let _ = reply.send(match &failed {
                None => Ok(order),
                Some(e) => {
                    if let Some(x) = exchange_id {
                        self.manual.untrack(x);
                        unstored.push(x);
                    }
                    Err(LiveError::NotStored(e.clone()))
                }
            });
        }
        // Nothing the store does not know of may fill: the engine thread takes these off
        // the exchange before it handles its next bars.
        self.manual.index.drop_unstored(unstored);
        self.publish_pending();
        for f in self.flushes.drain(..) {
            let _ = f.send(());
        }
    }

    /// Write the bars handled since the last journal entry as one entry (in the open batch).
    fn save_journal(&mut self) -> Result<(), StoreError> {
        if self.journal.is_empty() {
            return Ok(());
        }
        let mut newest: HashMap<String, u64> = HashMap::new();
        for (s, seq, _) in &self.journal {
            newest.insert(s.clone(), *seq);
        }
        let r = self.db.save_bars(&self.journal);
        self.journal.clear();
        self.journalled.push_back((r?, newest));
        Ok(())
    }

    /// Delete the journal entries whose bars every running instance's snapshot has seen
    /// (`upto`: per symbol, the oldest sequence number a snapshot has seen).
    fn prune_journal(&mut self, upto: HashMap<String, u64>) -> Result<(), StoreError> {
        let covered = |newest: &HashMap<String, u64>| {
            newest
                .iter()
                .all(|(s, q)| upto.get(s).is_some_and(|u| u >= q))
        };
        let mut last = None;
        // Entries of the previous run hold bars up to the cursors it stored.
        if let Some((id, cursors)) = &self.journal_before
            && covered(cursors)
        {
            last = Some(*id);
            self.journal_before = None;
        }
        while let Some((id, newest)) = self.journalled.front() {
            if !covered(newest) {
                break;
            }
            last = Some(*id);
            self.journalled.pop_front();
        }
        match last {
            Some(id) => self.db.prune_bars(id),
            None => Ok(()),
        }
    }

    fn publish_pending(&mut self) {
        for e in self.pending.drain(..) {
            let _ = self.events.send(Arc::new(e));
        }
    }

    /// Run one of the store's own async writes (alerts, status changes) between two batches:
    /// the open batch commits first, since it holds the write lock the write needs (the next
    /// write of the recorder opens the next transaction).
    /// Store, as one alert each, the refusals not stored in windows that are over.
    fn store_refusal_counts(&mut self, all: bool) {
        for (account, kind, n, last, ts) in self.refusals.due(all) {
            let Some(&owner) = self.owners.get(&account) else {
                continue;
            };
            let what = if kind == "rejected" {
                "refused orders"
            } else {
                "risk alerts for refused orders"
            };
            let message = format!(
                "{n} {what} not stored (more than {REFUSALS_PER_SEC} a second); the last: {last}"
            );
            let store = self.store.clone();
            let name = account_name(owner.strategy_id).text();
            let stored = self.outside_batch(store::risk::add_alert(
                &store,
                &name,
                "refusals_not_stored",
                &message,
                Some(owner.strategy_id),
            ));
            if let Err(e) = stored {
                tracing::error!(error = %e, "live recorder: storing a refusal count failed");
            }
            self.publish(LiveEvent::RiskAlert {
                strategy_id: owner.strategy_id,
                kind: "refusals_not_stored".into(),
                message,
                ts,
            });
        }
    }

    fn outside_batch<T>(
        &mut self,
        write: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.commit();
        self.rt.block_on(write)
    }

    fn record(&mut self, rec: Record) -> Result<(), StoreError> {
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
            Record::Done { cursors, bars } => {
                self.cursors.extend(cursors);
                self.journal.extend(bars);
            }
            Record::Prune { upto } => {
                // Bars still waiting to be journalled are newer than any snapshot stored.
                self.save_journal()?;
                self.prune_journal(upto.into_iter().collect())?;
            }
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
                seqs,
            } => {
                // The bars it saw are journalled with it.
                self.save_journal()?;
                self.db.save_snapshot(strategy_id, &state, ts, &seqs)?
            }
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
            Record::AccountRisk(saved) => {
                let store = self.store.clone();
                self.outside_batch(async move {
                    store::settings::set(
                        &store,
                        store::settings::ACCOUNT_RISK,
                        &serde_json::to_string(&saved).unwrap_or_default(),
                    )
                    .await
                })?;
            }
            Record::AccountHalted(reason) => {
                let store = self.store.clone();
                let (halt, alert) = self.outside_batch(async move {
                    let halt =
                        store::risk::halt(&store, store::risk::ACCOUNT, &reason, None).await?;
                    let alert = store::risk::add_alert(
                        &store,
                        store::risk::ACCOUNT,
                        "kill_switch",
                        &reason,
                        None,
                    )
                    .await?;
                    Ok::<_, StoreError>((halt, alert))
                })?;
                self.publish(LiveEvent::KillSwitch { halt, alert });
            }
            Record::Flush(done) => self.flushes.push(done),
            Record::Manual(m) => self.manual_record(m)?,
            Record::Engine(e)
                if let Some(&account) =
                    event_account(&e).and_then(|a| self.manual.accounts.get(&a)) =>
            {
                self.manual_event(account, e)?
            }
            Record::Engine(e) => self.engine_event(e)?,
        }
        Ok(())
    }

    /// Store an order of `owner` (units given for orders sized at fill time) and announce it.
    #[allow(clippy::too_many_arguments)]
    fn insert_order(
        &mut self,
        account: usize,
        owner: Owner,
        order_id: u64,
        request: &OrderRequest,
        units: Option<f64>,
        ts: i64,
    ) -> Result<i64, StoreError> {
        let mut o = NewOrder::from_request(account_name(owner.strategy_id), None, request);
        o.instance_id = Some(owner.instance_id);
        if let Some(u) = units {
            o.quantity = u;
        }
        let id = self.db.insert_order(&o)?;
        let view = OrderView {
            symbol: o.symbol,
            side: o.side,
            quantity: o.quantity,
            order_type: o.order_type,
        };
        self.publish(LiveEvent::Order {
            strategy_id: owner.strategy_id,
            order_id: id,
            symbol: view.symbol.clone(),
            side: view.side,
            quantity: view.quantity,
            order_type: view.order_type,
            status: o.status,
            reason: None,
            ts,
        });
        self.orders.insert((account, order_id), (id, view));
        Ok(id)
    }

    fn manual_record(&mut self, m: ManualRecord) -> Result<(), StoreError> {
        match m {
            ManualRecord::Account { engine, account } => {
                self.manual.accounts.insert(engine, account);
            }
            ManualRecord::Resumed { exchange_id, order } => {
                self.manual.track(exchange_id, *order);
            }
            ManualRecord::Placed {
                exchange_id,
                row,
                reply,
            } => match self.db.insert_order(&row) {
                Ok(id) => {
                    let order = manual::stored(id, &row, store::now());
                    if let Some(x) = exchange_id {
                        self.manual.track(x, order.clone());
                    }
                    self.answers.push((reply, order, exchange_id));
                }
                Err(e) => {
                    let _ = reply.send(Err(LiveError::NotStored(e.to_string())));
                    return Err(e);
                }
            },
            ManualRecord::Cancel { id, reason, reply } => {
                if let Some(at) = self.manual.index.get(id) {
                    self.manual.untrack(at.exchange_id);
                }
                // The store's answer: `NotFound`, or `Conflict` when it is not working.
                let store = self.store.clone();
                let done = self.outside_batch(async move {
                    Ok(store::orders::cancel(&store, id, &reason).await)
                })?;
                let _ = reply.send(done.map_err(LiveError::Store));
            }
            ManualRecord::Modify { id, change, reply } => {
                let store = self.store.clone();
                let done = self.outside_batch(async move {
                    Ok(store::orders::modify(
                        &store,
                        id,
                        change.quantity,
                        change.limit_price,
                        change.stop_price,
                    )
                    .await)
                })?;
                if let Ok(o) = &done
                    && let Some(at) = self.manual.index.get(id)
                    && let Some(kept) = self.manual.orders.get_mut(&at.exchange_id)
                {
                    *kept = o.clone();
                }
                let _ = reply.send(done.map(Ok).map_err(LiveError::Store));
            }
            ManualRecord::Exits {
                account,
                orders: exits,
            } => {
                let user =
                    manual::user_of(account).or_else(|| self.manual.last_fill.and_then(|(_, u)| u));
                for o in exits {
                    let row = NewOrder::from_request(account, user, &o.request);
                    let id = match self.db.insert_order(&row) {
                        Ok(id) => id,
                        Err(e) => {
                            tracing::error!(error = %e, "storing a bracket exit");
                            continue;
                        }
                    };
                    let order = manual::stored(id, &row, store::now());
                    if let Some(g) = o.request.oco_group.clone() {
                        // Linked again after a restart by its group.
                        let store = self.store.clone();
                        let linked = self.outside_batch(async move {
                            store::orders::set_oco_group(&store, id, &g).await
                        });
                        if let Err(e) = linked {
                            tracing::warn!(order = id, error = %e, "storing an exit's OCO group");
                        }
                    }
                    self.manual.track(o.id, order.clone());
                    self.publish(LiveEvent::OrderAccepted { order });
                }
            }
        }
        Ok(())
    }

    /// What the engine did with the manual account's orders: fills booked and published as
    /// [`LiveEvent::OrderFilled`], cancels (expiry, one-cancels-other, buying power, the kill
    /// switch) as [`LiveEvent::OrderCancelled`].
    fn manual_event(&mut self, account: AccountId, e: Event) -> Result<(), StoreError> {
        match e {
            Event::Fill(f) => {
                let order = match self.manual.orders.get(&f.order_id) {
                    Some(o) => o.clone(),
                    None => {
                        // Made by the exchange itself and filled at once: its own row.
                        let mut r = OrderRequest::market(
                            f.symbol.clone(),
                            f.side,
                            Quantity::Units(f.quantity),
                        );
                        r.tag = f.tag.clone().or_else(|| Some("exchange".into()));
                        let row = NewOrder::from_request(account, manual::user_of(account), &r);
                        let id = self.db.insert_order(&row)?;
                        manual::stored(id, &row, store::now())
                    }
                };
                let fill = match self
                    .db
                    .record_fill(order.id, f.quantity, f.price, f.fee, f.ts)
                {
                    Ok(fill) => fill,
                    Err(e) => {
                        // The store refused (the order is no longer working): stop booking it.
                        tracing::error!(order = order.id, error = %e, "live recorder: a manual fill could not be booked");
                        self.manual.untrack(f.order_id);
                        return Ok(());
                    }
                };
                let mut order = order;
                manual::after_fill(&mut order, f.quantity, f.price, store::now());
                if order.is_working() {
                    if let Some(kept) = self.manual.orders.get_mut(&f.order_id) {
                        *kept = order.clone();
                    }
                } else {
                    self.manual.untrack(f.order_id);
                }
                self.manual.last_fill = Some((order.id, order.user_id));
                self.publish(LiveEvent::OrderFilled { order, fill });
            }
            Event::OrderCancelled {
                order_id, reason, ..
            } => {
                let Some(mut order) = self.manual.untrack(order_id) else {
                    return Ok(());
                };
                let reason = match self.manual.last_fill {
                    Some((id, _)) if reason.starts_with("OCO:") => {
                        format!("one-cancels-other: order {id} filled")
                    }
                    _ => reason,
                };
                if self.db.cancel_order(order.id, &reason)? {
                    order.status = OrderStatus::Cancelled;
                    order.reason = Some(reason);
                    order.updated_at = store::now();
                    self.publish(LiveEvent::OrderCancelled { order });
                }
            }
            Event::Position {
                symbol,
                quantity,
                avg_price,
                ts,
                ..
            } => self.publish(LiveEvent::ManualPosition {
                account,
                symbol,
                quantity,
                avg_price,
                ts,
            }),
            Event::RiskAlert { kind, message, .. } => {
                let store = self.store.clone();
                let alert = self.outside_batch(async move {
                    store::risk::add_alert(&store, &account.text(), &kind, &message, None).await
                })?;
                self.publish(LiveEvent::ManualAlert { alert });
            }
            // Its equity is read from the store; it has no strategy whose status could change.
            _ => {}
        }
        Ok(())
    }

    fn engine_event(&mut self, e: Event) -> Result<(), StoreError> {
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
                    self.insert_order(account, owner, order_id, &request, None, ts)?;
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
                if !self.refusals.admit(account, "rejected", &reason, ts) {
                    return Ok(());
                }
                let mut o = NewOrder::from_request(account_name(owner.strategy_id), None, &request);
                o.instance_id = Some(owner.instance_id);
                o.status = OrderStatus::Rejected;
                o.reason = Some(reason.clone());
                let id = self.db.insert_order(&o)?;
                self.publish(LiveEvent::Order {
                    strategy_id: owner.strategy_id,
                    order_id: id,
                    symbol: o.symbol,
                    side: o.side,
                    quantity: o.quantity,
                    order_type: o.order_type,
                    status: o.status,
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
                let Some(&owner) = self.owners.get(&account) else {
                    return Ok(());
                };
                let Some((id, view)) = self.orders.remove(&(account, order_id)) else {
                    return Ok(());
                };
                // Already filled or cancelled: nothing left to cancel, nothing to say.
                if self.db.cancel_order(id, &reason)? {
                    self.publish(LiveEvent::Order {
                        strategy_id: owner.strategy_id,
                        order_id: id,
                        symbol: view.symbol,
                        side: view.side,
                        quantity: view.quantity,
                        order_type: view.order_type,
                        status: OrderStatus::Cancelled,
                        reason: Some(reason),
                        ts,
                    });
                }
            }
            Event::Fill(f) => {
                let Some(&owner) = self.owners.get(&f.account) else {
                    return Ok(());
                };
                let key = (f.account, f.order_id);
                let id = match self.orders.get(&key) {
                    Some((id, _)) => *id,
                    None => {
                        // Sized at fill time, or made by the exchange itself (a bracket's
                        // exit, a liquidation): the order row is the fill's own.
                        let request = self.sized_at_fill.remove(&key).unwrap_or(OrderRequest {
                            symbol: f.symbol.clone(),
                            side: f.side,
                            quantity: Quantity::Units(f.quantity),
                            kind: qtm_core::model::OrderKind::Market,
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
                        )?
                    }
                };
                let stored = self.db.record_fill(id, f.quantity, f.price, f.fee, f.ts)?;
                self.publish(LiveEvent::Fill {
                    strategy_id: owner.strategy_id,
                    order_id: id,
                    fill_id: stored.id,
                    position_id: stored.position_id,
                    symbol: f.symbol,
                    side: f.side,
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
                if let Some(&owner) = self.owners.get(&account) {
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
                if kind == "order_rejected" && !self.refusals.admit(account, "alert", &message, ts)
                {
                    return Ok(());
                }
                let store = self.store.clone();
                let account = account_name(owner.strategy_id).text();
                self.outside_batch(store::risk::add_alert(
                    &store,
                    &account,
                    &kind,
                    &message,
                    Some(owner.strategy_id),
                ))?;
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
                let store = self.store.clone();
                self.outside_batch(store::strategies::set_status(
                    &store,
                    owner.strategy_id,
                    status,
                    Some(&reason),
                ))?;
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

/// The engine account an event is about, if any.
fn event_account(e: &Event) -> Option<usize> {
    match e {
        Event::OrderAccepted { account, .. }
        | Event::OrderRejected { account, .. }
        | Event::OrderCancelled { account, .. }
        | Event::Position { account, .. }
        | Event::RiskAlert { account, .. }
        | Event::StrategyStatus { account, .. } => Some(*account),
        Event::Fill(f) => Some(f.account),
        Event::Equity { account, .. } => *account,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_past_the_rate_are_counted_not_stored() {
        let mut r = Refusals::default();
        let kept = (0..1000)
            .filter(|i| r.admit(3, "rejected", &format!("risk: refusal {i}"), 100 + i))
            .count();
        assert_eq!(kept, REFUSALS_PER_SEC as usize);
        // Another instance, and another kind, have their own allowance.
        assert!(r.admit(4, "rejected", "risk: x", 1));
        assert!(r.admit(3, "alert", "x", 1));
        // Within the second nothing is due; at the end, the count with the first reason
        // not stored and the last bar time.
        assert!(r.due(false).is_empty());
        let due = r.due(true);
        assert_eq!(
            due,
            [(3, "rejected", 980, "risk: refusal 20".to_string(), 1099)]
        );
        assert!(r.due(true).is_empty());
    }
}
