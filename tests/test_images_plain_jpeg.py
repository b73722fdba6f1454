"""The short road for plain RGB JPEGs (``images._plain_jpeg``): the pixels of the long road, or no answer."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from iqa_lib.data import images
from iqa_lib.data.images import ImageDecodeError, load_rgb_array, opened_rgb, planar


def _photo(size=(61, 37)) -> Image.Image:
    rng = np.random.default_rng(3)
    base = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3)
    return Image.fromarray((base + rng.integers(0, 40, base.shape)).clip(0, 255).astype(np.uint8))


def _long_road(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


@pytest.mark.parametrize("options", [
    {}, {"subsampling": 0, "quality": 95}, {"subsampling": 1}, {"progressive": True},
    {"optimize": True}, {"restart_marker_blocks": 2},
])
def test_plain_jpegs_take_the_short_road_with_the_same_pixels(tmp_path, options):
    path = tmp_path / "a.jpg"
    _photo().save(path, **options)
    quick = images._plain_jpeg(path)
    assert quick is not None and quick.mode == "RGB" and quick.size == (61, 37)
    assert np.array_equal(np.asarray(quick), _long_road(path))
    with opened_rgb(path) as img:
        assert np.array_equal(planar(img), _long_road(path).transpose(2, 0, 1))
    assert np.array_equal(load_rgb_array(path), _long_road(path))


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_gray_and_cmyk_jpegs_go_the_long_road(tmp_path, mode):
    path = tmp_path / "a.jpg"
    _photo().convert(mode).save(path)
    assert images._plain_jpeg(path) is None
    assert np.array_equal(load_rgb_array(path), _long_road(path))


def test_damaged_jpegs_keep_their_reasons(tmp_path):
    path = tmp_path / "a.jpg"
    _photo((200, 150)).save(path, quality=95)
    data = path.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    assert images._plain_jpeg(cut) is None
    with pytest.raises(ImageDecodeError, match="truncated"):
        load_rgb_array(cut)
    header = tmp_path / "header.jpg"
    header.write_bytes(data[:3])
    assert images._plain_jpeg(header) is None
    with pytest.raises(ImageDecodeError):
        load_rgb_array(header)
    assert images._plain_jpeg(tmp_path / "missing.jpg") is None


def test_the_pixel_limit_sends_a_jpeg_the_long_road(tmp_path, monkeypatch):
    path = tmp_path / "a.jpg"
    _photo().save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    assert images._plain_jpeg(path) is None
    with pytest.raises(ImageDecodeError, match="image too large"):
        load_rgb_array(path)


def test_an_error_in_the_block_becomes_a_reason(tmp_path):
    path = tmp_path / "a.jpg"
    _photo().save(path)
    with pytest.raises(ImageDecodeError, match="broken pixels"), opened_rgb(path):
        raise OSError("broken pixels")
