//! Plain data types shared by every part of the host: market data, orders, fills, positions,
//! strategy descriptions. Nothing here knows about wasm, SQL or HTTP.

use serde::{Deserialize, Serialize};

/// Seconds in a UTC day.
pub const SECONDS_PER_DAY: i64 = 86_400;

/// Start (unix seconds, 00:00 UTC) of the calendar day holding `ts`.
pub fn day_start(ts: i64) -> i64 {
    ts - ts.rem_euclid(SECONDS_PER_DAY)
}

/// One OHLCV bar; `ts` is the bar's open time in unix seconds (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bar {
    pub ts: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

/// One trade or quote update.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    pub ts_ns: i64,
    pub price: f64,
    pub size: f64,
    pub bid: Option<f64>,
    pub ask: Option<f64>,
}

/// Direction of an order or fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Buy,
    Sell,
}

/// How long an order rests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TimeInForce {
    /// Good till cancelled.
    #[default]
    Gtc,
    /// Until the end of the trading day.
    Day,
    /// Immediate or cancel: what can fill now fills, the rest is cancelled.
    Ioc,
    /// Fill or kill: all at once or nothing.
    Fok,
}

/// How the size of an order is given.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    /// Units in the direction of the order's side.
    Units(f64),
    /// A fraction of equity resolved into whole units at fill time.
    EquityFraction(f64),
    /// Trade to this signed fraction of equity.
    TargetPercent(f64),
}

/// Distance of a trailing stop from the best price since placement.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trail {
    Amount(f64),
    Percent(f64),
}

/// Order type and its prices.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderKind {
    Market,
    Limit(f64),
    Stop(f64),
    StopLimit { stop: f64, limit: f64 },
    TrailingStop(Trail),
}

/// An order as a strategy or client asks for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderRequest {
    pub symbol: String,
    pub side: Side,
    pub quantity: Quantity,
    pub kind: OrderKind,
    #[serde(default)]
    pub time_in_force: TimeInForce,
    #[serde(default)]
    pub take_profit: Option<f64>,
    #[serde(default)]
    pub stop_loss: Option<f64>,
    #[serde(default)]
    pub oco_group: Option<String>,
    #[serde(default)]
    pub tag: Option<String>,
}

impl OrderRequest {
    /// A plain good-till-cancelled market order: no exits, no OCO group, no tag.
    pub fn market(symbol: impl Into<String>, side: Side, quantity: Quantity) -> Self {
        Self {
            symbol: symbol.into(),
            side,
            quantity,
            kind: OrderKind::Market,
            time_in_force: TimeInForce::Gtc,
            take_profit: None,
            stop_loss: None,
            oco_group: None,
            tag: None,
        }
    }
}

/// Changes to a resting order; `None` keeps a field.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct OrderChange {
    pub quantity: Option<f64>,
    pub limit_price: Option<f64>,
    pub stop_price: Option<f64>,
}

pub use crate::vocab::OrderStatus;

/// A resting order as reported to its strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenOrder {
    pub id: u64,
    pub request: OrderRequest,
    pub filled: f64,
    pub status: OrderStatus,
}

/// A (partial) execution of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fill {
    pub order_id: u64,
    pub side: Side,
    pub quantity: f64,
    pub price: f64,
    pub fee: f64,
    /// Time of the bar or tick that produced the fill, unix seconds.
    pub ts: i64,
    pub tag: Option<String>,
}

/// A signed position in one symbol.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Position {
    /// Negative when short.
    pub quantity: f64,
    pub avg_price: f64,
}

/// The latest value of an external signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub value: f64,
    pub ts_ns: i64,
    pub payload: String,
}

/// Severity of a strategy's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// A parameter value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Boolean(bool),
    Int(i64),
    Float(f64),
    Choice(String),
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Boolean(b) => write!(f, "{b}"),
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x}"),
            ParamValue::Choice(s) => write!(f, "{s}"),
        }
    }
}

/// A named parameter value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Param {
    pub name: String,
    pub value: ParamValue,
}

/// The type and range of a parameter (a gene for the evolution engine).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ParamKind {
    Int { min: i64, max: i64, step: i64 },
    Float { min: f64, max: f64, step: f64 },
    Boolean,
    Choice { choices: Vec<String> },
}

/// A declared parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamSpec {
    pub name: String,
    pub description: String,
    pub kind: ParamKind,
    pub default: ParamValue,
}

/// What a strategy says about itself (`describe`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub symbols: Vec<String>,
    pub params: Vec<ParamSpec>,
}

impl StrategyInfo {
    /// Check `given` against the declared parameters and fill in defaults.
    ///
    /// The host validates instead of trusting the guest's own checks: a machine-made or hostile
    /// strategy must not be handed values outside the ranges it declared.
    pub fn resolve_params(&self, given: &[Param]) -> Result<Vec<Param>, String> {
        let mut out: Vec<Param> = self
            .params
            .iter()
            .map(|s| Param {
                name: s.name.clone(),
                value: s.default.clone(),
            })
            .collect();
        for p in given {
            let Some(i) = self.params.iter().position(|s| s.name == p.name) else {
                let known: Vec<&str> = self.params.iter().map(|s| s.name.as_str()).collect();
                return Err(format!(
                    "unknown parameter `{}` for {} (known: {})",
                    p.name,
                    self.name,
                    known.join(", ")
                ));
            };
            out[i].value = self.params[i].check(&p.value)?;
        }
        Ok(out)
    }
}

