//! Probability of Backtest Overfitting by combinatorially symmetric cross-validation (CSCV;
//! Bailey, Borwein, López de Prado & Zhu, "The Probability of Backtest Overfitting",
//! J. of Computational Finance 20(4), 2017; SSRN 2326253, 2015).
//!
//! The T × N matrix of per-period returns (T periods, N candidates) is cut into S equal
//! blocks of consecutive periods. For each of the C(S, S/2) ways of choosing half of the
//! blocks as in-sample (the rest, in time order, is out-of-sample), the candidate with the
//! best in-sample metric is selected and its out-of-sample rank ω among the N candidates is
//! turned into a logit λ = ln(ω̄/(1 − ω̄)), ω̄ = rank/(N + 1). PBO is the share of splits with
//! λ ≤ 0: how often the in-sample winner is at or below the out-of-sample median. A search
//! whose champion is luck has PBO near ½ or above; skill shows as PBO near 0.
//!
//! Details follow pypbo (`pypbo.pbo`, github esvhd/pypbo), which the reference tests match:
//! T not divisible by S drops the first T mod S rows (the oldest periods, so every block has
//! T div S rows and the most recent data is kept); ranks are average ranks (ties share);
//! the in-sample winner is the first of the tied best; splits are enumerated in
//! lexicographic order of the in-sample block indices (`itertools.combinations`), so the
//! logits come out in the same order.

/// Everything CSCV says about a search, one entry per split where it is a vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Pbo {
    /// Probability of backtest overfitting: the share of splits whose logit is ≤ 0. NaN for
    /// degenerate input.
    pub pbo: f64,
    /// λ per split, in lexicographic order of the in-sample blocks.
    pub logits: Vec<f64>,
    /// Index (column) of the in-sample winner per split.
    pub selected: Vec<usize>,
    /// The winner's in-sample metric per split.
    pub is_metric: Vec<f64>,
    /// The winner's out-of-sample metric per split.
    pub oos_metric: Vec<f64>,
    /// Slope of the least-squares line of out-of-sample on in-sample metric of the winners
    /// (performance degradation): near 0 or negative means in-sample excellence does not
    /// carry over. NaN if all in-sample values are equal.
    pub degradation_slope: f64,
    /// Intercept of that line.
    pub degradation_intercept: f64,
    /// Share of splits whose winner has an out-of-sample metric below 0 (a loss, for the
    /// Sharpe ratio; pypbo's `prob_oos_loss` with threshold 0).
    pub prob_oos_loss: f64,
    /// Rows used: T − (T mod S).
    pub rows_used: usize,
    /// Oldest rows dropped so that S divides the rest.
    pub rows_dropped: usize,
}

impl Pbo {
    fn degenerate(rows: usize) -> Pbo {
        Pbo {
            pbo: f64::NAN,
            logits: Vec::new(),
            selected: Vec::new(),
            is_metric: Vec::new(),
            oos_metric: Vec::new(),
            degradation_slope: f64::NAN,
            degradation_intercept: f64::NAN,
            prob_oos_loss: f64::NAN,
            rows_used: 0,
            rows_dropped: rows,
        }
    }
}

/// Checks the shape and returns (rows dropped, block length, N), or `None` for a
/// degenerate input: S odd or < 2, no candidates, ragged rows, fewer than S rows.
fn shape(matrix: &[Vec<f64>], s: usize) -> Option<(usize, usize, usize)> {
    let n = matrix.first().map_or(0, Vec::len);
    if s < 2 || s % 2 == 1 || n == 0 || matrix.iter().any(|r| r.len() != n) {
        return None;
    }
    let t = matrix.len();
    (t >= s).then_some((t % s, t / s, n))
}

/// Calls `visit(in_sample_blocks, out_of_sample_blocks)` for every choice of S/2 of the S
/// blocks, in lexicographic order; both lists are ascending (time order).
fn for_each_split(s: usize, mut visit: impl FnMut(&[usize], &[usize])) {
    let h = s / 2;
    let mut idx: Vec<usize> = (0..h).collect();
    let mut out = Vec::with_capacity(h);
    loop {
        out.clear();
        out.extend((0..s).filter(|b| !idx.contains(b)));
        visit(&idx, &out);
        // Next combination: bump the rightmost index that can still move.
        let Some(i) = (0..h).rev().find(|&i| idx[i] < s - h + i) else {
            return;
        };
        idx[i] += 1;
        for j in i + 1..h {
            idx[j] = idx[j - 1] + 1;
        }
    }
}

/// NaN ranks below every number: a candidate whose metric is undefined is never the
/// in-sample winner and counts as the worst out of sample (scipy would turn the whole split
/// into NaN instead).
fn key(x: f64) -> f64 {
    if x.is_nan() { f64::NEG_INFINITY } else { x }
}

