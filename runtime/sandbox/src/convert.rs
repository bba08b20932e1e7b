//! Conversions between the generated contract types and the host's plain `model` types.

use super::bindings::latest::qtm::strategy::types as wit;
use qtm_core::model::{
    Bar, Fill, LogLevel, OpenOrder, OrderKind, OrderRequest, OrderStatus, ParamKind, ParamSpec,
    ParamValue, Quantity, Side, StrategyInfo, Tick, TimeInForce, Trail,
};

pub fn log_level(l: wit::LogLevel) -> LogLevel {
    match l {
        wit::LogLevel::Trace => LogLevel::Trace,
        wit::LogLevel::Debug => LogLevel::Debug,
        wit::LogLevel::Info => LogLevel::Info,
        wit::LogLevel::Warn => LogLevel::Warn,
        wit::LogLevel::Error => LogLevel::Error,
    }
}

pub fn bar_to_wit(b: &Bar) -> wit::Bar {
    wit::Bar {
        ts: b.ts,
        open: b.open,
        high: b.high,
        low: b.low,
        close: b.close,
        volume: b.volume,
    }
}

pub fn tick_to_wit(symbol_id: u32, t: &Tick) -> wit::Tick {
    wit::Tick {
        symbol_id,
        ts_ns: t.ts_ns,
        price: t.price,
        size: t.size,
        bid: t.bid,
        ask: t.ask,
    }
}

fn side_to_wit(s: Side) -> wit::Side {
    match s {
        Side::Buy => wit::Side::Buy,
        Side::Sell => wit::Side::Sell,
    }
}

pub fn fill_to_wit(symbol_id: u32, f: &Fill) -> wit::Fill {
    wit::Fill {
        order_id: f.order_id,
        symbol_id,
        side: side_to_wit(f.side),
        quantity: f.quantity,
        price: f.price,
        fee: f.fee,
        ts: f.ts,
        tag: f.tag.clone(),
    }
}

pub fn order_request_from_wit(o: wit::OrderRequest) -> OrderRequest {
    OrderRequest {
        symbol: o.symbol,
        side: match o.side {
            wit::Side::Buy => Side::Buy,
            wit::Side::Sell => Side::Sell,
        },
        quantity: match o.quantity {
            wit::Quantity::Units(q) => Quantity::Units(q),
            wit::Quantity::EquityFraction(f) => Quantity::EquityFraction(f),
            wit::Quantity::TargetPercent(f) => Quantity::TargetPercent(f),
        },
        kind: match o.kind {
            wit::OrderKind::Market => OrderKind::Market,
            wit::OrderKind::Limit(p) => OrderKind::Limit(p),
            wit::OrderKind::Stop(p) => OrderKind::Stop(p),
            wit::OrderKind::StopLimit(sl) => OrderKind::StopLimit {
                stop: sl.stop,
                limit: sl.limit,
            },
            wit::OrderKind::TrailingStop(wit::Trail::Amount(a)) => {
                OrderKind::TrailingStop(Trail::Amount(a))
            }
            wit::OrderKind::TrailingStop(wit::Trail::Percent(p)) => {
                OrderKind::TrailingStop(Trail::Percent(p))
            }
        },
        time_in_force: match o.time_in_force {
            wit::TimeInForce::Gtc => TimeInForce::Gtc,
            wit::TimeInForce::Day => TimeInForce::Day,
            wit::TimeInForce::Ioc => TimeInForce::Ioc,
            wit::TimeInForce::Fok => TimeInForce::Fok,
        },
        take_profit: o.take_profit,
        stop_loss: o.stop_loss,
        oco_group: o.oco_group,
        tag: o.tag,
    }
}

fn order_request_to_wit(o: OrderRequest) -> wit::OrderRequest {
    wit::OrderRequest {
        symbol: o.symbol,
        side: side_to_wit(o.side),
        quantity: match o.quantity {
            Quantity::Units(q) => wit::Quantity::Units(q),
            Quantity::EquityFraction(f) => wit::Quantity::EquityFraction(f),
            Quantity::TargetPercent(f) => wit::Quantity::TargetPercent(f),
        },
        kind: match o.kind {
            OrderKind::Market => wit::OrderKind::Market,
            OrderKind::Limit(p) => wit::OrderKind::Limit(p),
            OrderKind::Stop(p) => wit::OrderKind::Stop(p),
            OrderKind::StopLimit { stop, limit } => {
                wit::OrderKind::StopLimit(wit::StopLimit { stop, limit })
            }
            OrderKind::TrailingStop(Trail::Amount(a)) => {
                wit::OrderKind::TrailingStop(wit::Trail::Amount(a))
            }
            OrderKind::TrailingStop(Trail::Percent(p)) => {
                wit::OrderKind::TrailingStop(wit::Trail::Percent(p))
            }
        },
        time_in_force: match o.time_in_force {
            TimeInForce::Gtc => wit::TimeInForce::Gtc,
            TimeInForce::Day => wit::TimeInForce::Day,
            TimeInForce::Ioc => wit::TimeInForce::Ioc,
            TimeInForce::Fok => wit::TimeInForce::Fok,
        },
        take_profit: o.take_profit,
        stop_loss: o.stop_loss,
        oco_group: o.oco_group,
        tag: o.tag,
    }
}

