//! Validated parameter values, with defaults filled in from the strategy's [`Info`](crate::Info).

use crate::ParamValue;
use crate::bindings::qtm::strategy::types as wit;

/// The parameters an instance was configured with, checked against their specs.
#[derive(Debug, Clone, Default)]
pub struct Params {
    values: Vec<(String, ParamValue)>,
}

impl Params {
    /// Merge `given` over the specs' defaults, refusing unknown names, wrong types, values out of
    /// range and unknown choices.
    pub fn resolve(specs: &[wit::ParamSpec], given: Vec<wit::Param>) -> Result<Self, String> {
        let mut values: Vec<(String, ParamValue)> = specs
            .iter()
            .map(|s| (s.name.clone(), s.default.clone()))
            .collect();
        for p in given {
            let Some(i) = specs.iter().position(|s| s.name == p.name) else {
                let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
                return Err(format!(
                    "unknown parameter `{}` (known: {})",
                    p.name,
                    known.join(", ")
                ));
            };
            values[i].1 = check(&specs[i], p.value)?;
        }
        Ok(Self { values })
    }

    /// The value of `name`, whatever its type.
    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
    /// An integer parameter.
    pub fn int(&self, name: &str) -> Result<i64, String> {
        match self.get(name) {
            Some(ParamValue::Int(v)) => Ok(*v),
            other => Err(mismatch(name, "an int", other)),
        }
    }
    /// A float parameter (integers are widened).
    pub fn float(&self, name: &str) -> Result<f64, String> {
        match self.get(name) {
            Some(ParamValue::Float(v)) => Ok(*v),
            Some(ParamValue::Int(v)) => Ok(*v as f64),
            other => Err(mismatch(name, "a float", other)),
        }
    }
    /// A boolean parameter.
    pub fn boolean(&self, name: &str) -> Result<bool, String> {
        match self.get(name) {
            Some(ParamValue::Boolean(v)) => Ok(*v),
            other => Err(mismatch(name, "a boolean", other)),
        }
    }
    /// A choice parameter.
    pub fn choice(&self, name: &str) -> Result<&str, String> {
        match self.get(name) {
            Some(ParamValue::Choice(v)) => Ok(v),
            other => Err(mismatch(name, "a choice", other)),
        }
    }
}

fn mismatch(name: &str, want: &str, got: Option<&ParamValue>) -> String {
    match got {
        None => format!("parameter `{name}` is not declared"),
        Some(v) => format!("parameter `{name}` is {v:?}, not {want}"),
    }
}

fn check(spec: &wit::ParamSpec, value: ParamValue) -> Result<ParamValue, String> {
    let name = &spec.name;
    match (&spec.kind, value) {
        (wit::ParamKind::Int(r), ParamValue::Int(v)) => {
            if v < r.min || v > r.max {
                return Err(format!(
                    "parameter `{name}` = {v} is outside {}..={}",
                    r.min, r.max
                ));
            }
            Ok(ParamValue::Int(v))
        }
        (wit::ParamKind::Float(r), ParamValue::Float(v)) => float_in(name, r, v),
        (wit::ParamKind::Float(r), ParamValue::Int(v)) => float_in(name, r, v as f64),
        (wit::ParamKind::Boolean, ParamValue::Boolean(v)) => Ok(ParamValue::Boolean(v)),
        (wit::ParamKind::Choice(choices), ParamValue::Choice(v)) => {
            if choices.contains(&v) {
                Ok(ParamValue::Choice(v))
            } else {
                Err(format!(
                    "parameter `{name}` = `{v}` is not one of: {}",
                    choices.join(", ")
                ))
            }
        }
        (kind, v) => {
            let want = match kind {
                wit::ParamKind::Int(_) => "an integer",
                wit::ParamKind::Float(_) => "a number",
                wit::ParamKind::Boolean => "true or false",
                wit::ParamKind::Choice(_) => "a choice",
            };
            let got = match &v {
                ParamValue::Int(i) => i.to_string(),
                ParamValue::Float(x) => x.to_string(),
                ParamValue::Boolean(b) => b.to_string(),
                ParamValue::Choice(c) => format!("`{c}`"),
            };
            Err(format!("parameter `{name}` expects {want}, got {got}"))
        }
    }
}

fn float_in(name: &str, r: &wit::FloatRange, v: f64) -> Result<ParamValue, String> {
    if !v.is_finite() || v < r.min || v > r.max {
        return Err(format!(
            "parameter `{name}` = {v} is outside {}..={}",
            r.min, r.max
        ));
    }
    Ok(ParamValue::Float(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ParamSpec;

    fn specs() -> Vec<wit::ParamSpec> {
        vec![
            ParamSpec::int("fast", 10, 2, 100, 1).spec,
            ParamSpec::float("quantity", 1.0, 0.0, 10.0, 0.1).spec,
            ParamSpec::choice("mode", "flip", &["flip", "long_only"]).spec,
        ]
    }

    fn p(name: &str, value: ParamValue) -> wit::Param {
        wit::Param {
            name: name.into(),
            value,
        }
    }

    #[test]
    fn defaults_fill_in_and_given_values_override() {
        let ps = Params::resolve(&specs(), vec![p("fast", ParamValue::Int(5))]).unwrap();
        assert_eq!(ps.int("fast").unwrap(), 5);
        assert_eq!(ps.float("quantity").unwrap(), 1.0);
        assert_eq!(ps.choice("mode").unwrap(), "flip");
        // An int given for a float parameter is widened.
        let ps = Params::resolve(&specs(), vec![p("quantity", ParamValue::Int(3))]).unwrap();
        assert_eq!(ps.float("quantity").unwrap(), 3.0);
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        let e = Params::resolve(&specs(), vec![p("fast", ParamValue::Int(101))]).unwrap_err();
        assert_eq!(e, "parameter `fast` = 101 is outside 2..=100");
        let e = Params::resolve(&specs(), vec![p("slow", ParamValue::Int(1))]).unwrap_err();
        assert_eq!(e, "unknown parameter `slow` (known: fast, quantity, mode)");
        let e =
            Params::resolve(&specs(), vec![p("mode", ParamValue::Choice("x".into()))]).unwrap_err();
        assert_eq!(e, "parameter `mode` = `x` is not one of: flip, long_only");
        let e = Params::resolve(&specs(), vec![p("quantity", ParamValue::Float(f64::NAN))])
            .unwrap_err();
        assert!(
            e.starts_with("parameter `quantity` = NaN is outside"),
            "{e}"
        );
        let e = Params::resolve(&specs(), vec![p("fast", ParamValue::Boolean(true))]).unwrap_err();
        assert_eq!(e, "parameter `fast` expects an integer, got true");
    }
}
