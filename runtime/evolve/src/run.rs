//! A whole evolution run: the periods (a train/test split or walk-forward folds), one search
//! per training period, the champion's test, the baselines (buy-and-hold, an equal-budget
//! random search) and the statistics of overfitting. Its state after every generation is a
//! [`Checkpoint`] from which the run resumes exactly.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::evaluate::{Evaluation, Evaluator, Period, daily_returns};
use crate::genome::{Genome, Space};
use crate::search::{
    Candidate, GenerationReport, Objective, Search, SearchConfig, SearchState, Stopped, champion,
};
use crate::stats;

/// How the data is cut into training and test periods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Split {
    /// One training and one test period.
    Holdout {
        /// Training period.
        train: Period,
        /// Test period.
        test: Period,
    },
    /// `folds` consecutive test segments, each after its training window: the same length
    /// before it (rolling) or everything before it (anchored).
    WalkForward {
        /// Anchored (the training window grows) or rolling (it slides).
        anchored: bool,
        /// Number of folds.
        folds: usize,
    },
}

/// Share of the bars the default split trains on; the rest is the test period.
pub const DEFAULT_TRAIN_SHARE: f64 = 0.7;

/// Most candidates whose return series enter the statistics' matrices (PBO, SPA, effective
/// trials): the best of the last search by fitness. Bounds memory and the work of CSCV.
pub const MATRIX_CANDIDATES: usize = 256;

/// CSCV partitions (the `S` of Bailey et al.).
pub const PBO_PARTITIONS: usize = 16;

/// Stationary-bootstrap replications of the SPA test.
pub const SPA_REPS: usize = 1000;

impl Split {
    /// The 70/30 split by bar time of `times` (sorted, distinct).
    pub fn default_for(times: &[i64]) -> Result<Split, String> {
        if times.len() < 4 {
            return Err(format!(
                "{} bar times are too few to split into training and test",
                times.len()
            ));
        }
        let cut = ((times.len() as f64 * DEFAULT_TRAIN_SHARE) as usize).clamp(1, times.len() - 1);
        Ok(Split::Holdout {
            train: Period {
                from: times[0],
                to: times[cut - 1],
            },
            test: Period {
                from: times[cut],
                to: times[times.len() - 1],
            },
        })
    }

    /// The (train, test) periods over bar times `times` (sorted, distinct).
    pub fn periods(&self, times: &[i64]) -> Result<Vec<(Period, Period)>, String> {
        let count = |p: &Period| {
            times.partition_point(|&t| t <= p.to) - times.partition_point(|&t| t < p.from)
        };
        let out = match self {
            Split::Holdout { train, test } => {
                if train.to >= test.from {
                    return Err("the training period must end before the test period starts".into());
                }
                vec![(*train, *test)]
            }
            Split::WalkForward { anchored, folds } => {
                let k = *folds;
                if k == 0 {
                    return Err("--folds must be at least 1".into());
                }
                let segments = k + 1;
                if times.len() < segments * 2 {
                    return Err(format!(
                        "{} bar times are too few for {k} folds",
                        times.len()
                    ));
                }
                let edge = |i: usize| i * times.len() / segments;
                (0..k)
                    .map(|f| {
                        let train_from = if *anchored { 0 } else { edge(f) };
                        let train = Period {
                            from: times[train_from],
                            to: times[edge(f + 1) - 1],
                        };
                        let test = Period {
                            from: times[edge(f + 1)],
                            to: times[edge(f + 2) - 1],
                        };
                        (train, test)
                    })
                    .collect()
            }
        };
        for (train, test) in &out {
            if count(train) < 2 || count(test) < 2 {
                return Err(format!(
                    "a period has fewer than 2 bars (training {} bars, test {} bars)",
                    count(train),
                    count(test)
                ));
            }
        }
        Ok(out)
    }
}

/// A finished fold: its periods, champion and the search's counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldDone {
    /// Training period.
    pub train: Period,
    /// Test period.
    pub test: Period,
    /// The champion of the fold's search.
    pub champion: Candidate,
    /// Candidates bred (duplicates included).
    pub bred: u64,
    /// Distinct candidates evaluated.
    pub distinct: usize,
    /// Wall time spent evaluating.
    pub eval_seconds: f64,
}

/// Everything needed to resume a run: the folds done and the current search's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Folds whose search finished.
    pub folds: Vec<FoldDone>,
    /// The search in progress, after its last whole generation.
    pub current: Option<SearchState>,
    /// The last fold's final search state (the statistics are computed from its ledger).
    pub last: Option<SearchState>,
}

