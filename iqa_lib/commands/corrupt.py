"""``iqa-kit corrupt``: render ImageNet-C from clean images (no 70 GB download needed).

The work is :func:`iqa_lib.pipeline.corrupt.render_imagenet_c`; this parses its options and prints.
"""

from __future__ import annotations

import argparse
import sys

from iqa_lib.commands.arguments import add_max_pixels


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "corrupt",
        help="render ImageNet-C corruptions of clean images into an ImageNet-C tree",
        description="Render the ImageNet-C corruptions with the original protocol (Resize 256, "
        "CenterCrop 224, corruption, JPEG quality 85) into "
        "<out>/<corruption>/<severity>/<wnid>/<image_id>.JPEG (a dataset with its own class "
        "folders: <class> in place of <wnid>), which `iqa-kit manifest --imagenet-c` reads back. Deterministic (the same image, corruption and severity give "
        "the same bytes) and resumable (existing files that decode are skipped; one that does not is "
        "rendered again). Undecodable sources are "
        "listed in <out>/corrupt_failures.csv and the run goes on; a failed render is listed "
        "too and makes the exit status 1; a write the machine refuses (disk full, I/O error) "
        "stops the run (exit status 2): rerun to finish it. One run at a time writes <out>.",
    )
    parser.add_argument(
        "--src",
        required=True,
        help="clean images: a labelled folder (class sub-folders, wnid-named or your own, files "
        "named <wnid>_<anything>, or a flat folder with --labels-file) or a manifest.parquet",
    )
    parser.add_argument("--out", required=True, help="root of the ImageNet-C tree to write")
    parser.add_argument(
        "--corruptions",
        nargs="+",
        default=["common"],
        metavar="NAME",
        help="corruption names, or 'common' (the 15 of ImageNet-C), 'extra' (speckle_noise, "
        "gaussian_blur, spatter, saturate) or 'all' (default: common)",
    )
    parser.add_argument(
        "--severities",
        nargs="+",
        type=int,
        default=[1, 2, 3, 4, 5],
        metavar="S",
        help="severities 1-5 (default: 1 2 3 4 5)",
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    add_max_pixels(parser)
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="only the first N images by image_id (for trying it out)",
    )
    parser.add_argument(
        "--labels-file", help="labels for a flat folder: '<file> <wnid|label>' lines"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--wait", action="store_true",
        help="when another run is writing --out, wait for it to finish instead of failing",
    )
    parser.set_defaults(func=run)


def check_positive(option: str, value: int | None) -> None:
    """A count option (``--workers``, ``--limit``) is a whole number of at least 1, or not given."""
    if value is not None and value < 1:
        raise ValueError(f"{option} must be at least 1, got {value}; leave it out for the default")


def run(args: argparse.Namespace) -> int:
    # the renderer imports pandas and Pillow: kept off the parser's start-up path
    from iqa_lib.pipeline.corrupt import CorruptSettings, render_imagenet_c

    check_positive("--limit", args.limit)
    check_positive("--workers", args.workers)
    settings = CorruptSettings(
        src=args.src, out=args.out, corruptions=tuple(args.corruptions), severities=tuple(args.severities),
        labels_file=args.labels_file, limit=args.limit, workers=args.workers, progress=not args.no_progress,
        max_pixels=getattr(args, "max_pixels", None), wait=getattr(args, "wait", False),
    )
    report = render_imagenet_c(settings, say=print)
    rate = f" ({report.renders_per_s:.1f} renders/s)" if report.written else ""
    print(
        f"written {report.written}, skipped {report.skipped} (already there), "
        f"failed {report.failed}; elapsed {report.elapsed_s:.1f} s{rate}"
    )
    if report.rerendered:
        print(f"{report.rerendered} existing output(s) did not decode (cut short or damaged) and "
              "were rendered again")
    if report.failures_file is not None:
        print(f"{len(report.failures)} failure(s) listed in {report.failures_file}")
    # Undecodable sources are reported, not fatal; a failed render or a run that produced
    # nothing is (write faults never get here: they raise).
    if report.render_failures:
        print(
            f"iqa-kit corrupt: error: {len(report.render_failures)} render(s) failed (not an "
            f"undecodable source; see {report.failures_file}): fix the cause and rerun to render "
            "only those",
            file=sys.stderr,
        )
        return 1
    return 1 if report.failed and not (report.written or report.skipped) else 0
