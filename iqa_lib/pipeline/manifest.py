"""The ``manifest`` stage: one row per image to score, from folders, a list, shards or params.yaml.

Writes the manifest (Parquet) and its failures file beside it, under the
manifest's output lock (taken before the scan, so that a second run fails at
once). Called by ``iqa-kit manifest`` (the dvc stage's command).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from iqa_lib.config import MANIFEST_PATH, DataParams, load_params
from iqa_lib.data.assemble import Check, build_manifest
from iqa_lib.data.images import set_max_pixels
from iqa_lib.data.manifest import ManifestResult, failures_path, summarize, write_manifest
from iqa_lib.data.sources import ClsLabels, dataset_manifest
from iqa_lib.locks import output_lock


@dataclass(frozen=True)
class ManifestSettings:
    """Where the images are and where the manifest goes.

    ``source`` (one dataset: a folder, an image list or WebDataset shards, clean
    rows only) or ``clean`` and/or ``imagenet_c`` (a labelled clean folder and an
    ImageNet-C tree, the groups limited to ``corruptions`` x ``severities`` when given).
    """

    out: str | os.PathLike
    source: str | os.PathLike | None = None
    clean: str | os.PathLike | None = None
    imagenet_c: str | os.PathLike | None = None
    labels_file: str | os.PathLike | None = None
    classnames: str | os.PathLike | None = None  # readable names of the dataset's own classes
    cls_labels: ClsLabels = "imagenet"  # what a shard's .cls integers are
    check: Check = "full"
    corruptions: tuple[str, ...] | None = None
    severities: tuple[int, ...] | None = None
    workers: int | None = None  # checking processes; None: all cores
    max_pixels: int | None = None  # Pillow's decompression-bomb limit; None: as set already
    wait: bool = False  # wait for another run writing the same manifest instead of stopping


@dataclass(frozen=True)
class WrittenManifest:
    """What :func:`make_manifest` wrote: the manifest, its failures file and their rows."""

    path: Path
    failures: Path
    result: ManifestResult

    @property
    def summary(self) -> pd.DataFrame:
        """Images per (corruption, severity): the table users check first."""
        return summarize(self.result.manifest)


def settings_from_params(
    data: DataParams,
    out: str | os.PathLike | None = None,
    check: Check | None = None,
    max_pixels: int | None = None,
    **explicit,
) -> ManifestSettings:
    """What the dvc stage builds: the data section's clean folder, ImageNet-C tree, groups, check
    mode and pixel limit, written to data/manifest.parquet. An explicit value wins; ``explicit``
    takes the other fields of :class:`ManifestSettings` (``workers``, ``classnames``, ``wait``)."""
    return ManifestSettings(
        out=out or MANIFEST_PATH, clean=data.clean_dir, labels_file=data.clean_labels,
        imagenet_c=data.imagenet_c_dir, check=check or data.check,
        corruptions=tuple(data.corruptions), severities=tuple(data.severities),
        max_pixels=data.max_pixels if max_pixels is None else max_pixels, **explicit,
    )


def params_settings(params_file: str | os.PathLike = "params.yaml", **explicit) -> ManifestSettings:
    """:func:`settings_from_params` of the data section of ``params_file``."""
    return settings_from_params(load_params(params_file).data, **explicit)


def make_manifest(settings: ManifestSettings) -> WrittenManifest:
    """Scan, check and write the manifest and its failures file."""
    set_max_pixels(settings.max_pixels)
    # one writer per manifest, taken before the scan so that a second run fails at once
    with output_lock(settings.out, wait=settings.wait):
        result = _build(settings)
        path = write_manifest(result, settings.out)
    return WrittenManifest(path, failures_path(path), result)


def _build(settings: ManifestSettings) -> ManifestResult:
    if settings.source is not None:
        return dataset_manifest(
            settings.source, labels_file=settings.labels_file, classnames_file=settings.classnames,
            check=settings.check, workers=settings.workers, cls_labels=settings.cls_labels,
        )
    return build_manifest(
        settings.clean, settings.imagenet_c, labels_file=settings.labels_file, check=settings.check,
        workers=settings.workers, corruptions=settings.corruptions, severities=settings.severities,
        classnames_file=settings.classnames,
    )
