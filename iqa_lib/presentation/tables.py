"""The paper's Tables 1-4 from our analysis tables, with the paper's value beside ours.

A row gets the paper's numbers only where its setting is the paper's: the same
scorer (by spec, e.g. ``pyiqa:clipiqa`` is CLIP-IQA) and the same task model
(torchvision ResNet-34, ConvNeXt-B, Swin-B). Elsewhere the paper columns are
empty, never borrowed from a different model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from iqa_lib.analysis.inference import N_TOO_SMALL, RULE_TEXT, is_true, vs_best_mark
from iqa_lib.analysis.sample_size import SMALL_N_CLASS_IMAGES, SMALL_N_GROUP_IMAGES, SMALL_N_GROUPS
from iqa_lib.fileio import atomic_write_text, write_csv
from iqa_lib.paper import paper_tables
from iqa_lib.presentation.numbers import count_text
from iqa_lib.scorers.spec import ScorerSpec, parse_spec

PAPER_NR_IQA = {
    "pyiqa:clipiqa": "CLIP-IQA",
    "pyiqa:arniqa": "ARNIQA",
    "brisque": "BRISQUE",  # the original BRISQUE, as pyiqa's port (both calibrated against MATLAB)
    "pyiqa:brisque": "BRISQUE",
    "tv": "TV",
}
PAPER_TASK_MODELS = ("resnet34", "convnext_base", "swin_b")
STATS = ("auc", "ce", "krcc", "srcc", "plcc")
TABLE_TITLES = {
    1: "Table 1: no-reference IQA as predictors of correctness",
    2: "Table 2: strong task-guided Q, same model for Q and M",
    3: "Table 3: ZSCLIP-IQA as predictor of correctness",
    4: "Table 4: strong task-guided Q from model A, M from model B",
}


def paper_name(spec: str | Mapping | ScorerSpec) -> str | None:
    """The paper's name for a scorer spec when it is the paper's setting, else ``None``."""
    spec = spec if isinstance(spec, ScorerSpec) else parse_spec(spec)
    if spec.kind == "nr_iqa":
        return PAPER_NR_IQA.get(spec.text)
    if spec.kind == "zero_shot":
        return "zsclip"
    if spec.family == "torchvision" and spec.name in PAPER_TASK_MODELS:
        return spec.name
    return None


def paper_names(specs: Mapping[str, str | Mapping]) -> dict[str, str]:
    """Our scorer name -> the paper's name, for the scorers that have one."""
    out = {}
    for name, spec in specs.items():
        paper = paper_name(spec)
        if paper is not None:
            out[name] = paper
    return out


def _with_paper(ours: pd.DataFrame, table: int, q_col: str, m_col: str, names: Mapping[str, str]) -> pd.DataFrame:
    ref = paper_tables()
    ref = ref[ref["table"] == table].rename(
        columns={"task_model": "_m", "quality_scorer": "_q", **{s: f"paper_{s}" for s in STATS}}
    )[["_m", "_q", "q", *(f"paper_{s}" for s in STATS)]]
    keyed = ours.assign(_q=ours[q_col].map(names), _m=ours[m_col].map(names))
    return keyed.merge(ref, how="left", on=["_m", "_q", "q"]).drop(columns=["_q", "_m"])


def _ours(summary: pd.DataFrame) -> pd.DataFrame:
    keep = ["auc", "auc_ci_low", "auc_ci_high", "auc_raw", "ce", "krcc", "srcc", "plcc",
            "krcc_ci_low", "krcc_ci_high", "srcc_ci_low", "srcc_ci_high", "plcc_ci_low", "plcc_ci_high",
            "n_test_images", "n_groups", "min_group_images", "small_n_auc", "small_n_corr"]
    return summary[[c for c in summary.columns if c in keep]]


def table1(summary: pd.DataFrame, names: Mapping[str, str]) -> pd.DataFrame:
    """No-reference IQA scorers against every task model."""
    rows = summary[summary["kind"] == "nr_iqa"]
    out = pd.concat([rows[["task_model", "scorer", "q"]], _ours(rows)], axis=1)
    return _with_paper(out, 1, "scorer", "task_model", names).reset_index(drop=True)


def table3(summary: pd.DataFrame, names: Mapping[str, str]) -> pd.DataFrame:
    """Zero-shot (ZSCLIP-IQA) Q_p, Q_h, Q_l against every task model."""
    rows = summary[(summary["kind"] == "zero_shot") & (summary["task_model"] != summary["scorer"])]
    out = pd.concat([rows[["task_model", "scorer", "q"]], _ours(rows)], axis=1)
    return _with_paper(out, 3, "scorer", "task_model", names).reset_index(drop=True)


def table4(pairs: pd.DataFrame, names: Mapping[str, str]) -> pd.DataFrame:
    """Q from classifier A (``q_model``), M from classifier B (``m_model``), every pair."""
    out = pd.concat([pairs[["m_model", "q_model", "same_model", "q"]], _ours(pairs)], axis=1)
    return _with_paper(out, 4, "q_model", "m_model", names).reset_index(drop=True)