/// Runs CSCV given a function that fills the in-sample and out-of-sample metric of every
/// candidate for one split.
fn cscv(
    rows: usize,
    s: usize,
    dropped: usize,
    n: usize,
    mut metrics: impl FnMut(&[usize], &[usize], &mut [f64], &mut [f64]),
) -> Pbo {
    let mut is_m = vec![0.0; n];
    let mut oos_m = vec![0.0; n];
    let mut res = Pbo::degenerate(0);
    res.rows_used = rows - dropped;
    res.rows_dropped = dropped;
    for_each_split(s, |is_blocks, oos_blocks| {
        metrics(is_blocks, oos_blocks, &mut is_m, &mut oos_m);
        // First of the tied best, as numpy's argmax over average ranks picks.
        let mut best = 0;
        for j in 1..n {
            if key(is_m[j]) > key(is_m[best]) {
                best = j;
            }
        }
        let v = key(oos_m[best]);
        let below = oos_m.iter().filter(|&&x| key(x) < v).count();
        let tied = oos_m.iter().filter(|&&x| key(x) == v).count();
        let rank = below as f64 + (tied as f64 + 1.0) / 2.0;
        // N + 1 keeps ω̄ < 1: the best of N out of sample is not certain to be the best.
        let w = rank / (n as f64 + 1.0);
        res.logits.push((w / (1.0 - w)).ln());
        res.selected.push(best);
        res.is_metric.push(is_m[best]);
        res.oos_metric.push(oos_m[best]);
    });
    let c = res.logits.len() as f64;
    res.pbo = res.logits.iter().filter(|&&l| l <= 0.0).count() as f64 / c;
    res.prob_oos_loss = res.oos_metric.iter().filter(|&&m| m < 0.0).count() as f64 / c;
    let (slope, intercept) = least_squares(&res.is_metric, &res.oos_metric);
    res.degradation_slope = slope;
    res.degradation_intercept = intercept;
    res
}

/// Ordinary least squares y = a + b·x, returning (b, a); NaN when x has no spread.
fn least_squares(x: &[f64], y: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let sxx: f64 = x.iter().map(|v| (v - mx) * (v - mx)).sum();
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    if sxx.is_nan() || sxx <= 0.0 {
        return (f64::NAN, f64::NAN);
    }
    let b = sxy / sxx;
    (b, my - b * mx)
}

/// PBO by CSCV with any per-candidate `metric` (higher is better) of a return series; pass
/// [`sharpe`](super::sharpe()) for the paper's choice, or use [`pbo_sharpe`], which gives
/// the same numbers faster.
///
/// `matrix` has one row per period (T rows, oldest first) and one column per candidate
/// (N columns): `matrix[t][j]` is candidate j's return in period t. `s` is the number of
/// blocks (even; the paper uses 16, i.e. 12,870 splits). The metric sees the in-sample
/// (or out-of-sample) blocks of one candidate concatenated in time order.
///
/// Cost: C(S, S/2)·N·T metric work; S = 16 is 12,870 splits, S = 20 already 184,756.
/// Degenerate input (S odd or < 2, no columns, ragged rows, fewer than S rows) gives
/// `pbo` NaN and empty vectors.
pub fn pbo<F: Fn(&[f64]) -> f64>(matrix: &[Vec<f64>], s: usize, metric: F) -> Pbo {
    let Some((dropped, block, n)) = shape(matrix, s) else {
        return Pbo::degenerate(matrix.len());
    };
    let used = &matrix[dropped..];
    // Column-major, so a candidate's block is one contiguous slice.
    let cols: Vec<Vec<f64>> = (0..n)
        .map(|j| used.iter().map(|r| r[j]).collect())
        .collect();
    let half = s / 2 * block;
    let mut is_buf = Vec::with_capacity(half);
    let mut oos_buf = Vec::with_capacity(half);
    cscv(matrix.len(), s, dropped, n, |is_b, oos_b, is_m, oos_m| {
        for (j, col) in cols.iter().enumerate() {
            is_buf.clear();
            oos_buf.clear();
            for &b in is_b {
                is_buf.extend_from_slice(&col[b * block..(b + 1) * block]);
            }
            for &b in oos_b {
                oos_buf.extend_from_slice(&col[b * block..(b + 1) * block]);
            }
            is_m[j] = metric(&is_buf);
            oos_m[j] = metric(&oos_buf);
        }
    })
}

/// Count, mean and sum of squared deviations of one block of one candidate.
#[derive(Clone, Copy)]
struct Moments {
    n: f64,
    mean: f64,
    m2: f64,
}

impl Moments {
    fn of(x: &[f64]) -> Moments {
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let m2 = x.iter().map(|v| (v - mean) * (v - mean)).sum();
        Moments { n, mean, m2 }
    }

    /// Chan, Golub & LeVeque's pairwise update: exact in exact arithmetic and free of the
    /// Σx² − n·mean² cancellation, so the split's Sharpe ratios agree with a direct
    /// computation to rounding.
    fn merge(self, o: Moments) -> Moments {
        let n = self.n + o.n;
        let d = o.mean - self.mean;
        Moments {
            n,
            mean: self.mean + d * o.n / n,
            m2: self.m2 + o.m2 + d * d * self.n * o.n / n,
        }
    }

