//! Tokens → statements. Recursive descent with an explicit depth bound (so hostile nesting
//! is a diagnostic, never a stack overflow) and recovery at the end of the line (so every
//! statement's first error is reported, not just the program's).

use crate::MAX_DEPTH;
use crate::ast::{BinOp, Expr, ExprKind, Stmt};
use crate::diag::{Diagnostic, Pos};
use crate::lexer::{Tok, Token};

type PResult<T> = Result<T, Diagnostic>;

/// An expression and the height of its tree (a leaf is 1).
type Node = (Expr, u32);

struct Parser<'a> {
    toks: &'a [Token],
    i: usize,
    /// Open `(`/`[`: inside them a line break does not end the statement.
    open: u32,
    /// Current recursion depth of the expression parser.
    depth: u32,
    /// Index of the first token of the statement being parsed.
    stmt_start: usize,
    /// The name the current `param`/`let` statement declares, once read.
    declaring: Option<String>,
}

/// Parse every statement; problems go to `diags` (at most one per statement). Also returns
/// the names that `param`/`let` statements which failed to parse were declaring, so the
/// checker does not report every later use of them as unknown.
pub(crate) fn parse(toks: &[Token], diags: &mut Vec<Diagnostic>) -> (Vec<Stmt>, Vec<String>) {
    let mut p = Parser {
        toks,
        i: 0,
        open: 0,
        depth: 0,
        stmt_start: 0,
        declaring: None,
    };
    let mut out = Vec::new();
    let mut broken = Vec::new();
    loop {
        p.open = 0;
        p.depth = 0;
        while p.raw().tok == Tok::Newline {
            p.i += 1;
        }
        if p.raw().tok == Tok::Eof {
            break;
        }
        match p.statement() {
            Ok(s) => out.push(s),
            Err(d) => {
                broken.extend(p.declaring.take());
                let at = d.pos;
                diags.push(d);
                p.recover(at);
            }
        }
    }
    (out, broken)
}

fn too_deep(pos: Pos) -> Diagnostic {
    Diagnostic::new(
        pos,
        format!("expression nested more than {MAX_DEPTH} levels deep"),
    )
}

