"""Per-image CPU scorers at the decode bound of the machine (issue 24), as whole processes.

Every case is a fresh process timed from outside (start-up included), cases
interleaved over ``--reps`` rounds (order reversed every other round); each
figure is a ratio between cases of the same round, and the median over rounds
is printed with its range.

* ``pil``: the baseline, a one-process PIL decode loop over the same rows
  (``Image.open(path).convert("RGB")``, paths read from a text file; the
  process imports PIL only);
* ``tv``: ``iqa-kit score --scorer tv`` with the engine's defaults (on CPU the
  loader workers decode and score, one per core);
* ``ceiling``: the bound of any per-image engine here: one forked process per core, each
  decoding with PIL and computing the kit's TV (the same exact integer sums, so the same
  values, checked every round) with numpy only: no torch, manifest, parts or merge;
* ``tv_old``: the same with ``IQA_KIT_WORKER_SCORING=0``: TV scored in the
  scoring process from pixels the workers send, the earlier default workers
  (half the cores, at most 4): the engine before issue 24;
* ``tv_base`` (with ``--base-tree DIR``): the same ``iqa-kit score`` with
  another copy of ``iqa_lib`` first on ``PYTHONPATH`` (e.g. ``git archive`` of
  an earlier commit): a before/after ratio on the same files in the same round;
* ``scale``: each of TV, BRISQUE, NIQE and PIQE under ``taskset`` on 1 core
  (1 loader worker) and on 2 cores (2 workers), on ``--scale-rows`` rows;
  scaling efficiency = rate on 2 / (2 x rate on 1), the rate over the
  ``run_scoring`` call (manifest, workers, scoring, parts, merge: everything
  but the interpreter's imports), and over the whole process (imports
  included: a fixed ~2-3 s that does not scale); with ``--scale-long ROWS`` the same
  cases again on ROWS rows, and the *marginal* efficiency from the two sizes: the
  seconds per extra row on 1 core over twice those on 2 cores, i.e. the scaling of
  the per-image work with the fixed cost of a run (each worker's start, its first
  import of the scorer's compiled kernels, the manifest, the merge) taken out,
  which is what a run of millions of images sees;
* ``corrupt``: ``iqa-kit corrupt`` of ``--corrupt-images`` clean images
  (four corruptions at severity 3) with ``--workers 1`` on 1 core and
  ``--workers 2`` on 2 cores, the same efficiency.

Images: ``--files`` distinct 224 px JPEGs (quality 90) rendered from the
ImageNet sample (``bench_decode_bound.render``), repeated to ``--rows``
manifest rows, scored as stored (``--geometry none``, as ImageNet-C images
are). The outputs of ``tv`` and ``tv_old`` are compared in every round.

    python benchmarks/bench_workers.py --rows 48000 --reps 3 --json out.json
    python benchmarks/bench_workers.py --rows 48000 --reps 3 --no-old --base-tree /tmp/base
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from bench_decode_bound import render, write_manifest  # noqa: E402

SCORERS = ("tv", "brisque", "niqe", "piqe")
CORRUPTIONS = ("gaussian_noise", "defocus_blur", "contrast", "jpeg_compression")
PIL_LOOP = """
import sys
from PIL import Image
paths = open(sys.argv[1]).read().split("\\n")
for p in paths:
    Image.open(p).convert("RGB")
"""

# The bound of any per-image engine on this machine: no torch, no manifest, no parts; one forked
# process per core, each decoding with PIL and computing TV as the kit defines it (exact integer
# sums of |differences| of the uint8 pixels, one division per direction) on the HxWx3 array.
CEILING = """
import multiprocessing as mp, os, sys
import numpy as np
from PIL import Image

def tv(x):
    h, w, c = x.shape
    f = x.reshape(h, w * c)
    out = 0.0
    for a, b, count in ((f[1:], f[:-1], c * (h - 1) * w * 255), (f[:, c:], f[:, :-c], c * h * (w - 1) * 255)):
        d = np.maximum(a, b)
        d -= np.minimum(a, b)
        out += int(np.add.reduce(d, axis=None, dtype=np.uint64)) / count
    return out

def chunk(paths):
    return [tv(np.asarray(Image.open(p).convert("RGB"))) for p in paths]

if __name__ == "__main__":
    paths = open(sys.argv[1]).read().split("\\n")
    parts = [paths[i:i + 512] for i in range(0, len(paths), 512)]
    with mp.get_context("fork").Pool(len(os.sched_getaffinity(0))) as pool:
        q = [v for part in pool.imap(chunk, parts) for v in part]
    np.save(sys.argv[2], np.asarray(q))
