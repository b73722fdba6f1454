"""``iqa-kit describe``: the distribution table against pandas, both figure kinds, the command."""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from iqa_lib.analysis.distribution import (  # noqa: E402
    COLUMNS,
    QUANTILE_COLUMNS,
    describe_scores,
    group_stats,
)
from iqa_lib.analysis.io import load_scores  # noqa: E402
from iqa_lib.analysis.synthetic import write_synthetic_scores  # noqa: E402
from iqa_lib.commands import describe  # noqa: E402
from iqa_lib.presentation.plots_distribution import q_distribution_figure  # noqa: E402

# Written in a scrambled order; displayed clean, ImageNet-C order, then the others A-Z.
CORRUPTIONS = ("my_blur", "contrast", "gaussian_noise", "fog", "aaa_custom")
DISPLAY = ["gaussian_noise", "fog", "contrast", "aaa_custom", "my_blur"]
SEVERITIES = (1, 2, 3)
PROBS = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)


@pytest.fixture(scope="module")
def corrupted_dir(tmp_path_factory):
    return write_synthetic_scores(
        tmp_path_factory.mktemp("c") / "scores", 12, corruptions=CORRUPTIONS,
        severities=SEVERITIES, n_labels=5, nr_scorers=("brisque", "tv"),
        classifiers=("resnet34",), zero_shot=("zsclip",),
    )


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory):
    return write_synthetic_scores(
        tmp_path_factory.mktemp("n") / "scores", 15, corruptions=(), n_labels=3,
        nr_scorers=("brisque", "tv"), classifiers=(), zero_shot=(),
    )


def _pandas_table(scores_dir) -> pd.DataFrame:
    """The same statistics, independently: pandas groupby on the raw Parquet files."""
    frames = []
    for path in sorted(scores_dir.glob("*.parquet")):
        df = pd.read_parquet(path)
        df["corruption"] = df["corruption"].astype(str)
        qs = ["q"] if "q" in df else ["q_p", "q_h", "q_l"]
        for q in qs:
            g = df.assign(v=df[q].astype(np.float64)).groupby(["corruption", "severity"])["v"]
            t = pd.DataFrame({"n": g.size(), "mean": g.mean(), "sd": g.std()})
            for p, col in zip(PROBS, QUANTILE_COLUMNS, strict=True):
                t[col] = g.quantile(p)
            t["accuracy"] = (
                df.groupby(["corruption", "severity"])["correct"].mean() if q != "q" else np.nan
            )
            frames.append(t.reset_index().assign(scorer=path.stem, q=q))
    return pd.concat(frames, ignore_index=True)


def _parse(argv):
    parser = argparse.ArgumentParser()
    describe.add_parser(parser.add_subparsers())
    return parser.parse_args(argv)


def test_table_matches_pandas(corrupted_dir):
    table = describe_scores(corrupted_dir)
    assert list(table.columns) == list(COLUMNS)
    expected = _pandas_table(corrupted_dir)
    keys = ["scorer", "q", "corruption", "severity"]
    merged = table.merge(expected, on=keys, how="outer", suffixes=("", "_pd"), indicator=True)
    assert (merged["_merge"] == "both").all() and len(table) == (2 + 2 * 3) * (1 + 5 * 3)
    assert (merged["n"] == merged["n_pd"]).all() and (merged["n"] == 12).all()
    for col in ("mean", "sd", *QUANTILE_COLUMNS, "accuracy"):
        np.testing.assert_allclose(merged[col], merged[f"{col}_pd"], rtol=1e-9, atol=1e-12,
                                   err_msg=col)
    kinds = table.drop_duplicates("scorer").set_index("scorer")["kind"].to_dict()
    assert kinds == {"brisque": "nr_iqa", "resnet34": "classifier", "tv": "nr_iqa",
                     "zsclip": "zero_shot"}
    assert table.loc[table["kind"] == "nr_iqa", "accuracy"].isna().all()
    assert table.loc[table["kind"] != "nr_iqa", "accuracy"].notna().all()


def test_groups_sorted_clean_then_imagenet_c_order_then_alphabetical(corrupted_dir):
    table = describe_scores(corrupted_dir, ["tv"])
    order = list(zip(table["corruption"], table["severity"], strict=True))
    assert order == [("clean", 0)] + [(c, s) for c in DISPLAY for s in SEVERITIES]
    assert set(table["scorer"]) == {"tv"}


def test_group_stats_single_and_empty_groups():
    values = np.array([5.0, 1.0, 3.0, 2.0], dtype=np.float32)
    groups = np.array([2, 0, 0, 0])
    s = group_stats(values, groups, 3)
    assert s["n"].tolist() == [3, 0, 1]
    assert s["mean"][0] == pytest.approx(2.0) and s["sd"][0] == pytest.approx(1.0)
    assert s["q50"][0] == 2.0 and s["q25"][0] == 1.5 and s["q00"][0] == 1.0
    assert np.isnan(s["mean"][1]) and np.isnan(s["q50"][1])
    assert s["q00"][2] == s["q100"][2] == 5.0 and np.isnan(s["sd"][2])


