//! Every statistic against the numbers skfolio, pypbo, scipy and arch computed once on the
//! same inputs (reference/make_reference.py; the inputs are read from the JSON, never
//! regenerated here). Closed forms must agree to 1e-9 relative; the bootstrap p-values
//! within their Monte Carlo error.

use super::*;
use serde_json::Value;

const REFERENCE: &str = include_str!("../../reference/reference.json");

fn reference() -> Value {
    serde_json::from_str(REFERENCE).expect("reference.json parses")
}

/// A JSON number, with null standing for a non-finite value.
fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(num).collect()
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("integer") as usize)
        .collect()
}

/// |a − b| ≤ rel·max(|b|, floor): relative, with an absolute floor for values near 0.
#[track_caller]
fn close(a: f64, b: f64, rel: f64, what: &str) {
    let ok = (a.is_nan() && b.is_nan()) || (a - b).abs() <= rel * b.abs().max(1e-12) || a == b;
    assert!(
        ok,
        "{what}: got {a:e}, reference {b:e} (rel {:e})",
        (a - b).abs() / b.abs()
    );
}

const TIGHT: f64 = 1e-9;

type Series = Vec<Vec<f64>>;

/// (matrix rows = periods, candidate columns, the two skewed series).
fn inputs(r: &Value) -> (Series, Series, Series) {
    let rows: Vec<Vec<f64>> = r["matrix"].as_array().unwrap().iter().map(nums).collect();
    assert_eq!(rows.len(), r["rows"].as_u64().unwrap() as usize);
    let n = r["cols"].as_u64().unwrap() as usize;
    let cols = (0..n)
        .map(|j| rows.iter().map(|row| row[j]).collect())
        .collect();
    let extra = r["extra_series"]
        .as_array()
        .unwrap()
        .iter()
        .map(nums)
        .collect();
    (rows, cols, extra)
}

#[test]
fn normal_cdf_and_quantile_match_scipy() {
    let r = reference();
    let n = &r["normal"];
    for (x, want) in nums(&n["x"]).into_iter().zip(nums(&n["cdf"])) {
        close(normal_cdf(x), want, 1e-13, &format!("ndtr({x})"));
        close(normal_sf(-x), want, 1e-13, &format!("sf(-{x})"));
    }
    for (p, want) in nums(&n["p"]).into_iter().zip(nums(&n["ppf"])) {
        close(normal_inv_cdf(p), want, 1e-13, &format!("ndtri({p})"));
    }
}

#[test]
fn sharpe_moments_psr_and_min_trl_match_skfolio_and_pypbo() {
    let r = reference();
    let (_, cols, extra) = inputs(&r);
    let b = num(&r["benchmark_sr"]);
    let want: Vec<&Value> = r["columns"]
        .as_array()
        .unwrap()
        .iter()
        .chain(r["extra"].as_array().unwrap())
        .collect();
    let series: Vec<&Vec<f64>> = cols.iter().chain(&extra).collect();
    assert_eq!(series.len(), want.len());
    for (i, (s, w)) in series.into_iter().zip(want).enumerate() {
        let sr = sharpe(s);
        close(sr, num(&w["sharpe"]), TIGHT, &format!("sharpe[{i}]"));
        close(skewness(s), num(&w["skew"]), TIGHT, &format!("skew[{i}]"));
        close(
            kurtosis(s),
            num(&w["kurtosis"]),
            TIGHT,
            &format!("kurtosis[{i}]"),
        );
        close(psr(s, 0.0), num(&w["psr_0"]), TIGHT, &format!("psr_0[{i}]"));
        close(psr(s, b), num(&w["psr_b"]), TIGHT, &format!("psr_b[{i}]"));
        close(
            psr(s, b),
            num(&w["psr_pypbo_b"]),
            TIGHT,
            &format!("pypbo psr[{i}]"),
        );
        // pypbo's minTRL is the formula's value even when SR ≤ SR*; ours is +∞ there.
        for (target, conf, key) in [(0.0, 0.95, "min_trl_0_95"), (b, 0.99, "min_trl_b_99")] {
            let got = min_trl(s, target, conf);
            if sr > target {
                close(got, num(&w[key]), TIGHT, &format!("{key}[{i}]"));
            } else {
                assert_eq!(got, f64::INFINITY, "{key}[{i}]");
            }
        }
    }
}

