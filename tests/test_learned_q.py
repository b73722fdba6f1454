"""learned_q: features, model files, training, the grouped split, the scorer through the engine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from iqa_lib.analysis.learned_q import (
    TrainingData,
    TrainSettings,
    fit_model,
    image_folds,
    load_training_data,
    train,
)
from iqa_lib.scorers import qfeatures
from iqa_lib.scorers.learned_q import LearnedQScorer, default_model_path
from iqa_lib.scorers.learned_q_model import (
    Layer,
    LearnedQModel,
    ModelFileError,
    load_model,
    save_model,
)
from iqa_lib.scorers.qfeature_columns import FEATURE_COLUMNS
from iqa_lib.scorers.registry import build_scorer
from iqa_lib.scorers.spec import SpecError, parse_spec
from iqa_lib.scoring.engine import score_manifest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _image(seed: int, h: int = 96, w: int = 104) -> np.ndarray:
    """A smooth random image with some texture, uint8 (3, H, W)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 120 + 60 * np.sin(xx / (3 + seed % 4)) * np.cos(yy / 5)
    img = base[None] + rng.normal(0, 12, (3, h, w)) + np.array([10, -5, 20])[:, None, None] * (seed % 3)
    return np.clip(img, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------ features


def test_features_match_the_kits_metrics_and_independent_formulas():
    img = _image(1)
    f = dict(zip(FEATURE_COLUMNS, qfeatures.image_features(img), strict=True))
    batch = torch.from_numpy(img)[None]
    for name in ("brisque", "niqe", "piqe", "tv"):
        want = build_scorer(name, "cpu").score(batch, None)["q"][0]
        assert f[f"f_{name}"] == want, name
    x = img.astype(np.float64) / 255
    assert f["f_mean_g"] == pytest.approx(x[1].mean(), abs=1e-15)
    rg, yb = x[0] - x[1], (x[0] + x[1]) / 2 - x[2]
    hasler = np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
    assert f["f_colourfulness"] == pytest.approx(hasler, rel=1e-12)


def test_frequency_features_see_blur_noise_and_jpeg_grid():
    img = _image(2, 96, 96).astype(np.float64)
    gray = img.mean(axis=0)
    blurred = (gray + np.roll(gray, 1, 0) + np.roll(gray, 1, 1) + np.roll(gray, (1, 1), (0, 1))) / 4
    noisy = gray + np.random.default_rng(0).normal(0, 20, gray.shape)
    idx = FEATURE_COLUMNS.index("f_spectral_slope") - FEATURE_COLUMNS.index("f_band1")
    slope = {k: qfeatures.frequency_features(v)[idx] for k, v in
             {"gray": gray, "blur": blurred, "noise": noisy}.items()}
    assert slope["blur"] < slope["gray"] < slope["noise"]
    blocky = np.kron(np.arange(144).reshape(12, 12) % 7 * 30.0, np.ones((8, 8)))
    assert qfeatures.blockiness(blocky) > 10 * qfeatures.blockiness(gray)
    assert qfeatures.blockiness(np.full((32, 32), 3.0)) == 1.0


def test_features_do_not_depend_on_the_batch():
    images = [_image(s) for s in range(3)]
    batch = torch.from_numpy(np.stack(images))
    whole = qfeatures.batch_features(batch)
    alone = np.stack([qfeatures.image_features(i) for i in images])
    assert np.array_equal(whole, alone)
    assert np.array_equal(qfeatures.batch_features(batch), whole)  # and again: deterministic


def test_features_refuse_tiny_and_flat_images():
    with pytest.raises(qfeatures.FeatureError, match="at least 96x96"):
        qfeatures.image_features(np.zeros((3, 64, 128), np.uint8))
    with pytest.raises((qfeatures.FeatureError, ValueError)):
        qfeatures.image_features(np.full((3, 96, 96), 128, np.uint8))


def _write_manifest(root: Path, n: int) -> Path:
    rows = []
    for i in range(n):
        path = root / f"im{i}.png"
        Image.fromarray(_image(i).transpose(1, 2, 0)).save(path)
        rows.append({"image_id": f"im{i}", "label": i % 3, "corruption": "gaussian_noise",
                     "severity": 1, "path": str(path)})
    out = root / "manifest.parquet"
    pd.DataFrame(rows).to_parquet(out)
    return out


def test_engine_writes_the_features_and_q_as_scoring_directly(tmp_path):
    manifest = _write_manifest(tmp_path, 5)
    out = score_manifest("learned_q", manifest, tmp_path / "lq.parquet", batch_size=2, num_workers=0,
                         device="cpu", progress=False)
    got = pd.read_parquet(out).sort_values("image_id")
    assert list(got.columns[5:]) == list(FEATURE_COLUMNS)
    direct = np.stack([qfeatures.image_features(np.asarray(Image.open(tmp_path / f"im{i}.png")).transpose(2, 0, 1))
                       for i in range(5)])
    assert np.array_equal(got[list(FEATURE_COLUMNS)].to_numpy(), direct)
    model = load_model(default_model_path())
    idx = [FEATURE_COLUMNS.index(f) for f in model.features]
    assert np.array_equal(got["q"].to_numpy(), model.predict(direct[:, idx]))
    from iqa_lib.analysis.io import load_scores  # the analyses read it as any NR-IQA score

    scores = load_scores(tmp_path, ["lq"])
    assert scores.kinds["lq"] == "nr_iqa" and np.isin(scores.q[("lq", "q")], got["q"].to_numpy()).all()


def test_a_retrained_model_file_at_the_same_path_is_scored_again(tmp_path, capsys):
    # the spec names the file, not its bytes: the completion record vouches for them
    manifest = _write_manifest(tmp_path, 3)
    rng = np.random.default_rng(0)
    path = save_model(_model(rng), tmp_path / "m.json")
    out = tmp_path / "lq.parquet"
    run = lambda: score_manifest(f"learned_q:{path}", manifest, out, batch_size=2, num_workers=0,  # noqa: E731
                                 device="cpu", progress=False)
    first = pd.read_parquet(run())["q"].to_numpy()
    capsys.readouterr()
    run()
    assert "reusing" in capsys.readouterr().err  # same bytes: reused
    save_model(_model(rng), path)  # retrained into the same file
    second = pd.read_parquet(run())["q"].to_numpy()
    assert "reusing" not in capsys.readouterr().err
    assert not np.array_equal(first, second)
    assert np.array_equal(second, load_model(path).predict(pd.read_parquet(out)[list(load_model(path).features)]
                                                           .to_numpy()))


# ------------------------------------------------------------------ model files


def _model(rng: np.random.Generator, names=FEATURE_COLUMNS[:4], hidden: int = 3) -> LearnedQModel:
    n = len(names)
    layers = (Layer(rng.normal(size=(n, hidden)), rng.normal(size=hidden)),
              Layer(rng.normal(size=(hidden, 1)), rng.normal(size=1)))
    return LearnedQModel(tuple(names), rng.normal(size=n), rng.uniform(0.5, 2, n), layers,
                         {"seed": 0}, {"auc": 0.5})


def test_model_file_round_trip_predicts_the_same_bits(tmp_path):
    rng = np.random.default_rng(0)
    model = _model(rng)
    x = rng.normal(size=(50, 4))
    back = load_model(save_model(model, tmp_path / "m.json"))
    assert np.array_equal(back.predict(x), model.predict(x))
    assert back.provenance == {"seed": 0} and back.features == model.features
    # the network by hand: standardise, ReLU layer, sigmoid
    h = np.maximum(((x - model.mean) / model.scale) @ model.layers[0].weights + model.layers[0].bias, 0)
    want = 1 / (1 + np.exp(-(h @ model.layers[1].weights + model.layers[1].bias)[:, 0]))
    assert np.allclose(model.predict(x), want, rtol=1e-13, atol=0)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("format"), "not a learned_q model"),
    (lambda d: d.update(format_version=99), "format_version 99"),
    (lambda d: d.update(features=[]), "non-empty list"),
    (lambda d: d.update(mean=[0.0]), "one number per feature"),
    (lambda d: d.update(scale=[1.0, 0.0, 1.0, 1.0]), "must be positive"),
    (lambda d: d["layers"][0].update(weights=[[1.0]]), "layers\\[0\\] has weights"),
    (lambda d: d["layers"][1].update(bias=["x"]), "numbers only"),
    (lambda d: d["layers"].pop(), "one output"),
    (lambda d: d["mean"].__setitem__(0, float("nan")), "non-finite"),
])
def test_bad_model_files_say_what_is_wrong(tmp_path, edit, message):
    data = _model(np.random.default_rng(1)).to_dict()
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ModelFileError, match=message) as err:
        load_model(path)
    assert str(path) in str(err.value)


