"""Is CPU scoring at its bound? TV against decoding, Lite0 against a bare loop, malloc on and off.

The companion of ``bench_scoring.py`` (loader vs bare forward, any device)
for issue 15's CPU claims. On the same 224 px JPEGs (rendered once from the
ImageNet sample: Resize 256 + CenterCrop 224, JPEG quality 90, each image
also mirrored, so ``--files`` distinct files; rows cycle over them), every
case runs as its own process, the cases interleaved for ``--reps`` rounds:

* ``decode1``: ``ManifestImages`` (the engine's decode path) in a plain loop,
  one process, no workers: decode images/s per core;
* ``decode``: the engine's loader alone (``ManifestImages`` + ``ChunkBatchSampler``
  + ``collate_images`` in a ``DataLoader`` with the engine's default workers
  and batch for TV): the rate TV could reach if scoring were free;
* ``tv``: ``run_scoring("tv", ...)`` (what ``iqa-kit score`` runs after its
  imports: manifest, loader, scorer, parts, merge), same workers and batch;
* ``lite0_engine`` / ``lite0_bare``: EfficientNet-Lite0 through
  ``run_scoring`` (model built before the clock, as the bare loop's) against a
  bare loop in one process: decode each batch (``ManifestImages``), stack,
  ``scorer.preprocess``, forward, softmax; same model, batch, torch threads;
  each with the allocator setting (``IQA_KIT_MALLOPT`` default) and without
  (``IQA_KIT_MALLOPT=0``): ``_malloc`` / ``_nomalloc``;
* ``lite0_engine0_*`` (only when named in ``--cases``): the engine with
  ``num_workers=0``, decoding in its own process as the bare loop does.

Reported per case: images/s over the timed region (median of the rounds),
the whole process's wall (measured by the parent) and CPU seconds (the
child's own and its reaped loader workers'), minor page faults per image (the
same processes), and peak RSS of the main process and of the largest worker. Ratios: ``tv / decode`` (claim
>= 0.8), ``lite0_engine / lite0_bare`` per allocator setting (claim >=
0.95), and malloc / nomalloc. Rounds are interleaved so that other load on
a shared machine hits every case alike; medians are kept.

    python benchmarks/bench_decode_bound.py                         # 1000 files, 3 rounds
    python benchmarks/bench_decode_bound.py --reps 5 --json out.json
    python benchmarks/bench_decode_bound.py --cases decode,tv       # TV only
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SAMPLE = REPO.parent / "shared" / "data" / "imagenet-sample"
CASES = ("decode1", "decode", "tv", "lite0_engine_malloc", "lite0_bare_malloc",
         "lite0_engine_nomalloc", "lite0_bare_nomalloc")
# not run by default: the engine decoding in its own process, as the bare loop does (diagnosis)
EXTRA_CASES = ("lite0_engine0_malloc", "lite0_engine0_nomalloc")
LITE0 = "efficientnet_lite:lite0"


# ------------------------------------------------------------------ setup (parent)


def render(sample: Path, folder: Path, files: int) -> list[tuple[Path, str]]:
    """``files`` 224 px JPEGs (q 90) from the sample, each image also mirrored; (path, wnid)."""
    from PIL import Image, ImageOps

    from iqa_lib.data.images import resize_center_crop

    sources = sorted(sample.glob("*.JPEG"))
    if not sources:
        raise SystemExit(f"no *.JPEG in {sample}; pass --sample DIR")
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(files):
        src = sources[i % len(sources)]
        dst = folder / f"{i:05d}_{src.stem}.jpg"
        with Image.open(src) as im:
            img = resize_center_crop(im.convert("RGB"), 256, 224)
        if (i // len(sources)) % 2:
            img = ImageOps.mirror(img)
        img.save(dst, quality=90)
        out.append((dst, src.stem.split("_")[0]))
    return out


def write_manifest(images: list[tuple[Path, str]], rows: int, path: Path) -> Path:
    import pandas as pd

    from iqa_lib.imagenet import label_of

    recs = []
    for i in range(rows):
        f, wnid = images[i % len(images)]
        recs.append({"image_id": f"{f.stem}#{i}", "label": label_of(wnid), "corruption": "clean",
                     "severity": 0, "path": str(f)})
    pd.DataFrame(recs).to_parquet(path)
    return path


def run_case(case: str, manifest: Path, work: Path, rows: int) -> dict:
    """One case in a fresh process; its own report plus wall, CPU, page faults and peak RSS."""
    env = dict(os.environ)
    env["IQA_KIT_MALLOPT"] = "0" if case.endswith("_nomalloc") else env.get("IQA_KIT_MALLOPT", "1")
    cmd = [sys.executable, __file__, "--child", case, "--manifest", str(manifest),
           "--work", str(work)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"case {case} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res.update(process_wall_s=round(wall, 2), faults_per_image=round(res.pop("minflt") / rows))
    return res


# ------------------------------------------------------------------ cases (child)


def child(case: str, manifest_path: Path, work: Path) -> dict:
    import torch

    from iqa_lib.data.manifest import read_manifest
    from iqa_lib.scoring.allocator import tune_allocator

    tune_allocator()  # what run_scoring does first (a no-op under IQA_KIT_MALLOPT=0)
    manifest = read_manifest(manifest_path)
    n = len(manifest)
    info: dict = {"case": case, "rows": n, "torch_threads": torch.get_num_threads()}
    seconds, batch, workers = case_runner(case)(case, manifest, manifest_path, work)
    info.update(batch_size=batch, num_workers=workers)
    info.update(seconds=round(seconds, 3), ips=round(n / seconds, 2))
    info.update(usage())
    return info


def case_runner(case: str):
    """The function that times ``case``: (seconds, batch size, loader workers)."""
    if case in ("decode1", "decode"):
        return decode_case
    if case == "tv":
        return tv_case
    if case.startswith("lite0_"):
        return lite0_case
    raise SystemExit(f"unknown case {case!r}; cases: {', '.join(CASES + EXTRA_CASES)}")


def decode_case(case: str, manifest, manifest_path: Path, work: Path) -> tuple[float, int, int]:
    """Decoding alone: in this process (``decode1``), or through the engine's loader (``decode``)."""
    import torch
    from torch.utils.data import DataLoader

    from iqa_lib.scorers.registry import as_spec
    from iqa_lib.scoring.dataset import ChunkBatchSampler, ManifestImages, collate_images
    from iqa_lib.scoring.engine import (
        DEFAULT_PART_SIZE,
        _die_with,
        default_batch_size,
        default_num_workers,
    )

    cpu, n = torch.device("cpu"), len(manifest)
    ds = ManifestImages(manifest["path"].tolist(), [False] * n)  # stored 224 px, as geometry none
    batch = default_batch_size(as_spec("tv"), cpu)
    t0 = time.perf_counter()
    if case == "decode1":
        for i in range(n):
            ds[i]
        return time.perf_counter() - t0, batch, 0
    workers = default_num_workers(cpu)
    sampler = ChunkBatchSampler(range(-(-n // DEFAULT_PART_SIZE)), DEFAULT_PART_SIZE, n, batch)
    loader = DataLoader(ds, batch_sampler=sampler, num_workers=workers, collate_fn=collate_images,
                        prefetch_factor=4 if workers else None,
                        worker_init_fn=functools.partial(_die_with, os.getpid()) if workers else None)
    for _ in loader:
        pass
    return time.perf_counter() - t0, batch, workers


def tv_case(case: str, manifest, manifest_path: Path, work: Path) -> tuple[float, int, int]:
    """TV through the engine, as ``iqa-kit score`` runs it."""
    from iqa_lib.scoring.engine import run_scoring

    t0 = time.perf_counter()
    res = run_scoring("tv", manifest_path, work / f"tv_{os.getpid()}.parquet", geometry="none",
                      progress=False, resume=False)
    return time.perf_counter() - t0, res.batch_size, res.num_workers


def lite0_case(case: str, manifest, manifest_path: Path, work: Path) -> tuple[float, int, int]:
    """Lite0 built before the clock: through the engine, or a bare decode + forward loop."""
    import torch

    from iqa_lib.scorers.registry import as_spec, build_scorer
    from iqa_lib.scoring.dataset import ManifestImages
    from iqa_lib.scoring.engine import default_batch_size, run_scoring

    cpu, n = torch.device("cpu"), len(manifest)
    scorer = build_scorer(LITE0, cpu)
    batch = default_batch_size(as_spec(LITE0), cpu)
    if case.startswith("lite0_engine"):
        t0 = time.perf_counter()
        res = run_scoring(scorer, manifest_path, work / f"lite0_{os.getpid()}.parquet",
                          geometry="none", progress=False, resume=False,
                          num_workers=0 if case.startswith("lite0_engine0") else None)
        return time.perf_counter() - t0, res.batch_size, res.num_workers
    ds = ManifestImages(manifest["path"].tolist(), [False] * n)
    model = scorer.model
    t0 = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, n, batch):
            x = torch.stack([ds[i][1] for i in range(start, min(start + batch, n))])
            model(scorer.preprocess(x)).softmax(dim=1)
    return time.perf_counter() - t0, batch, 0


def usage() -> dict:
    """CPU time, page faults and peak RSS of this process and its (joined) loader workers."""
    import gc
    import resource

    gc.collect()  # loader workers are joined and reaped: their usage is in RUSAGE_CHILDREN
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "process_cpu_s": round(me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime, 2),
        "minflt": me.ru_minflt + kids.ru_minflt,
        "peak_rss_mib": round(me.ru_maxrss / 1024),  # the main process (workers: peak_rss_workers_mib)
        "peak_rss_workers_mib": round(kids.ru_maxrss / 1024),
    }


# ------------------------------------------------------------------ report


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1000, help="distinct 224 px JPEGs to render")
    ap.add_argument("--rows", type=int, default=4000, help="manifest rows for decode and TV (cycling)")
    ap.add_argument("--lite0-rows", type=int, default=320, help="manifest rows for the Lite0 cases")
    ap.add_argument("--reps", type=int, default=3, help="interleaved rounds (medians reported)")
    ap.add_argument("--cases", default=",".join(CASES),
                    help=f"subset of {','.join(CASES + EXTRA_CASES)} (default: all but the last two)")
    ap.add_argument("--sample", type=Path, default=SAMPLE, help="folder of <wnid>_<name>.JPEG images")
    ap.add_argument("--json", type=Path, default=None, help="also write every run and the summary here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--manifest", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.manifest, args.work)))
        return 0
    cases = [c for c in args.cases.split(",") if c]
    unknown = set(cases) - set(CASES) - set(EXTRA_CASES)
    if unknown:
        raise SystemExit(f"unknown case(s) {sorted(unknown)}; cases: {', '.join(CASES + EXTRA_CASES)}")
    runs = measure(args, cases)
    summary = summarise(runs, cases)
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "runs": runs}, indent=1))
    return 0