"""

# A scaling case: run_scoring in a fresh process; prints the seconds of the call (the engine's
# whole work: manifest, workers, scoring, parts, merge, completion record; not the imports).
SCALE_CHILD = """
import json, sys
from iqa_lib.scoring.engine import run_scoring
scorer, manifest, out, cores = sys.argv[1:5]
res = run_scoring(scorer, manifest, out, num_workers=int(cores), device="cpu", geometry="none",
                  progress=False, resume=False)
print(json.dumps({"seconds": res.seconds}))
"""


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, str]:
    """Wall seconds of ``cmd`` as a whole process, and its output; its failure ends the benchmark.

    Run in ``/tmp``, never in a checkout (``python -c`` puts its working folder first on the
    path, ahead of ``PYTHONPATH``); ``PYTHONPATH`` names this tree unless ``env`` says otherwise.
    """
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), **(env or {})}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd="/tmp")
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return wall, proc.stdout


def cli() -> list[str]:
    return [sys.executable, "-c", "import sys; from iqa_lib.cli import main; sys.exit(main())"]


def score_cmd(scorer: str, manifest: Path, out: Path) -> list[str]:
    return [*cli(), "score", "--scorer", scorer, "--manifest", str(manifest), "--out", str(out),
            "--geometry", "none", "--no-progress", "--no-resume"]


def pinned(cores: int, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", ",".join(str(c) for c in range(cores)), *cmd]


def same_scores(a: Path, b: Path) -> bool:
    return pd.read_parquet(a).equals(pd.read_parquet(b))


def one_round(args: argparse.Namespace, files: dict[str, Path], work: Path, reverse: bool) -> dict[str, float]:
    """Every case once: its wall seconds."""
    cases = ["pil", "tv", "ceiling"] + (["tv_old"] if args.old else []) + (["tv_base"] if args.base_tree else [])
    if args.scaling:
        cases += [f"scale:{s}:{c}" for s in SCORERS for c in (1, 2)]
        cases += [f"long:{s}:{c}" for s in SCORERS for c in (1, 2)] if args.scale_long else []
    cases += [f"corrupt:{c}" for c in (1, 2)] if args.corrupt_images else []
    walls = {}
    for case in reversed(cases) if reverse else cases:
        wall, out = run(case, args, files, work)
        walls[case] = wall
        if case.startswith(("scale:", "long:")):
            walls[case + ":engine"] = json.loads(out.strip().splitlines()[-1])["seconds"]
        print(f"  {case}: {wall:.2f} s (load {os.getloadavg()[0]:.2f})", flush=True)
    return walls


def run(case: str, args: argparse.Namespace, files: dict[str, Path], work: Path) -> tuple[float, str]:
    if case == "pil":
        return timed([sys.executable, "-c", PIL_LOOP, str(files["paths"])])
    if case == "ceiling":
        return timed([sys.executable, "-c", CEILING, str(files["paths"]), str(work / "ceiling.npy")])
    if case in ("tv", "tv_old", "tv_base"):
        env = {"IQA_KIT_WORKER_SCORING": "0"} if case == "tv_old" else {}
        if case == "tv_base":
            env = {"PYTHONPATH": str(args.base_tree.resolve())}
        return timed(score_cmd("tv", files["manifest"], work / f"{case}.parquet"), env)
    kind, *rest = case.split(":")
    cores = int(rest[-1])
    if kind in ("scale", "long"):
        out = work / f"{rest[0]}-{cores}.parquet"
        child = [sys.executable, "-c", SCALE_CHILD, rest[0], str(files[kind]), str(out), str(cores)]
        return timed(pinned(cores, child))
    out = work / f"corrupt-{cores}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [*cli(), "corrupt", "--src", str(args.sample), "--out", str(out), "--corruptions", *CORRUPTIONS,
           "--severities", "3", "--workers", str(cores), "--limit", str(args.corrupt_images), "--no-progress"]
    return timed(pinned(cores, cmd))


def per_row(r: dict[str, float], scorer: str, cores: int, rows: tuple[int, int]) -> float:
    """Seconds per row beyond the shorter run: the slope between the two sizes of a round."""
    return (r[f"long:{scorer}:{cores}:engine"] - r[f"scale:{scorer}:{cores}:engine"]) / (rows[1] - rows[0])


def summarise(rounds: list[dict[str, float]], args: argparse.Namespace) -> dict:
    def med(values: list[float]) -> dict:
        return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
                "max": round(max(values), 3)}

    out = {
        "rows": args.rows,
        "pil_img_s": med([args.rows / r["pil"] for r in rounds]),
        "tv_img_s": med([args.rows / r["tv"] for r in rounds]),
        "tv_over_pil": med([r["pil"] / r["tv"] for r in rounds]),
        "ceiling_over_pil": med([r["pil"] / r["ceiling"] for r in rounds]),
        "tv_over_ceiling": med([r["ceiling"] / r["tv"] for r in rounds]),
        "scale_rows": args.scale_rows,
    }
    for other in ("tv_old", "tv_base"):
        if other in rounds[0]:
            out[f"{other}_img_s"] = med([args.rows / r[other] for r in rounds])
            out[f"{other}_over_pil"] = med([r["pil"] / r[other] for r in rounds])
            out[f"tv_over_{other}"] = med([r[other] / r["tv"] for r in rounds])
    for s in SCORERS if args.scaling else ():
        out[f"{s}_1core_img_s"] = med([args.scale_rows / r[f"scale:{s}:1"] for r in rounds])
        out[f"{s}_efficiency"] = med([r[f"scale:{s}:1:engine"] / (2 * r[f"scale:{s}:2:engine"]) for r in rounds])
        out[f"{s}_efficiency_whole_process"] = med([r[f"scale:{s}:1"] / (2 * r[f"scale:{s}:2"]) for r in rounds])
        if args.scale_long:
            rows = (args.scale_rows, args.scale_long)
            out[f"{s}_efficiency_long"] = med(
                [r[f"long:{s}:1:engine"] / (2 * r[f"long:{s}:2:engine"]) for r in rounds])
            out[f"{s}_efficiency_marginal"] = med(
                [per_row(r, s, 1, rows) / (2 * per_row(r, s, 2, rows)) for r in rounds])
            for cores in (1, 2):  # the call's seconds less its rows at the marginal rate
                out[f"{s}_fixed_s_{cores}core"] = med(
                    [r[f"scale:{s}:{cores}:engine"] - rows[0] * per_row(r, s, cores, rows) for r in rounds])
    if args.corrupt_images:
        renders = args.corrupt_images * len(CORRUPTIONS)
        out["corrupt_renders"] = renders
        out["corrupt_1core_img_s"] = med([renders / r["corrupt:1"] for r in rounds])
        out["corrupt_efficiency"] = med([r["corrupt:1"] / (2 * r["corrupt:2"]) for r in rounds])
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sample", type=Path, default=HERE.parent.parent / "shared/data/imagenet-sample")
    p.add_argument("--work", type=Path, default=Path("/tmp/bench_workers"))
    p.add_argument("--files", type=int, default=1000, help="distinct JPEGs rendered")
    p.add_argument("--rows", type=int, default=48000, help="manifest rows of the TV / PIL cases")
    p.add_argument("--scale-rows", type=int, default=4000, help="manifest rows of the scaling cases")
    p.add_argument("--no-scaling", dest="scaling", action="store_false", help="no 1 -> 2 core cases")
    p.add_argument("--scale-long", type=int, default=0,
                   help="rows of a second size of the scaling cases: the marginal efficiency (0: none)")
    p.add_argument("--corrupt-images", type=int, default=500,
                   help="clean images rendered, 4 corruptions each (0: no case)")
    p.add_argument("--no-old", dest="old", action="store_false",
                   help="leave out tv_old (the engine before issue 24, ~3x the tv case's time)")
    p.add_argument("--base-tree", type=Path, help="a folder holding another iqa_lib: the tv_base case")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--json", type=Path)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    work = args.work.resolve()
    images = render(args.sample, work / "images", args.files)
    files = {"manifest": write_manifest(images, args.rows, work / "manifest.parquet"),
             "scale": write_manifest(images, args.scale_rows, work / "scale.parquet"),
             "long": write_manifest(images, args.scale_long, work / "long.parquet") if args.scale_long else None,
             "paths": work / "paths.txt"}
    files["paths"].write_text("\n".join(str(images[i % len(images)][0]) for i in range(args.rows)))
    print(f"cores {sorted(os.sched_getaffinity(0))}, load {os.getloadavg()}", flush=True)
    rounds = []
    for i in range(args.reps):
        print(f"round {i + 1}", flush=True)
        rounds.append(one_round(args, files, work, reverse=bool(i % 2)))
        if not np.array_equal(pd.read_parquet(work / "tv.parquet")["q"].to_numpy(), np.load(work / "ceiling.npy")):
            raise SystemExit("the ceiling's TV differs from the kit's")
        for other in ("tv_old", "tv_base"):
            if (work / f"{other}.parquet").exists() and not same_scores(work / "tv.parquet", work / f"{other}.parquet"):
                raise SystemExit(f"tv and {other} wrote different scores")
    summary = summarise(rounds, args)
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rounds": rounds}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
