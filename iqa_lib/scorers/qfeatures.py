"""The cheap, task-agnostic image features behind ``learned_q``: NSS, TV, colour, frequency.

One float64 vector per image, computed from its own uint8 pixels only (so a batch gives
each image the same bits as scoring it alone), in the order of :data:`FEATURE_COLUMNS`:

* ``nss_*`` (36) and ``flat_fraction``: BRISQUE's natural-scene statistics at two scales
  and its flat-pixel share, by the kit's own NSS code (:mod:`iqa_lib.scorers.nss`);
* ``brisque``, ``niqe``, ``piqe``, ``tv``: the published metrics' values, by their scorers'
  own functions (the BRISQUE SVR on the features above; NIQE against the release's
  pristine model; PIQE; total variation);
* colour: channel means, gray mean and RMS contrast, colourfulness (Hasler and
  Suesstrunk 2003), mean HSV saturation, shares of near-black (gray <= 5) and near-white
  (>= 250) pixels, gray-histogram entropy (bits);
* frequency and sharpness: shares of the AC power spectrum (Hann-windowed gray) in four
  radial bands of normalised frequency (0-1/16, 1/16-1/8, 1/8-1/4, above 1/4 cycles per
  pixel), the slope of log radial power against log frequency (natural images ~ -2; blur
  steepens, noise flattens it), log AC power, log variance of the 4-neighbour Laplacian,
  log mean gradient magnitude;
* ``blockiness``: mean absolute step across 8-pixel block boundaries over the mean step
  elsewhere, one gray level added to both (JPEG's grid; 1 when there is none).

Why these: each is a function of pixel statistics that corruptions move (noise, blur,
contrast, compression, weather), none of a classifier. Measured cost on this machine's
CPU: see ``docs/mini-reproduction/learned_q.md``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from iqa_lib.scorers import brisque as brisque_mod
from iqa_lib.scorers import niqe as niqe_mod
from iqa_lib.scorers.nr_iqa import total_variation_uint8
from iqa_lib.scorers.nss import brisque_features, flat_fraction, matlab_rgb2gray, prepare
from iqa_lib.scorers.piqe import pad_to_blocks, piqe_from_gray
from iqa_lib.scorers.qfeature_columns import FEATURE_COLUMNS

BAND_EDGES = (1 / 16, 1 / 8, 1 / 4)
SLOPE_RANGE = (0.02, 0.4)  # normalised frequencies over which the spectral slope is fitted
SLOPE_BINS = 16
BLOCK = 8
MIN_SIDE = niqe_mod.BLOCK  # NIQE scores images of one 96 x 96 block or more


class FeatureError(ValueError):
    """An image whose features are undefined (too small, or a flat image the NSS fits cannot fit)."""


@lru_cache(maxsize=1)
def _models() -> tuple[brisque_mod.SvrModel, niqe_mod.NiqeModel]:
    """The published BRISQUE SVR and NIQE pristine model, loaded once per process."""
    return brisque_mod.load_model(), niqe_mod.load_model()


def prepare_features() -> None:
    """Load the models and compile the CPU kernels now, so a broken install fails before scoring."""
    _models()
    prepare(torch.device("cpu"))


def image_features(image: np.ndarray) -> np.ndarray:
    """The :data:`FEATURE_COLUMNS` vector (float64) of one uint8 RGB image (3, H, W)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise FeatureError(f"features take one uint8 (3, H, W) image, got {image.dtype} {image.shape}")
    if min(image.shape[1:]) < MIN_SIDE:
        raise FeatureError(f"features need images of at least {MIN_SIDE}x{MIN_SIDE} pixels, got {image.shape[1:]}")
    batch = torch.from_numpy(np.ascontiguousarray(image))[None]
    with torch.inference_mode():
        gray = matlab_rgb2gray(batch)  # float64 (1, 1, H, W), MATLAB's gray levels
        nss = _nss_and_metrics(batch, gray)
    g = gray[0, 0].numpy()
    out = np.concatenate([nss, colour_features(image, g), frequency_features(g)])
    if not np.isfinite(out).all():
        bad = [FEATURE_COLUMNS[i] for i in np.flatnonzero(~np.isfinite(out))]
        raise FeatureError(f"features {bad} are undefined for this image (e.g. a flat image)")
    return out


def _nss_and_metrics(batch: torch.Tensor, gray: torch.Tensor) -> np.ndarray:
    """The 36 NSS features, flat fraction, BRISQUE, NIQE, PIQE and TV of a one-image batch."""
    svr, pristine = _models()
    feats = brisque_features(gray)
    q_brisque = brisque_mod.svr_predict(
        brisque_mod.scale_features(feats), torch.from_numpy(svr.sv), torch.from_numpy(svr.coef),
        svr.gamma, svr.rho,
    )
    q_niqe = niqe_mod.mvg_distance(
        niqe_mod.niqe_features(gray), torch.from_numpy(pristine.mu), torch.from_numpy(pristine.cov)
    )
    q_piqe = piqe_from_gray(pad_to_blocks(gray[:, 0]))
    tv = total_variation_uint8(batch.numpy())
    metrics = [flat_fraction(gray).numpy(), q_brisque.numpy(), q_niqe.numpy(), q_piqe.numpy(), tv]
    return np.concatenate([feats[0].numpy(), np.concatenate(metrics).astype(np.float64)])


