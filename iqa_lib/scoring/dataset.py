"""Decode manifest images once, in loader workers, into uint8 tensors grouped by size.

Workers apply only the dataset-level geometry (DESIGN section 1): clean images
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

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler, get_worker_info

from iqa_lib.data.images import resize_center_crop

CLEAN_RESIZE = 256
CLEAN_CROP = 224


class ManifestImages(Dataset):
    """Item ``i`` = (manifest row, uint8 (3, H, W) tensor or None, failure reason or None)."""

    def __init__(
        self,
        paths: Sequence[str],
        clean: Sequence[bool],
        resize: int | None = CLEAN_RESIZE,
        crop: int | None = CLEAN_CROP,
    ):
        self.paths = list(paths)
        self.clean = np.asarray(clean, dtype=bool)
        self.resize, self.crop = resize, crop

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, row: int) -> tuple[int, torch.Tensor | None, str | None]:
        from iqa_lib.data.images import ImageDecodeError, opened_rgb, planar

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


def clean_geometry(img: Image.Image, resize: int | None, crop: int | None) -> Image.Image:
    """Resize + centre crop of clean images: the ImageNet-C protocol's geometry."""
    return resize_center_crop(img, resize, crop)


@dataclass
class ImageBatch:
    """A loader batch: uniform-size groups of images, plus the rows that failed to decode."""

    rows: torch.Tensor  # every manifest row in the batch (scored or failed)
    groups: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)  # (rows, uint8)
    failures: list[tuple[int, str]] = field(default_factory=list)

    def pin_memory(self) -> ImageBatch:
        self.groups = [(r, x.pin_memory()) for r, x in self.groups]
        return self


def collate_images(items: Sequence[tuple[int, torch.Tensor | None, str | None]]) -> ImageBatch:
    """Stack images of equal size together; keep order within each size group.

    In a loader worker each group is stacked straight into shared memory (as
    torch's default collate does), so sending the batch to the scoring process
    costs no further copy.
    """
    rows = torch.tensor([it[0] for it in items], dtype=torch.long)
    by_size: dict[tuple[int, ...], list[tuple[int, torch.Tensor]]] = {}
    failures = []
    for row, img, reason in items:
        if img is None:
            failures.append((row, reason or "unknown error"))
        else:
            by_size.setdefault(tuple(img.shape), []).append((row, img))
    groups = [
        (torch.tensor([r for r, _ in g], dtype=torch.long), _stack([x for _, x in g]))
        for g in by_size.values()
    ]
    return ImageBatch(rows, groups, failures)


def _stack(images: list[torch.Tensor]) -> torch.Tensor:
    out = None
    if get_worker_info() is not None:
        first = images[0]
        storage = first._typed_storage()._new_shared(first.numel() * len(images), device=first.device)
        out = first.new(storage).resize_(len(images), *first.shape)
    return torch.stack(images, out=out)


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
