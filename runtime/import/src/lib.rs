//! # SQL import
//!
//! Quant teams keep strategies as rows: a name, the symbols, and either rule text, a template
//! (an uploaded strategy's `describe` name) with parameters, or a component. [`import`] reads
//! the rows of one `SELECT` on a SQLite file or a PostgreSQL database ([`source`], opened
//! read-only), checks each row as an upload is checked ([`row`]), and stores the good ones as
//! ordinary strategies with their provenance (`qtm_store::imports`).
//!
//! - **All or nothing** by default: one rejected row and nothing is stored; with `partial`,
//!   the good rows are stored and the rest reported.
//! - **Idempotent**: a row whose content (code, parameters, symbols, name) was imported before
//!   under the same key from the same source is `unchanged`; changed content becomes the next
//!   version of that strategy.
//! - **Bounded memory**: rows are read one at a time; checked rows wait in a temporary spool
//!   file, so the destination's write transaction is short and holds no more than one row in
//!   memory, however many rows the query gives.
//! - **Rules run in the sandbox only**: a rule row is checked and compiled to its component
//!   here; it is evaluated only inside that component.

#![warn(missing_docs)]

pub mod row;
pub mod source;
mod spool;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use thiserror::Error;

use qtm_sandbox::Sandbox;
use qtm_store::imports::{self, ImportSource, Outcome};
use qtm_store::{Store, StoreError};

pub use row::{FIELDS, FieldMap};
pub use source::redact;

/// Most rejected rows a report lists (all are counted in `rejected_count`).
pub const MAX_REPORTED_REJECTIONS: usize = 1000;

/// Why an import could not run at all (a rejected row is not an error: it is in the report).
#[derive(Debug, Error)]
pub enum ImportError {
    /// The query is not one `SELECT`.
    #[error("refused query: {0}")]
    Query(String),
    /// The source could not be opened or read.
    #[error("source: {0}")]
    Source(String),
    /// The column mapping does not fit the query's columns.
    #[error("columns: {0}")]
    Columns(String),
    /// The temporary spool of checked rows failed.
    #[error("spooling checked rows: {0}")]
    Spool(#[from] std::io::Error),
    /// The destination store failed (nothing was stored).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What to import and how.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The source database URL (`sqlite://file` or `postgres://…`).
    pub url: String,
    /// What provenance calls the source: by default the URL without credentials (an uploaded
    /// file is `upload:<name>`). Keys are unique per source.
    pub source_label: Option<String>,
    /// One `SELECT`.
    pub query: String,
    /// Fields read from other columns than their own name.
    pub map: FieldMap,
    /// Store the good rows even when others are rejected.
    pub partial: bool,
    /// Check everything and report what would happen; store nothing.
    pub dry_run: bool,
    /// Who imports (owner of new strategies).
    pub user_id: Option<i64>,
    /// Stop after this many rows (a refusal of the whole import past it).
    pub max_rows: u64,
}

impl ImportOptions {
    /// Options with the defaults: all or nothing, stored, at most 1,000,000 rows.
    pub fn new(url: impl Into<String>, query: impl Into<String>) -> Self {
        ImportOptions {
            url: url.into(),
            source_label: None,
            query: query.into(),
            map: FieldMap::default(),
            partial: false,
            dry_run: false,
            user_id: None,
            max_rows: 1_000_000,
        }
    }
}

/// A row that was not imported, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Rejected {
    /// The row's key (or `row N` when it has none).
    pub row: String,
    /// What was wrong; rule errors carry `line:col`.
    pub error: String,
}

/// A strategy an import made, changed or kept.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ImportedStrategy {
    /// Its id (null in a dry run for a strategy that would be created).
    pub id: Option<i64>,
    /// Its name.
    pub name: String,
    /// The row's key.
    pub row: String,
    /// `created`, `updated` (a new version), or `unchanged`.
    pub outcome: &'static str,
    /// The version the row made or kept (null in a dry run for a new version).
    pub version: Option<i64>,
}

/// What an import did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ImportReport {
    /// Rows stored as new strategies or new versions (would be, in a dry run).
    pub imported: u64,
    /// Of those, new strategies.
    pub created: u64,
    /// Of those, new versions of strategies imported before.
    pub updated: u64,
    /// Rows whose content was imported before.
    pub unchanged: u64,
    /// Rows not imported, with their errors (at most [`MAX_REPORTED_REJECTIONS`]).
    pub rejected: Vec<Rejected>,
    /// Every rejected row, listed or not.
    pub rejected_count: u64,
    /// The strategies of the accepted rows.
    pub strategies: Vec<ImportedStrategy>,
    /// Rows the query gave.
    pub rows: u64,
    /// Whether anything was stored: false in a dry run and when an all-or-nothing import had
    /// rejected rows.
    pub committed: bool,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// The source as provenance records it.
    pub source: String,
    /// Wall time.
    pub elapsed_s: f64,
    /// Rows read, checked and stored per second.
    pub rows_per_sec: f64,
}

