//! Genomes: a strategy's typed parameters (one gene per parameter its `describe` declares), or
//! a rule program for `--gp` ([`crate::gp`]), with the variation operators of each and a
//! stable identity (the hash of a canonical text) by which candidates are cached and ties are
//! broken.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::gp::{GpConfig, RuleGenome};
use crate::rng::Rng;
use qtm_core::model::{Param, ParamKind, ParamSpec, ParamValue};

/// Distribution index of simulated binary crossover: 20 keeps children near their parents
/// (Deb & Agrawal 1995; the value NSGA-II's authors use).
pub const SBX_ETA: f64 = 20.0;
/// Distribution index of polynomial mutation (Deb & Goyal 1996).
pub const MUTATION_ETA: f64 = 20.0;

/// One gene: what a parameter may take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Gene {
    /// An integer in `min..=max` on a grid of `step` from `min`.
    Int {
        /// Smallest value.
        min: i64,
        /// Largest value.
        max: i64,
        /// Grid step (≥ 1).
        step: i64,
    },
    /// A number in `min..=max`, on a grid of `step` from `min` when `step > 0`.
    Float {
        /// Smallest value.
        min: f64,
        /// Largest value.
        max: f64,
        /// Grid step; 0 for a continuous gene.
        step: f64,
    },
    /// True or false.
    Bool,
    /// One of the strings.
    Choice {
        /// The choices, in the order the strategy declared them.
        choices: Vec<String>,
    },
}

/// A parameter the search varies, or holds at a value the user fixed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamGene {
    /// The parameter's name.
    pub name: String,
    /// Its range; `None` when it is fixed.
    pub gene: Option<Gene>,
    /// The fixed value, or the strategy's default (not used by the search when `gene` is set).
    pub value: ParamValue,
}

/// The genes of a strategy: its declared parameters, some fixed by the user (`--param`),
/// some narrowed (`--gene NAME=LO..HI`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamSpace {
    /// One entry per declared parameter, in declaration order.
    pub params: Vec<ParamGene>,
}

/// Why a parameter space could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SpaceError(pub String);