def test_missing_unreadable_and_foreign_model_files(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist.*learn-q"):
        load_model(tmp_path / "nope.json")
    (tmp_path / "bin.json").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ModelFileError, match="not JSON"):
        load_model(tmp_path / "bin.json")
    foreign = _model(np.random.default_rng(2), names=("f_tv", "f_unknown"), hidden=2)
    save_model(foreign, tmp_path / "foreign.json")
    with pytest.raises(ModelFileError, match="does not compute"):
        build_scorer(f"learned_q:{tmp_path / 'foreign.json'}", "cpu")


def test_spec_grammar():
    assert parse_spec("learned_q").name is None
    path = "/some/dir:x/model.json"
    assert parse_spec(f"learned_q:{path}").name == path
    assert parse_spec(f"learned_q:{path}").text == f"learned_q:{path}"
    with pytest.raises(SpecError, match="needs a name"):
        parse_spec("learned_q:")
    with pytest.raises(SpecError, match="not as an option"):
        build_scorer({"spec": "learned_q", "weights": "x.json"}, "cpu")


# ------------------------------------------------------------------ training


def _synthetic(n_images: int = 300, variants: int = 4, seed: int = 0) -> tuple[TrainingData, np.ndarray]:
    """Rows whose correctness follows a known logistic model of two of three features."""
    rng = np.random.default_rng(seed)
    image = np.repeat(np.arange(n_images), variants)
    x = rng.normal(size=(image.size, 3)) * [1.0, 3.0, 0.5] + [0.0, 5.0, -1.0]
    true_w = np.array([1.5, 0.0, -2.0])
    logit = ((x - [0.0, 5.0, -1.0]) / [1.0, 3.0, 0.5]) @ true_w + 0.3
    p = 1 / (1 + np.exp(-logit))
    keys = pd.DataFrame({"image_id": [f"i{i}" for i in image], "corruption": "c", "severity": 1})
    data = TrainingData(keys, x, ("a", "b", "c"), image,
                        {"m0": (rng.random(image.size) < p).astype(np.int8),
                         "m1": (rng.random(image.size) < p).astype(np.int8)})
    return data, p