/// The result of a run: what `qtm evolve --json` prints.
#[derive(Debug, Clone)]
pub struct EvolveResult {
    /// The JSON document (`best`, statistics, baselines, manifest…).
    pub json: Value,
    /// The champion's test runs (trades and equity, for the report and `trades_sha256`).
    pub test: Vec<Evaluation>,
    /// The last search's ledger (for `--out`'s CSV).
    pub ledger: Vec<Candidate>,
    /// The champion (of the last fold).
    pub champion: Candidate,
    /// Warnings in plain words (DSR, PBO, random search); empty when the champion passes.
    pub warnings: Vec<String>,
}

/// Run a whole evolution: every fold's search (from `resume` when given), then the tests,
/// baselines and statistics. `on_generation` sees each generation's checkpoint and report.
pub fn run(
    config: &SearchConfig,
    space: &Space,
    evaluator: &Evaluator,
    split: &Split,
    resume: Option<Checkpoint>,
    cancel: Option<Arc<AtomicBool>>,
    on_generation: &mut dyn FnMut(&Checkpoint, &GenerationReport),
) -> Result<EvolveResult, Stopped> {
    let times = evaluator.market.times();
    let periods = split.periods(&times).map_err(Stopped::Resume)?;
    let mut checkpoint = resume.unwrap_or(Checkpoint {
        folds: Vec::new(),
        current: None,
        last: None,
    });
    if checkpoint.folds.len() > periods.len()
        || checkpoint
            .folds
            .iter()
            .zip(&periods)
            .any(|(f, (tr, te))| f.train != *tr || f.test != *te)
    {
        return Err(Stopped::Resume(
            "the checkpoint's periods are not this run's (other data or split)".into(),
        ));
    }
    for (fold, (train, test)) in periods.iter().enumerate().skip(checkpoint.folds.len()) {
        let search = Search {
            config,
            space,
            evaluator,
            period: *train,
            fold,
            cancel: cancel.clone(),
        };
        let resume = checkpoint.current.take();
        let folds_before = checkpoint.folds.clone();
        let last_before = checkpoint.last.clone();
        let state = search.run(resume, &mut |state, report| {
            let cp = Checkpoint {
                folds: folds_before.clone(),
                current: Some(state.clone()),
                last: last_before.clone(),
            };
            on_generation(&cp, report);
        })?;
        let Some(best) = champion(config.objective, &state) else {
            return Err(Stopped::Resume(format!(
                "no candidate of fold {} could run: every one failed (first error: {})",
                fold + 1,
                state
                    .ledger
                    .iter()
                    .find_map(|c| c.error.clone())
                    .unwrap_or_default()
            )));
        };
        checkpoint.folds.push(FoldDone {
            train: *train,
            test: *test,
            champion: state.ledger[best].clone(),
            bred: state.evaluations,
            distinct: state.ledger.len(),
            eval_seconds: state.eval_seconds,
        });
        checkpoint.last = Some(state);
        checkpoint.current = None;
    }
    Ok(finish(config, space, evaluator, &checkpoint))
}

