//! What a strategy says about itself: name, version, default symbols and typed parameters.

use crate::ParamValue;
use crate::bindings::qtm::strategy::types as wit;

/// A strategy's description, returned by the contract's `describe`.
#[derive(Debug, Clone)]
pub struct Info {
    name: String,
    version: String,
    description: String,
    symbols: Vec<String>,
    params: Vec<ParamSpec>,
}

impl Info {
    /// A description with a name (lowercase, `-` separated by convention) and a semver version.
    pub fn new(name: &str, version: &str) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            description: String::new(),
            symbols: Vec::new(),
            params: Vec::new(),
        }
    }
    /// One line shown in listings.
    pub fn description(mut self, text: &str) -> Self {
        self.description = text.into();
        self
    }
    /// Symbols traded when the user does not choose any.
    pub fn symbols(mut self, symbols: &[&str]) -> Self {
        self.symbols = symbols.iter().map(|s| s.to_string()).collect();
        self
    }
    /// Declare a parameter.
    pub fn param(mut self, spec: ParamSpec) -> Self {
        self.params.push(spec);
        self
    }
    /// The declared parameters.
    pub fn params(&self) -> &[ParamSpec] {
        &self.params
    }
    pub(crate) fn into_wit(self) -> wit::StrategyInfo {
        wit::StrategyInfo {
            name: self.name,
            version: self.version,
            description: self.description,
            symbols: self.symbols,
            params: self.params.into_iter().map(|p| p.spec).collect(),
        }
    }
}

/// A typed parameter with its default and range.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    pub(crate) spec: wit::ParamSpec,
}

impl ParamSpec {
    /// An integer in `min..=max`, moved in steps of `step` by optimisers.
    pub fn int(name: &str, default: i64, min: i64, max: i64, step: i64) -> Self {
        Self::of(
            name,
            wit::ParamKind::Int(wit::IntRange { min, max, step }),
            ParamValue::Int(default),
        )
    }
    /// A float in `min..=max`, moved in steps of `step` by optimisers.
    pub fn float(name: &str, default: f64, min: f64, max: f64, step: f64) -> Self {
        Self::of(
            name,
            wit::ParamKind::Float(wit::FloatRange { min, max, step }),
            ParamValue::Float(default),
        )
    }
    /// A yes/no switch.
    pub fn boolean(name: &str, default: bool) -> Self {
        Self::of(name, wit::ParamKind::Boolean, ParamValue::Boolean(default))
    }
    /// One of a fixed set of names.
    pub fn choice(name: &str, default: &str, choices: &[&str]) -> Self {
        Self::of(
            name,
            wit::ParamKind::Choice(choices.iter().map(|c| c.to_string()).collect()),
            ParamValue::Choice(default.into()),
        )
    }
    /// What the parameter means, shown to users.
    pub fn describe(mut self, text: &str) -> Self {
        self.spec.description = text.into();
        self
    }
    /// The parameter's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }
    fn of(name: &str, kind: wit::ParamKind, default: ParamValue) -> Self {
        Self {
            spec: wit::ParamSpec {
                name: name.into(),
                description: String::new(),
                kind,
                default,
            },
        }
    }
}
