"""No-reference IQA scorers (paper section 4): one quality number ``q`` per image.

* ``tv``: anisotropic total variation of the RGB image in [0, 1], the mean
  absolute difference between vertical and horizontal neighbours (averaged
  over pixels and channels, so images of different sizes are comparable).
  Higher = more high-frequency content (noise raises it, blur lowers it).
* ``pyiqa:<metric>``: any pyiqa no-reference metric, called on whole batches.
  pyiqa's CLIP-IQA re-encodes its ten prompts on every call; the wrapper
  encodes them once. pyiqa is PolyForm Noncommercial licensed.

BRISQUE, NIQE and PIQE as their authors' releases compute them live in
:mod:`iqa_lib.scorers.brisque`, :mod:`iqa_lib.scorers.niqe` and
:mod:`iqa_lib.scorers.piqe` (batched torch, shared NSS pieces in
:mod:`iqa_lib.scorers.nss`).

Each sees the image at its scoring resolution: clean images after
Resize(256)+CenterCrop(224), ImageNet-C images as stored.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from iqa_lib.scorers.base import Scorer, to_unit_float
from iqa_lib.scorers.spec import ScorerSpec, SpecError
from iqa_lib.scorers.weights import WeightsError, hf_offline_if_unreachable, weights_error


class TotalVariationScorer(Scorer):
    kind = "nr_iqa"
    per_image_cpu = True  # scored in the engine's loader workers on the CPU
    weights_source = "no weights (tv: a formula)"

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return to_unit_float(images)

    def score(self, images: torch.Tensor, labels: torch.Tensor | None) -> dict[str, np.ndarray]:
        if images.device.type == "cpu" and images.dtype == torch.uint8:
            return {"q": total_variation_uint8(images.numpy())}
        with torch.inference_mode():
            return {"q": total_variation(self.preprocess(images)).double().cpu().numpy()}


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Per-image mean |vertical diff| + mean |horizontal diff| of (N, C, H, W) floats.

    The definition: on CPU the scorer computes the same number from the uint8
    pixels with :func:`total_variation_uint8`.
    """
    n = x.shape[0]
    tv = x.new_zeros(n)
    if x.shape[-2] > 1:
        tv = tv + (x[..., 1:, :] - x[..., :-1, :]).abs().reshape(n, -1).mean(dim=1)
    if x.shape[-1] > 1:
        tv = tv + (x[..., :, 1:] - x[..., :, :-1]).abs().reshape(n, -1).mean(dim=1)
    return tv


def total_variation_uint8(images: np.ndarray) -> np.ndarray:
    """:func:`total_variation` of ``images / 255`` from uint8 (N, C, H, W) pixels, in float64.

    Image by image: ``|a - b|`` as ``max(a, b) - min(a, b)`` in uint8 (exact),
    summed exactly in integers and divided once. No float copy of the batch (at
    the CPU batch of 64 that was a 38 MB tensor per op, above glibc's mmap
    threshold, so every op paid a fresh mapping and its page faults),
    single-threaded, ~12x the float path per core. The values are the exact
    ratios that the float32 path approximates (they agree to ~1e-7 relative).
    """
    n, c, h, w = images.shape
    out = np.zeros(n, dtype=np.float64)
    # a uint32 sum is exact up to 2**32 / 255 elements per image (5.6 Mpx RGB); uint64 beyond
    acc = np.uint32 if c * h * w * 255 < 2**32 else np.uint64
    v_count, h_count = c * (h - 1) * w * 255, c * h * (w - 1) * 255
    for i in range(n):
        x = images[i]
        if h > 1:
            a, b = x[:, 1:], x[:, :-1]
            d = np.maximum(a, b)
            d -= np.minimum(a, b)
            out[i] += int(np.add.reduce(d, axis=None, dtype=acc)) / v_count
        if w > 1:
            a, b = x[:, :, 1:], x[:, :, :-1]
            d = np.maximum(a, b)
            d -= np.minimum(a, b)
            out[i] += int(np.add.reduce(d, axis=None, dtype=acc)) / h_count
    return out


# ----------------------------------------------------------------------- pyiqa


def pyiqa_nr_metrics() -> list[str]:
    import pyiqa

    return list(pyiqa.list_models(metric_mode="NR"))


