"""Benchmark every analysis on a synthetic paper-scale score set.

Paper scale (``--scale 1``): 50,000 image IDs x 76 variants (clean + 15 corruptions x 5
severities) = 3.8 M rows; 4 NR-IQA scorers, 3 classifiers, 1 zero-shot scorer, so 16 Q
variables x 4 task models = 64 pairs per analysis, 1,000 bootstrap resamples.

What it reports, each figure measured in this run:

- the numba kernel cache: wall time of a small ``run_all`` (30 image IDs, every analysis)
  in a fresh process with an empty ``NUMBA_CACHE_DIR`` (cold: compiles every kernel) and in
  a second fresh process on that cache (warm); the difference is what a user's first
  ``iqa-kit analyze`` pays once;
- per analysis, in run_all's order, for each ``--modes`` entry run in its own fresh
  process on the warm cache: wall time, CPU time (all threads) and peak resident memory
  (sampled from /proc every 5 ms), then the total and the process's peak RSS:

  ``parallel``  (Q, M) pairs on a pool of ``--cores`` threads, kernels on ``--cores`` numba
                threads (what ``iqa-kit analyze`` does);
  ``serial``    one numba thread, pairs in turn (the baseline of the ratio);
  ``in-kernel`` pairs in turn, each kernel's groups on ``--cores`` numba threads (the
                layout before the pairs got a pool);

- the serial / parallel wall ratio per analysis and in total;
- the batched per-image-ID CV against a scikit-learn loop on the same image IDs and folds.

``--package-path DIR`` runs the modes against another copy of ``iqa_lib`` (for example the
previous commit, exported with ``git archive``) so old and new code can be timed back to
back; code without the shared point-wise work or the ``workers`` option is run the old way.

    python benchmarks/bench_analysis.py --scale 0.1     # 5,000 image IDs, a few minutes
    python benchmarks/bench_analysis.py                 # paper scale
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

FULL_IMAGES = 50_000
MODES = ("parallel", "serial", "in-kernel")
CACHE_PROBE = """
import json, os, tempfile, time
t0 = time.perf_counter()
from iqa_lib.analysis.runner import run_all
from iqa_lib.analysis.synthetic import write_synthetic_scores
t1 = time.perf_counter()
with tempfile.TemporaryDirectory() as d:
    write_synthetic_scores(d + "/s", 30, n_labels=5, seed=0)
    t2 = time.perf_counter()
    run_all(d + "/s", d + "/o", n_bootstrap=20, progress=False, log=lambda *a: None)
    t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "run_all": t3 - t2, "cpu": time.process_time()}))
"""


def _limit_cores(n: int) -> None:
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[:n]
        os.sched_setaffinity(0, cpus)


class RssSampler:
    """Peak resident memory of this process, sampled from /proc every ``interval`` s."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak = 0
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.rss())

    def reset(self) -> None:
        self.peak = self.rss()

    def stop(self) -> None:
        self._stop.set()


def _accepts(func, name: str) -> bool:
    return name in inspect.signature(func).parameters


