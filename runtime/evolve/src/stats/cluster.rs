//! How many really different strategies did a search try? Candidates bred from each other
//! trade alike, and counting each as an independent trial would make the deflated Sharpe
//! ratio's bar too high. Clustering their return series gives an effective number of
//! trials and, per cluster, one representative series (López de Prado, "A Data Science
//! Solution to the Multiple-Testing Crisis in Financial Research", J. of Financial Data
//! Science 1(1), 2019; Bailey & López de Prado 2014, §4 on N and V).
//!
//! The distance is the correlation distance d = √(½(1 − ρ)) (0 for identical series, 1 for
//! opposite ones; a metric), as skfolio's `PearsonDistance`. The tree is agglomerative
//! hierarchical clustering with Lance–Williams updates, built by the nearest-neighbour-chain
//! algorithm exactly as scipy's `linkage` does (same merges, same heights, same linkage
//! matrix). Two ways to cut it, both reproducible with the reference libraries:
//!
//! * [`effective_trials`] / [`cluster_trials`]: skfolio's `HierarchicalClustering()` with its
//!   defaults: Ward linkage, and the number of clusters chosen by the two-order difference
//!   of the within-cluster dispersion (Yue, Wang & Wei 2009, skfolio's
//!   `compute_optimal_n_clusters`). It needs no parameter, but it only looks at up to
//!   max(8, √N) clusters, so for large N the count is bounded by that.
//! * [`effective_trials_at`]: average linkage cut at a distance threshold (scipy's
//!   `fcluster(criterion="distance")`): candidates whose average correlation distance is at
//!   most the threshold are one trial. No cap, one parameter; d = 0.5 is ρ = 0.5 between
//!   clusters' typical members.

use super::sharpe::{sample_variance, sharpe};

/// Correlation distances √(½(1 − ρ)) between every pair of `series`, as a full symmetric
/// matrix with a zero diagonal (ρ is Pearson's, computed over the common length of the
/// series, i.e. the shortest).
///
/// A constant series, or one with a non-finite value, has no correlation; it is treated as
/// uncorrelated with every other series (ρ = 0, d = √½) rather than poisoning the tree with
/// NaN, and so it never joins a cluster before the uncorrelated ones do.
pub fn correlation_distance(series: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = series.len();
    let len = series.iter().map(Vec::len).min().unwrap_or(0);
    let centred: Vec<Option<(Vec<f64>, f64)>> = series
        .iter()
        .map(|s| {
            let s = &s[..len];
            if len < 2 || s.iter().any(|x| !x.is_finite()) {
                return None;
            }
            let m = s.iter().sum::<f64>() / len as f64;
            let c: Vec<f64> = s.iter().map(|x| x - m).collect();
            let norm = c.iter().map(|x| x * x).sum::<f64>().sqrt();
            (norm > 0.0).then_some((c, norm))
        })
        .collect();
    let mut d = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in i + 1..n {
            let rho = match (&centred[i], &centred[j]) {
                (Some((a, na)), Some((b, nb))) => {
                    let r = a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / (na * nb);
                    r.clamp(-1.0, 1.0)
                }
                _ => 0.0,
            };
            let v = (0.5 * (1.0 - rho)).clamp(0.0, 1.0).sqrt();
            d[i][j] = v;
            d[j][i] = v;
        }
    }
    d
}

/// How the distance between two clusters follows from their members' distances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linkage {
    /// Nearest members (chains clusters together; rarely what is wanted here).
    Single,
    /// Farthest members: every pair within a cluster is at most the height apart.
    Complete,
    /// Mean of all member pairs (UPGMA).
    Average,
    /// Ward's minimum-variance criterion (skfolio's default).
    Ward,
}

/// One agglomeration step, in scipy's linkage-matrix convention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Merge {
    /// The smaller id of the two clusters joined: ids below the leaf count are single
    /// series, id leaves + i is the cluster formed by merge i.
    pub left: usize,
    /// The larger id.
    pub right: usize,
    /// The distance at which they join.
    pub height: f64,
    /// Series in the joined cluster.
    pub size: usize,
}