def test_logistic_training_recovers_the_known_model():
    data, p = _synthetic(n_images=3000)
    model = fit_model(data.features, data.correct["m0"], TrainSettings(hidden=0, alpha=1e-6), data.feature_names)
    w = model.layers[0].weights[:, 0]
    assert w == pytest.approx([1.5, 0.0, -2.0], abs=0.12)
    assert np.abs(model.predict(data.features) - p).max() < 0.05


def test_network_training_ranks_as_the_truth_and_is_deterministic():
    data, p = _synthetic(n_images=1500)
    result = train(data, ["m0"], TrainSettings(hidden=8, seed=3), eval_models=["m1"])
    again = train(data, ["m0"], TrainSettings(hidden=8, seed=3), eval_models=["m1"])
    assert np.array_equal(result.model.predict(data.features), again.model.predict(data.features))
    # an image's q does not depend on the rows predicted with it
    assert np.array_equal(result.model.predict(data.features[:3]), result.model.predict(data.features)[:3])
    held = result.metrics["held_out_images"]
    test_ids = set(result.model.provenance["split"]["test_image_ids"])
    rows = data.keys["image_id"].isin(test_ids).to_numpy()
    for m in ("m0", "m1"):
        best = roc_auc_score(data.correct[m][rows], p[rows])  # the truth's own AUC
        assert held[m]["auc"] == pytest.approx(roc_auc_score(data.correct[m][rows],
                                                             result.model.predict(data.features)[rows]))
        assert held[m]["auc"] > best - 0.03
        assert held[m]["n_rows"] == rows.sum() and held[m]["n_images"] == len(test_ids)
    assert result.model.provenance["held_out_task_models"] == ["m1"]