def table2(pairs: pd.DataFrame, names: Mapping[str, str]) -> pd.DataFrame:
    """The diagonal of Table 4 (Q and M from the same model), as the paper's Table 2 shows."""
    diagonal = pairs[pairs["same_model"]]
    out = pd.concat([diagonal[["m_model", "q_model", "q"]], _ours(diagonal)], axis=1)
    return _with_paper(out, 2, "q_model", "m_model", names).reset_index(drop=True)


def _fmt(value: float, low: float | None = None, high: float | None = None) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    text = f"{value:.3f}"
    if low is not None and high is not None and np.isfinite(low) and np.isfinite(high):
        text += f" [{low:.3f}, {high:.3f}]"
    return text


def _pm(mean: float | None, sd: float | None) -> str:
    if mean is None or not np.isfinite(mean):
        return ""
    return f"{mean:.3f}" + (f" ± {sd:.3f}" if sd is not None and np.isfinite(sd) else "")


SMALL_N_MARK = "†"
SMALL_N_NOTE = (f"{SMALL_N_MARK} n too small for the interval to mean anything: fewer than {SMALL_N_CLASS_IMAGES} "
                f"test images in a class (AUC), or fewer than {SMALL_N_GROUPS} groups or fewer than "
                f"{SMALL_N_GROUP_IMAGES} images in a group (correlations: the groups share their images, so "
                "many groups of a few images are still a few images); see iqa_lib/analysis/sample_size.py.")
VS_BEST_NOTE = ("*vs best*: each row against the table's best row for the same task model, on the same test "
                "images: clustered DeLong for the AUC, paired bootstrap over groups for |SRCC|, p-values "
                "Holm-adjusted over the valid tests among the table's rows for that model; *lower* is "
                f"significant at 0.05, *n.s.* is not, *{N_TOO_SMALL}* is no test. " + RULE_TEXT)



def mark_vs_best(
    table: pd.DataFrame, pairs: pd.DataFrame, m_col: str = "task_model", scorer_col: str = "scorer"
) -> pd.DataFrame:
    """Add ``auc_vs_best`` and ``srcc_vs_best``: is each row significantly below its model's best row?

    ``pairs``: :func:`iqa_lib.analysis.paired.within_table` for this table's rows (its
    ``*_holm_table`` p-values). "best" on the best row, "lower (p ...)" where the
    difference is significant, "n.s. (p ...)" where it is not, "n too small" where the
    test is not valid at this n (:mod:`iqa_lib.analysis.inference`), empty where untested.
    """
    out = table.copy()
    lookup = {}
    for r in pairs.itertuples(index=False):
        key = frozenset({(r.scorer_a, r.q_a), (r.scorer_b, r.q_b)})
        lookup[(r.task_model, key)] = r
    for stat, p_col, sig_col, ok_col in (
            ("auc", "delong_p_holm_table", "significant_auc_table", "auc_test_valid"),
            ("srcc", "srcc_p_holm_table", "significant_srcc_table", "srcc_test_valid")):
        marks = pd.Series("", index=out.index, dtype=object)
        if stat in out.columns:
            for model, rows in out.groupby(m_col):
                if rows[stat].notna().sum() < 2:
                    continue
                best = rows.loc[rows[stat].idxmax()]
                best_key = (best[scorer_col], best["q"])
                for i, r in rows.iterrows():
                    if (r[scorer_col], r["q"]) == best_key:
                        marks[i] = "best"
                        continue
                    hit = lookup.get((model, frozenset({(r[scorer_col], r["q"]), best_key})))
                    if hit is None:
                        continue
                    marks[i] = vs_best_mark(getattr(hit, p_col, np.nan), getattr(hit, sig_col, None),
                                            is_true(getattr(hit, ok_col, True)))
        out[f"{stat}_vs_best"] = marks
    return out


def _flagged(text: str, flag) -> str:
    return f"{text} {SMALL_N_MARK}" if text and is_flagged(flag) else text


def is_flagged(value) -> bool:
    """A small-n flag that is set (True, numpy's True); NaN or missing is not set."""
    return is_true(value)


MEAN_LABELS = {"auc": "mean AUC", "auc_raw": "mean AUC (raw Q)", "ce": "mean CE"}


def _pointwise_cells(table: pd.DataFrame, r: pd.Series) -> dict:
    """AUC [CI] (flagged), its mark against the best row, the raw-Q AUC and CE."""
    row = {"AUC": _flagged(_fmt(r.get("auc"), r.get("auc_ci_low"), r.get("auc_ci_high")), r.get("small_n_auc"))}
    if "auc_vs_best" in table.columns:
        row["AUC vs best"] = r.get("auc_vs_best")
    if "auc_raw" in table.columns:
        row["AUC (raw Q)"] = _fmt(r.get("auc_raw"))
    row["CE"] = _fmt(r.get("ce"))
    return row