def test_clean_only_folder_gives_histograms(clean_dir):
    table = describe_scores(clean_dir)
    assert table[["scorer", "corruption", "severity", "n"]].values.tolist() == [
        ["brisque", "clean", 0, 15], ["tv", "clean", 0, 15]]
    assert table["accuracy"].isna().all()
    fig = q_distribution_figure(clean_dir)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["brisque.q", "tv.q"]
    for ax, (_, row) in zip(axes, table.iterrows(), strict=True):
        assert sum(p.get_height() for p in ax.patches) == 15  # every image in one histogram
        vlines = [line.get_xdata()[0] for line in ax.get_lines()]
        assert vlines == pytest.approx([row["q50"], row["q05"], row["q95"]])
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        assert any("n = 15" in t for t in texts) and ax.get_xlabel() == row["scorer"] + ".q"


def test_corrupted_folder_gives_one_line_per_corruption(corrupted_dir):
    table = describe_scores(corrupted_dir)
    fig = q_distribution_figure(corrupted_dir, ["brisque", "resnet34.q_p"], table=table)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["brisque.q", "resnet34.q_p"]
    for ax, (scorer, q) in zip(axes, [("brisque", "q"), ("resnet34", "q_p")], strict=True):
        rows = table[(table["scorer"] == scorer) & (table["q"] == q)].set_index(
            ["corruption", "severity"])
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        assert list(lines) == [c.replace("_", " ") for c in DISPLAY] + ["clean median"]
        for c in DISPLAY:
            line = lines[c.replace("_", " ")]
            assert list(line.get_xdata()) == [0, 1, 2, 3]
            expected = [rows.loc[("clean", 0), "q50"]]
            expected += [rows.loc[(c, s), "q50"] for s in SEVERITIES]
            np.testing.assert_allclose(line.get_ydata(), expected)
    assert fig.legends and len(fig.legends[0].get_texts()) == len(DISPLAY) + 1


def test_grid_has_at_most_four_columns_and_accepts_a_scoreset(corrupted_dir):
    fig = q_distribution_figure(load_scores(corrupted_dir))
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 2 + 2 * 3
    assert visible[0].get_subplotspec().get_gridspec().get_geometry() == (2, 4)
    with pytest.raises(KeyError, match=r"nope\.q.*available.*resnet34\.q_p"):
        q_distribution_figure(load_scores(corrupted_dir, ["resnet34"]), ["nope"])


def test_command_writes_table_figure_and_summary(corrupted_dir, tmp_path, capsys):
    args = _parse(["describe", "--scores", str(corrupted_dir), "--out", str(tmp_path / "d"),
                   "--scorers", "brisque,resnet34"])
    assert args.func(args) == 0
    for name in ("q_distribution.csv", "q_distribution.png", "q_distribution.pdf"):
        assert (tmp_path / "d" / name).stat().st_size > 0
    csv = pd.read_csv(tmp_path / "d" / "q_distribution.csv")
    assert list(csv.columns) == list(COLUMNS) and set(csv["scorer"]) == {"brisque", "resnet34"}
    out = capsys.readouterr().out.splitlines()
    assert len(out) <= 30 and "clean + 5 corruption(s), severities 1-3" in out[0]
    rows = {line.split()[0]: line.split() for line in out[2:6]}
    assert list(rows) == ["brisque.q", "resnet34.q_p", "resnet34.q_h", "resnet34.q_l"]
    clean = csv[(csv["scorer"] == "brisque") & (csv["corruption"] == "clean")].iloc[0]
    assert rows["brisque.q"][1:3] == ["12", f"{clean['q50']:.4g}"]
    assert rows["brisque.q"][4] == str(12 * 5 * 3)  # pooled corrupted rows
    acc = csv[(csv["scorer"] == "resnet34") & (csv["corruption"] == "clean")]["accuracy"].iloc[0]
    assert rows["resnet34.q_p"][-3] == f"{acc:.4g}"
    assert str(tmp_path / "d") in out[-1]


def test_command_default_out_is_next_to_scores(clean_dir, capsys):
    args = _parse(["describe", "--scores", str(clean_dir)])
    assert args.func(args) == 0
    assert (clean_dir.parent / "distribution" / "q_distribution.png").is_file()
    out = capsys.readouterr().out
    assert "clean images" in out and "n corrupted" not in out and "accuracy" not in out


def test_other_parquet_files_are_skipped(clean_dir, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in clean_dir.glob("*.parquet"):
        (folder / p.name).write_bytes(p.read_bytes())
    pd.DataFrame({"image_id": ["a"], "path": ["a.png"]}).to_parquet(folder / "manifest.parquet")
    with pytest.warns(UserWarning, match="manifest"):
        table = describe_scores(folder)
    assert set(table["scorer"]) == {"brisque", "tv"}


def test_cli_errors_name_the_path_and_the_scorer(corrupted_dir, tmp_path, capsys):
    from iqa_lib import cli

    missing = tmp_path / "missing"
    assert cli.main(["describe", "--scores", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err and "Traceback" not in err
    assert cli.main(["describe", "--scores", str(corrupted_dir), "--scorers", "brisque,nope"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "available" in err and "tv" in err


def test_params_give_the_pipeline_defaults(clean_dir, tmp_path, monkeypatch, capsys):
    """`iqa-kit describe --params params.yaml` (the dvc stage): configured scorers only."""
    import shutil

    import yaml

    scores = tmp_path / "results" / "scores"
    shutil.copytree(clean_dir, scores)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"scorers": {"tv": "tv"}}))
    monkeypatch.chdir(tmp_path)
    assert describe.run(_parse(["describe", "--params", "params.yaml"])) == 0
    table = pd.read_csv(tmp_path / "results" / "distribution" / "q_distribution.csv")
    assert set(table["scorer"]) == {"tv"}  # brisque.parquet is there but not configured
    assert "wrote q_distribution.csv" in capsys.readouterr().out