def test_grouped_split_and_folds_never_share_an_image():
    data, _ = _synthetic(n_images=50, variants=7)
    result = train(data, ["m0", "m1"], TrainSettings(hidden=0))
    test_ids = set(result.model.provenance["split"]["test_image_ids"])
    assert len(test_ids) == 10  # 20% of 50 images
    train_ids = set(data.keys["image_id"]) - test_ids
    assert result.model.provenance["split"]["n_train_images"] == len(train_ids) == 40
    folds = image_folds(data.image, 5, seed=1)
    for img in np.unique(data.image):
        assert np.unique(folds[data.image == img]).size == 1
    assert np.bincount(folds[::7]).tolist() == [10] * 5


def test_training_data_from_score_files(tmp_path):
    keys = pd.DataFrame({"image_id": ["a", "a", "b", "b"], "corruption": ["clean", "fog", "clean", "fog"],
                         "severity": [0, 1, 0, 1], "label": [1, 1, 2, 2]})
    feats = keys.assign(q=0.5, **{c: np.arange(4.0) + i for i, c in enumerate(FEATURE_COLUMNS)})
    feats.to_parquet(tmp_path / "learned_q.parquet")
    keys.iloc[::-1].assign(correct=[True, False, True, True]).to_parquet(tmp_path / "lite0.parquet")
    data = load_training_data(tmp_path / "learned_q.parquet", {"lite0": tmp_path / "lite0.parquet"})
    assert data.correct["lite0"].tolist() == [1, 1, 0, 1]  # aligned to the feature rows
    assert data.image.tolist() == [0, 0, 1, 1]
    keys.iloc[:3].assign(correct=True).to_parquet(tmp_path / "short.parquet")
    with pytest.raises(ValueError, match="lacks 'correct' for 1"):
        load_training_data(tmp_path / "learned_q.parquet", {"short": tmp_path / "short.parquet"})
    with pytest.raises(ValueError, match="not a learned_q feature file"):
        load_training_data(tmp_path / "lite0.parquet", {"lite0": tmp_path / "lite0.parquet"})


# ------------------------------------------------------------------ the shipped model


def test_shipped_model_scores_the_calibration_images():
    from calibration import calibration_set

    batch, _ = calibration_set()
    scorer = build_scorer("learned_q", "cpu")
    assert isinstance(scorer, LearnedQScorer)
    out = scorer.score(batch, None)
    assert out["q"].shape == (5,) and ((out["q"] >= 0) & (out["q"] <= 1)).all()
    prov = scorer.model.provenance
    assert prov["task_models"] == ["lite0", "lite1"] and "lite2" not in prov["task_models"]


# ------------------------------------------------------------------ the transfer tables


def _eval_data(n_images: int = 60):
    from iqa_lib.analysis.io import ScoreSet
    from iqa_lib.analysis.learned_q_eval import EvalData

    rng = np.random.default_rng(5)
    corruptions = pd.Index(["clean", "fog", "gaussian_noise", "snow"])
    rows = [(i, c, s) for i in range(n_images) for c in range(4) for s in ((0,) if c == 0 else (1, 2))]
    image, cor, sev = (np.array(v) for v in zip(*rows, strict=True))
    x = rng.normal(size=(image.size, len(FEATURE_COLUMNS)))
    p = 1 / (1 + np.exp(-(2 * x[:, 0] - sev)))
    scores = ScoreSet(image.astype(np.int32), pd.Index([f"i{i}" for i in range(n_images)]),
                      cor.astype(np.int16), corruptions, sev.astype(np.int16), np.zeros(image.size, np.int64))
    for m in ("a", "b"):
        scores.m[m] = (rng.random(image.size) < p).astype(np.int8)
        scores.q[(m, "q_p")] = p + rng.normal(0, 0.05, image.size)
        scores.kinds[m] = "classifier"
    scores.q[("metric", "q")] = -x[:, 0] + rng.normal(0, 1, image.size)  # lower = better
    scores.kinds["metric"] = "nr_iqa"
    return EvalData(scores, x, ["metric"])