/// The whole agglomeration: `leaves − 1` merges in ascending height (scipy's `linkage`
/// output, row for row).
#[derive(Debug, Clone, PartialEq)]
pub struct Dendrogram {
    /// The number of series clustered.
    pub leaves: usize,
    /// The merges, lowest first.
    pub merges: Vec<Merge>,
    /// The merges as pairs of member series (any member of each side), for cutting.
    pairs: Vec<(usize, usize)>,
}

/// Lance–Williams update: the distance from cluster i to the union of x and y, given the
/// old distances and sizes (the formulas of scipy's `_hierarchy_distance_update`).
fn updated(method: Linkage, d_xi: f64, d_yi: f64, d_xy: f64, nx: f64, ny: f64, ni: f64) -> f64 {
    match method {
        Linkage::Single => d_xi.min(d_yi),
        Linkage::Complete => d_xi.max(d_yi),
        Linkage::Average => (nx * d_xi + ny * d_yi) / (nx + ny),
        Linkage::Ward => {
            let t = 1.0 / (nx + ny + ni);
            ((ni + nx) * t * d_xi * d_xi + (ni + ny) * t * d_yi * d_yi - ni * t * d_xy * d_xy)
                .sqrt()
        }
    }
}

/// Agglomerative clustering of a symmetric `distance` matrix (e.g. from
/// [`correlation_distance`]) by the nearest-neighbour chain, O(n²) time and memory: scipy's
/// algorithm for these four linkages, with its tie-breaking (lowest index first), so the
/// merges and heights are scipy's. Distances must be finite; NaN is read as +∞. A
/// non-square matrix is read over its leading square part.
pub fn linkage(distance: &[Vec<f64>], method: Linkage) -> Dendrogram {
    let n = distance
        .len()
        .min(distance.iter().map(Vec::len).min().unwrap_or(0));
    let mut d: Vec<f64> = (0..n * n)
        .map(|i| {
            let v = distance[i / n][i % n];
            if v.is_nan() { f64::INFINITY } else { v }
        })
        .collect();
    let mut size = vec![1usize; n];
    let mut raw: Vec<(usize, usize, f64)> = Vec::with_capacity(n.saturating_sub(1));
    let mut chain: Vec<usize> = Vec::with_capacity(n);
    for _ in 1..n {
        if chain.is_empty() {
            chain.push((0..n).find(|&i| size[i] > 0).expect("an active cluster"));
        }
        let (x, y, dist) = loop {
            let x = chain[chain.len() - 1];
            let prev = (chain.len() > 1).then(|| chain[chain.len() - 2]);
            let (mut y, mut best) = match prev {
                Some(p) => (Some(p), d[x * n + p]),
                None => (None, f64::INFINITY),
            };
            for i in 0..n {
                if size[i] > 0 && i != x && d[x * n + i] < best {
                    best = d[x * n + i];
                    y = Some(i);
                }
            }
            // Only infinite distances left: join the first other cluster at +∞.
            let y = y.unwrap_or_else(|| (0..n).find(|&i| size[i] > 0 && i != x).unwrap());
            if prev == Some(y) {
                break (x, y, best);
            }
            chain.push(y);
        };
        chain.truncate(chain.len() - 2);
        // The joined cluster lives on in the higher slot (scipy's and fastcluster's habit).
        let (x, y) = (x.min(y), x.max(y));
        let (nx, ny) = (size[x], size[y]);
        raw.push((x, y, dist));
        size[x] = 0;
        size[y] = nx + ny;
        for i in 0..n {
            if size[i] == 0 || i == y {
                continue;
            }
            let v = updated(
                method,
                d[i * n + x],
                d[i * n + y],
                dist,
                nx as f64,
                ny as f64,
                size[i] as f64,
            );
            d[i * n + y] = v;
            d[y * n + i] = v;
        }
    }
    // The chain finds merges out of height order; a stable sort gives scipy's order.
    raw.sort_by(|a, b| a.2.total_cmp(&b.2));
    // Name clusters as scipy's `label` does: union-find, merge i creates id n + i.
    let mut parent: Vec<usize> = (0..2 * n.max(1) - 1).collect();
    let mut count = vec![1usize; 2 * n.max(1) - 1];
    let find = |parent: &mut Vec<usize>, mut a: usize| {
        let mut root = a;
        while parent[root] != root {
            root = parent[root];
        }
        while parent[a] != root {
            let next = parent[a];
            parent[a] = root;
            a = next;
        }
        root
    };
    let mut merges = Vec::with_capacity(raw.len());
    for (i, &(x, y, h)) in raw.iter().enumerate() {
        let (rx, ry) = (find(&mut parent, x), find(&mut parent, y));
        let id = n + i;
        parent[rx] = id;
        parent[ry] = id;
        count[id] = count[rx] + count[ry];
        merges.push(Merge {
            left: rx.min(ry),
            right: rx.max(ry),
            height: h,
            size: count[id],
        });
    }
    Dendrogram {
        leaves: n,
        merges,
        pairs: raw.iter().map(|&(x, y, _)| (x, y)).collect(),
    }
}

