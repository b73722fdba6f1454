"""The paper's sections: one function per table, per figure and per set of claims.

Each reads the tidy tables that ``iqa-kit analyze`` wrote (``results/analysis``)
and the validated parameters, writes Markdown/CSV tables, PNG/PDF figures and a
metrics JSON, and returns what it made (a frame, a figure, a list of claims) so a
notebook cell can show it and a reader can filter the frame and re-plot. The
section notebooks call these functions cell by cell; :data:`SECTIONS` runs a
whole section in one call (tests, scripts). A section whose scorers are not
configured writes a short explanation instead of failing, so the default
profile and the paper profile share one pipeline.

Every section writes the same metrics keys (:data:`METRIC_KEYS`), so that
``dvc metrics show`` is one row per section with a few columns.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from iqa_lib.analysis.inference import (
    HOLDS,
    NOT_TESTED,
    VERDICT_RULE_TEXT,
    VERDICTS,
    Comparison,
    Estimate,
    Verdict,
    comparison_verdict,
    mean_interval,
    threshold_verdict,
)
from iqa_lib.config import Params
from iqa_lib.fileio import atomic_write_text, write_csv
from iqa_lib.paper import paper_text_values
from iqa_lib.presentation import plots, tables
from iqa_lib.presentation.gallery import CAVEAT_FILE

CLAIMS_FILE = "claims.md"  # the verdicts as the notebook shows them
CLAIMS_TABLE = "claims.csv"

PAPER_MAIN_MODEL = "convnext_base"  # the paper's Figures 3, 5 and 7 use ConvNeXt-B
TASK_QS = ("q_h", "q_l", "q_p")  # the paper's row order in Figures 14-19
# the same keys in every section's metrics file: one row per file in `dvc metrics show`, and
# with its Path column at most 12 columns even where every key has a value (the paper profile)
METRIC_KEYS = (
    "task_model",  # the main task model (M) the other keys are about
    "best_auc_metric", "best_auc", "paper_auc",  # best point-wise AUC, and the paper's for that row
    "best_srcc_metric", "best_srcc", "paper_srcc",  # best group-wise |SRCC|, and the paper's
    "claims_checked", "claims_holding",  # the paper's claims we could test, and those that hold
    "small_n",  # the best AUC or |SRCC| rests on too small an n for its interval to mean anything, or the run is a demo
    "status",  # complete, partial or empty; why is in NOTE.md beside the tables (kept short: one column)
)
# thresholds of the verdicts, stated in each claim's text
NEAR_CHANCE_AUC = 0.65
WEAK_SRCC = 0.5
STRONG_SRCC = 0.7
GOOD_AUC = 0.7

DEMO_NOTE = (
    "**Demo data: no finding here.** This run used the quickstart photographs (a handful of images "
    "and their rendered ImageNet-C), far too few for any interval, p-value or verdict to mean "
    "anything: every number and verdict below shows the machinery, not evidence. For a run that "
    "supports findings, point the kit at any ImageNet validation folder (500 images or more): "
    "`cp docs/mini-reproduction/params.yaml params.yaml`, set `data.clean_root` to the folder, "
    "`dvc repro`."
)
SMALL_RUN_NOTE = (
    "**Too few images for findings.** Every result of this run rests on too few test images "
    "(at most {n} per class) or groups for its interval to mean anything: read the verdicts as "
    "inconclusive. For a run that supports findings, use 500 images or more (e.g. "
    "`docs/mini-reproduction/params.yaml` with `data.clean_root` set to an ImageNet validation folder)."
)

TITLES = {
    "section4_nr_iqa": "Section 4: no-reference IQA metrics",
    "section5_strong_tg": "Section 5: strong task-guided quality (classifier confidence)",
    "section6_zsclip": "Section 6: weak task-guided quality (ZSCLIP-IQA)",
    "appendix_g_content": "Appendix G: controlling for content (per label, per image ID)",
    "section6_3_mixtures": "Section 6.3: mild-corruption mixtures",
}


@dataclass
class Claim:
    """One claim of the paper and our verdict on it, with the evidence that decides it.

    ``verdict`` is one of :data:`iqa_lib.analysis.inference.VERDICTS`: holds, does not
    hold, inconclusive, not tested (the rules are in that module).
    """

    text: str
    verdict: str
    evidence: str
    reason: str = ""  # why inconclusive (or why it fails), in words
    small_n: str | None = None  # set when numbers behind the verdict rest on too small an n
    comparison: str | None = None  # numbers beside the claim that it is not about (own confidence)

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")

    @classmethod
    def judged(cls, text: str, verdict: Verdict, comparison: str | None = None) -> Claim:
        return cls(text, verdict.verdict, verdict.evidence, verdict.reason, comparison=comparison)

    @property
    def tested(self) -> bool:
        return self.verdict != NOT_TESTED

    def markdown(self) -> str:
        caution = f" *Caution:* {self.small_n}" if self.small_n and self.tested else ""
        flag = " (small n)" if caution else ""
        why = f" *Why:* {self.reason}." if self.reason and self.verdict != HOLDS else ""
        beside = f" *For comparison (not part of the claim):* {self.comparison}" if self.comparison else ""
        return f"- **{self.verdict}**{flag}: {self.text} *Ours:* {self.evidence}.{why}{beside}{caution}"


def caution(claim: Claim, rows: pd.DataFrame | None, column: str) -> Claim:
    """Mark ``claim`` when any of the ``rows`` behind it is flagged ``column`` (small n)."""
    if rows is not None and column in rows.columns:
        flagged = rows[column].map(tables.is_flagged)
        if flagged.any():
            claim.small_n = (f"{int(flagged.sum())} of {len(rows)} results behind this verdict rest on too few "
                             "test images, groups or images per group for their intervals to mean anything "
                             "(marked † in the table): do not report it as a finding.")
    return claim


@dataclass
class Section:
    name: str
    title: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    markdown: dict[str, str] = field(default_factory=dict)
    figures: dict[str, list[Path]] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    note: str | None = None  # why the section is empty or partial, when it is
    claims: list[Claim] = field(default_factory=list)
    ranking: pd.DataFrame | None = None  # metric, auc, srcc, paper_auc, paper_srcc for the main model
    unavailable: bool = False  # its scorers or analyses are missing: nothing to draw

    @property
    def empty(self) -> bool:
        return not self.tables and not self.figures


@dataclass
class Context:
    """Everything a section needs: the parameters, the analysis tables, where to write."""

    params: Params
    analysis_dir: Path
    tables_dir: Path
    figures_dir: Path
    metrics_dir: Path
    correctness_dir: Path  # one folder per task model, written by `iqa-kit correctness`

    @cached_property
    def skipped(self) -> dict[str, str]:
        """Analyses ``iqa-kit analyze`` skipped because the data cannot support them."""
        path = self.analysis_dir / "analysis_params.json"
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text()).get("skipped", {})
        except (ValueError, AttributeError) as exc:
            raise ValueError(f"{path}: not readable JSON ({exc}); rerun `iqa-kit analyze`") from None

    def groupwise_note(self, section: Section) -> bool:
        """Whether the group-wise figures can be drawn; if not, say why in the section."""
        why = self.skipped.get("groupwise")
        if why:
            section.note = f"Group-wise columns and scatter plots are empty: {why}."
        return why is None

    @cached_property
    def run_caveat(self) -> str | None:
        """What the whole run can support, said first: a demo, or a run too small for findings."""
        data = self.params.data
        if data.clean_root is None and data.imagenet_c_root is None:
            return DEMO_NOTE
        path = self.analysis_dir / "summary.csv"
        if not path.is_file():
            return None
        summary = pd.read_csv(path)
        if summary.empty or "small_n_auc" not in summary.columns:
            return None
        auc_small = summary["small_n_auc"].map(tables.is_flagged)
        corr = summary["small_n_corr"] if "small_n_corr" in summary.columns else pd.Series(True, summary.index)
        corr_small = corr.map(tables.is_flagged) | summary.get("srcc", pd.Series(float("nan"), summary.index)).isna()
        if auc_small.all() and corr_small.all():
            most = pd.concat([summary.get("n_test_pos_images", pd.Series(dtype=float)),
                              summary.get("n_test_neg_images", pd.Series(dtype=float))]).min()
            n = int(most) if pd.notna(most) else "a few"
            return SMALL_RUN_NOTE.format(n=n)
        return None

    def pairs_within(self, members: pd.DataFrame) -> pd.DataFrame | None:
        """The paired tests among ``members`` (task_model, scorer, q), Holm within them; None without tests."""
        from iqa_lib.analysis.paired import within_table

        if members.empty or not (self.analysis_dir / "paired_tests.csv").is_file():
            return None
        return within_table(self.read("paired_tests"), members[["task_model", "scorer", "q"]])

    def read(self, name: str) -> pd.DataFrame:
        path = self.analysis_dir / f"{name}.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run `iqa-kit analyze` (or `dvc repro analyze`) first")
        try:
            return pd.read_csv(path)
        except (ValueError, UnicodeDecodeError) as exc:  # pandas' parser errors are ValueErrors
            raise ValueError(f"{path}: not a readable table ({exc}); rerun `iqa-kit analyze`") from None

    def correctness(self, model: str, name: str) -> pd.DataFrame:
        """A task model's correctness table (``accuracy``, ``ce``, ``calibration``...): read, not recomputed."""
        path = self.correctness_dir / model / f"{name}.csv"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: run `dvc repro correctness@{model}` (or `iqa-kit correctness "
                f"--scores results/scores --model {model} --out {self.correctness_dir / model}`) first"
            )
        return pd.read_csv(path)

    def correctness_summary(self, model: str) -> dict:
        path = self.correctness_dir / model / "summary.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run `dvc repro correctness@{model}` first")
        return json.loads(path.read_text())

    def group_means(self, section: Section) -> pd.DataFrame | None:
        """Mean Q per group from the analysis, with each task model's accuracy from its correctness table.

        The analysis computes the same accuracies for its correlations; a difference means one
        of the two stages ran on other scores, which is an error rather than a silent choice.
        """
        means = self.load(section, "groupwise_means")
        if means is None:
            return None
        keys = ["corruption", "severity"]
        # the configured task models' accuracy comes from their correctness tables; the
        # analysis's other rows (mean Q, accuracies of task files no section plots) stay
        is_acc = (means["measure"] == "accuracy") & means["source"].isin(self.task_models)
        rows = [means[~is_acc]]
        for model in means.loc[is_acc, "source"].unique():
            ours = means[is_acc & (means["source"] == model)]
            table = self.correctness(model, "accuracy")
            joined = ours.merge(table[[*keys, "n", "accuracy"]], on=keys, how="left", suffixes=("", "_c"))
            stale = joined["accuracy"].isna() | (joined["n_c"] != joined["n"]) | (
                (joined["accuracy"] - joined["mean"]).abs() > 1e-9)
            if stale.any():
                bad = joined.loc[stale, keys].head(3).to_dict("records")
                raise ValueError(
                    f"{self.correctness_dir / model / 'accuracy.csv'} and {self.analysis_dir / 'groupwise_means.csv'} "
                    f"disagree on {model}'s accuracy (e.g. {bad}): they were made from different scores; "
                    "rerun both (`dvc repro`)"
                )
            rows.append(ours.assign(mean=joined["accuracy"].to_numpy()))
        return pd.concat(rows, ignore_index=True)

    def with_significance(self, table: pd.DataFrame, m_col: str = "task_model", scorer_col: str = "scorer") -> pd.DataFrame:
        """The table with ``auc_vs_best`` / ``srcc_vs_best`` marks from the analysis's paired tests.

        Holm's adjustment is redone within the table (:func:`iqa_lib.analysis.paired.within_table`);
        an analysis made without the paired tests leaves the table unmarked.
        """
        from iqa_lib.analysis.paired import within_table

        if table.empty or not (self.analysis_dir / "paired_tests.csv").is_file():
            return table
        members = table.rename(columns={m_col: "task_model", scorer_col: "scorer"})[["task_model", "scorer", "q"]]
        pairs = within_table(self.read("paired_tests"), members)
        return tables.mark_vs_best(table, pairs, m_col, scorer_col)

    def load(self, section: Section, name: str) -> pd.DataFrame | None:
        """An analysis table for a notebook cell, or ``None`` when the section has nothing to show."""
        return None if section.unavailable else self.read(name)

    @property
    def kinds(self) -> dict[str, str]:
        return {name: self.params.scorer_spec(name).kind for name in self.params.scorers}

    def scorers_of(self, kind: str) -> list[str]:
        return [n for n, k in self.kinds.items() if k == kind]

    @property
    def task_models(self) -> list[str]:
        return list(self.params.analysis.task_models) or self.scorers_of("classifier")

    @property
    def main_model(self) -> str | None:
        names = tables.paper_names(self.params.scorers)
        for model in self.task_models:
            if names.get(model) == PAPER_MAIN_MODEL:
                return model
        return self.task_models[0] if self.task_models else None

    @property
    def paper_names(self) -> dict[str, str]:
        return tables.paper_names(self.params.scorers)

    def write_table(
        self, section: Section, key: str, table: pd.DataFrame, title: str, markdown: str | None = None
    ) -> pd.DataFrame:
        markdown = markdown if markdown is not None else tables.to_markdown(table, title)
        tables.write_table(table, self.tables_dir / section.name / key, title, markdown)
        section.tables[key] = table
        section.markdown[key] = markdown
        return table

    def save(self, section: Section, key: str, fig):
        """Write ``<key>.png`` and ``.pdf``; return the (closed) figure for a notebook to show."""
        section.figures[key] = plots.save_figure(fig, self.figures_dir / section.name / key)
        return fig

    def plot_data(self, section: Section, name: str, data: pd.DataFrame) -> None:
        """A CSV for ``dvc plots`` beside the section's figures (a declared output of its stage)."""
        folder = self.figures_dir / section.name
        folder.mkdir(parents=True, exist_ok=True)
        write_csv(data, folder / f"{name}.csv")

    def finish(self, section: Section) -> Section:
        """Write the metrics JSON, and the section's note (if any) where its tables and figures go.

        The folders always exist afterwards: they are DVC outputs, even when a section has no
        figure to draw.
        """
        for folder in (self.tables_dir, self.figures_dir):
            (folder / section.name).mkdir(parents=True, exist_ok=True)
            note = folder / section.name / "NOTE.md"
            if section.note:
                atomic_write_text(note, f"# {section.title}\n\n{section.note}\n")
            else:
                note.unlink(missing_ok=True)  # from an earlier run with less data
            caveat = folder / section.name / CAVEAT_FILE
            if self.run_caveat and not section.unavailable:
                atomic_write_text(caveat, f"{self.run_caveat}\n")
            else:
                caveat.unlink(missing_ok=True)
        self._write_claims(section)
        self.metrics_dir.mkdir(parents=True, exist_ok=True)
        section.metrics = headline(self.main_model, section.ranking, section.claims, status(section),
                                   small_run=self.run_caveat is not None and not section.unavailable)
        atomic_write_text(self.metrics_dir / f"{section.name}.json", json.dumps(section.metrics, indent=2) + "\n")
        return section

    def _write_claims(self, section: Section) -> None:
        """claims.md (the notebook's claims cell) and claims.csv beside the section's tables."""
        folder = self.tables_dir / section.name
        if not section.claims:
            for name in (CLAIMS_FILE, CLAIMS_TABLE):
                (folder / name).unlink(missing_ok=True)
            return
        caveat = self.run_caveat if not section.unavailable else None
        atomic_write_text(folder / CLAIMS_FILE,
                          f"# {section.title}: the paper's claims and our verdicts\n\n"
                          f"{claims_markdown(section.claims, caveat)}\n")
        write_csv(claims_table(section.claims), folder / CLAIMS_TABLE)