class PyiqaScorer(Scorer):
    """A pyiqa no-reference metric, run in fp32 on whole batches."""

    kind = "nr_iqa"

    def __init__(self, spec: ScorerSpec, device: torch.device, metric: torch.nn.Module):
        super().__init__(spec, device)
        self.metric = metric
        self.lower_better = bool(getattr(metric, "lower_better", False))

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return to_unit_float(images)

    def score(self, images: torch.Tensor, labels: torch.Tensor | None) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            q = self.metric(self.preprocess(images))
        q = torch.as_tensor(q).reshape(images.shape[0], -1)[:, 0]
        return {"q": q.double().cpu().numpy()}


def _cache_clipiqa_text(net: torch.nn.Module) -> None:
    """Make pyiqa's CLIP-IQA encode its prompt pairs once instead of on every call."""
    try:
        with _pkg_resources_shim():
            from pyiqa.archs.clipiqa_arch import CLIPIQA
    except ImportError:
        return
    if not isinstance(net, CLIPIQA) or net.model_type != "clipiqa":
        return
    cached: dict[str, torch.Tensor] = {}

    def forward(x: torch.Tensor) -> torch.Tensor:
        x = (x - net.default_mean.to(x)) / net.default_std.to(x)
        clip_model = net.clip_model[0].to(x)
        if "text" not in cached:
            cached["text"] = clip_model.encode_text(net.prompt_pairs.to(x.device))
        logits, _ = clip_model(
            x, None, pos_embedding=net.pos_embedding, text_features=cached["text"]
        )
        probs = logits.reshape(logits.shape[0], -1, 2).softmax(dim=-1)
        return probs[..., 0].mean(dim=1, keepdim=True)

    net.forward = forward


@contextmanager
def _pkg_resources_shim() -> Iterator[None]:
    """Let openai-clip (used by pyiqa's CLIP metrics) import on setuptools >= 81.

    ``clip/clip.py`` does ``from pkg_resources import packaging``; setuptools
    81 removed ``pkg_resources``. A stand-in module offering just
    ``packaging`` is visible while pyiqa builds the metric, then removed.
    """
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        pass
    else:
        yield
        return
    import packaging.version

    shim = ModuleType("pkg_resources")
    shim.packaging = packaging  # type: ignore[attr-defined]
    sys.modules["pkg_resources"] = shim
    try:
        yield
    finally:
        if sys.modules.get("pkg_resources") is shim:
            del sys.modules["pkg_resources"]


@contextmanager
def _record_downloads(attempted: list[tuple[str, str]]) -> Iterator[None]:
    """Note each (url, destination) pyiqa or torch.hub tries to download, to name it on failure."""
    import pyiqa.utils.download_util as dl
    import torch.hub as hub

    original = hub.download_url_to_file

    def recording(url: str, dst: str, *args: Any, **kwargs: Any) -> Any:
        attempted.append((url, dst))
        return original(url, dst, *args, **kwargs)

    targets = [m for m in (hub, dl) if getattr(m, "download_url_to_file", None) is original]
    for m in targets:
        m.download_url_to_file = recording
    clip_model = None
    try:
        with _pkg_resources_shim():
            import pyiqa.archs.clip_model as clip_model
    except ImportError:
        pass
    clip_download = getattr(clip_model, "_download", None)
    if clip_download is not None:

        def clip_recording(url: str, root: str) -> Any:
            attempted.append((url, os.path.join(root, os.path.basename(url))))
            return clip_download(url, root)

        clip_model._download = clip_recording
    try:
        yield
    finally:
        for m in targets:
            m.download_url_to_file = original
        if clip_download is not None:
            clip_model._download = clip_download


def build_pyiqa(spec: ScorerSpec, device: torch.device) -> PyiqaScorer:
    _check_metric(spec)
    import pyiqa  # heavy: loaded only when a pyiqa scorer is built
    import pyiqa.utils.download_util as dl

    weights = spec.options.get("weights")
    attempted: list[tuple[str, str]] = []
    with _weights_option(spec, dl) as (kwargs, looked_in):
        hf_offline_if_unreachable()
        try:
            with _record_downloads(attempted), _pkg_resources_shim():
                metric = pyiqa.create_metric(spec.name, as_loss=False, device=torch.device(device), **kwargs)
        except (WeightsError, ImportError):
            raise
        except Exception as exc:
            # a download that failed says most; else a weight file the metric refused or could not read
            refused = None if attempted else _single_file_refused(spec, exc)
            raise (refused or _download_failure(spec, exc, attempted, looked_in)) from exc
    metric.eval()
    _cache_clipiqa_text(metric.net)
    scorer = PyiqaScorer(spec, device, metric)
    if weights:
        scorer.weights_file = Path(weights).expanduser() if Path(weights).expanduser().is_file() else None
        scorer.weights_source = f"spec option weights: {weights}"
    else:
        files = [Path(dst) for _, dst in attempted if Path(dst).is_file()]
        scorer.weights_file = files[-1] if len(files) == 1 else None
        scorer.weights_source = f"pyiqa {spec.name} downloads (cached in {looked_in})"
    return scorer