/// Leaf labels after applying the first `k` merges: 0, 1, … numbered by each cluster's
/// first (lowest-index) series.
fn labels_after(tree: &Dendrogram, k: usize) -> Vec<usize> {
    let n = tree.leaves;
    let mut root: Vec<usize> = (0..n).collect();
    fn find(root: &mut [usize], mut a: usize) -> usize {
        while root[a] != a {
            root[a] = root[root[a]];
            a = root[a];
        }
        a
    }
    for &(x, y) in &tree.pairs[..k.min(tree.pairs.len())] {
        let (rx, ry) = (find(&mut root, x), find(&mut root, y));
        root[rx.max(ry)] = rx.min(ry);
    }
    let mut name = vec![usize::MAX; n];
    let mut next = 0;
    (0..n)
        .map(|i| {
            let r = find(&mut root, i);
            if name[r] == usize::MAX {
                name[r] = next;
                next += 1;
            }
            name[r]
        })
        .collect()
}

impl Dendrogram {
    /// Flat clusters whose members all joined at a height ≤ `threshold` (scipy's
    /// `fcluster(Z, t, criterion="distance")` for these monotone linkages). Labels are
    /// 0, 1, … in order of each cluster's first series.
    pub fn cut_at_height(&self, threshold: f64) -> Vec<usize> {
        let k = self
            .merges
            .iter()
            .take_while(|m| m.height <= threshold)
            .count();
        labels_after(self, k)
    }

    /// Exactly `clusters` flat clusters (clamped to 1..=leaves): the tree with its last
    /// `clusters − 1` merges undone (scipy's `cut_tree`, and `fcluster(…, "maxclust")` when
    /// heights do not tie). Labels as [`Dendrogram::cut_at_height`].
    pub fn cut_into(&self, clusters: usize) -> Vec<usize> {
        let k = clusters.clamp(1, self.leaves.max(1));
        labels_after(self, self.leaves.saturating_sub(k))
    }
}

