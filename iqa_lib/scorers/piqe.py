"""PIQE (Venkatanath et al., NCC 2015) as MATLAB's ``piqe()``, batched in torch.

``q`` is the PIQE score in [0, 100]: **lower = better** (0 excellent, 100 bad;
a flat image scores 100). No weights, no download: PIQE is a fixed rule set.

What is MATLAB's, step by step (Image Processing Toolbox ``piqe``, 2018 and later):

1. the image is padded at its bottom/right edges by replicating the last
   row/column up to a multiple of 16 (``padarray(..., 'replicate', 'post')``);
2. ``rgb2gray`` as MATLAB does it on uint8: ``0.298936021293775 R +
   0.587043074451121 G + 0.114020904255103 B`` in float64, rounded half away
   from zero back to integers 0..255 (so the gray image is exactly MATLAB's);
3. MSCN coefficients ``(I - mu) / (sigma + 1)`` with ``mu`` and ``sigma`` from
   a 7x7 Gaussian window, sigma 7/6 (normalised, separable), replicate padding,
   ``sigma = sqrt(|E[I^2] - mu^2|)``;
4. 16x16 non-overlapping blocks; a block is active when the sample variance
   (n - 1) of its MSCN values exceeds 0.1, and only active blocks count;
5. noticeable distortion: some 6-pixel segment (11 per edge, stride 1) of one
   of the block's four edges has sample standard deviation < 0.1;
6. noise: ``sigma > 2 * beta`` with ``sigma`` the block's standard deviation,
   ``beta = |sigma - r| / max(sigma, r)`` and ``r`` the centre/surround
   deviation ratio. MATLAB's centre is block columns 8 and 9 (1-based); its
   surround drops column 8 and then "column 9" of the already shortened block,
   i.e. the original column 10 - kept here on purpose, since it is what MATLAB
   computes. A NaN ratio (0/0) becomes 0 as in MATLAB; an infinite one is left
   alone (``beta`` is then NaN and the block not noisy, as in MATLAB);
7. ``q = 100 (1 + sum_active [impaired (1 - var) + noisy var]) / (1 + n_active)``.

Everything after the uint8 input is float64, as in MATLAB, so the threshold
tests (variance > 0.1, std < 0.1, sigma > 2 beta) fall the same way (in float32
about 2% of 224 px ImageNet crops move by up to 0.6). Residual differences from
MATLAB: summation order and the separable filter's rounding (q within ~1e-12 of
a block-by-block float64 transcription); a threshold test landing within ~1e-14
of its threshold could fall the other way. On the five calibration images q is
MATLAB's value to its printed two decimals (tests/test_scorers_piqe.py).

Two choices are settled by MathWorks' own source, ``piqe.m`` ("Copyright 2018 The
MathWorks, Inc.", Image Processing Toolbox R2018b; a copy is public on GitHub, found
through a code search that does not name the repository), not by the ports:

* **partial blocks are replicated**: ``ipImage = padarray(ipImage, padSize,
  'replicate', 'post')`` with ``padSize = blockSize - rem(size, blockSize)`` per side
  that is not a multiple of 16, before ``rgb2gray`` (per-pixel, so it commutes with the
  padding done here after it);
* **no brightness stretch**: ``ipImage = round(255*im2double(ipImage))``; ``im2double``
  of uint8 divides by 255, the class's maximum, so the gray levels are kept as they are.
  MATLAB's documentation (``piqe`` reference page, "Algorithms") lists no rescaling step.

pypiqe 1.2 (PyPI, github.com/michael-rutherford/pypiqe; README: "Converted from and
tested against the MATLAB function", but the repository holds no tests) translates
``im2double(I)`` as ``I / max(I)`` (each image stretched so that its brightest gray is
255) and pads with ``np.pad(..., mode='symmetric')`` (mirror); until its April 2024
fix (commit bdec1f6) that padding raised on RGB images whose sides are not multiples
of 16, so its tests against MATLAB cannot have covered partial blocks of colour
images. pyiqa 0.1.16's ``piqe`` names pypiqe as its Python reference and inherits the
stretch; it takes YIQ luma in float32, tests the thresholds in float32, and pads a side
by ``size % 16`` mirrored pixels, so its last partial block is dropped. The five MATLAB
calibration images cannot tell these apart (whole blocks; I03, the one without gray
level 255, scores 100 either way); tests/test_scorers_piqe.py adds images that do
(crops to 377 x 505 and dimmed copies) with pypiqe's code as the oracle once those two
steps are put back to piqe.m's: the kit equals it to ~1e-12, and each image moves by
more than 0.1 under the choice it exercises.

Measured on the 500 ImageNet sample images (docs/mini-reproduction): as stored (22 of
500 with both sides multiples of 16; 390 with gray level 255) the kit and pypiqe differ
by a median 1.91 points (90th percentile 3.97, max 16.0), and the kit with the stretch
and mirror padding equals pypiqe within a median 0.0000 (max 0.17, its OpenCV gray
levels); mirror padding alone moves q by a median 1.91, the stretch alone by a median
0.00 (max 16.6). After the kit's Resize 256 + CenterCrop 224 (whole blocks; 146 of 500
with gray level 255) only the stretch differs: median 0.33, max 6.2; pyiqa is off by a
median 0.52 (max 7.5) (``python benchmarks/piqe_ports.py 500``). The code here is the
kit's own, not either port's.

Images of any size >= 1x1 are scored; an image (or side) smaller than one 16x16
block is replicate-padded to a block exactly as MATLAB pads it, so its q is
MATLAB's ``piqe`` of that image (dominated by replicated pixels, but defined
and reproducible, never a placeholder). Empty images, or batches that are not
uint8 with 1 or 3 channels, raise ``ValueError`` (the engine's loader never
makes such batches). Runs on CPU or CUDA; on MPS, which has no float64, on the CPU.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from iqa_lib.scorers.base import Scorer
from iqa_lib.scorers.nss import by_chunks, matlab_rgb2gray, mscn
from iqa_lib.scorers.spec import ScorerSpec

BLOCK = 16
ACTIVITY_THRESHOLD = 0.1
IMPAIRED_THRESHOLD = 0.1
SEGMENT = 6
# Centre columns of a block and MATLAB's surround columns (0-based): see step 6.
CENTRE_COLS = (7, 8)
SURROUND_COLS = (0, 1, 2, 3, 4, 5, 6, 8, 10, 11, 12, 13, 14, 15)


class PiqeScorer(Scorer):
    """PIQE as MATLAB ``piqe`` on whole uint8 batches; ``q`` in [0, 100], lower = better."""

    kind = "nr_iqa"
    per_image_cpu = True  # scored in the engine's loader workers on the CPU
    lower_better = True
    weights_source = "no weights (piqe: a fixed rule set)"

    def __init__(self, spec: ScorerSpec, device: torch.device):
        device = torch.device(device)
        super().__init__(spec, torch.device("cpu") if device.type == "mps" else device)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> MATLAB's gray levels, float64 (N, H', W') padded to blocks."""
        return pad_to_blocks(matlab_gray(images))

    def score(self, images: torch.Tensor, labels: torch.Tensor | None) -> dict[str, np.ndarray]:
        images = images.to(self.device)
        if images.shape[0] == 0:
            return {"q": np.zeros(0, dtype=np.float64)}
        with torch.inference_mode():
            # a few images at a time on the CPU (cache-sized float64 maps), whole batch elsewhere
            q = by_chunks(lambda x: piqe_from_gray(self.preprocess(x)), images)
        return {"q": q.cpu().numpy().astype(np.float64)}


