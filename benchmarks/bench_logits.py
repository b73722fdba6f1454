"""What keeping each image's logits costs a task model's scoring (issue 25: at most 10%).

Two arms, each a fresh process running the engine's ``run_scoring`` on the same manifest:
EfficientNet-Lite0 (or ``--scorer``) on the CPU with ``keep_logits`` off and on. The time is
the ``run_scoring`` call's (decode, forward, parts, merge, completion record; with logits also
the bytes carried in every part, the merge's ``logits.npy`` and its sha256 in the record), not
the interpreter's imports; the CPU seconds of each whole process (workers included) are
compared too, a figure that load on the machine moves less. Arms alternate over ``--reps`` rounds (order reversed every other
round); the figure is the median of the per-round ratios, with its range. Each round also
checks that the two score files are equal and that the logits have one row per scored row.

    python benchmarks/bench_logits.py --rows 1024 --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_decode_bound import render, write_manifest  # noqa: E402

CHILD = """
import json, sys
from iqa_lib.scoring.engine import RunSettings, run_scoring
scorer, manifest, out, keep, workers = sys.argv[1:6]
settings = RunSettings(device="cpu", num_workers=int(workers), progress=False, resume=False,
                       keep_logits=keep == "1")
res = run_scoring(scorer, manifest, out, settings)
print(json.dumps({"seconds": res.seconds}))
"""


def arm(args: argparse.Namespace, manifest: Path, out: Path, keep: bool) -> tuple[float, float]:
    """Seconds of the run_scoring call in a fresh process (run outside any checkout), and the CPU
    seconds of the whole process and its loader workers (imports included)."""
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-c", CHILD, args.scorer, str(manifest), str(out), "1" if keep else "0",
           str(args.workers)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd="/tmp")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:2])} failed:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads(proc.stdout.strip().splitlines()[-1])["seconds"], cpu


def same_outputs(plain: Path, kept: Path) -> tuple[bool, int, int]:
    """Whether both score files are equal; the rows scored and the logits' size in bytes."""
    import pandas as pd

    from iqa_lib.scoring.logits import logits_path, read_logits

    a, b = pd.read_parquet(plain), pd.read_parquet(kept)
    z = read_logits(kept, len(b))
    return a.equals(b) and z is not None, len(b), logits_path(kept).stat().st_size


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sample", type=Path, default=HERE.parent.parent / "shared/data/imagenet-sample")
    p.add_argument("--work", type=Path, default=Path("/tmp/bench_logits"))
    p.add_argument("--scorer", default="efficientnet_lite:lite0")
    p.add_argument("--files", type=int, default=500, help="distinct 224 px JPEGs rendered")
    p.add_argument("--rows", type=int, default=1024)
    p.add_argument("--workers", type=int, default=1, help="loader workers (the engine's CPU default: 1 on 2 cores)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    work = args.work.resolve()
    images = render(args.sample, work / "images", args.files)
    manifest = write_manifest(images, args.rows, work / "manifest.parquet")
    rounds, cpu_rounds = [], []
    for r in range(args.reps):
        order = (False, True) if r % 2 == 0 else (True, False)
        t = {keep: arm(args, manifest, work / f"{'kept' if keep else 'plain'}.parquet", keep) for keep in order}
        equal, rows, size = same_outputs(work / "plain.parquet", work / "kept.parquet")
        if not equal:
            raise SystemExit("the score files with and without logits differ")
        rounds.append(t[True][0] / t[False][0])
        cpu_rounds.append(t[True][1] / t[False][1])
        print(f"round {r + 1}: plain {t[False][0]:.2f} s ({t[False][1]:.1f} CPU-s), with logits {t[True][0]:.2f} s "
              f"({t[True][1]:.1f} CPU-s), ratio {rounds[-1]:.3f}, CPU {cpu_rounds[-1]:.3f} "
              f"(load {os.getloadavg()[0]:.2f})", flush=True)
    summary = {
        "scorer": args.scorer, "rows": rows, "logits_bytes": size,
        "gb_per_million_rows": round(size / rows * 1e6 / 1e9, 3),
        "time_ratio_median": round(statistics.median(rounds), 4),
        "time_ratio_min": round(min(rounds), 4), "time_ratio_max": round(max(rounds), 4),
        "cpu_ratio_median": round(statistics.median(cpu_rounds), 4),
        "cpu_ratio_min": round(min(cpu_rounds), 4), "cpu_ratio_max": round(max(cpu_rounds), 4),
    }
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
