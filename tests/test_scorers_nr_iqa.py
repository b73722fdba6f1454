"""No-reference IQA scorers: TV, BRISQUE through the registry, the pyiqa wrapper."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from iqa_lib.scorers.nr_iqa import (
    TotalVariationScorer,
    _cache_clipiqa_text,
    total_variation,
    total_variation_uint8,
)
from iqa_lib.scorers.registry import build_scorer
from iqa_lib.scorers.spec import SpecError, parse_spec
from iqa_lib.scorers.weights import WeightsError

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _natural(seed: int = 0, size: int = 96) -> np.ndarray:
    """A smooth image with edges (BRISQUE's statistics need some structure)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    rng = np.random.default_rng(seed)
    base = 0.5 + 0.3 * np.sin(6 * xx + 3 * yy) + 0.2 * (xx > 0.5)
    rgb = np.stack([base, base * 0.9, base * 0.8], axis=-1) + rng.normal(0, 0.01, (size, size, 3))
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def test_total_variation_matches_numpy():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (2, 3, 17, 23), dtype=np.uint8)
    x = img.astype(np.float64) / 255
    ref = np.abs(np.diff(x, axis=2)).mean(axis=(1, 2, 3)) + np.abs(np.diff(x, axis=3)).mean(axis=(1, 2, 3))
    scorer = TotalVariationScorer(parse_spec("tv"), torch.device("cpu"))
    out = scorer.score(torch.from_numpy(img), None)
    np.testing.assert_allclose(out["q"], ref, rtol=1e-5)
    assert total_variation(torch.zeros(1, 3, 1, 1)).item() == 0.0


def _float_tv(img: np.ndarray) -> np.ndarray:
    """The float32 batch path (the definition) on uint8 (N, C, H, W) pixels."""
    return total_variation(torch.from_numpy(img).float().div_(255.0)).double().numpy()


@pytest.mark.parametrize("shape", [(3, 3, 224, 224), (2, 3, 17, 23), (2, 3, 1, 9), (2, 3, 9, 1),
                                   (1, 3, 1, 1)])
