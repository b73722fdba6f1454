"""Weak task-guided scorer ZSCLIP-IQA: zero-shot CLIP confidence over the class names.

The image embedding (unit norm) against the unit text embeddings of the K
class prompts gives cosines s. Then ``q_p = max softmax(s / T)``,
``q_h = entropy(softmax(s / T))`` (nats), ``q_l = max s``, ``pred = argmax s``.

Defaults (both options of the spec, both ambiguities the paper leaves open):

* ``templates: paper`` = the paper's example prompt ``"A picture of a {}."``;
  ``openai80`` is the usual 80-prompt ensemble (embeddings averaged per class,
  then renormalised), ``simple`` open_clip's short ensemble; or give a list.
* ``temperature: 0.01``, i.e. CLIP's own x100 logit scale. The paper writes
  softmax over raw cosines (T = 1): over 1000 classes with cosines in a narrow
  band that is almost uniform (q_p near 1/1000), so T = 1 is available but
  not the default. q_l and pred do not depend on T.
* ``temperature: model`` reads the model's own learned scale: the softmax sees
  ``exp(logit_scale) * s + logit_bias``, the logits the model was trained on.
  For OpenAI CLIP ``exp(logit_scale)`` is 100 (the fixed default's 0.01); for
  models trained otherwise (SigLIP's sigmoid loss: scale about 110-120 and a
  bias about -10 to -17; other CLIPs' learned scales) the fixed 0.01 is wrong.
  The bias is added for fidelity to the model's logits, but a constant added
  to every class leaves the softmax, hence q_p and q_h, unchanged: only the
  scale matters to them. The temperature used is stored as ``self.temperature``.

Class names: the 1000 ImageNet names on ImageNet labels; on a manifest of its
own classes the dataset's readable class names (option ``classnames``, a list
or a file of one name per line, overrides either); with option ``class_map``
the ImageNet names of the mapped wnids, pred then being the own class
(:mod:`iqa_lib.scorers.label_space`).

Text embeddings are computed once per run (kept in memory, keyed by model,
weights, templates and class names) and, with option ``text_cache: DIR``,
also on disk under the same key.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F

from iqa_lib.fileio import atomic_write_with
from iqa_lib.scorers.base import (
    LOGITS,
    Scorer,
    confidence_columns,
    logits_rows,
    normalise,
    resize_center_crop,
    to_unit_float,
)
from iqa_lib.scorers.label_space import LabelSpace, resolve_label_space
from iqa_lib.scorers.spec import ScorerSpec, SpecError
from iqa_lib.scorers.weights import (
    download_errors,
    hf_cache_dir,
    hf_cached_file,
    hf_offline_if_unreachable,
    local_weights,
)

DEFAULT_TEMPERATURE = 0.01
DEFAULT_TEMPLATES = "paper"
PAPER_TEMPLATES = ("A picture of a {}.",)
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

# Text embeddings of this process, keyed like the disk cache: computed once per run.
_TEXT_CACHE: dict[str, torch.Tensor] = {}


def resolve_templates(templates: Any = None) -> tuple[str, ...]:
    """Template strings with ``{}`` for a set name, a single template, or a list."""
    from open_clip import zero_shot_metadata as meta

    templates = DEFAULT_TEMPLATES if templates is None else templates
    if isinstance(templates, str):
        if templates == "paper":
            return PAPER_TEMPLATES
        if templates in ("openai80", "simple"):
            src = meta.OPENAI_IMAGENET_TEMPLATES if templates == "openai80" else meta.SIMPLE_IMAGENET_TEMPLATES
            return tuple(t("{}") if callable(t) else str(t) for t in src)
        return (templates,)
    return tuple(templates)


def imagenet_classnames() -> tuple[str, ...]:
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    return tuple(IMAGENET_CLASSNAMES)


def model_temperature(model: torch.nn.Module, option: Any) -> tuple[float, float]:
    """(T, bias) for the softmax ``s / T + bias``: a fixed T, or the model's own (``"model"``).

    ``"model"`` reads ``logit_scale`` (stored as a log, as open_clip and CLIP
    keep it: T = 1 / exp(logit_scale)) and ``logit_bias`` when the model has one.
    """
    if option != "model":
        return float(option), 0.0
    scale = getattr(model, "logit_scale", None)
    if scale is None:
        raise SpecError(
            f"temperature 'model': {type(model).__name__} has no logit_scale; give a number "
            "(0.01 = CLIP's x100)"
        )
    bias = getattr(model, "logit_bias", None)
    t = 1.0 / float(torch.as_tensor(scale).detach().float().exp())
    return t, 0.0 if bias is None else float(torch.as_tensor(bias).detach().float())


def prompt_classnames(space: LabelSpace) -> tuple[str, ...]:
    """The names to prompt with: a class map's ImageNet names, the label space's, or ImageNet's 1000."""
    cmap = space.class_map
    if cmap is not None:
        names = imagenet_classnames()
        return tuple(names[c] for c in cmap.columns)
    return space.classnames or imagenet_classnames()


