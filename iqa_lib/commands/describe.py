"""``iqa-kit describe``: the quality distribution of scored images, as a table and a figure.

The options and the printed summary (one line per Q variable); the work is the ``describe``
stage, :func:`iqa_lib.pipeline.describe.describe`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from iqa_lib.commands.analyze import names_list
from iqa_lib.commands.arguments import integer

if TYPE_CHECKING:  # pandas is imported where it is used: not at `iqa-kit --help`
    import pandas as pd


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


def _num(x: float) -> str:
    import pandas as pd  # not at `iqa-kit --help`

    return "-" if pd.isna(x) else f"{x:.4g}"


def _header(has_cor: bool, has_acc: bool) -> str:
    head = f"{'variable':<22}{'n clean':>9} {'median':>9} {'IQR':>19}"
    if has_cor:
        head += f" {'n corrupted':>12} {'median':>9} {'IQR':>19}"
    return head + ("  accuracy" if has_acc else "")


def _variable_line(name: str, rows: pd.DataFrame, groups: tuple[tuple[str, int], ...]) -> str:
    """One Q variable: n, median and IQR per group (clean, pooled corrupted), then the accuracy."""
    by = {row["corruption"]: row for _, row in rows.iterrows()}
    cells, acc = [], []
    for group, width in groups:
        row = by.get(group)
        if row is None:
            cells.append(f"{0:>{width}} {'-':>9} {'-':>19}")
            continue
        iqr = f"{_num(row['q25'])}..{_num(row['q75'])}"
        cells.append(f"{int(row['n']):>{width}} {_num(row['q50']):>9} {iqr:>19}")
        acc.append(_num(row["accuracy"]))
    acc_text = " / ".join(acc) if acc and any(a != "-" for a in acc) else ""
    return (f"{name:<22}" + " ".join(cells) + f"  {acc_text}").rstrip()


def format_summary(summary: pd.DataFrame) -> list[str]:
    """One line per Q variable: n, median and IQR of the clean and the pooled corrupted rows,
    and the accuracy of task files (clean / corrupted)."""
    from iqa_lib.analysis.distribution import CORRUPTED  # pandas: not at `--help`
    from iqa_lib.analysis.io import CLEAN  # pandas: not at `--help`
    from iqa_lib.presentation.plots_distribution import variable_name  # not at `--help`

    has_cor = (summary["corruption"] == CORRUPTED).any()
    has_acc = summary["accuracy"].notna().any()
    groups = ((CLEAN, 9), (CORRUPTED, 12)) if has_cor else ((CLEAN, 9),)
    lines = [_header(has_cor, has_acc)]
    lines += [_variable_line(variable_name(scorer, q), g, groups)
              for (scorer, q), g in summary.groupby(["scorer", "q"], sort=False)]
    notes = ["IQR = 25%..75% quantiles"]
    if has_cor:
        notes.append("corrupted = every non-clean row pooled")
    if has_acc:
        notes.append("accuracy = mean of 'correct'" + (" (clean / corrupted)" if has_cor else ""))
    return [*lines, "; ".join(notes)]


def run(args: argparse.Namespace) -> int:
    from iqa_lib.config import load_params  # pydantic: not at `--help`
    from iqa_lib.pipeline import describe as stage  # pandas, matplotlib: not at `--help`
    from iqa_lib.presentation.plots_distribution import groups_text  # not at `--help`

    if args.params:
        settings = stage.settings_from_params(load_params(args.params), args.scores, args.scorers, args.out,
                                              args.bins, args.wait)
    elif not args.scores:
        raise ValueError("give --scores DIR (a folder of <scorer>.parquet files) or --params")
    else:
        scorers = tuple(args.scorers) if args.scorers is not None else None
        settings = stage.DescribeSettings(args.scores, scorers, args.out, args.bins, args.wait)
    result = stage.describe(settings)
    print(f"quality distribution of {result.table['scorer'].nunique()} score file(s) in {settings.scores}: "
          f"{groups_text(result.table)}")
    print("\n".join(format_summary(result.summary)))
    print(f"wrote {', '.join(p.name for p in result.files)} to {result.out}")
    return 0
