"""Shared fixtures: CPU only, offline, tiny generated data, the shared sample when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_SAMPLE = REPO_ROOT.parent / "shared" / "data" / "imagenet-sample"

# Two real ImageNet-1k wnids with their labels (sorted-wnid indices).
TENCH, GOLDFISH = "n01440764", "n01443537"


@pytest.fixture(scope="session")
def imagenet_sample() -> Path:
    """The 500-image ImageNet sample in ../shared; tests using it skip cleanly without it."""
    if not SHARED_SAMPLE.is_dir():
        pytest.skip(f"shared ImageNet sample not found at {SHARED_SAMPLE}")
    return SHARED_SAMPLE


def write_image(path: Path, size: tuple[int, int] = (40, 32), mode: str = "RGB", seed: int = 0) -> Path:
    """Write a small random image in any PIL mode (by extension)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    if mode == "I;16":
        arr = rng.integers(0, 65535, size=(h, w), dtype=np.uint16)
        Image.fromarray(arr).save(path)
        return path
    rgb = Image.fromarray(rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8), "RGB")
    img = rgb.convert(mode) if mode != "P" else rgb.convert("P", palette=Image.Palette.ADAPTIVE)
    img.save(path)
    return path


@pytest.fixture
def image_factory():
    return write_image
