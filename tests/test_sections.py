"""Section builders on synthetic paper-shaped scores: every table, figure and metric is written."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from iqa_lib.analysis.runner import run_all
from iqa_lib.analysis.synthetic import write_synthetic_scores
from iqa_lib.config import load_params, validate_params
from iqa_lib.pipeline.correctness import write_correctness
from iqa_lib.presentation.sections import SECTIONS
from iqa_lib.presentation.sections.base import METRIC_KEYS, make_context
from iqa_lib.presentation.sections.base import new_section as sections_new
from iqa_lib.presentation.sections.section5_strong_tg import figure14_title
from iqa_lib.presentation.tables import paper_name
from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def paper_like(tmp_path_factory):
    """Synthetic scores named like the paper profile's scorers, analysed once."""
    root = tmp_path_factory.mktemp("paper_like")
    write_synthetic_scores(root / "scores", 60)
    run_all(root / "scores", root / "analysis", n_bootstrap=30, mixture_fractions=[0.1, 0.2],
            progress=False, log=lambda _: None)
    params = load_params(REPO_ROOT / "profiles" / "paper.yaml")
    ctx = make_context(params, root / "analysis", root / "results")
    write_all_correctness(root / "scores", ctx)
    built = {name: build(ctx) for name, build in SECTIONS.items()}
    return ctx, built


def write_all_correctness(scores, ctx):
    """What the correctness@<model> stages write, for the sections to read."""
    for model in ctx.task_models:
        write_correctness(scores, model, ctx.correctness_dir / model, figures=False)


def test_paper_names_only_for_the_papers_setting():
    assert paper_name("pyiqa:clipiqa") == "CLIP-IQA"
    assert paper_name("torchvision:resnet34/IMAGENET1K_V1") == "resnet34"
    assert paper_name("brisque") == "BRISQUE"  # the published BRISQUE, calibrated against MATLAB
    assert paper_name("niqe") is None and paper_name("pyiqa:piqe") is None  # not in the paper
    assert paper_name("efficientnet_lite:lite0") is None


def test_every_section_writes_tables_figures_and_metrics(paper_like):
    ctx, built = paper_like
    for name, section in built.items():
        assert not section.empty and section.note is None, name
        assert any((ctx.tables_dir / name).glob("*.md")), name
        pngs = list((ctx.figures_dir / name).glob("*.png"))
        assert pngs and all(p.with_suffix(".pdf").is_file() for p in pngs), name
        metrics = json.loads((ctx.metrics_dir / f"{name}.json").read_text())
        assert tuple(metrics) == METRIC_KEYS and metrics["best_auc"] is not None, name
    figures = {p.stem.split("_")[0] for p in ctx.figures_dir.rglob("*.png")}
    assert {"fig03", "fig05", "fig07", "fig11", "fig12", "fig13", "fig14", "fig15", "fig16",
            "fig17", "fig18", "fig19", "fig20", "fig21", "fig22"} <= figures
    # what `dvc plots` reads lies in a declared output of the section's stage
    assert (ctx.figures_dir / "section4_nr_iqa" / "accuracy_vs_nr_iqa.csv").is_file()
    assert (ctx.figures_dir / "section6_3_mixtures" / "auc_vs_fraction.csv").is_file()
    # cross-validated and per-mixture tables show mean ± sd, not empty cells
    for name, table in (("section6_3_mixtures", "mixtures_mean_auc"), ("appendix_g_content", "content_per_image")):
        md = (ctx.tables_dir / name / f"{table}.md").read_text()
        assert "mean AUC" in md and " ± " in md, table


def test_paper_values_sit_beside_ours(paper_like):
    ctx, _ = paper_like
    t3 = pd.read_csv(ctx.tables_dir / "section6_zsclip" / "table3_zsclip.csv")
    row = t3[(t3["task_model"] == "resnet34") & (t3["q"] == "q_p")].iloc[0]
    assert row["paper_auc"] == 0.368 and row["paper_srcc"] == 0.959
    t4 = pd.read_csv(ctx.tables_dir / "section5_strong_tg" / "table4_strong_tg_pairs.csv")
    assert len(t4) == 27 and t4["paper_auc"].notna().all()
    t2 = pd.read_csv(ctx.tables_dir / "section5_strong_tg" / "table2_strong_tg_same_model.csv")
    assert (t2["m_model"] == t2["q_model"]).all() and len(t2) == 9
    md = (ctx.tables_dir / "section4_nr_iqa" / "table1_nr_iqa.md").read_text()
    assert "paper AUC" in md and "[" in md  # the paper's column, and our CIs in brackets


