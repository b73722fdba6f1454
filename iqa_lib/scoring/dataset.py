"""Decode manifest images once, in loader workers, into uint8 tensors grouped by size.

Workers apply only the dataset-level geometry (docs/architecture.md, "Geometry"): clean images
get Resize(256) + CenterCrop(224) (as ImageNet-C was made), corrupted images are
kept as stored. That makes almost every batch one 224x224 block, keeps the
host-to-device copy small (uint8), and leaves each model's own transform
(resize to its input size, normalise) to the device. Images of other sizes
are not resized to fit: a batch is split into groups of equal size, so NR-IQA
metrics see every image at its scoring resolution.

An image that cannot be decoded (``load_rgb`` converts what it can) becomes a
failure row with its reason, never an exception that ends the run.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler, get_worker_info

from iqa_lib.data.images import (
    ImageDecodeError,
    jpeg_bytes,
    opened_rgb,
    planar,
    resize_center_crop,
)

CLEAN_RESIZE = 256
CLEAN_CROP = 224


class ManifestImages(Dataset):
    """Item ``i`` = (manifest row, uint8 (3, H, W) tensor or None, failure reason or None).

    With ``encoded``, a JPEG scored as stored (no clean geometry) is not decoded
    here: its item holds the file's bytes as a 1-D uint8 tensor, for
    :func:`decode_on_device` to decode on the scoring device.
    """

    def __init__(
        self,
        paths: Sequence[str],
        clean: Sequence[bool],
        resize: int | None = CLEAN_RESIZE,
        crop: int | None = CLEAN_CROP,
        encoded: bool = False,
    ):
        self.paths = list(paths)
        self.clean = np.asarray(clean, dtype=bool)
        self.resize, self.crop = resize, crop
        self.encoded = encoded

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, row: int) -> tuple[int, torch.Tensor | None, str | None]:
        if self.encoded and not self.clean[row]:
            data = _jpeg_bytes(self.paths[row])
            if data is not None:
                return row, data, None
        try:
            with opened_rgb(self.paths[row]) as img:
                if self.clean[row]:
                    img = clean_geometry(img, self.resize, self.crop)
                return row, torch.from_numpy(planar(img)), None
        except ImageDecodeError as exc:
            return row, None, exc.reason
        except (OSError, ValueError, EOFError, SyntaxError, MemoryError, Image.DecompressionBombError) as exc:
            # what odd pixel data can raise; a NameError or TypeError is a bug and must stop the run
            return row, None, f"{type(exc).__name__}: {exc}"



def _decode_jpegs(datas: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | str]:
    """Each JPEG decoded to RGB on ``device``, or why it could not be."""
    with warnings.catch_warnings():  # torchvision 0.29 deprecates its image IO for TorchCodec's
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_jpeg

        try:
            return list(decode_jpeg(datas, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:  # one bad file fails the whole call: decode one by one to name it
            decoded: list[torch.Tensor | str] = []
            for data in datas:
                try:
                    decoded.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
                except RuntimeError as exc:
                    decoded.append(_decoder_reason(exc, device))
            return decoded


def _decoder_reason(exc: BaseException, device: torch.device) -> str:
    """torchvision's message without its source location, worded as the loader's reasons."""
    text = (str(exc).strip().splitlines() or [""])[0]
    text = re.sub(r"^decode_jpeg, \S+:\d+, ", "", text) or type(exc).__name__
    if "truncated" in text.lower():
        return f"truncated file ({text}; JPEG decode on {device.type})"
    return f"JPEG decode on {device.type}: {text}"


def _jpeg_bytes(path: str) -> torch.Tensor | None:
    """The file's bytes as a tensor if it is a JPEG; None otherwise or when it cannot be read
    (decoded here instead, where a failure gets its reason)."""
    data = jpeg_bytes(path)
    return None if data is None else torch.frombuffer(bytearray(data), dtype=torch.uint8)


def clean_geometry(img: Image.Image, resize: int | None, crop: int | None) -> Image.Image:
    """Resize + centre crop of clean images: the ImageNet-C protocol's geometry."""
    return resize_center_crop(img, resize, crop)


