"""The scorer interface the engine drives, and the tensor helpers all families share.

A scorer receives uint8 image batches already on its device (N, 3, H, W) with
the dataset-level geometry applied (clean images Resize(256)+CenterCrop(224),
ImageNet-C images as they are; see :mod:`iqa_lib.scoring.dataset`). It applies
its own model's transform on the device (resize to the model's input size when
it differs, normalise) and returns one numpy array per output column.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from iqa_lib.scorers.families import Kind
from iqa_lib.scorers.label_space import LabelSpace
from iqa_lib.scorers.qfeature_columns import FEATURE_COLUMNS
from iqa_lib.scorers.spec import ScorerSpec

NR_IQA_COLUMNS: tuple[str, ...] = ("q",)
CONFIDENCE_COLUMNS: tuple[str, ...] = ("pred", "correct", "q_p", "q_h", "q_l")
COLUMNS: dict[Kind, tuple[str, ...]] = {
    "nr_iqa": NR_IQA_COLUMNS,
    "classifier": CONFIDENCE_COLUMNS,
    "zero_shot": CONFIDENCE_COLUMNS,
}
# Per-image columns a scorer family writes after its kind's (see the family's module):
# BRISQUE's ``flat_fraction`` says how much of the image is flat (iqa_lib.scorers.brisque).
EXTRA_COLUMNS: dict[str, tuple[str, ...]] = {"brisque": ("flat_fraction",), "learned_q": FEATURE_COLUMNS}
# Parquet dtypes of the output columns (analysis reads them as such).
COLUMN_DTYPES: dict[str, str] = {
    "q": "float64",
    "flat_fraction": "float64",
    "pred": "int64",
    "correct": "bool",
    "q_p": "float64",
    "q_h": "float64",
    "q_l": "float64",
    **dict.fromkeys(FEATURE_COLUMNS, "float64"),  # learned_q's features (iqa_lib.scorers.qfeatures)
    "logits": "object",  # one float16 row per image as bytes, in parts only (see LOGITS)
}
# Each image's whole logit vector, kept when asked (``Scorer.keep_logits``): carried through the
# engine's parts as a bytes column and written at the merge as ``<name>.logits/logits.npy``
# (:mod:`iqa_lib.scoring.logits`), never into the score file itself.
LOGITS = "logits"
LOGIT_KINDS: tuple[Kind, ...] = ("classifier", "zero_shot")


class Scorer(ABC):
    """One quality scorer (and, for classifiers and ZSCLIP, a correctness M)."""

    kind: Kind
    # The manifest label space the scorer was built for (None: ImageNet-1k labels);
    # set by the task-guided builders, see :mod:`iqa_lib.scorers.label_space`.
    label_space: LabelSpace | None = None
    # Where the weights came from, for reports (``iqa_lib.presentation.score_report``): the file the
    # builder loaded (None: no single file) and a few words (no weights, the package, the hub).
    weights_file: Path | None = None
    weights_source: str = ""
    # Per-image CPU work (TV, BRISQUE, NIQE, PIQE): each image's score is a function of its own
    # pixels computed on the CPU, cheap enough that decoding is a large share of it. On the CPU
    # the engine then scores inside its loader workers, each worker the images it decodes,
    # through the very same ``score`` calls (iqa_lib.scoring.stream.WorkerScoring).
    per_image_cpu: bool = False
    # Also return each image's logits (float16, column LOGITS); set by the engine on request.
    keep_logits: bool = False

    def __init__(self, spec: ScorerSpec, device: torch.device):
        self.spec = spec
        self.device = torch.device(device)

    @property
    def name(self) -> str:
        return self.spec.text

    @property
    def defines_correct(self) -> bool:
        """Whether ``correct`` means something: a task scorer whose predictions share the labels' space.

        False for NR-IQA, and for an ImageNet classifier on a manifest of its own
        classes without a class map (an ImageNet index is no own class index).
        """
        return self.kind != "nr_iqa" and (self.label_space is None or self.label_space.defines_correct)

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns ``score`` returns: the score file's, and LOGITS when they are kept."""
        own = spec_columns(self.spec, self.defines_correct)
        return (*own, LOGITS) if self.keep_logits else own

    @property
    def scores_in_workers(self) -> bool:
        """Whether the engine runs this scorer inside its loader workers: per-image work on the CPU."""
        return self.per_image_cpu and self.device.type == "cpu"

    @property
    def needs_labels(self) -> bool:
        return self.kind != "nr_iqa"

    def autocast(self) -> Any:
        """bf16 autocast on CUDA; nothing elsewhere (CPU bf16 is slower and less exact)."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    @abstractmethod
    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) on the device -> the model's input."""

    @abstractmethod
    def score(self, images: torch.Tensor, labels: torch.Tensor | None) -> dict[str, np.ndarray]:
        """Score one uniform-size uint8 batch; one array of length N per column."""


