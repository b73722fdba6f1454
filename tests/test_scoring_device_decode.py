"""Decoding JPEGs on the scoring device: the same scores as the loader's decoding where the
decoders agree (libjpeg-turbo on CPU), failures named, and the record says how images were decoded.

The CUDA path (nvJPEG) is the same code with another device; it runs only where a GPU is.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest
import torch
from PIL import Image

from iqa_lib.scoring import complete, parts
from iqa_lib.scoring.dataset import ManifestImages, collate_images, decode_on_device
from iqa_lib.scoring.engine import run_scoring
from tests.conftest import write_image


def _jpeg(path: Path, size: tuple[int, int], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=85)
    return path


@pytest.fixture
def manifest(tmp_path) -> Path:
    rows = []
    for i in range(14):
        path = tmp_path / "img" / f"im{i:02d}.jpg"
        corruption, severity = ("clean", 0) if i % 5 == 0 else ("fog", 1 + i % 5)
        if i == 3:  # a PNG: decoded by the loader either way
            path = write_image(path.with_suffix(".png"), (96, 96), seed=i)
        elif i == 6:  # a truncated JPEG: a failure either way
            data = _jpeg(path, (96, 96), i).read_bytes()
            path.write_bytes(data[: len(data) // 3])
        else:
            _jpeg(path, (96, 96) if i % 4 else (112, 96), i)
        rows.append({"image_id": f"im{i:02d}", "label": i, "corruption": corruption,
                     "severity": severity, "path": str(path)})
    out = tmp_path / "manifest.parquet"
    pd.DataFrame(rows).to_parquet(out)
    return out


def test_items_hold_jpeg_bytes_only_for_jpegs_scored_as_stored(manifest):
    df = pd.read_parquet(manifest)
    ds = ManifestImages(df["path"].tolist(), (df["corruption"] == "clean").tolist(), encoded=True)
    kinds = [("bytes" if ds[i][1].ndim == 1 else "image") if ds[i][1] is not None else "failed"
             for i in range(len(df))]
    assert kinds[0] == "image" and kinds[5] == "image"  # clean: Resize + CenterCrop in the worker
    assert kinds[3] == "image"  # PNG
    assert kinds[6] == "bytes" and kinds[1] == "bytes"  # the truncated one fails on the device


def test_device_decode_equals_loader_decode_on_cpu(manifest, tmp_path):
    kw = {"batch_size": 4, "num_workers": 0, "device": "cpu", "part_size": 8, "progress": False}
    run_scoring("tv", manifest, tmp_path / "loader.parquet", **kw)
    run_scoring("tv", manifest, tmp_path / "device.parquet", decode_on_device=True, **kw)
    pdt.assert_frame_equal(pd.read_parquet(tmp_path / "device.parquet"),
                           pd.read_parquet(tmp_path / "loader.parquet"), check_exact=True)
    loader = pd.read_csv(parts.failures_path(tmp_path / "loader.parquet"))
    device = pd.read_csv(parts.failures_path(tmp_path / "device.parquet"))
    assert device["image_id"].tolist() == loader["image_id"].tolist() == ["im06"]
    assert device["reason"].iloc[0].startswith("truncated file (") and "JPEG decode on cpu" in device["reason"].iloc[0]
    record = json.loads(complete.record_path(tmp_path / "device.parquet").read_text())
    assert record["decode"] == "cpu"
    assert "decode" not in json.loads(complete.record_path(tmp_path / "loader.parquet").read_text())


def test_regrouping_keeps_the_loader_groups(manifest):
    df = pd.read_parquet(manifest)
    clean = (df["corruption"] == "clean").tolist()
    items = [ManifestImages(df["path"].tolist(), clean)[i] for i in range(len(df))]
    encoded = [ManifestImages(df["path"].tolist(), clean, encoded=True)[i] for i in range(len(df))]
    want = collate_images(items)
    got = decode_on_device(collate_images(encoded), torch.device("cpu"))
    assert [r.tolist() for r, _ in got.groups] == [r.tolist() for r, _ in want.groups]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(got.groups, want.groups, strict=True))
    assert [r for r, _ in got.failures] == [r for r, _ in want.failures] == [6]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_device_decode_on_cuda_is_close_to_the_loader(manifest, tmp_path):
    kw = {"batch_size": 4, "num_workers": 0, "device": "cuda", "part_size": 8, "progress": False}
    run_scoring("tv", manifest, tmp_path / "loader.parquet", **kw)
    run_scoring("tv", manifest, tmp_path / "device.parquet", decode_on_device=True, **kw)
    a, b = pd.read_parquet(tmp_path / "loader.parquet"), pd.read_parquet(tmp_path / "device.parquet")
    assert a["image_id"].tolist() == b["image_id"].tolist()
    np.testing.assert_allclose(b["q"], a["q"], rtol=0.02)  # nvJPEG's IDCT is not libjpeg's
