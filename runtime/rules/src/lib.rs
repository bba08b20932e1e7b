//! # qtm-rules: the rule language
//!
//! A `.rules` file declares typed parameters, named values and the rules of a strategy:
//!
//! ```text
//! param fast = int(10, 2, 200)
//! param slow = int(30, 5, 500)
//! let f = sma(close, fast)
//! let s = sma(close, slow)
//! entry_long  = crossover(f, s)
//! entry_short = crossunder(f, s)
//! size = equity_fraction(1.0)
//! ```
//!
//! [`check`] turns text into a typed [`Program`] or the list of every problem, each at a
//! `line:col` ([`Diagnostic`]). It never panics and its work is bounded whatever the input:
//! the text, its tokens, statements and expression nesting are capped (the constants below),
//! and the parser's recursion is bounded by [`MAX_DEPTH`], so 10,000 nested parentheses are a
//! diagnostic, not a stack overflow. [`Program::plan`] binds parameter values and flattens the
//! program into a [`Plan`]; with the `eval` feature, [`eval::Machine`] runs a plan bar by bar
//! on the guest SDK's indicators. The host never evaluates rules: the plan runs inside the
//! sandbox, in the rules guest (`strategies/rules`), into which [`embed`] writes the program.
//!
//! The language is described in `docs/rules.md`.

#![warn(missing_docs)]

pub mod ast;
mod check;
mod diag;
pub mod embed;
#[cfg(feature = "eval")]
pub mod eval;
mod lexer;
mod parser;
mod plan;

pub use check::{
    Field, Func, ParamDecl, ParamKind, ParamValue, Program, RULE_NAMES, SizeKind, TExpr, TKind, Ty,
};
pub use diag::{Diagnostic, Pos};
pub use plan::{Op, Plan, Slot, binary};

/// Largest program text, in bytes (comments included: the guest reads past them on fuel too).
pub const MAX_SOURCE_BYTES: usize = 32 * 1024;
/// Most tokens (names, numbers, strings, operators; not line breaks or comments). The rules
/// guest parses its program again at `configure`, under the sandbox's fuel: this cap keeps
/// that under about half of the default budget of a call, whatever the shape of the text.
pub const MAX_TOKENS: usize = 2_000;
/// Most statements (lines with a declaration or rule).
pub const MAX_STATEMENTS: usize = 250;
/// Deepest expression: nesting of parentheses, calls, operators and lookbacks.
pub const MAX_DEPTH: u32 = 64;
/// Most parameters (the sandbox's cap on what `describe` may return).
pub const MAX_PARAMS: usize = 64;
/// Most strings of one `choice` (the sandbox's cap).
pub const MAX_CHOICES: usize = 64;
/// Longest choice string, in bytes (the sandbox's cap on names in `describe`).
pub const MAX_CHOICE_BYTES: usize = 64;
/// Most bytes of parameter names and choices together (an eighth of the sandbox's cap on the
/// whole `describe` answer; strings are the dearest part of parsing inside the guest).
pub const MAX_PARAM_TEXT_BYTES: usize = 8 * 1024;
/// Longest name, in characters.
pub const MAX_IDENT_CHARS: usize = 64;
/// Longest indicator period, in bars.
pub const MAX_PERIOD: usize = 100_000;
/// Farthest lookback `x[n]`, in bars.
pub const MAX_LOOKBACK: usize = 10_000;
/// Most operations a plan evaluates per bar.
pub const MAX_PLAN_OPS: usize = 10_000;
/// Most diagnostics reported for one text (the rest are counted in a last one).
pub const MAX_DIAGNOSTICS: usize = 100;

/// Check a program: its typed form, or every problem found, sorted by position.
pub fn check(source: &str) -> Result<Program, Vec<Diagnostic>> {
    if source.len() > MAX_SOURCE_BYTES {
        return Err(vec![Diagnostic::new(
            Pos::START,
            format!(
                "program is {} bytes, larger than the {MAX_SOURCE_BYTES} byte limit",
                source.len()
            ),
        )]);
    }
    let mut diags = Vec::new();
    let tokens = match lexer::lex(source, &mut diags) {
        Ok(t) => t,
        Err(too_many) => return Err(vec![too_many]),
    };
    let end = tokens.last().map_or(Pos::START, |t| t.pos);
    let (stmts, broken) = parser::parse(&tokens, &mut diags);
    let syntax_errors = !diags.is_empty();
    let program = check::check(stmts, broken, end, syntax_errors, &mut diags);
    match program {
        Some(p) if diags.is_empty() => Ok(p),
        _ => {
            diags.sort_by_key(|d| d.pos);
            diags.dedup();
            if diags.len() > MAX_DIAGNOSTICS {
                let more = diags.len() - MAX_DIAGNOSTICS;
                diags.truncate(MAX_DIAGNOSTICS);
                let pos = diags.last().map_or(Pos::START, |d| d.pos);
                diags.push(Diagnostic::new(
                    pos,
                    format!("{more} more problems not shown"),
                ));
            }
            Err(diags)
        }
    }
}

/// [`check`] for bytes that may not be UTF-8 (files, database rows): invalid UTF-8 is a
/// diagnostic at the position of the first bad byte.
pub fn check_bytes(source: &[u8]) -> Result<Program, Vec<Diagnostic>> {
    if source.len() > MAX_SOURCE_BYTES {
        return Err(vec![Diagnostic::new(
            Pos::START,
            format!(
                "program is {} bytes, larger than the {MAX_SOURCE_BYTES} byte limit",
                source.len()
            ),
        )]);
    }
    match std::str::from_utf8(source) {
        Ok(s) => check(s),
        Err(e) => {
            // Valid up to the error by definition, so the prefix is text.
            let good = std::str::from_utf8(&source[..e.valid_up_to()]).unwrap_or("");
            let line = good.matches('\n').count() as u32 + 1;
            let col = good.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1;
            Err(vec![Diagnostic::new(
                Pos { line, col },
                format!("invalid UTF-8 (byte {})", e.valid_up_to()),
            )])
        }
    }
}
