//! The syntax tree, as parsed (names not yet resolved, types not yet known).

use crate::diag::Pos;

/// Binary operators, in the order of the grammar's precedence levels (lowest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinOp {
    /// `or`
    Or,
    /// `and`
    And,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
}

impl BinOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "or",
            BinOp::And => "and",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        }
    }

    pub(crate) fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge | BinOp::Eq | BinOp::Ne
        )
    }
}

/// An expression and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Its first character (for an operator: the operator).
    pub pos: Pos,
}

/// The kinds of expression.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// A number literal (`int` when written without fraction or exponent).
    Num {
        /// The value.
        value: f64,
        /// The value as an integer, when it was written as one.
        int: Option<i64>,
    },
    /// `true` or `false`.
    Bool(bool),
    /// A string literal: only a choice parameter is compared with one.
    Str(String),
    /// A name: a parameter, a `let`, or a bar field.
    Name(String),
    /// `f(args)`.
    Call(String, Vec<Expr>),
    /// `-x`.
    Neg(Box<Expr>),
    /// `not x`.
    Not(Box<Expr>),
    /// `a op b`.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `x[n]`: the value of `x` `n` bars ago.
    Lookback(Box<Expr>, Box<Expr>),
}

/// One statement (a line of the program).
#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    /// `param NAME = kind(args)`.
    Param {
        /// The parameter's name.
        name: String,
        /// Where the name is.
        name_pos: Pos,
        /// `int`, `float`, `bool` or `choice`.
        kind: String,
        /// Where the kind is.
        kind_pos: Pos,
        /// The kind's arguments, as expressions (literals are checked later).
        args: Vec<Expr>,
    },
    /// `let NAME = expr`.
    Let {
        /// The name.
        name: String,
        /// Where the name is.
        name_pos: Pos,
        /// Its definition.
        value: Expr,
    },
    /// `RULE = expr` (`entry_long`, `size`, …).
    Rule {
        /// The rule's name.
        name: String,
        /// Where the name is.
        name_pos: Pos,
        /// Its definition.
        value: Expr,
    },
}
