//! Backtest jobs: a queue that runs at most one backtest per core, each on a blocking thread,
//! under a time limit, cancellable while queued or running, reporting throttled progress.
//!
//! The queue knows nothing of where a job's bars or strategy come from, nor of who watches it:
//! a job is a future that prepares the run once a slot is free (reading stored history,
//! fetching the component), and its life is a stream of [`JobEvent`]s that the caller stores
//! or streams (the server records them and publishes them to its clients).

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};

use super::{BacktestConfig, BacktestError, BacktestOutcome, DataSource, RunOptions, TimeLimit};
use qtm_engine::StrategyRunner;

/// Shortest time between two progress events of one job.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Builds a job's strategy on the run's own thread (compiling and instantiating a component
/// take CPU): its name and its runner.
pub type MakeStrategy =
    Box<dyn FnOnce() -> Result<(String, Box<dyn StrategyRunner>), String> + Send>;

/// A run, ready to go.
pub struct Prepared {
    /// The bars, one source per symbol.
    pub sources: Vec<DataSource>,
    /// Settings of the run.
    pub config: BacktestConfig,
    /// The strategy.
    pub strategy: MakeStrategy,
}

/// What a job does once a slot is free to get its run ready; `Err` fails the job with that
/// text.
pub type Prepare = Pin<Box<dyn Future<Output = Result<Prepared, String>> + Send>>;

/// Why a job ended without an outcome.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    /// [`JobQueue::cancel`] was called for it.
    #[error("cancelled")]
    Cancelled,
    /// It ran past the queue's time limit.
    #[error("timed out: {0}")]
    TimedOut(String),
    /// Its preparation or its run failed; the text says why.
    #[error("{0}")]
    Failed(String),
}

/// A job's life, in order: `Started`, any number of `Progress`, then `Finished` (a job
/// cancelled while queued goes straight to `Finished`).
#[derive(Debug)]
pub enum JobEvent {
    /// It holds a slot and its run begins, over this many bars when they can be counted.
    Started {
        /// Bars of all sources, if known.
        bars_total: Option<u64>,
    },
    /// Bars handled so far (at most one event per [`PROGRESS_EVERY`]).
    Progress {
        /// Bars handled.
        bars_done: u64,
    },
    /// It ended.
    Finished(Result<Box<BacktestOutcome>, JobError>),
}

/// The queue (see the module docs). Shared by `Arc`.
pub struct JobQueue {
    slots: Arc<Semaphore>,
    flags: Mutex<HashMap<i64, Arc<CancelFlag>>>,
    time_limit: Option<TimeLimit>,
}

/// A job's cancel request: the flag its run polls between strategy calls, and a wake-up for
/// the job while it waits for a slot.
#[derive(Default)]
struct CancelFlag {
    raised: Arc<AtomicBool>,
    wake: tokio::sync::Notify,
}

impl JobQueue {
    /// A queue running at most `parallel` jobs at once, each stopped past `time_limit`.
    pub fn new(parallel: usize, time_limit: Option<TimeLimit>) -> Arc<JobQueue> {
        Arc::new(JobQueue {
            slots: Arc::new(Semaphore::new(parallel.max(1))),
            flags: Mutex::default(),
            time_limit,
        })
    }

    /// A queue running one job per core.
    pub fn per_core(time_limit: Option<TimeLimit>) -> Arc<JobQueue> {
        Self::new(
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            time_limit,
        )
    }

