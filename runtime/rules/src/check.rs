//! Statements → a typed [`Program`]: names resolved, types checked, parameters validated.
//! Every problem is reported; an expression with an error gets the type `Error`, which is
//! accepted everywhere, so one mistake does not cascade into a dozen.

use std::collections::HashMap;

use crate::ast::{BinOp, Expr, ExprKind, Stmt};
use crate::diag::{Diagnostic, Pos};
use crate::{
    MAX_CHOICE_BYTES, MAX_CHOICES, MAX_LOOKBACK, MAX_PARAM_TEXT_BYTES, MAX_PARAMS, MAX_PERIOD,
    MAX_STATEMENTS,
};

/// The type of an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// A number fixed for the whole run: literals, number parameters, arithmetic on them.
    Number,
    /// A number per bar: bar fields, indicators, arithmetic involving them.
    Series,
    /// A boolean (per bar, or fixed).
    Bool,
    /// A choice parameter (index into the parameters); only compared with a string.
    Choice(usize),
    /// A string literal.
    Str,
    /// Already reported; accepted everywhere.
    Error,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Number => "number",
            Ty::Series => "series",
            Ty::Bool => "bool",
            Ty::Choice(_) => "choice",
            Ty::Str => "string",
            Ty::Error => "error",
        }
    }
    fn numeric(self) -> bool {
        matches!(self, Ty::Number | Ty::Series | Ty::Error)
    }
}

/// A bar field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `open`
    Open,
    /// `high`
    High,
    /// `low`
    Low,
    /// `close`
    Close,
    /// `volume`
    Volume,
}

/// The functions of the language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Func {
    /// `sma(src, period)`
    Sma,
    /// `ema(src, period)`
    Ema,
    /// `rsi(src, period)`
    Rsi,
    /// `atr(period)`
    Atr,
    /// `macd(src, fast, slow, signal)`: the MACD line.
    Macd,
    /// `macd_signal(src, fast, slow, signal)`: its signal line.
    MacdSignal,
    /// `bb_upper(src, period, k)`
    BbUpper,
    /// `bb_lower(src, period, k)`
    BbLower,
    /// `highest(src, period)`
    Highest,
    /// `lowest(src, period)`
    Lowest,
    /// `crossover(a, b)`
    Crossover,
    /// `crossunder(a, b)`
    Crossunder,
    /// `abs(x)`
    Abs,
    /// `min(a, b)`
    Min,
    /// `max(a, b)`
    Max,
}

/// Every function: name, value, and the kinds of its arguments (`S` any number or series,
/// `P` a period: a whole number fixed for the run, `K` a number fixed for the run).
const FUNCS: &[(&str, Func, &str)] = &[
    ("sma", Func::Sma, "SP"),
    ("ema", Func::Ema, "SP"),
    ("rsi", Func::Rsi, "SP"),
    ("atr", Func::Atr, "P"),
    ("macd", Func::Macd, "SPPP"),
    ("macd_signal", Func::MacdSignal, "SPPP"),
    ("bb_upper", Func::BbUpper, "SPK"),
    ("bb_lower", Func::BbLower, "SPK"),
    ("highest", Func::Highest, "SP"),
    ("lowest", Func::Lowest, "SP"),
    ("crossover", Func::Crossover, "SS"),
    ("crossunder", Func::Crossunder, "SS"),
    ("abs", Func::Abs, "S"),
    ("min", Func::Min, "SS"),
    ("max", Func::Max, "SS"),
];

impl Func {
    /// The function's name in the language.
    pub fn name(self) -> &'static str {
        FUNCS.iter().find(|f| f.1 == self).map_or("", |f| f.0)
    }
}

/// A checked expression: names resolved, type known.
#[derive(Debug, Clone, PartialEq)]
pub struct TExpr {
    /// What it computes.
    pub kind: TKind,
    /// Its type.
    pub ty: Ty,
    /// Where it starts in the program text.
    pub pos: Pos,
}

