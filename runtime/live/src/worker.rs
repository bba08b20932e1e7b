//! The engine thread: bars and commands in arrival order, one at a time.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, oneshot};

use super::cpu::{CpuCaps, CpuMeter, over_cap_reason};
use super::instances::Spec;
use super::manual::{
    ManualChange, ManualIndex, ManualOrder, ManualRecord, ManualSetup, ModifyReply, OnExchange,
    Reply,
};
use super::marks::Marks;
use super::record::Record;
use super::{LiveConfig, LiveEvent, LiveInstance, snapshot_every};
use qtm_core::events::{Event, EventSink, StrategyState};
use qtm_core::model::{Bar, LogLevel};
use qtm_engine::{Engine, KILL_SWITCH_CANCEL};
use qtm_oms::oms::SavedGuard;
use qtm_oms::risk::RiskLimits;
use qtm_store::StoreError;
use qtm_store::live::Cursor;
use qtm_store::orders::{AccountId, NewOrder, OrderStatus};

/// Shortest time between two equity events of one instance: PnL watchers need a few a second,
/// not one per tick.
const EQUITY_EVERY: Duration = Duration::from_millis(250);

/// Most symbols the engine takes (feeds and strategies add them as they come).
pub(crate) const MAX_SYMBOLS: usize = 100_000;

/// Longest the idle engine thread waits for work before it stamps its heartbeat again: well
/// under the 2 s after which `GET /health` says the engine is stuck.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(250);

/// How long a chunk of a batch of bars should take. Between chunks the thread stamps its
/// heartbeat, applies the CPU share caps and notices a shutdown, so a batch of 10,000 bars
/// meeting a slow strategy does not hold it for minutes.
const CHUNK_TARGET: Duration = Duration::from_millis(10);

/// Most bars in a chunk (a cheap batch is handled in chunks this big). It also bounds the
/// first chunk after bars became slow (a slow instance enabled): 64 of its calls.
const CHUNK_MAX: usize = 64;

/// The instance list the handles read is rebuilt at least this often while nobody reads it
/// (a figure of every instance costs a few hundred nanoseconds; 10,000 instances, a few ms)…
const LIST_EVERY: Duration = Duration::from_secs(1);

/// …and this often while someone does.
const LIST_FRESH: Duration = Duration::from_millis(100);

/// What the engine thread shares with the handles, read without a round trip through its
/// command queue: a GET must not wait behind a backlog of bars.
pub(crate) struct Control {
    /// Set when the server stops: bars still queued are dropped, new work is refused.
    stopping: AtomicBool,
    /// Set when the thread has returned.
    exited: AtomicBool,
    /// The engine's time origin (heartbeat, CPU windows).
    origin: Instant,
    /// Milliseconds from `origin` to the thread's last loop turn or chunk of bars.
    heartbeat_ms: AtomicU64,
    caps: RwLock<CpuCaps>,
    /// The instances as of the thread's last refresh.
    instances: RwLock<Arc<Vec<LiveInstance>>>,
    /// A reader took the list since the last refresh: refresh it more often.
    wanted: AtomicBool,
    /// The last price of every symbol, as of the last chunk of bars handled.
    marks: Marks,
}

impl Control {
    pub(crate) fn new(caps: CpuCaps) -> Self {
        Self {
            stopping: AtomicBool::new(false),
            exited: AtomicBool::new(false),
            origin: Instant::now(),
            heartbeat_ms: AtomicU64::new(0),
            caps: RwLock::new(caps),
            instances: RwLock::new(Arc::new(Vec::new())),
            wanted: AtomicBool::new(false),
            marks: Marks::default(),
        }
    }