def make_context(
    params: Params,
    analysis_dir: str | os.PathLike = "results/analysis",
    results_dir: str | os.PathLike = "results",
    correctness_dir: str | os.PathLike | None = None,
) -> Context:
    results = Path(results_dir)
    return Context(params, Path(analysis_dir), results / "tables", results / "figures", results / "metrics",
                   Path(correctness_dir) if correctness_dir is not None else results / "correctness")


def _number(value: Any) -> float | None:
    """A JSON number, or ``None`` for a missing value (``null`` in the metrics file)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else round(value, 4)


def status(section: Section) -> str:
    """One word for `dvc metrics show`: the note itself is too long for a table column."""
    return "empty" if section.unavailable else "partial" if section.note else "complete"


def headline(task_model: str | None, ranking: pd.DataFrame | None, claims: list[Claim], state: str,
             small_run: bool = False) -> dict:
    """The metrics every section writes: :data:`METRIC_KEYS`, ``None`` where a key does not apply.

    ``small_n`` is True when the best AUC or |SRCC| shown is flagged, or the whole run is a
    demo or too small for findings (``small_run``): `dvc metrics show` must not headline
    an AUC of 1.0 from two test images without saying so.
    """
    out: dict[str, Any] = dict.fromkeys(METRIC_KEYS)
    out.update(task_model=task_model, status=state,
               claims_checked=sum(c.tested for c in claims),
               claims_holding=sum(c.verdict == HOLDS for c in claims))
    flags = [True] if small_run else []
    if ranking is not None and not ranking.empty:
        for stat in ("auc", "srcc"):
            if stat in ranking.columns and ranking[stat].notna().any():
                best = ranking.loc[ranking[stat].idxmax()]
                flag = best.get(f"small_n_{stat}")
                if flag is not None:
                    flags.append(tables.is_flagged(flag))
                out[f"best_{stat}_metric"] = str(best["metric"])
                out[f"best_{stat}"] = _number(best[stat])
                out[f"paper_{stat}"] = _number(best.get(f"paper_{stat}"))
    out["small_n"] = any(flags) if flags else None
    return out


def _ranking(rows: pd.DataFrame, metric: pd.Series, auc: str = "auc") -> pd.DataFrame:
    """Rows for :func:`headline`: one per (scorer, Q), with ours and the paper's numbers."""
    out = pd.DataFrame({"metric": metric, "auc": rows[auc]})
    for col in ("srcc", "paper_auc", "paper_srcc"):
        out[col] = rows[col] if col in rows.columns else float("nan")
    flag = next((c for c in ("small_n_auc", "small_n") if c in rows.columns), None)
    out["small_n_auc"] = rows[flag].to_numpy() if flag else None
    out["small_n_srcc"] = rows["small_n_corr"].to_numpy() if "small_n_corr" in rows.columns else None
    return out.reset_index(drop=True)