/// The kinds of checked expression.
#[derive(Debug, Clone, PartialEq)]
pub enum TKind {
    /// A literal number, or a boolean as 1 / 0.
    Const(f64),
    /// A number or bool parameter (index into [`Program::params`]).
    Param(usize),
    /// `choice == "value"` (or `!=` with `negate`).
    ChoiceIs {
        /// The parameter.
        param: usize,
        /// The compared value.
        value: String,
        /// `!=`.
        negate: bool,
    },
    /// A `let` (index into the program's lets).
    Let(usize),
    /// A bar field.
    Field(Field),
    /// A function call.
    Call(Func, Vec<TExpr>),
    /// `-x`
    Neg(Box<TExpr>),
    /// `not x`
    Not(Box<TExpr>),
    /// `a op b`
    Binary(BinOp, Box<TExpr>, Box<TExpr>),
    /// `x[n]`
    Lookback(Box<TExpr>, Box<TExpr>),
    /// Reported already.
    Error,
}

/// A parameter's type and range.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamKind {
    /// A whole number in `min..=max`, moved by `step` by optimisers.
    Int {
        /// Smallest value.
        min: i64,
        /// Largest value.
        max: i64,
        /// Optimiser step.
        step: i64,
    },
    /// A number in `min..=max`.
    Float {
        /// Smallest value.
        min: f64,
        /// Largest value.
        max: f64,
        /// Optimiser step.
        step: f64,
    },
    /// `true` or `false`.
    Bool,
    /// One of these names (the first is the default).
    Choice(Vec<String>),
}

/// A parameter's value.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    /// Of an `int` parameter.
    Int(i64),
    /// Of a `float` parameter.
    Float(f64),
    /// Of a `bool` parameter.
    Bool(bool),
    /// Of a `choice` parameter.
    Choice(String),
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Int(v) => write!(f, "{v}"),
            ParamValue::Float(v) => write!(f, "{v:?}"),
            ParamValue::Bool(v) => write!(f, "{v}"),
            ParamValue::Choice(v) => write!(f, "\"{v}\""),
        }
    }
}

/// A declared parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamDecl {
    /// Its name.
    pub name: String,
    /// Type and range.
    pub kind: ParamKind,
    /// The default value.
    pub default: ParamValue,
    /// Where it is declared.
    pub pos: Pos,
}