@dataclass
class ImageBatch:
    """A loader batch: uniform-size groups of images, plus the rows that failed to decode."""

    # every manifest row in the batch (scored or failed); numpy when the workers scored every scorer
    rows: torch.Tensor | np.ndarray
    groups: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)  # (rows, uint8)
    failures: list[tuple[int, str]] = field(default_factory=list)
    encoded: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # (row, JPEG bytes)
    # scorers run in the loader workers: their scored batches by stream (iqa_lib.scoring.stream)
    scored: dict[str, list] = field(default_factory=dict)

    def pin_memory(self) -> ImageBatch:
        self.groups = [(r, x.pin_memory()) for r, x in self.groups]
        return self


def collate_images(items: Sequence[tuple[int, torch.Tensor | None, str | None]], shared: bool = True) -> ImageBatch:
    """Stack images of equal size together; keep order within each size group.

    In a loader worker each group is stacked straight into shared memory (as
    torch's default collate does), so sending the batch to the scoring process
    costs no further copy; ``shared=False`` stacks into ordinary memory (images
    a worker scores itself and never sends).
    """
    rows = torch.tensor([it[0] for it in items], dtype=torch.long)
    by_size: dict[tuple[int, ...], list[tuple[int, torch.Tensor]]] = {}
    failures = []
    encoded = []
    for row, img, reason in items:
        if img is None:
            failures.append((row, reason or "unknown error"))
        elif img.ndim == 1:
            encoded.append((row, img))
        else:
            by_size.setdefault(tuple(img.shape), []).append((row, img))
    groups = [
        (torch.tensor([r for r, _ in g], dtype=torch.long), _stack([x for _, x in g], shared))
        for g in by_size.values()
    ]
    return ImageBatch(rows, groups, failures, _pack(encoded))


def _pack(encoded: list[tuple[int, torch.Tensor]]) -> list[tuple[int, torch.Tensor]]:
    """The JPEG bytes as views of one buffer: a worker sends one shared-memory block, not one per file."""
    if len(encoded) < 2:
        return encoded
    datas = [d for _, d in encoded]
    buffer = torch.cat(datas, out=_shared_out(datas[0], (sum(len(d) for d in datas),)))
    views, start = [], 0
    for row, data in encoded:
        views.append((row, buffer[start : start + len(data)]))
        start += len(data)
    return views


def decode_on_device(batch: ImageBatch, device: torch.device) -> ImageBatch:
    """Decode the batch's JPEG bytes on ``device`` (nvJPEG on CUDA) and regroup it by size.

    The groups are those :func:`collate_images` makes of decoded items (sizes in
    order of first appearance, rows ascending), so the scorers see the batches
    of the loader's own decoding. A JPEG the device cannot decode is a failure
    row with the decoder's reason. On CPU the decoder is libjpeg-turbo, equal to
    Pillow's pixels; nvJPEG's may differ by a few levels, which is why a run
    that decodes on the device records so (the engine's completion record).
    """
    if not batch.encoded:
        return batch
    decoded = _decode_jpegs([d for _, d in batch.encoded], device)
    items: dict[int, torch.Tensor | str] = dict(batch.failures)
    for rows, images in batch.groups:
        for i, row in enumerate(rows.tolist()):
            items[row] = images[i].to(device, non_blocking=True)
    for (row, _), image in zip(batch.encoded, decoded, strict=True):
        items[row] = image
    return _regrouped(batch.rows, items)