fn finish(
    config: &SearchConfig,
    space: &Space,
    evaluator: &Evaluator,
    cp: &Checkpoint,
) -> EvolveResult {
    let last = cp.last.as_ref().expect("a finished run has a last search");
    let fold = cp.folds.len() - 1;
    let done = &cp.folds[fold];
    let search = Search {
        config,
        space,
        evaluator,
        period: done.train,
        fold,
        cancel: None,
    };
    // The champion of each fold on its own test period; walk-forward concatenates them.
    let test: Vec<Evaluation> = cp
        .folds
        .iter()
        .map(|f| evaluator.evaluate(&f.champion.genome, f.test, true))
        .collect();
    let champion = done.champion.clone();
    let train_eval = evaluator.evaluate(&champion.genome, done.train, true);
    let test_summary = combined_summary(evaluator, &test);
    let test_trades: Vec<_> = test.iter().flat_map(|e| e.trades.iter().cloned()).collect();
    let trades_sha256 = qtm_backtest::trades_sha256(&test_trades);
    let test_daily: Vec<f64> = test.iter().flat_map(|e| e.daily.iter().copied()).collect();

    // Baselines on the same test periods.
    let hold: Vec<Evaluation> = cp
        .folds
        .iter()
        .map(|f| evaluator.buy_and_hold(f.test))
        .collect();
    let hold_summary = combined_summary(evaluator, &hold);
    let bred: u64 = cp.folds.iter().map(|f| f.bred).sum();
    let (random_best, random_distinct) = search.random_search(done.bred);
    let random_test = random_best
        .as_ref()
        .map(|b| evaluator.evaluate(&b.genome, done.test, true));

    // Statistics over the last search's candidates (its training period).
    let valid: Vec<&Candidate> = last.ledger.iter().filter(|c| c.fitness.is_some()).collect();
    let trial_sharpes: Vec<f64> = valid.iter().map(|c| c.daily_sharpe).collect();
    let sr_var = variance(&trial_sharpes);
    let n_distinct = last.ledger.len();
    let mut top: Vec<&Candidate> = valid.clone();
    top.sort_by(|a, b| {
        crate::select::better(
            a.fitness.unwrap_or(f64::NEG_INFINITY),
            &a.hash,
            b.fitness.unwrap_or(f64::NEG_INFINITY),
            &b.hash,
        )
    });
    top.truncate(MATRIX_CANDIDATES);
    let genomes: Vec<&Genome> = top.iter().map(|c| &c.genome).collect();
    let series: Vec<Vec<f64>> = search
        .evaluate_all(&genomes, done.train)
        .into_iter()
        .map(|e| e.daily)
        .collect();
    let hold_train = evaluator.buy_and_hold(done.train).daily;
    let champion_daily = &train_eval.daily;
    let s = stats_report(
        champion_daily,
        sr_var,
        valid.len(),
        &series,
        &hold_train,
        config.seed,
    );

    let mut warnings = Vec::new();
    match s.dsr {
        Some(d) if d < 0.95 => warnings.push(format!(
            "the Deflated Sharpe Ratio is {d:.3}, below 0.95: after {} distinct trials, a training Sharpe ratio this high is within what luck alone gives the best of them",
            valid.len()
        )),
        None => warnings.push("the Deflated Sharpe Ratio could not be computed (too few returns or trials)".into()),
        _ => {}
    }
    if let Some(p) = s.pbo
        && p > 0.5
    {
        warnings.push(format!(
            "the Probability of Backtest Overfitting is {p:.3}, above 0.5: the best candidate on one half of the training data usually ranks below the median on the other half"
        ));
    }
    let champion_test_sharpe = test_summary
        .get("sharpe")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let random_test_sharpe = random_test.as_ref().map(|e| e.metrics.sharpe);
    if let Some(r) = random_test_sharpe
        && champion_test_sharpe <= r
    {
        warnings.push(format!(
            "the champion does not beat the equal-budget random search on the test period (Sharpe {champion_test_sharpe:.3} against {r:.3})"
        ));
    }

    let eval_seconds: f64 = cp.folds.iter().map(|f| f.eval_seconds).sum();
    let evaluations: usize = cp.folds.iter().map(|f| f.distinct).sum();
    let best_json = {
        let mut b = serde_json::Map::new();
        match (&champion.genome, space) {
            (Genome::Params(p), Space::Params(ps)) => {
                let params: serde_json::Map<String, Value> = ps
                    .params(p)
                    .into_iter()
                    .map(|p| (p.name, serde_json::to_value(p.value).unwrap_or(Value::Null)))
                    .collect();
                b.insert("params".into(), Value::Object(params));
            }
            (Genome::Rules(r), _) => {
                b.insert("rules".into(), json!(r.to_rules()));
            }
            _ => {}
        }
        b.insert("hash".into(), json!(champion.hash));
        b.insert("fitness".into(), json!(champion.fitness));
        b.insert(
            "train".into(),
            train_eval.summary.clone().unwrap_or(Value::Null),
        );
        b.insert("test".into(), test_summary.clone());
        b.insert("trades_sha256".into(), json!(trades_sha256));
        Value::Object(b)
    };
    let json = json!({
        "best": best_json,
        "psr": s.psr,
        "dsr": s.dsr,
        "min_trl": s.min_trl,
        "pbo": s.pbo,
        "spa_pvalue": s.spa_pvalue,
        "n_trials": bred,
        "n_distinct": n_distinct,
        "n_effective": s.n_effective,
        "trials_sharpe_variance": sr_var,
        "random_search": {
            "evaluations": done.bred,
            "n_distinct": random_distinct,
            "best": random_best.as_ref().map(|b| json!({"text": b.text, "hash": b.hash, "fitness": b.fitness})),
            "test": random_test.as_ref().and_then(|e| e.summary.clone()),
        },
        "buy_and_hold": { "test": hold_summary },
        "evaluations": evaluations,
        "evaluations_per_sec": if eval_seconds > 0.0 { evaluations as f64 / eval_seconds } else { 0.0 },
        "seed": config.seed,
        "objective": config.objective.as_str(),
        "verdict": {
            "passed": warnings.is_empty(),
            "warnings": warnings,
        },
        "folds": cp.folds.iter().zip(&test).map(|(f, e)| json!({
            "train": f.train, "test": f.test,
            "champion": f.champion.text,
            "train_sharpe": f.champion.sharpe,
            "test_sharpe": e.metrics.sharpe,
            "test_return_pct": e.metrics.total_return_pct,
        })).collect::<Vec<_>>(),
        "test_days": test_daily.len(),
    });
    EvolveResult {
        json,
        test,
        ledger: last.ledger.clone(),
        champion,
        warnings,
    }
}

