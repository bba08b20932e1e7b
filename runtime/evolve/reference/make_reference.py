#!/usr/bin/env python3
"""Reference numbers for the statistics of `qtm-evolve` (runtime/evolve/src/stats).

Run ONCE, by hand, when a statistic's definition changes; CI never runs it. The Rust tests
read the JSON it writes (inputs and outputs), so Rust never regenerates the inputs.

    python3 -m venv $HOME/.cache/qtm/pyenv-evolve
    $HOME/.cache/qtm/pyenv-evolve/bin/pip install skfolio arch seaborn statsmodels matplotlib joblib psutil
    # pypbo is not on PyPI: take github.com/esvhd/pypbo at commit
    # ddbc63143dad5cec3d8e5711b1265d9dc963ffce (its `pypbo/` folder) and put it on PYTHONPATH.
    PYTHONPATH=/path/to/pypbo $HOME/.cache/qtm/pyenv-evolve/bin/python \
        runtime/evolve/reference/make_reference.py

Versions that produced the committed reference.json (also recorded inside it, "versions"):
    Python 3.11.7, numpy 2.4.6, scipy 1.17.1, pandas 3.1.2, skfolio 1.12.2, arch 8.0.0,
    statsmodels 0.15.0, pypbo 0.1 (git ddbc631).

What computes what (library function -> JSON key):
    skfolio.measures.mean / standard_deviation      -> sharpe
    skfolio.measures.skew / kurtosis                -> skew, kurtosis (population moments)
    skfolio.measures.probabilistic_sharpe_ratio     -> psr_0, psr_b
    pypbo.psr (with skfolio's moments)              -> psr_pypbo_b (cross-check)
    pypbo.minTRL (with skfolio's moments)           -> min_trl_0_95, min_trl_b_99
    skfolio.measures.expected_max_sharpe_ratio      -> expected_max[*].skfolio
    pypbo.expected_max (times sqrt(V))              -> expected_max[*].pypbo
    skfolio.measures.deflated_sharpe_ratio          -> dsr.skfolio
    pypbo.dsr                                       -> dsr.pypbo
    pypbo.pbo (metric pypbo.perf.sharpe_iid)         -> pbo_s16, pbo_s8
    skfolio PearsonDistance + HierarchicalClustering -> clustering.skfolio_default
    scipy.cluster.hierarchy.linkage / fcluster      -> clustering.average
    numpy (no library has it)                       -> clustering.cluster_sharpe_variance
    arch.bootstrap.SPA                              -> spa[*]
    scipy.special.ndtr / ndtri                      -> normal
"""

import json
import math
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pypbo
import pypbo.perf
import scipy
import scipy.cluster.hierarchy as sch
import scipy.spatial.distance as scd
import scipy.special
from arch.bootstrap import SPA
from skfolio import measures as skm
from skfolio.cluster import HierarchicalClustering
from skfolio.distance import PearsonDistance

OUT = Path(__file__).with_name("reference.json")
SEED = 20260611
T = 328  # 328 % 16 == 8: pypbo drops the first 8 rows, which the Rust side must do too
N = 40
GROUPS = [10, 8, 8, 6, 4, 2, 1, 1]  # candidates sharing a latent factor (clusters)
SPA_REPS = 10_000
SPA_BLOCK = 10


def r6(x):
    # Six decimals keep the JSON small and make every input exactly the f64 that Rust parses.
    return np.round(np.asarray(x, dtype=float), 6)


def num(x):
    """A JSON number, or null for NaN / infinity (the Rust side reads null as 'not finite')."""
    x = float(x)
    return x if math.isfinite(x) else None


def nums(xs):
    return [num(x) for x in xs]


def make_inputs(rng):
    g = len(GROUPS)
    scale = 0.01
    factors = rng.standard_t(df=5, size=(T, g)) * scale * math.sqrt(3 / 5)
    cols = []
    for gi, size in enumerate(GROUPS):
        for _ in range(size):
            drift = rng.normal(0.0003, 0.0003)
            noise = rng.standard_t(df=4, size=T) * scale * math.sqrt(1 / 2)
            load = rng.uniform(0.25, 1.0)
            cols.append(drift + load * factors[:, gi] + 0.55 * noise)
    matrix = r6(np.column_stack(cols))  # T x N, rows are periods
    # Two series whose skew is far from 0, so PSR's skew/kurtosis terms matter.
    crash = np.where(rng.uniform(size=T) < 0.04, -0.04, 0.0) + rng.normal(0.003, 0.004, T)
    lottery = np.where(rng.uniform(size=T) < 0.04, 0.05, 0.0) + rng.normal(-0.0012, 0.004, T)
    extra = [r6(crash), r6(lottery)]
    # SPA benchmarks: one the candidates mostly beat, one they mostly do not.
    weak = r6(-0.0011 + 0.5 * factors[:, 0] + rng.normal(0.0, 0.006, T))
    strong = r6(0.0006 + 0.5 * factors[:, 0] + rng.normal(0.0, 0.006, T))
    return matrix, extra, weak, strong


