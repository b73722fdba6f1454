from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from iqa_lib.data.images import ImageDecodeError, check_image, load_rgb, load_rgb_array


@pytest.mark.parametrize(
    ("mode", "ext"),
    [("RGB", "jpg"), ("L", "png"), ("CMYK", "jpg"), ("RGBA", "png"), ("P", "png"), ("LA", "png"), ("I;16", "png"), ("1", "png")],
)
def test_every_mode_becomes_rgb(tmp_path, image_factory, mode, ext):
    path = image_factory(tmp_path / f"img.{ext}", size=(17, 9), mode=mode)
    img = load_rgb(path)
    assert img.mode == "RGB"
    assert img.size == (17, 9)
    arr = load_rgb_array(path)
    assert arr.dtype == np.uint8 and arr.shape == (9, 17, 3)


def test_sixteen_bit_keeps_the_high_byte(tmp_path):
    arr = np.full((4, 4), 0xAB12, dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "a.png")
    assert (load_rgb_array(tmp_path / "a.png") == 0xAB).all()


def test_transparent_pixels_become_white(tmp_path):
    rgba = np.zeros((3, 3, 4), dtype=np.uint8)
    rgba[..., 0] = 200  # red under full transparency
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    assert (load_rgb_array(tmp_path / "t.png") == 255).all()


def test_cmyk_matches_pillow_conversion(tmp_path, image_factory):
    path = image_factory(tmp_path / "c.jpg", mode="CMYK")
    with Image.open(path) as img:
        expected = np.asarray(img.convert("RGB"))
    assert np.array_equal(load_rgb_array(path), expected)


def test_failures_have_reasons(tmp_path, image_factory):
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    good = image_factory(tmp_path / "good.jpg", size=(64, 64))
    data = good.read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    reasons = {
        "zero.jpg": "zero-byte file",
        "text.jpg": "not a recognised image format",
        "missing.jpg": "missing file",
    }
    for name, reason in reasons.items():
        with pytest.raises(ImageDecodeError) as info:
            load_rgb(tmp_path / name)
        assert info.value.reason == reason
        assert name in str(info.value)
        assert check_image(tmp_path / name) == reason
    assert "truncated" in check_image(tmp_path / "trunc.jpg")
    # A header check cannot see truncated pixel data; a full decode can.
    assert check_image(tmp_path / "trunc.jpg", full=False) is None
    assert check_image(good) is None


def test_tiny_image_decodes(tmp_path, image_factory):
    path = image_factory(tmp_path / "tiny.png", size=(8, 8))
    assert load_rgb(path).size == (8, 8)
