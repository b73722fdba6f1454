"""Training ``learned_q``: features + task models' correctness in, a checked model file out.

The data: one ``learned_q`` score file (its ``f_*`` feature columns, computed by the scoring
engine like every score) and task-model score files (their ``correct`` column), joined on
``image_id, corruption, severity``. Every split is by image (all variants of one image on
one side): ImageNet-C's 76 variants of an image are not independent, and an image on both
sides of a split would flatter any model.

The model (:mod:`iqa_lib.scorers.learned_q_model`): standardised features into a small
ReLU network (``hidden`` units; none = logistic regression), fitted by scikit-learn with a
fixed seed on the training images' rows, one row per (image variant, task model) so the
target is the pool's correctness. Inference is numpy (the scorer never imports
scikit-learn).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from iqa_lib import defaults
from iqa_lib.analysis.io import KEYS, read_schema
from iqa_lib.scorers.learned_q_model import Layer, LearnedQModel, check_backbone
from iqa_lib.scorers.qfeature_columns import FEATURE_COLUMNS
from iqa_lib.stats.delong import delong
from iqa_lib.stats.logistic import auc_score
from iqa_lib.stats.splits import group_test_mask

DEFAULT_HIDDEN = 32
DEFAULT_ALPHA = 1e-3  # L2 penalty (scikit-learn's alpha for the network, 1/C for logistic)
MAX_ITER = 200


@dataclass(frozen=True)
class TrainSettings:
    """How a model is fitted: hidden units (0 = logistic regression), L2 penalty, seed."""

    hidden: int = DEFAULT_HIDDEN
    alpha: float = DEFAULT_ALPHA
    seed: int = defaults.SEED
    max_iter: int = MAX_ITER


@dataclass
class TrainingData:
    """Aligned rows: keys, features (N, F), image codes and each task model's 0/1 correctness."""

    keys: pd.DataFrame
    features: np.ndarray
    feature_names: tuple[str, ...]
    image: np.ndarray
    correct: dict[str, np.ndarray] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # file -> sha256 (provenance)
    embedding: str | None = None  # backbone whose embedding follows the features in each row

    @property
    def n_rows(self) -> int:
        return int(self.features.shape[0])


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_features(path: str | Path) -> tuple[pd.DataFrame, np.ndarray, tuple[str, ...]]:
    """Keys and the ``f_*`` columns of a ``learned_q`` score file (every feature the kit computes)."""
    p = Path(path)
    names = read_schema(p).names
    missing = [c for c in (*KEYS, *FEATURE_COLUMNS) if c not in names]
    if missing:
        raise ValueError(f"{p}: not a learned_q feature file (missing {missing[:4]}...); write one with "
                         "`iqa-kit score --scorer learned_q --manifest ... --out <file>`")
    df = pq.read_table(p, columns=[*KEYS, *FEATURE_COLUMNS]).to_pandas()
    x = df[list(FEATURE_COLUMNS)].to_numpy(np.float64)
    if not np.isfinite(x).all():
        raise ValueError(f"{p}: non-finite feature values; rescore the file")
    return df[list(KEYS)].astype({"image_id": str, "corruption": str}), x, FEATURE_COLUMNS


def read_correct(path: str | Path, keys: pd.DataFrame) -> np.ndarray:
    """A task file's ``correct`` aligned with ``keys``; every key must be there."""
    p = Path(path)
    if "correct" not in read_schema(p).names:
        raise ValueError(f"{p}: no 'correct' column (a task model scored on labelled images has one)")
    df = pq.read_table(p, columns=[*KEYS, "correct"]).to_pandas()
    df = df.astype({"image_id": str, "corruption": str})
    merged = keys.merge(df, on=list(KEYS), how="left", validate="one_to_one")
    if merged["correct"].isna().any():
        n = int(merged["correct"].isna().sum())
        raise ValueError(f"{p}: lacks 'correct' for {n} of the {len(keys)} feature rows; score the same "
                         "manifest with the task model")
    return merged["correct"].to_numpy().astype(np.int8)


