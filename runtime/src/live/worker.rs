//! The engine thread: bars and commands in arrival order, one at a time.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, oneshot};

use super::instances::Spec;
use super::record::Record;
use super::{LiveConfig, LiveEvent, LiveInstance, snapshot_every};
use crate::engine::Engine;
use crate::events::{Event, EventSink, StrategyState};
use crate::model::{Bar, LogLevel};
use crate::store::live::Cursor;

/// Shortest time between two equity events of one instance: PnL watchers need a few a second,
/// not one per tick.
const EQUITY_EVERY: Duration = Duration::from_millis(250);

/// Most symbols the engine takes (feeds and strategies add them as they come).
pub(crate) const MAX_SYMBOLS: usize = 100_000;

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
    Halt {
        strategy_id: Option<i64>,
        reason: String,
        reply: oneshot::Sender<Vec<i64>>,
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
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// Forwards engine events to the recorder; never blocks.
struct Forward(Sender<Record>);

impl EventSink for Forward {
    fn publish(&mut self, event: Event) {
        // Totals across accounts mean nothing live (each instance has its own account).
        if matches!(event, Event::Equity { account: None, .. }) {
            return;
        }
        let _ = self.0.send(Record::Engine(event));
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
}

/// Start the engine thread.
pub(crate) fn spawn(
    config: LiveConfig,
    symbols: Vec<String>,
    stored_seq: HashMap<String, u64>,
    commands: Receiver<Command>,
    out: Sender<Record>,
    market: broadcast::Sender<Arc<LiveEvent>>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("qtm-live-engine".into())
        .spawn(move || {
            let mut sink = Forward(out.clone());
            let mut stored_seq = stored_seq;
            let seq = symbols
                .iter()
                .map(|s| stored_seq.remove(s).unwrap_or(0))
                .collect();
            let mut engine = Engine::new(config.engine.clone(), symbols, &mut sink);
            let mut w = Worker {
                running: HashMap::new(),
                seq,
                stored_seq,
                out,
                market,
                clock: 0,
                config,
            };
            w.run(&mut engine, commands);
        })
        .expect("spawning the live engine thread")
}

impl Worker {
    fn run(&mut self, engine: &mut Engine<'_>, commands: Receiver<Command>) {
        let every = snapshot_every(&self.config);
        let mut last_snapshot = Instant::now();
        loop {
            let wait = every.saturating_sub(last_snapshot.elapsed());
            match commands.recv_timeout(wait) {
                Ok(Command::Shutdown { reply }) => {
                    let _ = reply.send(());
                    return;
                }
                Ok(c) => self.handle(engine, c),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if last_snapshot.elapsed() >= every {
                self.snapshot_all(engine);
                last_snapshot = Instant::now();
            }
        }
    }

    fn handle(&mut self, engine: &mut Engine<'_>, c: Command) {
        match c {
            Command::Bars(bars) => self.bars(engine, bars),
            Command::Start {
                spec,
                cash,
                positions,
                state,
                replay,
                reply,
            } => {
                let _ = reply.send(self.start(engine, *spec, cash, &positions, state, &replay));
            }
            Command::Stop {
                strategy_id,
                reason,
                reply,
            } => {
                let _ = reply.send(self.stop(engine, strategy_id, &reason));
            }
            Command::Swap { spec, reply } => {
                let _ = reply.send(self.swap(engine, *spec));
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
                let mut halted = Vec::new();
                for id in ids {
                    let account = self.running[&id].account;
                    if *engine.state(account) == StrategyState::Running {
                        engine.halt(account, &reason, self.clock);
                        halted.push(id);
                    }
                }
                halted.sort_unstable();
                let _ = reply.send(halted);
            }
            Command::Status { reply } => {
                let mut list: Vec<LiveInstance> = self
                    .running
                    .iter()
                    .map(|(&id, r)| status(engine, id, r))
                    .collect();
                list.sort_by_key(|i| i.strategy_id);
                let _ = reply.send(list);
            }
            Command::SnapshotAll { reply } => {
                self.snapshot_all(engine);
                let _ = reply.send(());
            }
            Command::Flush { reply } => {
                let (tx, rx) = oneshot::channel();
                let _ = self.out.send(Record::Flush(tx));
                let _ = reply.send(rx);
            }
            Command::Shutdown { reply } => {
                let _ = reply.send(());
            }
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

    fn bars(&mut self, engine: &mut Engine<'_>, bars: Vec<(String, Bar)>) {
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
        if self.running.contains_key(&spec.strategy_id) {
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
        for r in self.running.values() {
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

fn status(engine: &mut Engine<'_>, strategy_id: i64, r: &Running) -> LiveInstance {
    let (state, reason) = match engine.state(r.account) {
        StrategyState::Running => ("running", None),
        StrategyState::Halted => ("halted", None),
        StrategyState::Disabled => ("disabled", None),
    };
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
    }
}
