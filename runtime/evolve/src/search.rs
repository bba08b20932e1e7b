//! The genetic search over one training period: islands of candidates bred by tournament
//! selection (or NSGA-II for several objectives), elitism, ring migration, and a ledger of
//! every distinct candidate evaluated.
//!
//! Determinism: each child draws from its own random stream keyed by (seed, fold, generation,
//! island, pair); evaluations run in parallel but land in the ledger in the order they were
//! bred; every ranking breaks ties by genome hash. So the result depends only on the seed,
//! the configuration and the data, not on the number of workers, and a search resumed from
//! its state after any generation goes on exactly as if it had never stopped.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::evaluate::{Evaluation, Evaluator, Period};
use crate::genome::{Genome, Space, genome_hash};
use crate::rng::Rng;
use crate::select::{self, better, crowded_cmp, rank_and_crowding};

/// What the search maximizes on the training period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Annualized Sharpe ratio.
    Sharpe,
    /// Annualized Sortino ratio.
    Sortino,
    /// CAGR over maximum drawdown.
    Calmar,
    /// Total return.
    Return,
    /// NSGA-II over return (up), maximum drawdown (down) and size (down: rule nodes for
    /// `--gp`, closed trades for parameters).
    Multi,
}

impl Objective {
    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Objective::Sharpe => "sharpe",
            Objective::Sortino => "sortino",
            Objective::Calmar => "calmar",
            Objective::Return => "return",
            Objective::Multi => "multi",
        }
    }
}

/// Largest magnitude a fitness may have: Calmar and profit-like ratios can be infinite,
/// and an infinite fitness cannot be written to JSON or averaged.
const FITNESS_CAP: f64 = 1e12;

/// Settings of the genetic search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchConfig {
    /// Candidates per generation (over all islands).
    pub population: usize,
    /// Generations, the random first one included: `population × generations` evaluations.
    pub generations: usize,
    /// The seed every random stream is keyed by.
    pub seed: u64,
    /// What is maximized.
    pub objective: Objective,
    /// Threads evaluating candidates (the result does not depend on it).
    pub workers: usize,
    /// Islands the population is split into.
    pub islands: usize,
    /// Generations between ring migrations.
    pub migration_interval: usize,
    /// Best candidates each island sends to the next at a migration.
    pub migrants: usize,
    /// Best candidates of an island kept unchanged into its next generation.
    pub elite: usize,
    /// Probability that a pair of parents is crossed (otherwise only mutated).
    pub crossover: f64,
    /// Tournament size.
    pub tournament: usize,
    /// Fitness subtracted per rule node (`--gp`): among equals, the smaller program wins.
    pub parsimony: f64,
}

impl SearchConfig {
    /// Defaults for `population` and `generations`: 4 islands when the population allows 8
    /// a island, migration of 2 every 5 generations, 1 elite, crossover 0.9, tournament 3.
    pub fn new(population: usize, generations: usize, seed: u64, objective: Objective) -> Self {
        SearchConfig {
            population,
            generations,
            seed,
            objective,
            workers: 1,
            islands: (population / 8).clamp(1, 4),
            migration_interval: 5,
            migrants: 2,
            elite: 1,
            crossover: 0.9,
            tournament: 3,
            parsimony: 0.002,
        }
    }

    /// Why the settings cannot run, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.population < 2 {
            return Err(format!(
                "--population must be at least 2, got {}",
                self.population
            ));
        }
        if self.generations < 1 {
            return Err("--generations must be at least 1".into());
        }
        if self.islands == 0 || self.population / self.islands < 2 {
            return Err(format!(
                "{} islands leave fewer than 2 candidates each of a population of {}",
                self.islands, self.population
            ));
        }
        if self.workers == 0 {
            return Err("--workers must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.crossover) {
            return Err("crossover probability must lie in 0..=1".into());
        }
        Ok(())
    }

    fn island_sizes(&self) -> Vec<usize> {
        let base = self.population / self.islands;
        let extra = self.population % self.islands;
        (0..self.islands)
            .map(|i| base + usize::from(i < extra))
            .collect()
    }
}

