"""The ``learn-q`` stage: train a ``learned_q`` model from score files and write it as JSON.

Inputs: a ``learned_q`` score file (its ``f_*`` feature columns; any ``learned_q`` model
writes them, the features do not depend on the model) and task-model score files (their
``correct``). The split is by image (:func:`iqa_lib.analysis.learned_q.train`); the model
file carries its provenance (data files and their SHA-256, task models, features, split,
seed) and its held-out AUCs with n. ``iqa-kit learn-q`` calls :func:`learn_q`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from iqa_lib import defaults
from iqa_lib.analysis.learned_q import TrainResult, TrainSettings, load_training_data, train
from iqa_lib.locks import output_lock
from iqa_lib.scorers.learned_q_model import load_model, save_model


@dataclass(frozen=True)
class LearnQSettings:
    """Where the data are, which task models to learn from, where the model goes, how to fit."""

    features: Path
    task_files: dict[str, Path]  # task model name -> its score file
    out: Path
    train_models: tuple[str, ...] = ()  # () = every task model given
    hidden: int = TrainSettings.hidden
    alpha: float = TrainSettings.alpha
    seed: int = defaults.SEED
    test_fraction: float = defaults.TEST_FRACTION
    wait: bool = False
    note: str = ""  # what the data are, in words, kept in the provenance
    embeddings: Path | None = None  # a backbone's embeddings of the feature rows (.npy, keys beside it)
    backbone: str | None = None  # the backbone that computed them (a spec of learned_q_model.BACKBONES)
    use_features: bool = True  # False: the embedding alone


def learn_q(settings: LearnQSettings) -> TrainResult:
    """Train, write the model file under its output lock, read it back to check it, return it."""
    data = load_training_data(settings.features, dict(settings.task_files), settings.embeddings,
                              settings.backbone, settings.use_features)
    models = list(settings.train_models) or list(settings.task_files)
    unknown = [m for m in models if m not in settings.task_files]
    if unknown:
        raise ValueError(f"--train-models {unknown} have no score file among --task ({sorted(settings.task_files)})")
    result = train(data, models, TrainSettings(settings.hidden, settings.alpha, settings.seed),
                   settings.test_fraction)
    if settings.note:
        result.model.provenance["note"] = settings.note
    with output_lock(settings.out, wait=settings.wait):
        save_model(result.model, settings.out)
    check = load_model(settings.out)
    if (check.predict(data.features[:64]) != result.model.predict(data.features[:64])).any():
        raise RuntimeError(f"{settings.out}: the model read back predicts otherwise than the one trained")
    return result