def text_cache_key(arch: str | None, weights_id: str, templates: Any, classnames: Any) -> str:
    """What the text embeddings depend on, hashed: the key of the memory and disk caches."""
    key = {"arch": arch, "weights": weights_id, "templates": templates, "classnames": classnames}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


class ZeroShotClipScorer(Scorer):
    """ZSCLIP-IQA on an open_clip model."""

    kind = "zero_shot"

    def __init__(
        self,
        spec: ScorerSpec,
        device: torch.device,
        model: torch.nn.Module,
        tokenizer: Any,
        preprocess_cfg: dict[str, Any],
        weights_id: str,
        label_space: LabelSpace | None = None,
    ):
        super().__init__(spec, device)
        self.label_space = label_space if label_space is not None else resolve_label_space(spec)
        self.model = model.eval().to(self.device)
        self.tokenizer = tokenizer
        size = preprocess_cfg.get("size", 224)
        self.input_size = tuple(size) if isinstance(size, list | tuple) else int(size)
        self.mean = tuple(preprocess_cfg.get("mean") or OPENAI_MEAN)
        self.std = tuple(preprocess_cfg.get("std") or OPENAI_STD)
        self.interpolation = preprocess_cfg.get("interpolation") or "bicubic"
        self.templates = resolve_templates(spec.options.get("templates"))
        cmap = self.label_space.class_map
        self.owner = cmap.owner if cmap else None  # own class of each prompted ImageNet class
        self.classnames = prompt_classnames(self.label_space)
        self.temperature, self.logit_bias = model_temperature(
            model, spec.options.get("temperature", DEFAULT_TEMPERATURE)
        )
        cache_dir = spec.options.get("text_cache")
        self.text_cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.cache_key = text_cache_key(spec.name, weights_id, self.templates, self.classnames)
        self._text: torch.Tensor | None = None

    # ------------------------------------------------------------------ text
    def text_embeddings(self) -> torch.Tensor:
        """(K, D) unit text embeddings of the class names, computed once per key."""
        if self._text is not None:
            return self._text
        text = _TEXT_CACHE.get(self.cache_key)
        disk = self.text_cache_dir / f"{self.cache_key}.pt" if self.text_cache_dir else None
        if text is None and disk is not None and disk.is_file():
            text = torch.load(disk, map_location="cpu", weights_only=True)
        if text is None:
            text = self._encode_classnames()
            if disk is not None:
                disk.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_with(disk, lambda tmp: torch.save(text, tmp))
        _TEXT_CACHE[self.cache_key] = text
        self._text = text.to(self.device, torch.float32)
        return self._text

    def _encode_classnames(self) -> torch.Tensor:
        total = None
        with torch.inference_mode(), self.autocast():
            for template in self.templates:
                prompts = [template.replace("{}", c) for c in self.classnames]
                tokens = self.tokenizer(prompts).to(self.device)
                emb = F.normalize(self.model.encode_text(tokens).float(), dim=-1)
                total = emb if total is None else total + emb
        return F.normalize(total / len(self.templates), dim=-1).cpu()

    # ----------------------------------------------------------------- image
    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        x = resize_center_crop(to_unit_float(images), self.input_size, self.interpolation)
        return normalise(x, self.mean, self.std)

    def cosines(self, images: torch.Tensor) -> torch.Tensor:
        """(N, K) cosine similarities s between images and class prompts."""
        text = self.text_embeddings()
        with torch.inference_mode(), self.autocast():
            feats = self.model.encode_image(self.preprocess(images))
        return F.normalize(feats.float(), dim=-1) @ text.T

    def score(self, images: torch.Tensor, labels: torch.Tensor | None) -> dict[str, np.ndarray]:
        s = self.cosines(images)
        labels = labels if self.defines_correct else None
        z = s / self.temperature + self.logit_bias
        out = confidence_columns(z, s, labels, self.owner)
        if self.keep_logits:
            out[LOGITS] = logits_rows(z)  # what the softmax (q_p, q_h) sees
        return out