impl ParamDecl {
    /// The kind, default and range, as `qtm rules check` prints them
    /// (`int    default 10, 2..=200, step 1`).
    pub fn describe(&self) -> String {
        match &self.kind {
            ParamKind::Int { min, max, step } => {
                format!(
                    "int    default {}, {min}..={max}, step {step}",
                    self.default
                )
            }
            ParamKind::Float { min, max, step } => {
                format!(
                    "float  default {}, {min:?}..={max:?}, step {step:?}",
                    self.default
                )
            }
            ParamKind::Bool => format!("bool   default {}", self.default),
            ParamKind::Choice(c) => format!("choice default {}, one of {}", self.default, {
                c.iter()
                    .map(|c| format!("\"{c}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            }),
        }
    }
}

/// How orders are sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeKind {
    /// `equity_fraction(x)`: a fraction of equity, resolved at fill time.
    EquityFraction,
    /// `units(x)`: a number of units.
    Units,
}

/// The four boolean rules, in the order of [`Program::rules`].
pub const RULE_NAMES: [&str; 4] = ["entry_long", "exit_long", "entry_short", "exit_short"];

/// A checked program: everything `qtm` needs to describe it and the guest needs to run it.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    pub(crate) params: Vec<ParamDecl>,
    pub(crate) lets: Vec<(String, TExpr)>,
    pub(crate) rules: [Option<TExpr>; 4],
    pub(crate) size: Option<(SizeKind, TExpr)>,
    pub(crate) stop_loss: Option<TExpr>,
    pub(crate) take_profit: Option<TExpr>,
}

impl Program {
    /// The typed parameters, in declaration order.
    pub fn params(&self) -> &[ParamDecl] {
        &self.params
    }
    /// Which of `entry_long`, `exit_long`, `entry_short`, `exit_short` are defined.
    pub fn defined_rules(&self) -> Vec<&'static str> {
        RULE_NAMES
            .iter()
            .zip(&self.rules)
            .filter(|(_, r)| r.is_some())
            .map(|(n, _)| *n)
            .collect()
    }
    /// Whether `stop_loss` or `take_profit` is defined (bracket orders).
    pub fn has_exits(&self) -> bool {
        self.stop_loss.is_some() || self.take_profit.is_some()
    }
}

const KEYWORDS: &[&str] = &["param", "let", "and", "or", "not", "true", "false"];
const FIELDS: &[(&str, Field)] = &[
    ("open", Field::Open),
    ("high", Field::High),
    ("low", Field::Low),
    ("close", Field::Close),
    ("volume", Field::Volume),
];
const OTHER_RULES: &[&str] = &["size", "stop_loss", "take_profit"];
const SIZERS: &[&str] = &["equity_fraction", "units", "pct"];

#[derive(Clone, Copy)]
enum Binding {
    Param(usize),
    Let(usize),
}

struct Checker {
    diags: Vec<Diagnostic>,
    names: HashMap<String, (Binding, Pos)>,
    program: Program,
    rule_pos: HashMap<String, Pos>,
    /// Names of declarations that did not parse: using them is not a new problem.
    broken: Vec<String>,
    /// Bytes of parameter names and choices so far.
    param_text: usize,
}

/// Check parsed statements; `end` is where the text ends (for "missing rule" problems).
/// With `syntax_errors`, missing rules are not reported: the rule may be the line that did
/// not parse.
pub(crate) fn check(
    stmts: Vec<Stmt>,
    broken: Vec<String>,
    end: Pos,
    syntax_errors: bool,
    diags: &mut Vec<Diagnostic>,
) -> Option<Program> {
    let mut c = Checker {
        diags: Vec::new(),
        names: HashMap::new(),
        program: Program {
            params: Vec::new(),
            lets: Vec::new(),
            rules: [None, None, None, None],
            size: None,
            stop_loss: None,
            take_profit: None,
        },
        rule_pos: HashMap::new(),
        broken,
        param_text: 0,
    };
    if stmts.len() > MAX_STATEMENTS {
        c.err(
            end,
            format!(
                "the program has {} statements, more than {MAX_STATEMENTS}",
                stmts.len()
            ),
        );
    }
    for s in stmts.into_iter().take(MAX_STATEMENTS) {
        c.statement(s);
    }
    let p = &c.program;
    if syntax_errors {
        // Nothing more to say: the rules may be on the lines that did not parse.
    } else if p.rules[0].is_none() && p.rules[2].is_none() {
        c.err(
            end,
            "the program has no entry rule: define `entry_long` or `entry_short`",
        );
    }
    if !syntax_errors && c.program.size.is_none() {
        c.err(
            end,
            "the program has no `size` rule: add `size = equity_fraction(1.0)` or `size = units(…)`",
        );
    }
    let ok = c.diags.is_empty();
    diags.append(&mut c.diags);
    ok.then_some(c.program)
}

fn int_literal(e: &Expr) -> Option<i64> {
    match e.kind {
        ExprKind::Num { int, .. } => int,
        _ => None,
    }
}

fn num_literal(e: &Expr) -> Option<f64> {
    match e.kind {
        ExprKind::Num { value, .. } => Some(value),
        _ => None,
    }
}

impl Checker {
    fn err(&mut self, pos: Pos, msg: impl Into<String>) {
        self.diags.push(Diagnostic::new(pos, msg));
    }

    /// A new name: not a keyword, field, function or rule, and not taken.
    fn declare(&mut self, name: &str, pos: Pos, what: &str) -> bool {
        let reserved = if KEYWORDS.contains(&name) {
            Some("a keyword")
        } else if FIELDS.iter().any(|f| f.0 == name) {
            Some("a bar field")
        } else if FUNCS.iter().any(|f| f.0 == name) || SIZERS.contains(&name) {
            Some("a function")
        } else if RULE_NAMES.contains(&name) || OTHER_RULES.contains(&name) {
            Some("a rule")
        } else {
            None
        };
        if let Some(r) = reserved {
            self.err(pos, format!("`{name}` is {r} and cannot name a {what}"));
            return false;
        }
        if let Some((_, at)) = self.names.get(name) {
            let at = *at;
            self.err(pos, format!("`{name}` is already defined at {at}"));
            return false;
        }
        true
    }

