"""``iqa-kit describe``: the quality distribution of scored images, as a table and a figure.

The options; the work is the ``describe`` stage (:func:`iqa_lib.pipeline.describe.describe`),
the printed summary :mod:`iqa_lib.presentation.describe_report`.
"""

from __future__ import annotations

import argparse

from iqa_lib.commands.arguments import integer, names_list


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "describe",
        help="quality distribution of scored images: table and figure",
        description="Per scorer and Q variable (q for no-reference scorers, q_p/q_h/q_l for "
        "classifiers and zero-shot models): n, mean, sd and quantiles per (corruption, "
        "severity) group, the task files' accuracy per group, and a figure: a histogram for "
        "one group (your own clean images), median Q against severity per corruption for "
        "ImageNet-C. Writes q_distribution.csv, q_distribution.png and q_distribution.pdf.",
    )
    parser.add_argument("--scores", help="folder of <scorer>.parquet files from `iqa-kit score`")
    parser.add_argument(
        "--params",
        help="take the defaults from this params.yaml: results/scores, its configured scorers, "
        "and results/distribution (explicit options win); this is what dvc.yaml runs",
    )
    parser.add_argument(
        "--scorers",
        type=names_list,
        default=None,
        help="comma-separated subset of score files (file stems, e.g. brisque,resnet34; "
        "default: all)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="folder for the table and figure (default: a 'distribution' folder next to the "
        "scores folder, i.e. <scores>/../distribution)",
    )
    parser.add_argument(
        "--bins", type=integer(1), default=50, help="histogram bins, one-group data (default: 50)"
    )
    parser.add_argument("--wait", action="store_true",
                        help="if another run is writing the same output, wait for it instead of stopping")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from iqa_lib.config import load_params  # pydantic: not at `--help`
    from iqa_lib.pipeline import describe as stage  # pandas, matplotlib: not at `--help`
    from iqa_lib.presentation.describe_report import summary_lines  # pandas: not at `--help`

    if args.params:
        settings = stage.settings_from_params(load_params(args.params), args.scores, args.scorers, args.out,
                                              args.bins, args.wait)
    elif not args.scores:
        raise ValueError("give --scores DIR (a folder of <scorer>.parquet files) or --params")
    else:
        scorers = tuple(args.scorers) if args.scorers is not None else None
        settings = stage.DescribeSettings(args.scores, scorers, args.out, args.bins, args.wait)
    result = stage.describe(settings)
    print("\n".join(summary_lines(result.table, result.summary, settings.scores, result.files, result.out)))
    return 0