# --- evidence for the verdicts (rules: iqa_lib.analysis.inference) ---------------------------


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _auc_estimates(rows: pd.DataFrame, label: Any) -> list[Estimate]:
    """Each row's AUC with its interval and test images (``label``: row -> words)."""
    return [Estimate(label(r), _num(r.get("auc")), _num(r.get("auc_ci_low")), _num(r.get("auc_ci_high")),
                     f"{_int_text(r.get('n_test_images'))} test images", tables.is_flagged(r.get("small_n_auc")))
            for _, r in rows.iterrows()]


def _srcc_estimates(rows: pd.DataFrame, label: Any) -> list[Estimate]:
    """Each row's |SRCC| over groups with its interval, number of groups and images in the smallest group."""
    return [Estimate(label(r), _num(r.get("srcc")), _num(r.get("srcc_ci_low")), _num(r.get("srcc_ci_high")),
                     tables.group_count_text(r.get("n_groups"), r.get("min_group_images"), "groups"),
                     tables.is_flagged(r.get("small_n_corr")))
            for _, r in rows.iterrows() if pd.notna(r.get("srcc"))]


def _mean_estimates(rows: pd.DataFrame, label: Any, unit: str) -> list[Estimate]:
    """Cross-validated means (per label, per image ID) with a t interval over the scored groups."""
    out = []
    for _, r in rows.iterrows():
        n = _num(r.get("n_groups_scored"))
        low, high = mean_interval(_num(r.get("mean_auc")), _num(r.get("sd_auc")), n)
        out.append(Estimate(label(r), _num(r.get("mean_auc")), low, high, f"{_int_text(n)} {unit}",
                            tables.is_flagged(r.get("small_n"))))
    return out


def _int_text(value: Any) -> str:
    v = _num(value)
    return str(int(v)) if math.isfinite(v) else "?"


def _paired(pairs: pd.DataFrame | None, model: str, better: tuple[str, str], worse: tuple[str, str],
            label: str) -> Comparison | None:
    """The paired AUC test of ``better`` against ``worse`` for ``model`` from :meth:`Context.pairs_within`."""
    if pairs is None or pairs.empty:
        return None
    a = list(zip(pairs["scorer_a"], pairs["q_a"], strict=True))
    b = list(zip(pairs["scorer_b"], pairs["q_b"], strict=True))
    for i, (pa, pb) in enumerate(zip(a, b, strict=True)):
        if pairs["task_model"].iloc[i] != model or {pa, pb} != {better, worse}:
            continue
        r = pairs.iloc[i]
        hi, lo = (r["auc_a"], r["auc_b"]) if pa == better else (r["auc_b"], r["auc_a"])
        return Comparison(label, _num(hi), _num(lo), _num(r.get("delong_p_holm_table")),
                          tables.is_flagged(r.get("auc_test_valid")),
                          f"{_int_text(r.get('n_test_images'))} test images", "clustered DeLong, Holm")
    return None