def test_total_variation_uint8_equals_the_float_path(shape):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    img[:1, :, : shape[2] // 2] = 7  # a flat region, and images of very different TV
    np.testing.assert_allclose(total_variation_uint8(img), _float_tv(img), rtol=1e-6, atol=0)
    scorer = TotalVariationScorer(parse_spec("tv"), torch.device("cpu"))
    np.testing.assert_allclose(scorer.score(torch.from_numpy(img), None)["q"], _float_tv(img), rtol=1e-6)
    # a strided (non-contiguous) batch, as a one-image retry slices it
    view = torch.from_numpy(img).permute(0, 1, 3, 2)
    np.testing.assert_allclose(scorer.score(view, None)["q"], _float_tv(view.contiguous().numpy()),
                               rtol=1e-6)
    assert total_variation_uint8(np.full((1, 3, 5, 5), 200, np.uint8))[0] == 0.0
    assert total_variation_uint8(np.zeros((0, 3, 8, 8), np.uint8)).shape == (0,)


def test_total_variation_uint8_equals_the_float_path_on_real_images(imagenet_sample):
    from iqa_lib.scoring.dataset import ManifestImages

    files = sorted(imagenet_sample.glob("*.JPEG"))[:64]
    ds = ManifestImages([str(f) for f in files], [True] * len(files))
    clean = torch.stack([ds[i][1] for i in range(len(files))]).numpy()  # Resize 256 + crop 224
    np.testing.assert_allclose(total_variation_uint8(clean), _float_tv(clean), rtol=1e-6, atol=0)
    stored = ManifestImages([str(f) for f in files[:8]], [False] * 8)  # as stored: own sizes
    for i in range(8):
        one = stored[i][1][None].numpy()
        np.testing.assert_allclose(total_variation_uint8(one), _float_tv(one), rtol=1e-6, atol=0)


def test_total_variation_orders_noise_above_clean():
    clean = torch.from_numpy(_natural()).permute(2, 0, 1)[None]
    noisy = (clean.float() + torch.randn_like(clean.float()) * 25).clamp(0, 255).to(torch.uint8)
    scorer = build_scorer("tv", "cpu")
    assert scorer.score(noisy, None)["q"][0] > 2 * scorer.score(clean, None)["q"][0]


def test_brisque_ranks_noise_worse():
    img = _natural()
    rng = np.random.default_rng(1)
    noisy = np.clip(img + rng.normal(0, 30, img.shape), 0, 255).astype(np.uint8)
    batch = torch.from_numpy(np.stack([img, noisy])).permute(0, 3, 1, 2).contiguous()
    q = build_scorer("brisque", "cpu").score(batch, None)["q"]
    assert q.dtype == np.float64 and np.isfinite(q).all()
    assert q[1] > q[0]  # BRISQUE: lower is better


def test_pyiqa_metric_runs_batched():
    scorer = build_scorer("pyiqa:piqe", "cpu")
    x = torch.from_numpy(np.stack([_natural(0), _natural(1)])).permute(0, 3, 1, 2).contiguous()
    q = scorer.score(x, None)["q"]
    assert q.shape == (2,) and np.isfinite(q).all()
    assert scorer.kind == "nr_iqa" and scorer.columns == ("q",)


def test_pyiqa_errors_name_metric_file_and_folder(tmp_path):
    with pytest.raises(SpecError, match="unknown pyiqa no-reference metric 'clipiqaa'.*clipiqa"):
        build_scorer("pyiqa:clipiqaa", "cpu")
    hub = tmp_path / "hub"
    hub.mkdir()
    with pytest.raises(WeightsError) as err:
        build_scorer({"spec": "pyiqa:arniqa", "weights": str(hub)}, "cpu")
    msg = str(err.value)
    assert "resnet50-" in msg and str(hub / "checkpoints") in msg and "`weights`" in msg
    assert torch.hub.get_dir() != str(hub)  # the override does not leak


def test_a_weight_file_the_metric_cannot_take_or_read_is_named(tmp_path):
    junk = tmp_path / "weights.pth"
    junk.write_bytes(b"not weights")
    with pytest.raises(WeightsError, match=r"'piqe' .*takes no single weight file.*leave option `weights` out"):
        build_scorer({"spec": "pyiqa:piqe", "weights": str(junk)}, "cpu")  # its network has no weights
    with pytest.raises(WeightsError) as err:
        build_scorer({"spec": "pyiqa:niqe", "weights": str(junk)}, "cpu")  # takes one: this one is not it
    assert f"weights file {str(junk)!r}" in str(err.value) and "could not be loaded by pyiqa metric 'niqe'" in str(err.value)


def test_clipiqa_prompts_encoded_once():
    from iqa_lib.scorers.nr_iqa import _pkg_resources_shim

    with _pkg_resources_shim():
        from pyiqa.archs.clipiqa_arch import CLIPIQA

    class FakeClip(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0
            self.logit_scale = torch.nn.Parameter(torch.tensor(2.0))

        def encode_text(self, tokens):
            self.calls += 1
            return torch.cos(tokens[:, :8].float())

        def forward(self, x, text, pos_embedding=False, text_features=None):
            if text_features is None:
                text_features = self.encode_text(text)
            img = torch.stack([x.mean(dim=(1, 2, 3)) + i for i in range(8)], dim=1)
            img = img / img.norm(dim=-1, keepdim=True)
            txt = text_features / text_features.norm(dim=-1, keepdim=True)
            logits = self.logit_scale.exp() * img @ txt.t()
            return logits, logits.t()

    net = CLIPIQA.__new__(CLIPIQA)
    torch.nn.Module.__init__(net)
    fake = FakeClip()
    net.clip_model = [fake]
    net.prompt_pairs = torch.arange(10 * 77).reshape(10, 77) % 97
    net.model_type, net.pos_embedding = "clipiqa", False
    net.default_mean = torch.zeros(1, 3, 1, 1)
    net.default_std = torch.ones(1, 3, 1, 1)
    x = torch.rand(3, 3, 16, 16)
    expected = [CLIPIQA.forward(net, x[i : i + 1]) for i in range(3)]
    assert fake.calls == 3  # upstream: once per call
    _cache_clipiqa_text(net)
    got = [net(x[i : i + 1]) for i in range(3)]
    assert fake.calls == 4  # ours: once in all
    torch.testing.assert_close(torch.cat(got), torch.cat(expected))
