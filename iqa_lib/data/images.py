"""Decode any image file into 8-bit RGB, or say precisely why it cannot be.

Every consumer (manifest checks, corruption rendering, scoring) reads images
through :func:`load_rgb`, so an odd file is converted the same way
everywhere: grayscale, CMYK, palette and 16-bit images become RGB, and
transparent images are composited onto white rather than having their alpha
dropped (a transparent pixel's stored RGB is arbitrary).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

# Never decode half an image silently: a truncated file is a failure to report.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# ImageNet has a few large images; the default bomb limit is for web input.
Image.MAX_IMAGE_PIXELS = 400_000_000

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif"}
)


class ImageDecodeError(Exception):
    """An image that cannot be turned into RGB pixels; ``reason`` is for the failures file."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def is_image_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img)
        if mode == "I":
            hi = int(arr.max()) if arr.size else 0
            shift = 8 if hi > 255 else 0
        else:
            shift = 8
        arr8 = (arr.astype(np.uint32) >> shift).clip(0, 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        scale = 255.0 if hi <= 1.0 and lo >= 0.0 else 255.0 / max(hi - lo, 1e-12)
        offset = 0.0 if hi <= 1.0 and lo >= 0.0 else lo
        arr8 = ((arr - offset) * scale).clip(0, 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    # L, 1, P, CMYK, YCbCr, LAB, HSV: Pillow's conversions are the standard ones.
    return img.convert("RGB")


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Fully decode ``path`` into an RGB PIL image; raise :class:`ImageDecodeError` otherwise."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageDecodeError(path, "missing file") from None
    except OSError as exc:
        raise ImageDecodeError(path, f"cannot stat: {exc}") from None
    if size == 0:
        raise ImageDecodeError(path, "zero-byte file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EXIF and palette warnings are not failures
            with Image.open(path) as img:
                img.load()
                if img.width < 1 or img.height < 1:
                    raise ImageDecodeError(path, f"empty image ({img.width}x{img.height})")
                return _to_rgb(img).copy()
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(path, f"image too large: {exc}") from None
    except Image.UnidentifiedImageError:
        raise ImageDecodeError(path, "not a recognised image format") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        msg = str(exc) or type(exc).__name__
        if "truncated" in msg.lower():
            msg = f"truncated file ({msg})"
        raise ImageDecodeError(path, msg) from None


def load_rgb_array(path: str | os.PathLike) -> np.ndarray:
    """``load_rgb`` as a contiguous HxWx3 uint8 array."""
    return np.ascontiguousarray(np.asarray(load_rgb(path), dtype=np.uint8))


def check_image(path: str | os.PathLike, full: bool = True) -> str | None:
    """Return ``None`` when ``path`` decodes, else the reason it does not.

    ``full=False`` only reads the header: catches missing, empty and non-image
    files at a fraction of the cost, but not truncated pixel data.
    """
    if full:
        try:
            load_rgb(path)
        except ImageDecodeError as exc:
            return exc.reason
        return None
    path = Path(path)
    if not path.exists():
        return "missing file"
    if path.stat().st_size == 0:
        return "zero-byte file"
    try:
        with Image.open(path) as img:
            if img.width < 1 or img.height < 1:
                return f"empty image ({img.width}x{img.height})"
    except Image.UnidentifiedImageError:
        return "not a recognised image format"
    except (OSError, ValueError, SyntaxError) as exc:
        return str(exc) or type(exc).__name__
    return None


def resize_center_crop(img: Image.Image, resize: int | None, crop: int | None) -> Image.Image:
    """torchvision's Resize(resize) (bilinear, shorter side) + CenterCrop(crop), in plain PIL.

    The same arithmetic and pixels as the torchvision transforms on PIL images,
    without importing torchvision. ImageNet-C was made with Resize(256) +
    CenterCrop(224); the scoring loader gives clean images the same geometry,
    so both call this one function. A crop larger than the image (only possible
    without a resize) pads with black, as torchvision does.
    """
    if resize:
        w, h = img.size
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = resize, int(resize * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        if (new_w, new_h) != (w, h):
            img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    if crop:
        w, h = img.size
        if w < crop or h < crop:
            padded = Image.new("RGB", (max(w, crop), max(h, crop)))
            padded.paste(img, ((max(w, crop) - w) // 2, (max(h, crop) - h) // 2))
            img, (w, h) = padded, padded.size
        top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
        img = img.crop((left, top, left + crop, top + crop))
    return img
