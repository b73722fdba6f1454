"""The kit's decode per image against Pillow's, and against another tree's decode (issue 24).

One process per case, cases interleaved over ``--reps`` rounds (order
reversed every other round), one thread each; each reports CPU seconds
(``time.process_time``) and wall seconds over its loop of ``--rows`` rows
cycling over ``--files`` 224 px renders of the ImageNet sample (the ImageNet-C
case, scored as stored):

* ``pil``: ``Image.open(path).convert("RGB")`` (the one-process PIL loop of
  ``bench_workers.py``);
* ``kit``: ``ManifestImages(...)[i]`` (what a loader worker does per image:
  ``opened_rgb`` + ``planar``) with this tree;
* ``base`` (with ``--base-tree DIR``): the same with another copy of ``iqa_lib``.

Ratios (medians of per-round ratios of CPU seconds, [range]): ``pil / kit``
(the kit's decode rate in PIL loops), ``base / kit`` (the speed-up).

    python benchmarks/bench_plain_jpeg.py --base-tree /tmp/base
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_decode_bound import render  # noqa: E402

CHILD = """
import sys, time
paths = open(sys.argv[2]).read().split("\\n")
rows = int(sys.argv[3])
if sys.argv[1] == "pil":
    from PIL import Image
    step = lambda i: Image.open(paths[i % len(paths)]).convert("RGB")
else:
    import torch
    torch.set_num_threads(1)
    from iqa_lib.scoring.dataset import ManifestImages
    ds = ManifestImages(paths, [False] * len(paths))
    step = lambda i: ds[i % len(paths)]
c0, w0 = time.process_time(), time.perf_counter()
for i in range(rows):
    step(i)
print(time.process_time() - c0, time.perf_counter() - w0)
"""


def one(case: str, args: argparse.Namespace, listing: Path) -> tuple[float, float]:
    tree = args.base_tree if case == "base" else HERE.parent  # cwd is not a checkout: PYTHONPATH decides
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    proc = subprocess.run([sys.executable, "-c", CHILD, "kit" if case == "base" else case, str(listing),
                           str(args.rows)], env=env, capture_output=True, text=True, check=True,
                          cwd=listing.parent)
    cpu, wall = (float(x) for x in proc.stdout.split())
    return cpu, wall


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sample", type=Path, default=HERE.parent.parent / "shared/data/imagenet-sample")
    p.add_argument("--work", type=Path, default=Path("/tmp/bench_workers"))
    p.add_argument("--files", type=int, default=1000)
    p.add_argument("--rows", type=int, default=8000)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--base-tree", type=Path)
    args = p.parse_args(argv)
    images = render(args.sample, args.work / "images", args.files)
    listing = args.work.resolve() / "plain_jpeg_paths.txt"
    listing.write_text("\n".join(str(path) for path, _ in images))
    cases = ["pil", "kit"] + (["base"] if args.base_tree else [])
    rounds = []
    for r in range(args.reps):
        got = {}
        for case in reversed(cases) if r % 2 else cases:
            got[case] = one(case, args, listing)
            print(f"  round {r + 1} {case}: {got[case][0] / args.rows * 1e6:.0f} us CPU per image "
                  f"(wall {got[case][1] / args.rows * 1e6:.0f}; load {os.getloadavg()[0]:.2f})", flush=True)
        rounds.append(got)

    def ratio(a: str, b: str) -> dict:
        values = [r[a][0] / r[b][0] for r in rounds]
        return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
                "max": round(max(values), 3)}

    out = {f"{c}_us_cpu": round(statistics.median(r[c][0] for r in rounds) / args.rows * 1e6, 1) for c in cases}
    out["pil_over_kit"] = ratio("pil", "kit")
    if args.base_tree:
        out["base_over_kit"] = ratio("base", "kit")
        out["pil_over_base"] = ratio("pil", "base")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
