"""One registry of scorers: a spec (string or mapping) in, a ready :class:`Scorer` out.

Which builder a family uses and its help line come from its record in
:data:`iqa_lib.scorers.families.SCORER_FAMILIES`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

# torch is loaded here already, so the device helper costs nothing more; the spec-only
# paths (CLI parser, params validation) import iqa_lib.scorers.spec, never this module.
from iqa_lib.device import pick_device
from iqa_lib.scorers.base import Scorer
from iqa_lib.scorers.families import SCORER_FAMILIES
from iqa_lib.scorers.label_space import resolve_label_space
from iqa_lib.scorers.spec import ScorerSpec, parse_spec


def family_builder(family: str) -> Callable[..., Scorer]:
    """The family's builder, imported only now: a scorer's heavy dependencies never load for another."""
    module, _, attr = SCORER_FAMILIES[family].builder.partition(":")
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
    parsed = as_spec(spec)
    space = resolve_label_space(parsed, classes, classnames, unlabelled)
    if parsed.kind == "nr_iqa":
        scorer = family_builder(parsed.family)(parsed, pick_device(device))
        scorer.label_space = space
        return scorer
    if warn and space.warning:
        print(f"warning: {space.warning}", file=sys.stderr)
    return family_builder(parsed.family)(parsed, pick_device(device), label_space=space)


def list_scorers() -> dict[str, str]:
    """Scorer families with a one-line description and an example spec each."""
    return {name: family.help for name, family in SCORER_FAMILIES.items()}