def load_training_data(features_file: str | Path, task_files: dict[str, str | Path],
                       embeddings: str | Path | None = None, backbone: str | None = None,
                       use_features: bool = True) -> TrainingData:
    """Features from ``features_file`` (unless not ``use_features``), then ``backbone``'s
    ``embeddings`` (:func:`read_embeddings`) when given, and each named task model's correctness, aligned."""
    if not task_files:
        raise ValueError("learn-q needs at least one task-model score file with a 'correct' column")
    if (embeddings is None) != (backbone is None) or not (use_features or embeddings is not None):
        raise ValueError("embeddings need their backbone (and the features may be left out only with embeddings)")
    keys, x, names = read_features(features_file)
    image = pd.factorize(keys["image_id"], sort=True)[0].astype(np.int64)
    sources = {str(features_file): _digest(Path(features_file))}
    if embeddings is not None:
        check_backbone(backbone, "--backbone")
        emb = read_embeddings(embeddings, keys)
        x, names = (np.concatenate([x, emb], axis=1), names) if use_features else (emb, ())
        sources[str(embeddings)] = _digest(Path(embeddings))
    data = TrainingData(keys, x, names, image, sources=sources, embedding=backbone)
    for model, path in task_files.items():
        data.correct[model] = read_correct(path, keys)
        data.sources[str(path)] = _digest(Path(path))
    return data


def image_folds(image: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold id per row, by image: each image's rows in one fold, images dealt at random."""
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    codes = np.unique(image)
    if codes.size < n_folds:
        raise ValueError(f"{n_folds} folds need at least {n_folds} images, got {codes.size}")
    rng = np.random.default_rng(seed)
    fold_of = np.empty(codes.size, dtype=np.int64)
    fold_of[rng.permutation(codes.size)] = np.arange(codes.size) % n_folds
    return fold_of[np.searchsorted(codes, image)]


def read_embeddings(path: str | Path, keys: pd.DataFrame) -> np.ndarray:
    """Backbone embeddings (``<name>.npy``, rows x width) aligned with ``keys`` through the
    ``<name>.keys.parquet`` beside it (image_id, corruption, severity of each row); every key must be there."""
    p = Path(path)
    key_file = p.with_name(p.stem + ".keys.parquet")
    if not (p.is_file() and key_file.is_file()):
        raise ValueError(f"embeddings {p} or its keys {key_file} do not exist; write both with "
                         "benchmarks/learned_q_embeddings.py")
    emb = np.load(p, mmap_mode="r")
    ek = pd.read_parquet(key_file).astype({"image_id": str, "corruption": str})
    if emb.ndim != 2 or emb.shape[0] != len(ek):
        raise ValueError(f"{p}: shape {emb.shape} does not match the {len(ek)} rows of {key_file}")
    ek["_row"] = np.arange(len(ek))
    merged = keys.astype({"image_id": str, "corruption": str}).merge(ek, on=list(KEYS), how="left",
                                                                   validate="one_to_one")
    if merged["_row"].isna().any():
        raise ValueError(f"{p}: no embedding for {int(merged['_row'].isna().sum())} of {len(keys)} rows; "
                         "compute embeddings for the same manifest")
    return np.asarray(emb[merged["_row"].to_numpy(np.int64)], dtype=np.float64)


def fit_model(x: np.ndarray, y: np.ndarray, settings: TrainSettings, names: Sequence[str],
              embedding: str | None = None) -> LearnedQModel:
    """Fit P(correct | inputs) on rows ``x`` (N, features then ``embedding``'s width) with 0/1
    labels ``y``; a numpy model out."""
    # scikit-learn imported here: only training needs it, never the scorer
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    y = np.asarray(y).astype(np.int64)
    if np.unique(y).size < 2:
        raise ValueError("the training rows are all correct or all wrong: nothing to learn from")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)  # a constant feature contributes nothing
    z = (x - mean) / scale
    if settings.hidden == 0:
        clf = LogisticRegression(C=1.0 / settings.alpha, max_iter=1000).fit(z, y)
        layers = (Layer(clf.coef_.T.astype(np.float64), clf.intercept_.astype(np.float64)),)
    else:
        clf = MLPClassifier(hidden_layer_sizes=(settings.hidden,), alpha=settings.alpha,
                            max_iter=settings.max_iter, random_state=settings.seed, early_stopping=True,
                            validation_fraction=0.1, n_iter_no_change=10).fit(z, y)
        layers = tuple(Layer(w.astype(np.float64), b.astype(np.float64))
                       for w, b in zip(clf.coefs_, clf.intercepts_, strict=True))
    return LearnedQModel(tuple(names), mean, scale, layers, embedding=embedding)