    /// The live marks, updated as bars are handled.
    pub(crate) fn marks(&self) -> &Marks {
        &self.marks
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn beat(&self) {
        self.heartbeat_ms
            .store(self.now().as_millis() as u64, Ordering::Relaxed);
    }

    /// Time since the thread's last heartbeat; `None` once it has returned.
    pub(crate) fn heartbeat_age(&self) -> Option<Duration> {
        if self.exited.load(Ordering::Acquire) {
            return None;
        }
        let beat = Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed));
        Some(self.now().saturating_sub(beat))
    }

    pub(crate) fn begin_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub(crate) fn caps(&self) -> CpuCaps {
        self.caps
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_caps(&self, caps: CpuCaps) {
        *self.caps.write().unwrap_or_else(PoisonError::into_inner) = caps;
    }

    /// The instance list as last published by the thread.
    pub(crate) fn instances(&self) -> Arc<Vec<LiveInstance>> {
        self.wanted.store(true, Ordering::Relaxed);
        self.instances
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// How an instance starts.
pub(crate) enum StartState {
    Fresh,
    /// From a stored snapshot (a restart).
    Restore(Vec<u8>),
    /// From the state of this running strategy now (a clone).
    CloneOf(i64),
}

/// What the engine thread is asked to do.
pub(crate) enum Command {
    Bars(Vec<(String, Bar)>),
    Start {
        spec: Box<Spec>,
        cash: f64,
        positions: Vec<(String, f64, f64)>,
        state: StartState,
        /// Bars it saw after its snapshot, replayed to it (orders held back) before it trades.
        replay: Vec<(String, Bar)>,
        reply: oneshot::Sender<Result<(), super::LiveError>>,
    },
    Stop {
        strategy_id: i64,
        reason: String,
        reply: oneshot::Sender<Result<(), super::LiveError>>,
    },
    /// Replies with the old version number and the pause, or why the swap failed.
    Swap {
        spec: Box<Spec>,
        reply: oneshot::Sender<Result<(i64, Duration), String>>,
    },
    /// Halt one instance, or with `None` the whole account (its kill switch: every running
    /// instance halts and every order is refused until [`Command::ResumeAccount`]).
    Halt {
        strategy_id: Option<i64>,
        reason: String,
        reply: oneshot::Sender<Vec<i64>>,
    },
    /// Release the account's kill switch; replies with the reason it had.
    ResumeAccount {
        reply: oneshot::Sender<Option<String>>,
    },
    /// Put account-wide limits in force from the next order on.
    SetAccountLimits {
        limits: RiskLimits,
        /// Times of the orders in the new rate window.
        window: Vec<i64>,
        reply: oneshot::Sender<()>,
    },
    /// Admit a manual order and, if it passes, put it on the exchange; the recorder stores
    /// it (accepted or rejected) and replies with the stored row.
    PlaceManual {
        order: Box<ManualOrder>,
        reply: Reply,
    },
    /// Cancel a manual order: off the exchange, then cancelled in the store by the recorder.
    CancelManual {
        id: i64,
        reason: String,
        reply: Reply,
    },
    /// Change a working manual order, judged again first: `Ok(Err(reason))` when refused
    /// (nothing changes), else the stored row after the change.
    ModifyManual {
        change: Box<ManualChange>,
        reply: ModifyReply,
    },
    Status {
        reply: oneshot::Sender<Vec<LiveInstance>>,
    },
    SnapshotAll {
        reply: oneshot::Sender<()>,
    },
    /// Replies with a receiver that fires once the recorder has stored everything before it.
    Flush {
        reply: oneshot::Sender<oneshot::Receiver<()>>,
    },
    /// Snapshot every running instance and stop; replies with a receiver that fires once the
    /// recorder has stored everything before it.
    Shutdown {
        reply: oneshot::Sender<oneshot::Receiver<()>>,
    },
}

/// Why accounts stopped (trap, kill switch, halt, CPU cap), as the engine said it.
#[derive(Default)]
struct Stops {
    reasons: HashMap<usize, String>,
    /// A stop since the instance list was last published.
    changed: bool,
}

/// Forwards engine events to the recorder; never blocks.
struct Forward {
    out: Sender<Record>,
    stops: Rc<RefCell<Stops>>,
}

impl EventSink for Forward {
    fn publish(&mut self, event: Event) {
        // Totals across accounts mean nothing live (each instance has its own account).
        if matches!(event, Event::Equity { account: None, .. }) {
            return;
        }
        if let Event::StrategyStatus {
            account,
            state,
            reason,
            ..
        } = &event
            && *state != StrategyState::Running
        {
            let mut stops = self.stops.borrow_mut();
            stops.reasons.insert(*account, reason.clone());
            stops.changed = true;
        }
        let _ = self.out.send(Record::Engine(event));
    }
}

/// A strategy running live.
struct Running {
    account: usize,
    instance_id: i64,
    version: i64,
    symbols: Vec<String>,
    /// Engine symbol ids of `symbols`.
    ids: Vec<usize>,
    bars: u64,
    /// When its equity was last published (the `pnl` stream is throttled per instance).
    equity_at: Option<Instant>,
    /// Per symbol of `ids`, the sequence number its stored snapshot has seen (journalled bars
    /// after it are kept).
    snapshot_seqs: Vec<u64>,
    /// Log lines its account's ring had let go when last drained.
    logs_dropped: u64,
    /// Its use of the engine thread, for the CPU share cap.
    cpu: CpuMeter,
}

struct Worker {
    running: HashMap<i64, Running>,
    /// Per engine symbol: sequence number of the last bar.
    seq: Vec<u64>,
    /// Stored sequence numbers of symbols the engine does not have yet.
    stored_seq: HashMap<String, u64>,
    out: Sender<Record>,
    /// Where bars go out at once: market data is not state the recorder stores (the
    /// cursor is), so it does not queue behind the recorder's writes.
    market: broadcast::Sender<Arc<LiveEvent>>,
    /// Time of the newest bar seen (the engine's clock for commands between bars).
    clock: i64,
    config: LiveConfig,
    control: Arc<Control>,
    stops: Rc<RefCell<Stops>>,
    /// Bars in the next chunk of a batch (adapted to how long bars take).
    chunk: usize,
    /// The instance list changed (started, stopped, swapped): publish it at once.
    dirty: bool,
    /// When the instance list was last published.
    listed_at: Instant,
    /// Bars dropped unhandled because the engine was stopping.
    dropped: usize,
    /// The manual accounts.
    manual: Manual,
}

/// The manual accounts as the engine thread sees them.
struct Manual {
    /// Their working orders by stored id (kept by the recorder).
    index: ManualIndex,
    /// Each account opened on the engine so far.
    accounts: HashMap<AccountId, ManualAccount>,
}

/// One manual account on the engine.
struct ManualAccount {
    /// Its engine account.
    engine: usize,
    /// Exchange ids of its resting orders the recorder knows of: an id not among them is an
    /// order the exchange made (a bracket's exit), to be stored.
    known: std::collections::HashSet<u64>,
}

impl Manual {
    /// The account holding exchange order `exchange_id`, if it still rests.
    fn holding(&mut self, exchange_id: u64) -> Option<&mut ManualAccount> {
        self.accounts
            .values_mut()
            .find(|a| a.known.contains(&exchange_id))
    }
}

/// The account-wide risk the engine thread starts with.
pub(crate) struct AccountSetup {
    /// The limits in force.
    pub limits: RiskLimits,
    /// The state the previous run left.
    pub saved: SavedGuard,
    /// The manual accounts' cash, positions and working orders.
    pub manual: ManualSetup,
    /// Where the manual accounts' working orders are on the exchange.
    pub manual_index: ManualIndex,
}

/// Where the engine thread's work comes from and goes to.
pub(crate) struct Channels {
    /// Bars and commands, in arrival order.
    pub commands: Receiver<Command>,
    /// To the recorder.
    pub out: Sender<Record>,
    /// Bars, broadcast at once.
    pub market: broadcast::Sender<Arc<LiveEvent>>,
}

/// Start the engine thread.
pub(crate) fn spawn(
    config: LiveConfig,
    symbols: Vec<String>,
    stored_seq: HashMap<String, u64>,
    channels: Channels,
    control: Arc<Control>,
    account: AccountSetup,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let Channels {
        commands,
        out,
        market,
    } = channels;
    std::thread::Builder::new()
        .name("qtm-live-engine".into())
        .spawn(move || {
            let stops: Rc<RefCell<Stops>> = Default::default();
            let mut sink = Forward {
                out: out.clone(),
                stops: stops.clone(),
            };
            let mut stored_seq = stored_seq;
            let seq = symbols
                .iter()
                .map(|s| stored_seq.remove(s).unwrap_or(0))
                .collect();
            let mut engine = Engine::new(config.engine.clone(), symbols, &mut sink);
            engine.guard_mut().set_limits(&account.limits);
            engine.guard_mut().restore(account.saved);
            let setup = account.manual;
            let mut w = Worker {
                running: HashMap::new(),
                seq,
                stored_seq,
                out,
                market,
                clock: 0,
                config,
                control: control.clone(),
                stops,
                // The first chunk measures the pace.
                chunk: 1,
                dirty: true,
                listed_at: Instant::now(),
                dropped: 0,
                manual: Manual {
                    index: account.manual_index,
                    accounts: HashMap::new(),
                },
            };
            if let Err(e) = w.resume_manual(&mut engine, setup) {
                tracing::error!(error = %e, "the manual accounts' limits are invalid; the live engine does not start");
                control.exited.store(true, Ordering::Release);
                return;
            }
            w.run(&mut engine, commands);
            control.exited.store(true, Ordering::Release);
        })
}

impl Worker {
    fn run(&mut self, engine: &mut Engine<'_>, commands: Receiver<Command>) {
        let every = snapshot_every(&self.config);
        let mut last_snapshot = Instant::now();
        loop {
            self.control.beat();
            self.publish_list(engine);
            let wait = every
                .saturating_sub(last_snapshot.elapsed())
                .min(HEARTBEAT_EVERY);
            match commands.recv_timeout(wait) {
                Ok(Command::Shutdown { reply }) => {
                    self.shut_down(engine, reply);
                    return;
                }
                Ok(c) if self.control.stopping() => self.handle_stopping(engine, c),
                Ok(c) => {
                    self.drop_unstored(engine);
                    self.handle(engine, c);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if last_snapshot.elapsed() >= every && !self.control.stopping() {
                self.snapshot_all(engine);
                last_snapshot = Instant::now();
            }
        }
    }

    /// Take off the exchange the manual orders the recorder could not store (their batch
    /// failed to commit), before anything else can fill them.
    fn drop_unstored(&mut self, engine: &mut Engine<'_>) {
        for id in self.manual.index.take_unstored() {
            // Already gone (filled or cancelled on a bar): nothing to take off.
            if let Some(a) = self.manual.holding(id) {
                a.known.remove(&id);
                let _ = engine.cancel_order(a.engine, id);
            }
        }
    }

    /// The last snapshots, then the engine stops: what is still queued behind the shutdown
    /// is answered by the channel closing. The reply fires once the recorder has stored
    /// everything before it.
    fn shut_down(
        &mut self,
        engine: &mut Engine<'_>,
        reply: oneshot::Sender<oneshot::Receiver<()>>,
    ) {
        if self.dropped > 0 {
            tracing::info!(
                bars = self.dropped,
                "live engine stopping: queued bars dropped unhandled (their cursors did not move; the replay feed plays them again after a restart)"
            );
        }
        self.snapshot_all(engine);
        let (tx, rx) = oneshot::channel();
        let _ = self.out.send(Record::Flush(tx));
        let _ = reply.send(rx);
    }

    /// A command that arrives while the engine stops: bars are dropped (their cursors do
    /// not move, so nothing about them was published or stored), new instances and swaps
    /// are refused, the rest is done as usual.
    fn handle_stopping(&mut self, engine: &mut Engine<'_>, c: Command) {
        match c {
            Command::Bars(bars) => self.dropped += bars.len(),
            Command::Start { reply, .. } => {
                let _ = reply.send(Err(super::LiveError::Stopped));
            }
            Command::Swap { reply, .. } => {
                let _ = reply.send(Err("the live engine is stopping".into()));
            }
            other => self.handle(engine, other),
        }
    }

    /// Publish the instance list for the handles when it changed, when it is old, or when
    /// someone reads it and it is a little old.
    fn publish_list(&mut self, engine: &mut Engine<'_>) {
        let age = self.listed_at.elapsed();
        let changed = std::mem::take(&mut self.stops.borrow_mut().changed);
        let due = self.dirty
            || changed
            || age >= LIST_EVERY
            || (age >= LIST_FRESH && self.control.wanted.load(Ordering::Relaxed));
        if !due {
            return;
        }
        let list = Arc::new(self.list(engine));
        *self
            .control
            .instances
            .write()
            .unwrap_or_else(PoisonError::into_inner) = list;
        self.control.wanted.store(false, Ordering::Relaxed);
        self.listed_at = Instant::now();
        self.dirty = false;
    }

    /// Every instance the engine holds, by strategy id.
    fn list(&self, engine: &mut Engine<'_>) -> Vec<LiveInstance> {
        let caps = self.control.caps();
        let now = self.control.now();
        let stops = self.stops.borrow();
        let mut list: Vec<LiveInstance> = self
            .running
            .iter()
            .map(|(&id, r)| status(engine, id, r, &stops, &caps, now))
            .collect();
        list.sort_by_key(|i| i.strategy_id);
        list
    }

    fn handle(&mut self, engine: &mut Engine<'_>, c: Command) {
        engine.guard_mut().set_now(qtm_store::now());
        // Only bars move equity: a halt after them is the account's loss limits firing.
        let watch = matches!(c, Command::Bars(_)) && engine.guard().halted().is_none();
        self.dispatch(engine, c);
        if watch && let Some(reason) = engine.guard().halted() {
            // The account's loss limits fired on these bars: stored as the kill switch is.
            let _ = self.out.send(Record::AccountHalted(reason.to_string()));
            let _ = self.out.send(Record::AccountRisk(engine.guard().save()));
        }
    }

    fn dispatch(&mut self, engine: &mut Engine<'_>, c: Command) {
        match c {
            Command::Bars(bars) => self.bars(engine, bars),
            // Changes to the instances are in the published list before the caller hears
            // back, so a GET right after them sees them.
            Command::Start {
                spec,
                cash,
                positions,
                state,
                replay,
                reply,
            } => {
                let r = self.start(engine, *spec, cash, &positions, state, &replay);
                self.dirty = true;
                self.publish_list(engine);
                let _ = reply.send(r);
            }
            Command::Stop {
                strategy_id,
                reason,
                reply,
            } => {
                let r = self.stop(engine, strategy_id, &reason);
                self.dirty = true;
                self.publish_list(engine);
                let _ = reply.send(r);
            }
            Command::Swap { spec, reply } => {
                let r = self.swap(engine, *spec);
                self.dirty = true;
                self.publish_list(engine);
                let _ = reply.send(r);
            }
            Command::Halt {
                strategy_id,
                reason,
                reply,
            } => {
                let ids: Vec<i64> = match strategy_id {
                    Some(id) => self
                        .running
                        .contains_key(&id)
                        .then_some(id)
                        .into_iter()
                        .collect(),
                    None => self.running.keys().copied().collect(),
                };
                if strategy_id.is_none() {
                    engine.guard_mut().halt(&reason);
                    // The manual accounts are not halted (they have no strategy to stop):
                    // their orders are cancelled, and the guard refuses new ones.
                    for a in self.manual.accounts.values_mut() {
                        engine.cancel_orders(a.engine, KILL_SWITCH_CANCEL, self.clock);
                        a.known.clear();
                    }
                    let _ = self.out.send(Record::AccountRisk(engine.guard().save()));
                }
                let mut halted = Vec::new();
                for id in ids {
                    let account = self.running[&id].account;
                    if *engine.state(account) == StrategyState::Running {
                        engine.halt(account, &reason, self.clock);
                        halted.push(id);
                    }
                }
                halted.sort_unstable();
                self.dirty = true;
                self.publish_list(engine);
                let _ = reply.send(halted);
            }
            Command::ResumeAccount { reply } => {
                let released = engine.guard_mut().resume();
                let _ = self.out.send(Record::AccountRisk(engine.guard().save()));
                let _ = reply.send(released);
            }
            Command::SetAccountLimits {
                limits,
                window,
                reply,
            } => {
                engine.guard_mut().set_limits(&limits);
                engine.guard_mut().set_window(window);
                // New instances, and the manual accounts, take the per-account host bounds
                // of the new set.
                self.config.limits = host_bounds(&limits);
                for a in self.manual.accounts.values() {
                    engine.set_account_limits(a.engine, self.config.limits.clone());
                }
                let _ = reply.send(());
            }
            Command::PlaceManual { order, reply } => self.place_manual(engine, *order, reply),
            Command::CancelManual { id, reason, reply } => {
                if let Some(at) = self.manual.index.get(id)
                    && let Some(a) = self.manual.holding(at.exchange_id)
                {
                    // Gone from the exchange already (filled or cancelled on a bar): the
                    // store says so.
                    a.known.remove(&at.exchange_id);
                    let _ = engine.cancel_order(a.engine, at.exchange_id);
                }
                let _ = self
                    .out
                    .send(Record::Manual(ManualRecord::Cancel { id, reason, reply }));
            }
            Command::ModifyManual { change, reply } => {
                if let Some(refused) = self.modify_manual(engine, &change) {
                    let _ = reply.send(refused);
                    return;
                }
                let ManualChange { id, change, .. } = *change;
                let _ = self
                    .out
                    .send(Record::Manual(ManualRecord::Modify { id, change, reply }));
            }
            Command::Status { reply } => {
                let _ = reply.send(self.list(engine));
            }
            Command::SnapshotAll { reply } => {
                self.snapshot_all(engine);
                let _ = reply.send(());
            }
            Command::Flush { reply } => {
                // What was done so far is in the list too, not only in the store.
                self.dirty = true;
                self.publish_list(engine);
                let (tx, rx) = oneshot::channel();
                let _ = self.out.send(Record::Flush(tx));
                let _ = reply.send(rx);
            }
            Command::Shutdown { reply } => self.shut_down(engine, reply),
        }
    }

    /// The engine id of `symbol`, adding it with its stored sequence number when new.
    fn symbol(&mut self, engine: &mut Engine<'_>, symbol: &str) -> usize {
        let id = engine.add_symbol(symbol);
        if id == self.seq.len() {
            self.seq.push(self.stored_seq.remove(symbol).unwrap_or(0));
        }
        id
    }

    /// A batch of bars, in chunks: after each, the heartbeat, the CPU share caps, the list
    /// for the handles, and whether the engine is stopping (then the rest is dropped
    /// unhandled: nothing about those bars was published, and their cursors do not move).
    fn bars(&mut self, engine: &mut Engine<'_>, bars: Vec<(String, Bar)>) {
        let mut rest = bars.into_iter();
        loop {
            if self.control.stopping() {
                self.dropped += rest.len();
                return;
            }
            let chunk: Vec<(String, Bar)> = rest.by_ref().take(self.chunk).collect();
            if chunk.is_empty() {
                return;
            }
            let n = chunk.len();
            let t0 = Instant::now();
            self.chunk_of_bars(engine, chunk);
            let took = t0.elapsed();
            // The next chunk takes about CHUNK_TARGET at this chunk's pace.
            let per_bar = took.as_secs_f64() / n as f64;
            self.chunk = if per_bar > 0.0 {
                ((CHUNK_TARGET.as_secs_f64() / per_bar) as usize).clamp(1, CHUNK_MAX)
            } else {
                CHUNK_MAX
            };
            self.control.beat();
            self.publish_list(engine);
        }
    }

    fn chunk_of_bars(&mut self, engine: &mut Engine<'_>, bars: Vec<(String, Bar)>) {
        self.control
            .marks
            .update(bars.iter().map(|(s, b)| (s.as_str(), b)));
        let mut batch = Vec::with_capacity(bars.len());
        let mut last: HashMap<usize, (u64, Bar)> = HashMap::new();
        let mut journal = Vec::with_capacity(bars.len());
        for (symbol, bar) in bars {
            let id = self.symbol(engine, &symbol);
            self.seq[id] += 1;
            let seq = self.seq[id];
            journal.push((symbol.clone(), seq, bar));
            let _ = self
                .market
                .send(Arc::new(LiveEvent::Bar { symbol, seq, bar }));
            last.insert(id, (seq, bar));
            batch.push((id, bar));
            self.clock = self.clock.max(bar.ts);
        }
        engine.process(&batch);
        self.adopt_exits(engine);
        let control = self.control.clone();
        let caps = control.caps.read().unwrap_or_else(PoisonError::into_inner);
        let now = control.now();
        let mut over = Vec::new();
        for (&id, r) in self.running.iter_mut() {
            let touched = r.ids.iter().filter(|s| last.contains_key(s)).count();
            if touched == 0 {
                continue;
            }
            r.bars += batch.iter().filter(|(s, _)| r.ids.contains(s)).count() as u64;
            for (ts, level, message) in engine.take_logs(r.account) {
                let _ = self.out.send(Record::Log {
                    strategy_id: id,
                    ts,
                    level,
                    message,
                });
            }
            // Lines are drained after every batch, so only a batch in which the strategy
            // logged more than the ring holds loses any: say so where its lines are read.
            let dropped = engine.logs(r.account).dropped();
            if dropped > r.logs_dropped {
                let _ = self.out.send(Record::Log {
                    strategy_id: id,
                    ts: self.clock,
                    level: LogLevel::Warn,
                    message: format!(
                        "{} log lines not kept: more than {} in one batch of bars",
                        dropped - r.logs_dropped,
                        engine.logs(r.account).capacity()
                    ),
                });
                r.logs_dropped = dropped;
            }
            let share = r.cpu.record(engine.busy_ns(r.account), now, caps.window);
            let cap = caps.cap_of(r.instance_id);
            if share > cap && *engine.state(r.account) == StrategyState::Running {
                over.push((id, over_cap_reason(share, cap, caps.window)));
            }
            if r.equity_at.is_some_and(|t| t.elapsed() < EQUITY_EVERY) {
                continue;
            }
            r.equity_at = Some(Instant::now());
            let book = engine.portfolio(r.account);
            let _ = self.out.send(Record::Equity {
                strategy_id: id,
                ts: self.clock,
                equity: book.equity(),
                cash: book.cash(),
            });
        }
        drop(caps);
        // Over its cap, an instance is disabled as a trap disables it: its orders are
        // cancelled, and the reason is stored with its status and published.
        for (id, reason) in over {
            if let Some(r) = self.running.get(&id) {
                tracing::warn!(strategy = id, %reason, "live instance disabled");
                engine.retire(r.account, &reason, self.clock);
            }
        }
        let cursors = last
            .into_iter()
            .map(|(id, (seq, bar))| {
                (
                    engine.symbols()[id].clone(),
                    Cursor {
                        seq: seq as i64,
                        ts: bar.ts,
                        close: bar.close,
                    },
                )
            })
            .collect();
        let _ = self.out.send(Record::Done {
            cursors,
            bars: journal,
        });
    }

    /// The engine account of manual account `account`, opened with `cash` (announced to the
    /// recorder) on its first use.
    fn manual_account(
        &mut self,
        engine: &mut Engine<'_>,
        account: AccountId,
        cash: f64,
    ) -> Result<usize, String> {
        if let Some(a) = self.manual.accounts.get(&account) {
            return Ok(a.engine);
        }
        let id = engine
            .add_external_account(&account.text(), cash, self.config.limits.clone())
            .map_err(|e| e.to_string())?;
        self.manual.accounts.insert(
            account,
            ManualAccount {
                engine: id,
                known: Default::default(),
            },
        );
        let _ = self.out.send(Record::Manual(ManualRecord::Account {
            engine: id,
            account,
        }));
        Ok(id)
    }

    /// Open each stored manual account with its cash and positions and put its working
    /// orders on the exchange again.
    fn resume_manual(&mut self, engine: &mut Engine<'_>, setup: ManualSetup) -> Result<(), String> {
        self.clock = self.clock.max(setup.clock);
        for stored in setup.accounts {
            // Carried positions: start with the cash they cost, then book them at their price.
            let carried: f64 = stored.positions.iter().map(|(_, q, p, _)| q * p).sum();
            let account = self.manual_account(engine, stored.account, stored.cash + carried)?;
            for (s, q, p, mark) in &stored.positions {
                let id = self.symbol(engine, s);
                let book = engine.portfolio_mut(account);
                book.apply_fill(id, *q, *p, 0.0, self.clock);
                book.set_mark(id, *mark);
            }
            let n = stored.orders.len();
            for (order, request) in stored.orders {
                self.symbol(engine, &request.symbol);
                let exchange_id = engine.submit_external(account, request, self.clock);
                self.manual.index.insert(
                    order.id,
                    OnExchange {
                        exchange_id,
                        filled_before: order.filled_qty,
                    },
                );
                if let Some(a) = self.manual.accounts.get_mut(&stored.account) {
                    a.known.insert(exchange_id);
                }
                let _ = self.out.send(Record::Manual(ManualRecord::Resumed {
                    exchange_id,
                    order: Box::new(order),
                }));
            }
            if n > 0 {
                tracing::info!(account = %stored.account, orders = n, "manual account: working orders resumed");
            }
        }
        Ok(())
    }

    /// Admit a manual order and put it on the exchange, or refuse it; the recorder stores
    /// it either way and answers.
    fn place_manual(&mut self, engine: &mut Engine<'_>, order: ManualOrder, reply: Reply) {
        self.symbol(engine, &order.request.symbol);
        let mut row = NewOrder::from_request(order.account, order.user_id, &order.request);
        let placed = self
            .manual_account(engine, order.account, self.config.initial_cash)
            .and_then(|account| {
                engine
                    .place_external(account, order.request, order.last_price, self.clock)
                    .map(|id| (account, id))
            });
        let exchange_id = match placed {
            Ok((_, id)) => {
                if let Some(a) = self.manual.accounts.get_mut(&order.account) {
                    a.known.insert(id);
                }
                Some(id)
            }
            Err(reason) => {
                row.status = OrderStatus::Rejected;
                row.reason = Some(reason);
                None
            }
        };
        let _ = self.out.send(Record::Manual(ManualRecord::Placed {
            exchange_id,
            row: Box::new(row),
            reply,
        }));
    }

    /// Judge a change to a manual order and make it on the exchange; the answer when it
    /// cannot be made (refused, or the exchange would not), `None` when it is made.
    fn modify_manual(
        &mut self,
        engine: &mut Engine<'_>,
        c: &ManualChange,
    ) -> Option<Result<Result<qtm_store::orders::Order, String>, super::LiveError>> {
        let account = match self.manual_account(engine, c.account, self.config.initial_cash) {
            Ok(a) => a,
            Err(reason) => return Some(Ok(Err(reason))),
        };
        let at = self.manual.index.get(c.id);
        if let Err(reason) = engine.judge_external(
            account,
            &c.symbol,
            &c.order,
            at.map(|a| a.exchange_id),
            self.clock,
        ) {
            return Some(Ok(Err(reason)));
        }
        let at = at?;
        let on_exchange = qtm_core::model::OrderChange {
            quantity: c.change.quantity.map(|q| q - at.filled_before),
            ..c.change
        };
        match engine.modify_order(account, at.exchange_id, on_exchange) {
            Ok(()) => None,
            Err(e) => Some(Err(super::LiveError::Store(StoreError::Conflict(format!(
                "order {}: {e}",
                c.id
            ))))),
        }
    }

    /// Hand the recorder the orders the exchange made for the manual accounts on the last
    /// bars (a filled bracket's exits), so they are stored as working orders of their own.
    fn adopt_exits(&mut self, engine: &mut Engine<'_>) {
        for (&account, a) in &mut self.manual.accounts {
            if a.known.is_empty() && engine.open_count(a.engine) == 0 {
                continue;
            }
            let open = engine.open_orders(a.engine);
            let ids: std::collections::HashSet<u64> = open.iter().map(|o| o.id).collect();
            // Ids leave the set with their orders; exchange ids are never reused.
            a.known.retain(|id| ids.contains(id));
            let new: Vec<_> = open
                .into_iter()
                .filter(|o| !a.known.contains(&o.id))
                .collect();
            if new.is_empty() {
                continue;
            }
            a.known.extend(new.iter().map(|o| o.id));
            let _ = self.out.send(Record::Manual(ManualRecord::Exits {
                account,
                orders: new,
            }));
        }
    }

    fn start(
        &mut self,
        engine: &mut Engine<'_>,
        mut spec: Spec,
        cash: f64,
        positions: &[(String, f64, f64)],
        state: StartState,
        replay: &[(String, Bar)],
    ) -> Result<(), super::LiveError> {
        use super::LiveError;
        // A stopped one (trapped, over its CPU cap, halted) starts again: its old account
        // stays retired in the engine, and the new one takes its place here.
        if let Some(r) = self.running.get(&spec.strategy_id)
            && *engine.state(r.account) == StrategyState::Running
        {
            return Err(LiveError::AlreadyRunning(spec.strategy_id));
        }
        if self.seq.len() + spec.symbols.len() > MAX_SYMBOLS {
            return Err(LiveError::Refused(format!(
                "the live engine trades at most {MAX_SYMBOLS} symbols"
            )));
        }
        let ids: Vec<usize> = spec
            .symbols
            .iter()
            .map(|s| self.symbol(engine, s))
            .collect();
        match state {
            StartState::Fresh => {}
            StartState::Restore(bytes) => spec
                .runner
                .restore(&bytes)
                .map_err(|e| LiveError::Refused(format!("restoring the last snapshot: {e}")))?,
            StartState::CloneOf(source) => {
                let r = self
                    .running
                    .get(&source)
                    .ok_or(LiveError::NotRunning(source))?;
                let bytes = engine.runner_mut(r.account).snapshot().map_err(|e| {
                    LiveError::Refused(format!("snapshot of strategy {source}: {e}"))
                })?;
                spec.runner.restore(&bytes).map_err(|e| {
                    LiveError::Refused(format!("restoring strategy {source}'s state: {e}"))
                })?;
            }
        }
        // Carried positions: start with the cash they cost, then book them at their price.
        let carried: f64 = positions.iter().map(|(_, q, p)| q * p).sum();
        let account = engine
            .add_strategy(
                &spec.name,
                spec.runner,
                &spec.symbols,
                cash + carried,
                self.config.limits.clone(),
            )
            .map_err(LiveError::Refused)?;
        for (s, q, p) in positions {
            if let Some(id) = engine.symbol_id(s) {
                let book = engine.portfolio_mut(account);
                book.apply_fill(id, *q, *p, 0.0, self.clock);
                book.set_mark(id, *p);
            }
        }
        if !replay.is_empty() {
            let bars: Vec<(usize, Bar)> = replay
                .iter()
                .filter_map(|(s, b)| engine.symbol_id(s).map(|id| (id, *b)))
                .collect();
            if let Err(e) = engine.replay(account, &bars) {
                engine.retire(account, &e, self.clock);
                return Err(LiveError::Refused(format!(
                    "replaying the {} bars it had seen since its snapshot: {e}",
                    bars.len()
                )));
            }
        }
        let _ = self.out.send(Record::Registered {
            account,
            strategy_id: spec.strategy_id,
            instance_id: spec.instance_id,
        });
        let _ = self.out.send(Record::Status {
            strategy_id: spec.strategy_id,
            status: "running".into(),
            reason: format!("version {} started", spec.version),
            version: Some(spec.version),
            pause_us: None,
        });
        self.running.insert(
            spec.strategy_id,
            Running {
                account,
                instance_id: spec.instance_id,
                version: spec.version,
                symbols: spec.symbols,
                ids,
                bars: 0,
                equity_at: None,
                snapshot_seqs: Vec::new(),
                logs_dropped: engine.logs(account).dropped(),
                // Its restore and replay ran outside the bars: they are not held against it.
                cpu: CpuMeter::starting_at(engine.busy_ns(account)),
            },
        );
        // Its state now, so a crash before the first periodic snapshot replays from here.
        self.snapshot_one(engine, spec.strategy_id);
        Ok(())
    }

    /// Snapshot one running instance to the store, with the sequence numbers it has seen.
    fn snapshot_one(&mut self, engine: &mut Engine<'_>, strategy_id: i64) {
        let Some(r) = self.running.get(&strategy_id) else {
            return;
        };
        if let Ok(state) = engine.runner_mut(r.account).snapshot() {
            self.store_snapshot(strategy_id, state);
        }
    }

    /// Send a running instance's `state` to the store with the sequence numbers it has seen,
    /// and remember them (the journal keeps the bars after them).
    fn store_snapshot(&mut self, strategy_id: i64, state: Vec<u8>) {
        let Some(r) = self.running.get_mut(&strategy_id) else {
            return;
        };
        r.snapshot_seqs = r.ids.iter().map(|&i| self.seq[i]).collect();
        let seqs = r
            .symbols
            .iter()
            .cloned()
            .zip(r.snapshot_seqs.iter().copied())
            .collect();
        let _ = self.out.send(Record::Snapshot {
            strategy_id,
            state,
            ts: self.clock,
            seqs,
        });
    }

    fn stop(
        &mut self,
        engine: &mut Engine<'_>,
        strategy_id: i64,
        reason: &str,
    ) -> Result<(), super::LiveError> {
        if !self.running.contains_key(&strategy_id) {
            return Err(super::LiveError::NotRunning(strategy_id));
        }
        self.snapshot_one(engine, strategy_id);
        let r = self
            .running
            .remove(&strategy_id)
            .ok_or(super::LiveError::NotRunning(strategy_id))?;
        let _ = self.out.send(Record::Retiring { account: r.account });
        engine.retire(r.account, reason, self.clock);
        let _ = self.out.send(Record::Status {
            strategy_id,
            status: "stopped".into(),
            reason: reason.to_string(),
            version: Some(r.version),
            pause_us: None,
        });
        Ok(())
    }

    fn swap(&mut self, engine: &mut Engine<'_>, mut spec: Spec) -> Result<(i64, Duration), String> {
        let r = self
            .running
            .get_mut(&spec.strategy_id)
            .ok_or_else(|| format!("strategy {} is not running live", spec.strategy_id))?;
        if *engine.state(r.account) != StrategyState::Running {
            return Err(format!(
                "strategy {} is stopped ({:?}); enable it again instead of swapping",
                spec.strategy_id,
                engine.state(r.account)
            ));
        }
        let t0 = Instant::now();
        let state = engine
            .runner_mut(r.account)
            .snapshot()
            .map_err(|e| format!("snapshot of the running version: {e}"))?;
        spec.runner
            .restore(&state)
            .map_err(|e| format!("the new version refused the running state: {e}"))?;
        let old = engine.replace_runner(r.account, spec.runner);
        let pause = t0.elapsed();
        let from = r.version;
        r.version = spec.version;
        drop(old);
        self.store_snapshot(spec.strategy_id, state);
        let _ = self.out.send(Record::Status {
            strategy_id: spec.strategy_id,
            status: "swapped".into(),
            reason: format!("version {from} → {}", spec.version),
            version: Some(spec.version),
            pause_us: Some(pause.as_secs_f64() * 1e6),
        });
        Ok((from, pause))
    }

    /// Snapshot every running instance, then let the journal drop the bars that every
    /// instance's stored snapshot has seen.
    fn snapshot_all(&mut self, engine: &mut Engine<'_>) {
        let _ = self.out.send(Record::AccountRisk(engine.guard().save()));
        let ids: Vec<i64> = self
            .running
            .iter()
            .filter(|(_, r)| *engine.state(r.account) == StrategyState::Running)
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            self.snapshot_one(engine, id);
        }
        let mut upto = self.seq.clone();
        // A stopped instance does not resume after a restart (only enabled ones do), so it
        // needs no journalled bars.
        for r in self
            .running
            .values()
            .filter(|r| *engine.state(r.account) == StrategyState::Running)
        {
            for (k, &i) in r.ids.iter().enumerate() {
                let seen = r.snapshot_seqs.get(k).copied().unwrap_or(0);
                upto[i] = upto[i].min(seen);
            }
        }
        let mut upto: Vec<(String, u64)> = upto
            .into_iter()
            .enumerate()
            .filter(|(_, q)| *q > 0)
            .map(|(i, q)| (engine.symbols()[i].clone(), q))
            .collect();
        // Symbols of the previous run the engine has not met again: no instance holds them.
        upto.extend(self.stored_seq.iter().map(|(s, q)| (s.clone(), *q)));
        let _ = self.out.send(Record::Prune { upto });
    }
}

fn status(
    engine: &mut Engine<'_>,
    strategy_id: i64,
    r: &Running,
    stops: &Stops,
    caps: &CpuCaps,
    now: Duration,
) -> LiveInstance {
    let state = match engine.state(r.account) {
        StrategyState::Running => "running",
        StrategyState::Halted => "halted",
        StrategyState::Disabled => "disabled",
    };
    let reason = (state != "running")
        .then(|| stops.reasons.get(&r.account).cloned())
        .flatten();
    let stats = engine.runner_mut(r.account).stats().unwrap_or_default();
    let book = engine.portfolio(r.account);
    LiveInstance {
        strategy_id,
        instance_id: r.instance_id,
        version: r.version,
        symbols: r.symbols.clone(),
        state: state.into(),
        reason,
        equity: book.equity(),
        cash: book.cash(),
        bars: r.bars,
        calls: stats.calls,
        fuel: stats.fuel,
        traps: stats.traps,
        orders: stats.orders,
        cpu_share_pct: r.cpu.share(now, caps.window) * 100.0,
        cpu_share_cap_pct: caps.cap_of(r.instance_id) * 100.0,
    }
}

/// The per-account bounds on the host's work of an account-wide set of limits: what each
/// instance's own account applies (the trading limits are the account guard's).
pub fn host_bounds(limits: &RiskLimits) -> RiskLimits {
    RiskLimits {
        max_resting_orders: limits.max_resting_orders,
        max_oco_orders: limits.max_oco_orders,
        ..RiskLimits::default()
    }
}
