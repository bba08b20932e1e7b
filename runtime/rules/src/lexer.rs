//! Text → tokens. Never fails as a whole: a bad character becomes a diagnostic and is skipped,
//! so one pass reports every problem.

use crate::diag::{Diagnostic, Pos};
use crate::{MAX_IDENT_CHARS, MAX_TOKENS};

/// A token's kind, with its payload.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    /// A number literal; `int` is set when it had no fraction or exponent.
    Num {
        value: f64,
        int: Option<i64>,
    },
    Str(String),
    LParen,
    RParen,
    LBrack,
    RBrack,
    Comma,
    Assign,
    Plus,
    Minus,
    Star,
    Slash,
    Lt,
    Le,
    Gt,
    Ge,
    EqEq,
    Ne,
    Newline,
    Eof,
}

impl Tok {
    /// How the token reads in a message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Num { value, .. } => format!("`{value}`"),
            Tok::Str(s) => format!("\"{s}\""),
            Tok::Newline => "the end of the line".into(),
            Tok::Eof => "the end of the program".into(),
            other => format!("`{}`", other.symbol()),
        }
    }

    /// The text of a punctuation token.
    pub(crate) fn symbol(&self) -> &'static str {
        match self {
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBrack => "[",
            Tok::RBrack => "]",
            Tok::Comma => ",",
            Tok::Assign => "=",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::EqEq => "==",
            Tok::Ne => "!=",
            _ => "",
        }
    }
}

/// A token and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: Pos,
}

struct Cursor<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    pos: Pos,
}

impl Cursor<'_> {
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.pos.line = self.pos.line.saturating_add(1);
            self.pos.col = 1;
        } else {
            self.pos.col = self.pos.col.saturating_add(1);
        }
        Some(c)
    }
}

/// Split `src` into tokens (always ending with `Newline`, `Eof`); problems go to `diags`.
/// `Err` with the one diagnostic that matters when the text has more than [`MAX_TOKENS`]
/// tokens (line breaks not counted).
pub(crate) fn lex(src: &str, diags: &mut Vec<Diagnostic>) -> Result<Vec<Token>, Diagnostic> {
    let mut out: Vec<Token> = Vec::new();
    let mut c = Cursor {
        chars: src.chars().peekable(),
        pos: Pos::START,
    };
    // Each round pushes at most one token: count the last one unless it is a line break.
    let (mut seen, mut words) = (0usize, 0usize);
    while let Some(ch) = c.peek() {
        if out.len() > seen {
            seen = out.len();
            if let Some(t) = out.last().filter(|t| t.tok != Tok::Newline) {
                words += 1;
                if words > MAX_TOKENS {
                    return Err(Diagnostic::new(
                        t.pos,
                        format!("the program has more than {MAX_TOKENS} tokens"),
                    ));
                }
            }
        }
        let pos = c.pos;
        let push = |out: &mut Vec<Token>, tok| out.push(Token { tok, pos });
        match ch {
            '\n' => {
                c.bump();
                push(&mut out, Tok::Newline);
            }
            ' ' | '\t' | '\r' => {
                c.bump();
            }
            '#' => {
                while c.peek().is_some_and(|x| x != '\n') {
                    c.bump();
                }
            }
            'a'..='z' | 'A'..='Z' | '_' => {
                let mut s = String::new();
                let mut n = 0usize;
                while let Some(x) = c.peek().filter(|x| x.is_ascii_alphanumeric() || *x == '_') {
                    c.bump();
                    n += 1;
                    if n <= MAX_IDENT_CHARS {
                        s.push(x);
                    }
                }
                if n > MAX_IDENT_CHARS {
                    diags.push(Diagnostic::new(
                        pos,
                        format!("name is {n} characters long, more than {MAX_IDENT_CHARS}"),
                    ));
                }
                push(&mut out, Tok::Ident(s));
            }
            '0'..='9' | '.' => {
                let tok = number(&mut c, pos, diags);
                push(&mut out, tok);
            }
            '"' => {
                c.bump();
                let mut s = String::new();
                let mut closed = false;
                while let Some(x) = c.peek() {
                    if x == '\n' {
                        break;
                    }
                    c.bump();
                    if x == '"' {
                        closed = true;
                        break;
                    }
                    if s.len() < 4 * MAX_IDENT_CHARS {
                        s.push(x);
                    }
                }
                if !closed {
                    diags.push(Diagnostic::new(pos, "unterminated string (missing `\"`)"));
                }
                push(&mut out, Tok::Str(s));
            }
            _ => {
                c.bump();
                let two = |c: &mut Cursor, tok2: Tok, tok1: Tok| {
                    if c.peek() == Some('=') {
                        c.bump();
                        tok2
                    } else {
                        tok1
                    }
                };
                let tok = match ch {
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    '[' => Tok::LBrack,
                    ']' => Tok::RBrack,
                    ',' => Tok::Comma,
                    '+' => Tok::Plus,
                    '-' => Tok::Minus,
                    '*' => Tok::Star,
                    '/' => Tok::Slash,
                    '<' => two(&mut c, Tok::Le, Tok::Lt),
                    '>' => two(&mut c, Tok::Ge, Tok::Gt),
                    '=' => two(&mut c, Tok::EqEq, Tok::Assign),
                    '!' if c.peek() == Some('=') => {
                        c.bump();
                        Tok::Ne
                    }
                    '!' => {
                        diags.push(Diagnostic::new(pos, "unexpected `!` (write `not`)"));
                        continue;
                    }
                    '&' | '|' => {
                        while c.peek() == Some(ch) {
                            c.bump();
                        }
                        let word = if ch == '&' { "and" } else { "or" };
                        diags.push(Diagnostic::new(
                            pos,
                            format!("unexpected `{ch}` (write `{word}`)"),
                        ));
                        continue;
                    }
                    other => {
                        let shown = if other.is_control() {
                            format!("U+{:04X}", other as u32)
                        } else {
                            format!("`{other}`")
                        };
                        diags.push(Diagnostic::new(
                            pos,
                            format!("unexpected character {shown}"),
                        ));
                        continue;
                    }
                };
                push(&mut out, tok);
            }
        }
    }
    out.push(Token {
        tok: Tok::Newline,
        pos: c.pos,
    });
    out.push(Token {
        tok: Tok::Eof,
        pos: c.pos,
    });
    Ok(out)
}

