//! # Genetic programming over rule programs (`--gp`)
//!
//! The genome is a rule program in the `.rules` language (docs/rules.md): one typed
//! expression tree per rule, `entry_long` always, `exit_long` usually, and with
//! [`GpConfig::shorts`] also `entry_short` and (usually) `exit_short`. Sizing is fixed to
//! `size = equity_fraction(1.0)`, so fitness compares signals, not leverage.
//!
//! ## Types
//!
//! Trees are strongly typed, more finely than the checker: a condition, or a per-bar number
//! of a *unit* — price, volume, oscillator (RSI, 0..100), price difference (ATR, MACD,
//! `close - open`), ratio of like quantities (around 1) or difference relative to the
//! price (around 0). Conditions are `and`, `or`, `not`, a lookback `c[n]`, `>`/`<` and
//! `crossover`/`crossunder` of two operands of one unit. Numbers are the bar fields, `sma`,
//! `ema`, `highest`, `lowest` (of any unit, keeping it), `rsi`, `atr`, `macd`,
//! `macd_signal`, `bb_upper`, `bb_lower`, `abs`, `min`, `max`, lookbacks `x[n]`, and `+ - /`
//! and `* k` where the units make sense (`price - price` is a difference,
//! `price - difference` a price, `difference / price` relative). A constant appears only as
//! the right operand of a comparison or cross, and only for units with a meaningful one: an
//! RSI level, a ratio near 1, a relative level near 0, or 0 for a difference; never for
//! prices or volumes, whose scale is the instrument's. So every program the search
//! evaluates compares like with like, and none compares two constants.
//!
//! Periods (2..=200, half of them the usual 5, 14, 20, 50…), lookback distances (1..=10)
//! and factors are attributes of their node, never subtrees: the checker requires them to
//! be fixed for the run. Constants are short decimals (at most 3 significant digits), so
//! genomes are `Eq + Hash` and print as `1.02`, not `1.0199999999999998`.
//!
//! ## Size, depth and parsimony
//!
//! A node is an operator, field or constant (attributes are not nodes); [`RuleGenome::nodes`]
//! counts them over all rules and [`RuleGenome::depth`] is the deepest rule's depth. Every
//! genome [`RuleGenome::random`], [`RuleGenome::crossover`] and [`RuleGenome::mutate`]
//! return respects [`GpConfig::limits`] (by construction, or by retrying and otherwise
//! returning the parents), and is free of the constructs that check but say nothing that
//! are cheap to recognise: `close > close`, `close > high`, `atr(14) > 0`,
//! `a > b and a < b`, `not not c`, `x[1][2]`, an exit equal to its entry (see
//! `tree::Node::degenerate`). Bloat is held by the node limit over the
//! whole program, by mutations that shrink (hoisting a subtree into its parent's place,
//! replacing an operand by a constant, dropping an exit rule), and by the fitness penalty
//! the engine applies with [`RuleGenome::penalized`].
//!
//! ## Determinism
//!
//! Every random choice comes from the caller's [`Rng`], in a fixed order; no hash-map
//! iteration, no global state. The same stream gives the same genomes, offspring and text.

mod build;
mod print;
#[cfg(test)]
mod tests;
mod tree;

use serde::{Deserialize, Serialize};

use crate::rng::Rng;
use build::{Builder, pick};
use tree::{Field, Kind, Node, Op, Point};

/// The deepest tree [`GpConfig::limits`] allows, whatever is configured: it keeps every
/// program far inside the checker's caps on expression nesting and tokens.
pub const MAX_DEPTH_CAP: usize = 16;
/// The most nodes [`GpConfig::limits`] allows, whatever is configured (for the token cap).
pub const MAX_NODES_CAP: usize = 200;

/// Depth of the deepest initial tree (ramped from 2): deeper random trees are mostly over
/// the node budget and would be thrown away.
const INIT_MAX_DEPTH: usize = 5;
/// How often crossover and mutation try before giving up and returning the parents.
const ATTEMPTS: usize = 10;
/// Rule names in the order of [`RuleGenome`]'s trees (as `qtm_rules::RULE_NAMES`).
const RULES: [&str; 4] = ["entry_long", "exit_long", "entry_short", "exit_short"];

/// Limits and shape of the genomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GpConfig {
    /// Deepest rule tree (a comparison of two fields is 2 deep).
    pub max_depth: usize,
    /// Most nodes over all the program's rules.
    pub max_nodes: usize,
    /// Also evolve `entry_short` (always present) and `exit_short` (optional).
    pub shorts: bool,
}