/// The number of clusters by the two-order difference of the within-cluster dispersion
/// (Yue, Wang & Wei, "Application of two-order difference to gap statistic", 2009), as
/// skfolio's `compute_optimal_n_clusters`: W_m = Σ over clusters of m-cluster cut of the
/// mean pairwise distance within the cluster (singletons add nothing), for m = 1 ..=
/// max(8, √n) (at most n); the answer is the m maximizing W_(m+1) + W_(m−1) − 2·W_m, the
/// sharpest elbow. `tree` must come from `distance`. 2 series give 2, 1 gives 1, none 0.
pub fn gap_cluster_count(distance: &[Vec<f64>], tree: &Dendrogram) -> usize {
    let n = tree.leaves;
    if n <= 2 {
        return n;
    }
    let levels = n.min(8.max((n as f64).sqrt().round() as usize));
    // Replay the merges keeping each cluster's members and within-cluster pair sum; every
    // pair's distance is added exactly once (when its two sides join), so this is O(n²).
    let mut members: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
    let mut within = vec![0.0; n];
    let mut root: Vec<usize> = (0..n).collect();
    let mut dispersion = vec![0.0; levels + 1]; // dispersion[m] for m clusters, 1..=levels
    let record = |members: &[Vec<usize>], within: &[f64]| -> f64 {
        members
            .iter()
            .zip(within)
            .filter(|(m, _)| m.len() > 1)
            .map(|(m, w)| w / (m.len() * (m.len() - 1) / 2) as f64)
            .sum()
    };
    if levels == n {
        dispersion[n] = 0.0;
    }
    for (i, &(x, y)) in tree.pairs.iter().enumerate() {
        let (rx, ry) = (root[x], root[y]);
        let (keep, gone) = if members[rx].len() >= members[ry].len() {
            (rx, ry)
        } else {
            (ry, rx)
        };
        let moved = std::mem::take(&mut members[gone]);
        let mut cross = 0.0;
        for &a in &moved {
            for &b in &members[keep] {
                cross += distance[a][b];
            }
        }
        within[keep] += within[gone] + cross;
        within[gone] = 0.0;
        for &a in &moved {
            root[a] = keep;
        }
        members[keep].extend(moved);
        let clusters = n - 1 - i;
        if clusters <= levels {
            dispersion[clusters] = record(&members, &within);
        }
    }
    // gap(m) = W_(m+1) + W_(m−1) − 2·W_m for m = 2 ..= levels − 1; the first maximum wins.
    let mut best = (f64::NEG_INFINITY, 2);
    for m in 2..levels {
        let g = dispersion[m + 1] + dispersion[m - 1] - 2.0 * dispersion[m];
        if g > best.0 {
            best = (g, m);
        }
    }
    best.1
}

/// A flat clustering of the candidates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clusters {
    /// Cluster of each series, 0, 1, … in order of each cluster's first series.
    pub labels: Vec<usize>,
    /// The number of clusters.
    pub count: usize,
}

/// skfolio's `HierarchicalClustering()` on `PearsonDistance()` (both with their defaults) of
/// the candidates' return `series`: Ward linkage on the correlation distance, cut at the
/// [`gap_cluster_count`]. See the module doc for when to prefer [`effective_trials_at`].
pub fn cluster_trials(series: &[Vec<f64>]) -> Clusters {
    let d = correlation_distance(series);
    let tree = linkage(&d, Linkage::Ward);
    let count = gap_cluster_count(&d, &tree);
    let labels = tree.cut_into(count);
    let count = labels.iter().max().map_or(0, |m| m + 1);
    Clusters { labels, count }
}

/// The effective number of independent trials among the candidates' return `series`: the
/// cluster count of [`cluster_trials`] (0 for no series, 1 for one). Use it as the N of
/// [`super::expected_max_sharpe`] / [`super::dsr`], with [`cluster_sharpe_variance`] as V.
pub fn effective_trials(series: &[Vec<f64>]) -> usize {
    cluster_trials(series).count
}

/// The effective number of trials with average linkage on the correlation distance cut at
/// `threshold` (in [0, 1]; e.g. 0.5): how many groups remain once every group whose members'
/// mean pairwise distance is at most the threshold counts as one trial. 0 for no series.
pub fn effective_trials_at(series: &[Vec<f64>], threshold: f64) -> usize {
    let tree = linkage(&correlation_distance(series), Linkage::Average);
    tree.cut_at_height(threshold)
        .iter()
        .max()
        .map_or(0, |m| m + 1)
}