    fn statement(&mut self, s: Stmt) {
        match s {
            Stmt::Param {
                name,
                name_pos,
                kind,
                kind_pos,
                args,
            } => {
                let mut declared = self.declare(&name, name_pos, "parameter");
                if declared && self.program.params.len() >= MAX_PARAMS {
                    self.err(
                        name_pos,
                        format!("the program has more than {MAX_PARAMS} parameters"),
                    );
                    declared = false;
                }
                if let Some((kind, default)) = self.param_kind(&name, &kind, kind_pos, &args)
                    && declared
                {
                    let text = name.len()
                        + match &kind {
                            ParamKind::Choice(c) => c.iter().map(String::len).sum(),
                            _ => 0,
                        };
                    self.param_text += text;
                    if self.param_text > MAX_PARAM_TEXT_BYTES {
                        self.err(
                            name_pos,
                            format!(
                                "parameter names and choices total more than {MAX_PARAM_TEXT_BYTES} bytes"
                            ),
                        );
                        return;
                    }
                    self.names.insert(
                        name.clone(),
                        (Binding::Param(self.program.params.len()), name_pos),
                    );
                    self.program.params.push(ParamDecl {
                        name,
                        kind,
                        default,
                        pos: name_pos,
                    });
                }
            }
            Stmt::Let {
                name,
                name_pos,
                value,
            } => {
                let declared = self.declare(&name, name_pos, "value");
                let v = self.expr(&value);
                if matches!(v.ty, Ty::Str | Ty::Choice(_)) {
                    self.err(
                        value.pos,
                        format!("`let {name}` cannot hold a {}", v.ty.name()),
                    );
                }
                if declared {
                    self.names.insert(
                        name.clone(),
                        (Binding::Let(self.program.lets.len()), name_pos),
                    );
                    self.program.lets.push((name, v));
                }
            }
            Stmt::Rule {
                name,
                name_pos,
                value,
            } => self.rule(name, name_pos, value),
        }
    }

    fn rule(&mut self, name: String, pos: Pos, value: Expr) {
        let index = RULE_NAMES.iter().position(|r| *r == name);
        if index.is_none() && !OTHER_RULES.contains(&name.as_str()) {
            let hint = if self.names.contains_key(&name) {
                format!("`{name}` is already defined; names are set once")
            } else {
                format!("use `let {name} = …` to name a value")
            };
            self.err(
                pos,
                format!(
                    "unknown rule `{name}` (rules: entry_long, exit_long, entry_short, exit_short, size, stop_loss, take_profit; {hint})"
                ),
            );
            return;
        }
        if let Some(at) = self.rule_pos.get(&name) {
            let at = *at;
            self.err(pos, format!("`{name}` is already defined at {at}"));
            return;
        }
        self.rule_pos.insert(name.clone(), pos);
        if let Some(i) = index {
            let v = self.expr(&value);
            if !matches!(v.ty, Ty::Bool | Ty::Error) {
                self.err(
                    value.pos,
                    format!("`{name}` must be a bool, found {}", v.ty.name()),
                );
            }
            self.program.rules[i] = Some(v);
            return;
        }
        let wanted: &[&str] = if name == "size" {
            &["equity_fraction", "units"]
        } else {
            &["pct"]
        };
        let shape = if name == "size" {
            "`size = equity_fraction(x)` or `size = units(x)`"
        } else {
            "`pct(x)` (percent of the entry price)"
        };
        let ExprKind::Call(f, args) = &value.kind else {
            self.err(value.pos, format!("`{name}` must be {shape}"));
            return;
        };
        if !wanted.contains(&f.as_str()) {
            self.err(value.pos, format!("`{name}` must be {shape}"));
            return;
        }
        if args.len() != 1 {
            self.err(
                value.pos,
                format!("`{f}` takes 1 argument, found {}", args.len()),
            );
            return;
        }
        let v = self.expr(&args[0]);
        if !v.ty.numeric() {
            self.err(
                args[0].pos,
                format!("`{f}` needs a number or series, found {}", v.ty.name()),
            );
        }
        match name.as_str() {
            "size" => {
                let kind = if f == "units" {
                    SizeKind::Units
                } else {
                    SizeKind::EquityFraction
                };
                self.program.size = Some((kind, v));
            }
            "stop_loss" => self.program.stop_loss = Some(v),
            _ => self.program.take_profit = Some(v),
        }
    }

