//! Trees → `.rules` text: operators with the fewest parentheses the grammar needs (plus a
//! few for the reader), and subtrees written more than once named by a `let`.

use std::collections::BTreeMap;

use super::tree::{Kind, Node, Op, Unit};

// Binding strength of each level of the grammar (docs/rules.md), loosest first.
const OR: u8 = 1;
const AND: u8 = 2;
const NOT: u8 = 3;
const CMP: u8 = 4;
const SUM: u8 = 5;
const PRODUCT: u8 = 6;
const UNARY: u8 = 7;
const POSTFIX: u8 = 8;
const PRIMARY: u8 = 9;

/// Named subtrees: plain text → `let` name.
type Names = BTreeMap<String, String>;

/// The text of `n` and how strongly it binds. With `names`, subtrees (other than `n` itself
/// when `top`) whose plain text is named are written as the name.
fn render(n: &Node, names: &Names, top: bool) -> (String, u8) {
    if !top && !names.is_empty() {
        let plain = render(n, &Names::new(), true).0;
        if let Some(name) = names.get(&plain) {
            return (name.clone(), PRIMARY);
        }
    }
    let arg = |i: usize, min: u8| {
        let (s, p) = render(&n.args[i], names, false);
        if p < min { format!("({s})") } else { s }
    };
    // `a and b and c` needs no parentheses; `(a or b) and c` does, and `(a and b) or c`
    // gets them anyway, for the reader.
    let logic = |i: usize, own: u8| {
        let same = n.args[i].op == n.op;
        arg(i, if same { own } else { NOT })
    };
    let call = |name: &str, extra: &[String]| {
        let mut parts = vec![arg(0, 0)];
        parts.extend(extra.iter().cloned());
        (format!("{name}({})", parts.join(", ")), PRIMARY)
    };
    match &n.op {
        Op::And => (format!("{} and {}", logic(0, AND), logic(1, AND)), AND),
        Op::Or => (format!("{} or {}", logic(0, OR), logic(1, OR)), OR),
        // `not close > open` parses as intended, but reads as `(not close) > open`.
        Op::Not => (format!("not {}", arg(0, SUM)), NOT),
        Op::Gt => (format!("{} > {}", arg(0, SUM), arg(1, SUM)), CMP),
        Op::Lt => (format!("{} < {}", arg(0, SUM), arg(1, SUM)), CMP),
        Op::CrossOver => (format!("crossover({}, {})", arg(0, 0), arg(1, 0)), PRIMARY),
        Op::CrossUnder => (format!("crossunder({}, {})", arg(0, 0), arg(1, 0)), PRIMARY),
        Op::Lookback(k) => (format!("{}[{k}]", arg(0, POSTFIX)), POSTFIX),
        Op::Field(f) => (f.name().to_string(), PRIMARY),
        Op::Const(_, d) => (d.text(), if d.is_negative() { UNARY } else { PRIMARY }),
        Op::Sma(p) => call("sma", &[p.to_string()]),
        Op::Ema(p) => call("ema", &[p.to_string()]),
        Op::Highest(p) => call("highest", &[p.to_string()]),
        Op::Lowest(p) => call("lowest", &[p.to_string()]),
        Op::Rsi(p) => call("rsi", &[p.to_string()]),
        Op::Atr(p) => (format!("atr({p})"), PRIMARY),
        Op::Macd {
            fast,
            slow,
            signal,
            signal_line,
        } => call(
            if *signal_line { "macd_signal" } else { "macd" },
            &[fast.to_string(), slow.to_string(), signal.to_string()],
        ),
        Op::Band { period, k, upper } => call(
            if *upper { "bb_upper" } else { "bb_lower" },
            &[period.to_string(), k.text()],
        ),
        Op::Add => (format!("{} + {}", arg(0, SUM), arg(1, PRODUCT)), SUM),
        Op::Sub => (format!("{} - {}", arg(0, SUM), arg(1, PRODUCT)), SUM),
        Op::Div => (format!("{} / {}", arg(0, PRODUCT), arg(1, UNARY)), PRODUCT),
        Op::Scale(k) => (format!("{} * {}", arg(0, PRODUCT), k.text()), PRODUCT),
        Op::Abs => call("abs", &[]),
        Op::Min => (format!("min({}, {})", arg(0, 0), arg(1, 0)), PRIMARY),
        Op::Max => (format!("max({}, {})", arg(0, 0), arg(1, 0)), PRIMARY),
    }
}

/// The plain text of a subtree (no `let` names).
pub(crate) fn plain(n: &Node) -> String {
    render(n, &Names::new(), true).0
}

/// Worth a `let` when repeated: anything but a leaf or a leaf looked back (`close[1]` reads
/// as well as a name).
fn nameable(n: &Node) -> bool {
    match n.args.as_slice() {
        [] => false,
        [x] if matches!(n.op, Op::Lookback(_)) => !x.args.is_empty(),
        _ => true,
    }
}