impl Default for GpConfig {
    /// Depth 8 and 40 nodes: room for a filtered crossover with an exit, still readable.
    fn default() -> Self {
        GpConfig {
            max_depth: 8,
            max_nodes: 40,
            shorts: false,
        }
    }
}

impl GpConfig {
    /// The `(max_depth, max_nodes)` actually enforced: depth at least 2 (the smallest
    /// condition) and at most [`MAX_DEPTH_CAP`]; nodes at least 3 per possible rule (the
    /// smallest condition has 3) and at most [`MAX_NODES_CAP`].
    pub fn limits(&self) -> (usize, usize) {
        let rules = if self.shorts { 4 } else { 2 };
        (
            self.max_depth.clamp(2, MAX_DEPTH_CAP),
            self.max_nodes.clamp(3 * rules, MAX_NODES_CAP),
        )
    }
}

/// A rule program as a genome: one tree per defined rule, in the order `entry_long`,
/// `exit_long`, `entry_short`, `exit_short`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RuleGenome {
    rules: [Option<Node>; 4],
}

impl RuleGenome {
    /// A random program: ramped half-and-half (each rule's depth drawn from 2 to 5, within
    /// the limit, by the full or the grow method), each rule within an equal share of the
    /// node limit. `exit_long` is present nine times in ten long-only (without one a long
    /// position is never closed), six in ten with shorts (an opposite entry reverses it).
    pub fn random(rng: &mut Rng, cfg: &GpConfig) -> Self {
        let (max_depth, max_nodes) = cfg.limits();
        let exit_chance = if cfg.shorts { 0.6 } else { 0.9 };
        for _ in 0..ATTEMPTS {
            let present = [
                true,
                rng.chance(exit_chance),
                cfg.shorts,
                cfg.shorts && rng.chance(exit_chance),
            ];
            let share = max_nodes / present.iter().filter(|p| **p).count();
            let mut rules = [None, None, None, None];
            for (slot, on) in present.iter().enumerate() {
                if *on {
                    rules[slot] = Some(ramped(rng, slot, max_depth, share));
                }
            }
            let g = RuleGenome { rules };
            if g.distinct_rules() {
                return g;
            }
        }
        // Only tiny limits leave so few conditions that draws keep repeating.
        let candle = |op| {
            Node::new(
                op,
                vec![
                    Node::leaf(Op::Field(Field::Close)),
                    Node::leaf(Op::Field(Field::Open)),
                ],
            )
        };
        RuleGenome {
            rules: [
                Some(candle(Op::Gt)),
                None,
                cfg.shorts.then(|| candle(Op::Lt)),
                None,
            ],
        }
    }

    /// Subtree crossover: a random subtree of `self` (nine times in ten an operator rather
    /// than a leaf) and one of the same type in `other` (any rule: an entry condition may
    /// become an exit's) change places. Only exchanges whose offspring stay within the
    /// limits are considered; after a few attempts without one (no subtree of the type, or
    /// only degenerate results), the parents are returned.
    pub fn crossover(&self, other: &Self, rng: &mut Rng, cfg: &GpConfig) -> (Self, Self) {
        let (max_depth, max_nodes) = cfg.limits();
        let (pa, pb) = (self.points(), other.points());
        let (na, nb) = (self.nodes(), other.nodes());
        for _ in 0..ATTEMPTS {
            let Some(a) = choose(rng, &pa, |_| true) else {
                break;
            };
            let Some(b) = choose(rng, &pb, |b| {
                b.kind == a.kind
                    && a.depth - 1 + b.height <= max_depth
                    && b.depth - 1 + a.height <= max_depth
                    && na - a.size + b.size <= max_nodes
                    && nb - b.size + a.size <= max_nodes
            }) else {
                continue;
            };
            let (sa, sb) = (self.subtree(a).clone(), other.subtree(b).clone());
            if sa == sb {
                continue;
            }
            let (mut c1, mut c2) = (self.clone(), other.clone());
            c1.replace(a, sb);
            c2.replace(b, sa);
            if c1.fits(max_depth, max_nodes) && c2.fits(max_depth, max_nodes) {
                return (c1, c2);
            }
        }
        (self.clone(), other.clone())
    }