    /// [`sharpe`](super::sharpe()) from the moments, with the same conventions (0 below two
    /// points or for zero variance, NaN for NaN).
    fn sharpe(self) -> f64 {
        if self.n < 2.0 {
            return 0.0;
        }
        let sd = (self.m2 / (self.n - 1.0)).sqrt();
        if sd == 0.0 {
            if self.mean.is_nan() { f64::NAN } else { 0.0 }
        } else {
            self.mean / sd
        }
    }
}

/// [`pbo`] with the per-period Sharpe ratio as the metric, computed from per-block moments
/// so each split costs O(S·N) instead of O(T·N): the same numbers as
/// `pbo(matrix, s, sharpe)` up to rounding, for a search with many candidates.
pub fn pbo_sharpe(matrix: &[Vec<f64>], s: usize) -> Pbo {
    let Some((dropped, block, n)) = shape(matrix, s) else {
        return Pbo::degenerate(matrix.len());
    };
    let used = &matrix[dropped..];
    // moments[b][j]: block b of candidate j.
    let moments: Vec<Vec<Moments>> = (0..s)
        .map(|b| {
            let rows = &used[b * block..(b + 1) * block];
            (0..n)
                .map(|j| Moments::of(&rows.iter().map(|r| r[j]).collect::<Vec<_>>()))
                .collect()
        })
        .collect();
    let fold = |blocks: &[usize], j: usize| {
        blocks[1..]
            .iter()
            .fold(moments[blocks[0]][j], |acc, &b| acc.merge(moments[b][j]))
            .sharpe()
    };
    cscv(matrix.len(), s, dropped, n, |is_b, oos_b, is_m, oos_m| {
        for j in 0..n {
            is_m[j] = fold(is_b, j);
            oos_m[j] = fold(oos_b, j);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::sharpe;

    #[test]
    fn splits_are_lexicographic_and_complementary() {
        let mut seen = Vec::new();
        for_each_split(4, |a, b| seen.push((a.to_vec(), b.to_vec())));
        let want = [
            ([0, 1], [2, 3]),
            ([0, 2], [1, 3]),
            ([0, 3], [1, 2]),
            ([1, 2], [0, 3]),
            ([1, 3], [0, 2]),
            ([2, 3], [0, 1]),
        ];
        assert_eq!(seen.len(), want.len());
        for (got, (a, b)) in seen.iter().zip(want) {
            assert_eq!((got.0.as_slice(), got.1.as_slice()), (&a[..], &b[..]));
        }
        let mut count = 0;
        for_each_split(16, |_, _| count += 1);
        assert_eq!(count, 12_870);
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        let m = vec![vec![0.01, 0.02]; 10];
        assert!(pbo_sharpe(&m, 3).pbo.is_nan());
        assert!(pbo_sharpe(&m, 0).pbo.is_nan());
        assert!(pbo_sharpe(&m, 12).pbo.is_nan());
        assert!(pbo_sharpe(&[], 4).pbo.is_nan());
        assert!(pbo_sharpe(&[vec![], vec![]], 2).pbo.is_nan());
        assert!(pbo(&[vec![0.1, 0.2], vec![0.3]], 2, sharpe).pbo.is_nan());
        // Constant and NaN columns still give a number.
        let mut m: Vec<Vec<f64>> = (0..16)
            .map(|t| vec![0.0, (t % 3) as f64, f64::NAN])
            .collect();
        m[3][0] = 0.5;
        let r = pbo(&m, 4, sharpe);
        assert!(r.pbo.is_finite() && r.logits.len() == 6);
        assert!(r.selected.iter().all(|&j| j < 2));
    }

    #[test]
    fn a_dominant_candidate_is_not_overfit_and_noise_is() {
        // Candidate 0 earns more than the others in every period: always selected, always
        // best out of sample.
        let m: Vec<Vec<f64>> = (0..64)
            .map(|t| {
                let x = ((t * 7919) % 13) as f64 / 100.0 - 0.06;
                vec![x + 0.05, x, x - 0.01, x * 0.5]
            })
            .collect();
        let r = pbo_sharpe(&m, 8);
        assert_eq!(r.pbo, 0.0);
        assert!(r.selected.iter().all(|&j| j == 0));
        let mut rng = crate::rng::Rng::new(3);
        let noise: Vec<Vec<f64>> = (0..320)
            .map(|_| (0..30).map(|_| rng.normal()).collect())
            .collect();
        let r = pbo_sharpe(&noise, 16);
        assert!(r.pbo > 0.3, "{}", r.pbo);
        let (g, f) = (pbo(&noise, 8, sharpe), pbo_sharpe(&noise, 8));
        assert_eq!(
            (g.pbo, &g.selected, &g.logits),
            (f.pbo, &f.selected, &f.logits)
        );
    }
}