    fn param_kind(
        &mut self,
        name: &str,
        kind: &str,
        pos: Pos,
        args: &[Expr],
    ) -> Option<(ParamKind, ParamValue)> {
        let n = args.len();
        let arity = |lo: usize, hi: usize| n >= lo && n <= hi;
        match kind {
            "int" => {
                if !arity(3, 4) {
                    self.err(
                        pos,
                        format!("`int` takes (default, min, max[, step]), found {n} arguments"),
                    );
                    return None;
                }
                let mut vals = Vec::new();
                for a in args {
                    match int_literal(a) {
                        Some(v) => vals.push(v),
                        None => {
                            self.err(a.pos, "`int` parameters take whole-number literals");
                            return None;
                        }
                    }
                }
                let (d, min, max, step) = (vals[0], vals[1], vals[2], *vals.get(3).unwrap_or(&1));
                if min > max {
                    self.err(
                        args[1].pos,
                        format!("`{name}`: min {min} is above max {max}"),
                    );
                    return None;
                }
                if d < min || d > max {
                    self.err(
                        args[0].pos,
                        format!("`{name}`: default {d} is outside {min}..={max}"),
                    );
                    return None;
                }
                if step < 1 {
                    self.err(
                        args[3].pos,
                        format!("`{name}`: step {step} must be at least 1"),
                    );
                    return None;
                }
                Some((ParamKind::Int { min, max, step }, ParamValue::Int(d)))
            }
            "float" => {
                if !arity(3, 4) {
                    self.err(
                        pos,
                        format!("`float` takes (default, min, max[, step]), found {n} arguments"),
                    );
                    return None;
                }
                let mut vals = Vec::new();
                for a in args {
                    match num_literal(a) {
                        Some(v) => vals.push(v),
                        None => {
                            self.err(a.pos, "`float` parameters take number literals");
                            return None;
                        }
                    }
                }
                let (d, min, max) = (vals[0], vals[1], vals[2]);
                if min > max {
                    self.err(
                        args[1].pos,
                        format!("`{name}`: min {min} is above max {max}"),
                    );
                    return None;
                }
                if d < min || d > max {
                    self.err(
                        args[0].pos,
                        format!("`{name}`: default {d} is outside {min}..={max}"),
                    );
                    return None;
                }
                // Without a step, optimisers move in hundredths of the range.
                let step = vals.get(3).copied().unwrap_or((max - min) / 100.0);
                if vals.len() == 4 && step <= 0.0 {
                    self.err(
                        args[3].pos,
                        format!("`{name}`: step {step} must be positive"),
                    );
                    return None;
                }
                Some((ParamKind::Float { min, max, step }, ParamValue::Float(d)))
            }
            "bool" => {
                let d = match args {
                    [a] => match a.kind {
                        ExprKind::Bool(b) => b,
                        _ => {
                            self.err(a.pos, "`bool` takes `true` or `false`");
                            return None;
                        }
                    },
                    _ => {
                        self.err(pos, format!("`bool` takes (default), found {n} arguments"));
                        return None;
                    }
                };
                Some((ParamKind::Bool, ParamValue::Bool(d)))
            }
            "choice" => {
                if n == 0 {
                    self.err(pos, "`choice` takes at least one string");
                    return None;
                }
                let mut choices: Vec<String> = Vec::new();
                for a in args {
                    match &a.kind {
                        ExprKind::Str(s) if s.is_empty() => {
                            self.err(a.pos, "choices cannot be empty");
                            return None;
                        }
                        ExprKind::Str(s) if s.len() > MAX_CHOICE_BYTES => {
                            self.err(
                                a.pos,
                                format!(
                                    "choice is {} bytes, longer than {MAX_CHOICE_BYTES}",
                                    s.len()
                                ),
                            );
                            return None;
                        }
                        ExprKind::Str(s) if choices.contains(s) => {
                            self.err(a.pos, format!("choice \"{s}\" is listed twice"));
                            return None;
                        }
                        ExprKind::Str(s) => choices.push(s.clone()),
                        _ => {
                            self.err(a.pos, "`choice` takes string literals (\"a\", \"b\", …)");
                            return None;
                        }
                    }
                }
                if choices.len() > MAX_CHOICES {
                    self.err(
                        pos,
                        format!(
                            "`choice` takes at most {MAX_CHOICES} strings, found {}",
                            choices.len()
                        ),
                    );
                    return None;
                }
                let d = choices[0].clone();
                Some((ParamKind::Choice(choices), ParamValue::Choice(d)))
            }
            other => {
                self.err(
                    pos,
                    format!("unknown parameter kind `{other}` (int, float, bool or choice)"),
                );
                None
            }
        }
    }