/// One distinct candidate evaluated on the training period: a ledger row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// SHA-256 of the genome's canonical text.
    pub hash: String,
    /// The genome.
    pub genome: Genome,
    /// Its canonical text (`name=value …`, or the rule program).
    pub text: String,
    /// Generation it was first bred in.
    pub generation: usize,
    /// Times it was bred (1 + duplicates, which are counted but not re-evaluated).
    pub seen: u32,
    /// Hashes of the two parents it was first bred from (none for the random first
    /// generation): the lineage.
    #[serde(default)]
    pub parents: Vec<String>,
    /// Fitness; `None` when the candidate could not run.
    pub fitness: Option<f64>,
    /// The objectives NSGA-II compares (all maximized).
    pub objectives: Vec<f64>,
    /// Training metrics.
    pub total_return_pct: f64,
    /// Annualized Sharpe ratio on training.
    pub sharpe: f64,
    /// Sharpe ratio of the daily returns, not annualized (the statistics' unit).
    pub daily_sharpe: f64,
    /// Maximum drawdown on training, percent.
    pub max_drawdown_pct: f64,
    /// Closed trades on training.
    pub trades: usize,
    /// Size: rule nodes for `--gp`, 0 for parameters.
    pub size: usize,
    /// Why it could not run.
    pub error: Option<String>,
}

impl Candidate {
    fn fit(&self) -> f64 {
        self.fitness.unwrap_or(f64::NEG_INFINITY)
    }
}

/// The whole state of a search after a generation: enough to resume it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchState {
    /// Generations completed.
    pub generation: usize,
    /// Each island's members, as indices into the ledger.
    pub islands: Vec<Vec<usize>>,
    /// Every distinct candidate, in the order first bred.
    pub ledger: Vec<Candidate>,
    /// Candidates bred, duplicates included.
    pub evaluations: u64,
    /// Wall time spent evaluating, seconds (for evaluations per second).
    pub eval_seconds: f64,
}

/// What a generation reports (the progress bar, `/ws/evolution`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationReport {
    /// Fold of a walk-forward (0 otherwise).
    pub fold: usize,
    /// The generation just completed (1-based).
    pub generation: usize,
    /// Generations in all.
    pub generations: usize,
    /// Best fitness so far.
    pub best: f64,
    /// Median fitness of the current population's runnable members.
    pub median: f64,
    /// Distinct genomes in the population over its size.
    pub diversity: f64,
    /// Candidates bred so far, duplicates included.
    pub evaluations: u64,
    /// Over the wall time spent evaluating.
    pub evaluations_per_sec: f64,
    /// The best candidate's text.
    pub best_text: String,
}

/// Why a search stopped before its last generation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Stopped {
    /// The cancel flag was raised (its state after the last whole generation is kept).
    #[error("cancelled after generation {0}")]
    Cancelled(usize),
    /// A state to resume does not belong to this search.
    #[error("{0}")]
    Resume(String),
}

// Stream purposes: keys that keep the streams of different uses apart.
const INIT: u64 = 1;
const BREED: u64 = 2;
const RANDOM: u64 = 3;