def _check_metric(spec: ScorerSpec) -> None:
    metrics = pyiqa_nr_metrics()
    if spec.name not in metrics:
        close = difflib.get_close_matches(spec.name, metrics, n=5)
        raise SpecError(
            f"unknown pyiqa no-reference metric {spec.name!r} in {spec.text!r}"
            + (f"; did you mean {', '.join(close)}?" if close else "")
            + f"; valid: {', '.join(metrics)}"
        )


@contextmanager
def _weights_option(spec: ScorerSpec, dl: ModuleType) -> Iterator[tuple[dict[str, Any], str]]:
    """``create_metric`` keyword arguments for option ``weights`` and where weights are looked for.

    A folder stands in for the torch-hub and pyiqa caches while the block runs;
    a file is passed as ``pretrained_model_path``.
    """
    weights = spec.options.get("weights")
    looked_in = f"{dl.DEFAULT_CACHE_DIR} and {Path(torch.hub.get_dir()) / 'checkpoints'}"
    if not weights:
        yield {}, looked_in
        return
    path = Path(weights).expanduser()
    if path.is_dir():
        with _cache_folder(path, dl):
            yield {}, f"{path / 'pyiqa'} and {path / 'checkpoints'}"
    elif path.is_file():
        yield {"pretrained_model_path": str(path)}, looked_in
    else:
        raise WeightsError(
            f"weights {str(path)!r} given for scorer {spec.text!r} do not exist; give a file "
            "or a torch-hub style folder (checkpoints/, pyiqa/, clip/)"
        )


@contextmanager
def _cache_folder(path: Path, dl: ModuleType) -> Iterator[None]:
    """A torch-hub style folder as the caches: checkpoints/ (torch.hub), pyiqa/ (pyiqa), clip/ (CLIP)."""
    old_hub, old_cache = torch.hub.get_dir(), dl.DEFAULT_CACHE_DIR
    torch.hub.set_dir(str(path))
    dl.DEFAULT_CACHE_DIR = str(path / "pyiqa")
    try:
        yield
    finally:
        torch.hub.set_dir(old_hub)
        dl.DEFAULT_CACHE_DIR = old_cache


def _single_file_refused(spec: ScorerSpec, exc: Exception) -> WeightsError | None:
    """The error for a weight file (option ``weights``) the metric takes none of, or cannot load.

    pyiqa passes ``create_metric``'s keywords to the network's constructor, so such a metric
    fails with a TypeError naming ``pretrained_model_path`` before it loads anything (pyiqa
    registers its networks lazily, so asking its registry first is not reliable).
    """
    weights = Path(str(spec.options.get("weights") or "")).expanduser()
    if not weights.is_file():
        return None
    if isinstance(exc, TypeError) and "pretrained_model_path" in str(exc):
        return WeightsError(
            f"pyiqa metric {spec.name!r} ({spec.text!r}) takes no single weight file (its network has no "
            "`pretrained_model_path`); leave option `weights` out, or give it a folder laid out like "
            "~/.cache/torch/hub (checkpoints/, pyiqa/, clip/ subfolders) holding the metric's downloads"
        )
    return WeightsError(
        f"weights file {str(weights)!r} given for scorer {spec.text!r} could not be loaded by pyiqa metric "
        f"{spec.name!r} ({type(exc).__name__}: {exc}); give that metric's own weight file, or a folder laid "
        "out like ~/.cache/torch/hub (checkpoints/, pyiqa/, clip/) holding its downloads"
    )


def _download_failure(
    spec: ScorerSpec, exc: Exception, attempted: list[tuple[str, str]], looked_in: str
) -> WeightsError:
    """The error for a metric that failed to build: the last file it tried to fetch, if any."""
    if not attempted:
        return weights_error(spec.text, f"the weight files of pyiqa metric {spec.name!r}", looked_in, exc)
    url, dst = attempted[-1]
    return WeightsError(
        f"weights for scorer {spec.text!r} are missing: {Path(dst).name} (from {url}) was not "
        f"found in {Path(dst).parent} and could not be downloaded ({type(exc).__name__}: "
        f"{exc}). Download it there on a machine with internet access, or give option "
        "`weights` a folder laid out like ~/.cache/torch/hub (checkpoints/, pyiqa/, clip/) "
        "holding the metric's files"
    )
