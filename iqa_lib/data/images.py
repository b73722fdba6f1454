"""Decode any image file into 8-bit RGB, or say precisely why it cannot be.

Every consumer (manifest checks, corruption rendering, scoring) reads images
through :func:`load_rgb`, so an odd file is converted the same way
everywhere: grayscale, CMYK, palette and 16-bit images become RGB, and
transparent images are composited onto white rather than having their alpha
dropped (a transparent pixel's stored RGB is arbitrary).

A path may also name a member of an uncompressed tar file (a WebDataset
shard) as ``<shard path>::<member name>``: the member is read in place by
seeking into the shard, never unpacked. Each process builds an index
(member -> offset, size) per shard once and keeps descriptors open for the
most recently used shards; reads use ``os.pread``, so threads and DataLoader workers (which get
their own cache, keyed by pid) never share a file position.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import tarfile
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, JpegImagePlugin

# Never decode half an image silently: a truncated file is a failure to report.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# Pillow's own decompression-bomb limit (89,478,485 px: a warning above it, an error above
# twice it) unless the user raises it (``--max-pixels``, ``IQA_KIT_MAX_PIXELS``): a 439 KB
# 20000x20000 PNG decoded under the old 400 Mpx limit took 5.7 GB; refused at the header it
# costs nothing, and an accepted image costs at most about 2 x 3 bytes x 179 Mpx per worker.
DEFAULT_MAX_PIXELS = 89_478_485
MAX_PIXELS_ENV = "IQA_KIT_MAX_PIXELS"


def set_max_pixels(pixels: int | None) -> None:
    """Pillow's bomb limit for this process and (through the environment) its workers."""
    if pixels is None:
        return
    if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 1:
        raise ValueError(f"max_pixels must be a whole number of at least 1, got {pixels!r}")
    Image.MAX_IMAGE_PIXELS = pixels
    os.environ[MAX_PIXELS_ENV] = str(pixels)


def _limit_from_env() -> int:
    text = os.environ.get(MAX_PIXELS_ENV, "")
    return int(text) if text.isdigit() and int(text) > 0 else DEFAULT_MAX_PIXELS


Image.MAX_IMAGE_PIXELS = _limit_from_env()

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif"}
)


class ImageDecodeError(Exception):
    """An image that cannot be turned into RGB pixels; ``reason`` is for the failures file."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


MAX_MEMBER_BYTES = 1 << 30  # no image or label member of a shard is read beyond 1 GiB
MEMBER_SEPARATOR = "::"  # <shard path>::<member name>
BROKEN_LINK = "broken symbolic link"
LINK_LOOP = "symbolic link loop"


NOT_UTF8 = ("file name is not valid UTF-8 (shown with \\x escapes): rename it to UTF-8 "
            "(e.g. `convmv -f latin1 -t utf8 --notest`); the kit's tables store names as UTF-8")
_ESCAPE = re.compile(r"\\x([89a-fA-F][0-9a-fA-F])")


def shown(path: str) -> str:
    """``path`` as a UTF-8-safe string: bytes that are not UTF-8 become ``\\xNN`` escapes.

    Names the OS gives that are not UTF-8 arrive with surrogates, which Parquet
    and CSV cannot encode; escaped, they can be listed as failures.
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    return path


def _unescaped(path: str) -> str:
    """The OS name that :func:`shown` escaped into ``path`` (``path`` itself when none)."""
    pieces = _ESCAPE.split(path)
    raw = b"".join(bytes([int(p, 16)]) if i % 2 else p.encode("utf-8") for i, p in enumerate(pieces))
    return os.fsdecode(raw)


def missing_reason(path: str | os.PathLike, exc: OSError) -> str:
    """Why ``path`` was not found (``exc``): a dangling or looping link, or a name that is
    not UTF-8 (listed escaped), is named as such."""
    if exc.errno == errno.ELOOP:
        return LINK_LOOP
    text = os.fspath(path)
    if isinstance(text, str) and _ESCAPE.search(text) and os.path.lexists(_unescaped(text)):
        return NOT_UTF8
    return BROKEN_LINK if os.path.islink(path) else "missing file"


def is_image_file(path: str | os.PathLike) -> bool:
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


