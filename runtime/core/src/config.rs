//! A strategy's configuration as clients and databases write it: parameters as a JSON object
//! (`{"fast": 10, "mode": "flip"}`) and symbol lists. One set of rules for every way in
//! (REST, SQL import, the evolution engine), each checked against what the strategy declared.

use serde_json::{Map, Value, json};

use crate::model::{Param, ParamValue, StrategyInfo};

/// Most symbols one strategy may trade.
pub const MAX_SYMBOLS: usize = 1000;

/// A configuration value that is not acceptable: the field at fault (`params.fast`,
/// `symbols`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The field, in the request's terms.
    pub field: String,
    /// What is wrong, for a user.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn error(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// `{"fast": 10, "mode": "flip"}` → parameters, each checked against `info`, so an error
/// names `params.<name>` and says what is wrong.
pub fn params_from_json(info: &StrategyInfo, v: &Value) -> Result<Vec<Param>, ConfigError> {
    let Some(obj) = v.as_object() else {
        return Err(error(
            "params",
            format!("params must be an object of name → value, got {v}"),
        ));
    };
    let mut out = Vec::with_capacity(obj.len());
    for (name, value) in obj {
        let field = format!("params.{name}");
        let value = match value {
            Value::Bool(b) => ParamValue::Boolean(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => ParamValue::Int(i),
                None => ParamValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => ParamValue::Choice(s.clone()),
            other => {
                return Err(error(
                    field,
                    format!("parameter `{name}` must be a number, boolean or string, got {other}"),
                ));
            }
        };
        let p = Param {
            name: name.clone(),
            value,
        };
        // Checked one by one so the error names the parameter at fault.
        info.resolve_params(std::slice::from_ref(&p))
            .map_err(|e| error(field, e))?;
        out.push(p);
    }
    Ok(out)
}

/// Parameters as the JSON object stored and shown.
pub fn params_to_json(params: &[Param]) -> Value {
    Value::Object(
        params
            .iter()
            .map(|p| {
                let v = match &p.value {
                    ParamValue::Boolean(b) => json!(b),
                    ParamValue::Int(i) => json!(i),
                    ParamValue::Float(x) => json!(x),
                    ParamValue::Choice(s) => json!(s),
                };
                (p.name.clone(), v)
            })
            .collect::<Map<_, _>>(),
    )
}

/// Check a list of symbols: at most [`MAX_SYMBOLS`], each 1 to 32 characters from letters,
/// digits and `. _ - / : ^ =`, no duplicates. The error's field is `field`.
pub fn check_symbols(field: &str, symbols: &[String]) -> Result<(), ConfigError> {
    if symbols.len() > MAX_SYMBOLS {
        return Err(error(
            field,
            format!("at most {MAX_SYMBOLS} symbols, got {}", symbols.len()),
        ));
    }
    for (i, s) in symbols.iter().enumerate() {
        if s.is_empty()
            || s.len() > 32
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/:^=".contains(c))
        {
            let shown: String = s.chars().take(40).collect();
            return Err(error(
                field,
                format!(
                    "symbol {shown:?} is not valid: use 1 to 32 characters from letters, digits and . _ - / : ^ ="
                ),
            ));
        }
        if symbols[..i].contains(s) {
            return Err(error(field, format!("symbol {s} is listed twice")));
        }
    }
    Ok(())
}

/// A strategy's name: 1 to 100 printable characters once trimmed; the trimmed name.
pub fn check_name(name: &str) -> Result<String, ConfigError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(error(
            "name",
            "name must have 1 to 100 printable characters",
        ));
    }
    Ok(name.to_string())
}

/// A strategy's description: at most 2000 characters; the trimmed text.
pub fn check_description(d: &str) -> Result<String, ConfigError> {
    if d.chars().count() > 2000 {
        return Err(error(
            "description",
            "description must have at most 2000 characters",
        ));
    }
    Ok(d.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ParamKind, ParamSpec};

    fn info() -> StrategyInfo {
        StrategyInfo {
            name: "t".into(),
            version: "1".into(),
            description: String::new(),
            symbols: vec![],
            params: vec![ParamSpec {
                name: "fast".into(),
                description: String::new(),
                kind: ParamKind::Int {
                    min: 2,
                    max: 200,
                    step: 1,
                },
                default: ParamValue::Int(10),
            }],
        }
    }

    #[test]
    fn parameters_round_trip_and_errors_name_the_parameter() {
        let p = params_from_json(&info(), &json!({"fast": 12})).unwrap();
        assert_eq!(params_to_json(&p), json!({"fast": 12}));
        let e = params_from_json(&info(), &json!({"fast": 1})).unwrap_err();
        assert_eq!(e.field, "params.fast");
        assert!(e.message.contains("outside 2..=200"), "{e}");
        let e = params_from_json(&info(), &json!([1])).unwrap_err();
        assert_eq!(e.field, "params");
    }

    #[test]
    fn symbols_are_checked_by_form_and_once_each() {
        check_symbols("symbols", &["SPY".into(), "BTC/USD".into()]).unwrap();
        let e = check_symbols("symbols", &["SPY".into(), "SPY".into()]).unwrap_err();
        assert_eq!(e.message, "symbol SPY is listed twice");
        assert!(check_symbols("symbols", &["a b".into()]).is_err());
        assert!(check_symbols("symbols", &[String::new()]).is_err());
    }
}