    /// A changed copy: subtree mutation (a random subtree replaced by a new one of its type,
    /// up to 4 deep; a right operand possibly by a constant), point mutation (an operator
    /// swapped for its counterpart — `>`/`<`, `and`/`or`, `crossover`/`crossunder`,
    /// `sma`/`ema`, `highest`/`lowest`, upper/lower band, `+`/`-`, `min`/`max`, one price
    /// field for another — or a period, lookback, factor or constant jittered), hoisting
    /// (a subtree replaced by one of its own subtrees of the same type), or adding or
    /// dropping an exit rule. Returns an unchanged copy if a few attempts give nothing new
    /// within the limits.
    pub fn mutate(&self, rng: &mut Rng, cfg: &GpConfig) -> Self {
        let (max_depth, max_nodes) = cfg.limits();
        for _ in 0..ATTEMPTS {
            let mut child = self.clone();
            let changed = match pick(rng, &[0.4, 0.35, 0.15, 0.1]) {
                0 => child.subtree_mutation(rng, max_depth, max_nodes),
                1 => child.point_mutation(rng),
                2 => child.hoist(rng),
                _ => child.toggle_exit(rng, max_depth, max_nodes),
            };
            if changed && child != *self && child.fits(max_depth, max_nodes) {
                return child;
            }
        }
        self.clone()
    }

    /// The program's text, checked OK by `qtm_rules::check`: a header comment line with
    /// the program's size, `let`s for subtrees written more than once, the rules, and
    /// `size = equity_fraction(1.0)`.
    pub fn to_rules(&self) -> String {
        let size = self.size_text();
        self.text(&format!("# evolved by qtm evolve --gp: {size}\n"))
    }

    /// [`to_rules`](Self::to_rules) with `header` (e.g. seed and fitness) as the comment,
    /// one `# ` line per line of it, then a line with the program's size.
    pub fn to_rules_with_header(&self, header: &str) -> String {
        let mut comment = String::new();
        for line in header.lines() {
            comment.push_str(format!("# {line}").trim_end());
            comment.push('\n');
        }
        comment.push_str(&format!("# {}\n", self.size_text()));
        self.text(&comment)
    }

    fn size_text(&self) -> String {
        format!("{} nodes, depth {}", self.nodes(), self.depth())
    }

    fn text(&self, comment: &str) -> String {
        let mut out = comment.to_string();
        let rules: Vec<(&str, &Node)> = RULES
            .iter()
            .zip(&self.rules)
            .filter_map(|(name, tree)| tree.as_ref().map(|t| (*name, t)))
            .collect();
        for line in print::statements(&rules) {
            out.push_str(&line);
            out.push('\n');
        }
        out.push_str("size = equity_fraction(1.0)\n");
        out
    }

    /// Nodes over all rules (operators, fields and constants; periods, lookback distances
    /// and factors belong to their node).
    pub fn nodes(&self) -> usize {
        self.trees().map(Node::size).sum()
    }

    /// Depth of the deepest rule tree (a leaf is 1 deep).
    pub fn depth(&self) -> usize {
        self.trees().map(Node::depth).max().unwrap_or(0)
    }

