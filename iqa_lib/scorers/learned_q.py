"""``learned_q``: a quality score aligned with classifiers, P(correct) from cheap image features.

``q`` is the probability, estimated by a small model over the features of
:mod:`iqa_lib.scorers.qfeatures`, that a task model classifies the image correctly: **higher
= more likely correct**, in [0, 1]. ``learned_q`` uses the model shipped with the kit
(``iqa_lib/resources/learned_q/default.json``: trained on EfficientNet-Lite0 and Lite1
correctness over the 500-image ImageNet mini-reproduction, so that Lite2 stays a held-out
model; its provenance and held-out metrics are in the file); ``learned_q:PATH`` uses a model
that ``iqa-kit learn-q`` wrote (:mod:`iqa_lib.scorers.learned_q_model`).

Beside ``q`` the score file keeps every feature (columns ``f_*``): a file scored with any
``learned_q`` model is training data for ``iqa-kit learn-q``, and the features do not
depend on the model. Per-image CPU work (scored inside the engine's loader workers), on
every device, unless the model names an ``embedding`` backbone
(:mod:`iqa_lib.scorers.learned_q_embed`): then it runs batched in the scoring process like
the classifiers, the backbone on the scorer's device.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from iqa_lib.scorers.base import Scorer
from iqa_lib.scorers.learned_q_embed import Embedder
from iqa_lib.scorers.learned_q_model import LearnedQModel, ModelFileError, load_model
from iqa_lib.scorers.qfeatures import FEATURE_COLUMNS, batch_features, prepare_features
from iqa_lib.scorers.spec import ScorerSpec, SpecError
from iqa_lib.scorers.spec_files import family_default_file


def default_model_path() -> Path:
    """The shipped model file (package data; its family record names it)."""
    return family_default_file("learned_q")


def model_for(spec: ScorerSpec) -> tuple[LearnedQModel, Path]:
    """The model a ``learned_q`` spec names (its path, or the shipped default), checked."""
    if spec.options.get("weights") is not None or spec.options.get("model") is not None:
        raise SpecError(f"{spec.text!r}: learned_q takes its model file in the spec, `learned_q:PATH`, "
                        "not as an option")
    path = default_model_path() if spec.name is None else Path(spec.name).expanduser()
    model = load_model(path)
    unknown = [f for f in model.features if f not in FEATURE_COLUMNS]
    if unknown:
        raise ModelFileError(f"{path}: the model reads feature(s) {unknown[:5]} that this kit does not "
                             f"compute (it computes {len(FEATURE_COLUMNS)} f_* columns); retrain it with "
                             "this kit's `iqa-kit learn-q`")
    return model, path


class LearnedQScorer(Scorer):
    """q = the model's P(correct) on the image's features; the features as extra columns."""

    kind = "nr_iqa"
    per_image_cpu = True  # scored in the engine's loader workers (not with an embedding)

    def __init__(self, spec: ScorerSpec, device: torch.device):
        model, path = model_for(spec)
        # numpy features: the CPU on every device; a backbone: the scorer's device, in-process
        super().__init__(spec, torch.device(device) if model.embedding else torch.device("cpu"))
        self.model, self.weights_file = model, path
        self.weights_source = "the kit's shipped model" if spec.name is None else "a learn-q model file"
        self._index = [FEATURE_COLUMNS.index(f) for f in self.model.features]
        self.embedder = Embedder(model.embedding, self.device) if model.embedding else None
        self.per_image_cpu = self.embedder is None
        prepare_features()

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return images.cpu()

    def score(self, images: torch.Tensor, labels: torch.Tensor | None) -> dict[str, np.ndarray]:
        feats = batch_features(self.preprocess(images))
        x = feats[:, self._index]
        if self.embedder is not None:
            x = np.concatenate([x, self.embedder(images)], axis=1)
        out = {"q": self.model.predict(x)}
        out.update({name: feats[:, i] for i, name in enumerate(FEATURE_COLUMNS)})
        return out