impl ParamSpace {
    /// The space of `specs`: every parameter a gene over its declared range, except those in
    /// `fixed` (held at the given value) and with the ranges of `narrow` (name, lo, hi; within
    /// the declared range, on its grid).
    pub fn new(
        specs: &[ParamSpec],
        fixed: &[Param],
        narrow: &[(String, f64, f64)],
    ) -> Result<Self, SpaceError> {
        for p in fixed {
            if !specs.iter().any(|s| s.name == p.name) {
                return Err(SpaceError(format!(
                    "--param {}: the strategy has no parameter `{}` (it has: {})",
                    p.name,
                    p.name,
                    names(specs)
                )));
            }
        }
        for (name, lo, hi) in narrow {
            if !specs.iter().any(|s| &s.name == name) {
                return Err(SpaceError(format!(
                    "--gene {name}: the strategy has no parameter `{name}` (it has: {})",
                    names(specs)
                )));
            }
            if fixed.iter().any(|p| &p.name == name) {
                return Err(SpaceError(format!(
                    "parameter `{name}` is both fixed (--param) and searched (--gene)"
                )));
            }
            if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                return Err(SpaceError(format!(
                    "--gene {name}={lo}..{hi}: expected LO..HI with LO ≤ HI"
                )));
            }
        }
        let mut params = Vec::with_capacity(specs.len());
        for spec in specs {
            if let Some(p) = fixed.iter().find(|p| p.name == spec.name) {
                let value = spec.check(&p.value).map_err(SpaceError)?;
                params.push(ParamGene {
                    name: spec.name.clone(),
                    gene: None,
                    value,
                });
                continue;
            }
            let range = narrow
                .iter()
                .find(|(n, _, _)| n == &spec.name)
                .map(|(_, lo, hi)| (*lo, *hi));
            let gene = match (&spec.kind, range) {
                (ParamKind::Int { min, max, step }, r) => {
                    let step = (*step).max(1);
                    let (lo, hi) = match r {
                        Some((lo, hi)) => {
                            check_within(&spec.name, lo, hi, *min as f64, *max as f64)?;
                            // Onto the declared grid, inside the narrowed range.
                            let lo = min + ((lo - *min as f64) / step as f64).ceil() as i64 * step;
                            let hi = min + ((hi - *min as f64) / step as f64).floor() as i64 * step;
                            if lo > hi {
                                return Err(SpaceError(format!(
                                    "--gene {}: no value of step {step} lies in the range",
                                    spec.name
                                )));
                            }
                            (lo, hi)
                        }
                        None => (*min, min + (max - min) / step * step),
                    };
                    Gene::Int {
                        min: lo,
                        max: hi,
                        step,
                    }
                }
                (ParamKind::Float { min, max, step }, r) => {
                    let (lo, hi) = match r {
                        Some((lo, hi)) => {
                            check_within(&spec.name, lo, hi, *min, *max)?;
                            (lo, hi)
                        }
                        None => (*min, *max),
                    };
                    Gene::Float {
                        min: lo,
                        max: hi,
                        step: if step.is_finite() && *step > 0.0 {
                            *step
                        } else {
                            0.0
                        },
                    }
                }
                (ParamKind::Boolean, None) => Gene::Bool,
                (ParamKind::Choice { choices }, None) => Gene::Choice {
                    choices: choices.clone(),
                },
                (_, Some(_)) => {
                    return Err(SpaceError(format!(
                        "--gene {}: only numeric parameters take a range",
                        spec.name
                    )));
                }
            };
            params.push(ParamGene {
                name: spec.name.clone(),
                gene: Some(gene),
                value: spec.default.clone(),
            });
        }
        if params.iter().all(|p| p.gene.is_none()) {
            return Err(SpaceError(
                "nothing to search: every parameter is fixed (or the strategy declares none)"
                    .into(),
            ));
        }
        Ok(ParamSpace { params })
    }

    /// The searched genes' count.
    pub fn genes(&self) -> usize {
        self.params.iter().filter(|p| p.gene.is_some()).count()
    }

    /// A genome drawn uniformly from the space.
    pub fn random(&self, rng: &mut Rng) -> ParamGenome {
        ParamGenome {
            values: self
                .params
                .iter()
                .map(|p| match &p.gene {
                    None => p.value.clone(),
                    Some(g) => random_value(g, rng),
                })
                .collect(),
        }
    }

    /// Two children of `a` and `b`: SBX for numbers (rounded onto an integer gene's grid),
    /// a fair coin per gene for booleans and choices.
    pub fn crossover(
        &self,
        a: &ParamGenome,
        b: &ParamGenome,
        rng: &mut Rng,
    ) -> (ParamGenome, ParamGenome) {
        let (mut x, mut y) = (a.clone(), b.clone());
        for (i, p) in self.params.iter().enumerate() {
            let Some(g) = &p.gene else { continue };
            // Each gene is exchanged with probability ½, as in NSGA-II's SBX.
            if !rng.chance(0.5) {
                continue;
            }
            match g {
                Gene::Int { min, max, step } => {
                    let (u, v) = (as_f64(&a.values[i]), as_f64(&b.values[i]));
                    let (c1, c2) = sbx(u, v, *min as f64, *max as f64, rng);
                    x.values[i] = ParamValue::Int(snap_int(c1, *min, *max, *step));
                    y.values[i] = ParamValue::Int(snap_int(c2, *min, *max, *step));
                }
                Gene::Float { min, max, step } => {
                    let (u, v) = (as_f64(&a.values[i]), as_f64(&b.values[i]));
                    let (c1, c2) = sbx(u, v, *min, *max, rng);
                    x.values[i] = ParamValue::Float(snap_float(c1, *min, *max, *step));
                    y.values[i] = ParamValue::Float(snap_float(c2, *min, *max, *step));
                }
                Gene::Bool | Gene::Choice { .. } => {
                    std::mem::swap(&mut x.values[i], &mut y.values[i]);
                }
            }
        }
        (x, y)
    }

    /// Mutate each searched gene with probability `1 / genes`: polynomial mutation for
    /// numbers (an integer moves at least one step), a flip for booleans, another choice
    /// for choices.
    pub fn mutate(&self, g: &mut ParamGenome, rng: &mut Rng) {
        let rate = 1.0 / self.genes().max(1) as f64;
        for (i, p) in self.params.iter().enumerate() {
            let Some(gene) = &p.gene else { continue };
            if !rng.chance(rate) {
                continue;
            }
            g.values[i] = match gene {
                Gene::Int { min, max, step } => {
                    let old = match g.values[i] {
                        ParamValue::Int(v) => v,
                        _ => *min,
                    };
                    let moved = polynomial(old as f64, *min as f64, *max as f64, rng);
                    let mut new = snap_int(moved, *min, *max, *step);
                    if new == old && max > min {
                        // A mutation that rounds back to the same value is no mutation.
                        new = if (rng.chance(0.5) && old + step <= *max) || old - step < *min {
                            old + step
                        } else {
                            old - step
                        };
                    }
                    ParamValue::Int(new)
                }
                Gene::Float { min, max, step } => {
                    let moved = polynomial(as_f64(&g.values[i]), *min, *max, rng);
                    ParamValue::Float(snap_float(moved, *min, *max, *step))
                }
                Gene::Bool => {
                    ParamValue::Boolean(!matches!(g.values[i], ParamValue::Boolean(true)))
                }
                Gene::Choice { choices } => {
                    if choices.len() < 2 {
                        g.values[i].clone()
                    } else {
                        let old = choices
                            .iter()
                            .position(|c| ParamValue::Choice(c.clone()) == g.values[i])
                            .unwrap_or(0);
                        let pick = (old + 1 + rng.index(choices.len() - 1)) % choices.len();
                        ParamValue::Choice(choices[pick].clone())
                    }
                }
            };
        }
    }

    /// The genome as the strategy's parameters.
    pub fn params(&self, g: &ParamGenome) -> Vec<Param> {
        self.params
            .iter()
            .zip(&g.values)
            .map(|(p, v)| Param {
                name: p.name.clone(),
                value: v.clone(),
            })
            .collect()
    }

    /// The genes' values as `name=value` pairs (for the ledger and reports).
    pub fn describe(&self, g: &ParamGenome) -> String {
        self.params
            .iter()
            .zip(&g.values)
            .map(|(p, v)| format!("{}={v}", p.name))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn names(specs: &[ParamSpec]) -> String {
    if specs.is_empty() {
        return "none".into();
    }
    specs
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_within(name: &str, lo: f64, hi: f64, min: f64, max: f64) -> Result<(), SpaceError> {
    if lo < min || hi > max {
        return Err(SpaceError(format!(
            "--gene {name}={lo}..{hi} leaves the declared range {min}..={max}"
        )));
    }
    Ok(())
}

fn as_f64(v: &ParamValue) -> f64 {
    match v {
        ParamValue::Int(i) => *i as f64,
        ParamValue::Float(x) => *x,
        ParamValue::Boolean(b) => f64::from(u8::from(*b)),
        ParamValue::Choice(_) => 0.0,
    }
}

fn random_value(g: &Gene, rng: &mut Rng) -> ParamValue {
    match g {
        Gene::Int { min, max, step } => {
            let slots = (max - min) / step;
            ParamValue::Int(min + rng.range_i64(0, slots) * step)
        }
        Gene::Float { min, max, step } => {
            let x = min + rng.f64() * (max - min);
            ParamValue::Float(snap_float(x, *min, *max, *step))
        }
        Gene::Bool => ParamValue::Boolean(rng.chance(0.5)),
        Gene::Choice { choices } => ParamValue::Choice(choices[rng.index(choices.len())].clone()),
    }
}

fn snap_int(x: f64, min: i64, max: i64, step: i64) -> i64 {
    let k = ((x - min as f64) / step as f64).round();
    let v = min as f64 + k * step as f64;
    (v.clamp(min as f64, max as f64)) as i64
}

fn snap_float(x: f64, min: f64, max: f64, step: f64) -> f64 {
    let x = x.clamp(min, max);
    if step > 0.0 {
        let k = ((x - min) / step).round();
        (min + k * step).clamp(min, max)
    } else {
        x
    }
}

/// Simulated binary crossover of `a` and `b` bounded to `lo..=hi` (Deb & Agrawal 1995, in the
/// bounded form of Deb's NSGA-II code).
pub fn sbx(a: f64, b: f64, lo: f64, hi: f64, rng: &mut Rng) -> (f64, f64) {
    if (a - b).abs() < 1e-14 || hi <= lo {
        return (a, b);
    }
    let (y1, y2) = if a < b { (a, b) } else { (b, a) };
    let u = rng.f64();
    let spread = |beta: f64| -> f64 {
        let alpha = 2.0 - beta.powf(-(SBX_ETA + 1.0));
        if u <= 1.0 / alpha {
            (u * alpha).powf(1.0 / (SBX_ETA + 1.0))
        } else {
            (1.0 / (2.0 - u * alpha)).powf(1.0 / (SBX_ETA + 1.0))
        }
    };
    let beta1 = 1.0 + 2.0 * (y1 - lo) / (y2 - y1);
    let c1 = 0.5 * ((y1 + y2) - spread(beta1) * (y2 - y1));
    let beta2 = 1.0 + 2.0 * (hi - y2) / (y2 - y1);
    let c2 = 0.5 * ((y1 + y2) + spread(beta2) * (y2 - y1));
    let (c1, c2) = (c1.clamp(lo, hi), c2.clamp(lo, hi));
    // Which child gets which value is itself random, so neither parent's side is favoured.
    if rng.chance(0.5) { (c2, c1) } else { (c1, c2) }
}

/// Polynomial mutation of `x` in `lo..=hi` (Deb & Goyal 1996, bounded form).
pub fn polynomial(x: f64, lo: f64, hi: f64, rng: &mut Rng) -> f64 {
    if hi <= lo {
        return x;
    }
    let (d1, d2) = ((x - lo) / (hi - lo), (hi - x) / (hi - lo));
    let u = rng.f64();
    let p = 1.0 / (MUTATION_ETA + 1.0);
    let dq = if u < 0.5 {
        let v = 2.0 * u + (1.0 - 2.0 * u) * (1.0 - d1).powf(MUTATION_ETA + 1.0);
        v.powf(p) - 1.0
    } else {
        let v = 2.0 * (1.0 - u) + 2.0 * (u - 0.5) * (1.0 - d2).powf(MUTATION_ETA + 1.0);
        1.0 - v.powf(p)
    };
    (x + dq * (hi - lo)).clamp(lo, hi)
}

/// Parameter values of one candidate, one per declared parameter (fixed ones included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamGenome {
    /// In the order of [`ParamSpace::params`].
    pub values: Vec<ParamValue>,
}

/// A candidate: parameters of a strategy, or a rule program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Genome {
    /// Parameters of the strategy under search.
    Params(ParamGenome),
    /// A rule program (`--gp`).
    Rules(RuleGenome),
}

