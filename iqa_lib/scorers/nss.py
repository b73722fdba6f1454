"""Natural-scene statistics (NSS) shared by BRISQUE and NIQE, batched in torch.

Both metrics (Mittal, Moorthy, Bovik 2012; Mittal, Soundararajan, Bovik 2013)
describe an image by the shape of its MSCN coefficients' distribution and of
the products of neighbouring coefficients. The pieces here follow the
authors' MATLAB releases operation by operation, in float64, on whole
batches (N, 1, H, W):

* :func:`matlab_rgb2gray`: MATLAB ``rgb2gray`` of uint8 RGB: ``0.298936021293775 R
  + 0.587043074451121 G + 0.114020904255103 B`` in float64, then the uint8 cast
  (round half away from zero), so the gray levels are exactly MATLAB's;
* :func:`mscn`: ``(I - mu) / (sigma + 1)`` with ``mu`` and
  ``sigma = sqrt(|E_w[I^2] - mu^2|)`` under ``fspecial('gaussian', 7, 7/6)``
  (normalised; applied separably, which equals the 7x7 window up to rounding).
  Padding as each release filters: BRISQUE's ``filter2(w, I, 'same')`` pads
  with zeros, NIQE's ``imfilter(I, w, 'replicate')`` replicates the border;
* :func:`ggd_fit` / :func:`aggd_fit`: the releases' moment matching: the
  shape parameter is the point of the grid ``0.2:0.001:10`` whose moment ratio
  is nearest the sample's (MATLAB ``min``: first index on ties; a NaN ratio,
  e.g. from a flat image with no negative coefficients, gives the first grid
  point 0.2 as MATLAB's ``min`` does). The grid search is a binary search on
  the monotone ratio table, which picks the same grid point as the release's
  exhaustive ``min`` (the nearest is one of the two neighbours);
* :func:`pair_products`: products with the ``circshift``-ed coefficients
  (wrapping around the image, or for NIQE around each block);
* :func:`brisque_scale_features`: the 18 BRISQUE features of one scale:
  GGD ``(alpha, sigma^2)`` of the MSCN coefficients, then for each of the four
  pairwise products (horizontal, vertical, main and secondary diagonal, i.e.
  circshift ``[0 1; 1 0; 1 1; -1 1]``) AGGD ``(alpha, eta, sigma_l^2, sigma_r^2)``;
* :func:`imresize_half`: MATLAB ``imresize(I, 0.5)`` (bicubic, ``a = -0.5``,
  antialiasing, symmetric border handling, output ``ceil(size / 2)``), as a
  matrix product built from MATLAB's ``contributions`` rule.

The gamma-function tables are scipy's float64 ``gamma`` on the grid (MATLAB's
``gamma`` agrees to ~1 ulp). Sums run in another order than MATLAB's (~1e-15
relative). ``imresize_half`` of an integer image is exact (the weights are
multiples of 1/256), so every device and summation order gives MATLAB's bits.

Why the Gaussian filter is written tap by tap, and must not be reordered: in
flat image regions the MSCN coefficients are rounding noise (exactly 0 in exact
arithmetic), and the AGGD fits count the signs of the products (the left/right
deviations are means over the negative/positive values). An image with flat
areas therefore gets features that depend on how the filter rounds: on the
calibration image I19 (a third of it flat) BRISQUE moves by up to 8 points
between filter implementations (a 49-tap 2-D window: -8.2 against MATLAB;
this one: -0.6). MATLAB's ``filter2`` rounds its own way (an SVD-factored
separable kernel) that cannot be reproduced bit for bit outside MATLAB. This
module fixes one order, rows then columns, taps left to right, each product
rounded before it is added (no fused multiply-add), which every device
executes identically (so CPU and CUDA agree), and which of the orders tried
lands closest to the releases (tests/test_scorers_nss.py). Re-run those
calibration tests after any change to :func:`gaussian_filter` or :func:`mscn`.

On the CPU (float64; :data:`USE_CPU_KERNEL`) the hot steps run as compiled
kernels, image by image (:mod:`iqa_lib.scorers.nss_kernels`): gray conversion,
the whole MSCN pass of a scale (padding, both filters and the normalisation in
one pass over cache-sized rows instead of ~60 tensor passes over whole
planes), BRISQUE's
GGD/AGGD sums with the four pairwise products made on the fly (never stored),
and the half-scale resize over the weights' nonzero band. Each performs its
tensor counterpart's operations in the same order with one rounding per
operation, so gives the same bits; the one difference is the square root of
the MSCN normalisation, correctly rounded in the kernel (as MATLAB's and
CUDA's) where torch's vectorised CPU ``sqrt`` may be 1 ulp off. Measured on
200 ImageNet crops (224 x 224) against the tensor implementation: BRISQUE's
raw features within 2e-14 relative and the features it hands to its SVR
(rounded to 6 decimals) identical, NIQE within 1.3e-11, PIQE identical; on
one core BRISQUE scores 3x, NIQE ~2.6x and PIQE >2x as many images per
second (benchmarks/bench_brisque.py). Elsewhere (CUDA) the tensor ops run on
the whole batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

Padding = Literal["zeros", "replicate"]

# MATLAB rgb2gray weights (first row of the inverse NTSC matrix).
RGB2GRAY = (0.298936021293775, 0.587043074451121, 0.114020904255103)
GAUSS_SIZE = 7
GAUSS_SIGMA = 7.0 / 6.0
# The releases' shape-parameter grid, gam = 0.2:0.001:10 (9801 points).
GAMMA_GRID = np.arange(200, 10001, dtype=np.float64) / 1000.0
# circshift offsets of the pairwise products (row, column), as in the releases.
BRISQUE_SHIFTS: tuple[tuple[int, int], ...] = ((0, 1), (1, 0), (1, 1), (-1, 1))
NIQE_SHIFTS: tuple[tuple[int, int], ...] = ((0, 1), (1, 0), (1, 1), (1, -1))

DTYPE = torch.float64
# Pixels per chunk on the CPU (see by_chunks): four 224 x 224 images.
CPU_CHUNK_PIXELS = 4 * 224 * 224
# Whether moments() uses the compiled CPU kernel (tests switch it off to compare paths).
USE_CPU_KERNEL = True


# ------------------------------------------------------------------- grayscale


def matlab_rgb2gray(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) or (N, 1, H, W) -> float64 (N, 1, H, W) gray levels as MATLAB's.

    RGB goes through MATLAB ``rgb2gray`` (weights :data:`RGB2GRAY`, rounded back
    to integers half away from zero, as the uint8 cast does); one channel is
    taken as gray already.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            "NSS scorers take uint8 (N, 3, H, W) or (N, 1, H, W) batches, got "
            f"{images.dtype} {tuple(images.shape)}"
        )
    if images.shape[1] == 1:
        return images.to(DTYPE)
    if _cpu_kernels_for(images):
        src = images.contiguous().numpy()
        out = np.empty((src.shape[0], 1, *src.shape[2:]))
        _kernels().rgb2gray(src, np.asarray(RGB2GRAY), out)
        return torch.from_numpy(out)
    x = images.to(DTYPE)
    r, g, b = x.unbind(1)
    gray = r * RGB2GRAY[0] + g * RGB2GRAY[1] + b * RGB2GRAY[2]
    return torch.floor(gray + 0.5).clamp_(0, 255).unsqueeze(1)


# ----------------------------------------------------------------------- MSCN


@lru_cache(maxsize=1)
def gaussian_taps() -> tuple[float, ...]:
    """The normalised 1-D factor of ``fspecial('gaussian', 7, 7/6)`` (float64)."""
    half = (GAUSS_SIZE - 1) // 2
    x = np.arange(-half, half + 1, dtype=np.float64)
    k = np.exp(-(x * x) / (2 * GAUSS_SIGMA**2))
    k[k < np.finfo(np.float64).eps * k.max()] = 0  # fspecial's cut (no effect at 7/6)
    return tuple(float(v) for v in k / k.sum())


def gaussian_filter(x: torch.Tensor, padding: Padding) -> torch.Tensor:
    """Correlate (M, 1, H, W) with the normalised 7x7 Gaussian window, same size.

    ``padding="zeros"`` is MATLAB ``filter2(w, x, 'same')``; ``"replicate"`` is
    ``imfilter(x, w, 'replicate')``. The window is symmetric, so correlation and
    convolution agree.
    """
    k = gaussian_taps()
    r = len(k) // 2
    mode = "constant" if padding == "zeros" else "replicate"
    h, w = x.shape[-2:]
    p = F.pad(x, (r, r, r, r), mode=mode)
    # Tap by tap, each product rounded before it is added (no fused multiply-add), so
    # every device computes the same bits. Do not reorder: see the module docstring.
    cols = p[..., 0:h, :] * k[0]
    tmp = torch.empty_like(cols)
    for i in range(1, len(k)):
        cols.add_(torch.mul(p[..., i : i + h, :], k[i], out=tmp))
    out = cols[..., 0:w] * k[0]
    tmp = torch.empty_like(out)
    for i in range(1, len(k)):
        out.add_(torch.mul(cols[..., i : i + w], k[i], out=tmp))
    return out


def mscn(gray: torch.Tensor, padding: Padding) -> torch.Tensor:
    """MSCN coefficients ``(I - mu) / (sigma + 1)`` of float (M, 1, H, W) gray images.

    On the CPU (float64) one compiled pass per image
    (:mod:`~iqa_lib.scorers.nss_kernels`): the same operations in the same
    order as :func:`gaussian_filter` and the tensor ops below, so the same
    bits, except that its square root is IEEE's correctly rounded one
    (MATLAB's, CUDA's) where torch's vectorised CPU ``sqrt`` may be 1 ulp off.
    """
    if _cpu_kernels_for(gray) and gray.numel() > 0:
        src = gray.detach().reshape(-1, *gray.shape[-2:]).contiguous().numpy()
        out = np.empty_like(src)
        _kernels().mscn(src, np.asarray(gaussian_taps()), padding == "replicate", out)
        return torch.from_numpy(out).reshape(gray.shape)
    n = gray.shape[0]
    both = torch.empty((2 * n, *gray.shape[1:]), dtype=gray.dtype, device=gray.device)
    both[:n] = gray
    torch.mul(gray, gray, out=both[n:])
    both = gaussian_filter(both, padding)
    mu, mu2 = both[:n], both[n:]
    sigma = mu * mu
    torch.sub(mu2, sigma, out=sigma).abs_().sqrt_().add_(1)  # sqrt(|E[I^2] - mu^2|) + 1
    return (gray - mu).div_(sigma)


def pair_products(z: torch.Tensor, shifts: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """``z * circshift(z, s)`` for each shift: (..., H, W) -> (..., len(shifts), H, W).

    The shift wraps around the last two dims (MATLAB ``circshift``, torch ``roll``);
    computed by slicing, without materialising the shifted copies.
    """
    h, w = z.shape[-2:]
    out = z.new_empty((*z.shape[:-2], len(shifts), h, w))
    for k, (dy, dx) in enumerate(shifts):
        dy, dx = dy % h, dx % w
        # destination range <- source range of the shifted copy, per axis
        rows = [(dy, h, 0, h - dy), (0, dy, h - dy, h)]
        cols = [(dx, w, 0, w - dx), (0, dx, w - dx, w)]
        for r0, r1, sr0, sr1 in rows:
            for c0, c1, sc0, sc1 in cols:
                if r1 > r0 and c1 > c0:
                    torch.mul(
                        z[..., r0:r1, c0:c1],
                        z[..., sr0:sr1, sc0:sc1],
                        out=out[..., k, r0:r1, c0:c1],
                    )
    return out


# --------------------------------------------------------------- GGD and AGGD


@dataclass(frozen=True)
class _Tables:
    grid: torch.Tensor  # gam, ascending
    ggd_ratio: torch.Tensor  # gamma(1/g) gamma(3/g) / gamma(2/g)^2 (decreasing), negated
    aggd_ratio: torch.Tensor  # gamma(2/g)^2 / (gamma(1/g) gamma(3/g)) (increasing)
    g1: torch.Tensor  # gamma(1/g)
    g2: torch.Tensor  # gamma(2/g)
    g3: torch.Tensor  # gamma(3/g)


@lru_cache(maxsize=16)
def _tables(device: torch.device, dtype: torch.dtype) -> _Tables:
    from scipy.special import gamma

    g = GAMMA_GRID
    g1, g2, g3 = gamma(1.0 / g), gamma(2.0 / g), gamma(3.0 / g)
    ggd = (g1 * g3) / (g2**2)
    aggd = (g2**2) / (g1 * g3)
    # The binary search below needs strictly monotone tables (true on this grid).
    assert np.all(np.diff(ggd) < 0) and np.all(np.diff(aggd) > 0)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dtype)

    return _Tables(t(g), t(-ggd), t(aggd), t(g1), t(g2), t(g3))


def _nearest(table: torch.Tensor, v: torch.Tensor, squared: bool) -> torch.Tensor:
    """Index of MATLAB ``min(abs(table - v))`` (or of ``(table - v).^2``) over an ascending table.

    The distance is unimodal in the index, so the minimum is at one of the two
    neighbours of ``v``; ties go to the lower index, non-finite ``v`` to 0
    (MATLAB's ``min`` over all-NaN or all-Inf distances returns index 1).
    """
    n = table.numel()
    vf = torch.where(torch.isfinite(v), v, torch.zeros_like(v))
    hi = torch.searchsorted(table, vf.contiguous()).clamp_(1, n - 1)
    lo = hi - 1
    d_lo, d_hi = table[lo] - vf, table[hi] - vf
    if squared:
        d_lo, d_hi = d_lo * d_lo, d_hi * d_hi
    else:
        d_lo, d_hi = d_lo.abs(), d_hi.abs()
    idx = torch.where(d_hi < d_lo, hi, lo)
    return torch.where(torch.isfinite(v), idx, torch.zeros_like(idx))


@dataclass(frozen=True)
class Moments:
    """Sums over the last dim: squares of the negative and of the positive values, their
    counts, and the sum of absolute values (all that the GGD/AGGD fits need)."""

    sq_neg: torch.Tensor
    n_neg: torch.Tensor
    sq_pos: torch.Tensor
    n_pos: torch.Tensor
    sum_abs: torch.Tensor
    length: int


def moments(x: torch.Tensor) -> Moments:
    """:class:`Moments` of float64 ``x`` over its last dim, for every leading index.

    On the CPU a compiled one-pass kernel (numba, ~20x faster than the tensor
    ops), elsewhere tensor ops; both are plain sums (they differ only in
    summation order, ~1e-15 relative) and exact counts.
    """
    shape, length = x.shape[:-1], x.shape[-1]
    if USE_CPU_KERNEL and x.device.type == "cpu" and x.dtype == torch.float64 and length > 0:
        flat = x.detach().reshape(-1, length).contiguous().numpy()
        m = torch.from_numpy(_moments_kernel()(flat)).reshape(*shape, 5)
        return Moments(m[..., 0], m[..., 1], m[..., 2], m[..., 3], m[..., 4], length)
    xn, xp = x.clamp(max=0), x.clamp(min=0)
    return Moments(
        (xn * xn).sum(-1),
        torch.count_nonzero(xn, dim=-1).to(x.dtype),
        (xp * xp).sum(-1),
        torch.count_nonzero(xp, dim=-1).to(x.dtype),
        xp.sum(-1) - xn.sum(-1),
        length,
    )


def prepare(device: torch.device) -> None:
    """Build what the first batch would (gamma tables, the compiled CPU kernel) now.

    Scorers call it when they are built, so a broken install fails before any
    scoring, and concurrent first batches do not compile the kernel twice.
    """
    _tables(torch.device(device), DTYPE)
    if torch.device(device).type == "cpu" and USE_CPU_KERNEL:
        _moments_kernel()(np.zeros((1, 5)))
        k = _kernels()
        k.rgb2gray(np.zeros((1, 3, 2, 2), np.uint8), np.asarray(RGB2GRAY), np.empty((1, 1, 2, 2)))
        g = np.zeros((1, 8, 8))
        k.mscn(g, np.asarray(gaussian_taps()), False, np.empty_like(g))
        k.brisque_moments(g, np.asarray(BRISQUE_SHIFTS, np.int64), np.empty((1, 5, 5)))
        k.resize(g, *_banded_weights(8, 0.5), *_banded_weights(8, 0.5), np.empty((1, 4, 4)))
        k.flat_fraction(g, 3, np.empty(1))


@lru_cache(maxsize=1)
def _moments_kernel() -> Callable[[np.ndarray], np.ndarray]:
    import numba

    @numba.njit(cache=True, nogil=True)
    def kernel(x: np.ndarray) -> np.ndarray:  # pragma: no cover (compiled)
        rows, n = x.shape
        out = np.empty((rows, 5))
        n4 = n - n % 4
        for r in range(rows):
            sn = np.zeros(4)
            sp = np.zeros(4)
            sa = np.zeros(4)
            nn = 0
            npos = 0
            for i in range(0, n4, 4):  # four interleaved sums: no serial dependency
                for k in range(4):
                    v = x[r, i + k]
                    s = v * v
                    neg = v < 0.0
                    pos = v > 0.0
                    sn[k] += s if neg else 0.0
                    sp[k] += s if pos else 0.0
                    sa[k] += abs(v)
                    nn += neg
                    npos += pos
            for i in range(n4, n):
                v = x[r, i]
                if v < 0.0:
                    sn[0] += v * v
                    nn += 1
                elif v > 0.0:
                    sp[0] += v * v
                    npos += 1
                sa[0] += abs(v)
            out[r, 0] = (sn[0] + sn[1]) + (sn[2] + sn[3])
            out[r, 1] = nn
            out[r, 2] = (sp[0] + sp[1]) + (sp[2] + sp[3])
            out[r, 3] = npos
            out[r, 4] = (sa[0] + sa[1]) + (sa[2] + sa[3])
        return out

    return kernel


def _cpu_kernels_for(x: torch.Tensor) -> bool:
    """Whether ``x`` goes through the compiled CPU kernels of :func:`_kernels`."""
    return USE_CPU_KERNEL and x.device.type == "cpu" and x.dtype in (torch.float64, torch.uint8)


@lru_cache(maxsize=1)
def _kernels() -> ModuleType:
    """The compiled CPU kernels (:mod:`iqa_lib.scorers.nss_kernels`, imported on first use)."""
    # imported here: numba and the cached kernels take ~0.3 s to load, which scoring on a GPU never needs
    from iqa_lib.scorers import nss_kernels

    return nss_kernels


def ggd_fit(x: torch.Tensor | Moments) -> tuple[torch.Tensor, torch.Tensor]:
    """GGD fit over the last dim, as the BRISQUE release's ``estimateggdparam``.

    Returns ``(alpha, sigma)`` with ``sigma = sqrt(mean(x^2))`` and ``alpha`` the
    grid point minimising ``|rho - r(alpha)|``, ``rho = mean(x^2) / mean(|x|)^2``.
    """
    m = x if isinstance(x, Moments) else moments(x)
    tab = _tables(m.sum_abs.device, m.sum_abs.dtype)
    sigma_sq = (m.sq_neg + m.sq_pos) / m.length
    e = m.sum_abs / m.length
    rho = sigma_sq / (e * e)
    idx = _nearest(tab.ggd_ratio, -rho, squared=False)
    return tab.grid[idx], torch.sqrt(sigma_sq)


@dataclass(frozen=True)
class AggdFit:
    """AGGD parameters over the last dim; ``g1, g2, g3 = gamma(k / alpha)``."""

    alpha: torch.Tensor
    left_std: torch.Tensor
    right_std: torch.Tensor
    g1: torch.Tensor
    g2: torch.Tensor
    g3: torch.Tensor


def aggd_fit(x: torch.Tensor | Moments) -> AggdFit:
    """AGGD fit over the last dim, as the releases' ``estimateaggdparam``.

    ``left_std = sqrt(mean(x[x<0]^2))``, ``right_std = sqrt(mean(x[x>0]^2))``
    (NaN when a side is empty, as MATLAB's mean of an empty vector), and
    ``alpha`` the grid point minimising ``(r(alpha) - rhatnorm)^2`` with
    ``rhat = mean(|x|)^2 / mean(x^2)`` and
    ``rhatnorm = rhat (g^3 + 1)(g + 1) / (g^2 + 1)^2``, ``g = left_std / right_std``.
    """
    m = x if isinstance(x, Moments) else moments(x)
    tab = _tables(m.sum_abs.device, m.sum_abs.dtype)
    left = torch.sqrt(m.sq_neg / m.n_neg)
    right = torch.sqrt(m.sq_pos / m.n_pos)
    gammahat = left / right
    mean_abs = m.sum_abs / m.length
    rhat = (mean_abs * mean_abs) / ((m.sq_neg + m.sq_pos) / m.length)
    rhatnorm = (rhat * (gammahat**3 + 1) * (gammahat + 1)) / ((gammahat**2 + 1) ** 2)
    idx = _nearest(tab.aggd_ratio, rhatnorm, squared=True)
    return AggdFit(tab.grid[idx], left, right, tab.g1[idx], tab.g2[idx], tab.g3[idx])


# ------------------------------------------------------------ BRISQUE features


def brisque_scale_features(gray: torch.Tensor) -> torch.Tensor:
    """The 18 BRISQUE features of float64 gray images (N, 1, H, W) at their own scale.

    Order as ``brisque_feature.m``: ``alpha, sigma^2`` of the MSCN GGD, then per
    shift ``alpha, eta, sigma_l^2, sigma_r^2`` with
    ``eta = (sigma_r - sigma_l) * gamma(2/a) / gamma(1/a) * sqrt(gamma(1/a)) / sqrt(gamma(3/a))``.
    """
    n = gray.shape[0]
    z = mscn(gray, "zeros")[:, 0]  # (N, H, W)
    if _cpu_kernels_for(z):  # the same sums, without storing the products
        sums = np.empty((n, 1 + len(BRISQUE_SHIFTS), 5))
        src = z.detach().contiguous().numpy()
        _kernels().brisque_moments(src, np.asarray(BRISQUE_SHIFTS, np.int64), sums)
        m = torch.from_numpy(sums)
        m_z, m_pairs = m[:, 0], m[:, 1:]
        length = z.shape[-2] * z.shape[-1]
        alpha, sigma = ggd_fit(Moments(*m_z.unbind(-1), length))
        fit = aggd_fit(Moments(*m_pairs.unbind(-1), length))
    else:
        alpha, sigma = ggd_fit(z.reshape(n, -1))
        fit = aggd_fit(pair_products(z, BRISQUE_SHIFTS).reshape(n, len(BRISQUE_SHIFTS), -1))
    const = torch.sqrt(fit.g1) / torch.sqrt(fit.g3)
    eta = (fit.right_std - fit.left_std) * (fit.g2 / fit.g1) * const
    pairs = torch.stack([fit.alpha, eta, fit.left_std**2, fit.right_std**2], dim=-1)
    return torch.cat([alpha[:, None], (sigma**2)[:, None], pairs.reshape(n, -1)], dim=1)


def flat_fraction(gray: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """Share of pixels whose (2 radius + 1)^2 window holds a single gray level, (N,) float64.

    ``gray``: float64 (N, 1, H, W) gray levels; windows are clamped at the borders
    (replicate padding). With the default radius the window is the MSCN's 7x7
    Gaussian support: there the MSCN coefficient is 0 in exact arithmetic, so its
    computed value, and the sign BRISQUE's pair-product fits count, is rounding
    noise (see :mod:`iqa_lib.scorers.brisque` for what that does to the score).
    """
    if _cpu_kernels_for(gray):
        src = gray[:, 0].contiguous().numpy()
        out = np.empty(src.shape[0])
        _kernels().flat_fraction(src, radius, out)
        return torch.from_numpy(out)
    k = 2 * radius + 1
    p = F.pad(gray, (radius, radius, radius, radius), mode="replicate")
    hi = F.max_pool2d(p, k, 1)
    lo = -F.max_pool2d(-p, k, 1)
    return (hi == lo).to(gray.dtype).mean(dim=(1, 2, 3))


def finite_scores(q: torch.Tensor, metric: str, why: str) -> np.ndarray:
    """Scores as float64 numpy; an undefined (non-finite) one raises, naming the images.

    The engine then rescores the batch image by image and lists each such image
    as a failure with this reason, rather than writing NaN.
    """
    out = q.cpu().numpy().astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        raise ValueError(
            f"{metric} is undefined for image(s) {bad.tolist()} of this batch of {len(out)} "
            f"({why}); no score is written for them"
        )
    return out


def by_chunks(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """``fn`` over a batch (N, C, H, W), in chunks of about :data:`CPU_CHUNK_PIXELS` pixels
    on the CPU, concatenated along dim 0.

    The NSS pipeline makes ~100 passes over a few image-sized float64 planes.
    Chunks that stay in the CPU caches run several times faster than passes
    over a whole batch, and with ``torch.get_num_threads() > 1`` the chunks run
    in that many threads at one torch thread each (parallel chunks scale better
    than parallel small ops; torch's setting is restored afterwards). Other
    devices take the batch whole. ``fn`` works image by image, so chunking
    changes no result (at most the order of a few sums, ~1e-15).
    """
    n, h, w = images.shape[0], images.shape[-2], images.shape[-1]
    step = max(1, CPU_CHUNK_PIXELS // max(1, h * w))
    if images.device.type != "cpu" or step >= n:
        return fn(images)
    chunks = [images[i : i + step] for i in range(0, n, step)]
    threads = torch.get_num_threads()
    if threads <= 1 or len(chunks) == 1:
        return torch.cat([fn(c) for c in chunks])
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(min(threads, len(chunks))) as pool:
            return torch.cat(list(pool.map(fn, chunks)))
    finally:
        torch.set_num_threads(threads)


def brisque_features(gray: torch.Tensor) -> torch.Tensor:
    """The 36 BRISQUE features (two scales; the second is ``imresize(I, 0.5)``)."""
    return torch.cat([brisque_scale_features(gray), brisque_scale_features(imresize_half(gray))], 1)


# --------------------------------------------------------------------- resize


def _matlab_cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * (
        (ax > 1) & (ax <= 2)
    )


@lru_cache(maxsize=64)
def imresize_weights(in_length: int, scale: float) -> np.ndarray:
    """MATLAB ``imresize`` bicubic weights (antialiased), as an (out, in) float64 matrix.

    MATLAB's ``contributions``: ``u = x / s + (1 - 1/s) / 2``, taps
    ``floor(u - width / 2) + (0 .. ceil(width) + 1)`` with ``width = 4 / s`` when
    downscaling, kernel ``s * cubic(s * d)``, rows normalised to sum 1, and
    out-of-range taps mirrored (``[1:n, n:-1:1]``, border samples repeated).
    """
    out_length = math.ceil(in_length * scale)
    width = 4.0
    if scale < 1:
        width = width / scale

        def kernel(d: np.ndarray) -> np.ndarray:
            return scale * _matlab_cubic(scale * d)
    else:
        kernel = _matlab_cubic
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    w = kernel(u[:, None] - idx)
    w = w / w.sum(axis=1, keepdims=True)
    aux = np.concatenate([np.arange(in_length), np.arange(in_length)[::-1]])
    cols = aux[np.mod(idx.astype(np.int64) - 1, 2 * in_length)]  # idx is 1-based
    mat = np.zeros((out_length, in_length))
    np.add.at(mat, (np.repeat(np.arange(out_length), taps), cols.ravel()), w.ravel())
    return mat


@lru_cache(maxsize=64)
def _weights_tensor(
    in_length: int, scale: float, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    return torch.from_numpy(imresize_weights(in_length, scale)).to(device=device, dtype=dtype)


def imresize_half(x: torch.Tensor) -> torch.Tensor:
    """MATLAB ``imresize(x, 0.5)`` (bicubic, antialiased) of (..., H, W) floats.

    Output ``ceil(H / 2) x ceil(W / 2)``; exact for integer-valued images.
    On the CPU (float64) a compiled kernel sums over the weights' nonzero band
    only (exact on integer images too, so the same bits as the matmul; other
    inputs may round differently, ~1e-16 relative).
    """
    h, w = x.shape[-2:]
    if _cpu_kernels_for(x) and x.dtype == torch.float64 and x.numel() > 0:
        src = x.detach().reshape(-1, h, w).contiguous().numpy()
        out = np.empty((src.shape[0], math.ceil(h / 2), math.ceil(w / 2)))
        _kernels().resize(src, *_banded_weights(h, 0.5), *_banded_weights(w, 0.5), out)
        return torch.from_numpy(out).reshape(*x.shape[:-2], *out.shape[1:])
    wh = _weights_tensor(h, 0.5, x.device, x.dtype)
    ww = _weights_tensor(w, 0.5, x.device, x.dtype)
    return torch.matmul(torch.matmul(wh, x), ww.T)


@lru_cache(maxsize=64)
def _banded_weights(in_length: int, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`imresize_weights` and, per output row, the range [lo, hi) of its nonzero taps."""
    mat = imresize_weights(in_length, scale)
    nz = mat != 0
    lo = np.where(nz.any(1), nz.argmax(1), 0).astype(np.int64)
    hi = np.where(nz.any(1), in_length - nz[:, ::-1].argmax(1), 0).astype(np.int64)
    return mat, lo, hi