    /// The rules this program defines, of `entry_long`, `exit_long`, `entry_short`,
    /// `exit_short`.
    pub fn defined_rules(&self) -> Vec<&'static str> {
        RULES
            .iter()
            .zip(&self.rules)
            .filter(|(_, t)| t.is_some())
            .map(|(n, _)| *n)
            .collect()
    }

    /// Parsimony pressure: `fitness` less `per_node` for every node. Applied to the fitness
    /// the search ranks by, it lets a larger program win only by doing better by more than
    /// its extra size costs, and breaks ties of equal fitness towards the smaller program.
    pub fn penalized(&self, fitness: f64, per_node: f64) -> f64 {
        fitness - per_node * self.nodes() as f64
    }

    fn trees(&self) -> impl Iterator<Item = &Node> {
        self.rules.iter().flatten()
    }

    /// Within the limits and free of degenerate constructs.
    fn fits(&self, max_depth: usize, max_nodes: usize) -> bool {
        self.nodes() <= max_nodes
            && self.distinct_rules()
            && self
                .trees()
                .all(|t| t.depth() <= max_depth && !t.degenerate())
    }

    /// No exit is its side's entry (it would close the position whenever the condition
    /// that opened it still holds), and the two entries differ (`entry_long` is read first,
    /// so an equal `entry_short` would never fire).
    fn distinct_rules(&self) -> bool {
        let r = &self.rules;
        let differ = |a: usize, b: usize| r[a].is_none() || r[a] != r[b];
        differ(1, 0) && differ(3, 2) && differ(2, 0)
    }

    fn points(&self) -> Vec<Point> {
        let mut out = Vec::new();
        for (rule, tree) in self.rules.iter().enumerate() {
            if let Some(t) = tree {
                t.points(rule, &mut out);
            }
        }
        out
    }

    fn subtree(&self, p: Point) -> &Node {
        self.rules[p.rule]
            .as_ref()
            .and_then(|t| t.at(p.index))
            .expect("a point of this genome")
    }

    fn replace(&mut self, p: Point, with: Node) {
        if let Some(slot) = self.rules[p.rule].as_mut().and_then(|t| t.at_mut(p.index)) {
            *slot = with;
        }
    }

    fn subtree_mutation(&mut self, rng: &mut Rng, max_depth: usize, max_nodes: usize) -> bool {
        let points = self.points();
        if points.is_empty() {
            return false;
        }
        let p = points[rng.index(points.len())];
        let most_depth = (max_depth + 1).saturating_sub(p.depth);
        let lo = build::min_depth(p.kind);
        if most_depth < lo {
            return false;
        }
        let room = max_nodes.saturating_sub(self.nodes() - p.size);
        let new = if p.const_slot && build::has_constants(p.kind) && rng.chance(0.35) {
            let Kind::Num(u) = p.kind else { return false };
            Builder { rng, full: false }.constant(u)
        } else {
            let depth = rng.range_i64(lo as i64, most_depth.min(4).max(lo) as i64) as usize;
            let mut b = Builder { rng, full: false };
            let mut t = b.tree(p.kind, depth);
            for _ in 0..3 {
                if t.size() <= room {
                    break;
                }
                t = b.tree(p.kind, lo.max(depth - 1));
            }
            t
        };
        self.replace(p, new);
        true
    }

    fn point_mutation(&mut self, rng: &mut Rng) -> bool {
        let points = self.points();
        if points.is_empty() {
            return false;
        }
        let p = points[rng.index(points.len())];
        let Some(node) = self.rules[p.rule].as_mut().and_then(|t| t.at_mut(p.index)) else {
            return false;
        };
        point_change(rng, node)
    }

    fn hoist(&mut self, rng: &mut Rng) -> bool {
        let points = self.points();
        let Some(top) = choose(rng, &points, |p| p.size > 1) else {
            return false;
        };
        let inside =
            |q: &Point| q.rule == top.rule && q.index > top.index && q.index < top.index + top.size;
        let Some(sub) = choose(rng, &points, |q| inside(q) && q.kind == top.kind) else {
            return false;
        };
        let new = self.subtree(sub).clone();
        self.replace(top, new);
        true
    }

    /// Adds a missing exit rule or drops a present one (entries are never dropped: a
    /// program needs one, and a configured short side keeps its entry).
    fn toggle_exit(&mut self, rng: &mut Rng, max_depth: usize, max_nodes: usize) -> bool {
        let slot = if self.rules[2].is_some() && rng.chance(0.5) {
            3
        } else {
            1
        };
        if self.rules[slot].take().is_some() {
            return true;
        }
        let room = max_nodes.saturating_sub(self.nodes());
        if room < 3 {
            return false;
        }
        self.rules[slot] = Some(ramped(rng, slot, max_depth.min(4), room));
        true
    }
}

/// A random point among those `ok` accepts, constants excluded (a constant of one comparison
/// means nothing in another, and point mutation tunes it better): nine times in ten an
/// operator if there is one, as Koza's crossover, so that exchanges move structure rather
/// than single fields.
fn choose(rng: &mut Rng, points: &[Point], ok: impl Fn(&Point) -> bool) -> Option<Point> {
    let (inner, leaves): (Vec<&Point>, Vec<&Point>) = points
        .iter()
        .filter(|p| !p.konst && ok(p))
        .partition(|p| p.size > 1);
    let pool = if !inner.is_empty() && (leaves.is_empty() || rng.chance(0.9)) {
        inner
    } else {
        leaves
    };
    (!pool.is_empty()).then(|| *pool[rng.index(pool.len())])
}

