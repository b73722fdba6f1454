"""``iqa-kit describe``: the quality distribution of scored images, as a table and a figure.

Before asking whether Q predicts correctness, users want to see what Q looks like on their
images and how it compares with ImageNet / ImageNet-C groups. Writes ``q_distribution.csv``
(one row per scorer, Q variable, corruption, severity) and ``q_distribution.png``/``.pdf``,
and prints one line per Q variable.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from iqa_lib.commands.analyze import names_list
from iqa_lib.commands.arguments import integer

if TYPE_CHECKING:  # pandas is imported where it is used: not at `iqa-kit --help`
    import pandas as pd

STEM = "q_distribution"


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


def default_out(scores: str | Path) -> Path:
    """``<scores>/../distribution``, resolved so that ``--scores .`` does not nest it."""
    return Path(scores).resolve().parent / "distribution"


def _num(x: float) -> str:
    import pandas as pd

    return "-" if pd.isna(x) else f"{x:.4g}"


def format_summary(summary: pd.DataFrame) -> list[str]:
    """One line per Q variable: n, median and IQR of the clean and the pooled corrupted rows,
    and the accuracy of task files (clean / corrupted)."""
    from iqa_lib.analysis.distribution import CORRUPTED
    from iqa_lib.analysis.io import CLEAN
    from iqa_lib.presentation.plots_distribution import variable_name

    has_cor = (summary["corruption"] == CORRUPTED).any()
    head = f"{'variable':<22}{'n clean':>9} {'median':>9} {'IQR':>19}"
    if has_cor:
        head += f" {'n corrupted':>12} {'median':>9} {'IQR':>19}"
    has_acc = summary["accuracy"].notna().any()
    lines = [head + ("  accuracy" if has_acc else "")]
    for (scorer, q), g in summary.groupby(["scorer", "q"], sort=False):
        by = {row["corruption"]: row for _, row in g.iterrows()}
        cells, acc = [], []
        for group, width in ((CLEAN, 9), (CORRUPTED, 12)) if has_cor else ((CLEAN, 9),):
            row = by.get(group)
            if row is None:
                cells.append(f"{0:>{width}} {'-':>9} {'-':>19}")
                continue
            iqr = f"{_num(row['q25'])}..{_num(row['q75'])}"
            cells.append(f"{int(row['n']):>{width}} {_num(row['q50']):>9} {iqr:>19}")
            acc.append(_num(row["accuracy"]))
        acc_text = " / ".join(acc) if acc and any(a != "-" for a in acc) else ""
        line = f"{variable_name(scorer, q):<22}" + " ".join(cells) + f"  {acc_text}"
        lines.append(line.rstrip())
    notes = ["IQR = 25%..75% quantiles"]
    if has_cor:
        notes.append("corrupted = every non-clean row pooled")
    if has_acc:
        notes.append("accuracy = mean of 'correct'" + (" (clean / corrupted)" if has_cor else ""))
    return [*lines, "; ".join(notes)]


def run(args: argparse.Namespace) -> int:
    from iqa_lib.analysis.distribution import describe_and_summarize
    from iqa_lib.fileio import write_csv
    from iqa_lib.locks import output_lock
    from iqa_lib.presentation.plots import save_figure
    from iqa_lib.presentation.plots_distribution import groups_text, q_distribution_figure

    if args.bins < 1:
        raise ValueError(f"--bins must be at least 1, got {args.bins}")
    if args.params:
        from iqa_lib.config import DISTRIBUTION_DIR, SCORES_DIR, load_params

        params = load_params(args.params)
        args.scores = args.scores or SCORES_DIR
        args.scorers = args.scorers or list(params.scorers)
        args.out = args.out or DISTRIBUTION_DIR
    if not args.scores:
        raise ValueError("give --scores DIR (a folder of <scorer>.parquet files) or --params")
    table, summary = describe_and_summarize(args.scores, args.scorers)
    if table.empty:
        raise ValueError(f"{args.scores}: the score files have no rows; rescore the images")
    out = Path(args.out) if args.out else default_out(args.scores)
    csv = out / f"{STEM}.csv"
    with output_lock(out, wait=args.wait):
        out.mkdir(parents=True, exist_ok=True)
        write_csv(table, csv)
        fig = q_distribution_figure(args.scores, table=table, bins=args.bins)
        figures = save_figure(fig, out / STEM)
    n_files = table["scorer"].nunique()
    print(f"quality distribution of {n_files} score file(s) in {args.scores}: "
          f"{groups_text(table)}")
    print("\n".join(format_summary(summary)))
    print(f"wrote {csv.name}, {', '.join(p.name for p in figures)} to {out}")
    return 0