def measure(args: argparse.Namespace, cases: list[str]) -> dict[str, list[dict]]:
    """Every case once per round, rounds interleaved, each in a fresh process."""
    runs: dict[str, list[dict]] = {c: [] for c in cases}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        images = render(args.sample, work / "jpeg224", args.files)
        big = write_manifest(images, args.rows, work / "rows.parquet")
        small = write_manifest(images, args.lite0_rows, work / "lite0.parquet")
        for rep in range(args.reps):
            for case in cases:
                lite = case.startswith("lite0_")
                res = run_case(case, small if lite else big, work, args.lite0_rows if lite else args.rows)
                runs[case].append(res)
                print(f"[round {rep + 1}] {case:22s} {res['ips']:9.1f} img/s  "
                      f"process wall {res['process_wall_s']:6.1f} s  CPU {res['process_cpu_s']:6.1f} s  "
                      f"faults/img {res['faults_per_image']:6d}  peak RSS {res['peak_rss_mib']} MiB",
                      flush=True)
    return runs


def median_of(runs: dict[str, list[dict]], case: str, key: str = "ips") -> float | None:
    return statistics.median(r[key] for r in runs[case]) if runs.get(case) else None


def ratio_of(runs: dict[str, list[dict]], a: str, b: str, key: str = "ips", invert: bool = False) -> float | None:
    """Median over rounds of the per-round ratio (each round's runs ran side by side)."""
    if not runs.get(a) or not runs.get(b):
        return None
    per = [(y[key] / x[key]) if invert else (x[key] / y[key]) for x, y in zip(runs[a], runs[b], strict=True)]
    return round(statistics.median(per), 3)