def logits_unavailable(spec: ScorerSpec, space: LabelSpace | None) -> str | None:
    """Why a scorer of ``spec`` on label space ``space`` keeps no logits; None when it can.

    A class map keeps the logits of the ImageNet classes mapped onto the dataset's, several
    per own class: their softmax is not a distribution over the labels, so none are kept.
    """
    if spec.kind not in LOGIT_KINDS:
        return f"a {spec.kind} scorer has no logits"
    if space is not None and space.class_map is not None:
        return "its class map scores ImageNet classes mapped onto the dataset's (not one logit per label)"
    return None


def logits_rows(z: torch.Tensor) -> np.ndarray:
    """(N, K) logits as float16 on the CPU, the form they are kept in (2 bytes per class)."""
    return z.detach().to(torch.float16).cpu().numpy()


def spec_columns(spec: ScorerSpec, defines_correct: bool = True) -> tuple[str, ...]:
    """The output columns of a scorer of ``spec``: its kind's, then its family's extra ones."""
    kind = tuple(c for c in COLUMNS[spec.kind] if c != "correct" or defines_correct)
    return kind + EXTRA_COLUMNS.get(spec.family, ())


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 in [0, 1]."""
    return images.float().div_(255.0)


def resize_center_crop(
    x: torch.Tensor, size: int | tuple[int, int], interpolation: str = "bilinear"
) -> torch.Tensor:
    """Resize the shorter side to ``size`` and center-crop to a square (or given) size.

    Batched and on the device; a no-op when the batch already has the size, so
    224 px ImageNet-C images reach a 224 px model untouched.
    """
    th, tw = (size, size) if isinstance(size, int) else size
    h, w = x.shape[-2:]
    if (h, w) == (th, tw):
        return x
    short = min(th, tw)
    scale = short / min(h, w)
    nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
    if (nh, nw) != (h, w):
        mode = interpolation if interpolation in ("bilinear", "bicubic", "nearest") else "bilinear"
        kwargs = {"antialias": True, "align_corners": False} if mode != "nearest" else {}
        x = F.interpolate(x, size=(nh, nw), mode=mode, **kwargs)
    top, left = (nh - th) // 2, (nw - tw) // 2
    return x[..., top : top + th, left : left + tw]


def normalise(x: torch.Tensor, mean: Any, std: Any) -> torch.Tensor:
    """(x - mean) / std with per-channel statistics given in [0, 1] units."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def confidence_columns(
    softmax_input: torch.Tensor,
    max_of: torch.Tensor,
    labels: torch.Tensor | None,
    pred_map: Any = None,
) -> dict[str, np.ndarray]:
    """pred, correct, q_p = max softmax, q_h = entropy (nats), q_l = max of ``max_of``.

    Computed in float64 so that saturated softmax maxima stay distinct (ranks
    matter downstream). For classifiers both inputs are the logits z; for
    ZSCLIP the softmax sees s / T and q_l is the max raw cosine s. With a class
    map the inputs are already restricted to the mapped columns and
    ``pred_map[j]`` is the own class of column j: pred and correct are own classes.
    """
    z = softmax_input.double()
    logp = torch.log_softmax(z, dim=1)
    p = logp.exp()
    q_p = p.max(dim=1).values
    q_h = -(p * logp).sum(dim=1)
    q_l = max_of.double().max(dim=1).values
    pred = max_of.argmax(dim=1).cpu()
    if pred_map is not None:
        pred = torch.as_tensor(pred_map, dtype=torch.long)[pred]
    out = {
        "pred": pred.numpy().astype(np.int64),
        "q_p": q_p.cpu().numpy(),
        "q_h": q_h.cpu().numpy(),
        "q_l": q_l.cpu().numpy(),
    }
    if labels is None:
        out["correct"] = np.zeros(len(pred), dtype=bool)
    else:
        out["correct"] = (pred == labels.cpu().long()).numpy()
    return out


def entropy_upper_bound(num_classes: int) -> float:
    """log K: the entropy of the uniform distribution (for sanity checks)."""
    return math.log(num_classes)