def _regrouped(rows: torch.Tensor, items: Mapping[int, torch.Tensor | str]) -> ImageBatch:
    """A batch of decoded images (or failure reasons) by row: groups by size in order of first
    appearance, rows ascending, as :func:`collate_images` makes them."""
    by_size: dict[tuple[int, ...], list[tuple[int, torch.Tensor]]] = {}
    failures = []
    for row in sorted(items):
        item = items[row]
        if isinstance(item, str):
            failures.append((row, item))
        else:
            by_size.setdefault(tuple(item.shape), []).append((row, item))
    groups = [
        (torch.tensor([r for r, _ in g], dtype=torch.long), _stack_decoded([x for _, x in g]))
        for g in by_size.values()
    ]
    return ImageBatch(rows, groups, failures)


def _stack_decoded(images: list[torch.Tensor]) -> torch.Tensor:
    """Stack decoded images (channel-last in memory); on CPU through numpy, whose transposing
    copy is single-threaded (torch's spreads a small copy over busy cores)."""
    if images[0].device.type != "cpu":
        return torch.stack(images)
    out = np.empty((len(images), *images[0].shape), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = image.numpy()
    return torch.from_numpy(out)


def _stack(images: list[torch.Tensor], shared: bool = True) -> torch.Tensor:
    if not shared:
        return torch.stack(images)
    return torch.stack(images, out=_shared_out(images[0], (len(images), *images[0].shape)))


def _shared_out(like: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor | None:
    """In a loader worker, an empty tensor in shared memory to write a batch into (sending it
    to the scoring process then copies nothing, as torch's default collate does); else None."""
    if get_worker_info() is None:
        return None
    numel = 1
    for size in shape:
        numel *= size
    return like.new(like._typed_storage()._new_shared(numel, device=like.device)).resize_(*shape)


class ChunkBatchSampler(Sampler[list[int]]):
    """Batches of manifest rows that never cross a part (chunk) boundary.

    Batches lie on a grid from each chunk's first row, whatever was scored
    before; rows already in sub-parts (``done_rows``: chunk -> rows) are left
    out of their batch. A resumed run thus scores the remaining rows in the
    very batches an uninterrupted run would have, so batch-dependent numerics
    give the same values.
    """

    def __init__(
        self,
        chunks: Sequence[int],
        part_size: int,
        n_rows: int,
        batch_size: int,
        done_rows: Mapping[int, Collection[int]] | None = None,
    ):
        self.chunks, self.part_size, self.n_rows, self.batch_size = (
            list(chunks),
            part_size,
            n_rows,
            batch_size,
        )
        self.done_rows = {c: frozenset(int(r) for r in rows) for c, rows in (done_rows or {}).items()}

    def chunk_rows(self, chunk: int) -> range:
        return range(chunk * self.part_size, min((chunk + 1) * self.part_size, self.n_rows))

    def todo_rows(self, chunk: int) -> list[int]:
        """The rows of ``chunk`` this run scores."""
        done = self.done_rows.get(chunk, frozenset())
        return [r for r in self.chunk_rows(chunk) if r not in done]

    def todo_count(self, chunk: int) -> int:
        """How many rows of ``chunk`` this run scores (``done_rows`` lie within their chunk)."""
        return len(self.chunk_rows(chunk)) - len(self.done_rows.get(chunk, ()))

    def _batches(self, chunk: int) -> Iterator[list[int]]:
        rows = self.chunk_rows(chunk)
        done = self.done_rows.get(chunk, frozenset())
        for start in range(rows.start, rows.stop, self.batch_size):
            batch = range(start, min(start + self.batch_size, rows.stop))
            todo = [r for r in batch if r not in done] if done else list(batch)
            if todo:
                yield todo

    def __iter__(self) -> Iterator[list[int]]:
        for c in self.chunks:
            yield from self._batches(c)

    def __len__(self) -> int:
        return sum(
            sum(1 for _ in self._batches(c)) if self.done_rows.get(c)
            else -(-len(self.chunk_rows(c)) // self.batch_size)
            for c in self.chunks
        )