def moments(x):
    return float(skm.skew(x)), float(skm.kurtosis(x))


def sharpe(x):
    return float(skm.mean(x) / skm.standard_deviation(x))


def series_stats(x, bench_sr):
    sr = sharpe(x)
    sk, ku = moments(x)
    t = len(x)
    return {
        "sharpe": sr,
        "skew": sk,
        "kurtosis": ku,
        "psr_0": num(skm.probabilistic_sharpe_ratio(x, benchmark_sharpe_ratio=0.0)),
        "psr_b": num(skm.probabilistic_sharpe_ratio(x, benchmark_sharpe_ratio=bench_sr)),
        "psr_pypbo_b": num(pypbo.psr(sr, t, sk, ku, target_sharpe=bench_sr)),
        "min_trl_0_95": num(pypbo.minTRL(sr, sk, ku, target_sharpe=0.0, prob=0.95)),
        "min_trl_b_99": num(pypbo.minTRL(sr, sk, ku, target_sharpe=bench_sr, prob=0.99)),
    }


def pbo_case(matrix, s):
    res = pypbo.pbo(
        matrix,
        S=s,
        metric_func=lambda x: pypbo.perf.sharpe_iid(x, bench=0, factor=1),
        threshold=0,
        n_jobs=1,
    )
    logits = np.asarray(res.logits, dtype=float)
    return {
        "s": s,
        "pbo": float(res.pbo),
        "prob_oos_loss": float(res.prob_oos_loss),
        "slope": float(res.linear_model.slope),
        "intercept": float(res.linear_model.intercept),
        "n_combinations": len(logits),
        "logits_head": nums(logits[:40]),
        "logits_tail": nums(logits[-40:]),
        "logits_sum": float(np.sum(logits)),
        "logits_min": float(np.min(logits)),
        "logits_max": float(np.max(logits)),
        "is_selected_head": nums(np.asarray(res.R_n_star)[:40]),
        "oos_selected_head": nums(np.asarray(res.R_bar_n_star)[:40]),
    }


def canonical(labels):
    """Labels renumbered by first appearance, so two partitions compare as lists."""
    seen = {}
    return [seen.setdefault(int(l), len(seen)) for l in labels]


def cluster_sharpe_variance(matrix, labels):
    # Each cluster is represented by its inverse-variance-weighted portfolio (Lopez de Prado,
    # "A Data Science Solution to the Multiple-Testing Crisis in Financial Research", 2019).
    srs = []
    for c in sorted(set(labels)):
        idx = [i for i, l in enumerate(labels) if l == c]
        sub = matrix[:, idx]
        w = 1.0 / np.var(sub, axis=0, ddof=1)
        w = w / w.sum()
        srs.append(sharpe(sub @ w))
    return srs, float(np.var(srs, ddof=1))


def clustering(matrix):
    dist = PearsonDistance().fit(matrix).distance_
    hc = HierarchicalClustering().fit(dist)
    labels = canonical(hc.labels_)
    rep_srs, v = cluster_sharpe_variance(matrix, labels)
    k = hc.n_clusters_
    emax = skm.expected_max_sharpe_ratio(n_trials=k, trial_sharpe_ratio_std=math.sqrt(v))
    cond = scd.squareform(dist, checks=False)
    avg = sch.linkage(cond, method="average")
    cuts = []
    for t in (0.35, 0.5, 0.6, 0.65):
        gap = float(np.min(np.abs(avg[:, 2] - t)))
        assert gap > 1e-6, f"threshold {t} too close to a merge height ({gap})"
        lab = sch.fcluster(avg, t=t, criterion="distance")
        cuts.append({"threshold": t, "n_clusters": int(lab.max()), "labels": canonical(lab)})
    return {
        "distance_upper": nums(cond[:60]),
        "skfolio_default": {
            "n_clusters": int(k),
            "labels": labels,
            "linkage": [[int(a), int(b), float(h), int(n)] for a, b, h, n in hc.linkage_matrix_],
        },
        "cluster_sharpes": nums(rep_srs),
        "cluster_sharpe_variance": v,
        "clustered_benchmark_sr": float(emax),
        "average": {
            "linkage": [[int(a), int(b), float(h), int(n)] for a, b, h, n in avg],
            "cuts": cuts,
        },
    }