def stacked(data: TrainingData, rows: np.ndarray, models: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels with one row per (row, task model): the pool's correctness."""
    x = np.concatenate([data.features[rows]] * len(models))
    y = np.concatenate([data.correct[m][rows] for m in models])
    return x, y


def auc_table(q: np.ndarray, data: TrainingData, rows: np.ndarray, models: Sequence[str]) -> dict[str, dict]:
    """Per task model: AUC of ``q`` for its correctness on ``rows``, clustered-DeLong SE, n."""
    out = {}
    for m in models:
        y = data.correct[m][rows]
        res = delong(q[rows], y, clusters=data.image[rows])
        out[m] = {"auc": float(auc_score(q[rows], y)), "se": float(np.sqrt(res.cov[0, 0])),
                  "n_rows": int(rows.sum() if rows.dtype == bool else rows.size),
                  "n_images": int(np.unique(data.image[rows]).size), "accuracy": float(y.mean())}
    return out


@dataclass(frozen=True)
class TrainResult:
    model: LearnedQModel
    metrics: dict[str, Any]


def train(
    data: TrainingData,
    models: Sequence[str],
    settings: TrainSettings = TrainSettings(),
    test_fraction: float = defaults.TEST_FRACTION,
    eval_models: Sequence[str] = (),
) -> TrainResult:
    """Fit on the training images' rows of ``models``; AUC on the held-out images for every
    task model of ``data`` (``eval_models`` too: a model not trained on is held out twice)."""
    unknown = [m for m in (*models, *eval_models) if m not in data.correct]
    if unknown:
        raise ValueError(f"no correctness for task model(s) {unknown}; have {sorted(data.correct)}")
    test = group_test_mask(data.image, test_fraction, settings.seed)
    x, y = stacked(data, ~test, models)
    model = fit_model(x, y, settings, data.feature_names, data.embedding)
    q = model.predict(data.features)
    every = list(dict.fromkeys([*models, *eval_models, *data.correct]))
    metrics = {"held_out_images": auc_table(q, data, test, every),
               "training_images": auc_table(q, data, ~test, list(models))}
    provenance = {
        "data": data.sources, "task_models": list(models),
        "held_out_task_models": [m for m in every if m not in models],
        "features": list(data.feature_names), "embedding": data.embedding,
        "split": {"by": "image_id", "test_fraction": test_fraction, "seed": settings.seed,
                  "n_train_images": int(np.unique(data.image[~test]).size),
                  "n_test_images": int(np.unique(data.image[test]).size),
                  "test_image_ids": sorted(data.keys["image_id"][test].unique().tolist())},
        "model": {"hidden": settings.hidden, "alpha": settings.alpha, "max_iter": settings.max_iter,
                  "kind": "logistic regression" if settings.hidden == 0 else "MLP, one ReLU layer"},
    }
    return TrainResult(LearnedQModel(model.features, model.mean, model.scale, model.layers, provenance,
                                     metrics, data.embedding), metrics)