/// The per-period [`sharpe`] ratio of each cluster's representative: the inverse-variance
/// weighted portfolio of its members' returns (López de Prado 2019; weights ∝ 1/σ²_i, sample
/// variances), in label order. Inverse-variance weights are the minimum-variance portfolio
/// when members are uncorrelated, and let no single volatile member speak for the cluster.
/// Members with zero or undefined variance are left out; a cluster left with none has
/// Sharpe 0 ([`sharpe`]'s convention for no risk). `labels[i]` is the cluster of
/// `series[i]`; a label beyond `series` is ignored.
pub fn cluster_sharpes(series: &[Vec<f64>], labels: &[usize]) -> Vec<f64> {
    let k = labels.iter().take(series.len()).max().map_or(0, |m| m + 1);
    (0..k)
        .map(|c| {
            let members: Vec<&Vec<f64>> = series
                .iter()
                .zip(labels)
                .filter(|(_, l)| **l == c)
                .map(|(s, _)| s)
                .collect();
            let len = members.iter().map(|s| s.len()).min().unwrap_or(0);
            let weights: Vec<(f64, &Vec<f64>)> = members
                .iter()
                .filter_map(|s| {
                    let v = sample_variance(&s[..len]);
                    (v > 0.0 && v.is_finite()).then(|| (1.0 / v, *s))
                })
                .collect();
            let total: f64 = weights.iter().map(|w| w.0).sum();
            let portfolio: Vec<f64> = (0..len)
                .map(|t| weights.iter().map(|(w, s)| w * s[t]).sum::<f64>() / total)
                .collect();
            if weights.is_empty() {
                0.0
            } else {
                sharpe(&portfolio)
            }
        })
        .collect()
}

/// The V of the deflated Sharpe ratio when trials are clustered: the sample variance
/// (ddof = 1) of the [`cluster_sharpes`]. NaN for fewer than two clusters, which is harmless
/// there: [`super::expected_max_sharpe`] of one trial is 0 whatever the variance.
pub fn cluster_sharpe_variance(series: &[Vec<f64>], labels: &[usize]) -> f64 {
    sample_variance(&cluster_sharpes(series, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degenerate_inputs_do_not_panic() {
        assert_eq!(effective_trials(&[]), 0);
        assert_eq!(effective_trials(&[vec![0.1, 0.2, 0.3]]), 1);
        assert_eq!(effective_trials(&[vec![0.1, 0.2], vec![0.3, 0.1]]), 2);
        assert_eq!(effective_trials_at(&[], 0.5), 0);
        let constant = vec![0.01; 50];
        let with_nan: Vec<f64> = (0..50)
            .map(|i| if i == 3 { f64::NAN } else { i as f64 })
            .collect();
        let d = correlation_distance(&[constant.clone(), with_nan.clone(), vec![1.0; 3]]);
        assert!(d.iter().flatten().all(|v| v.is_finite()));
        assert_eq!(d[0][1], 0.5f64.sqrt());
        let t = linkage(&[vec![0.0, f64::NAN], vec![f64::NAN, 0.0]], Linkage::Ward);
        assert_eq!(t.merges.len(), 1);
        assert_eq!(linkage(&[], Linkage::Average).merges.len(), 0);
        assert!(cluster_sharpe_variance(&[constant], &[0]).is_nan());
        assert_eq!(cluster_sharpes(&[vec![0.0; 5]], &[0]), vec![0.0]);
    }

    #[test]
    fn copies_form_one_cluster() {
        let mut rng = crate::rng::Rng::new(5);
        let base: Vec<Vec<f64>> = (0..3)
            .map(|_| (0..200).map(|_| rng.normal()).collect())
            .collect();
        let series: Vec<Vec<f64>> = (0..12)
            .map(|i| {
                base[i % 3]
                    .iter()
                    .map(|x| x + 0.05 * rng.normal())
                    .collect()
            })
            .collect();
        assert_eq!(effective_trials(&series), 3);
        assert_eq!(effective_trials_at(&series, 0.3), 3);
        assert_eq!(effective_trials_at(&series, 0.01), 12);
        assert_eq!(effective_trials_at(&series, 1.0), 1);
        let c = cluster_trials(&series);
        assert_eq!(c.labels[..3], [0, 1, 2]);
        assert!(c.labels.iter().enumerate().all(|(i, l)| *l == i % 3));
        let tree = linkage(&correlation_distance(&series), Linkage::Complete);
        assert_eq!(tree.cut_into(3), c.labels);
        assert_eq!(tree.cut_into(0).iter().max(), Some(&0));
        assert_eq!(tree.cut_into(99), (0..12).collect::<Vec<_>>());
    }
}
