"""Scores of this tree's engine against another tree's (e.g. before issue 24), on real images.

Two manifests: the ImageNet sample's JPEGs (``--sample``, clean: Resize 256 +
CenterCrop 224) and ``--files`` 224 px renders of them scored as stored
(``bench_decode_bound.render``, the ImageNet-C case). Each tree scores both
with ``--scorers`` in one ``run_scoring_many`` pass and then each alone, in a
fresh process (``PYTHONPATH`` = the tree), engine defaults otherwise; every
output (scores and failures) must be equal, value for value.

    git archive <commit> iqa_lib | tar -x -C /tmp/base
    python benchmarks/check_identity.py --base-tree /tmp/base
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_decode_bound import render, write_manifest  # noqa: E402

CHILD = """
import sys
from iqa_lib.scoring.engine import ScoringJob, run_scoring, run_scoring_many
manifest, folder, geometry, *scorers = sys.argv[1:]
run_scoring_many([ScoringJob(s, f"{folder}/together-{s}.parquet") for s in scorers], manifest,
                 device="cpu", geometry=geometry, progress=False, resume=False)
for s in scorers:
    run_scoring(s, manifest, f"{folder}/alone-{s}.parquet", device="cpu", geometry=geometry,
                progress=False, resume=False)
"""


def score(tree: Path, manifest: Path, folder: Path, geometry: str, scorers: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(manifest), str(folder), geometry, *scorers],
                          env=env, capture_output=True, text=True, cwd=folder)
    if proc.returncode != 0:
        raise SystemExit(f"scoring with {tree} failed:\n{proc.stderr[-3000:]}")


def compare(a: Path, b: Path) -> list[str]:
    """The outputs of folder ``a`` that differ from ``b``'s (or are missing there)."""
    import pandas as pd

    differ = []
    for path in sorted(a.glob("*.parquet")):
        other = b / path.name
        fa, fb = path.with_suffix(".failures.csv"), other.with_suffix(".failures.csv")
        same = other.is_file() and pd.read_parquet(path).equals(pd.read_parquet(other))
        same = same and pd.read_csv(fa).equals(pd.read_csv(fb))
        print(f"  {path.name}: {len(pd.read_parquet(path))} rows, {'equal' if same else 'DIFFERENT'}")
        if not same:
            differ.append(path.name)
    return differ


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base-tree", type=Path, required=True, help="a folder holding another iqa_lib")
    p.add_argument("--sample", type=Path, default=HERE.parent.parent / "shared/data/imagenet-sample")
    p.add_argument("--work", type=Path, default=Path("/tmp/check_identity"))
    p.add_argument("--files", type=int, default=1000)
    p.add_argument("--scorers", nargs="+", default=["tv", "brisque", "niqe", "piqe"])
    args = p.parse_args(argv)
    import pandas as pd

    from iqa_lib.imagenet import label_of

    sample = sorted(args.sample.glob("*.JPEG"))
    clean = args.work / "sample.parquet"
    args.work.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{"image_id": f.stem, "label": label_of(f.stem.split("_")[0]), "corruption": "clean",
                   "severity": 0, "path": str(f)} for f in sample]).to_parquet(clean)
    renders = write_manifest(render(args.sample, args.work / "images", args.files), args.files,
                             args.work / "renders.parquet")
    differ = []
    for name, manifest, geometry in (("sample", clean, "resize_crop"), ("renders", renders, "none")):
        for tree, side in ((args.base_tree, "base"), (HERE.parent, "this")):
            score(tree.resolve(), manifest, args.work / name / side, geometry, args.scorers)
        print(f"{name} ({geometry}):")
        differ += compare(args.work / name / "this", args.work / name / "base")
    print("every output equal" if not differ else f"DIFFERENT: {differ}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