/// The metrics of test runs chained end to end (one run: its own summary).
fn combined_summary(evaluator: &Evaluator, runs: &[Evaluation]) -> Value {
    if let [one] = runs {
        return one.summary.clone().unwrap_or(Value::Null);
    }
    let cash = evaluator.config.cash;
    let mut equity = Vec::new();
    let mut scale = 1.0;
    let mut trades = Vec::new();
    for e in runs {
        for p in &e.equity {
            let mut q = *p;
            q.equity *= scale;
            equity.push(q);
        }
        if let Some(last) = e.equity.last()
            && cash > 0.0
        {
            scale *= last.equity / cash;
        }
        trades.extend(e.trades.iter().cloned());
    }
    let m = qtm_backtest::metrics::compute(&qtm_backtest::metrics::MetricsInput::new(
        &equity[..],
        &trades,
        cash,
    ));
    let mut v = serde_json::to_value(&m).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "trades_sha256".into(),
            json!(qtm_backtest::trades_sha256(&trades)),
        );
        o.insert(
            "daily_returns".into(),
            json!(daily_returns(equity.into_iter(), cash).len()),
        );
    }
    v
}

fn variance(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return 0.0;
    }
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0)
}

/// The statistics of a champion among its trials.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatsReport {
    /// Probabilistic Sharpe Ratio against 0.
    pub psr: Option<f64>,
    /// Deflated Sharpe Ratio.
    pub dsr: Option<f64>,
    /// Minimum track record length at 95 %, days.
    pub min_trl: Option<f64>,
    /// Probability of Backtest Overfitting (CSCV).
    pub pbo: Option<f64>,
    /// Hansen's SPA p-value (consistent) against buy-and-hold.
    pub spa_pvalue: Option<f64>,
    /// Effective number of trials.
    pub n_effective: Option<usize>,
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Compute every statistic; `None` where the inputs are too small or degenerate.
///
/// `champion` is the champion's daily returns on the period it was selected on; the trials
/// are every runnable candidate of that search (their Sharpe variance and count deflate it);
/// `series` are the best candidates' daily returns on the same days (columns of the CSCV
/// matrix, the SPA's models and what the clustering groups); `benchmark` buy-and-hold's.
fn stats_report(
    champion: &[f64],
    trials_sr_variance: f64,
    n_trials: usize,
    series: &[Vec<f64>],
    benchmark: &[f64],
    seed: u64,
) -> StatsReport {
    let psr = finite(stats::psr(champion, 0.0));
    let dsr = (n_trials >= 2)
        .then(|| stats::dsr(champion, trials_sr_variance, n_trials as f64))
        .and_then(finite);
    let min_trl = finite(stats::min_trl(champion, 0.0, 0.95));
    // Every column must cover the same days for the matrices (a failed run has none).
    let days = benchmark.len();
    let columns: Vec<&Vec<f64>> = series.iter().filter(|s| s.len() == days).collect();
    let (pbo, spa_pvalue, n_effective) = if columns.len() >= 2 && days >= 2 * PBO_PARTITIONS {
        let matrix: Vec<Vec<f64>> = (0..days)
            .map(|t| columns.iter().map(|c| c[t]).collect())
            .collect();
        let pbo = finite(stats::pbo_sharpe(&matrix, PBO_PARTITIONS).pbo);
        let owned: Vec<Vec<f64>> = columns.iter().map(|c| (*c).clone()).collect();
        let spa = stats::spa(
            benchmark,
            &owned,
            &stats::SpaConfig {
                reps: SPA_REPS,
                // arch's default block: √T covers the serial dependence of daily returns.
                mean_block: (days as f64).sqrt().max(1.0),
                seed,
                // arch's `SPA` (the reference): a flat candidate would make the studentized
                // form undefined.
                studentize: false,
            },
        );
        (
            pbo,
            finite(spa.consistent),
            Some(stats::effective_trials(&owned)),
        )
    } else {
        (None, None, None)
    };
    StatsReport {
        psr,
        dsr,
        min_trl,
        pbo,
        spa_pvalue,
        n_effective,
    }
}

/// The objective's name for `Objective::Multi`'s champion choice (documented in the JSON).
pub fn champion_rule(objective: Objective) -> &'static str {
    match objective {
        Objective::Multi => "the Pareto-front member with the best training Sharpe",
        _ => "the best fitness on the training period",
    }
}
