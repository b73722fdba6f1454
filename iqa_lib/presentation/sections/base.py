"""The framework of the paper's sections: a section, its claims, its context, and how it is written.

Each section (one module beside this one, named after its notebook) has one function per
table, per figure and per set of claims. Each reads the tidy tables that ``iqa-kit analyze`` wrote (``results/analysis``)
and the validated parameters, writes Markdown/CSV tables, PNG/PDF figures and a
metrics JSON, and returns what it made (a frame, a figure, a list of claims) so a
notebook cell can show it and a reader can filter the frame and re-plot. The
section notebooks call these functions cell by cell;
:data:`iqa_lib.presentation.sections.SECTIONS` runs a whole section in one call (the
``sections`` stage, tests, scripts). A section whose scorers are not
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

from iqa_lib.analysis.inference import HOLDS, NOT_TESTED, VERDICT_RULE_TEXT, VERDICTS, Verdict
from iqa_lib.analysis.paired import within_table
from iqa_lib.config import Params
from iqa_lib.fileio import atomic_write_text, write_csv
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

    def summary_of(self, kind: str) -> pd.DataFrame:
        """The analysis summary's rows of one kind of scorer (``nr_iqa``, ``zero_shot``) for the task models."""
        summary = self.read("summary")
        return summary[summary["task_model"].isin(self.task_models) & summary["scorer"].isin(self.scorers_of(kind))]

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
    for stat in ("auc", "srcc"):
        best = _best_row(ranking, stat)
        if best is None:
            continue
        flag = best.get(f"small_n_{stat}")
        if flag is not None:
            flags.append(tables.is_flagged(flag))
        out[f"best_{stat}_metric"] = str(best["metric"])
        out[f"best_{stat}"] = _number(best[stat])
        out[f"paper_{stat}"] = _number(best.get(f"paper_{stat}"))
    out["small_n"] = any(flags) if flags else None
    return out


def _best_row(ranking: pd.DataFrame | None, stat: str) -> pd.Series | None:
    """The ranking's row with the highest ``stat``; None when no row has it."""
    if ranking is None or ranking.empty or stat not in ranking.columns or not ranking[stat].notna().any():
        return None
    return ranking.loc[ranking[stat].idxmax()]


def ranking_table(rows: pd.DataFrame, metric: pd.Series, auc: str = "auc") -> pd.DataFrame:
    """A section's ranking for :func:`headline`: one row per (scorer, Q), with ours and the paper's numbers."""
    out = pd.DataFrame({"metric": metric, "auc": rows[auc]})
    for col in ("srcc", "paper_auc", "paper_srcc"):
        out[col] = rows[col] if col in rows.columns else float("nan")
    flag = next((c for c in ("small_n_auc", "small_n") if c in rows.columns), None)
    out["small_n_auc"] = rows[flag].to_numpy() if flag else None
    out["small_n_srcc"] = rows["small_n_corr"].to_numpy() if "small_n_corr" in rows.columns else None
    return out.reset_index(drop=True)


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
    from IPython.display import Markdown  # IPython: only in a notebook cell

    return Markdown(section.markdown.get(key, f"_({key}: nothing to show; {section.note})_"))


def show_claims(claims: list[Claim], ctx: Context | None = None):
    """The paper's claims with our verdicts, as Markdown for a notebook cell.

    With ``ctx``, the run's caveat (a demo, or too small for findings) comes first, and the
    verdict rules close the cell.
    """
    from IPython.display import Markdown  # IPython: only in a notebook cell

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


def first_three(models: list[str]) -> list[tuple[int, str]]:
    """Figure numbers for per-model figures: the paper has three task models."""
    return list(enumerate(models[:3]))


def model_file(number: int, index: int, model: str) -> str:
    return f"fig{number + index:02d}_{model}"


def qs_text(variants: tuple[str, ...] = TASK_QS) -> str:
    return ", ".join(plots.Q_SHORT.get(q, q) for q in variants)