#[test]
fn expected_max_and_dsr_match_skfolio_and_pypbo() {
    let r = reference();
    for case in r["expected_max"].as_array().unwrap() {
        let (v, n) = (num(&case["variance"]), num(&case["n_trials"]));
        let got = expected_max_sharpe(v, n);
        close(
            got,
            num(&case["skfolio"]),
            TIGHT,
            &format!("E[max] skfolio V={v} N={n}"),
        );
        close(
            got,
            num(&case["pypbo"]),
            TIGHT,
            &format!("E[max] pypbo V={v} N={n}"),
        );
    }
    let (_, cols, _) = inputs(&r);
    let d = &r["dsr"];
    let champion = d["candidate"].as_u64().unwrap() as usize;
    let v = trials_sharpe_variance(&cols);
    close(
        v,
        num(&d["trials_sr_variance"]),
        TIGHT,
        "trials SR variance",
    );
    let got = dsr(&cols[champion], v, cols.len() as f64);
    close(got, num(&d["skfolio"]), TIGHT, "dsr skfolio");
    close(got, num(&d["pypbo"]), TIGHT, "dsr pypbo");
}

#[test]
fn pbo_matches_pypbo() {
    let r = reference();
    let (rows, _, _) = inputs(&r);
    for key in ["pbo_s16", "pbo_s8"] {
        let w = &r[key];
        let s = w["s"].as_u64().unwrap() as usize;
        let fast = pbo_sharpe(&rows, s);
        let general = pbo(&rows, s, sharpe);
        for (name, got) in [("pbo_sharpe", &fast), ("pbo(sharpe)", &general)] {
            let what = format!("{key} {name}");
            assert_eq!(got.rows_dropped, rows.len() % s, "{what}");
            assert_eq!(
                got.logits.len(),
                w["n_combinations"].as_u64().unwrap() as usize
            );
            // Shares of splits: equal counts, up to pypbo summing 1/C terms one by one.
            close(got.pbo, num(&w["pbo"]), 1e-12, &format!("{what}: pbo"));
            close(got.prob_oos_loss, num(&w["prob_oos_loss"]), 1e-12, &what);
            close(
                got.degradation_slope,
                num(&w["slope"]),
                TIGHT,
                &format!("{what} slope"),
            );
            close(
                got.degradation_intercept,
                num(&w["intercept"]),
                TIGHT,
                &what,
            );
            let head = nums(&w["logits_head"]);
            let tail = nums(&w["logits_tail"]);
            let got_tail = &got.logits[got.logits.len() - tail.len()..];
            for (a, b) in got
                .logits
                .iter()
                .zip(&head)
                .chain(got_tail.iter().zip(&tail))
            {
                close(*a, *b, 1e-12, &format!("{what} logit"));
            }
            let sum: f64 = got.logits.iter().sum();
            close(
                sum,
                num(&w["logits_sum"]),
                TIGHT,
                &format!("{what} logit sum"),
            );
            let min = got.logits.iter().copied().fold(f64::INFINITY, f64::min);
            let max = got.logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            close(min, num(&w["logits_min"]), 1e-12, &what);
            close(max, num(&w["logits_max"]), 1e-12, &what);
            for (a, b) in got.is_metric.iter().zip(nums(&w["is_selected_head"])) {
                close(*a, b, TIGHT, &format!("{what} IS metric"));
            }
            for (a, b) in got.oos_metric.iter().zip(nums(&w["oos_selected_head"])) {
                close(*a, b, TIGHT, &format!("{what} OOS metric"));
            }
        }
        assert_eq!(fast.selected, general.selected);
    }
}