    fn expr(&mut self, e: &Expr) -> TExpr {
        let pos = e.pos;
        let t = |kind, ty| TExpr { kind, ty, pos };
        let error = || TExpr {
            kind: TKind::Error,
            ty: Ty::Error,
            pos,
        };
        match &e.kind {
            ExprKind::Num { value, .. } => t(TKind::Const(*value), Ty::Number),
            ExprKind::Bool(b) => t(TKind::Const(if *b { 1.0 } else { 0.0 }), Ty::Bool),
            ExprKind::Str(_) => t(TKind::Error, Ty::Str),
            ExprKind::Name(n) => {
                if let Some(f) = FIELDS.iter().find(|f| f.0 == n) {
                    return t(TKind::Field(f.1), Ty::Series);
                }
                match self.names.get(n) {
                    Some((Binding::Param(i), _)) => {
                        let i = *i;
                        let ty = match self.program.params[i].kind {
                            ParamKind::Int { .. } | ParamKind::Float { .. } => Ty::Number,
                            ParamKind::Bool => Ty::Bool,
                            ParamKind::Choice(_) => Ty::Choice(i),
                        };
                        t(TKind::Param(i), ty)
                    }
                    Some((Binding::Let(i), _)) => {
                        let i = *i;
                        t(TKind::Let(i), self.program.lets[i].1.ty)
                    }
                    None if self.broken.contains(n) => error(),
                    None => {
                        let hint = if FUNCS.iter().any(|f| f.0 == n) || SIZERS.contains(&n.as_str())
                        {
                            format!(" (`{n}` is a function: `{n}(…)`)")
                        } else if RULE_NAMES.contains(&n.as_str())
                            || OTHER_RULES.contains(&n.as_str())
                        {
                            " (rules cannot be read; name the value with `let`)".to_string()
                        } else {
                            String::new()
                        };
                        self.err(pos, format!("unknown name `{n}`{hint}"));
                        error()
                    }
                }
            }
            ExprKind::Call(name, args) => self.call(name, args, pos),
            ExprKind::Neg(x) => {
                let x = self.expr(x);
                if !x.ty.numeric() {
                    self.err(
                        pos,
                        format!("`-` needs a number or series, found {}", x.ty.name()),
                    );
                    return error();
                }
                let ty = x.ty;
                t(TKind::Neg(Box::new(x)), ty)
            }
            ExprKind::Not(x) => {
                let x = self.expr(x);
                if !matches!(x.ty, Ty::Bool | Ty::Error) {
                    self.err(pos, format!("`not` needs a bool, found {}", x.ty.name()));
                    return error();
                }
                t(TKind::Not(Box::new(x)), Ty::Bool)
            }
            ExprKind::Binary(op, a, b) => self.binary(*op, a, b, pos),
            ExprKind::Lookback(x, n) => {
                let x = self.expr(x);
                let n_pos = n.pos;
                let n = self.expr(n);
                let mut ok = true;
                if !matches!(x.ty, Ty::Number | Ty::Series | Ty::Bool | Ty::Error) {
                    self.err(
                        pos,
                        format!("`[…]` needs a series or bool, found {}", x.ty.name()),
                    );
                    ok = false;
                }
                if !matches!(n.ty, Ty::Number | Ty::Error) {
                    self.err(
                        n_pos,
                        format!(
                            "a lookback is a whole number fixed for the run, found {}",
                            n.ty.name()
                        ),
                    );
                    ok = false;
                } else if let TKind::Const(v) = n.kind
                    && !(v.fract() == 0.0 && (0.0..=MAX_LOOKBACK as f64).contains(&v))
                {
                    self.err(
                        n_pos,
                        format!("lookback {v} is not a whole number from 0 to {MAX_LOOKBACK}"),
                    );
                    ok = false;
                }
                if !ok {
                    return error();
                }
                let ty = x.ty;
                t(TKind::Lookback(Box::new(x), Box::new(n)), ty)
            }
        }
    }