/// One rule's random condition: depth ramped from 2 to [`INIT_MAX_DEPTH`] (within
/// `max_depth`), full or grow with equal chance, redrawn (and a level shallower every third
/// time) until it has at most `max_size` nodes and nothing degenerate. The fallback, a
/// plain candle-colour condition, is for limits so tight that few trees fit.
fn ramped(rng: &mut Rng, slot: usize, max_depth: usize, max_size: usize) -> Node {
    let top = max_depth.min(INIT_MAX_DEPTH);
    let mut depth = rng.range_i64(2, top as i64) as usize;
    let full = rng.chance(0.5);
    for attempt in 0..24 {
        let t = Builder { rng, full }.boolean(depth);
        if t.size() <= max_size && !t.degenerate() {
            return t;
        }
        if attempt % 3 == 2 && depth > 2 {
            depth -= 1;
        }
    }
    // Long entries and short exits on a white candle, the others on a black one.
    let op = if slot == 0 || slot == 3 {
        Op::Gt
    } else {
        Op::Lt
    };
    Node::new(
        op,
        vec![
            Node::leaf(Op::Field(Field::Close)),
            Node::leaf(Op::Field(Field::Open)),
        ],
    )
}

/// Point mutation of one node: its operator swapped for the counterpart of the same type,
/// or one of its attributes jittered. False when the node has nothing to change (`not`,
/// `abs`, `/`, `volume`, a difference's constant 0).
fn point_change(rng: &mut Rng, node: &mut Node) -> bool {
    use build::{MAX_PERIOD as HI, MIN_PERIOD as LO, jitter_period as jp};
    let before = node.op.clone();
    let swap = rng.chance(0.5);
    node.op = match node.op.clone() {
        Op::And => Op::Or,
        Op::Or => Op::And,
        Op::Gt => Op::Lt,
        Op::Lt => Op::Gt,
        Op::CrossOver => Op::CrossUnder,
        Op::CrossUnder => Op::CrossOver,
        Op::Lookback(n) => Op::Lookback(build::jitter_lookback(rng, n)),
        Op::Field(Field::Volume) => return false,
        Op::Field(f) => {
            let others: Vec<Field> = [Field::Open, Field::High, Field::Low, Field::Close]
                .into_iter()
                .filter(|g| *g != f)
                .collect();
            Op::Field(others[rng.index(others.len())])
        }
        Op::Const(u, d) => Op::Const(u, build::jitter_const(rng, u, d)),
        Op::Sma(p) if swap => Op::Ema(p),
        Op::Ema(p) if swap => Op::Sma(p),
        Op::Sma(p) => Op::Sma(jp(rng, p, LO, HI)),
        Op::Ema(p) => Op::Ema(jp(rng, p, LO, HI)),
        Op::Highest(p) if swap => Op::Lowest(p),
        Op::Lowest(p) if swap => Op::Highest(p),
        Op::Highest(p) => Op::Highest(jp(rng, p, LO, HI)),
        Op::Lowest(p) => Op::Lowest(jp(rng, p, LO, HI)),
        Op::Rsi(p) => Op::Rsi(jp(rng, p, LO, HI)),
        Op::Atr(p) => Op::Atr(jp(rng, p, LO, HI)),
        Op::Macd {
            mut fast,
            mut slow,
            mut signal,
            mut signal_line,
        } => {
            // Fast stays below slow, so the MACD line keeps its sign convention.
            match rng.index(4) {
                0 => signal_line = !signal_line,
                1 => fast = jp(rng, fast, LO, slow - 1),
                2 => slow = jp(rng, slow, fast + 1, HI),
                _ => signal = jp(rng, signal, LO, HI),
            }
            Op::Macd {
                fast,
                slow,
                signal,
                signal_line,
            }
        }
        Op::Band {
            mut period,
            mut k,
            mut upper,
        } => {
            match rng.index(3) {
                0 => upper = !upper,
                1 => period = jp(rng, period, LO, HI),
                _ => k = build::jitter_factor(rng, k, 0.5, 4.0),
            }
            Op::Band { period, k, upper }
        }
        // price − price has no `+` counterpart (a sum of prices is no unit of ours).
        Op::Add => Op::Sub,
        Op::Sub
            if node
                .args
                .iter()
                .all(|a| a.kind() == Kind::Num(tree::Unit::Price)) =>
        {
            return false;
        }
        Op::Sub => Op::Add,
        Op::Min => Op::Max,
        Op::Max => Op::Min,
        Op::Scale(k) => Op::Scale(build::jitter_factor(rng, k, 0.25, 8.0)),
        Op::Not | Op::Abs | Op::Div => return false,
    };
    node.op != before
}