# Image formats the kit does not read (camera, HDR, layered, vector, newer codecs): a file of
# one of these is listed as a failure with this reason, never skipped without a word.
UNSUPPORTED_IMAGE_EXTENSIONS = frozenset({
    ".heic", ".heif", ".avif", ".jxl", ".jp2", ".j2k", ".jpx", ".jpf", ".dng", ".cr2", ".cr3",
    ".nef", ".arw", ".orf", ".rw2", ".raf", ".psd", ".exr", ".hdr", ".svg", ".ico", ".tga",
})


def unsupported_image_reason(path: str | os.PathLike) -> str | None:
    """Why ``path`` is listed but not read, when its extension is an image format the kit does
    not read; ``None`` otherwise."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in UNSUPPORTED_IMAGE_EXTENSIONS:
        return None
    return (f"unsupported image format ({ext}): convert it to one of "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))} (e.g. PNG or JPEG)")


# --------------------------------------------------------------------- tar members
def split_member(path: str | os.PathLike) -> tuple[str, str] | None:
    """``(shard, member)`` of a ``<shard>::<member>`` path, ``None`` for a plain file path."""
    text = os.fspath(path)
    if MEMBER_SEPARATOR not in text:
        return None
    shard, member = text.split(MEMBER_SEPARATOR, 1)
    return shard, member


def member_path(shard: str | os.PathLike, member: str) -> str:
    return f"{os.fspath(shard)}{MEMBER_SEPARATOR}{member}"


class _Shard:
    """A shard's identity (to notice a rewritten file), member index and descriptor (-1: closed)."""

    __slots__ = ("fd", "identity", "members", "truncated_at")

    def __init__(self, identity: tuple[int, int, int],
                 index: tuple[dict[str, tuple[int, int]], int | None]):
        self.fd, self.identity = -1, identity
        self.members, self.truncated_at = index


# Indexes are kept for every shard seen (their size is the dataset's member count);
# descriptors only for the most recently used shards, so thousands of shards never
# exhaust the process's file limit.
_SHARDS: dict[tuple[int, str], _Shard] = {}
_OPEN: OrderedDict[tuple[int, str], None] = OrderedDict()
_MAX_OPEN = 64
_LOCK = threading.Lock()


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_size, st.st_mtime_ns


def tar_index(shard: str | os.PathLike) -> dict[str, tuple[int, int]]:
    """Member name -> (data offset, size) of the regular files of an uncompressed tar.

    Cached per process and shard; rebuilt when the shard file changes. Raises
    ``FileNotFoundError`` for a missing shard and ``tarfile.TarError`` for a
    file that is not an uncompressed tar.
    """
    return _shard(os.fspath(shard), need_fd=False)[0].members


def tar_truncated_at(shard: str | os.PathLike) -> int | None:
    """The byte where the shard's tar stream stops without its end-of-archive block (a
    truncated shard: tarfile ends such a listing without a word), or ``None``."""
    return _shard(os.fspath(shard), need_fd=False)[0].truncated_at


def _index(shard: str) -> tuple[dict[str, tuple[int, int]], int | None]:
    members: dict[str, tuple[int, int]] = {}
    # "r:" refuses compressed tars: their members cannot be read by seeking
    with tarfile.open(shard, mode="r:") as tar:
        while True:
            try:
                info = tar.next()
            except tarfile.ReadError:
                if not members:
                    raise
                break  # a truncated shard: index what is there; short reads report the rest
            if info is None:
                break
            if info.isreg():
                members[info.name] = (info.offset_data, info.size)
        end = tar.offset
    with open(shard, "rb") as fh:
        fh.seek(end)
        marker = fh.read(tarfile.BLOCKSIZE)
    intact = len(marker) == tarfile.BLOCKSIZE and not marker.strip(b"\0")
    return members, None if intact else end


def _shard(shard: str, need_fd: bool = True) -> tuple[_Shard, int]:
    """The cached shard entry (index rebuilt if the file changed) and, if asked, an open fd."""
    identity = _identity(os.stat(shard))  # notices a replaced shard, and a missing one
    key = (os.getpid(), shard)
    with _LOCK:
        entry = _current_entry(shard, key, identity)
        if not need_fd:
            return entry, -1
        if entry.fd < 0:
            entry.fd = _open_unchanged(shard, entry.identity)
            _close_oldest_beyond_limit()
        _OPEN[key] = None
        _OPEN.move_to_end(key)
        # pread below runs outside the lock: the fd is only closed under the lock by an
        # eviction, which needs _MAX_OPEN other shards to be opened first
        return entry, entry.fd