def _mean_cells(table: pd.DataFrame, r: pd.Series) -> dict:
    """Cross-validated or per-mixture summaries: mean ± sd, and the number of groups or mixtures."""
    row = {label: _pm(r.get(f"mean_{stat}"), r.get(f"sd_{stat}"))
           for stat, label in MEAN_LABELS.items() if f"mean_{stat}" in table.columns}
    for count in ("n_groups_scored", "n_groups", "n_mixtures"):
        if count in table.columns:
            row[count.replace("_", " ")] = r.get(count)
    return row


def _correlation_cells(table: pd.DataFrame, r: pd.Series) -> dict:
    """|KRCC|, |SRCC|, |PLCC| [CI] (flagged), and |SRCC|'s mark against the best row."""
    row = {f"\\|{stat.upper()}\\|": _flagged(_fmt(r.get(stat), r.get(f"{stat}_ci_low"), r.get(f"{stat}_ci_high")),
                                            r.get("small_n_corr"))
           for stat in ("krcc", "srcc", "plcc") if stat in table.columns}
    if "srcc_vs_best" in table.columns:
        row["\\|SRCC\\| vs best"] = r.get("srcc_vs_best")
    return row


def _n_cell(table: pd.DataFrame, r: pd.Series) -> dict:
    """n beside the intervals: test images, and groups with their smallest size where known."""
    if "n_test_images" not in table.columns or "auc" not in table.columns:
        return {}
    images, groups = count_text(r.get("n_test_images"), ""), r.get("n_groups")
    if groups is not None and np.isfinite(groups):
        images = f"{images} / {group_count_text(groups, r.get('min_group_images'))}"
    return {"n (test images / groups)": images}


def _paper_cells(table: pd.DataFrame, r: pd.Series) -> dict:
    """The paper's value of each statistic, where the table has one."""
    row = {}
    for stat in STATS:
        col = f"paper_{stat}"
        if col in table.columns and table[col].notna().any():
            label = stat.upper() if stat in ("auc", "ce") else f"\\|{stat.upper()}\\|"
            row[f"paper {label}"] = _fmt(r.get(col))
    return row


def _markdown_row(table: pd.DataFrame, r: pd.Series, id_cols: list[str]) -> dict:
    row = {c: r[c] for c in id_cols}
    row.update(_pointwise_cells(table, r) if "auc" in table.columns else _mean_cells(table, r))
    row.update(_correlation_cells(table, r))
    row.update(_n_cell(table, r))
    row.update(_paper_cells(table, r))
    return row


def _notes(table: pd.DataFrame) -> list[str]:
    """The notes under a table: what the dagger means, what "vs best" means, where they are used."""
    notes = []
    if any(is_flagged(r.get(c)) for _, r in table.iterrows() for c in ("small_n_auc", "small_n_corr")):
        notes.append(SMALL_N_NOTE)
    if "auc_vs_best" in table.columns and (table["auc_vs_best"].astype(str) != "").any():
        notes.append(VS_BEST_NOTE)
    return notes


def to_markdown(table: pd.DataFrame, title: str | None = None) -> str:
    """A readable Markdown rendering: our value [95% CI] and the paper's beside it.

    With the columns present: n beside the intervals (test images / groups), a dagger on
    results whose n is too small, and whether each row is significantly below the best.
    """
    id_cols = [c for c in ("task_model", "m_model", "q_model", "scorer", "q") if c in table.columns]
    rows = [_markdown_row(table, r, id_cols) for _, r in table.iterrows()]
    body = pd.DataFrame(rows).to_markdown(index=False) if rows else "_(no rows: the scorers this table needs are not configured)_"
    tail = "".join(f"\n{note}\n" for note in _notes(table))
    return (f"### {title}\n\n" if title else "") + body + "\n" + tail


def group_count_text(n_groups, min_group_images=None, unit: str = "") -> str:
    """A group-wise n in words: "75 (≥10 images each)", or with ``unit`` "75 groups of at least
    10 images"; the number of groups alone where the image count is unknown (older tables)."""
    groups = count_text(n_groups, "") or "?"
    images = count_text(min_group_images, "")
    if unit:
        return f"{groups} {unit}" + (f" of at least {images} images" if images else "")
    return groups + (f" (≥{images} images each)" if images else "")


def write_table(
    table: pd.DataFrame, stem: str | os.PathLike, title: str | None = None, markdown: str | None = None
) -> list[Path]:
    """``<stem>.csv`` (every column, full precision) and ``<stem>.md`` (rounded, with CIs).

    ``markdown``: the rendering to write, for tables :func:`to_markdown` has no layout for.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = stem.with_suffix(".csv"), stem.with_suffix(".md")
    write_csv(table, csv_path)
    atomic_write_text(md_path, markdown if markdown is not None else to_markdown(table, title))
    return [csv_path, md_path]
