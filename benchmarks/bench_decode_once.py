"""Decode once, score many: TV, BRISQUE and Lite0 in one pass against three passes.

Issue 15's claim: scoring TV, BRISQUE and EfficientNet-Lite0 together
(``run_scoring_many``: one loader, each image decoded once) is faster than
the three separate passes by at least the decode share, the time the two
extra passes spend decoding. On the same 224 px JPEGs as
``bench_decode_bound.py`` (scored as stored, ``geometry="none"``), each case is
a fresh process, the cases interleaved for ``--reps`` rounds:

* ``tv``, ``brisque``, ``lite0``: ``run_scoring`` of one scorer (what one
  ``iqa-kit score --alone`` runs after its imports: manifest, scorer build,
  loader, scoring, parts, merge), engine defaults for workers and batch;
* ``together``: ``run_scoring_many`` of the three, same defaults;
* ``decode``: the engine's loader alone over the same rows (default workers,
  the together run's loader batch), timed region only: what one pass spends
  decoding.

Per round: S = the three separate processes' wall summed, T = the together
process's wall, D = the decode pass. The claim holds when S - T >= 2 D (two
decodes saved), i.e. S / T >= 1 / (1 - 2 D / S). Reported as medians of the
per-round figures, for wall and for CPU (user + system of the process and its
loader workers). Outputs are compared: the together files must equal the
separate ones exactly.

    python benchmarks/bench_decode_once.py                      # 1000 rows, 3 rounds
    python benchmarks/bench_decode_once.py --rows 400 --reps 2  # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from bench_decode_bound import SAMPLE, render, write_manifest  # noqa: E402

SCORERS = {"tv": "tv", "brisque": "brisque", "lite0": "efficientnet_lite:lite0"}
CASES = ("decode", "tv", "brisque", "lite0", "together")


def run_case(case: str, manifest: Path, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", case, "--manifest", str(manifest), "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"case {case} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["process_wall_s"] = round(wall, 2)
    return res


def child(case: str, manifest_path: Path, out: Path) -> dict:
    import functools
    import gc
    import resource

    import torch
    from torch.utils.data import DataLoader

    from iqa_lib.data.manifest import read_manifest
    from iqa_lib.scorers.registry import as_spec
    from iqa_lib.scoring.allocator import tune_allocator
    from iqa_lib.scoring.dataset import ChunkBatchSampler, ManifestImages, collate_images
    from iqa_lib.scoring.engine import (
        DEFAULT_PART_SIZE,
        ScoringJob,
        _die_with,
        default_batch_size,
        default_num_workers,
        run_scoring,
        run_scoring_many,
    )

    cpu = torch.device("cpu")
    info: dict = {"case": case}
    out.mkdir(parents=True, exist_ok=True)
    if case == "decode":
        tune_allocator()
        manifest = read_manifest(manifest_path)
        n = len(manifest)
        batch = max(default_batch_size(as_spec(s), cpu) for s in SCORERS.values())
        workers = default_num_workers(cpu)
        ds = ManifestImages(manifest["path"].tolist(), [False] * n)
        sampler = ChunkBatchSampler(range(-(-n // DEFAULT_PART_SIZE)), DEFAULT_PART_SIZE, n, batch)
        def cpu_now() -> float:
            me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
            return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

        c0, t0 = cpu_now(), time.perf_counter()
        loader = DataLoader(ds, batch_sampler=sampler, num_workers=workers, collate_fn=collate_images,
                            prefetch_factor=4 if workers else None,
                            worker_init_fn=functools.partial(_die_with, os.getpid()) if workers else None)
        for _ in loader:
            pass
        seconds = time.perf_counter() - t0
        del loader
        gc.collect()  # the workers are reaped: their CPU is in RUSAGE_CHILDREN
        info.update(seconds=round(seconds, 3), timed_cpu_s=round(cpu_now() - c0, 2), batch_size=batch,
                    num_workers=workers)
    else:
        t0 = time.perf_counter()
        kw = {"geometry": "none", "progress": False, "resume": False, "device": "cpu"}
        if case == "together":
            run_scoring_many([ScoringJob(spec, out / f"{name}.parquet") for name, spec in SCORERS.items()],
                             manifest_path, **kw)
        else:
            run_scoring(SCORERS[case], manifest_path, out / f"{case}.parquet", **kw)
        info["seconds"] = round(time.perf_counter() - t0, 3)
    gc.collect()
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    info["process_cpu_s"] = round(me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime, 2)
    info["peak_rss_mib"] = round(me.ru_maxrss / 1024)
    return info


def same_outputs(separate: Path, together: Path) -> bool:
    import pandas as pd

    from iqa_lib.scoring.parts import failures_path

    for name in SCORERS:
        a, b = separate / f"{name}.parquet", together / f"{name}.parquet"
        if not pd.read_parquet(a).equals(pd.read_parquet(b)):
            return False
        if not pd.read_csv(failures_path(a)).equals(pd.read_csv(failures_path(b))):
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1000, help="distinct 224 px JPEGs to render")
    ap.add_argument("--rows", type=int, default=1000, help="manifest rows (cycling over the files)")
    ap.add_argument("--reps", type=int, default=3, help="interleaved rounds (medians reported)")
    ap.add_argument("--sample", type=Path, default=SAMPLE, help="folder of <wnid>_<name>.JPEG images")
    ap.add_argument("--json", type=Path, default=None, help="also write every run and the summary here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--manifest", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.manifest, args.out)))
        return 0

    rounds: list[dict[str, dict]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        images = render(args.sample, work / "jpeg224", min(args.files, args.rows))
        manifest = write_manifest(images, args.rows, work / "rows.parquet")
        identical = True
        for rep in range(args.reps):
            order = CASES if rep % 2 == 0 else tuple(reversed(CASES))
            got = {}
            for case in order:
                out = work / ("together" if case == "together" else "separate")
                got[case] = run_case(case, manifest, out)
                print(f"[round {rep + 1}] {case:9s} timed {got[case]['seconds']:7.2f} s  process wall "
                      f"{got[case]['process_wall_s']:7.2f} s  CPU {got[case]['process_cpu_s']:7.2f} s  "
                      f"peak RSS {got[case]['peak_rss_mib']} MiB", flush=True)
            identical &= same_outputs(work / "separate", work / "together")
            rounds.append(got)

    def per_round(key: str) -> dict[str, float]:
        sep = [sum(r[c][key] for c in SCORERS) for r in rounds]
        tog = [r["together"][key] for r in rounds]
        # what one pass spends decoding: the decode case's timed region (its wall, or its CPU)
        dec = [r["decode"]["timed_cpu_s" if key == "process_cpu_s" else "seconds"] for r in rounds]
        saved = [s - t for s, t in zip(sep, tog, strict=True)]
        return {
            "three_passes": round(statistics.median(sep), 2),
            "together": round(statistics.median(tog), 2),
            "saved": round(statistics.median(saved), 2),
            "two_decodes": round(statistics.median(2 * d for d in dec), 2),
            "speedup": round(statistics.median(s / t for s, t in zip(sep, tog, strict=True)), 3),
            "needed_speedup": round(statistics.median(
                1 / (1 - 2 * d / s) for d, s in zip(dec, sep, strict=True)), 3),
            "saved_over_two_decodes": round(statistics.median(
                (s - t) / (2 * d) for s, t, d in zip(sep, tog, dec, strict=True)), 2),
        }

    summary = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "rows": args.rows, "rounds": args.reps,
        "wall": per_round("process_wall_s"),
        "timed_region": per_round("seconds"),
        "cpu": per_round("process_cpu_s"),
        "outputs_identical": identical,
    }
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "rounds": rounds}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