def _current_entry(shard: str, key: tuple[int, str], identity: tuple[int, int, int]) -> _Shard:
    """The cached entry of ``shard``, indexed again (its descriptor closed) when the file changed."""
    entry = _SHARDS.get(key)
    if entry is not None and entry.identity == identity:
        return entry
    index = _index(shard)
    if entry is not None and entry.fd >= 0:
        os.close(entry.fd)
        _OPEN.pop(key, None)
    entry = _SHARDS[key] = _Shard(identity, index)
    return entry


def _open_unchanged(shard: str, identity: tuple[int, int, int]) -> int:
    """A read descriptor of ``shard``, refused when the file was replaced since it was indexed."""
    fd = os.open(shard, os.O_RDONLY)
    if _identity(os.fstat(fd)) != identity:  # replaced between stat and open
        os.close(fd)
        raise OSError(f"tar shard {shard!r} changed while being read; run again")
    return fd


def _close_oldest_beyond_limit() -> None:
    """Close the least recently used descriptors until fewer than ``_MAX_OPEN`` are open."""
    while len(_OPEN) >= _MAX_OPEN:
        old, _ = _OPEN.popitem(last=False)
        old_entry = _SHARDS.get(old)
        if old_entry is not None and old_entry.fd >= 0:
            os.close(old_entry.fd)
            old_entry.fd = -1


def read_member(path: str | os.PathLike) -> bytes:
    """The bytes of ``<shard>::<member>``; :class:`ImageDecodeError` when they cannot be had."""
    parts = split_member(path)
    if parts is None:
        raise ValueError(f"{os.fspath(path)!r} is not a '<shard>{MEMBER_SEPARATOR}<member>' path")
    shard, member = parts
    try:
        opened, fd = _shard(shard)
    except FileNotFoundError:
        raise ImageDecodeError(path, "missing file (tar shard not found)") from None
    except (tarfile.TarError, OSError) as exc:
        raise ImageDecodeError(path, f"unreadable tar shard: {exc}") from None
    where = opened.members.get(member)
    if where is None:
        raise ImageDecodeError(path, "missing file (no such member in the tar shard)")
    offset, size = where
    if size == 0:
        raise ImageDecodeError(path, "zero-byte file")
    if size > MAX_MEMBER_BYTES:  # a damaged header must not become a 60 GiB allocation
        raise ImageDecodeError(
            path, f"tar member claims {size:,} bytes, more than the {MAX_MEMBER_BYTES:,} the kit "
            "reads from a shard: a damaged header or not an image; rebuild the shard")
    end = offset + size
    if end > opened.identity[1]:
        raise ImageDecodeError(
            path, f"truncated file (truncated shard: the member's data would end at byte {end:,} "
            f"of a {opened.identity[1]:,}-byte shard)")
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise ImageDecodeError(path, f"truncated file (tar member has {len(data)} of {size} bytes)")
    return data


def _open_image(path: str | os.PathLike) -> Image.Image:
    """``Image.open`` of a file path or a tar member (lazy, like ``Image.open``)."""
    if split_member(path) is not None:
        return Image.open(io.BytesIO(read_member(path)))
    return Image.open(path)


_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _SIXTEEN_BIT_MODES:
        return _integer_to_rgb(img)
    if mode == "F":
        return _float_to_rgb(img)
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in img.info):
        return _on_white(img)
    # L, 1, P, CMYK, YCbCr, LAB, HSV: Pillow's conversions are the standard ones.
    return img.convert("RGB")


def _integer_to_rgb(img: Image.Image) -> Image.Image:
    """16-bit (and 32-bit ``I``) gray: the high byte; an ``I`` image within 0-255 as it is."""
    arr = np.asarray(img)
    if img.mode == "I":
        hi = int(arr.max()) if arr.size else 0
        shift = 8 if hi > 255 else 0
    else:
        shift = 8
    arr8 = (arr.astype(np.uint32) >> shift).clip(0, 255).astype(np.uint8)
    return Image.fromarray(arr8, mode="L").convert("RGB")