def colour_features(image: np.ndarray, gray: np.ndarray) -> np.ndarray:
    """Channel means, gray mean and std, colourfulness, saturation, clipped shares, entropy."""
    x = image.astype(np.float64) / 255.0
    r, g, b = x
    rg, yb = r - g, 0.5 * (r + g) - b
    colourfulness = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    hi, lo = x.max(axis=0), x.min(axis=0)
    saturation = np.divide(hi - lo, hi, out=np.zeros_like(hi), where=hi > 0).mean()
    hist = np.bincount(gray.astype(np.int64).ravel(), minlength=256).astype(np.float64)
    p = hist[hist > 0] / gray.size
    return np.array([
        r.mean(), g.mean(), b.mean(), gray.mean() / 255.0, gray.std() / 255.0, colourfulness,
        saturation, (gray <= 5).mean(), (gray >= 250).mean(), -(p * np.log2(p)).sum(),
    ])


@lru_cache(maxsize=8)
def _spectrum_layout(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Hann window, each frequency's radius (cycles/pixel) and its log-radius bin."""
    window = np.outer(np.hanning(h), np.hanning(w))
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij"))
    edges = np.geomspace(*SLOPE_RANGE, SLOPE_BINS + 1)
    bins = np.digitize(radius, edges) - 1  # -1 or SLOPE_BINS: outside the fitted range
    return window, radius, bins


def frequency_features(gray: np.ndarray) -> np.ndarray:
    """Radial band shares, spectral slope, log power, Laplacian and gradient, blockiness."""
    window, radius, bins = _spectrum_layout(*gray.shape)
    power = np.abs(np.fft.fft2((gray - gray.mean()) * window)) ** 2
    power[0, 0] = 0.0
    total = power.sum()
    edges = (0.0, *BAND_EDGES, np.inf)
    bands = [power[(radius > a) & (radius <= b)].sum() / total if total > 0 else 0.0
             for a, b in zip(edges[:-1], edges[1:], strict=True)]
    inside = (bins >= 0) & (bins < SLOPE_BINS)
    counts = np.bincount(bins[inside], minlength=SLOPE_BINS)
    mean_power = np.bincount(bins[inside], weights=power[inside], minlength=SLOPE_BINS)
    mean_radius = np.bincount(bins[inside], weights=radius[inside], minlength=SLOPE_BINS)
    ok = (counts > 0) & (mean_power > 0)
    slope = np.polyfit(np.log(mean_radius[ok] / counts[ok]), np.log(mean_power[ok] / counts[ok]), 1)[0] \
        if ok.sum() >= 2 else 0.0
    lap = 4 * gray[1:-1, 1:-1] - gray[:-2, 1:-1] - gray[2:, 1:-1] - gray[1:-1, :-2] - gray[1:-1, 2:]
    gradient = np.hypot(gray[1:, 1:] - gray[:-1, 1:], gray[1:, 1:] - gray[1:, :-1]).mean()
    return np.array([
        *bands, slope, np.log1p(total / gray.size), np.log1p(lap.var()), np.log1p(gradient),
        blockiness(gray),
    ])


def blockiness(gray: np.ndarray) -> float:
    """Mean |step| across 8-pixel block boundaries over the mean |step| elsewhere, both axes
    (one gray level added to both, so a flat image gives 1 and flat blocks stay finite)."""
    ratios = []
    for steps in (np.abs(np.diff(gray, axis=1)), np.abs(np.diff(gray, axis=0)).T):
        at = (np.arange(steps.shape[1]) % BLOCK) == BLOCK - 1
        ratios.append((steps[:, at].mean() + 1.0) / (steps[:, ~at].mean() + 1.0) if at.any() else 1.0)
    return float(np.mean(ratios))


def batch_features(images: torch.Tensor) -> np.ndarray:
    """(N, len(FEATURE_COLUMNS)) float64 of a uint8 batch (N, 3, H, W), image by image.

    A batch of one image repeats the 1-channel image thrice (gray input); each row is
    exactly :func:`image_features` of its image.
    """
    x = images.detach().cpu()
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise FeatureError(f"features take uint8 (N, 3, H, W) batches, got {tuple(x.shape)}")
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    arr = x.contiguous().numpy()
    rows = [image_features(arr[i]) for i in range(arr.shape[0])]
    return np.stack(rows) if rows else np.zeros((0, len(FEATURE_COLUMNS)))
