"""Corruption throughput: all cores against one core, measured in the same run.

An "image" here is one render: one (clean image, corruption, severity) output,
decoded, resized, corrupted, JPEG-encoded and written. The all-core figure is
end to end, so it includes starting the worker processes (spawn, imports,
loading glass_blur's numba kernel); the one-core run happens in this process
after a warm-up render. Both render into fresh temporary folders.

    python benchmarks/bench_corrupt.py                       # 8 sample images x 15 x 5
    python benchmarks/bench_corrupt.py --images 20 --workers 4
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd

DEFAULT_SRC = Path(__file__).resolve().parents[2] / "shared/data/imagenet-sample"


def _clean_rows(src: Path, n: int) -> pd.DataFrame:
    try:
        from iqa_lib.data.scan import clean_images

        clean = clean_images(src)
    except ImportError:  # manifest module not there: files named <wnid>_<anything>
        from iqa_lib.imagenet import label_of

        files = sorted(p for p in src.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
        clean = pd.DataFrame(
            [(p.stem, label_of(p.name.split("_", 1)[0]), str(p)) for p in files],
            columns=["image_id", "label", "path"],
        )
    return clean.sort_values("image_id").head(n).reset_index(drop=True)


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (the workers)."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(clean: pd.DataFrame, workers: int, corruptions, severities) -> tuple[float, int, float]:
    """Wall seconds, renders written, CPU seconds (all processes)."""
    from iqa_lib.data.imagenet_c_render import generate_imagenet_c

    with tempfile.TemporaryDirectory(prefix="bench_corrupt_") as tmp:
        cpu = _cpu_s()
        start = time.perf_counter()
        report = generate_imagenet_c(
            clean,
            tmp,
            corruptions=corruptions,
            severities=severities,
            workers=workers,
            progress=False,
        )
        elapsed = time.perf_counter() - start
        cpu = _cpu_s() - cpu
    if report.failed:
        raise RuntimeError(f"{report.failed} render(s) failed: {report.failures[:3]}")
    return elapsed, report.written, cpu


def main() -> None:
    from iqa_lib.data.imagenet_c_render import (
        COMMON_CORRUPTIONS,
        SEVERITIES,
        _enable_numba_cache,
        default_workers,
        render_corruption,
        resolve_corruptions,
        resolve_severities,
    )
    from iqa_lib.data.images import load_rgb

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC, help="clean image folder")
    parser.add_argument("--images", type=int, default=8, help="source images (default: 8)")
    parser.add_argument("--corruptions", nargs="+", default=list(COMMON_CORRUPTIONS))
    parser.add_argument("--severities", nargs="+", type=int, default=list(SEVERITIES))
    parser.add_argument("--workers", type=int, default=None, help="default: all cores")
    args = parser.parse_args()

    if not args.src.is_dir():
        raise SystemExit(f"no image folder at {args.src}; pass --src")
    corruptions = resolve_corruptions(args.corruptions)
    severities = resolve_severities(args.severities)
    workers = args.workers or default_workers()
    clean = _clean_rows(args.src, args.images)
    renders = len(clean) * len(corruptions) * len(severities)
    print(
        f"{len(clean)} images x {len(corruptions)} corruptions x {len(severities)} severities "
        f"= {renders} renders; {workers} worker(s) on {default_workers()} core(s); "
        f"load average before: {os.getloadavg()[0]:.2f}"
    )

    # Warm-up in this process (imports, numba kernel) so the one-core run measures rendering.
    _enable_numba_cache()
    render_corruption(load_rgb(clean.loc[0, "path"]), "warmup", "glass_blur", 1)

    t1, n1, c1 = _timed(clean, 1, corruptions, severities)
    tn, nn, cn = _timed(clean, workers, corruptions, severities)
    # Pool start-up alone: one cheap render per worker (included in the all-core time).
    ts, _, _ = _timed(clean.head(workers), workers, ["contrast"], [1])

    r1, rn = n1 / t1, nn / tn
    print(f"1 core:      {n1} renders in {t1:6.2f} s = {r1:6.1f} images/s")
    print(
        f"{workers} workers:   {nn} renders in {tn:6.2f} s = {rn:6.1f} images/s "
        f"(incl. ~{ts:.1f} s worker start-up)"
    )
    print(f"speed-up:    {rn / r1:.2f}x on {workers} workers")
    # On a machine shared with other jobs the wall-clock speed-up says little; the CPU
    # work shows whether the parallel path itself wastes anything.
    print(
        f"CPU work:    {1000 * c1 / n1:.1f} ms/render on 1 core, {1000 * cn / nn:.1f} ms/render "
        f"over {workers} workers; if the cores were free: ~{workers * c1 / cn:.2f}x"
    )
    print(f"load average after: {os.getloadavg()[0]:.2f} (other jobs on the machine skew this)")


if __name__ == "__main__":
    main()