/// What the search varies: a parameter space, or rule programs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Space {
    /// The typed parameters of a strategy.
    Params(ParamSpace),
    /// Rule programs within the limits of the configuration.
    Rules(GpConfig),
}

impl Space {
    /// A random genome.
    pub fn random(&self, rng: &mut Rng) -> Genome {
        match self {
            Space::Params(s) => Genome::Params(s.random(rng)),
            Space::Rules(c) => Genome::Rules(RuleGenome::random(rng, c)),
        }
    }

    /// Two children (with `crossover` probability; otherwise copies), each then mutated.
    pub fn breed(&self, a: &Genome, b: &Genome, crossover: f64, rng: &mut Rng) -> (Genome, Genome) {
        let cross = rng.chance(crossover);
        match (self, a, b) {
            (Space::Params(s), Genome::Params(a), Genome::Params(b)) => {
                let (mut x, mut y) = if cross {
                    s.crossover(a, b, rng)
                } else {
                    (a.clone(), b.clone())
                };
                s.mutate(&mut x, rng);
                s.mutate(&mut y, rng);
                (Genome::Params(x), Genome::Params(y))
            }
            (Space::Rules(c), Genome::Rules(a), Genome::Rules(b)) => {
                let (x, y) = if cross {
                    a.crossover(b, rng, c)
                } else {
                    (a.clone(), b.clone())
                };
                // Subtree mutation with a fixed rate: crossover alone converges on one shape.
                let x = if rng.chance(0.3) { x.mutate(rng, c) } else { x };
                let y = if rng.chance(0.3) { y.mutate(rng, c) } else { y };
                (Genome::Rules(x), Genome::Rules(y))
            }
            // Genomes of another space never meet: the search holds one space.
            _ => (a.clone(), b.clone()),
        }
    }