/// `123`, `1.5`, `.5`, `2e-3`.
fn number(c: &mut Cursor, pos: Pos, diags: &mut Vec<Diagnostic>) -> Tok {
    let mut s = String::new();
    let mut int = true;
    let digits = |c: &mut Cursor, s: &mut String| {
        while let Some(x) = c.peek().filter(char::is_ascii_digit) {
            c.bump();
            if s.len() < 400 {
                s.push(x);
            }
        }
    };
    digits(c, &mut s);
    if c.peek() == Some('.') {
        int = false;
        c.bump();
        s.push('.');
        digits(c, &mut s);
    }
    if matches!(c.peek(), Some('e' | 'E')) {
        int = false;
        c.bump();
        s.push('e');
        if let Some(sign) = c.peek().filter(|x| *x == '+' || *x == '-') {
            c.bump();
            s.push(sign);
        }
        digits(c, &mut s);
    }
    // A letter glued to a number (`10x`) is a typo, not two tokens.
    if c.peek()
        .is_some_and(|x| x.is_ascii_alphabetic() || x == '_')
    {
        while c
            .peek()
            .is_some_and(|x| x.is_ascii_alphanumeric() || x == '_')
        {
            c.bump();
        }
        diags.push(Diagnostic::new(pos, format!("malformed number `{s}…`")));
        return Tok::Num {
            value: 0.0,
            int: Some(0),
        };
    }
    match s.parse::<f64>() {
        Ok(value) if value.is_finite() => Tok::Num {
            value,
            int: if int { s.parse::<i64>().ok() } else { None },
        },
        Ok(_) => {
            diags.push(Diagnostic::new(pos, format!("number `{s}` is too large")));
            Tok::Num {
                value: 0.0,
                int: Some(0),
            }
        }
        Err(_) => {
            diags.push(Diagnostic::new(pos, format!("malformed number `{s}`")));
            Tok::Num {
                value: 0.0,
                int: Some(0),
            }
        }
    }
}