def run_mode(args) -> int:
    """One mode in this (fresh) process: time each analysis, print one JSON line."""
    import numba

    _limit_cores(args.cores)
    threads = 1 if args.run_mode == "serial" else min(args.cores, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(threads)
    workers = threads if args.run_mode == "parallel" else 1

    from iqa_lib.analysis import (
        group_means,
        groupwise,
        load_scores,
        mixtures,
        per_image,
        per_label,
        pointwise,
    )
    from iqa_lib.analysis.paired import paired_tests
    from iqa_lib.analysis.synthetic import write_synthetic_scores

    # the module, not the function iqa_lib.analysis re-exports under the same name
    auc_work = getattr(importlib.import_module("iqa_lib.analysis.pointwise"), "auc_work", None)
    pool = {"workers": workers} if _accepts(per_label, "workers") else {}
    # load the compiled kernels from the (warm) cache: timed, not counted in the total
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as small:
        write_synthetic_scores(small, 30, n_labels=5)
        s = load_scores(small)
        pointwise(s, n_bootstrap=10)
        paired_tests(s, n_bootstrap=10)
        per_image(s, **pool)
        mixtures(s, fractions=(0.1,), **pool)
    warm_up = time.perf_counter() - t

    sampler = RssSampler()
    out: list[dict] = []

    def measure(name, func):
        sampler.reset()
        c = time.process_time()
        t = time.perf_counter()
        result = func()
        out.append(
            {
                "name": name,
                "wall": time.perf_counter() - t,
                "cpu": time.process_time() - c,
                "peak_rss": max(sampler.peak, sampler.rss()),
            }
        )
        return result

    b = args.n_bootstrap
    t_all = time.perf_counter()
    c_all = time.process_time()
    scores = measure("load scores", lambda: load_scores(args.scores_dir))
    means = measure("group means", lambda: group_means(scores))
    measure("group-wise correlations", lambda: groupwise(scores, n_bootstrap=b, means=means))
    if auc_work is not None:
        work = measure("point-wise fits + bootstrap", lambda: auc_work(scores, n_bootstrap=b))
        measure("point-wise table", lambda: pointwise(scores, n_bootstrap=b, work=work))
        measure("paired tests", lambda: paired_tests(scores, n_bootstrap=b, work=work))
        del work
    else:  # code before the shared work: each table does its own fits and bootstrap
        measure("point-wise (+ bootstrap)", lambda: pointwise(scores, n_bootstrap=b))
        measure("paired tests", lambda: paired_tests(scores, n_bootstrap=b))
    measure("per-label 5-fold CV", lambda: per_label(scores, **pool))
    measure("per-image-ID 5-fold CV", lambda: per_image(scores, **pool))
    measure("mixtures (20 p_c)", lambda: mixtures(scores, **pool))
    total = time.perf_counter() - t_all
    cpu = time.process_time() - c_all
    sampler.stop()
    print(
        json.dumps(
            {
                "mode": args.run_mode,
                "numba_threads": threads,
                "workers": workers if pool else "n/a (old code)",
                "warm_up": warm_up,
                "rows": scores.n_rows,
                "analyses": out,
                "total": total,
                "total_cpu": cpu,
                "max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            }
        )
    )
    return 0


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
    cv_groups(x, y, g, folds, n_folds)  # load the kernels from the cache first
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


def _child_env(package_path: str | None, **extra) -> dict:
    env = dict(os.environ, **extra)
    if package_path:
        env["PYTHONPATH"] = os.pathsep.join(
            [str(Path(package_path).resolve())] + [p for p in [env.get("PYTHONPATH")] if p]
        )
    return env


def cache_probe(args) -> None:
    """Cold vs warm numba cache: the same small run_all in two fresh processes."""
    with tempfile.TemporaryDirectory(prefix="numba_cache_") as cache:
        env = _child_env(args.package_path, NUMBA_CACHE_DIR=cache)
        runs = []
        for _ in range(2):
            p = subprocess.run(
                [sys.executable, "-c", CACHE_PROBE],
                env=env,
                check=True,
                capture_output=True,
                text=True,
                cwd=tempfile.gettempdir(),
            )
            runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
        n_files = sum(1 for _ in Path(cache).rglob("*.nbc"))
    cold, warm = runs
    print(
        f"numba cache, small run_all (30 image IDs, every analysis) in fresh processes: "
        f"cold (empty NUMBA_CACHE_DIR) {cold['run_all']:.1f} s, warm {warm['run_all']:.1f} s "
        f"(compile paid once: {cold['run_all'] - warm['run_all']:.1f} s; {n_files} cached "
        f"kernels); import {cold['import']:.1f} / {warm['import']:.1f} s"
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
        "--modes",
        default="parallel,serial",
        help=f"comma-separated, each in a fresh process, from {MODES} (default: %(default)s)",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs of each mode, interleaved; medians shown"
    )
    parser.add_argument(
        "--compare-ids",
        type=int,
        default=200,
        help="image IDs in the scikit-learn comparison (0: skip; default: %(default)s)",
    )
    parser.add_argument("--no-cache-probe", action="store_true", help="skip cold vs warm cache")
    parser.add_argument("--package-path", default=None, help="run another copy of iqa_lib")
    parser.add_argument("--workdir", default=None, help="where to write the synthetic scores")
    parser.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--run-mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--scores-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    n_images = max(20, round(FULL_IMAGES * args.scale))

    if args.generate_only:
        from iqa_lib.analysis.synthetic import write_synthetic_scores

        write_synthetic_scores(args.workdir, n_images, seed=0)
        return 0
    if args.run_mode:
        return run_mode(args)

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = sorted(set(modes) - set(MODES))
    if bad:
        parser.error(f"unknown mode(s) {bad}; choose from {MODES}")
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_analysis_")
        args.workdir = tmp.name
    scores_dir = Path(args.workdir) / "scores"
    print(f"load before the run: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs")
    if not (scores_dir / "tv.parquet").exists():
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, __file__, "--scale", str(args.scale), "--generate-only",
             "--workdir", str(scores_dir)],
            check=True,
        )  # fmt: skip
        print(f"synthetic scores: {n_images} image IDs x 76 variants, 8 files "
              f"({time.perf_counter() - t:.0f} s to write, not counted)")  # fmt: skip
    if not args.no_cache_probe:
        cache_probe(args)

    results: dict[str, list[dict]] = {m: [] for m in modes}
    for _ in range(args.repeats):
        for mode in modes:
            cmd = [sys.executable, __file__, "--run-mode", mode, "--scores-dir", str(scores_dir),
                   "--cores", str(args.cores), "--n-bootstrap", str(args.n_bootstrap)]  # fmt: skip
            p = subprocess.run(
                cmd, env=_child_env(args.package_path), check=True, capture_output=True, text=True
            )
            r = json.loads(p.stdout.strip().splitlines()[-1])
            results[mode].append(r)
            print(
                f"  {mode}: {r['total']:.1f} s wall, {r['total_cpu']:.1f} s CPU, peak RSS "
                f"{r['max_rss'] / 2**30:.2f} GiB, numba threads {r['numba_threads']}, "
                f"pair workers {r['workers']} (kernel cache load {r['warm_up']:.1f} s, not "
                f"counted); load now {os.getloadavg()[0]:.2f}",
                flush=True,
            )

    def med(mode, key, name=None):
        runs = results[mode]
        if name is None:
            return float(np.median([r[key] for r in runs]))
        return float(np.median([a[key] for r in runs for a in r["analyses"] if a["name"] == name]))

    names = [a["name"] for a in results[modes[0]][0]["analyses"]]
    rows0 = results[modes[0]][0]["rows"]
    print(f"\n{rows0} rows, {args.n_bootstrap} bootstraps, {args.cores} cores; "
          f"median of {args.repeats} run(s) per mode; wall s / CPU s / peak RSS GiB")  # fmt: skip
    head = f"{'analysis':<28s}" + "".join(f"{m:>26s}" for m in modes)
    if "serial" in modes and len(modes) > 1:
        head += "".join(f"  serial/{m}" for m in modes if m != "serial")
    print(head)
    for name in names + ["total"]:
        line = f"{name:<28s}"
        for m in modes:
            if name == "total":
                w, c, r = med(m, "total"), med(m, "total_cpu"), med(m, "max_rss")
            else:
                w, c, r = med(m, "wall", name), med(m, "cpu", name), med(m, "peak_rss", name)
            line += f"{w:9.1f} {c:8.1f} {r / 2**30:7.2f}"
        if "serial" in modes:
            ws = med("serial", "total") if name == "total" else med("serial", "wall", name)
            for m in modes:
                if m != "serial":
                    wm = med(m, "total") if name == "total" else med(m, "wall", name)
                    line += f"  {ws / wm:9.2f}x"
        print(line)
    print(f"load after the run: {os.getloadavg()[0]:.2f} (1 min)")

    if args.compare_ids > 0 and not args.package_path:
        from iqa_lib.analysis import load_scores

        scores = load_scores(scores_dir)
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