def matlab_gray(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) or (N, 1, H, W) -> float64 (N, H, W) integers, as MATLAB rgb2gray."""
    if images.shape[-2] == 0 or images.shape[-1] == 0:
        raise ValueError(f"PIQE cannot score an empty image (shape {tuple(images.shape)})")
    return matlab_rgb2gray(images)[:, 0]


def pad_to_blocks(gray: torch.Tensor) -> torch.Tensor:
    """Replicate the last row/column until both sides are multiples of BLOCK (MATLAB 'post')."""
    h, w = gray.shape[-2:]
    ph, pw = -h % BLOCK, -w % BLOCK
    if ph == 0 and pw == 0:
        return gray
    return F.pad(gray[:, None], (0, pw, 0, ph), mode="replicate")[:, 0]


def _segment_std_min(edges: torch.Tensor) -> torch.Tensor:
    """Smallest sample std of the 6-pixel windows (stride 1) along the last dim of edges."""
    m = edges.shape[-1] - SEGMENT + 1
    mean = edges[..., 0:m].clone()
    for j in range(1, SEGMENT):
        mean.add_(edges[..., j : j + m])
    mean.div_(SEGMENT)
    ss = (edges[..., 0:m] - mean).square_()
    for j in range(1, SEGMENT):
        ss.add_((edges[..., j : j + m] - mean).square_())
    return ss.div_(SEGMENT - 1).sqrt_().flatten(-2).amin(dim=-1)


def piqe_from_gray(gray: torch.Tensor) -> torch.Tensor:
    """PIQE of float64 gray images (N, H, W) with H and W multiples of BLOCK -> (N,)."""
    n, h, w = gray.shape
    if h % BLOCK or w % BLOCK:
        raise ValueError(f"gray images must be padded to multiples of {BLOCK}, got {h}x{w}")
    z = mscn(gray[:, None], "replicate")[:, 0]
    # (N, blocks, 16, 16), blocks in row-major order
    blocks = z.reshape(n, h // BLOCK, BLOCK, w // BLOCK, BLOCK).transpose(2, 3)
    blocks = blocks.reshape(n, -1, BLOCK, BLOCK)

    # Two-pass moments: per-column sums of squared deviations from the block mean give
    # the block variance and, shifted to their own means, the centre/surround variances.
    col_sum = blocks.sum(dim=2)  # (N, B, 16)
    mean = col_sum.sum(dim=2) / BLOCK**2
    col_ss = (blocks - mean[..., None, None]).square_().sum(dim=2)
    var = col_ss.sum(dim=2) / (BLOCK**2 - 1)
    active = var > ACTIVITY_THRESHOLD

    # noticeable distortion: any low-deviation 6-pixel segment on any of the four edges
    edges = torch.stack(
        (blocks[..., 0, :], blocks[..., :, -1], blocks[..., -1, :], blocks[..., :, 0]), dim=2
    )
    impaired = _segment_std_min(edges) < IMPAIRED_THRESHOLD

    # noise: block deviation against the centre/surround deviation ratio
    sigma = var.sqrt()
    centre_std = _subset_std(col_sum, col_ss, mean, CENTRE_COLS)
    surround_std = _subset_std(col_sum, col_ss, mean, SURROUND_COLS)
    ratio = centre_std / surround_std
    ratio = torch.where(torch.isnan(ratio), torch.zeros_like(ratio), ratio)  # 0/0 -> 0
    beta = (sigma - ratio).abs() / torch.maximum(sigma, ratio)
    noisy = sigma > 2 * beta

    dist = torch.where(impaired, 1 - var, 0.0) + torch.where(noisy, var, 0.0)
    dist = torch.where(active, dist, 0.0).sum(dim=1)
    n_active = active.sum(dim=1).to(dist.dtype)
    return (dist + 1) / (n_active + 1) * 100


def _subset_std(
    col_sum: torch.Tensor, col_ss: torch.Tensor, mean: torch.Tensor, cols: tuple[int, ...]
) -> torch.Tensor:
    """Sample std of the block columns ``cols`` from per-column sums (shift identity)."""
    count = len(cols) * BLOCK
    idx = list(cols)
    sub_mean = col_sum[..., idx].sum(dim=-1) / count
    ss = col_ss[..., idx].sum(dim=-1) - count * (sub_mean - mean).square()
    return ss.clamp_(min=0).div_(count - 1).sqrt_()