def _float_to_rgb(img: Image.Image) -> Image.Image:
    """Float gray: 0-1 scaled to 0-255, any other range stretched to it."""
    arr = np.asarray(img, dtype=np.float32)
    lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
    unit = hi <= 1.0 and lo >= 0.0
    scale = 255.0 if unit else 255.0 / max(hi - lo, 1e-12)
    offset = 0.0 if unit else lo
    arr8 = ((arr - offset) * scale).clip(0, 255).astype(np.uint8)
    return Image.fromarray(arr8, mode="L").convert("RGB")


def _on_white(img: Image.Image) -> Image.Image:
    """A transparent image composited onto white (a transparent pixel's stored RGB is arbitrary)."""
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Fully decode ``path`` (a file or a ``<shard>::<member>``) into an RGB PIL image.

    Raises :class:`ImageDecodeError` (with the reason for the failures file) otherwise.
    """
    with opened_rgb(path) as img:
        return img.copy()  # the file's image is released when the block ends


def load_rgb_array(path: str | os.PathLike) -> np.ndarray:
    """``load_rgb`` as a contiguous HxWx3 uint8 array."""
    with opened_rgb(path) as img:
        return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def planar(img: Image.Image) -> np.ndarray:
    """An RGB image as a 3xHxW uint8 array, band by band: no HxWx3 array and no strided copy."""
    out = np.empty((3, img.height, img.width), dtype=np.uint8)
    for c, band in enumerate(img.split()):
        out[c] = np.asarray(band)
    return out


@contextlib.contextmanager
def opened_rgb(path: str | os.PathLike) -> Iterator[Image.Image]:
    """``path`` decoded and in RGB, valid inside the block only (no copy for RGB files).

    What the block raises while reading pixels (a truncated file, a decoder
    error) becomes an :class:`ImageDecodeError` with the reason, as in :func:`load_rgb`.
    A plain three-component JPEG takes the short road of :func:`_plain_jpeg` (the same pixels).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # EXIF and palette warnings are not failures
        quick = _plain_jpeg(path)
        if quick is not None:
            with _decode_errors(path):
                yield quick
            return
    if split_member(path) is None:
        path = Path(path)
        _check_file(path)
    with _decode_errors(path), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # EXIF and palette warnings are not failures
        with _open_image(path) as img:
            img.load()
            if img.width < 1 or img.height < 1:
                raise ImageDecodeError(path, f"empty image ({img.width}x{img.height})")
            yield _to_rgb(img)


@contextlib.contextmanager
def _decode_errors(path: str | os.PathLike) -> Iterator[None]:
    """What reading an image (or a block using its pixels) raises, as an :class:`ImageDecodeError`."""
    try:
        yield
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(path, too_large_reason(exc)) from None
    except Image.UnidentifiedImageError:
        raise ImageDecodeError(path, unsupported_image_reason(path) or "not a recognised image format") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageDecodeError(path, _decoder_reason(exc)) from None


JPEG_MAGIC = b"\xff\xd8\xff"  # what Pillow's JPEG plugin accepts
# Pillow's own JPEG decoder, called as ImageFile.load calls it (absent in an unusual build: no short road)
_JPEG_DECODER = getattr(Image.core, "jpeg_decoder", None)


def jpeg_bytes(path: str | os.PathLike) -> bytes | None:
    """The bytes of a JPEG file or tar member; None for another format or what cannot be read
    (the caller decodes it the long way, where a failure gets its reason)."""
    try:
        data = read_member(path) if split_member(path) is not None else Path(path).read_bytes()
    except (OSError, ValueError, ImageDecodeError):
        return None
    return data if data.startswith(JPEG_MAGIC) else None


