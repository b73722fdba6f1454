"""What `iqa-kit describe` prints and the describe notebook shows: the distribution in lines.

One line per Q variable (n, median and IQR of the clean and the pooled corrupted rows, a task
file's accuracy), under a line naming the score files and their groups and above the files written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from iqa_lib.analysis.distribution import CORRUPTED
from iqa_lib.analysis.io import CLEAN
from iqa_lib.presentation.plots_distribution import groups_text, variable_name


def summary_lines(table: pd.DataFrame, summary: pd.DataFrame, scores: str | os.PathLike,
                  files: Sequence[Path], out: str | os.PathLike) -> list[str]:
    """The whole printed summary of a description: source and groups, one line per Q, files written."""
    return [
        f"quality distribution of {table['scorer'].nunique()} score file(s) in {scores}: {groups_text(table)}",
        *format_summary(summary),
        f"wrote {', '.join(p.name for p in files)} to {out}",
    ]


def _num(x: float) -> str:
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