def spa_case(name, bench, matrix, seed, studentize):
    # arch takes LOSSES: the loss of a return series is minus the returns.
    if studentize:
        # arch 8.0.0 computes Hansen's variances but does not divide by them in the statistic;
        # dividing each loss differential by its own std feeds arch the studentized test.
        probe = SPA(-bench, -matrix, block_size=SPA_BLOCK, reps=10, seed=seed)
        probe.compute()
        d = matrix - bench[:, None]
        d = d / np.sqrt(probe._loss_diff_var)
        spa = SPA(np.zeros(T), -d, block_size=SPA_BLOCK, reps=SPA_REPS, seed=seed)
    else:
        spa = SPA(-bench, -matrix, block_size=SPA_BLOCK, reps=SPA_REPS, seed=seed)
    spa.compute()
    p = spa.pvalues
    return {
        "name": name,
        "benchmark": bench.tolist(),
        "studentize": studentize,
        "reps": SPA_REPS,
        "mean_block": SPA_BLOCK,
        "lower": float(p["lower"]),
        "consistent": float(p["consistent"]),
        "upper": float(p["upper"]),
        "variances": nums(spa._loss_diff_var),
        "valid": [bool(v) for v in spa._valid_columns],
    }


def main():
    rng = np.random.default_rng(SEED)
    matrix, extra, weak, strong = make_inputs(rng)
    columns = [matrix[:, j] for j in range(N)]
    srs = np.array([sharpe(c) for c in columns])
    champion = int(np.argmax(srs))
    bench_sr = 0.05
    var_sr = float(np.var(srs, ddof=1))

    expected = []
    for v, n in ((var_sr, N), (0.0025, 5), (0.01, 100), (0.0004, 1000), (0.003, 12.5)):
        expected.append(
            {
                "variance": v,
                "n_trials": n,
                "skfolio": float(
                    skm.expected_max_sharpe_ratio(n_trials=n, trial_sharpe_ratio_std=math.sqrt(v))
                ),
                "pypbo": float(math.sqrt(v) * pypbo.expected_max(n)),
            }
        )

    ch = matrix[:, champion]
    sk, ku = moments(ch)
    dsr = {
        "candidate": champion,
        "trials_sr_variance": var_sr,
        "n_trials": N,
        "skfolio": float(skm.deflated_sharpe_ratio(ch, srs)),
        "pypbo": float(pypbo.dsr(srs[champion], math.sqrt(var_sr), N, T, sk, ku)),
    }

    # Down to -37: below about -37.5, Phi is subnormal and no longer has full precision.
    grid_x = [-37.0, -30.0, -20.0, -10.0, -8.0, -6.0, -5.6, -3.0, -1.5, -0.6744, -0.3, -1e-9,
              0.0, 1e-9, 0.2, 0.6745, 1.0, 2.5, 5.0, 5.66, 7.0, 8.2, 9.0]
    grid_p = [1e-300, 1e-100, 1e-20, 1e-12, 1.3e-11, 1e-6, 0.001, 0.025, 0.0749, 0.0751, 0.3,
              0.5, 0.7, 0.9249, 0.9251, 0.975, 0.999, 1 - 1e-9, 1 - 1e-12]
    normal = {
        "x": grid_x,
        "cdf": [float(scipy.special.ndtr(x)) for x in grid_x],
        "p": grid_p,
        "ppf": [float(scipy.special.ndtri(p)) for p in grid_p],
    }

    out = {
        "about": "Inputs and reference outputs for runtime/evolve/src/stats; made by make_reference.py",
        "versions": {
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "skfolio": version("skfolio"),
            "arch": version("arch"),
            "pandas": version("pandas"),
            "pypbo": "0.1 (github esvhd/pypbo ddbc63143dad5cec3d8e5711b1265d9dc963ffce)",
        },
        "seed": SEED,
        "rows": T,
        "cols": N,
        "matrix": matrix.tolist(),
        "extra_series": [e.tolist() for e in extra],
        "benchmark_sr": bench_sr,
        "columns": [series_stats(c, bench_sr) for c in columns],
        "extra": [series_stats(e, bench_sr) for e in extra],
        "expected_max": expected,
        "dsr": dsr,
        "normal": normal,
        "pbo_s16": pbo_case(matrix, 16),
        "pbo_s8": pbo_case(matrix, 8),
        "clustering": clustering(matrix),
        "spa": [
            spa_case("weak", weak, matrix, 7, False),
            spa_case("strong", strong, matrix, 8, False),
            spa_case("strong_studentized", strong, matrix, 9, True),
        ],
    }
    text = json.dumps(out, separators=(",", ":"))
    OUT.write_text(text + "\n")
    print(f"wrote {OUT} ({len(text) / 1024:.0f} KiB)")
    for s in out["spa"]:
        print(s["name"], s["lower"], s["consistent"], s["upper"])
    print("pbo", out["pbo_s16"]["pbo"], out["pbo_s8"]["pbo"])
    c = out["clustering"]
    print("clusters", c["skfolio_default"]["n_clusters"], [x["n_clusters"] for x in c["average"]["cuts"]])
    print("dsr", dsr, "champion sr", srs[champion])


if __name__ == "__main__":
    main()