def test_unconfigured_section_explains_itself(tmp_path, paper_like):
    params = validate_params({"scorers": {"tv": "tv", "lite0": "efficientnet_lite:lite0"},
                              "analysis": {"task_models": ["lite0"]}})
    ctx = make_context(params, paper_like[0].analysis_dir, tmp_path)
    section = SECTIONS["section6_zsclip"](ctx)
    assert section.empty and "zero-shot" in section.note
    assert (tmp_path / "tables" / "section6_zsclip" / "NOTE.md").is_file()


def test_sections_on_clean_only_data_explain_what_is_missing(tmp_path):
    root = tmp_path
    write_synthetic_scores(root / "scores", 60, corruptions=(), n_labels=4, nr_scorers=("tv",),
                           classifiers=("lite0",), zero_shot=())
    run_all(root / "scores", root / "analysis", n_bootstrap=20, progress=False, log=lambda _: None)
    params = validate_params({"scorers": {"tv": "tv", "lite0": "efficientnet_lite:lite0"},
                              "analysis": {"task_models": ["lite0"]}})
    ctx = make_context(params, root / "analysis", root / "results")
    write_all_correctness(root / "scores", ctx)
    s4 = SECTIONS["section4_nr_iqa"](ctx)
    assert "table1_nr_iqa" in s4.tables and not s4.figures and "at least 3" in s4.note
    # the figure folder is a DVC output: it exists, and says why it has no figure
    assert "at least 3" in (root / "results" / "figures" / "section4_nr_iqa" / "NOTE.md").read_text()
    assert s4.metrics["status"] == "partial" and s4.metrics["best_auc"] is not None
    mixtures = SECTIONS["section6_3_mixtures"](ctx)
    assert mixtures.empty and "clean images and corrupted copies" in mixtures.note
    assert (root / "results" / "tables" / "section6_3_mixtures" / "NOTE.md").is_file()
    content = SECTIONS["appendix_g_content"](ctx)
    assert "content_per_label" in content.tables
    # (the pipeline test runs only the sections it reads as notebooks on clean-only data)
    s5 = SECTIONS["section5_strong_tg"](ctx)
    assert "table2_strong_tg_same_model" in s5.tables and "at least 3" in s5.note
    assert s5.metrics["status"] == "partial" and s5.metrics["best_srcc"] is None
    s6 = SECTIONS["section6_zsclip"](ctx)
    assert s6.empty and "No zero-shot CLIP scorer" in s6.note


def test_every_metrics_file_has_the_same_few_keys(paper_like):
    """`dvc metrics show` is one row per section and at most 12 columns."""
    ctx, built = paper_like
    assert len(METRIC_KEYS) <= 11  # with dvc's Path column: at most 12
    for name, section in built.items():
        metrics = json.loads((ctx.metrics_dir / f"{name}.json").read_text())
        assert tuple(metrics) == METRIC_KEYS, name
        assert all(v is None or isinstance(v, (int, float, str)) for v in metrics.values()), name
        assert metrics["task_model"] == ctx.main_model == "convnext_base"  # as in the paper
        assert metrics["claims_checked"] == sum(c.tested for c in section.claims), name
        assert metrics["claims_holding"] == sum(c.verdict == "holds" for c in section.claims), name
        # one image per label in the synthetic set: the per-label claim cannot be tested, the others can
        assert metrics["claims_checked"] >= (name != "appendix_g_content"), name
    s4 = built["section4_nr_iqa"].metrics
    t1 = pd.read_csv(ctx.tables_dir / "section4_nr_iqa" / "table1_nr_iqa.csv")
    best = t1[t1["task_model"] == "convnext_base"].sort_values("auc").iloc[-1]
    assert s4["best_auc_metric"] == best["scorer"] and s4["best_auc"] == round(best["auc"], 4)
    assert s4["paper_auc"] == best["paper_auc"]  # the paper's number for the same row


def test_unconfigured_section_writes_the_same_keys_with_a_note(tmp_path, paper_like):
    params = validate_params({"scorers": {"tv": "tv", "lite0": "efficientnet_lite:lite0"},
                              "analysis": {"task_models": ["lite0"]}})
    ctx = make_context(params, paper_like[0].analysis_dir, tmp_path)
    metrics = SECTIONS["section6_zsclip"](ctx).metrics
    assert tuple(metrics) == METRIC_KEYS and metrics["status"] == "empty"
    assert "zero-shot" in (tmp_path / "tables" / "section6_zsclip" / "NOTE.md").read_text()
    assert metrics["best_auc"] is None and metrics["claims_checked"] == 0