def _plain_jpeg(path: str | os.PathLike) -> Image.Image | None:
    """A plain file that Pillow opens as an 8-bit three-component JPEG, decoded as
    ``Image.open(path).load()`` decodes it, with less on the way; None for anything else.

    The headers are parsed by Pillow's own ``JpegImageFile`` (so it accepts and
    sizes exactly the files ``Image.open`` does); the pixels come from Pillow's
    decoder with the tile's arguments, fed the whole file at once rather than
    64 KiB at a time (libjpeg's output does not depend on how its input is
    split). Skipped: the stat (a file that cannot be read returns None), the
    plugin search, the chunked read loop. Whatever is not the plain case (a tar
    member, another format, gray or CMYK, an MPO, beyond the pixel limit, a
    decoder that stops early or reports an error) returns None, and
    :func:`opened_rgb` reads the file the long way, with its reasons.
    """
    if _JPEG_DECODER is None or MEMBER_SEPARATOR in os.fspath(path):
        return None
    data = jpeg_bytes(path)
    if data is None:
        return None
    try:
        header = JpegImagePlugin.JpegImageFile(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - any header Pillow refuses goes the long way, with its reason
        return None
    return _decoded(header, data)


def _decoded(header: JpegImagePlugin.JpegImageFile, data: bytes) -> Image.Image | None:
    """The pixels of a JPEG whose header is ``header``, when it is the plain RGB case and decodes whole."""
    if not _plain_rgb(header):
        return None
    width, height = header.size
    core = Image.core.new("RGB", (width, height))
    decoder = _JPEG_DECODER("RGB", "RGB", "")
    try:
        decoder.setimage(core, (0, 0, width, height))
        consumed, err_code = decoder.decode(data)
    finally:
        decoder.cleanup()
    if consumed >= 0 or err_code < 0:  # wants more data (truncated) or failed: the long way says why
        return None
    return Image.Image()._new(core)


def _plain_rgb(header: JpegImagePlugin.JpegImageFile) -> bool:
    """One RGB scan, one tile, no MPO frames or decoder options, within the pixel limit."""
    width, height = header.size
    limit = Image.MAX_IMAGE_PIXELS
    tile = [("jpeg", (0, 0, width, height), 0, ("RGB", ""))]
    if header.mode != "RGB" or "mp" in header.info or header.decoderconfig or header.tile != tile:
        return False
    return width >= 1 and height >= 1 and (limit is None or width * height <= limit)


def _check_file(path: Path) -> None:
    """Refuse a file that is missing (a dangling or looping link said so), unreadable or empty."""
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise ImageDecodeError(path, missing_reason(path, exc)) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageDecodeError(path, LINK_LOOP) from None
        raise ImageDecodeError(path, f"cannot stat: {exc}") from None
    if size == 0:
        raise ImageDecodeError(path, "zero-byte file")


def _decoder_reason(exc: Exception) -> str:
    """A decoder's error as a failure reason; a truncated file says so first."""
    msg = str(exc) or type(exc).__name__
    return f"truncated file ({msg})" if "truncated" in msg.lower() else msg


def too_large_reason(exc: Exception) -> str:
    """A refused decompression bomb, with what to do when the image is trusted."""
    return (f"image too large: {exc} If you trust the file, raise the limit with --max-pixels "
            f"(or the {MAX_PIXELS_ENV} environment variable)")


def check_image(path: str | os.PathLike, full: bool = True) -> str | None:
    """Return ``None`` when ``path`` (a file or a ``<shard>::<member>``) decodes, else why not.

    ``full=False`` only reads the header: catches missing, empty and non-image
    files at a fraction of the cost, but not truncated pixel data.
    """
    if not full:
        return _header_problem(path)
    try:
        load_rgb(path)
    except ImageDecodeError as exc:
        return exc.reason
    return None


def _header_problem(path: str | os.PathLike) -> str | None:
    """Why the header of ``path`` cannot be read, or ``None`` when it can."""
    try:
        return _header_emptiness(path)
    except ImageDecodeError as exc:
        return exc.reason
    except FileNotFoundError as exc:
        return missing_reason(path, exc)
    except Image.UnidentifiedImageError:
        return "not a recognised image format"
    except Image.DecompressionBombError as exc:
        return too_large_reason(exc)
    except (OSError, ValueError, SyntaxError) as exc:
        if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
            return LINK_LOOP
        return str(exc) or type(exc).__name__


def _header_emptiness(path: str | os.PathLike) -> str | None:
    """A zero-byte file or an image of no pixels, by its header; ``None`` when neither."""
    if split_member(path) is None and os.stat(path).st_size == 0:
        return "zero-byte file"
    with _open_image(path) as img:
        if img.width < 1 or img.height < 1:
            return f"empty image ({img.width}x{img.height})"
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


def thumbnail(path: str | os.PathLike, size: int = 128) -> np.ndarray:
    """An RGB thumbnail for reports; an unreadable file becomes a grey square (a report shows what it can)."""
    try:
        img = load_rgb(path)
        img.thumbnail((size, size))
        return np.asarray(img)
    except Exception:  # noqa: BLE001 - any failure to read gives the placeholder
        return np.full((size, size, 3), 128, dtype=np.uint8)