def _untested(label: str, better: float, worse: float) -> Comparison:
    """A comparison with no paired test (none was computed): it can never decide."""
    return Comparison(label, better, worse, float("nan"), True, "", "paired test")


def _member_rows(frame: pd.DataFrame, m_col: str, scorer_col: str) -> pd.DataFrame:
    return frame.rename(columns={m_col: "task_model", scorer_col: "scorer"})[["task_model", "scorer", "q"]]


def _label(scorer: str, q: str) -> str:
    return scorer if q == "q" else f"{scorer}.{q}"


def _span(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "none"
    return f"{values.min():.3f}" if len(values) == 1 else f"{values.min():.3f}-{values.max():.3f}"


def _why_unavailable(ctx: Context, name: str) -> str | None:
    if name == "section4_nr_iqa" and not ctx.scorers_of("nr_iqa"):
        return "No no-reference IQA scorer is configured (scorers with spec tv, brisque or pyiqa:<metric>)."
    if name == "section5_strong_tg" and not ctx.scorers_of("classifier"):
        return "No classifier is configured, so there is no strong task-guided Q."
    if name == "section6_zsclip" and not ctx.scorers_of("zero_shot"):
        return ("No zero-shot CLIP scorer is configured (spec open_clip:<arch>/<pretrained>). CLIP weights "
                "are not on PyPI, so the offline default profile has none; the paper profile does.")
    if name == "section6_3_mixtures" and "mixtures" in ctx.skipped:
        return f"Not computed: {ctx.skipped['mixtures']}."
    return None


def new_section(ctx: Context, name: str) -> Section:
    """A section to fill cell by cell; marked unavailable (with why) when its scorers are missing."""
    section = Section(name, TITLES[name])
    why = _why_unavailable(ctx, name)
    if why:
        section.note, section.unavailable = why, True
    return section


def finish(ctx: Context, section: Section) -> dict:
    """Write the section's metrics and note; return the metrics (what `dvc metrics show` lists)."""
    return ctx.finish(section).metrics


def show_table(section: Section, key: str):
    """The table as Markdown for a notebook cell (ours with CIs, the paper's value beside)."""
    from IPython.display import Markdown

    return Markdown(section.markdown.get(key, f"_({key}: nothing to show; {section.note})_"))


def show_claims(claims: list[Claim], ctx: Context | None = None):
    """The paper's claims with our verdicts, as Markdown for a notebook cell.

    With ``ctx``, the run's caveat (a demo, or too small for findings) comes first, and the
    verdict rules close the cell.
    """
    from IPython.display import Markdown

    return Markdown(claims_markdown(claims, ctx.run_caveat if ctx is not None else None))


def claims_markdown(claims: list[Claim], caveat: str | None = None) -> str:
    """The claims cell's text: the run's caveat, each verdict with its evidence, the rules."""
    lines = [f"> {caveat}", ""] if caveat else []
    lines += [c.markdown() for c in claims] or ["_No claim of this section can be tested with the configured scorers._"]
    if claims:
        lines += ["", f"_{VERDICT_RULE_TEXT}_"]
    return "\n".join(lines)


def claims_table(claims: list[Claim]) -> pd.DataFrame:
    """One row per claim: what a script or a README quotes without parsing the notebook."""
    return pd.DataFrame(
        [{"claim": c.text, "verdict": c.verdict, "evidence": c.evidence, "reason": c.reason,
          "small_n": c.small_n or "", "comparison": c.comparison or ""} for c in claims],
        columns=["claim", "verdict", "evidence", "reason", "small_n", "comparison"])


def _first_three(models: list[str]) -> list[tuple[int, str]]:
    """Figure numbers for per-model figures: the paper has three task models."""
    return list(enumerate(models[:3]))


def _model_file(number: int, index: int, model: str) -> str:
    return f"fig{number + index:02d}_{model}"


def _qs_text(variants: tuple[str, ...] = TASK_QS) -> str:
    return ", ".join(plots.Q_SHORT.get(q, q) for q in variants)


# --- Section 4: no-reference IQA (Table 1; Figures 3, 11-13) ---------------------------------


def table1_nr_iqa(ctx: Context, sec: Section) -> pd.DataFrame | None:
    """Table 1: every no-reference IQA scorer against every task model."""
    if sec.unavailable:
        return None
    summary = ctx.read("summary")
    summary = summary[summary["task_model"].isin(ctx.task_models) & summary["scorer"].isin(ctx.scorers_of("nr_iqa"))]
    t1 = ctx.write_table(sec, "table1_nr_iqa", ctx.with_significance(tables.table1(summary, ctx.paper_names)), tables.TABLE_TITLES[1])
    main = t1[t1["task_model"] == ctx.main_model]
    sec.ranking = _ranking(main, main["scorer"])
    return t1


def _main_nr(ctx: Context) -> str:
    nr = ctx.scorers_of("nr_iqa")
    return next((n for n in nr if ctx.paper_names.get(n) == "CLIP-IQA"), nr[0])


def figure3(ctx: Context, sec: Section, means: pd.DataFrame | None):
    """Figure 3: the main task model's accuracy against the main no-reference metric."""
    if means is None or not ctx.groupwise_note(sec):
        return None
    model, nr = ctx.main_model, _main_nr(ctx)
    ctx.plot_data(sec, "accuracy_vs_nr_iqa", plots.group_points(means, model, nr, "q"))
    fig = plots.scatter_accuracy_vs_q(means, model, nr, "q").figure
    return ctx.save(sec, f"fig03_{model}_vs_{nr}", fig)


def figures11_13(ctx: Context, sec: Section, means: pd.DataFrame | None) -> list:
    """Figures 11-13: each task model's accuracy against every no-reference metric."""
    if means is None or not ctx.groupwise_note(sec):
        return []
    nr = ctx.scorers_of("nr_iqa")
    return [
        ctx.save(sec, _model_file(11, i, model), plots.scatter_grid(
            means, model, [(s, "q") for s in nr],
            title=f"Accuracy of {model} vs mean no-reference IQA ({', '.join(nr)}), one point per group"))
        for i, model in _first_three(ctx.task_models)
    ]


def claims_section4(ctx: Context, sec: Section, t1: pd.DataFrame | None) -> list[Claim]:
    """Section 4's claims: no-reference IQA is a poor predictor, point-wise and group-wise."""
    if t1 is None or t1.empty:
        return sec.claims
    who = lambda r: f"{r['scorer']} for {r['task_model']}"  # noqa: E731
    srcc = _srcc_estimates(t1, who)
    sec.claims = [
        Claim.judged(f"No-reference IQA barely predicts whether a classifier is right: point-wise AUC 0.48-0.60 "
                     f"in Table 1 (verdict: every AUC interval below {NEAR_CHANCE_AUC}).",
                     threshold_verdict(_auc_estimates(t1, who), NEAR_CHANCE_AUC, "below", "AUC")),
        Claim.judged(f"Group-wise, no-reference IQA tracks accuracy only weakly: |SRCC| at most 0.43 in Table 1 "
                     f"(verdict: every |SRCC| interval below {WEAK_SRCC}).",
                     threshold_verdict(srcc, WEAK_SRCC, "below", "|SRCC|") if srcc else
                     Verdict(NOT_TESTED, "too few groups for a correlation", "no group-wise numbers")),
    ]
    caution(sec.claims[0], t1, "small_n_auc")
    caution(sec.claims[1], t1, "small_n_corr")
    return sec.claims


def section4_nr_iqa(ctx: Context) -> Section:
    """Section 4: no-reference IQA (Table 1; Figures 3, 11-13)."""
    sec = new_section(ctx, "section4_nr_iqa")
    t1 = table1_nr_iqa(ctx, sec)
    means = ctx.group_means(sec)
    figure3(ctx, sec, means)
    figures11_13(ctx, sec, means)
    claims_section4(ctx, sec, t1)
    return ctx.finish(sec)


# --- Section 5: strong task-guided Q (Tables 2 and 4; Figures 5, 14-16) -----------------------


def strong_tg_pairs(ctx: Context, sec: Section) -> pd.DataFrame | None:
    """Every (Q from classifier A, M from classifier B) row of the analysis, for Tables 2 and 4."""
    if sec.unavailable:
        return None
    pairs = ctx.read("pairs")
    return pairs[pairs["m_model"].isin(ctx.task_models) & pairs["q_model"].isin(ctx.scorers_of("classifier"))]


TASK_MODEL_COLUMNS = {  # summary.json key -> column of the task models' table
    "clean_top1": "clean top-1",
    "corrupted_top1": "corrupted top-1",
    "mce": "mCE",
    "relative_mce": "relative mCE",
    "ece_clean": "ECE clean",
    "ece_corrupted": "ECE corrupted",
}


def task_models_table(ctx: Context, sec: Section) -> pd.DataFrame | None:
    """Each task model's accuracy, ImageNet-C mCE and calibration, as its correctness stage wrote them.

    What every robustness paper quotes, to place the models before their confidence is used
    as Q; read from ``results/correctness/<model>/summary.json``, not recomputed.
    """
    if sec.unavailable:
        return None
    rows = []
    for model in ctx.task_models:
        summary = ctx.correctness_summary(model)
        row = {"task_model": model}
        for key, column in TASK_MODEL_COLUMNS.items():
            entry = summary.get(key) or {}
            row[column] = entry.get("value")
            row[f"n ({column})"] = entry.get("n")
        rows.append(row)
    table = pd.DataFrame(rows)
    title = ("The task models: top-1 accuracy, ImageNet-C mCE (AlexNet-normalised) and ECE of Q_p "
             "(from results/correctness)")
    shown = table[["task_model", *TASK_MODEL_COLUMNS.values()]]
    text = f"### {title}\n\n" + shown.to_markdown(index=False, floatfmt=".3f", missingval="") + "\n"
    return ctx.write_table(sec, "task_models", table, title, markdown=text)


def table2_strong_tg(ctx: Context, sec: Section, pairs: pd.DataFrame | None) -> pd.DataFrame | None:
    """Table 2: Q and M from the same classifier."""
    if pairs is None:
        return None
    return ctx.write_table(sec, "table2_strong_tg_same_model", ctx.with_significance(tables.table2(pairs, ctx.paper_names), "m_model", "q_model"),
                           tables.TABLE_TITLES[2])


def table4_strong_tg(ctx: Context, sec: Section, pairs: pd.DataFrame | None) -> pd.DataFrame | None:
    """Table 4: Q from classifier A, M from classifier B, every pair."""
    if pairs is None:
        return None
    t4 = ctx.write_table(sec, "table4_strong_tg_pairs", ctx.with_significance(tables.table4(pairs, ctx.paper_names), "m_model", "q_model"),
                         tables.TABLE_TITLES[4])
    main = t4[t4["m_model"] == ctx.main_model]
    sec.ranking = _ranking(main, main["q_model"] + "." + main["q"])
    return t4


def figure5(ctx: Context, sec: Section, means: pd.DataFrame | None):
    """Figure 5: the main task model's accuracy against another classifier's Q_l."""
    others = [c for c in ctx.scorers_of("classifier") if c != ctx.main_model]
    if means is None or not others or not ctx.groupwise_note(sec):
        return None
    q_model = next((c for c in others if ctx.paper_names.get(c) == "swin_b"), others[0])
    fig = plots.scatter_accuracy_vs_q(means, ctx.main_model, q_model, "q_l").figure
    return ctx.save(sec, f"fig05_{ctx.main_model}_vs_{q_model}_q_l", fig)


def figure14_title(model: str, sources: list[str]) -> str:
    """What Figures 14-16 plot: other classifiers' confidence, or the model's own when it is alone."""
    if sources == [model]:
        return f"Accuracy of {model} vs its own confidence ({_qs_text()}): no other classifier is configured"
    whose = "the other classifier" if len(sources) == 1 else "the other classifiers"
    return f"Accuracy of {model} vs the confidence ({_qs_text()}) of {whose}: {', '.join(sources)}"


def figures14_16(ctx: Context, sec: Section, means: pd.DataFrame | None) -> list:
    """Figures 14-16: each task model's accuracy against the other classifiers' Q_h, Q_l, Q_p."""
    if means is None or not ctx.groupwise_note(sec):
        return []
    classifiers = ctx.scorers_of("classifier")
    figures = []
    for i, model in _first_three(ctx.task_models):
        sources = [c for c in classifiers if c != model] or [model]
        panels = [(c, q) for q in TASK_QS for c in sources]
        fig = plots.scatter_grid(means, model, panels, ncols=len(sources), title=figure14_title(model, sources))
        figures.append(ctx.save(sec, _model_file(14, i, model), fig))
    return figures


def claims_section5(ctx: Context, sec: Section, t2: pd.DataFrame | None, t4: pd.DataFrame | None) -> list[Claim]:
    """Section 5's claims: own confidence predicts correctness; Q_p is best; own beats another's."""
    if t2 is None or t2.empty:
        return sec.claims
    own_label = lambda r: f"{r['m_model']} {r['q']}"  # noqa: E731
    claims = [Claim.judged(
        f"A classifier's own confidence predicts its correctness: Table 2 AUC 0.73-0.85 "
        f"(verdict: every same-model AUC interval at least {GOOD_AUC}).",
        threshold_verdict(_auc_estimates(t2, own_label), GOOD_AUC, "at_least", "AUC"))]
    # Q_p against Q_h and Q_l of the same model, by the paired test within Table 2
    pairs2 = ctx.pairs_within(_member_rows(t2, "m_model", "q_model"))
    comparisons = []
    for model, rows in t2.groupby("m_model", sort=False):
        auc = dict(zip(rows["q"], rows["auc"], strict=True))
        if "q_p" not in auc:
            continue
        for other in ("q_h", "q_l"):
            if other in auc:
                label = f"{model}: q_p vs {other}"
                comparisons.append(_paired(pairs2, model, (model, "q_p"), (model, other), label)
                                   or _untested(label, _num(auc["q_p"]), _num(auc[other])))
    claims.append(Claim.judged(
        "Q_p (max probability) is the best of Q_p, Q_h, Q_l for the same model (Table 2, all three models; "
        "verdict: Q_p significantly above Q_h and Q_l for every model, by the paired test).",
        comparison_verdict(comparisons) if comparisons else Verdict(NOT_TESTED, "no Q_p", "none")))
    other = t4[~t4["same_model"]] if t4 is not None else pd.DataFrame()
    text = ("Confidence from the same model beats confidence from any other model point-wise (Table 4: "
            "0.826 vs 0.791 for ConvNeXt-B, 0.850 vs 0.801 for ResNet-34, 0.807 vs 0.791 for Swin-B; "
            "verdict: the model's best own Q significantly above the best other model's Q, for every model).")
    if other.empty or other["auc"].isna().all():
        claims.append(Claim(text, NOT_TESTED, "only one classifier is configured"))
    else:
        pairs4 = ctx.pairs_within(_member_rows(t4, "m_model", "q_model"))
        comparisons = []
        for model, rows in t4.dropna(subset=["auc"]).groupby("m_model", sort=False):
            own, others = rows[rows["same_model"]], rows[~rows["same_model"]]
            if own.empty or others.empty:
                continue
            a, b = own.loc[own["auc"].idxmax()], others.loc[others["auc"].idxmax()]
            label = f"{model}: own {a['q']} vs {b['q_model']} {b['q']}"
            comparisons.append(_paired(pairs4, model, (a["q_model"], a["q"]), (b["q_model"], b["q"]), label)
                               or _untested(label, _num(a["auc"]), _num(b["auc"])))
        claims.append(Claim.judged(text, comparison_verdict(comparisons) if comparisons
                                   else Verdict(NOT_TESTED, "no model with both own and other Q", "none")))
    sec.claims = claims
    caution(claims[0], t2, "small_n_auc")
    caution(claims[1], t2, "small_n_auc")
    caution(claims[2], t4, "small_n_auc")
    return claims


def section5_strong_task_guided(ctx: Context) -> Section:
    """Section 5: Q from a classifier's confidence (Tables 2 and 4; Figures 5, 14-16)."""
    sec = new_section(ctx, "section5_strong_tg")
    task_models_table(ctx, sec)
    pairs = strong_tg_pairs(ctx, sec)
    t2 = table2_strong_tg(ctx, sec, pairs)
    t4 = table4_strong_tg(ctx, sec, pairs)
    means = ctx.group_means(sec)
    figure5(ctx, sec, means)
    figures14_16(ctx, sec, means)
    claims_section5(ctx, sec, t2, t4)
    return ctx.finish(sec)


# --- Section 6: ZSCLIP-IQA (Table 3; Figures 7, 17-19) -------------------------------------------


def table3_zsclip(ctx: Context, sec: Section) -> pd.DataFrame | None:
    """Table 3: ZSCLIP-IQA's Q_p, Q_h, Q_l against every task model."""
    if sec.unavailable:
        return None
    summary = ctx.read("summary")
    summary = summary[summary["task_model"].isin(ctx.task_models) & summary["scorer"].isin(ctx.scorers_of("zero_shot"))]
    t3 = ctx.write_table(sec, "table3_zsclip", ctx.with_significance(tables.table3(summary, ctx.paper_names)), tables.TABLE_TITLES[3])
    main = t3[t3["task_model"] == ctx.main_model]
    sec.ranking = _ranking(main, main["scorer"] + "." + main["q"])
    return t3


def figure7(ctx: Context, sec: Section, means: pd.DataFrame | None):
    """Figure 7: the main task model's accuracy against ZSCLIP-IQA's Q_l."""
    if means is None or not ctx.groupwise_note(sec):
        return None
    z = ctx.scorers_of("zero_shot")[0]
    fig = plots.scatter_accuracy_vs_q(means, ctx.main_model, z, "q_l").figure
    return ctx.save(sec, f"fig07_{ctx.main_model}_vs_{z}_q_l", fig)


def figures17_19(ctx: Context, sec: Section, means: pd.DataFrame | None) -> list:
    """Figures 17-19: each task model's accuracy against ZSCLIP-IQA's Q_h, Q_l, Q_p."""
    if means is None or not ctx.groupwise_note(sec):
        return []
    z = ctx.scorers_of("zero_shot")[0]
    return [
        ctx.save(sec, _model_file(17, i, model), plots.scatter_grid(
            means, model, [(z, q) for q in TASK_QS], title=f"Accuracy of {model} vs ZSCLIP-IQA ({z}): {_qs_text()}"))
        for i, model in _first_three(ctx.task_models)
    ]


def claims_section6(ctx: Context, sec: Section, t3: pd.DataFrame | None) -> list[Claim]:
    """Section 6's claims: ZSCLIP-IQA's Q_l beats no-reference IQA; it tracks group accuracy."""
    if t3 is None or t3.empty:
        return sec.claims
    summary = ctx.read("summary")
    nr = summary[(summary["kind"] == "nr_iqa") & summary["task_model"].isin(t3["task_model"])]
    q_l = t3[t3["q"] == "q_l"].dropna(subset=["auc"])
    text = ("ZSCLIP-IQA's Q_l predicts correctness point-wise better than any no-reference IQA metric "
            "(Tables 1 and 3: AUC 0.67-0.69 vs at most 0.60; verdict: Q_l significantly above every "
            "no-reference metric, by the paired test, for every task model).")
    if nr.empty or q_l.empty:
        first = Claim(text, NOT_TESTED, "no no-reference IQA scorer to compare with")
    else:
        members = pd.concat([q_l[["task_model", "scorer", "q"]], nr[["task_model", "scorer", "q"]]])
        pairs = ctx.pairs_within(members)
        comparisons = []
        for r in q_l.itertuples(index=False):
            for n in nr[nr["task_model"] == r.task_model].itertuples(index=False):
                label = f"{r.task_model}: {r.scorer} q_l vs {n.scorer}"
                comparisons.append(_paired(pairs, r.task_model, (r.scorer, "q_l"), (n.scorer, n.q), label)
                                   or _untested(label, _num(r.auc), _num(n.auc)))
        first = Claim.judged(text, comparison_verdict(comparisons))
    srcc = _srcc_estimates(t3, lambda r: f"{r['scorer']} {r['q']} for {r['task_model']}")
    sec.claims = [
        first,
        Claim.judged(f"Group-wise, ZSCLIP-IQA tracks accuracy closely: |SRCC| 0.74-0.96 in Table 3 "
                     f"(verdict: every |SRCC| interval at least {STRONG_SRCC}).",
                     threshold_verdict(srcc, STRONG_SRCC, "at_least", "|SRCC|") if srcc else
                     Verdict(NOT_TESTED, "too few groups for a correlation", "no group-wise numbers")),
    ]
    caution(sec.claims[0], t3, "small_n_auc")
    caution(sec.claims[1], t3, "small_n_corr")
    return sec.claims


def section6_zsclip(ctx: Context) -> Section:
    """Section 6: ZSCLIP-IQA (Table 3; Figures 7, 17-19)."""
    sec = new_section(ctx, "section6_zsclip")
    t3 = table3_zsclip(ctx, sec)
    means = ctx.group_means(sec)
    figure7(ctx, sec, means)
    figures17_19(ctx, sec, means)
    claims_section6(ctx, sec, t3)
    return ctx.finish(sec)


# --- Appendix G: content control (Figure 20) -----------------------------------------------------


def _content_summary(table: pd.DataFrame, level: str) -> pd.DataFrame:
    cols = ["task_model", "scorer", "q", "kind", "n_groups", "n_groups_scored", "n_groups_constant_m",
            "mean_auc", "sd_auc", "mean_ce", "sd_ce"]
    return table[[c for c in cols if c in table.columns]].assign(level=level)


def content_tables(ctx: Context, sec: Section, per_image: pd.DataFrame, per_label: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Mean AUC and CE of the logistic model fitted per image ID and per label (5-fold CV)."""
    out = {}
    for key, table, level in (("content_per_image", per_image, "image_id"), ("content_per_label", per_label, "label")):
        table = table[table["task_model"].isin(ctx.task_models)]
        out[key] = ctx.write_table(sec, key, _content_summary(table, level),
                                   f"5-fold CV logistic regression per {level}: mean AUC and CE (sd across groups)")
    ref = paper_text_values()["per_label_nr_iqa"]
    sec.markdown["paper"] = (
        f"Paper (section 4.2, no-reference IQA, per label): mAUC {ref['mauc']} (sd {ref['mauc_sd']}), "
        f"mCE {ref['mce']} (sd {ref['mce_sd']})."
    )
    for level, table in (("per_label", per_label), ("per_image", per_image)):  # per label where it was fitted
        main = table[(table["task_model"] == ctx.main_model) & (table["scorer"] != ctx.main_model)]
        if main["mean_auc"].notna().any():
            labels = [f"{level}:{_label(s, q)}" for s, q in zip(main["scorer"], main["q"], strict=True)]
            sec.ranking = _ranking(main, labels, "mean_auc")
            break
    return out


def figure20(ctx: Context, sec: Section, per_image: pd.DataFrame, per_label: pd.DataFrame) -> list:
    """Figure 20, one per task model: mean AUC per metric, (a) per image ID and (b) per label."""
    import matplotlib.pyplot as plt

    figures = []
    for model in ctx.task_models:
        fig, axes = plt.subplots(1, 2, figsize=(12, 0.32 * max(len(per_image["scorer"].unique()) * 2, 6) + 1.5))
        plots.bar_mean_auc(per_image, model, ax=axes[0], title="(a) per image ID (clean + corrupted variants)")
        plots.bar_mean_auc(per_label, model, ax=axes[1], title="(b) per label")
        fig.suptitle(f"Content held fixed: mean 5-fold CV AUC of each Q for the correctness of {model}")
        fig.tight_layout()
        figures.append(ctx.save(sec, f"fig20_{model}", fig))
    return figures


def _confidence_beside(table: pd.DataFrame, models: list[str], unit: str) -> str | None:
    """The task models' own (and other classifiers') confidence on the same control: numbers beside
    a claim about quality metrics, which the claim is not about."""
    rows = table[table["task_model"].isin(models) & (table["kind"] == "classifier")].dropna(subset=["mean_auc"])
    if rows.empty:
        return None
    parts = []
    for r in rows.itertuples(index=False):
        whose = "own" if r.scorer == r.task_model else r.scorer
        low, high = mean_interval(_num(r.mean_auc), _num(r.sd_auc), _num(r.n_groups_scored))
        interval = f" [{low:.3f}, {high:.3f}]" if math.isfinite(low) else ""
        parts.append(f"{r.task_model} {whose} {r.q} {r.mean_auc:.3f}{interval}")
    return f"classifier confidence, mean AUC per {unit}: " + "; ".join(parts[:9]) + (
        f"; and {len(parts) - 9} more" if len(parts) > 9 else "") + "."


def claims_appendix_g(ctx: Context, sec: Section, per_label: pd.DataFrame,
                      per_image: pd.DataFrame | None = None) -> list[Claim]:
    """Appendix G's claims: with the label, or the image, held fixed, no-reference IQA stays weak.

    The task models' confidence on the same control is shown beside each claim, as the
    comparison it is: the claims are about quality metrics.
    """
    ref = paper_text_values()["per_label_nr_iqa"]
    label = lambda r: f"{r['scorer']} for {r['task_model']}"  # noqa: E731
    claims = []
    for level, table, unit, text in (
        ("label", per_label, "labels",
         f"With the label held fixed, no-reference IQA stays near chance: mean AUC {ref['mauc']} "
         f"(sd {ref['mauc_sd']}) over {ref['labels']} labels (verdict: every per-label mean AUC interval "
         f"below {NEAR_CHANCE_AUC})."),
        ("image", per_image, "image IDs",
         "With the image held fixed (its clean and corrupted variants, Figure 20a), no-reference IQA stays a "
         f"weak predictor (verdict: every per-image-ID mean AUC interval below {NEAR_CHANCE_AUC})."),
    ):
        if table is None:
            continue
        rows = table[table["task_model"].isin(ctx.task_models) & (table["kind"] == "nr_iqa")]
        rows = rows.dropna(subset=["mean_auc"])
        estimates = _mean_estimates(rows, label, unit)
        verdict = (threshold_verdict(estimates, NEAR_CHANCE_AUC, "below", "mean AUC") if estimates else
                   Verdict(NOT_TESTED, f"no no-reference IQA scorer with a per-{level} fit", "none"))
        claim = Claim.judged(text, verdict, comparison=_confidence_beside(table, ctx.task_models, unit))
        claims.append(caution(claim, rows, "small_n"))
    sec.claims = claims
    return claims


def appendix_g_content(ctx: Context) -> Section:
    """Appendix G: content control, per label and per image ID (Figure 20)."""
    sec = new_section(ctx, "appendix_g_content")
    per_image, per_label = ctx.read("per_image"), ctx.read("per_label")
    content_tables(ctx, sec, per_image, per_label)
    figure20(ctx, sec, per_image, per_label)
    claims_appendix_g(ctx, sec, per_label, per_image)
    return ctx.finish(sec)


# --- Section 6.3: mild-corruption mixtures (Figures 21-22) ---------------------------------------


def mixtures_table(ctx: Context, sec: Section, summary: pd.DataFrame | None) -> pd.DataFrame | None:
    """Mean point-wise AUC over the mixtures, per (task model, metric)."""
    if summary is None:
        return None
    summary = ctx.write_table(sec, "mixtures_mean_auc", summary[summary["task_model"].isin(ctx.task_models)],
                              "Mean point-wise AUC over the mixtures p_c = 1%..20%")
    ref = paper_text_values()["mixtures_mauc"]
    sec.markdown["paper"] = f"Paper: mAUC {ref['zsclip_q_l']} for ZSCLIP-IQA Q_l, {ref['clip_iqa']} for CLIP-IQA (the next best)."
    main = summary[summary["task_model"] == ctx.main_model]
    sec.ranking = _ranking(main, [_label(s, q) for s, q in zip(main["scorer"], main["q"], strict=True)], "mean_auc")
    return summary


def _mixture_metrics(summary: pd.DataFrame) -> list[tuple[str, str]]:
    return [(s, q) for s, q in summary[["scorer", "q"]].drop_duplicates().itertuples(index=False)]


def figure21(ctx: Context, sec: Section, histogram: pd.DataFrame | None, summary: pd.DataFrame | None):
    """Figure 21: the distribution of each Q per mixture, coloured by the corrupted fraction."""
    if histogram is None or summary is None:
        return None
    fig = plots.mixture_distributions(histogram, _mixture_metrics(summary))
    return ctx.save(sec, "fig21_mixture_distributions", fig)


def figure22(ctx: Context, sec: Section, auc: pd.DataFrame | None, summary: pd.DataFrame | None):
    """Figure 22: point-wise AUC against the corrupted fraction, per task model."""
    if auc is None or summary is None:
        return None
    main = auc[auc["task_model"] == ctx.main_model].assign(metric=lambda d: d["scorer"] + "." + d["q"])
    ctx.plot_data(sec, "auc_vs_fraction", main.pivot_table(index="p_c", columns="metric", values="auc").reset_index())
    return ctx.save(sec, "fig22_auc_vs_fraction", plots.auc_vs_fraction(auc, ctx.task_models, _mixture_metrics(summary)))


QUALITY_KINDS = ("nr_iqa", "zero_shot")  # what the paper's quality claims are about (not a task model's confidence)


def _mixture_intervals(ctx: Context, summary: pd.DataFrame) -> pd.DataFrame:
    """Per (task model, scorer, q): the mean over mixtures of each mixture's Hanley-McNeil interval
    and SE (one row per image ID in a mixture, so its rows are independent images). The mixtures
    share most of their images, so the mean AUC is about as uncertain as one mixture's AUC."""
    from iqa_lib.stats.hanley_mcneil import hanley_mcneil_interval, hanley_mcneil_se

    keys = ["task_model", "scorer", "q"]
    if not (ctx.analysis_dir / "mixtures_auc.csv").is_file():
        return summary.assign(auc_ci_low=float("nan"), auc_ci_high=float("nan"), auc_se=float("nan"))
    auc = ctx.read("mixtures_auc")
    low, high = hanley_mcneil_interval(auc["auc"], auc["n_test_pos_images"], auc["n_test_neg_images"])
    se = hanley_mcneil_se(auc["auc"], auc["n_test_pos_images"], auc["n_test_neg_images"])
    per = auc[keys].assign(auc_ci_low=low, auc_ci_high=high, auc_se=se).groupby(keys, sort=False).mean()
    return summary.merge(per.reset_index(), on=keys, how="left")


def _mixture_estimates(rows: pd.DataFrame) -> list[Estimate]:
    return [Estimate(f"{_label(r['scorer'], r['q'])} for {r['task_model']}", _num(r["mean_auc"]),
                     _num(r["auc_ci_low"]), _num(r["auc_ci_high"]),
                     f"{int(r['n_mixtures'])} mixtures, at least {_int_text(r.get('n_test_images'))} test images each",
                     tables.is_flagged(r.get("small_n")))
            for _, r in rows.iterrows()]


def claims_mixtures(ctx: Context, sec: Section, summary: pd.DataFrame | None) -> list[Claim]:
    """Section 6.3's claims: mild corruption is hard to detect; ZSCLIP-IQA Q_l beats CLIP-IQA.

    The claims are about quality metrics (no-reference IQA and ZSCLIP-IQA): the task models'
    own confidence is judged apart and shown beside, never counted among the metrics.
    """
    from scipy import stats

    if summary is None or summary["mean_auc"].isna().all():
        return sec.claims
    ref = paper_text_values()["mixtures_mauc"]
    rows = _mixture_intervals(ctx, summary.dropna(subset=["mean_auc"]))
    quality = rows[rows["kind"].isin(QUALITY_KINDS)]
    confidence = rows[~rows["kind"].isin(QUALITY_KINDS)]
    beside = None
    if not confidence.empty:
        beside = "classifier confidence (judged apart: " + "; ".join(
            e.text("mean AUC") for e in _mixture_estimates(confidence)[:9]) + ")."
    text = (f"On mild-corruption mixtures every quality metric is a weak predictor: the best mean AUC is "
            f"{ref['zsclip_q_l']} (verdict: every no-reference and ZSCLIP-IQA mean AUC interval below {GOOD_AUC}).")
    first = (Claim.judged(text, threshold_verdict(_mixture_estimates(quality), GOOD_AUC, "below", "mean AUC"),
                          comparison=beside)
             if not quality.empty else Claim(text, NOT_TESTED, "no quality metric (only task-model confidence)",
                                             comparison=beside))
    names = rows["scorer"].map(ctx.paper_names)
    zs = rows[(names == "zsclip") & (rows["q"] == "q_l")]
    clip = rows[names == "CLIP-IQA"]
    comparisons = []
    for z in zs.itertuples(index=False):
        for c in clip[clip["task_model"] == z.task_model].itertuples(index=False):
            se = math.hypot(_num(z.auc_se), _num(c.auc_se))
            diff = _num(z.mean_auc) - _num(c.mean_auc)
            p = float(2 * stats.norm.sf(abs(diff) / se)) if se > 0 else float("nan")
            comparisons.append(Comparison(
                f"{z.task_model}: {z.scorer} q_l vs {c.scorer}", _num(z.mean_auc), _num(c.mean_auc), p,
                not (tables.is_flagged(z.small_n) or tables.is_flagged(c.small_n)),
                f"{int(z.n_mixtures)} mixtures", "unpaired z on Hanley-McNeil SEs, conservative"))
    second = Claim.judged(
        f"ZSCLIP-IQA's Q_l beats CLIP-IQA on the mixtures ({ref['zsclip_q_l']} vs {ref['clip_iqa']}; verdict: "
        "significantly above for every task model).",
        comparison_verdict(comparisons, "mean AUC") if comparisons else
        Verdict(NOT_TESTED, "ZSCLIP-IQA and CLIP-IQA are not both configured", "ZSCLIP-IQA and CLIP-IQA are not both configured"))
    sec.claims = [caution(first, quality, "small_n"), caution(second, pd.concat([zs, clip]), "small_n")]
    return sec.claims


def section6_3_mixtures(ctx: Context) -> Section:
    """Section 6.3 / Appendix H: mild-corruption mixtures (Figures 21-22)."""
    sec = new_section(ctx, "section6_3_mixtures")
    summary = mixtures_table(ctx, sec, ctx.load(sec, "mixtures_summary"))
    figure21(ctx, sec, ctx.load(sec, "mixtures_histogram"), summary)
    figure22(ctx, sec, ctx.load(sec, "mixtures_auc"), summary)
    claims_mixtures(ctx, sec, summary)
    return ctx.finish(sec)


SECTIONS = {
    "section4_nr_iqa": section4_nr_iqa,
    "section5_strong_tg": section5_strong_task_guided,
    "section6_zsclip": section6_zsclip,
    "appendix_g_content": appendix_g_content,
    "section6_3_mixtures": section6_3_mixtures,
}