def test_claims_carry_a_verdict_and_our_numbers(paper_like):
    _, built = paper_like
    for name, section in built.items():
        for claim in section.claims:
            assert claim.verdict in ("holds", "does not hold", "inconclusive", "not tested"), name
            assert claim.evidence and claim.markdown().startswith(f"- **{claim.verdict}**"), name
    # the synthetic ZSCLIP-IQA is not CLIP-IQA's rival here, but both are configured: testable
    assert built["section6_3_mixtures"].claims[1].tested
    # 60 images (12 test images): no point-wise claim can hold or fail on such evidence (the group-wise
    # ones rest on 75 groups and may be decided)
    pointwise = [built["section4_nr_iqa"].claims[0], *built["section5_strong_tg"].claims,
                 built["section6_zsclip"].claims[0], *built["section6_3_mixtures"].claims]
    for claim in pointwise:
        assert claim.verdict in ("inconclusive", "not tested"), (claim.text, claim.verdict)



def test_claims_are_written_beside_the_tables_as_the_notebook_shows_them(paper_like):
    """claims.md / claims.csv: what a README quotes, the same words as the notebook's claims cell."""
    from iqa_lib.presentation.sections.base import claims_markdown

    ctx, built = paper_like
    for name, section in built.items():
        folder = ctx.tables_dir / name
        if not section.claims:
            assert not (folder / "claims.md").exists() and not (folder / "claims.csv").exists(), name
            continue
        text = (folder / "claims.md").read_text()
        assert claims_markdown(section.claims, ctx.run_caveat) in text, name
        table = pd.read_csv(folder / "claims.csv", keep_default_na=False)
        assert list(table["verdict"]) == [c.verdict for c in section.claims], name
        assert list(table["evidence"]) == [c.evidence for c in section.claims], name
        if ctx.run_caveat:  # a small run says so above its verdicts
            assert text.split("\n")[2].startswith("> "), name

def test_figure14_title_says_whose_confidence_is_plotted():
    assert "its own confidence" in figure14_title("lite0", ["lite0"])
    assert "other classifier:" not in figure14_title("lite0", ["lite0"])
    assert "the other classifier: lite1" in figure14_title("lite0", ["lite1"])
    assert "the other classifiers: a, b" in figure14_title("m", ["a", "b"])


def test_sections_read_accuracy_from_the_correctness_tables(paper_like, tmp_path):
    """The scatter plots' accuracy and the task models' table come from results/correctness."""
    import json as _json
    import shutil

    ctx, built = paper_like
    t = built["section5_strong_tg"].tables["task_models"]
    assert list(t["task_model"]) == ctx.task_models
    for model in ctx.task_models:
        summary = _json.loads((ctx.correctness_dir / model / "summary.json").read_text())
        row = t[t["task_model"] == model].iloc[0]
        assert row["clean top-1"] == summary["clean_top1"]["value"]
        assert row["mCE"] == summary["mce"]["value"] and row["n (mCE)"] == summary["mce"]["n"]
    # a correctness table from other scores is an error that names both files, not a silent choice
    other = make_context(ctx.params, ctx.analysis_dir, tmp_path, tmp_path / "correctness")
    shutil.copytree(ctx.correctness_dir, other.correctness_dir)
    model = ctx.task_models[0]
    acc = pd.read_csv(other.correctness_dir / model / "accuracy.csv")
    acc.loc[acc["corruption"] != "clean", "accuracy"] = 0.5
    acc.to_csv(other.correctness_dir / model / "accuracy.csv", index=False)
    section = sections_new(other, "section4_nr_iqa")
    with pytest.raises(ValueError, match="disagree on .*made from different scores"):
        other.group_means(section)
    shutil.rmtree(other.correctness_dir / model)
    with pytest.raises(FileNotFoundError, match=f"dvc repro correctness@{model}"):
        other.group_means(section)


def test_gallery_lists_every_paper_figure_in_order_or_why_not(paper_like, tmp_path):
    from iqa_lib.presentation.gallery import gallery

    ctx, _ = paper_like
    figures = gallery(ctx.figures_dir)
    assert list(dict.fromkeys(figures["figure"])) == [3, 5, 7, *range(11, 23)]  # the paper's order
    assert figures["png"].notna().all() and figures["caption"].str.len().gt(40).all()
    assert (set(figures.loc[figures["figure"] == 20, "png"].map(lambda p: p.name))
            == {f"fig20_{m}.png" for m in ctx.task_models})
    # a run without ZSCLIP-IQA: its figures are listed with the section's reason
    params = validate_params({"scorers": {"tv": "tv", "lite0": "efficientnet_lite:lite0"},
                              "analysis": {"task_models": ["lite0"]}})
    SECTIONS["section6_zsclip"](make_context(params, ctx.analysis_dir, tmp_path))
    small = gallery(tmp_path / "figures")
    zs = small[small["figure"].isin([7, 17, 18, 19])]
    assert zs["png"].isna().all() and zs["missing"].str.contains("zero-shot").all()
    assert small.loc[small["figure"] == 3, "missing"].str.contains("dvc repro section@section4_nr_iqa").all()


