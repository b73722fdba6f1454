"""Benchmark every analysis on a synthetic paper-scale score set.

Paper scale (``--scale 1``): 50,000 image IDs x 76 variants (clean + 15 corruptions x 5
severities) = 3.8 M rows; 4 NR-IQA scorers, 3 classifiers, 1 zero-shot scorer, so 16 Q
variables x 4 task models = 64 pairs per analysis. Prints the wall time and the peak
traced memory (tracemalloc: numpy and Python allocations) of each analysis, the process's
peak resident memory, and the batched per-image-ID CV against a scikit-learn loop on the
same image IDs and folds (speed ratio and AUC agreement), measured in the same run.

    python benchmarks/bench_analysis.py --scale 0.1     # 5,000 image IDs, about a minute
    python benchmarks/bench_analysis.py                 # paper scale
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

FULL_IMAGES = 50_000


def _limit_cores(n: int) -> None:
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[:n]
        os.sched_setaffinity(0, cpus)
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass


def measure(name: str, func, results: list):
    tracemalloc.start()
    t = time.perf_counter()
    out = func()
    dt = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    results.append((name, dt, peak))
    print(f"{name:<28s} {dt:8.1f} s   peak {peak / 2**30:6.2f} GiB", flush=True)
    return out


def sklearn_comparison(scores, model: str, q, n_ids: int, n_folds: int, seed: int) -> None:
    """Batched per-image-ID CV vs a scikit-learn loop on the same image IDs and folds."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from iqa_lib.stats.logistic import cv_groups
    from iqa_lib.stats.splits import kfold_within_groups

    rows = np.flatnonzero(scores.image < n_ids)
    x = scores.q[q][rows].astype(np.float64)
    y = scores.m[model][rows]
    _, g = np.unique(scores.image[rows], return_inverse=True)
    folds = kfold_within_groups(g, n_folds, seed, stratify=y)
    t = time.perf_counter()
    res = cv_groups(x, y, g, folds, n_folds)
    t_batched = time.perf_counter() - t

    ours, theirs = [], []
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for gi in range(g.max() + 1):
            sel = np.flatnonzero(g == gi)
            for f in range(n_folds):
                tr, te = sel[folds[sel] != f], sel[folds[sel] == f]
                if len(np.unique(y[tr])) < 2 or len(np.unique(y[te])) < 2:
                    continue
                clf = LogisticRegression(C=np.inf, max_iter=1000)
                clf.fit(x[tr, None], y[tr])
                theirs.append(roc_auc_score(y[te], clf.decision_function(x[te, None])))
                ours.append(res["auc"][gi, f])
    t_loop = time.perf_counter() - t
    ours, theirs = np.array(ours), np.array(theirs)
    print(
        f"per-image CV on {g.max() + 1} image IDs ({model} M, {q[0]}:{q[1]} Q): batched "
        f"{t_batched * 1e3:.1f} ms, scikit-learn loop {t_loop:.2f} s, ratio "
        f"{t_loop / t_batched:.0f}x; {ours.size} scored folds, max |AUC diff| "
        f"{np.abs(ours - theirs).max():.2e}, equal: {np.allclose(ours, theirs, atol=1e-9)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="fraction of the 50,000 image IDs (default: %(default)s)",
    )
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--cores", type=int, default=2, help="CPU cores to use (default: 2)")
    parser.add_argument(
        "--compare-ids",
        type=int,
        default=200,
        help="image IDs in the scikit-learn comparison (default: %(default)s)",
    )
    parser.add_argument("--workdir", default=None, help="where to write the synthetic scores")
    parser.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    n_images = max(20, round(FULL_IMAGES * args.scale))

    if args.generate_only:
        from iqa_lib.analysis.synthetic import write_synthetic_scores

        write_synthetic_scores(args.workdir, n_images, seed=0)
        return 0

    _limit_cores(args.cores)
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_analysis_")
        args.workdir = tmp.name
    scores_dir = Path(args.workdir) / "scores"
    t = time.perf_counter()
    # generated in a child process so its memory does not count in this one's peak
    subprocess.run(
        [
            sys.executable,
            __file__,
            "--scale",
            str(args.scale),
            "--generate-only",
            "--workdir",
            str(scores_dir),
        ],
        check=True,
    )
    print(
        f"synthetic scores: {n_images} image IDs x 76 variants, 8 files "
        f"({time.perf_counter() - t:.0f} s to write, not counted)"
    )

    from iqa_lib.analysis import (
        group_means,
        groupwise,
        load_scores,
        mixtures,
        per_image,
        per_label,
        pointwise,
    )
    from iqa_lib.analysis.synthetic import write_synthetic_scores
    from iqa_lib.stats._jit import HAVE_NUMBA

    results: list = []
    with tempfile.TemporaryDirectory() as small:  # compile the kernels (cached on disk)
        write_synthetic_scores(small, 30, n_labels=5)
        s = load_scores(small)
        t = time.perf_counter()
        pointwise(s, n_bootstrap=10)
        per_image(s)
        print(
            f"numba={HAVE_NUMBA}; kernel compile/warm-up {time.perf_counter() - t:.1f} s "
            "(not counted)"
        )

    t_all = time.perf_counter()
    scores = measure("load scores", lambda: load_scores(scores_dir), results)
    print(
        f"  {scores.n_rows} rows, {len(scores.q)} Q variables x {len(scores.task_models)} "
        "task models"
    )
    means = measure("group means", lambda: group_means(scores), results)
    measure(
        "group-wise correlations",
        lambda: groupwise(scores, n_bootstrap=args.n_bootstrap, means=means),
        results,
    )
    measure(
        "point-wise (+ bootstrap)", lambda: pointwise(scores, n_bootstrap=args.n_bootstrap), results
    )
    measure("per-label 5-fold CV", lambda: per_label(scores), results)
    measure("per-image-ID 5-fold CV", lambda: per_image(scores), results)
    measure("mixtures (20 p_c)", lambda: mixtures(scores), results)
    total = time.perf_counter() - t_all
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"{'total':<28s} {total:8.1f} s   peak RSS of this process {rss:.2f} GiB "
        f"({args.cores} cores)"
    )
    sklearn_comparison(
        scores,
        scores.classifiers[0],
        (scores.classifiers[0], "q_l"),
        min(args.compare_ids, scores.n_images),
        5,
        0,
    )
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