@dataclass(frozen=True)
class _Weights:
    """Where a model's weights came from: the text-cache id, the file (if known) and a line for reports."""

    id: str
    file: Path | None
    source: str


def build_open_clip(
    spec: ScorerSpec, device: torch.device, label_space: LabelSpace | None = None
) -> ZeroShotClipScorer:
    import open_clip  # heavy: loaded only when an open_clip scorer is built

    arch, tag = spec.name, spec.variant
    _check_arch(open_clip, spec)
    known_tags = open_clip.list_pretrained_tags_by_model(arch)
    pcfg = open_clip.get_pretrained_cfg(arch, tag) if tag in known_tags else {}
    quick_gelu = bool(pcfg.get("quick_gelu", False))
    if spec.options.get("weights"):
        model, weights = _local_model(open_clip, spec, quick_gelu)
    else:
        model, weights = _pretrained_model(open_clip, spec, pcfg, known_tags, quick_gelu)
    scorer = ZeroShotClipScorer(
        spec, device, model, open_clip.get_tokenizer(arch), _preprocess_cfg(model, pcfg), weights.id,
        label_space=label_space,
    )
    scorer.weights_file, scorer.weights_source = weights.file, weights.source
    return scorer


def _check_arch(open_clip: Any, spec: ScorerSpec) -> None:
    if spec.name not in open_clip.list_models():
        close = difflib.get_close_matches(spec.name, open_clip.list_models(), n=5)
        raise SpecError(
            f"unknown open_clip architecture {spec.name!r} in {spec.text!r}"
            + (f"; did you mean {', '.join(close)}?" if close else "")
            + " (open_clip.list_models() lists them; add your own with open_clip.add_model_config)"
        )


def _local_model(open_clip: Any, spec: ScorerSpec, quick_gelu: bool) -> tuple[torch.nn.Module, _Weights]:
    """The architecture with the checkpoint of option ``weights`` (keyed by path, size and time)."""
    path = local_weights(spec.options["weights"], spec.text)
    st = path.stat()
    model = open_clip.create_model(spec.name, pretrained=str(path), force_quick_gelu=quick_gelu)
    return model, _Weights(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}", path, "spec option weights")


def _pretrained_model(
    open_clip: Any, spec: ScorerSpec, pcfg: dict[str, Any], known_tags: list[str], quick_gelu: bool
) -> tuple[torch.nn.Module, _Weights]:
    """The architecture with a pretrained tag's weights, downloaded (or read from the cache)."""
    arch, tag = spec.name, spec.variant
    if tag not in known_tags:
        raise SpecError(
            f"unknown pretrained tag {tag!r} for open_clip model {arch!r}; valid tags: "
            + (", ".join(known_tags) or "none (give a checkpoint with option `weights`)")
        )
    hub = pcfg.get("hf_hub")
    if hub:
        hf_offline_if_unreachable()
        source, looked_in, filename = f"hf-hub:{hub}", hf_cache_dir(), "open_clip_pytorch_model.bin"
    else:
        source, looked_in = pcfg.get("url", tag), str(Path("~/.cache/clip").expanduser())
        filename = Path(urlparse(source).path).name
    with download_errors(spec.text, filename, looked_in, source):
        model = open_clip.create_model(arch, pretrained=tag, force_quick_gelu=quick_gelu)
    if hub:
        repo = hub.rstrip("/")
        file = hf_cached_file(repo, "open_clip_model.safetensors") or hf_cached_file(repo, filename)
    else:
        file = Path(looked_in) / filename
    found = file if file is not None and file.is_file() else None
    return model, _Weights(f"tag:{tag}", found, f"open_clip {arch}/{tag} ({source})")


def _preprocess_cfg(model: torch.nn.Module, pcfg: dict[str, Any]) -> dict[str, Any]:
    """The model's own preprocessing, overridden by the pretrained tag's mean, std and interpolation."""
    preprocess_cfg = dict(getattr(model.visual, "preprocess_cfg", None) or {})
    for key in ("mean", "std", "interpolation"):
        if pcfg.get(key):
            preprocess_cfg[key] = pcfg[key]
    preprocess_cfg.setdefault("size", getattr(model.visual, "image_size", 224))
    return preprocess_cfg
