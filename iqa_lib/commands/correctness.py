"""``iqa-kit correctness``: how often a task model is right, where, and how well it knows it.

Parses the options and prints the summary; the stage itself is :mod:`iqa_lib.pipeline.correctness`.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "correctness",
        help="a task model's top-1, ImageNet-C CE/mCE and calibration: tables and figures",
        description="For one task model's score file: top-1 accuracy on clean images and per "
        "(corruption, severity); ImageNet-C corruption error CE per corruption and mCE, "
        "unnormalised and normalised by AlexNet's published errors, and relative mCE; ECE of "
        "q_p (15 equal-width bins) on clean and corrupted images with reliability diagrams; "
        "accuracy against severity per corruption. Writes accuracy.csv, ce.csv, "
        "calibration.csv, reliability.csv, severity.csv, summary.json and the figures.",
    )
    parser.add_argument("--scores", help="folder of <scorer>.parquet files from `iqa-kit score`")
    parser.add_argument("--model", required=True, help="the task model: a score file's stem, e.g. lite0")
    parser.add_argument(
        "--params",
        help="take the defaults from this params.yaml: results/scores and "
        "results/correctness/<model> (explicit options win); this is what dvc.yaml runs",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="folder for the tables and figures (default: <scores>/../correctness/<model>)",
    )
    parser.add_argument("--wait", action="store_true",
                        help="if another run is writing the same output, wait for it instead of stopping")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # why: the stage and the report import pandas, scipy and matplotlib, not at `iqa-kit --help`
    from iqa_lib.pipeline.correctness import resolve_paths, write_correctness
    from iqa_lib.presentation.correctness_report import format_summary  # why: as the line above

    scores, out = resolve_paths(args.model, args.scores, args.out, args.params)
    result, written = write_correctness(scores, args.model, out, wait=args.wait)
    print("\n".join(format_summary(result)))
    print(f"wrote {', '.join(p.name for p in written)} to {out}")
    return 0