/// A search over one training period.
pub struct Search<'a> {
    /// Settings.
    pub config: &'a SearchConfig,
    /// What is varied.
    pub space: &'a Space,
    /// Backtests candidates.
    pub evaluator: &'a Evaluator,
    /// The training period.
    pub period: Period,
    /// Walk-forward fold (keys the random streams, so folds differ).
    pub fold: usize,
    /// Raised to stop after the current generation.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Search<'_> {
    fn pool(&self) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(self.config.workers.max(1))
            .thread_name(|i| format!("qtm-evolve-{i}"))
            .build()
            .unwrap_or_else(|_| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .build()
                    .expect("a one-thread pool")
            })
    }

    fn key(&self, generation: usize, island: usize, index: usize, purpose: u64) -> Rng {
        Rng::keyed(
            self.config.seed,
            &[
                self.fold as u64,
                generation as u64,
                island as u64,
                index as u64,
                purpose,
            ],
        )
    }

    /// Run the search from the start, or from `resume`; `on_generation` sees the state and
    /// report after every generation (to save a checkpoint, move a progress bar).
    pub fn run(
        &self,
        resume: Option<SearchState>,
        on_generation: &mut dyn FnMut(&SearchState, &GenerationReport),
    ) -> Result<SearchState, Stopped> {
        self.config.check().map_err(Stopped::Resume)?;
        let pool = self.pool();
        let sizes = self.config.island_sizes();
        let mut state = match resume {
            Some(s) => {
                if s.islands.len() != sizes.len()
                    || s.islands.iter().zip(&sizes).any(|(i, n)| i.len() != *n)
                    || s.islands.iter().flatten().any(|&i| i >= s.ledger.len())
                {
                    return Err(Stopped::Resume(
                        "the saved state's islands do not match this configuration".into(),
                    ));
                }
                s
            }
            None => {
                let mut s = SearchState {
                    generation: 0,
                    islands: Vec::new(),
                    ledger: Vec::new(),
                    evaluations: 0,
                    eval_seconds: 0.0,
                };
                let mut genomes = Vec::new();
                for (island, n) in sizes.iter().enumerate() {
                    for k in 0..*n {
                        genomes.push(self.space.random(&mut self.key(0, island, k, INIT)));
                    }
                }
                let members = self.admit(&pool, &mut s, genomes, 1);
                let mut it = members.into_iter();
                s.islands = sizes
                    .iter()
                    .map(|n| it.by_ref().take(*n).collect())
                    .collect();
                s.generation = 1;
                let report = self.report(&s);
                on_generation(&s, &report);
                s
            }
        };
        let mut index: HashMap<String, usize> = state
            .ledger
            .iter()
            .enumerate()
            .map(|(i, c)| (c.hash.clone(), i))
            .collect();
        while state.generation < self.config.generations {
            if self
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(AtomicOrdering::Relaxed))
            {
                return Err(Stopped::Cancelled(state.generation));
            }
            let generation = state.generation + 1;
            let mut bred: Vec<Vec<(Genome, [String; 2])>> = Vec::new();
            for (island, members) in state.islands.iter().enumerate() {
                bred.push(self.breed(&state.ledger, members, generation, island));
            }
            let (all, parents): (Vec<Genome>, Vec<[String; 2]>) =
                bred.iter().flatten().cloned().unzip();
            let admitted = self.admit_indexed(
                &pool,
                &mut state,
                &mut index,
                all,
                Some(&parents),
                generation,
            );
            let mut it = admitted.into_iter();
            let children: Vec<Vec<usize>> = bred
                .iter()
                .map(|b| it.by_ref().take(b.len()).collect())
                .collect();
            let islands = std::mem::take(&mut state.islands);
            state.islands = islands
                .into_iter()
                .zip(children)
                .map(|(parents, kids)| self.replace(&state.ledger, &parents, kids))
                .collect();
            if state.islands.len() > 1
                && self.config.migration_interval > 0
                && generation % self.config.migration_interval == 0
            {
                self.migrate(&mut state);
            }
            state.generation = generation;
            let report = self.report(&state);
            on_generation(&state, &report);
        }
        Ok(state)
    }

    /// Rank of members, best first (fitness, or NSGA-II's crowded order), ties by hash.
    fn ranked(&self, ledger: &[Candidate], members: &[usize]) -> Vec<usize> {
        let mut order: Vec<usize> = (0..members.len()).collect();
        if self.config.objective == Objective::Multi {
            let points: Vec<Vec<f64>> = members
                .iter()
                .map(|&m| ledger[m].objectives.clone())
                .collect();
            let rc = rank_and_crowding(&points);
            order.sort_by(|&a, &b| {
                crowded_cmp(rc[a], rc[b])
                    .then_with(|| ledger[members[a]].hash.cmp(&ledger[members[b]].hash))
            });
        } else {
            order.sort_by(|&a, &b| {
                let (x, y) = (&ledger[members[a]], &ledger[members[b]]);
                better(x.fit(), &x.hash, y.fit(), &y.hash)
            });
        }
        order.into_iter().map(|i| members[i]).collect()
    }

    /// Children of one island: its elites' places are kept by [`Search::replace`], the rest
    /// filled by pairs bred from tournament winners.
    fn breed(
        &self,
        ledger: &[Candidate],
        members: &[usize],
        generation: usize,
        island: usize,
    ) -> Vec<(Genome, [String; 2])> {
        let multi = self.config.objective == Objective::Multi;
        let wanted = if multi {
            members.len()
        } else {
            members
                .len()
                .saturating_sub(self.config.elite.min(members.len()))
        };
        let rc = multi.then(|| {
            let points: Vec<Vec<f64>> = members
                .iter()
                .map(|&m| ledger[m].objectives.clone())
                .collect();
            rank_and_crowding(&points)
        });
        let cmp = |a: usize, b: usize| -> std::cmp::Ordering {
            let (x, y) = (&ledger[members[a]], &ledger[members[b]]);
            match &rc {
                Some(rc) => crowded_cmp(rc[a], rc[b]).then_with(|| x.hash.cmp(&y.hash)),
                None => better(x.fit(), &x.hash, y.fit(), &y.hash),
            }
        };
        // NSGA-II selects parents by binary tournament on the crowded order.
        let size = if multi { 2 } else { self.config.tournament };
        let mut out = Vec::with_capacity(wanted + 1);
        let mut pair = 0;
        while out.len() < wanted {
            let mut rng = self.key(generation, island, pair, BREED);
            let a = select::tournament(members.len(), size, &mut rng, cmp);
            let b = select::tournament(members.len(), size, &mut rng, cmp);
            let (x, y) = self.space.breed(
                &ledger[members[a]].genome,
                &ledger[members[b]].genome,
                self.config.crossover,
                &mut rng,
            );
            let parents = [
                ledger[members[a]].hash.clone(),
                ledger[members[b]].hash.clone(),
            ];
            out.push((x, parents.clone()));
            if out.len() < wanted {
                out.push((y, parents));
            }
            pair += 1;
        }
        out
    }

    /// The island's next members: elites and children (one objective), or the best of
    /// parents and children by NSGA-II's order.
    fn replace(&self, ledger: &[Candidate], parents: &[usize], kids: Vec<usize>) -> Vec<usize> {
        let n = parents.len();
        if self.config.objective == Objective::Multi {
            let mut pool: Vec<usize> = parents.to_vec();
            pool.extend(kids);
            let mut ranked = self.ranked(ledger, &pool);
            ranked.truncate(n);
            return ranked;
        }
        let elite = self.config.elite.min(n);
        let mut next: Vec<usize> = self
            .ranked(ledger, parents)
            .into_iter()
            .take(elite)
            .collect();
        next.extend(kids);
        next.truncate(n);
        next
    }

    /// Ring migration: each island's best replace the worst of the next island.
    fn migrate(&self, state: &mut SearchState) {
        let k = self.config.migrants;
        let n = state.islands.len();
        let emigrants: Vec<Vec<usize>> = state
            .islands
            .iter()
            .map(|m| self.ranked(&state.ledger, m).into_iter().take(k).collect())
            .collect();
        for (i, movers) in emigrants.into_iter().enumerate() {
            let to = (i + 1) % n;
            let mut ranked = self.ranked(&state.ledger, &state.islands[to]);
            let keep = ranked.len().saturating_sub(movers.len());
            ranked.truncate(keep);
            ranked.extend(movers);
            state.islands[to] = ranked;
        }
    }

    fn admit(
        &self,
        pool: &rayon::ThreadPool,
        state: &mut SearchState,
        genomes: Vec<Genome>,
        generation: usize,
    ) -> Vec<usize> {
        let mut index = HashMap::new();
        self.admit_indexed(pool, state, &mut index, genomes, None, generation)
    }

    /// Evaluate the genomes not in the ledger yet (in parallel), add them in order, count
    /// duplicates; the ledger index of each genome.
    fn admit_indexed(
        &self,
        pool: &rayon::ThreadPool,
        state: &mut SearchState,
        index: &mut HashMap<String, usize>,
        genomes: Vec<Genome>,
        parents: Option<&[[String; 2]]>,
        generation: usize,
    ) -> Vec<usize> {
        let texts: Vec<String> = genomes.iter().map(|g| self.space.text(g)).collect();
        let hashes: Vec<String> = texts.iter().map(|t| genome_hash(t)).collect();
        let mut fresh: Vec<usize> = Vec::new();
        let mut is_fresh = vec![false; genomes.len()];
        let mut batch: HashMap<&str, ()> = HashMap::new();
        for (i, h) in hashes.iter().enumerate() {
            if !index.contains_key(h) && batch.insert(h.as_str(), ()).is_none() {
                fresh.push(i);
                is_fresh[i] = true;
            }
        }
        let started = Instant::now();
        let evaluations: Vec<Evaluation> = pool.install(|| {
            fresh
                .par_iter()
                .map(|&i| self.evaluator.evaluate(&genomes[i], self.period, false))
                .collect()
        });
        state.eval_seconds += started.elapsed().as_secs_f64();
        for (&i, e) in fresh.iter().zip(evaluations) {
            let mut c = self.candidate(&genomes[i], &texts[i], &hashes[i], generation, &e);
            if let Some(p) = parents {
                c.parents = p[i].to_vec();
            }
            index.insert(hashes[i].clone(), state.ledger.len());
            state.ledger.push(c);
        }
        let mut out = Vec::with_capacity(genomes.len());
        for (i, h) in hashes.iter().enumerate() {
            let at = index[h];
            if !is_fresh[i] {
                state.ledger[at].seen += 1;
            }
            out.push(at);
        }
        state.evaluations += genomes.len() as u64;
        out
    }

    fn candidate(
        &self,
        genome: &Genome,
        text: &str,
        hash: &str,
        generation: usize,
        e: &Evaluation,
    ) -> Candidate {
        let size = self.space.size(genome);
        let m = &e.metrics;
        let cap = |x: f64| {
            if x.is_nan() {
                0.0
            } else {
                x.clamp(-FITNESS_CAP, FITNESS_CAP)
            }
        };
        let raw = match self.config.objective {
            Objective::Sharpe | Objective::Multi => m.sharpe,
            Objective::Sortino => m.sortino,
            Objective::Calmar => m.calmar,
            Objective::Return => m.total_return_pct,
        };
        let fitness = e
            .error
            .is_none()
            .then(|| cap(raw) - self.config.parsimony * size as f64);
        let size_objective = match genome {
            Genome::Rules(_) => size as f64,
            Genome::Params(_) => m.n_trades as f64,
        };
        let objectives = if e.error.is_none() {
            vec![
                cap(m.total_return_pct),
                -cap(m.max_drawdown_pct),
                -size_objective,
            ]
        } else {
            vec![-FITNESS_CAP; 3]
        };
        Candidate {
            hash: hash.to_string(),
            genome: genome.clone(),
            text: text.to_string(),
            generation,
            seen: 1,
            parents: Vec::new(),
            fitness,
            objectives,
            total_return_pct: cap(m.total_return_pct),
            sharpe: cap(m.sharpe),
            daily_sharpe: daily_sharpe(&e.daily),
            max_drawdown_pct: cap(m.max_drawdown_pct),
            trades: m.n_trades,
            size,
            error: e.error.clone(),
        }
    }

    fn report(&self, state: &SearchState) -> GenerationReport {
        let best = champion(self.config.objective, state);
        let mut fits: Vec<f64> = state
            .islands
            .iter()
            .flatten()
            .filter_map(|&i| state.ledger[i].fitness)
            .collect();
        fits.sort_by(f64::total_cmp);
        let median = if fits.is_empty() {
            0.0
        } else if fits.len() % 2 == 1 {
            fits[fits.len() / 2]
        } else {
            (fits[fits.len() / 2 - 1] + fits[fits.len() / 2]) / 2.0
        };
        let members: Vec<usize> = state.islands.iter().flatten().copied().collect();
        let mut distinct = members.clone();
        distinct.sort_unstable();
        distinct.dedup();
        GenerationReport {
            fold: self.fold,
            generation: state.generation,
            generations: self.config.generations,
            best: best.and_then(|b| state.ledger[b].fitness).unwrap_or(0.0),
            median,
            diversity: distinct.len() as f64 / members.len().max(1) as f64,
            evaluations: state.evaluations,
            evaluations_per_sec: if state.eval_seconds > 0.0 {
                state.evaluations as f64 / state.eval_seconds
            } else {
                0.0
            },
            best_text: best
                .map(|b| state.ledger[b].text.clone())
                .unwrap_or_default(),
        }
    }

    /// The equal-budget baseline: `n` genomes drawn uniformly (each from its own stream),
    /// evaluated on the training period; the best by the objective (Sharpe for `multi`),
    /// and the number of distinct draws.
    pub fn random_search(&self, n: u64) -> (Option<Candidate>, usize) {
        let pool = self.pool();
        let genomes: Vec<Genome> = (0..n as usize)
            .map(|k| self.space.random(&mut self.key(0, 0, k, RANDOM)))
            .collect();
        let mut state = SearchState {
            generation: 0,
            islands: Vec::new(),
            ledger: Vec::new(),
            evaluations: 0,
            eval_seconds: 0.0,
        };
        self.admit(&pool, &mut state, genomes, 0);
        let objective = match self.config.objective {
            Objective::Multi => Objective::Sharpe,
            o => o,
        };
        let best = best_of(objective, &state.ledger, 0..state.ledger.len());
        (best.map(|b| state.ledger[b].clone()), state.ledger.len())
    }

    /// Evaluate `genomes` over `period` in parallel (for the statistics' return matrix).
    pub fn evaluate_all(&self, genomes: &[&Genome], period: Period) -> Vec<Evaluation> {
        let pool = self.pool();
        pool.install(|| {
            genomes
                .par_iter()
                .map(|g| self.evaluator.evaluate(g, period, false))
                .collect()
        })
    }
}