    /// Canonical text of a genome: parameters as `name=value`, a program as its `.rules` text.
    pub fn text(&self, g: &Genome) -> String {
        match (self, g) {
            (Space::Params(s), Genome::Params(p)) => s.describe(p),
            (_, Genome::Rules(r)) => r.to_rules(),
            (_, Genome::Params(p)) => format!("{:?}", p.values),
        }
    }

    /// Size of a genome for parsimony and the `multi` objective: rule nodes, or 0.
    pub fn size(&self, g: &Genome) -> usize {
        match g {
            Genome::Params(_) => 0,
            Genome::Rules(r) => r.nodes(),
        }
    }
}

/// A genome's identity: SHA-256 of its canonical text, in hex.
pub fn genome_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sma_specs() -> Vec<ParamSpec> {
        let spec = |name: &str, kind, default| ParamSpec {
            name: name.into(),
            description: String::new(),
            kind,
            default,
        };
        vec![
            spec(
                "fast",
                ParamKind::Int {
                    min: 1,
                    max: 500,
                    step: 1,
                },
                ParamValue::Int(10),
            ),
            spec(
                "slow",
                ParamKind::Int {
                    min: 2,
                    max: 2000,
                    step: 1,
                },
                ParamValue::Int(30),
            ),
            spec(
                "mode",
                ParamKind::Choice {
                    choices: vec!["long_only".into(), "flip".into()],
                },
                ParamValue::Choice("long_only".into()),
            ),
            spec(
                "quantity",
                ParamKind::Float {
                    min: 0.0,
                    max: 1e12,
                    step: 1.0,
                },
                ParamValue::Float(1.0),
            ),
        ]
    }

    #[test]
    fn the_space_follows_describe_with_fixed_and_narrowed_genes() {
        let fixed = [Param {
            name: "quantity".into(),
            value: ParamValue::Choice("5".into()),
        }];
        let s = ParamSpace::new(&sma_specs(), &fixed, &[("slow".into(), 20.0, 200.0)]).unwrap();
        assert_eq!(s.genes(), 3);
        assert_eq!(s.params[3].value, ParamValue::Float(5.0));
        assert_eq!(
            s.params[1].gene,
            Some(Gene::Int {
                min: 20,
                max: 200,
                step: 1
            })
        );
        let mut rng = Rng::new(1);
        for _ in 0..1000 {
            let g = s.random(&mut rng);
            let ParamValue::Int(slow) = g.values[1] else {
                panic!()
            };
            assert!((20..=200).contains(&slow));
            assert_eq!(g.values[3], ParamValue::Float(5.0));
        }
        let err = ParamSpace::new(&sma_specs(), &[], &[("slow".into(), 1.0, 50.0)]).unwrap_err();
        assert!(
            err.0.contains("leaves the declared range 2..=2000"),
            "{err}"
        );
        let err = ParamSpace::new(&sma_specs(), &[], &[("nope".into(), 1.0, 5.0)]).unwrap_err();
        assert!(err.0.contains("has no parameter `nope`"), "{err}");
    }

    #[test]
    fn sbx_and_polynomial_mutation_stay_in_bounds_and_centre_on_the_parents() {
        let mut rng = Rng::new(9);
        let (mut sum, n) = (0.0, 20_000);
        for _ in 0..n {
            let (c1, c2) = sbx(10.0, 20.0, 0.0, 100.0, &mut rng);
            assert!((0.0..=100.0).contains(&c1) && (0.0..=100.0).contains(&c2));
            sum += c1 + c2;
            let m = polynomial(99.0, 0.0, 100.0, &mut rng);
            assert!((0.0..=100.0).contains(&m));
        }
        // SBX preserves the parents' mean in expectation (away from the bounds).
        assert!(
            (sum / (2.0 * n as f64) - 15.0).abs() < 0.1,
            "{}",
            sum / (2.0 * n as f64)
        );
    }

    #[test]
    fn mutation_changes_a_gene_and_keeps_the_grid() {
        let s = ParamSpace::new(&sma_specs(), &[], &[]).unwrap();
        let mut rng = Rng::new(3);
        let mut changed = 0;
        for _ in 0..2000 {
            let g = s.random(&mut rng);
            let mut m = g.clone();
            s.mutate(&mut m, &mut rng);
            if m != g {
                changed += 1;
            }
            let ParamValue::Float(q) = m.values[3] else {
                panic!()
            };
            assert_eq!(q.fract(), 0.0);
        }
        // Each of 4 genes mutates with probability ¼: 1 − (¾)⁴ ≈ 68 % of genomes change.
        assert!((1200..1550).contains(&changed), "{changed}");
    }
}