impl ParamSpec {
    /// Validate one value against this spec, converting where it is unambiguous
    /// (an integer for a float, a number written as text on the command line).
    pub fn check(&self, v: &ParamValue) -> Result<ParamValue, String> {
        let name = &self.name;
        let parsed = |s: &str| -> Option<f64> { s.trim().parse::<f64>().ok() };
        match (&self.kind, v) {
            (ParamKind::Int { min, max, .. }, v) => {
                let i = match v {
                    ParamValue::Int(i) => *i,
                    ParamValue::Float(x) if x.fract() == 0.0 && x.is_finite() => *x as i64,
                    ParamValue::Choice(s) => s
                        .trim()
                        .parse::<i64>()
                        .map_err(|_| format!("parameter `{name}` must be an integer, got `{s}`"))?,
                    other => {
                        return Err(format!(
                            "parameter `{name}` must be an integer, got {other}"
                        ));
                    }
                };
                if i < *min || i > *max {
                    return Err(format!("parameter `{name}` = {i} is outside {min}..={max}"));
                }
                Ok(ParamValue::Int(i))
            }
            (ParamKind::Float { min, max, .. }, v) => {
                let x = match v {
                    ParamValue::Float(x) => *x,
                    ParamValue::Int(i) => *i as f64,
                    ParamValue::Choice(s) => parsed(s)
                        .ok_or_else(|| format!("parameter `{name}` must be a number, got `{s}`"))?,
                    other => {
                        return Err(format!("parameter `{name}` must be a number, got {other}"));
                    }
                };
                if !x.is_finite() || x < *min || x > *max {
                    return Err(format!("parameter `{name}` = {x} is outside {min}..={max}"));
                }
                Ok(ParamValue::Float(x))
            }
            (ParamKind::Boolean, v) => match v {
                ParamValue::Boolean(b) => Ok(ParamValue::Boolean(*b)),
                ParamValue::Choice(s) if s == "true" || s == "false" => {
                    Ok(ParamValue::Boolean(s == "true"))
                }
                other => Err(format!(
                    "parameter `{name}` must be true or false, got {other}"
                )),
            },
            (ParamKind::Choice { choices }, v) => {
                let s = v.to_string();
                if choices.contains(&s) {
                    Ok(ParamValue::Choice(s))
                } else {
                    Err(format!(
                        "parameter `{name}` = `{s}` is not one of: {}",
                        choices.join(", ")
                    ))
                }
            }
        }
    }
}

/// A round trip (or the open part of one) in the trade list.
///
/// `quantity` is negative for shorts; `pnl` is net of the fees of both fills (the entry fee
/// apportioned by quantity when a position is closed in parts); an open trade has no exit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trade {
    pub symbol: String,
    /// Unix seconds of the entry fill's bar.
    pub entry_ts: i64,
    pub exit_ts: Option<i64>,
    pub entry_price: f64,
    pub exit_price: Option<f64>,
    pub quantity: f64,
    pub pnl: f64,
    pub fees: f64,
}

/// One point of an equity curve: account value after the bar(s) at `ts` were processed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EquityPoint {
    /// Unix seconds (bar open time, as in the data).
    pub ts: i64,
    pub equity: f64,
    /// Whether any position was open at this point (for exposure).
    pub in_market: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> StrategyInfo {
        StrategyInfo {
            name: "t".into(),
            version: "1".into(),
            description: String::new(),
            symbols: vec![],
            params: vec![
                ParamSpec {
                    name: "fast".into(),
                    description: String::new(),
                    kind: ParamKind::Int {
                        min: 2,
                        max: 50,
                        step: 1,
                    },
                    default: ParamValue::Int(10),
                },
                ParamSpec {
                    name: "q".into(),
                    description: String::new(),
                    kind: ParamKind::Float {
                        min: 0.0,
                        max: 1.0,
                        step: 0.1,
                    },
                    default: ParamValue::Float(1.0),
                },
                ParamSpec {
                    name: "mode".into(),
                    description: String::new(),
                    kind: ParamKind::Choice {
                        choices: vec!["flip".into(), "long_only".into()],
                    },
                    default: ParamValue::Choice("long_only".into()),
                },
            ],
        }
    }

    fn p(name: &str, v: ParamValue) -> Param {
        Param {
            name: name.into(),
            value: v,
        }
    }

    #[test]
    fn command_line_text_is_converted_to_the_declared_type() {
        let got = info()
            .resolve_params(&[
                p("fast", ParamValue::Choice("12".into())),
                p("q", ParamValue::Choice("0.5".into())),
                p("mode", ParamValue::Choice("flip".into())),
            ])
            .unwrap();
        assert_eq!(got[0].value, ParamValue::Int(12));
        assert_eq!(got[1].value, ParamValue::Float(0.5));
        assert_eq!(got[2].value, ParamValue::Choice("flip".into()));
    }

    #[test]
    fn out_of_range_and_unknown_parameters_are_refused() {
        let e = info()
            .resolve_params(&[p("fast", ParamValue::Int(51))])
            .unwrap_err();
        assert_eq!(e, "parameter `fast` = 51 is outside 2..=50");
        let e = info()
            .resolve_params(&[p("slow", ParamValue::Int(5))])
            .unwrap_err();
        assert_eq!(e, "unknown parameter `slow` for t (known: fast, q, mode)");
        let e = info()
            .resolve_params(&[p("fast", ParamValue::Choice("x".into()))])
            .unwrap_err();
        assert_eq!(e, "parameter `fast` must be an integer, got `x`");
        let e = info()
            .resolve_params(&[p("q", ParamValue::Float(f64::INFINITY))])
            .unwrap_err();
        assert_eq!(e, "parameter `q` = inf is outside 0..=1");
    }
}
