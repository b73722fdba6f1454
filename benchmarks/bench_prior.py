"""Benchmark ``iqa-kit prior``'s computation: leave-one-corruption-out on a scores folder.

Runs what the command computes (load the score files, every estimator for every task
model and held-out corruption, the bootstrap summary and the verdict; no figures) on
``SCORES`` (default: the mini-reproduction's 38,000 rows) on at most 2 cores, and prints
the wall time of each step, the peak traced memory (tracemalloc: numpy and Python
allocations) and the process's peak resident memory. Budget: under a minute.

    python benchmarks/bench_prior.py [SCORES] [--n-bootstrap 1000] [--cores 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc

DEFAULT_SCORES = "/work/mini/results/scores"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scores", nargs="?", default=DEFAULT_SCORES, help="folder of <scorer>.parquet")
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])

    t_import = time.perf_counter()
    from iqa_lib.analysis.io import load_scores, read_schema
    from iqa_lib.analysis.prior.validation import (
        leave_one_corruption_out,
        read_predictions,
        summarize,
        verdict,
    )

    t0 = time.perf_counter()
    print(f"imports {t0 - t_import:.1f} s", flush=True)
    tracemalloc.start()
    scores = load_scores(args.scores)
    t1 = time.perf_counter()
    models = scores.task_models
    preds = {m: read_predictions(args.scores, scores, m) for m in models
             if "pred" in read_schema(f"{args.scores}/{m}.parquet").names}
    table = leave_one_corruption_out(scores, models, predictions=preds)
    t2 = time.perf_counter()
    summary = summarize(table, args.n_bootstrap, seed=0)
    verdict(summary, table, n_bootstrap=args.n_bootstrap, seed=0)
    t3 = time.perf_counter()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    n_held = table["corruption"].nunique()
    print(f"{scores.n_rows:,} rows, {len(scores.q)} Q variables, task models {models}, "
          f"{n_held} held-out corruptions, {len(table):,} table rows, {len(summary)} estimators")
    print(f"load {t1 - t0:.1f} s, leave-one-corruption-out {t2 - t1:.1f} s, "
          f"summary + verdict ({args.n_bootstrap} resamples) {t3 - t2:.1f} s; "
          f"total {t3 - t0:.1f} s on {args.cores} core(s)")
    print(f"peak traced memory {peak / 2**20:.0f} MiB, peak RSS {rss:.0f} MiB")
    return 0 if t3 - t0 < 60 else 1


if __name__ == "__main__":
    sys.exit(main())
