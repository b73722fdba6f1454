"""Rendering ImageNet-C from clean images (``iqa-kit corrupt``; the ``prepare`` stage renders too).

The clean images come from a labelled folder or a manifest's clean rows; the
tree is written under its output lock, resumably
(:func:`iqa_lib.data.imagenet_c_render.generate_imagenet_c`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from iqa_lib.corruptions import SEVERITIES
from iqa_lib.data.imagenet_c_render import (
    GenerationReport,
    generate_imagenet_c,
    resolve_corruptions,
    resolve_severities,
)
from iqa_lib.data.images import set_max_pixels
from iqa_lib.data.scan import clean_source
from iqa_lib.locks import output_lock


@dataclass(frozen=True)
class CorruptSettings:
    """Which clean images, which corruptions and severities, and where the tree goes."""

    src: str | os.PathLike  # a labelled folder or a manifest (its clean rows)
    out: str | os.PathLike  # the root of the ImageNet-C tree
    corruptions: tuple[str, ...] = ("common",)  # names, or the sets common, extra, all
    severities: tuple[int, ...] = SEVERITIES
    labels_file: str | os.PathLike | None = None  # labels for a flat folder
    limit: int | None = None  # only the first images by image_id (for trying it out)
    workers: int | None = None  # rendering processes; None: all cores
    progress: bool = True
    max_pixels: int | None = None  # Pillow's decompression-bomb limit; None: as set already
    wait: bool = False  # wait for another run writing the same tree instead of stopping


def render_imagenet_c(settings: CorruptSettings, say: Callable[[str], object] = print) -> GenerationReport:
    """Render what the tree lacks; ``say`` gets what is about to be rendered.

    The names and severities are checked before the lock is taken and a large folder scanned.
    """
    set_max_pixels(settings.max_pixels)
    corruptions = resolve_corruptions(settings.corruptions)
    severities = resolve_severities(settings.severities)
    with output_lock(settings.out, wait=settings.wait):
        clean, classes = clean_source(settings.src, settings.labels_file)
        if settings.limit is not None:
            clean = clean.sort_values("image_id", kind="stable").head(settings.limit)
        say(
            f"rendering {len(clean)} image(s) x {len(corruptions)} corruption(s) x "
            f"{len(severities)} severity(ies) into {settings.out}"
        )
        return generate_imagenet_c(
            clean, settings.out, corruptions=corruptions, severities=severities,
            workers=settings.workers, progress=settings.progress, classes=classes,
        )