/// How often a subtree is written, with what is needed to choose and order the `let`s.
struct Tally<'a> {
    uses: usize,
    node: &'a Node,
    size: usize,
}

/// Count the subtrees the text would write, given the names chosen so far: a named subtree
/// is one use of its name, and its inside is written once, in its `let`.
fn tally<'a>(
    n: &'a Node,
    chosen: &BTreeMap<String, &'a Node>,
    def: bool,
    counts: &mut BTreeMap<String, Tally<'a>>,
) {
    let text = plain(n);
    if !def && chosen.contains_key(&text) {
        counts
            .entry(text)
            .or_insert(Tally {
                uses: 0,
                node: n,
                size: n.size(),
            })
            .uses += 1;
        return;
    }
    if !def && nameable(n) {
        counts
            .entry(text)
            .or_insert(Tally {
                uses: 0,
                node: n,
                size: n.size(),
            })
            .uses += 1;
    }
    for a in &n.args {
        tally(a, chosen, false, counts);
    }
}

fn post_order(n: &Node, out: &mut Vec<String>) {
    for a in &n.args {
        post_order(a, out);
    }
    out.push(plain(n));
}

/// A readable name for a named subtree (never a keyword, field, function or rule of the
/// language, all of which these differ from).
fn base_name(n: &Node) -> String {
    match &n.op {
        Op::Sma(p) => format!("sma{p}"),
        Op::Ema(p) => format!("ema{p}"),
        Op::Highest(p) => format!("highest{p}"),
        Op::Lowest(p) => format!("lowest{p}"),
        Op::Rsi(p) => format!("rsi{p}"),
        Op::Atr(p) => format!("atr{p}"),
        Op::Macd {
            signal_line: false, ..
        } => "macd_line".into(),
        Op::Macd { .. } => "macd_sig".into(),
        Op::Band {
            period,
            upper: true,
            ..
        } => format!("upper{period}"),
        Op::Band { period, .. } => format!("lower{period}"),
        Op::Add | Op::Sub if n.kind() == Kind::Num(Unit::Price) => "level".into(),
        Op::Add | Op::Sub => "diff".into(),
        Op::Div => "ratio".into(),
        Op::Scale(_) => "scaled".into(),
        Op::Abs => "magnitude".into(),
        Op::Min => "lesser".into(),
        Op::Max => "greater".into(),
        Op::Lookback(_) => "prev".into(),
        Op::CrossOver => "cross_up".into(),
        Op::CrossUnder => "cross_down".into(),
        Op::And | Op::Or | Op::Not | Op::Gt | Op::Lt => "cond".into(),
        Op::Field(_) | Op::Const(..) => "value".into(),
    }
}

/// The `let` lines and rule lines of a program whose rules are `rules` (name, tree).
pub(crate) fn statements(rules: &[(&str, &Node)]) -> Vec<String> {
    // Name the largest subtree written at least twice, then count again (its inside is now
    // written once), until nothing repeats.
    let mut chosen: BTreeMap<String, &Node> = BTreeMap::new();
    loop {
        let mut counts = BTreeMap::new();
        for (_, root) in rules {
            tally(root, &chosen, false, &mut counts);
        }
        for node in chosen.values() {
            tally(node, &chosen, true, &mut counts);
        }
        // `counts` is ordered by text, so which of equal sizes wins is deterministic.
        let best = counts
            .iter()
            .filter(|(text, t)| t.uses >= 2 && !chosen.contains_key(*text))
            .max_by_key(|(_, t)| t.size);
        let Some((text, t)) = best else { break };
        let (text, node) = (text.clone(), t.node);
        chosen.insert(text, node);
    }
    // A `let` comes before its uses: order by first appearance in post-order, where every
    // part of a subtree comes before the subtree.
    let mut order = Vec::new();
    for (_, root) in rules {
        post_order(root, &mut order);
    }
    let mut lets: Vec<(usize, String, &Node)> = chosen
        .into_iter()
        .map(|(text, node)| {
            let first = order.iter().position(|t| *t == text).unwrap_or(usize::MAX);
            (first, text, node)
        })
        .collect();
    lets.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let mut names = Names::new();
    let mut taken: Vec<String> = Vec::new();
    for (_, text, node) in &lets {
        let base = base_name(node);
        let mut name = base.clone();
        let mut k = 2;
        while taken.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        taken.push(name.clone());
        names.insert(text.clone(), name);
    }
    let mut out = Vec::new();
    for (_, text, node) in &lets {
        out.push(format!(
            "let {} = {}",
            names[text],
            render(node, &names, true).0
        ));
    }
    for (rule, root) in rules {
        out.push(format!("{rule} = {}", render(root, &names, false).0));
    }
    out
}