def test_cross_fitted_predictions_never_see_their_image_and_aucs_are_oriented():
    from iqa_lib.analysis.learned_q_eval import auc_rows, cross_fitted, family_prior, set_learned

    ev = _eval_data()
    allowed = np.ones(ev.scores.n_rows, dtype=bool)
    q = cross_fitted(ev, ["a"], allowed, TrainSettings(hidden=0), n_folds=3)
    # row 0's image, refitted without its fold, gives the same prediction: it never saw the image
    folds = image_folds(ev.scores.image, 3, 0)
    own = folds == folds[0]
    model = fit_model(ev.features[~own], ev.scores.m["a"][~own], TrainSettings(hidden=0), FEATURE_COLUMNS)
    assert np.array_equal(q[own], model.predict(ev.features[own]))
    set_learned(ev, q)
    table = auc_rows(ev, "b", allowed, allowed, ["a"]).set_index("q")
    y = ev.scores.m["b"]
    assert table.loc["metric", "orientation"] == "-"
    assert table.loc["metric", "auc"] == pytest.approx(roc_auc_score(y, -ev.scores.q[("metric", "q")]))
    assert table.loc["learned_q", "auc"] == pytest.approx(roc_auc_score(y, q))
    assert table.loc["own q_p", "auc"] == pytest.approx(roc_auc_score(y, ev.scores.q[("b", "q_p")]))
    assert table.loc["learned_q", "auc"] > 0.7 and table.loc["metric", "n_images"] == 60
    summary = family_prior(ev, "b", ["fog", "snow"], n_bootstrap=50, seed=0).set_index(["method", "scorer"])
    ref = ~np.isin(np.asarray(ev.scores.corruptions)[ev.scores.corruption], ["fog", "snow"])
    tgt = np.asarray(ev.scores.corruptions)[ev.scores.corruption] == "fog"
    fog = [100 * abs(y[ref].mean() - y[tgt & (ev.scores.severity == s)].mean()) for s in (1, 2)]
    snow = [100 * abs(y[ref].mean() - y[(np.asarray(ev.scores.corruptions)[ev.scores.corruption] == "snow")
                                          & (ev.scores.severity == s)].mean()) for s in (1, 2)]
    assert summary.loc[("reference", "b"), "mean_abs_error_pts"] == pytest.approx(np.mean(fog + snow))
    # the Q-line: accuracy on each reference group (clean, the other corruptions' severities)
    # against the group's mean Q, by scipy's least squares, read at each held-out group's mean
    from scipy.stats import linregress

    names = np.asarray(ev.scores.corruptions)[ev.scores.corruption]
    frame = pd.DataFrame({"c": names, "s": ev.scores.severity, "q": ev.scores.q[("metric", "q")], "m": y})
    groups = frame[ref].groupby(["c", "s"])[["q", "m"]].mean()
    fit = linregress(groups["q"], groups["m"])
    held = frame[~ref].groupby(["c", "s"])[["q", "m"]].mean()
    expected = np.abs(np.clip(fit.intercept + fit.slope * held["q"], 0, 1) - held["m"]).mean()
    assert summary.loc[("q_line", "metric"), "mean_abs_error_pts"] == pytest.approx(100 * expected, abs=1e-9)
    # learned_q, a probability, gets the line on probit axes (norm.ppf/cdf, the kit's 1e-4 clip)
    from scipy.stats import norm

    def ppf(x):
        return norm.ppf(np.clip(x, 1e-4, 1 - 1e-4))

    frame["lq"] = q
    groups = frame[ref].groupby(["c", "s"])[["lq", "m"]].mean()
    fit = linregress(ppf(groups["lq"]), ppf(groups["m"]))
    held = frame[~ref].groupby(["c", "s"])[["lq", "m"]].mean()
    expected = np.abs(norm.cdf(fit.intercept + fit.slope * ppf(held["lq"])) - held["m"]).mean()
    assert summary.loc[("q_line", "learned_q"), "mean_abs_error_pts"] == pytest.approx(100 * expected, abs=1e-9)
