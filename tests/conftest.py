"""Shared fixtures: CPU only, offline, tiny generated data, the shared sample when present."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Under pytest-xdist every core already runs a worker: one BLAS/OpenMP/torch thread per worker
# (and per subprocess it starts) instead of a pool per worker that fights the other workers
# for the same cores. Set before numpy and torch are imported; a user's own setting wins.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_SAMPLE = REPO_ROOT.parent / "shared" / "data" / "imagenet-sample"

# Two real ImageNet-1k wnids with their labels (sorted-wnid indices).
TENCH, GOLDFISH = "n01440764", "n01443537"


@pytest.fixture(autouse=True)
def _pixel_limit_restored():
    """A command run in-process (``main([... "--max-pixels", ...])``) sets Pillow's limit and
    ``IQA_KIT_MAX_PIXELS`` for its workers; put both back so that the next test on this
    worker, and the subprocesses it starts, get the default."""
    from iqa_lib.data.images import MAX_PIXELS_ENV

    env, limit = os.environ.get(MAX_PIXELS_ENV), Image.MAX_IMAGE_PIXELS
    yield
    if env is None:
        os.environ.pop(MAX_PIXELS_ENV, None)
    else:
        os.environ[MAX_PIXELS_ENV] = env
    Image.MAX_IMAGE_PIXELS = limit


@pytest.fixture(scope="session")
def imagenet_sample() -> Path:
    """The 500-image ImageNet sample in ../shared; tests using it skip cleanly without it."""
    if not SHARED_SAMPLE.is_dir():
        pytest.skip(f"shared ImageNet sample not found at {SHARED_SAMPLE}")
    return SHARED_SAMPLE


def fail_one_render(monkeypatch, key: tuple[str, str, int], message: str = "boom"):
    """Make ImageNet-C rendering raise for one (image ID, corruption, severity); return the real
    renderer (to put back)."""
    from iqa_lib.data import imagenet_c_render as C

    real = C._render_preprocessed

    def flaky(pixels, image_id, corruption, severity):
        if (image_id, corruption, severity) == key:
            raise RuntimeError(message)
        return real(pixels, image_id, corruption, severity)

    monkeypatch.setattr(C, "_render_preprocessed", flaky)
    return real


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


@dataclass(frozen=True)
class TinyClip:
    arch: str  # a registered open_clip architecture name
    path: Path  # its random weights


TINY_CLIP_ARCH = "iqa-tiny-clip-test"


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> TinyClip:
    """A tiny open_clip architecture, registered, with random weights saved (no hub needed)."""
    import json

    import open_clip
    import torch

    d = tmp_path_factory.mktemp("clipcfg")
    cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    (d / f"{TINY_CLIP_ARCH}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(d)
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_CLIP_ARCH)
    path = d / "tiny.pt"
    torch.save(model.state_dict(), path)
    return TinyClip(TINY_CLIP_ARCH, path)


# The two `dvc repro` tests take about half of the suite's CPU time. xdist's load scheduling
# hands worker k the consecutive items [k * chunk, (k + 1) * chunk) first (not round-robin), so
# sorted to the front together they ran one after the other on one worker. Put each at the head
# of a different worker's first batch; the other slow tests follow them.
HEAVY_TESTS = ("test_dvc_repro_builds_every_table_and_is_idempotent", "test_dvc_repro_on_clean_images_only")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: slow ones first
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    heavy = [item for item in items if item.name in HEAVY_TESTS]
    if workers < 2 or not heavy:
        return
    ordered = [item for item in items if item.name not in HEAVY_TESTS]
    chunk = max((len(items) // workers) // 4, 2)
    for k, item in enumerate(heavy):
        ordered.insert(min(k * chunk, len(ordered)), item)
    items[:] = ordered