#[test]
fn clustering_matches_skfolio_and_scipy() {
    let r = reference();
    let (_, cols, _) = inputs(&r);
    let c = &r["clustering"];
    let dist = correlation_distance(&cols);
    // The condensed (upper-triangle, row by row) order of scipy's squareform.
    let upper: Vec<f64> = (0..cols.len())
        .flat_map(|i| dist[i][i + 1..].to_vec())
        .collect();
    for (a, b) in upper.iter().zip(nums(&c["distance_upper"])) {
        close(*a, b, 1e-12, "correlation distance");
    }
    let check_tree = |tree: &Dendrogram, want: &Value, what: &str| {
        let want = want.as_array().unwrap();
        assert_eq!(tree.merges.len(), want.len(), "{what}");
        for (m, w) in tree.merges.iter().zip(want) {
            let w = w.as_array().unwrap();
            assert_eq!(
                (m.left, m.right, m.size),
                (
                    w[0].as_u64().unwrap() as usize,
                    w[1].as_u64().unwrap() as usize,
                    w[3].as_u64().unwrap() as usize
                ),
                "{what}"
            );
            close(m.height, num(&w[2]), TIGHT, &format!("{what} height"));
        }
    };
    let sk = &c["skfolio_default"];
    check_tree(&linkage(&dist, Linkage::Ward), &sk["linkage"], "ward");
    let clusters = cluster_trials(&cols);
    assert_eq!(clusters.count, sk["n_clusters"].as_u64().unwrap() as usize);
    assert_eq!(clusters.labels, usizes(&sk["labels"]));
    assert_eq!(effective_trials(&cols), clusters.count);

    let avg = &c["average"];
    let tree = linkage(&dist, Linkage::Average);
    check_tree(&tree, &avg["linkage"], "average");
    for cut in avg["cuts"].as_array().unwrap() {
        let t = num(&cut["threshold"]);
        assert_eq!(tree.cut_at_height(t), usizes(&cut["labels"]), "cut at {t}");
        let k = cut["n_clusters"].as_u64().unwrap() as usize;
        assert_eq!(effective_trials_at(&cols, t), k, "count at {t}");
    }

    let srs = cluster_sharpes(&cols, &clusters.labels);
    for (a, b) in srs.iter().zip(nums(&c["cluster_sharpes"])) {
        close(*a, b, TIGHT, "cluster representative Sharpe");
    }
    let v = cluster_sharpe_variance(&cols, &clusters.labels);
    close(
        v,
        num(&c["cluster_sharpe_variance"]),
        TIGHT,
        "cluster SR variance",
    );
    close(
        expected_max_sharpe(v, clusters.count as f64),
        num(&c["clustered_benchmark_sr"]),
        TIGHT,
        "clustered E[max SR]",
    );
}

/// Rust's and numpy's bootstraps draw different resamples, so each p-value is an independent
/// Monte Carlo estimate of the same probability p with variance p(1 − p)/reps; their
/// difference has standard deviation √(2p(1 − p)/reps), and 5 of those (plus one step of
/// 1/reps for the discreteness) fails a correct implementation with probability < 1e-6.
fn bootstrap_tolerance(p: f64, reps: usize) -> f64 {
    let p = p.clamp(1.0 / reps as f64, 1.0 - 1.0 / reps as f64);
    5.0 * (2.0 * p * (1.0 - p) / reps as f64).sqrt() + 1.0 / reps as f64
}

#[test]
fn spa_matches_arch_within_bootstrap_error() {
    let r = reference();
    let (_, cols, _) = inputs(&r);
    for (i, case) in r["spa"].as_array().unwrap().iter().enumerate() {
        let name = case["name"].as_str().unwrap();
        let bench = nums(&case["benchmark"]);
        let reps = case["reps"].as_u64().unwrap() as usize;
        let config = SpaConfig {
            reps,
            mean_block: num(&case["mean_block"]),
            seed: 1000 + i as u64,
            studentize: case["studentize"].as_bool().unwrap(),
        };
        let got = spa(&bench, &cols, &config);
        // The deterministic parts are exact.
        for (a, b) in got.variances.iter().zip(nums(&case["variances"])) {
            close(*a, b, TIGHT, &format!("{name} variance"));
        }
        let valid: Vec<bool> = case["valid"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_bool().unwrap())
            .collect();
        assert_eq!(got.relevant, valid, "{name} relevant columns");
        for (key, p) in [
            ("lower", got.lower),
            ("consistent", got.consistent),
            ("upper", got.upper),
        ] {
            let want = num(&case[key]);
            let tol = bootstrap_tolerance(want, reps);
            assert!(
                (p - want).abs() <= tol,
                "{name} {key}: got {p}, arch {want}, tolerance {tol}"
            );
        }
    }
}