pub fn open_order_to_wit(o: OpenOrder) -> wit::OpenOrder {
    wit::OpenOrder {
        id: o.id,
        request: order_request_to_wit(o.request),
        filled: o.filled,
        status: match o.status {
            OrderStatus::Pending => wit::OrderStatus::Pending,
            OrderStatus::PartiallyFilled => wit::OrderStatus::PartiallyFilled,
            // Only working orders rest; the contract calls an accepted one open.
            OrderStatus::Accepted
            | OrderStatus::Filled
            | OrderStatus::Cancelled
            | OrderStatus::Rejected => wit::OrderStatus::Open,
        },
    }
}

pub fn param_value_to_wit(v: &ParamValue) -> wit::ParamValue {
    match v {
        ParamValue::Int(i) => wit::ParamValue::Int(*i),
        ParamValue::Float(f) => wit::ParamValue::Float(*f),
        ParamValue::Boolean(b) => wit::ParamValue::Boolean(*b),
        ParamValue::Choice(s) => wit::ParamValue::Choice(s.clone()),
    }
}

fn param_value_from_wit(v: wit::ParamValue) -> ParamValue {
    match v {
        wit::ParamValue::Int(i) => ParamValue::Int(i),
        wit::ParamValue::Float(f) => ParamValue::Float(f),
        wit::ParamValue::Boolean(b) => ParamValue::Boolean(b),
        wit::ParamValue::Choice(s) => ParamValue::Choice(s),
    }
}

/// Every cap `describe` output is held to (`caps::INFO_*`); `Err` names each one broken.
fn check_info(i: &wit::StrategyInfo) -> Result<(), String> {
    use super::caps::*;
    let mut problems = Vec::new();
    let text = |problems: &mut Vec<String>, field: String, value: &str, max: usize| {
        if let Err(e) = check(&field, value, max) {
            problems.push(e);
        }
    };
    text(&mut problems, "name".into(), &i.name, INFO_NAME_BYTES);
    text(
        &mut problems,
        "version".into(),
        &i.version,
        INFO_VERSION_BYTES,
    );
    text(
        &mut problems,
        "description".into(),
        &i.description,
        INFO_DESCRIPTION_BYTES,
    );
    for (n, s) in i.symbols.iter().enumerate().take(INFO_SYMBOLS) {
        text(&mut problems, format!("symbol {n}"), s, SYMBOL_BYTES);
    }
    for p in i.params.iter().take(INFO_PARAMS) {
        let name: String = p.name.chars().take(INFO_NAME_BYTES).collect();
        text(
            &mut problems,
            format!("parameter `{name}`'s name"),
            &p.name,
            INFO_NAME_BYTES,
        );
        text(
            &mut problems,
            format!("parameter `{name}`'s description"),
            &p.description,
            INFO_DESCRIPTION_BYTES,
        );
        if let wit::ParamKind::Choice(c) = &p.kind {
            if c.len() > INFO_CHOICES {
                problems.push(format!(
                    "parameter `{name}` has {} choices, over the cap of {INFO_CHOICES}",
                    c.len()
                ));
            }
            for choice in c.iter().take(INFO_CHOICES) {
                text(
                    &mut problems,
                    format!("a choice of `{name}`"),
                    choice,
                    INFO_NAME_BYTES,
                );
            }
        }
    }
    if i.symbols.len() > INFO_SYMBOLS {
        problems.push(format!(
            "{} default symbols, over the cap of {INFO_SYMBOLS}",
            i.symbols.len()
        ));
    }
    if i.params.len() > INFO_PARAMS {
        problems.push(format!(
            "{} parameters, over the cap of {INFO_PARAMS}",
            i.params.len()
        ));
    }
    let total = i.name.len()
        + i.version.len()
        + i.description.len()
        + i.symbols.iter().map(String::len).sum::<usize>()
        + i.params
            .iter()
            .map(|p| {
                p.name.len()
                    + p.description.len()
                    + match &p.kind {
                        wit::ParamKind::Choice(c) => c.iter().map(String::len).sum(),
                        _ => 0,
                    }
                    + match &p.default {
                        wit::ParamValue::Choice(c) => c.len(),
                        _ => 0,
                    }
            })
            .sum::<usize>();
    if total > INFO_TOTAL_BYTES {
        problems.push(format!(
            "the description totals {total} bytes, over the cap of {INFO_TOTAL_BYTES}"
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    let shown = problems.len().min(8);
    let mut msg = format!(
        "describe output breaks its caps: {}",
        problems[..shown].join("; ")
    );
    if problems.len() > shown {
        msg.push_str(&format!("; and {} more", problems.len() - shown));
    }
    Err(msg)
}

/// The strategy's description, once it is within its caps.
pub fn info_from_wit(i: wit::StrategyInfo) -> Result<StrategyInfo, String> {
    check_info(&i)?;
    Ok(StrategyInfo {
        name: i.name,
        version: i.version,
        description: i.description,
        symbols: i.symbols,
        params: i
            .params
            .into_iter()
            .map(|p| ParamSpec {
                name: p.name,
                description: p.description,
                kind: match p.kind {
                    wit::ParamKind::Int(r) => ParamKind::Int {
                        min: r.min,
                        max: r.max,
                        step: r.step,
                    },
                    wit::ParamKind::Float(r) => ParamKind::Float {
                        min: r.min,
                        max: r.max,
                        step: r.step,
                    },
                    wit::ParamKind::Boolean => ParamKind::Boolean,
                    wit::ParamKind::Choice(c) => ParamKind::Choice { choices: c },
                },
                default: param_value_from_wit(p.default),
            })
            .collect(),
    })
}