    /// Queue job `id` (the caller's id, unique among queued and running jobs); its events
    /// arrive on the receiver. Must be called within a tokio runtime.
    pub fn submit(
        self: &Arc<Self>,
        id: i64,
        prepare: Prepare,
    ) -> mpsc::UnboundedReceiver<JobEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = Arc::new(CancelFlag::default());
        self.lock().insert(id, cancel.clone());
        let queue = self.clone();
        tokio::spawn(async move {
            let end = queue.run(cancel, prepare, &tx).await;
            queue.lock().remove(&id);
            let _ = tx.send(JobEvent::Finished(end));
        });
        rx
    }

    async fn run(
        &self,
        cancel: Arc<CancelFlag>,
        prepare: Prepare,
        tx: &mpsc::UnboundedSender<JobEvent>,
    ) -> Result<Box<BacktestOutcome>, JobError> {
        let cancelled = || cancel.raised.load(Ordering::Relaxed);
        // A job cancelled while it waits leaves the queue at once.
        let permit = tokio::select! {
            p = self.slots.clone().acquire_owned() => p,
            () = cancel.wake.notified() => return Err(JobError::Cancelled),
        };
        let Ok(_permit) = permit else {
            return Err(JobError::Failed("the backtest queue has closed".into()));
        };
        if cancelled() {
            return Err(JobError::Cancelled);
        }
        let Prepared {
            sources,
            config,
            strategy,
        } = prepare.await.map_err(JobError::Failed)?;
        if cancelled() {
            return Err(JobError::Cancelled);
        }
        let counted: Vec<_> = sources
            .iter()
            .map(|s| (s.path().map(Path::to_path_buf), s.len_known()))
            .collect();
        let bars_total = tokio::task::spawn_blocking(move || {
            counted
                .iter()
                .map(|(path, known)| known.or_else(|| path.as_deref().and_then(count_rows)))
                .sum::<Option<u64>>()
        })
        .await
        .ok()
        .flatten();
        let _ = tx.send(JobEvent::Started { bars_total });
        let time_limit = self.time_limit.clone();
        let progress_tx = tx.clone();
        let run_cancel = cancel.raised.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let (name, runner) = strategy().map_err(JobError::Failed)?;
            let mut last: Option<Instant> = None;
            let mut progress = |n: u64| {
                if last.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY) {
                    last = Some(Instant::now());
                    let _ = progress_tx.send(JobEvent::Progress { bars_done: n });
                }
            };
            let options = RunOptions {
                progress: Some(&mut progress),
                time_limit,
                cancel: Some(run_cancel),
                ..Default::default()
            };
            super::run_with(&name, runner, &sources, &config, options).map_err(|e| match e {
                BacktestError::TimedOut { .. } => JobError::TimedOut(e.to_string()),
                BacktestError::Cancelled { .. } => JobError::Cancelled,
                e => JobError::Failed(e.to_string()),
            })
        })
        .await
        .map_err(|e| JobError::Failed(format!("the backtest crashed: {e}")))??;
        // A cancel that came while the run was finishing still wins: its caller has been told.
        if cancelled() {
            return Err(JobError::Cancelled);
        }
        Ok(Box::new(outcome))
    }

    /// Cancel job `id` if it is queued or running: it stops before its strategy's next call
    /// and finishes as [`JobError::Cancelled`]. Returns whether it was found.
    pub fn cancel(&self, id: i64) -> bool {
        match self.lock().get(&id) {
            Some(flag) => {
                flag.raised.store(true, Ordering::Relaxed);
                flag.wake.notify_one();
                true
            }
            None => false,
        }
    }

    /// Jobs queued or running.
    pub fn active(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Arc<CancelFlag>>> {
        // The map stays consistent whatever a panicking holder did: every operation is one
        // insert, remove or load.
        self.flags.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Bars in a CSV file (its lines after the header), for progress totals.
fn count_rows(path: &Path) -> Option<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut buf = vec![0u8; 1 << 16];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buf[n - 1];
    }
    if last != b'\n' {
        lines += 1;
    }
    Some(lines.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use qtm_core::model::Bar;

    /// A strategy that does nothing, slowly enough to be cancelled or timed out.
    struct Idle {
        sleep: Duration,
    }

    impl StrategyRunner for Idle {
        fn on_bar(
            &mut self,
            _: &mut dyn qtm_core::strategy::StrategyHost,
            _: u32,
            _: &Bar,
        ) -> Result<(), String> {
            std::thread::sleep(self.sleep);
            Ok(())
        }

        fn on_fill(
            &mut self,
            _: &mut dyn qtm_core::strategy::StrategyHost,
            _: u32,
            _: &qtm_core::model::Fill,
        ) -> Result<(), String> {
            Ok(())
        }
    }

    fn bars(n: usize) -> Vec<Bar> {
        (0..n)
            .map(|i| Bar {
                ts: 60 * (i as i64 + 1),
                open: 100.0,
                high: 101.0,
                low: 99.0,
                close: 100.0,
                volume: 10.0,
            })
            .collect()
    }

    fn job(n: usize, sleep: Duration) -> Prepare {
        Box::pin(async move {
            Ok(Prepared {
                sources: vec![DataSource::series("X", bars(n))],
                config: BacktestConfig {
                    chunk: 1,
                    ..BacktestConfig::default()
                },
                strategy: Box::new(move || {
                    Ok((
                        "idle".to_string(),
                        Box::new(Idle { sleep }) as Box<dyn StrategyRunner>,
                    ))
                }),
            })
        })
    }

    async fn events(mut rx: mpsc::UnboundedReceiver<JobEvent>) -> Vec<JobEvent> {
        let mut out = Vec::new();
        while let Some(e) = rx.recv().await {
            out.push(e);
        }
        out
    }

    #[tokio::test]
    async fn a_job_reports_start_and_its_outcome() {
        let q = JobQueue::new(1, None);
        let all = events(q.submit(1, job(50, Duration::ZERO))).await;
        assert!(matches!(
            all[0],
            JobEvent::Started {
                bars_total: Some(50)
            }
        ));
        match all.last() {
            Some(JobEvent::Finished(Ok(o))) => assert_eq!(o.bars, 50),
            other => panic!("{other:?}"),
        }
        assert_eq!(q.active(), 0);
        assert!(!q.cancel(1), "a finished job is gone");
    }

    #[tokio::test]
    async fn a_queued_job_cancelled_never_starts_and_a_running_one_stops() {
        let q = JobQueue::new(1, None);
        let running = q.submit(1, job(10_000, Duration::from_millis(1)));
        let queued = q.submit(2, job(10, Duration::ZERO));
        assert_eq!(q.active(), 2);
        assert!(q.cancel(2));
        let queued = events(queued).await;
        assert!(
            matches!(&queued[..], [JobEvent::Finished(Err(JobError::Cancelled))]),
            "{queued:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(q.cancel(1));
        let ran = events(running).await;
        assert!(matches!(ran[0], JobEvent::Started { .. }));
        assert!(
            matches!(
                ran.last(),
                Some(JobEvent::Finished(Err(JobError::Cancelled)))
            ),
            "{ran:?}"
        );
    }

    #[tokio::test]
    async fn a_job_past_the_time_limit_fails_as_timed_out_naming_the_setting() {
        let limit = TimeLimit {
            limit: Duration::from_millis(50),
            setting: "the server's backtest_timeout_secs".into(),
        };
        let q = JobQueue::new(2, Some(limit));
        let all = events(q.submit(7, job(100_000, Duration::from_millis(1)))).await;
        match all.last() {
            Some(JobEvent::Finished(Err(JobError::TimedOut(m)))) => {
                assert!(m.contains("backtest_timeout_secs"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rows_are_counted_without_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(
            &p,
            "ts,open,high,low,close,volume\n1,1,1,1,1,1\n2,1,1,1,1,1",
        )
        .unwrap();
        assert_eq!(count_rows(&p), Some(2));
        std::fs::write(&p, "ts,open,high,low,close,volume\n1,1,1,1,1,1\n").unwrap();
        assert_eq!(count_rows(&p), Some(1));
    }

    #[tokio::test]
    async fn a_failed_preparation_fails_the_job_with_its_text() {
        let q = JobQueue::new(1, None);
        let all = events(q.submit(
            3,
            Box::pin(async { Err("no stored price history for ZZZ".to_string()) }),
        ))
        .await;
        assert!(
            matches!(&all[..], [JobEvent::Finished(Err(JobError::Failed(m)))] if m == "no stored price history for ZZZ"),
            "{all:?}"
        );
    }
}
