"""learned_q with a frozen backbone's embedding: the features before the head, model files, the scorer."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from iqa_lib.analysis.learned_q import TrainSettings, fit_model, read_embeddings
from iqa_lib.scorers import qfeatures
from iqa_lib.scorers.learned_q_embed import Embedder
from iqa_lib.scorers.learned_q_model import (
    BACKBONES,
    Layer,
    LearnedQModel,
    ModelFileError,
    load_model,
    save_model,
)
from iqa_lib.scorers.qfeature_columns import FEATURE_COLUMNS
from iqa_lib.scorers.registry import build_scorer
from iqa_lib.scoring.engine import score_manifest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
LITE0 = "efficientnet_lite:lite0"
WIDTH = BACKBONES[LITE0]


def _images(n: int = 3, h: int = 96, w: int = 104) -> torch.Tensor:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:h, 0:w]
    out = [np.clip(120 + 60 * np.sin(xx / (3 + i)) * np.cos(yy / 5) + rng.normal(0, 12, (3, h, w)), 0, 255)
           for i in range(n)]
    return torch.from_numpy(np.stack(out).astype(np.uint8))


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(LITE0, torch.device("cpu"))


def _model(names: tuple[str, ...], seed: int = 0, hidden: int = 4) -> LearnedQModel:
    rng = np.random.default_rng(seed)
    n = len(names) + WIDTH
    layers = (Layer(rng.normal(0, 0.05, (n, hidden)), rng.normal(size=hidden)),
              Layer(rng.normal(size=(hidden, 1)), rng.normal(size=1)))
    return LearnedQModel(names, rng.normal(size=n), rng.uniform(0.5, 2, n), layers, {"seed": seed}, {},
                         embedding=LITE0)


def test_embedding_is_the_input_of_the_classifier_head(embedder):
    images = _images()
    emb = embedder(images)
    assert emb.shape == (3, WIDTH) and np.isfinite(emb).all() and (emb != 0).any(axis=1).all()
    # the head applied to the embedding gives the classifier's own logits: the features before the head
    clf = build_scorer(LITE0, "cpu")
    with torch.inference_mode():
        head = embedder.model._fc(torch.from_numpy(emb).float()).numpy()
    assert np.allclose(head, clf.logits(images).numpy(), rtol=0, atol=1e-3)
    # one image at a time: its embedding does not depend on the batch
    assert np.array_equal(embedder(images[1:2]), emb[1:2])


def test_embedding_model_file_round_trip_and_unknown_backbone_refused(tmp_path):
    model = _model(FEATURE_COLUMNS[:3])
    path = save_model(model, tmp_path / "m.json")
    back = load_model(path)
    assert back.embedding == LITE0 and back.n_inputs == 3 + WIDTH
    x = np.random.default_rng(1).normal(size=(5, 3 + WIDTH))
    assert np.array_equal(back.predict(x), model.predict(x))
    data = json.loads(path.read_text())
    data["embedding"] = "timm:resnet50"
    path.write_text(json.dumps(data))
    with pytest.raises(ModelFileError, match="unknown learned_q embedding backbone 'timm:resnet50'") as err:
        load_model(path)
    assert str(path) in str(err.value) and LITE0 in str(err.value)
    data["embedding"] = LITE0
    data["mean"] = data["mean"][:3]  # the embedding's inputs missing
    path.write_text(json.dumps(data))
    with pytest.raises(ModelFileError, match=f"one number per feature and embedding dimension \\({3 + WIDTH}\\)"):
        load_model(path)
    # a features-only file has no embedding key: the format is unchanged for those
    assert "embedding" not in LearnedQModel(("f_tv",), np.zeros(1), np.ones(1), model.layers[1:]).to_dict()


def test_scorer_with_embedding_runs_in_process_and_q_does_not_depend_on_the_batch(tmp_path, embedder):
    images = _images()
    for names in (FEATURE_COLUMNS[:5], ()):  # features + embedding, embedding alone
        model = _model(names, seed=len(names))
        path = save_model(model, tmp_path / f"m{len(names)}.json")
        scorer = build_scorer(f"learned_q:{path}", "cpu")
        assert not scorer.per_image_cpu and not scorer.scores_in_workers
        out = scorer.score(images, None)
        feats = qfeatures.batch_features(images)
        x = np.concatenate([feats[:, [FEATURE_COLUMNS.index(f) for f in names]], embedder(images)], axis=1)
        assert np.array_equal(out["q"], model.predict(x))
        assert np.array_equal(out["f_tv"], feats[:, FEATURE_COLUMNS.index("f_tv")])
        alone = np.concatenate([scorer.score(images[i:i + 1], None)["q"] for i in range(3)])
        assert np.array_equal(alone, out["q"])
    # through the engine, batches of 2: the same q as scoring each image alone
    from test_learned_q import _write_manifest  # the features tests' images and manifest

    manifest = _write_manifest(tmp_path, 3)
    got = pd.read_parquet(score_manifest(f"learned_q:{path}", manifest, tmp_path / "lq.parquet", batch_size=2,
                                         num_workers=0, device="cpu", progress=False)).sort_values("image_id")
    from PIL import Image

    pix = [torch.from_numpy(np.asarray(Image.open(tmp_path / f"im{i}.png")).transpose(2, 0, 1).copy())[None]
           for i in range(3)]
    assert np.array_equal(got["q"].to_numpy(), np.concatenate([scorer.score(p, None)["q"] for p in pix]))


def test_embeddings_are_aligned_by_key_and_missing_rows_refused(tmp_path):
    keys = pd.DataFrame({"image_id": ["a", "a", "b"], "corruption": ["clean", "fog", "clean"],
                         "severity": [0, 3, 0]})
    emb = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.save(tmp_path / "e.npy", emb[::-1])
    keys.iloc[::-1].to_parquet(tmp_path / "e.keys.parquet", index=False)
    assert np.array_equal(read_embeddings(tmp_path / "e.npy", keys), emb)
    extra = pd.concat([keys, pd.DataFrame({"image_id": ["c"], "corruption": ["clean"], "severity": [0]})])
    with pytest.raises(ValueError, match="no embedding for 1 of 4 rows"):
        read_embeddings(tmp_path / "e.npy", extra)
    with pytest.raises(ValueError, match="do not exist"):
        read_embeddings(tmp_path / "nope.npy", keys)


def test_fit_with_embedding_matches_scikit_learn_and_cross_fits():
    from test_learned_q import _eval_data  # synthetic score set, correctness from feature 0

    from iqa_lib.analysis.learned_q_eval import cross_fitted

    ev = _eval_data()
    rng = np.random.default_rng(7)
    ev.embedding, ev.backbone = rng.normal(size=(ev.scores.n_rows, WIDTH)), LITE0
    ev.embedding[:, 10] += 2 * ev.features[:, 0]  # the embedding carries the signal too
    x, _, backbone = ev.inputs("embedding")
    y = ev.scores.m["a"]
    model = fit_model(x, y, TrainSettings(hidden=0, alpha=1.0), (), backbone)
    z = (x - x.mean(0)) / x.std(0)
    ref = LogisticRegression(C=1.0, max_iter=1000).fit(z, y)
    assert model.embedding == LITE0 and model.n_inputs == WIDTH
    assert np.allclose(model.logit(x), ref.decision_function(z), atol=1e-8)
    allowed = np.ones(ev.scores.n_rows, dtype=bool)
    both = cross_fitted(ev, ["a"], allowed, TrainSettings(hidden=0), n_folds=3, inputs="both")
    assert both.shape == (ev.scores.n_rows,) and ((both > 0) & (both < 1)).all()
    with pytest.raises(ValueError, match="inputs 'pixels'"):
        ev.inputs("pixels")


def test_learn_q_with_embeddings_writes_a_model_the_scorer_reads(tmp_path):
    from iqa_lib.pipeline.learn_q import LearnQSettings, learn_q

    rng = np.random.default_rng(11)
    n_img, variants = 150, 3
    keys = pd.DataFrame({"image_id": np.repeat([f"i{i}" for i in range(n_img)], variants),
                         "corruption": np.tile(["clean", "fog", "snow"], n_img),
                         "severity": np.tile([0, 2, 2], n_img), "label": 1})
    feats = rng.normal(size=(len(keys), len(FEATURE_COLUMNS)))
    keys.assign(q=0.5, **dict(zip(FEATURE_COLUMNS, feats.T, strict=True))).to_parquet(tmp_path / "f.parquet")
    z = rng.normal(size=(len(keys), 4))  # an embedding of low rank, as a backbone's are
    emb = (z @ rng.normal(size=(4, WIDTH)) + 0.1 * rng.normal(size=(len(keys), WIDTH))).astype(np.float32)
    np.save(tmp_path / "e.npy", emb[::-1])
    keys[["image_id", "corruption", "severity"]].iloc[::-1].to_parquet(tmp_path / "e.keys.parquet", index=False)
    correct = (z[:, 0] + 0.3 * rng.normal(size=len(keys)) > 0)
    keys.assign(correct=correct).to_parquet(tmp_path / "lite0.parquet")
    for only in (False, True):
        out = tmp_path / f"m{only}.json"
        res = learn_q(LearnQSettings(tmp_path / "f.parquet", {"lite0": tmp_path / "lite0.parquet"}, out,
                                     hidden=0, alpha=30.0, embeddings=tmp_path / "e.npy", backbone=LITE0,
                                     use_features=not only))
        model = load_model(out)
        assert model.embedding == LITE0 and model.features == (() if only else FEATURE_COLUMNS)
        assert model.provenance["embedding"] == LITE0 and str(tmp_path / "e.npy") in model.provenance["data"]
        x = emb.astype(np.float64) if only else np.concatenate([feats, emb], axis=1)
        assert np.array_equal(model.predict(x), res.model.predict(x))
        assert res.metrics["held_out_images"]["lite0"]["auc"] > 0.8  # the signal is in the embedding
    with pytest.raises(ModelFileError, match="unknown learned_q embedding backbone"):
        learn_q(LearnQSettings(tmp_path / "f.parquet", {"lite0": tmp_path / "lite0.parquet"}, out,
                               embeddings=tmp_path / "e.npy", backbone="timm:resnet50"))