/// Best of `candidates` by fitness (ties by hash); `None` when none could run.
fn best_of(
    objective: Objective,
    ledger: &[Candidate],
    candidates: impl Iterator<Item = usize>,
) -> Option<usize> {
    let _ = objective;
    candidates
        .filter(|&i| ledger[i].fitness.is_some())
        .min_by(|&a, &b| {
            better(
                ledger[a].fit(),
                &ledger[a].hash,
                ledger[b].fit(),
                &ledger[b].hash,
            )
        })
}

/// The champion of a search: the best candidate ever evaluated (one objective), or the
/// member of the final populations' Pareto front with the best training Sharpe (`multi`).
pub fn champion(objective: Objective, state: &SearchState) -> Option<usize> {
    if objective != Objective::Multi {
        return best_of(objective, &state.ledger, 0..state.ledger.len());
    }
    let mut members: Vec<usize> = state.islands.iter().flatten().copied().collect();
    members.sort_unstable();
    members.dedup();
    members.retain(|&i| state.ledger[i].fitness.is_some());
    let points: Vec<Vec<f64>> = members
        .iter()
        .map(|&i| state.ledger[i].objectives.clone())
        .collect();
    let front = select::non_dominated_fronts(&points)
        .into_iter()
        .next()
        .unwrap_or_default();
    front.into_iter().map(|f| members[f]).min_by(|&a, &b| {
        let (x, y) = (&state.ledger[a], &state.ledger[b]);
        better(x.sharpe, &x.hash, y.sharpe, &y.hash)
    })
}

/// Sharpe ratio of daily returns (mean over sample standard deviation), 0 when flat.
pub fn daily_sharpe(r: &[f64]) -> f64 {
    if r.len() < 2 {
        return 0.0;
    }
    let n = r.len() as f64;
    let mean = r.iter().sum::<f64>() / n;
    let var = r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    if var > 0.0 && var.is_finite() {
        mean / var.sqrt()
    } else {
        0.0
    }
}
