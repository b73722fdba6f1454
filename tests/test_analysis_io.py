"""Loading a folder of score files: alignment, kinds, and clear errors for bad files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from iqa_lib.analysis.io import load_scores
from iqa_lib.analysis.runner import run_all
from iqa_lib.analysis.synthetic import write_synthetic_scores


@pytest.fixture()
def scores_dir(tmp_path):
    return write_synthetic_scores(
        tmp_path / "scores",
        12,
        corruptions=("fog", "snow"),
        severities=(1, 2),
        n_labels=3,
        nr_scorers=("tv",),
        classifiers=("resnet34",),
        zero_shot=("zsclip",),
    )


def _rewrite(path, func, metadata=None):
    df = pd.read_parquet(path)
    df = func(df)
    table = pa.Table.from_pandas(df, preserve_index=False)
    if metadata:
        table = table.replace_schema_metadata(metadata)
    pq.write_table(table, path)


def test_load_aligns_rows_across_files_in_any_order(scores_dir):
    ref = load_scores(scores_dir)
    _rewrite(scores_dir / "tv.parquet", lambda d: d.sample(frac=1.0, random_state=0))
    got = load_scores(scores_dir)
    assert got.n_rows == 12 * 5
    np.testing.assert_array_equal(got.q[("tv", "q")], ref.q[("tv", "q")])
    keys = got.keys_frame()
    raw = pd.read_parquet(scores_dir / "tv.parquet")
    merged = keys.astype({"image_id": str, "corruption": str}).merge(
        raw.astype({"image_id": str, "corruption": str}), on=["image_id", "corruption", "severity"]
    )
    np.testing.assert_array_equal(merged["q"].to_numpy(), got.q[("tv", "q")])
    assert got.kinds == {"resnet34": "classifier", "tv": "nr_iqa", "zsclip": "zero_shot"}
    assert got.q[("tv", "q")].dtype == np.float32
    assert set(got.m) == {"resnet34", "zsclip"} and got.m["resnet34"].dtype == np.int8


def test_rows_are_sorted_by_image_so_each_image_is_contiguous(scores_dir):
    s = load_scores(scores_dir)
    assert (np.diff(s.image) >= 0).all()


def test_nan_scores_are_rejected_naming_the_file_and_column(scores_dir):
    def poison(d):
        d.loc[3, "q_l"] = np.nan
        return d

    _rewrite(scores_dir / "resnet34.parquet", poison)
    with pytest.raises(ValueError, match=r"resnet34\.parquet.*'q_l'.*NaN"):
        load_scores(scores_dir)


def test_duplicate_keys_bad_correct_and_label_mismatch_raise(scores_dir, tmp_path):
    _rewrite(scores_dir / "tv.parquet", lambda d: pd.concat([d, d.iloc[:1]]))
    with pytest.raises(ValueError, match="duplicate"):
        load_scores(scores_dir)
    d2 = write_synthetic_scores(
        tmp_path / "b",
        5,
        corruptions=("fog",),
        severities=(1,),
        nr_scorers=(),
        classifiers=("a", "b"),
        zero_shot=(),
    )
    _rewrite(d2 / "b.parquet", lambda d: d.assign(correct=d["correct"].astype(int) * 2))
    with pytest.raises(ValueError, match="correct"):
        load_scores(d2)
    _rewrite(d2 / "b.parquet", lambda d: d.assign(correct=1, label=d["label"] + 1))
    with pytest.raises(ValueError, match="labels disagree"):
        load_scores(d2)


def test_missing_rows_warn_and_are_left_out(scores_dir):
    _rewrite(scores_dir / "zsclip.parquet", lambda d: d.iloc[5:])
    with pytest.warns(UserWarning, match="lacks 5 row"):
        s = load_scores(scores_dir)
    assert s.n_rows == 12 * 5 - 5


def test_bad_folders_and_files_have_clear_errors(tmp_path, scores_dir):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_scores(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no <scorer>.parquet"):
        load_scores(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no score file"):
        load_scores(scores_dir, ["tv", "nope"])
    _rewrite(scores_dir / "tv.parquet", lambda d: d.rename(columns={"q": "score"}))
    with pytest.raises(ValueError, match="tv.parquet.*neither"):
        load_scores(scores_dir)


def test_zero_shot_kind_from_metadata_or_name(tmp_path):
    d = write_synthetic_scores(
        tmp_path / "s",
        4,
        corruptions=("fog",),
        severities=(1,),
        nr_scorers=(),
        classifiers=("clf",),
        zero_shot=("open_clip_b32",),
    )
    _rewrite(d / "open_clip_b32.parquet", lambda x: x)  # drops the kind metadata
    _rewrite(d / "clf.parquet", lambda x: x, metadata={"kind": "zero_shot"})
    assert load_scores(d).kinds == {"clf": "zero_shot", "open_clip_b32": "zero_shot"}


def test_a_manifest_beside_the_scores_is_skipped(scores_dir, tmp_path):
    folder = tmp_path / "with_manifest"
    folder.mkdir()
    for p in scores_dir.glob("*.parquet"):
        (folder / p.name).write_bytes(p.read_bytes())
    keys = pd.read_parquet(folder / "tv.parquet")[["image_id", "corruption", "severity", "label"]]
    keys.assign(path="x.png").to_parquet(folder / "manifest.parquet")
    with pytest.warns(UserWarning, match=r"skipped \['manifest'\]"):
        s = load_scores(folder)
    assert "manifest" not in s.kinds and s.n_rows == load_scores(scores_dir).n_rows


def test_a_classifier_file_without_correct_gives_q_but_no_m(tmp_path):
    """Unlabelled images (``iqa-kit score --images``): confidence is a Q, there is no M."""
    keys = {"image_id": ["a", "b", "c"], "corruption": ["clean"] * 3, "severity": [0] * 3,
            "label": [-1] * 3}
    pd.DataFrame({**keys, "q": [1.0, 2.0, 3.0]}).to_parquet(tmp_path / "tv.parquet")
    pd.DataFrame({**keys, "pred": [1, 2, 3], "q_p": [0.5, 0.6, 0.7], "q_h": [1.0, 0.9, 0.8],
                  "q_l": [5.0, 6.0, 7.0]}).to_parquet(tmp_path / "lite0.parquet")
    scores = load_scores(tmp_path)
    assert scores.kinds == {"lite0": "classifier", "tv": "nr_iqa"}
    assert ("lite0", "q_p") in scores.q and "lite0" not in scores.m
    assert scores.task_models == []
    with pytest.raises(ValueError, match="'lite0': its score file has no `correct` column"):
        run_all(tmp_path, tmp_path / "out", task_models=["lite0"])
