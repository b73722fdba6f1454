"""One function per paper section: its tables, figures and headline metrics.

Each reads the tidy tables that ``iqa-kit analyze`` wrote (``results/analysis``)
and the validated parameters, writes Markdown/CSV tables, PNG/PDF figures and a
metrics JSON, and returns a :class:`Section` for the notebook to display. A
section whose scorers are not configured returns a short explanation instead of
failing, so the default profile and the paper profile share one pipeline.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from iqa_lib import plots, report
from iqa_lib.config import Params
from iqa_lib.fileio import atomic_write_text, write_csv
from iqa_lib.paper import paper_text_values

PAPER_MAIN_MODEL = "convnext_base"  # the paper's Figures 3, 5 and 7 use ConvNeXt-B
TASK_QS = ("q_h", "q_l", "q_p")  # the paper's row order in Figures 14-19


@dataclass
class Section:
    name: str
    title: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    markdown: dict[str, str] = field(default_factory=dict)
    figures: dict[str, list[Path]] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    note: str | None = None  # why the section is empty or partial, when it is

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
    plots_dir: Path

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

    def read(self, name: str) -> pd.DataFrame:
        path = self.analysis_dir / f"{name}.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run `iqa-kit analyze` (or `dvc repro analyze`) first")
        try:
            return pd.read_csv(path)
        except (ValueError, UnicodeDecodeError) as exc:  # pandas' parser errors are ValueErrors
            raise ValueError(f"{path}: not a readable table ({exc}); rerun `iqa-kit analyze`") from None

    @property
    def kinds(self) -> dict[str, str]:
        return {name: self.params.scorer_spec(name).kind for name in self.params.scorers}

    def scorers_of(self, kind: str) -> list[str]:
        return [n for n, k in self.kinds.items() if k == kind]

    @property
    def task_models(self) -> list[str]:
        return list(self.params.analysis.task_models) or self.scorers_of("classifier")

    @property
    def main_model(self) -> str:
        names = report.paper_names(self.params.scorers)
        for model in self.task_models:
            if names.get(model) == PAPER_MAIN_MODEL:
                return model
        return self.task_models[0]

    @property
    def paper_names(self) -> dict[str, str]:
        return report.paper_names(self.params.scorers)

    def write_table(self, section: Section, key: str, table: pd.DataFrame, title: str) -> None:
        report.write_table(table, self.tables_dir / section.name / key, title)
        section.tables[key] = table
        section.markdown[key] = report.to_markdown(table, title)

    def save(self, section: Section, key: str, fig) -> None:
        section.figures[key] = plots.save_figure(fig, self.figures_dir / section.name / key)

    def plot_data(self, name: str, data: pd.DataFrame) -> None:
        """A CSV for ``dvc plots`` (the figure's data, with fixed column names)."""
        self.plots_dir.mkdir(parents=True, exist_ok=True)
        write_csv(data, self.plots_dir / f"{name}.csv")

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
        self.metrics_dir.mkdir(parents=True, exist_ok=True)
        path = self.metrics_dir / f"{section.name}.json"
        metrics = section.metrics if section.metrics or not section.note else {"note": section.note}
        atomic_write_text(path, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        return section


def make_context(
    params: Params,
    analysis_dir: str | os.PathLike = "results/analysis",
    results_dir: str | os.PathLike = "results",
) -> Context:
    results = Path(results_dir)
    return Context(
        params, Path(analysis_dir), results / "tables", results / "figures", results / "metrics", results / "plots"
    )


def _headline(table: pd.DataFrame, row_keys: list[str]) -> dict:
    """Nested {key1: {key2: {auc, srcc}}} for ``dvc metrics show``: headline numbers only."""
    out: dict = {}
    for _, r in table.iterrows():
        node = out
        for k in row_keys[:-1]:
            node = node.setdefault(str(r[k]), {})
        node[str(r[row_keys[-1]])] = {
            s: round(float(r[s]), 4) for s in ("auc", "srcc") if s in r and pd.notna(r[s])
        }
    return out


def _empty(section: Section, ctx: Context, why: str) -> Section:
    section.note = why
    return ctx.finish(section)


def _first_three(models: list[str]) -> list[tuple[int, str]]:
    """Figure numbers for per-model figures: the paper has three task models."""
    return list(enumerate(models[:3]))


def _model_file(number: int, index: int, model: str) -> str:
    return f"fig{number + index:02d}_{model}"


def section4_nr_iqa(ctx: Context) -> Section:
    """Section 4: no-reference IQA (Table 1; Figures 3, 11-13)."""
    sec = Section("section4_nr_iqa", "Section 4: no-reference IQA metrics")
    nr = ctx.scorers_of("nr_iqa")
    if not nr:
        return _empty(sec, ctx, "No no-reference IQA scorer is configured (scorers with spec tv, brisque or pyiqa:<metric>).")
    summary = ctx.read("summary")
    summary = summary[summary["task_model"].isin(ctx.task_models) & summary["scorer"].isin(nr)]
    t1 = report.table1(summary, ctx.paper_names)
    ctx.write_table(sec, "table1_nr_iqa", t1, report.TABLE_TITLES[1])
    means = ctx.read("groupwise_means")
    main_nr = next((n for n in nr if ctx.paper_names.get(n) == "CLIP-IQA"), nr[0])
    if ctx.groupwise_note(sec):
        ctx.plot_data("accuracy_vs_nr_iqa", plots.group_points(means, ctx.main_model, main_nr, "q"))
        fig = plots.scatter_accuracy_vs_q(means, ctx.main_model, main_nr, "q").figure
        ctx.save(sec, f"fig03_{ctx.main_model}_vs_{main_nr}", fig)
        for i, model in _first_three(ctx.task_models):
            fig = plots.scatter_grid(means, model, [(s, "q") for s in nr], title=f"Accuracy of {model} vs no-reference IQA")
            ctx.save(sec, _model_file(11, i, model), fig)
    sec.metrics = _headline(t1, ["task_model", "scorer"])
    return ctx.finish(sec)


def section5_strong_task_guided(ctx: Context) -> Section:
    """Section 5: Q from a classifier's confidence (Tables 2 and 4; Figures 5, 14-16)."""
    sec = Section("section5_strong_tg", "Section 5: strong task-guided quality (classifier confidence)")
    classifiers = [m for m in ctx.scorers_of("classifier")]
    if not classifiers:
        return _empty(sec, ctx, "No classifier is configured, so there is no strong task-guided Q.")
    pairs = ctx.read("pairs")
    pairs = pairs[pairs["m_model"].isin(ctx.task_models) & pairs["q_model"].isin(classifiers)]
    ctx.write_table(sec, "table2_strong_tg_same_model", report.table2(pairs, ctx.paper_names), report.TABLE_TITLES[2])
    t4 = report.table4(pairs, ctx.paper_names)
    ctx.write_table(sec, "table4_strong_tg_pairs", t4, report.TABLE_TITLES[4])
    means = ctx.read("groupwise_means")
    others = [c for c in classifiers if c != ctx.main_model]
    draw = ctx.groupwise_note(sec)
    if others and draw:
        q_model = next((c for c in others if ctx.paper_names.get(c) == "swin_b"), others[0])
        fig = plots.scatter_accuracy_vs_q(means, ctx.main_model, q_model, "q_l").figure
        ctx.save(sec, f"fig05_{ctx.main_model}_vs_{q_model}_q_l", fig)
    for i, model in _first_three(ctx.task_models) if draw else []:
        sources = [c for c in classifiers if c != model] or [model]
        panels = [(c, q) for q in TASK_QS for c in sources]
        fig = plots.scatter_grid(means, model, panels, ncols=len(sources),
                                 title=f"Accuracy of {model} vs confidence of other classifiers")
        ctx.save(sec, _model_file(14, i, model), fig)
    sec.metrics = _headline(t4[t4["same_model"]], ["m_model", "q"])  # Table 2; all pairs in the tables
    return ctx.finish(sec)


def section6_zsclip(ctx: Context) -> Section:
    """Section 6: ZSCLIP-IQA (Table 3; Figures 7, 17-19)."""
    sec = Section("section6_zsclip", "Section 6: weak task-guided quality (ZSCLIP-IQA)")
    zs = ctx.scorers_of("zero_shot")
    if not zs:
        return _empty(
            sec, ctx,
            "No zero-shot CLIP scorer is configured (spec open_clip:<arch>/<pretrained>). CLIP weights "
            "are not on PyPI, so the offline default profile has none; the paper profile does.",
        )
    summary = ctx.read("summary")
    summary = summary[summary["task_model"].isin(ctx.task_models) & summary["scorer"].isin(zs)]
    t3 = report.table3(summary, ctx.paper_names)
    ctx.write_table(sec, "table3_zsclip", t3, report.TABLE_TITLES[3])
    means = ctx.read("groupwise_means")
    z = zs[0]
    draw = ctx.groupwise_note(sec)
    if draw:
        ctx.save(sec, f"fig07_{ctx.main_model}_vs_{z}_q_l", plots.scatter_accuracy_vs_q(means, ctx.main_model, z, "q_l").figure)
    for i, model in _first_three(ctx.task_models) if draw else []:
        fig = plots.scatter_grid(means, model, [(z, q) for q in TASK_QS], title=f"Accuracy of {model} vs {z}")
        ctx.save(sec, _model_file(17, i, model), fig)
    sec.metrics = _headline(t3, ["task_model", "scorer", "q"])
    return ctx.finish(sec)


def _content_summary(table: pd.DataFrame, level: str) -> pd.DataFrame:
    cols = ["task_model", "scorer", "q", "kind", "n_groups", "n_groups_scored", "n_groups_constant_m",
            "mean_auc", "sd_auc", "mean_ce", "sd_ce"]
    return table[[c for c in cols if c in table.columns]].assign(level=level)


def appendix_g_content(ctx: Context) -> Section:
    """Appendix G: content control, per label and per image ID (Figure 20)."""
    import matplotlib.pyplot as plt

    sec = Section("appendix_g_content", "Appendix G: controlling for content (per label, per image ID)")
    per_image, per_label = ctx.read("per_image"), ctx.read("per_label")
    for key, table, level in (("content_per_image", per_image, "image_id"), ("content_per_label", per_label, "label")):
        table = table[table["task_model"].isin(ctx.task_models)]
        ctx.write_table(sec, key, _content_summary(table, level),
                        f"5-fold CV logistic regression per {level}: mean AUC and CE (sd across groups)")
    ref = paper_text_values()["per_label_nr_iqa"]
    sec.markdown["paper"] = (
        f"Paper (section 4.2, no-reference IQA, per label): mAUC {ref['mauc']} (sd {ref['mauc_sd']}), "
        f"mCE {ref['mce']} (sd {ref['mce_sd']})."
    )
    for model in ctx.task_models:
        fig, axes = plt.subplots(1, 2, figsize=(12, 0.32 * max(len(per_image["scorer"].unique()) * 2, 6) + 1.5))
        plots.bar_mean_auc(per_image, model, ax=axes[0], title="(a) per image ID (clean + corrupted variants)")
        plots.bar_mean_auc(per_label, model, ax=axes[1], title="(b) per label")
        fig.tight_layout()
        ctx.save(sec, f"fig20_{model}", fig)
    sec.metrics = {}
    for level, table in (("per_label", per_label), ("per_image", per_image)):
        rows = table[table["task_model"].isin(ctx.task_models) & table["mean_auc"].notna()]
        for kind, g in rows.groupby("kind"):
            sec.metrics[f"{level}_{kind}_mauc"] = round(float(g["mean_auc"].mean()), 4)
    return ctx.finish(sec)


def section6_3_mixtures(ctx: Context) -> Section:
    """Section 6.3 / Appendix H: mild-corruption mixtures (Figures 21-22)."""
    sec = Section("section6_3_mixtures", "Section 6.3: mild-corruption mixtures")
    if "mixtures" in ctx.skipped:
        return _empty(sec, ctx, f"Not computed: {ctx.skipped['mixtures']}.")
    auc, summary, hist = ctx.read("mixtures_auc"), ctx.read("mixtures_summary"), ctx.read("mixtures_histogram")
    summary = summary[summary["task_model"].isin(ctx.task_models)]
    ref = paper_text_values()["mixtures_mauc"]
    ctx.write_table(sec, "mixtures_mean_auc", summary, "Mean point-wise AUC over the mixtures p_c = 1%..20%")
    sec.markdown["paper"] = f"Paper: mAUC {ref['zsclip_q_l']} for ZSCLIP-IQA Q_l, {ref['clip_iqa']} for CLIP-IQA (the next best)."
    metrics = [(s, q) for s, q in summary[["scorer", "q"]].drop_duplicates().itertuples(index=False)]
    ctx.save(sec, "fig21_mixture_distributions", plots.mixture_distributions(hist, metrics))
    ctx.save(sec, "fig22_auc_vs_fraction", plots.auc_vs_fraction(auc, ctx.task_models, metrics))
    main = auc[auc["task_model"] == ctx.main_model].assign(metric=lambda d: d["scorer"] + "." + d["q"])
    ctx.plot_data("auc_vs_fraction", main.pivot_table(index="p_c", columns="metric", values="auc").reset_index())
    best = summary.dropna(subset=["mean_auc"]).sort_values("mean_auc", ascending=False)
    sec.metrics = {
        m: {f"{s}.{q}": round(float(v), 4) for s, q, v in g[["scorer", "q", "mean_auc"]].head(3).itertuples(index=False)}
        for m, g in best.groupby("task_model")
    }  # the three best metrics per task model; all of them in the table
    return ctx.finish(sec)


SECTIONS = {
    "section4_nr_iqa": section4_nr_iqa,
    "section5_strong_tg": section5_strong_task_guided,
    "section6_zsclip": section6_zsclip,
    "appendix_g_content": appendix_g_content,
    "section6_3_mixtures": section6_3_mixtures,
}