def test_tables_mark_significance_against_the_best_row_and_small_n(paper_like):
    """Tables 1-4 say which rows are significantly below the best; a 60-image run is marked small."""
    from iqa_lib.analysis.paired import within_table

    ctx, built = paper_like
    t1 = built["section4_nr_iqa"].tables["table1_nr_iqa"]
    assert (t1.groupby("task_model")["auc_vs_best"].apply(lambda s: (s == "best").sum()) == 1).all()
    others = t1[t1["auc_vs_best"] != "best"]
    # 12 test images: no paired test is valid, so no row gets a p-value or a significance mark
    assert (others["auc_vs_best"] == "n too small").all()
    pairs = within_table(pd.read_csv(ctx.analysis_dir / "paired_tests.csv"), t1[["task_model", "scorer", "q"]])
    assert not pairs["auc_test_valid"].any() and pairs["significant_auc_table"].isna().all()
    assert pairs["delong_p_holm_table"].isna().all()
    for table in ("table2_strong_tg_same_model", "table4_strong_tg_pairs"):
        assert "auc_vs_best" in built["section5_strong_tg"].tables[table].columns, table
    # 60 images: 12 test images, every AUC flagged; the tables and the verdicts say so
    md = (ctx.tables_dir / "section4_nr_iqa" / "table1_nr_iqa.md").read_text()
    assert "†" in md and "n too small" in md and "n (test images / groups)" in md and "vs best" in md
    claims = built["section4_nr_iqa"].claims
    assert claims[0].small_n and "(small n)" in claims[0].markdown()
    assert built["section4_nr_iqa"].metrics["small_n"] is True  # and `dvc metrics show`


def test_saved_figures_are_byte_identical_across_runs(tmp_path):
    """No creation date in PNG or PDF: rerunning a stage gives the same md5 in dvc.lock."""
    import time

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from iqa_lib.presentation.plots import save_figure

    def draw(stem):
        fig, ax = plt.subplots()
        ax.plot([0, 1, 2], [1, 0, 2])
        return [p.read_bytes() for p in save_figure(fig, stem)]

    first = draw(tmp_path / "a" / "fig")
    time.sleep(1.1)  # PDF dates have one-second resolution
    assert draw(tmp_path / "b" / "fig") == first


@pytest.mark.parametrize(("images", "verdict"), [(10, "inconclusive"), (40, "holds")])
def test_groupwise_claim_needs_enough_images_per_group(images, verdict):
    """|SRCC| intervals well below 0.5 over 75 groups: the claim holds on 40 images per group, not on the
    demo's 10 (every group accuracy from the same 10 images), and the evidence says why."""
    from types import SimpleNamespace

    from iqa_lib.analysis.pairs import summary_table
    from iqa_lib.presentation.sections.section4_nr_iqa import claims_section4
    from iqa_lib.presentation.tables import table1

    key = {"task_model": "resnet34", "kind": "nr_iqa", "q": "q"}
    point = pd.DataFrame([{**key, "scorer": s, "auc": 0.55, "auc_ci_low": 0.5, "auc_ci_high": 0.6,
                           "n_test_images": 200, "n_test_pos_images": 100, "n_test_neg_images": 100,
                           "small_n": False} for s in ("tv", "brisque")])
    group = pd.DataFrame([{**key, "scorer": s, "stat": stat, "abs_r": 0.2, "abs_ci_low": 0.05, "abs_ci_high": 0.35,
                           "p_value": 0.1, "n": 75, "min_group_images": images}
                          for s in ("tv", "brisque") for stat in ("krcc", "srcc", "plcc")])
    t1 = table1(summary_table(point, group), {"tv": "TV", "brisque": "BRISQUE", "resnet34": "resnet34"})
    claims = claims_section4(None, SimpleNamespace(claims=[]), t1)
    assert claims[0].verdict == "holds"  # the point-wise claim is not touched
    groupwise = claims[1]
    assert groupwise.verdict == verdict
    assert f"n 75 groups of at least {images} images" in groupwise.evidence
    assert bool(groupwise.small_n) == (images < 30)
    if images < 30:
        assert "rest on too small an n" in groupwise.reason and "(n too small)" in groupwise.evidence
