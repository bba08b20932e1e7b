//! Building a runnable instance of a stored strategy: its version's component, loaded and
//! instantiated off the engine thread with the stored parameters and symbols.

use qtm_store::orders::{AccountId, StrategyId};
use std::sync::Arc;

use serde_json::Value;

use super::LiveError;
use qtm_core::model::{Param, ParamValue};
use qtm_engine::StrategyRunner;
use qtm_sandbox::{Sandbox, StrategyCode};
use qtm_store::{self as store, Store};

/// Compiled code by content hash: every instance of the same component (clones, versions
/// uploaded twice) shares one compilation.
pub(crate) type CodeCache = std::sync::Mutex<std::collections::HashMap<String, Arc<StrategyCode>>>;

/// A strategy instance ready to be started or swapped in.
pub(crate) struct Spec {
    pub strategy_id: i64,
    pub instance_id: i64,
    pub version_id: i64,
    /// The version number.
    pub version: i64,
    pub name: String,
    pub symbols: Vec<String>,
    pub runner: Box<dyn StrategyRunner>,
}

/// The store account of a strategy's live trading.
pub(crate) fn account(strategy_id: i64) -> AccountId {
    AccountId::Strategy(StrategyId(strategy_id))
}

/// Stored parameters (`{"name": value}`) as parameters; values keep their JSON type and the
/// component's description checks them when instantiating.
fn params_of(v: &Value) -> Vec<Param> {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, value)| {
            let value = match value {
                Value::Bool(b) => ParamValue::Boolean(*b),
                Value::Number(n) => match n.as_i64() {
                    Some(i) => ParamValue::Int(i),
                    None => ParamValue::Float(n.as_f64()?),
                },
                Value::String(s) => ParamValue::Choice(s.clone()),
                _ => return None,
            };
            Some(Param {
                name: name.clone(),
                value,
            })
        })
        .collect()
}

/// Load strategy `strategy_id` at version number `version` (its current one when `None`) and
/// instantiate it with its stored parameters (those the version still declares) and symbols.
pub(crate) async fn build(
    store: &Store,
    sandbox: &Arc<Sandbox>,
    codes: &CodeCache,
    strategy_id: i64,
    version: Option<i64>,
) -> Result<Spec, LiveError> {
    let record = store::strategies::get(store, strategy_id).await?;
    let v = match version {
        Some(n) => store::strategies::version(store, strategy_id, n).await?,
        None => record.current_version.clone(),
    };
    let symbols = record.instance.symbols.clone();
    if symbols.is_empty() {
        return Err(LiveError::Refused(format!(
            "strategy {strategy_id} has no symbols to trade: configure them first"
        )));
    }
    let cached = codes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&v.content_sha256)
        .cloned();
    let bytes = match cached {
        Some(_) => Vec::new(),
        None => store::strategies::component(store, v.id).await?,
    };
    let params = params_of(&record.instance.params);
    let sandbox = sandbox.clone();
    let syms = symbols.clone();
    let number = v.version;
    let built = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let code = match cached {
            Some(c) => c,
            None => sandbox.load(&bytes).map_err(|e| e.to_string())?,
        };
        let declared = &code.info().params;
        let params: Vec<Param> = params
            .into_iter()
            .filter(|p| declared.iter().any(|d| d.name == p.name))
            .collect();
        let instance = code
            .instantiate(&params, &syms)
            .map_err(|e| e.to_string())?;
        Ok((code, Box::new(instance) as Box<dyn StrategyRunner>))
    })
    .await
    .map_err(|e| LiveError::Refused(format!("loading version {number} crashed: {e}")))?
    .map_err(|e| LiveError::Refused(format!("version {number} of strategy {strategy_id}: {e}")))?;
    let (code, runner) = built;
    codes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(v.content_sha256.clone(), code);
    Ok(Spec {
        strategy_id,
        instance_id: record.instance.id,
        version_id: v.id,
        version: v.version,
        name: record.strategy.name.clone(),
        symbols,
        runner,
    })
}

/// Open positions of `account` as (symbol, signed quantity, average price).
pub(crate) async fn carried_positions(
    store: &Store,
    account: AccountId,
) -> Result<Vec<(String, f64, f64)>, LiveError> {
    Ok(store::orders::open_positions(store, Some(account))
        .await?
        .into_iter()
        .map(|p| (p.symbol, p.quantity, p.avg_price))
        .collect())
}