/// Read, check and store the rows of `opts.query`. `Ok` whenever the import ran, whatever
/// became of its rows (see [`ImportReport::committed`]); `Err` when it could not run.
pub async fn import(
    store: &Store,
    sandbox: &Arc<Sandbox>,
    opts: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    let started = Instant::now();
    source::check_query(&opts.query)?;
    let label = opts
        .source_label
        .clone()
        .unwrap_or_else(|| redact(&opts.url));
    // Programs are stored as deltas against the evaluator they are written into.
    store
        .set_component_reference(qtm_rules_component::reference_component())
        .await?;
    let mut src = source::Source::open(&opts.url).await?;
    let mut checker = row::Checker::new(store, sandbox);
    let mut spool = spool::Spool::new()?;
    let mut report = ImportReport {
        imported: 0,
        created: 0,
        updated: 0,
        unchanged: 0,
        rejected: Vec::new(),
        rejected_count: 0,
        strategies: Vec::new(),
        rows: 0,
        committed: false,
        dry_run: opts.dry_run,
        source: label.clone(),
        elapsed_s: 0.0,
        rows_per_sec: 0.0,
    };
    let mut keys: HashMap<String, u64> = HashMap::new();
    let read = async {
        let mut rows = src.rows(&opts.query).await?;
        let mut columns: Option<row::Columns> = None;
        while let Some(next) = rows.next().await {
            let cells = next?;
            report.rows += 1;
            if report.rows > opts.max_rows {
                return Err(ImportError::Query(format!(
                    "the query gives more than {} rows; import it in parts (a WHERE or LIMIT)",
                    opts.max_rows
                )));
            }
            let cols = match &columns {
                Some(c) => c,
                None => columns.insert(row::Columns::resolve(rows.columns(), &opts.map)?),
            };
            let n = report.rows;
            let checked = match cols.spec(&cells, n) {
                Err(rejection) => Err(rejection),
                Ok(spec) => match keys.get(&spec.key) {
                    Some(first) => Err(Rejected {
                        row: spec.key.clone(),
                        error: format!(
                            "key {:?} appears twice in the query's rows (rows {first} and {n}); keys must be unique",
                            spec.key
                        ),
                    }),
                    None => {
                        keys.insert(spec.key.clone(), n);
                        checker.check(spec).await
                    }
                },
            };
            match checked {
                Ok(row) => {
                    if opts.dry_run {
                        let prev = imports::previous(store, &label, &row.key).await?;
                        let (outcome, id, version) = match prev {
                            Some(p) if p.content_sha256 == row.content_sha256 => {
                                ("unchanged", Some(p.strategy_id), Some(p.version))
                            }
                            Some(p) => ("updated", Some(p.strategy_id), None),
                            None => ("created", None, None),
                        };
                        count(&mut report, outcome);
                        report.strategies.push(ImportedStrategy {
                            id,
                            name: row.name.clone(),
                            row: row.key.clone(),
                            outcome,
                            version,
                        });
                    } else {
                        spool.push(&row)?;
                    }
                }
                Err(rejection) => {
                    report.rejected_count += 1;
                    if report.rejected.len() < MAX_REPORTED_REJECTIONS {
                        report.rejected.push(rejection);
                    }
                }
            }
        }
        Ok::<(), ImportError>(())
    };
    let read = read.await;
    src.close().await;
    read?;

    let all_or_nothing_failed = report.rejected_count > 0 && !opts.partial;
    if all_or_nothing_failed && opts.dry_run {
        // What would be stored is nothing: say so in the counts as well.
        report.imported = 0;
        report.created = 0;
        report.updated = 0;
        report.unchanged = 0;
        report.strategies.clear();
    }
    if !opts.dry_run && !all_or_nothing_failed && !spool.is_empty() {
        let src = ImportSource {
            source: &label,
            query: &opts.query,
            user_id: opts.user_id,
        };
        let mut outcomes = Vec::new();
        imports::apply(store, &src, spool.rows()?, |row, outcome| {
            outcomes.push((row.key.clone(), row.name.clone(), outcome));
        })
        .await?;
        for (key, name, outcome) in outcomes {
            let (word, version) = match outcome {
                Outcome::Created { .. } => ("created", Some(1)),
                Outcome::Updated { version, .. } => ("updated", Some(version)),
                Outcome::Unchanged { .. } => ("unchanged", None),
            };
            count(&mut report, word);
            report.strategies.push(ImportedStrategy {
                id: Some(outcome.strategy_id()),
                name,
                row: key,
                outcome: word,
                version,
            });
        }
        report.committed = true;
    } else if !opts.dry_run && !all_or_nothing_failed {
        // Nothing to store (no rows, or every row rejected with `partial`).
        report.committed = true;
    }
    report.elapsed_s = started.elapsed().as_secs_f64();
    report.rows_per_sec = if report.elapsed_s > 0.0 {
        report.rows as f64 / report.elapsed_s
    } else {
        0.0
    };
    tracing::info!(
        source = %report.source,
        rows = report.rows,
        imported = report.imported,
        unchanged = report.unchanged,
        rejected = report.rejected_count,
        committed = report.committed,
        "sql import"
    );
    Ok(report)
}

fn count(report: &mut ImportReport, outcome: &str) {
    match outcome {
        "created" => {
            report.created += 1;
            report.imported += 1;
        }
        "updated" => {
            report.updated += 1;
            report.imported += 1;
        }
        _ => report.unchanged += 1,
    }
}