    fn binary(&mut self, op: BinOp, a: &Expr, b: &Expr, pos: Pos) -> TExpr {
        let x = self.expr(a);
        let y = self.expr(b);
        let error = TExpr {
            kind: TKind::Error,
            ty: Ty::Error,
            pos,
        };
        if x.ty == Ty::Error || y.ty == Ty::Error {
            return error;
        }
        let sym = op.symbol();
        let ty = match op {
            BinOp::And | BinOp::Or => {
                if x.ty != Ty::Bool || y.ty != Ty::Bool {
                    self.err(
                        pos,
                        format!(
                            "`{sym}` needs bools on both sides, found {} and {}",
                            x.ty.name(),
                            y.ty.name()
                        ),
                    );
                    return error;
                }
                Ty::Bool
            }
            BinOp::Eq | BinOp::Ne
                if matches!(
                    (x.ty, y.ty),
                    (Ty::Choice(_), Ty::Str) | (Ty::Str, Ty::Choice(_))
                ) =>
            {
                let (param, s) = match (&x.ty, &a.kind, &b.kind) {
                    (Ty::Choice(i), _, ExprKind::Str(s)) => (*i, s.clone()),
                    (_, ExprKind::Str(s), _) => match y.ty {
                        Ty::Choice(i) => (i, s.clone()),
                        _ => return error,
                    },
                    _ => return error,
                };
                let decl = &self.program.params[param];
                if let ParamKind::Choice(cs) = &decl.kind
                    && !cs.contains(&s)
                {
                    let msg = format!(
                        "\"{s}\" is not a choice of `{}` ({})",
                        decl.name,
                        cs.iter()
                            .map(|c| format!("\"{c}\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    self.err(pos, msg);
                    return error;
                }
                return TExpr {
                    kind: TKind::ChoiceIs {
                        param,
                        value: s,
                        negate: op == BinOp::Ne,
                    },
                    ty: Ty::Bool,
                    pos,
                };
            }
            BinOp::Eq | BinOp::Ne if x.ty == Ty::Bool && y.ty == Ty::Bool => Ty::Bool,
            _ if matches!(x.ty, Ty::Str | Ty::Choice(_))
                || matches!(y.ty, Ty::Str | Ty::Choice(_)) =>
            {
                self.err(
                    pos,
                    "a choice parameter is only compared with one of its strings (`mode == \"flip\"`)",
                );
                return error;
            }
            _ if op.is_comparison() => {
                if !x.ty.numeric() || !y.ty.numeric() {
                    self.err(
                        pos,
                        format!(
                            "`{sym}` compares numbers or series, found {} and {}",
                            x.ty.name(),
                            y.ty.name()
                        ),
                    );
                    return error;
                }
                Ty::Bool
            }
            _ => {
                if !x.ty.numeric() || !y.ty.numeric() {
                    self.err(
                        pos,
                        format!(
                            "`{sym}` needs numbers or series, found {} and {}",
                            x.ty.name(),
                            y.ty.name()
                        ),
                    );
                    return error;
                }
                if x.ty == Ty::Number && y.ty == Ty::Number {
                    Ty::Number
                } else {
                    Ty::Series
                }
            }
        };
        TExpr {
            kind: TKind::Binary(op, Box::new(x), Box::new(y)),
            ty,
            pos,
        }
    }

    fn call(&mut self, name: &str, args: &[Expr], pos: Pos) -> TExpr {
        let error = TExpr {
            kind: TKind::Error,
            ty: Ty::Error,
            pos,
        };
        let Some(&(_, func, sig)) = FUNCS.iter().find(|f| f.0 == name) else {
            if SIZERS.contains(&name) {
                let rule = if name == "pct" {
                    "stop_loss` or `take_profit"
                } else {
                    "size"
                };
                self.err(
                    pos,
                    format!("`{name}(…)` is only the whole right side of `{rule}`"),
                );
            } else if self.names.contains_key(name) || FIELDS.iter().any(|f| f.0 == name) {
                self.err(pos, format!("`{name}` is not a function"));
            } else {
                let all: Vec<&str> = FUNCS.iter().map(|f| f.0).collect();
                self.err(
                    pos,
                    format!("unknown function `{name}` (functions: {})", all.join(", ")),
                );
            }
            // Still check the arguments, for their own errors.
            for a in args {
                self.expr(a);
            }
            return error;
        };
        let checked: Vec<TExpr> = args.iter().map(|a| self.expr(a)).collect();
        if args.len() != sig.len() {
            let what = match func {
                Func::Sma | Func::Ema | Func::Rsi | Func::Highest | Func::Lowest => {
                    "(source, period)"
                }
                Func::Atr => "(period)",
                Func::Macd | Func::MacdSignal => "(source, fast, slow, signal)",
                Func::BbUpper | Func::BbLower => "(source, period, k)",
                Func::Crossover | Func::Crossunder | Func::Min | Func::Max => "(a, b)",
                Func::Abs => "(x)",
            };
            self.err(
                pos,
                format!("`{name}` takes {what}, found {} arguments", args.len()),
            );
            return error;
        }
        let mut ok = true;
        let mut any_series = false;
        for ((a, kind), src) in checked.iter().zip(sig.chars()).zip(args) {
            if a.ty == Ty::Error {
                ok = false;
                continue;
            }
            match kind {
                'S' => {
                    if !a.ty.numeric() {
                        self.err(
                            src.pos,
                            format!(
                                "`{name}` needs a number or series here, found {}",
                                a.ty.name()
                            ),
                        );
                        ok = false;
                    }
                    any_series |= a.ty == Ty::Series;
                }
                _ => {
                    if a.ty != Ty::Number {
                        let what = if kind == 'P' { "period" } else { "factor" };
                        self.err(
                            src.pos,
                            format!(
                                "the {what} of `{name}` must be a number fixed for the run (a literal or a parameter), found {}",
                                a.ty.name()
                            ),
                        );
                        ok = false;
                    } else if kind == 'P'
                        && let TKind::Const(v) = a.kind
                        && !(v.fract() == 0.0 && (1.0..=MAX_PERIOD as f64).contains(&v))
                    {
                        self.err(
                            src.pos,
                            format!("period {v} of `{name}` is not a whole number from 1 to {MAX_PERIOD}"),
                        );
                        ok = false;
                    } else if kind == 'P'
                        && let TKind::Param(i) = a.kind
                        && let ParamKind::Int { min, max, .. } = self.program.params[i].kind
                        && (min < 1 || max > MAX_PERIOD as i64)
                    {
                        let p = &self.program.params[i].name;
                        self.err(
                            src.pos,
                            format!(
                                "`{p}` ({min}..={max}) is the period of `{name}`, which must stay within 1..={MAX_PERIOD}"
                            ),
                        );
                        ok = false;
                    }
                }
            }
        }
        if !ok {
            return error;
        }
        let ty = match func {
            Func::Crossover | Func::Crossunder => Ty::Bool,
            Func::Abs | Func::Min | Func::Max if !any_series => Ty::Number,
            _ => Ty::Series,
        };
        TExpr {
            kind: TKind::Call(func, checked),
            ty,
            pos,
        }
    }
}
