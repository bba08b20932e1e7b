//! Selection: tournaments for one objective, and NSGA-II's non-dominated sorting and crowding
//! distance for several (Deb, Pratap, Agarwal & Meyarivan 2002).

use std::cmp::Ordering;

use crate::rng::Rng;

/// Orders two candidates by fitness (higher first), then by genome hash (smaller first), so
/// every ranking is total and the same on every run.
pub fn better(fa: f64, ha: &str, fb: f64, hb: &str) -> Ordering {
    fb.total_cmp(&fa).then_with(|| ha.cmp(hb))
}

/// Index of the winner of a tournament of `size` drawn with replacement from `0..n`, where
/// `cmp(i, j)` is `Less` when `i` is better.
pub fn tournament(
    n: usize,
    size: usize,
    rng: &mut Rng,
    cmp: impl Fn(usize, usize) -> Ordering,
) -> usize {
    let mut best = rng.index(n);
    for _ in 1..size.max(1) {
        let c = rng.index(n);
        if cmp(c, best) == Ordering::Less {
            best = c;
        }
    }
    best
}

/// Whether `a` dominates `b` (all objectives maximized): no worse in any, better in one.
pub fn dominates(a: &[f64], b: &[f64]) -> bool {
    let mut strictly = false;
    for (x, y) in a.iter().zip(b) {
        if x < y {
            return false;
        }
        if x > y {
            strictly = true;
        }
    }
    strictly
}

/// Fronts of non-dominated sorting: `fronts[0]` is the Pareto front, and so on. Indices in
/// each front ascending.
pub fn non_dominated_fronts(points: &[Vec<f64>]) -> Vec<Vec<usize>> {
    let n = points.len();
    let mut dominated_by = vec![0usize; n];
    let mut dominates_list: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 0..n {
        for j in (i + 1)..n {
            if dominates(&points[i], &points[j]) {
                dominates_list[i].push(j);
                dominated_by[j] += 1;
            } else if dominates(&points[j], &points[i]) {
                dominates_list[j].push(i);
                dominated_by[i] += 1;
            }
        }
    }
    let mut fronts = Vec::new();
    let mut current: Vec<usize> = (0..n).filter(|&i| dominated_by[i] == 0).collect();
    while !current.is_empty() {
        let mut next = Vec::new();
        for &i in &current {
            for &j in &dominates_list[i] {
                dominated_by[j] -= 1;
                if dominated_by[j] == 0 {
                    next.push(j);
                }
            }
        }
        next.sort_unstable();
        fronts.push(std::mem::take(&mut current));
        current = next;
    }
    fronts
}

/// Crowding distance of each member of one front (same order as `front`): boundary points
/// are infinitely far, the rest sum their neighbours' normalized gaps per objective.
// `k` indexes an objective across many points, not one slice.
#[allow(clippy::needless_range_loop)]
pub fn crowding(points: &[Vec<f64>], front: &[usize]) -> Vec<f64> {
    let m = front.len();
    let mut d = vec![0.0; m];
    if m <= 2 {
        return vec![f64::INFINITY; m];
    }
    let objectives = points[front[0]].len();
    for k in 0..objectives {
        let mut order: Vec<usize> = (0..m).collect();
        order.sort_by(|&a, &b| {
            points[front[a]][k]
                .total_cmp(&points[front[b]][k])
                .then(front[a].cmp(&front[b]))
        });
        let lo = points[front[order[0]]][k];
        let hi = points[front[order[m - 1]]][k];
        d[order[0]] = f64::INFINITY;
        d[order[m - 1]] = f64::INFINITY;
        if hi > lo {
            for w in 1..m - 1 {
                let gap = points[front[order[w + 1]]][k] - points[front[order[w - 1]]][k];
                d[order[w]] += gap / (hi - lo);
            }
        }
    }
    d
}

/// NSGA-II's rank and crowding of each point: `(front index, crowding distance)`.
pub fn rank_and_crowding(points: &[Vec<f64>]) -> Vec<(usize, f64)> {
    let mut out = vec![(0, 0.0); points.len()];
    for (r, front) in non_dominated_fronts(points).iter().enumerate() {
        for (i, c) in front.iter().zip(crowding(points, front)) {
            out[*i] = (r, c);
        }
    }
    out
}

/// NSGA-II's crowded comparison: lower front first, then larger crowding distance.
pub fn crowded_cmp(a: (usize, f64), b: (usize, f64)) -> Ordering {
    a.0.cmp(&b.0).then_with(|| b.1.total_cmp(&a.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fronts_and_crowding_match_a_hand_worked_example() {
        // Maximize both: (3,1), (2,2), (1,3) are the front; (1,1) is dominated by (2,2).
        let p = vec![
            vec![3.0, 1.0],
            vec![1.0, 1.0],
            vec![2.0, 2.0],
            vec![1.0, 3.0],
            vec![0.5, 0.5],
        ];
        let fronts = non_dominated_fronts(&p);
        assert_eq!(fronts, vec![vec![0, 2, 3], vec![1], vec![4]]);
        let c = crowding(&p, &fronts[0]);
        assert!(c[0].is_infinite() && c[2].is_infinite());
        // The middle point's gaps: (3−1)/2 + (3−1)/2 = 2.
        assert!((c[1] - 2.0).abs() < 1e-12);
        let rc = rank_and_crowding(&p);
        assert_eq!(crowded_cmp(rc[2], rc[1]), Ordering::Less);
    }

    #[test]
    fn tournaments_of_three_prefer_the_better() {
        let fitness: Vec<f64> = (0..10).map(f64::from).collect();
        let mut rng = Rng::new(5);
        let mut sum = 0usize;
        for _ in 0..10_000 {
            sum += tournament(10, 3, &mut rng, |a, b| fitness[b].total_cmp(&fitness[a]));
        }
        // E[max of 3 uniform draws from 0..10] = 6.975.
        let mean = sum as f64 / 10_000.0;
        assert!((mean - 6.975).abs() < 0.1, "{mean}");
    }
}