impl Parser<'_> {
    /// The current token, line breaks included.
    fn raw(&self) -> &Token {
        // The lexer always ends with Eof, and nothing advances past it.
        &self.toks[self.i.min(self.toks.len() - 1)]
    }

    /// The current token; inside brackets line breaks are skipped.
    fn peek(&mut self) -> &Token {
        if self.open > 0 {
            while self.raw().tok == Tok::Newline {
                self.i += 1;
            }
        }
        self.raw()
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if t.tok != Tok::Eof {
            self.i += 1;
        }
        t
    }

    fn expect(&mut self, want: Tok, context: &str) -> PResult<Token> {
        let t = self.peek().clone();
        if t.tok == want {
            self.i += 1;
            Ok(t)
        } else {
            Err(Diagnostic::new(
                t.pos,
                format!(
                    "expected `{}` {context}, found {}",
                    want.symbol(),
                    t.tok.describe()
                ),
            ))
        }
    }

    /// After an error at `at`: continue at the next line. When the error is at the first
    /// token of a later line than the statement's first (an unclosed bracket ran into the next
    /// statement), continue right there, so that statement is not lost.
    fn recover(&mut self, at: Pos) {
        let mut k = self.stmt_start;
        while k + 1 < self.toks.len() && self.toks[k].pos < at {
            k += 1;
        }
        let starts_line = k > self.stmt_start && self.toks[k - 1].tok == Tok::Newline;
        if starts_line && !matches!(self.toks[k].tok, Tok::Newline | Tok::Eof) {
            self.i = k;
            return;
        }
        self.i = k.max(self.stmt_start + 1).min(self.toks.len() - 1);
        while !matches!(self.raw().tok, Tok::Newline | Tok::Eof) {
            self.i += 1;
        }
    }

    fn statement(&mut self) -> PResult<Stmt> {
        self.stmt_start = self.i;
        self.declaring = None;
        let first = self.next();
        let Tok::Ident(word) = &first.tok else {
            return Err(Diagnostic::new(
                first.pos,
                format!(
                    "expected `param`, `let` or a rule (`entry_long = …`), found {}",
                    first.tok.describe()
                ),
            ));
        };
        let stmt = match word.as_str() {
            "param" => {
                let (name, name_pos) = self.ident("after `param`")?;
                self.declaring = Some(name.clone());
                self.expect(Tok::Assign, "after the parameter's name")?;
                let (kind, kind_pos) =
                    self.ident("(the parameter's kind: int, float, bool or choice)")?;
                self.expect(Tok::LParen, "after the parameter's kind")?;
                self.open += 1;
                let args = self.args(kind_pos)?.into_iter().map(|a| a.0).collect();
                Stmt::Param {
                    name,
                    name_pos,
                    kind,
                    kind_pos,
                    args,
                }
            }
            "let" => {
                let (name, name_pos) = self.ident("after `let`")?;
                self.declaring = Some(name.clone());
                self.expect(Tok::Assign, "after the name")?;
                let value = self.expr()?.0;
                Stmt::Let {
                    name,
                    name_pos,
                    value,
                }
            }
            _ => {
                self.expect(Tok::Assign, &format!("after `{word}`"))?;
                let value = self.expr()?.0;
                Stmt::Rule {
                    name: word.clone(),
                    name_pos: first.pos,
                    value,
                }
            }
        };
        let end = self.raw().clone();
        if !matches!(end.tok, Tok::Newline | Tok::Eof) {
            return Err(Diagnostic::new(
                end.pos,
                format!("expected the end of the line, found {}", end.tok.describe()),
            ));
        }
        Ok(stmt)
    }

    fn ident(&mut self, context: &str) -> PResult<(String, Pos)> {
        let t = self.next();
        match t.tok {
            Tok::Ident(s) => Ok((s, t.pos)),
            other => Err(Diagnostic::new(
                t.pos,
                format!("expected a name {context}, found {}", other.describe()),
            )),
        }
    }

    /// Arguments after an opening `(` (already counted in `open`), through the `)`.
    fn args(&mut self, call_pos: Pos) -> PResult<Vec<Node>> {
        let mut args = Vec::new();
        if self.peek().tok == Tok::RParen {
            self.next();
            self.open -= 1;
            return Ok(args);
        }
        loop {
            args.push(self.expr()?);
            let t = self.next();
            match t.tok {
                Tok::Comma => continue,
                Tok::RParen => break,
                other => {
                    return Err(Diagnostic::new(
                        t.pos,
                        format!(
                            "expected `,` or `)` in the arguments starting at {call_pos}, found {}",
                            other.describe()
                        ),
                    ));
                }
            }
        }
        self.open -= 1;
        Ok(args)
    }

    fn enter(&mut self, pos: Pos) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(too_deep(pos));
        }
        Ok(())
    }

    fn expr(&mut self) -> PResult<Node> {
        let pos = self.peek().pos;
        self.enter(pos)?;
        let r = self.or();
        self.depth -= 1;
        r
    }

    fn binary(op: BinOp, pos: Pos, l: Node, r: Node) -> PResult<Node> {
        let h = l.1.max(r.1) + 1;
        if h > MAX_DEPTH {
            return Err(too_deep(pos));
        }
        Ok((
            Expr {
                kind: ExprKind::Binary(op, Box::new(l.0), Box::new(r.0)),
                pos,
            },
            h,
        ))
    }

    fn keyword(&mut self, word: &str) -> Option<Pos> {
        let t = self.peek();
        match &t.tok {
            Tok::Ident(s) if s == word => {
                let pos = t.pos;
                self.i += 1;
                Some(pos)
            }
            _ => None,
        }
    }

    fn or(&mut self) -> PResult<Node> {
        let mut l = self.and()?;
        while let Some(pos) = self.keyword("or") {
            let r = self.and()?;
            l = Self::binary(BinOp::Or, pos, l, r)?;
        }
        Ok(l)
    }

    fn and(&mut self) -> PResult<Node> {
        let mut l = self.not()?;
        while let Some(pos) = self.keyword("and") {
            let r = self.not()?;
            l = Self::binary(BinOp::And, pos, l, r)?;
        }
        Ok(l)
    }

    fn not(&mut self) -> PResult<Node> {
        if let Some(pos) = self.keyword("not") {
            self.enter(pos)?;
            let r = self.not();
            self.depth -= 1;
            let (e, h) = r?;
            if h + 1 > MAX_DEPTH {
                return Err(too_deep(pos));
            }
            return Ok((
                Expr {
                    kind: ExprKind::Not(Box::new(e)),
                    pos,
                },
                h + 1,
            ));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> PResult<Node> {
        let l = self.additive()?;
        let op = match self.peek().tok {
            Tok::Lt => BinOp::Lt,
            Tok::Le => BinOp::Le,
            Tok::Gt => BinOp::Gt,
            Tok::Ge => BinOp::Ge,
            Tok::EqEq => BinOp::Eq,
            Tok::Ne => BinOp::Ne,
            _ => return Ok(l),
        };
        let pos = self.next().pos;
        let r = self.additive()?;
        let node = Self::binary(op, pos, l, r)?;
        let t = self.peek();
        if matches!(
            t.tok,
            Tok::Lt | Tok::Le | Tok::Gt | Tok::Ge | Tok::EqEq | Tok::Ne
        ) {
            return Err(Diagnostic::new(
                t.pos,
                "comparisons do not chain: write `a < b and b < c`",
            ));
        }
        Ok(node)
    }

    fn additive(&mut self) -> PResult<Node> {
        let mut l = self.multiplicative()?;
        loop {
            let op = match self.peek().tok {
                Tok::Plus => BinOp::Add,
                Tok::Minus => BinOp::Sub,
                _ => return Ok(l),
            };
            let pos = self.next().pos;
            let r = self.multiplicative()?;
            l = Self::binary(op, pos, l, r)?;
        }
    }

    fn multiplicative(&mut self) -> PResult<Node> {
        let mut l = self.unary()?;
        loop {
            let op = match self.peek().tok {
                Tok::Star => BinOp::Mul,
                Tok::Slash => BinOp::Div,
                _ => return Ok(l),
            };
            let pos = self.next().pos;
            let r = self.unary()?;
            l = Self::binary(op, pos, l, r)?;
        }
    }

    fn unary(&mut self) -> PResult<Node> {
        if self.peek().tok == Tok::Minus {
            let pos = self.next().pos;
            self.enter(pos)?;
            let r = self.unary();
            self.depth -= 1;
            let (e, h) = r?;
            if h + 1 > MAX_DEPTH {
                return Err(too_deep(pos));
            }
            // Fold `-literal` so `int(-5, -10, 0)` reads as literals.
            if let ExprKind::Num { value, int } = e.kind {
                return Ok((
                    Expr {
                        kind: ExprKind::Num {
                            value: -value,
                            int: int.and_then(i64::checked_neg),
                        },
                        pos,
                    },
                    h,
                ));
            }
            return Ok((
                Expr {
                    kind: ExprKind::Neg(Box::new(e)),
                    pos,
                },
                h + 1,
            ));
        }
        self.postfix()
    }

    fn postfix(&mut self) -> PResult<Node> {
        let mut node = self.primary()?;
        while self.peek().tok == Tok::LBrack {
            let pos = self.next().pos;
            self.open += 1;
            let n = self.expr()?;
            self.expect(Tok::RBrack, "to close the lookback")?;
            self.open -= 1;
            let h = node.1.max(n.1) + 1;
            if h > MAX_DEPTH {
                return Err(too_deep(pos));
            }
            node = (
                Expr {
                    kind: ExprKind::Lookback(Box::new(node.0), Box::new(n.0)),
                    pos,
                },
                h,
            );
        }
        Ok(node)
    }

    fn primary(&mut self) -> PResult<Node> {
        let t = self.next();
        let leaf = |kind| Ok((Expr { kind, pos: t.pos }, 1));
        match t.tok {
            Tok::Num { value, int } => leaf(ExprKind::Num { value, int }),
            Tok::Str(ref s) => leaf(ExprKind::Str(s.clone())),
            Tok::Ident(ref s) if s == "true" => leaf(ExprKind::Bool(true)),
            Tok::Ident(ref s) if s == "false" => leaf(ExprKind::Bool(false)),
            Tok::Ident(ref s) if matches!(s.as_str(), "and" | "or" | "not" | "param" | "let") => {
                Err(Diagnostic::new(
                    t.pos,
                    format!("expected a value, found the keyword `{s}`"),
                ))
            }
            Tok::Ident(ref s) => {
                if self.peek().tok == Tok::LParen {
                    self.next();
                    self.open += 1;
                    let args = self.args(t.pos)?;
                    let h = args.iter().map(|a| a.1).max().unwrap_or(0) + 1;
                    if h > MAX_DEPTH {
                        return Err(too_deep(t.pos));
                    }
                    let args = args.into_iter().map(|a| a.0).collect();
                    Ok((
                        Expr {
                            kind: ExprKind::Call(s.clone(), args),
                            pos: t.pos,
                        },
                        h,
                    ))
                } else {
                    leaf(ExprKind::Name(s.clone()))
                }
            }
            Tok::LParen => {
                self.open += 1;
                let inner = self.expr()?;
                self.expect(Tok::RParen, &format!("to close the `(` at {}", t.pos))?;
                self.open -= 1;
                Ok(inner)
            }
            other => Err(Diagnostic::new(
                t.pos,
                format!("expected a value, found {}", other.describe()),
            )),
        }
    }
}