def summarise(runs: dict[str, list[dict]], cases: list[str]) -> dict:
    """Medians per case and the ratios the README quotes."""
    med, ratio = functools.partial(median_of, runs), functools.partial(ratio_of, runs)
    return {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "medians": {c: {"ips": med(c), "process_wall_s": med(c, "process_wall_s"),
                        "process_cpu_s": med(c, "process_cpu_s"),
                        "faults_per_image": med(c, "faults_per_image"),
                        "peak_rss_mib": med(c, "peak_rss_mib")} for c in cases},
        "ratios": {
            "tv_over_decode": ratio("tv", "decode"),
            "lite0_engine_over_bare_malloc": ratio("lite0_engine_malloc", "lite0_bare_malloc"),
            "lite0_engine_over_bare_nomalloc": ratio("lite0_engine_nomalloc", "lite0_bare_nomalloc"),
            "lite0_engine0_over_bare_malloc": ratio("lite0_engine0_malloc", "lite0_bare_malloc"),
            "lite0_engine_cpu_over_bare_malloc": ratio("lite0_engine_malloc", "lite0_bare_malloc",
                                                       "process_cpu_s"),
            "lite0_engine_process_wall_bare_over_engine_malloc": ratio(
                "lite0_engine_malloc", "lite0_bare_malloc", "process_wall_s", invert=True),
            "lite0_engine_malloc_over_nomalloc": ratio("lite0_engine_malloc", "lite0_engine_nomalloc"),
            "lite0_bare_malloc_over_nomalloc": ratio("lite0_bare_malloc", "lite0_bare_nomalloc"),
            "lite0_engine_peak_rss_malloc_over_nomalloc": ratio(
                "lite0_engine_malloc", "lite0_engine_nomalloc", "peak_rss_mib"),
        },
    }


if __name__ == "__main__":
    sys.exit(main())
