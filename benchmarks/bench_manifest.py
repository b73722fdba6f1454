"""How long does a manifest of a million files take? Scan, checks, and the old scan as baseline.

Builds a temporary ImageNet-style tree (wnid class folders) of ``--n`` files,
all hard links to one tiny JPEG (so a million files cost directory entries, not
disk), then times, in one run and on the same tree:

* baseline: the scan the kit used before (``Path.rglob`` + ``sorted`` + an
  ``is_file()`` stat per file, rows as tuples), scan only;
* scan: ``scan_labelled_folder`` (``os.scandir``, cached entry types, columns);
* ``build_manifest(check="none")``: scan, ordering, consistency checks;
* ``build_manifest(check="header")``: the same plus reading every header
  (``--workers`` processes);
* ``write_manifest``: the Parquet file.

The claims: a million files in under 1 minute with ``check: none`` and under
5 minutes with ``check: header``, on 2 cores. Each timing is the best of
``--rounds`` (other jobs may share the machine); the page cache is warm after
the tree is made, as it is for a tree just copied or listed.

    python benchmarks/bench_manifest.py                    # 200 000 files, under a minute
    python benchmarks/bench_manifest.py --n 1000000        # the full claim (hard links: little disk)
    python benchmarks/bench_manifest.py --n 1000000 --skip header   # check none only
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from iqa_lib import imagenet  # noqa: E402
from iqa_lib.data.assemble import build_manifest  # noqa: E402
from iqa_lib.data.images import is_image_file  # noqa: E402
from iqa_lib.data.manifest import CLEAN, write_manifest  # noqa: E402
from iqa_lib.data.manifest import rows_frame as _frame  # noqa: E402
from iqa_lib.data.scan import scan_labelled_folder  # noqa: E402

STAGES = ("baseline", "scan", "none", "header", "write")
LINKS_PER_FILE = 50_000


def make_tree(root: Path, n: int, classes: int) -> float:
    """``n`` hard links to one small JPEG, spread over ``classes`` wnid folders; seconds taken."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buf, "JPEG")
    data = buf.getvalue()
    tree = root / "tree"
    wnids = imagenet.wnids()[:classes]
    per = -(-n // len(wnids))
    made = 0
    for wnid in wnids:
        folder = tree / wnid
        folder.mkdir(parents=True)
        for i in range(min(per, n - made)):
            k = made + i
            if k % LINKS_PER_FILE == 0:  # file systems cap links per file (ext4: 65 000)
                source = root / f"source{k // LINKS_PER_FILE}.jpg"
                source.write_bytes(data)
            os.link(source, folder / f"{wnid}_{k:08d}.JPEG")
        made += min(per, n - made)
        if made >= n:
            break
    return time.perf_counter() - t0


def old_scan(root: Path) -> int:
    """The class-folder scan as the kit did it before (kept here as the baseline)."""
    dirs = sorted(p for p in root.iterdir() if not p.name.startswith((".", "_")) and p.is_dir())
    rows = []
    for d in dirs:
        label = imagenet.label_of(d.name)
        rows += [(p.stem, label, CLEAN, 0, str(p)) for p in sorted(d.rglob("*")) if p.is_file() and is_image_file(p)]
    return len(_frame(rows))


def best_of(rounds: int, fn) -> tuple[float, object]:
    times, out = [], None
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000, help="files in the tree (default: %(default)s)")
    ap.add_argument("--classes", type=int, default=1000, help="class folders, at most 1000 (default: %(default)s)")
    ap.add_argument("--workers", type=int, default=None, help="processes for the header check (default: all cores)")
    ap.add_argument("--rounds", type=int, default=1, help="rounds per stage, best kept (default: %(default)s)")
    ap.add_argument("--skip", nargs="*", default=[], choices=STAGES, help="stages to leave out")
    ap.add_argument("--dir", type=Path, default=None, help="where to make the tree (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)

    base = Path(tempfile.mkdtemp(prefix="bench_manifest_", dir=args.dir))
    results: dict[str, object] = {"files": args.n, "cpus": os.cpu_count(), "workers": args.workers}
    try:
        made = make_tree(base, args.n, min(args.classes, 1000))
        results["make_tree_s"] = round(made, 2)
        print(f"made {args.n} files (hard links) in {made:.1f} s under {base}", flush=True)
        tree = base / "tree"
        timings: dict[str, float] = {}
        result = None
        for stage in STAGES:
            if stage in args.skip:
                continue
            if stage == "baseline":
                timings[stage], rows = best_of(args.rounds, lambda: old_scan(tree))
            elif stage == "scan":
                timings[stage], out = best_of(args.rounds, lambda: scan_labelled_folder(tree))
                rows = len(out[0])
            elif stage in ("none", "header"):
                timings[stage], result = best_of(
                    args.rounds,
                    lambda s=stage: build_manifest(tree, check=s, workers=args.workers, progress=False),
                )
                rows = len(result.manifest)
                assert result.failures.empty, result.failures.head()
            else:
                if result is None:
                    continue
                timings[stage], _ = best_of(args.rounds, lambda r=result: write_manifest(r, base / "m.parquet"))
                rows = len(result.manifest)
            assert rows == args.n, (stage, rows)
            print(f"  {stage:9s} {timings[stage]:8.2f} s", flush=True)
        ref = timings.get("baseline")
        print(f"\n{'stage':10s} {'seconds':>9s} {'files/s':>11s} {'vs baseline':>12s}")
        for stage, sec in timings.items():
            ratio = f"{ref / sec:11.1f}x" if ref and stage != "baseline" else f"{'':>12s}"
            print(f"{stage:10s} {sec:9.2f} {args.n / sec:11.0f} {ratio}")
        results["seconds"] = {k: round(v, 3) for k, v in timings.items()}
        if ref and "scan" in timings:
            results["scan_speedup_vs_baseline"] = round(ref / timings["scan"], 2)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
