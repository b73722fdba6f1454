"""Score every row of a manifest with one scorer: batched, resumable, distributable.

Loader workers decode each image once (:mod:`.dataset`); uint8 batches go to
the device through pinned memory with non-blocking copies; the scorer
normalises there and runs its model under inference mode (bf16 autocast and
channels_last on CUDA). Results are written as one Parquet part per chunk of
``part_size`` manifest rows (:mod:`.parts`), so a killed run resumes where it
stopped; under ``torchrun`` each rank takes every world_size-th chunk and rank
0 merges the parts into one file identical to a single-process run.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from iqa_lib.data.manifest import (
    MANIFEST_COLUMNS,
    UNLABELLED,
    manifest_classes,
    manifest_classnames,
    read_manifest,
)
from iqa_lib.scorers.base import COLUMN_DTYPES, COLUMNS, Scorer
from iqa_lib.scorers.label_space import LabelSpace, resolve_label_space
from iqa_lib.scorers.registry import as_spec, build_scorer
from iqa_lib.scorers.spec import ScorerSpec
from iqa_lib.scoring import parts
from iqa_lib.scoring.dataset import ChunkBatchSampler, ManifestImages, collate_images
from iqa_lib.scoring.device import pick_device
from iqa_lib.scoring.distributed import barrier, dist_info, init_distributed, shutdown

KEY_COLUMNS = ("image_id", "corruption", "severity", "label")
DEFAULT_PART_SIZE = 4096
# Dataset-level geometry: ``resize_crop`` = the ImageNet-C protocol (clean images
# Resize(256) + CenterCrop(224), corrupted ones as stored); ``none`` = every image as stored.
GEOMETRIES = ("resize_crop", "none")
# Test hook: SIGKILL this process after it has written this many parts.
KILL_AFTER_PARTS_ENV = "IQA_KIT_KILL_AFTER_PARTS"


def manifest_fingerprint(df: pd.DataFrame) -> str:
    hashed = pd.util.hash_pandas_object(df[list(MANIFEST_COLUMNS)], index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:32]


# (CUDA, other) images per batch; families not listed use DEFAULT_BATCH.
DEFAULT_BATCH = (256, 32)
FAMILY_BATCH = {"tv": (512, 64), "brisque": (256, 32), "niqe": (256, 32)}
# Options that change how fast a run goes, not what it writes: resuming may change them.
RUNTIME_OPTIONS = frozenset({"batch_size", "text_cache"})


def default_batch_size(spec: ScorerSpec, device: torch.device) -> int:
    """The spec's ``batch_size`` option, else a per-family default for the device."""
    cuda, other = FAMILY_BATCH.get(spec.family, DEFAULT_BATCH)
    return int(spec.options.get("batch_size") or (cuda if device.type == "cuda" else other))


def default_num_workers(device: torch.device) -> int:
    """Leave cores to the model on CPU; feed a GPU with several decoders per rank."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    per_rank = max(1, cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1))))
    if device.type == "cuda":
        return max(1, min(8, per_rank - 1))
    return max(1, min(4, per_rank // 2))


def score_manifest(
    spec: str | Mapping[str, Any] | ScorerSpec | Scorer,
    manifest_path: str | os.PathLike,
    out_path: str | os.PathLike,
    batch_size: int | None = None,
    num_workers: int | None = None,
    device: torch.device | str | None = None,
    resume: bool = True,
    part_size: int = DEFAULT_PART_SIZE,
    progress: bool = True,
    geometry: str = "resize_crop",
) -> Path:
    """Score ``manifest_path`` into ``out_path`` (Parquet contract); return ``out_path``.

    ``spec`` may be an already built :class:`Scorer`. Failures go to
    ``<out stem>.failures.csv``. Under torchrun every rank calls this with the
    same arguments. ``geometry`` (:data:`GEOMETRIES`) says whether clean images
    get the ImageNet-C Resize(256) + CenterCrop(224) or are scored as stored.
    An unlabelled manifest (every label :data:`UNLABELLED`) gets no ``correct``
    column: a classifier's confidence is still a Q, its correctness is unknown.
    The manifest's label space (ImageNet, its own classes, none) goes to the
    scorer (:mod:`iqa_lib.scorers.label_space`); where ``correct`` is undefined
    (an ImageNet classifier on own classes without ``class_map``) it is left
    out too. The score file's metadata records the label space
    (``label_space``, ``classes``, ``class_map``, ``classnames``, ``label_note``).
    """
    scorer = spec if isinstance(spec, Scorer) else None
    parsed = scorer.spec if scorer is not None else as_spec(spec)  # type: ignore[union-attr]
    out = Path(out_path)
    manifest = read_manifest(manifest_path)
    dev = scorer.device if scorer is not None else pick_device(device)
    batch_size = int(batch_size or default_batch_size(parsed, dev))
    num_workers = default_num_workers(dev) if num_workers is None else int(num_workers)
    if part_size < 1:
        raise ValueError(f"part_size must be positive, got {part_size}")
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry {geometry!r} is not one of {', '.join(GEOMETRIES)}")
    unlabelled = manifest["label"].to_numpy() == UNLABELLED
    if unlabelled.any() and not unlabelled.all():
        raise ValueError(
            f"manifest {str(manifest_path)!r} mixes labelled rows and unlabelled rows (label "
            f"{UNLABELLED}), e.g. {manifest.loc[unlabelled, 'path'].iloc[0]!r}; label every image "
            "or none"
        )
    classes, classnames = manifest_classes(manifest_path), manifest_classnames(manifest_path)
    if classes is not None and not unlabelled.all():
        labels = manifest["label"].to_numpy()
        bad = (labels < 0) | (labels >= len(classes))
        if bad.any():
            raise ValueError(
                f"manifest {str(manifest_path)!r} has {len(classes)} classes but label "
                f"{int(labels[bad][0])} (e.g. {manifest.loc[bad, 'path'].iloc[0]!r}); labels index "
                "the classes: rebuild the manifest with `iqa-kit manifest`"
            )
    space = resolve_label_space(parsed, classes, classnames, bool(unlabelled.all()))
    if scorer is not None:
        space = _built_scorer_space(scorer, space, manifest_path)
    columns = [c for c in COLUMNS[parsed.kind] if c != "correct" or space.defines_correct]

    created = init_distributed(dev)
    try:
        info = dist_info()
        n = len(manifest)
        n_chunks = -(-n // part_size)
        pdir = parts.parts_dir(out)
        meta = {
            "spec": parsed.text,
            "options": json.loads(
                json.dumps(
                    {k: v for k, v in parsed.options.items() if k not in RUNTIME_OPTIONS},
                    default=str,
                )
            ),
            "columns": columns,
            "labels": space.resume_key(),
            "manifest": manifest_fingerprint(manifest),
            "geometry": geometry,
            "rows": n,
            "part_size": part_size,
        }
        if info.is_main:
            out.parent.mkdir(parents=True, exist_ok=True)
            parts.prepare_parts_dir(pdir, meta, resume)
        barrier()
        done = parts.done_chunks(pdir)
        mine = [c for c in range(n_chunks) if c % info.world_size == info.rank and c not in done]
        if mine and scorer is None:
            scorer = build_scorer(
                parsed, dev, classes, classnames, bool(unlabelled.all()), warn=info.is_main
            )
        elif scorer is None and info.is_main and space.warning:
            print(f"warning: {space.warning}", file=sys.stderr)  # resumed: nothing was built
        if mine:
            _score_chunks(
                scorer, manifest, mine, part_size, pdir, batch_size, num_workers,
                progress and info.is_main, geometry,
            )
        if info.world_size > 1:
            print(f"[rank {info.rank}/{info.world_size}] scored {len(mine)} part(s)", file=sys.stderr)
        barrier()
        if info.is_main:
            parts.merge_parts(
                pdir, n_chunks, manifest, KEY_COLUMNS, out,
                metadata={
                    "spec": parsed.text, "kind": parsed.kind, "geometry": geometry,
                    **space.metadata(),
                },
                columns=columns,
            )
        barrier()
    finally:
        shutdown(created)
    return out


def _built_scorer_space(scorer: Scorer, wanted: LabelSpace, manifest_path: Any) -> LabelSpace:
    """The label space a ready-built scorer scores this manifest in; an error if it was built for another.

    On an unlabelled manifest any task scorer fits (its Q is all that is
    written); otherwise it must have been built for this manifest's classes.
    """
    if scorer.kind == "nr_iqa":
        return wanted
    have = scorer.label_space or resolve_label_space(scorer.spec)
    if wanted.name == "unlabelled":
        same = have.classnames == wanted.classnames and have.class_map is None
        return wanted if same else have.as_unlabelled()
    if have != wanted:
        raise ValueError(
            f"scorer {scorer.name} was built for {have.describe()} but manifest "
            f"{str(manifest_path)!r} has {wanted.describe()}; pass the spec instead of a built "
            "scorer, or build it with build_scorer(spec, device, classes=manifest_classes(path), "
            "classnames=manifest_classnames(path))"
        )
    return wanted


def _score_chunks(
    scorer: Scorer,
    manifest: pd.DataFrame,
    chunks: list[int],
    part_size: int,
    pdir: Path,
    batch_size: int,
    num_workers: int,
    progress: bool,
    geometry: str = "resize_crop",
) -> None:
    n = len(manifest)
    dev = scorer.device
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # batches are almost all one shape
    # rows that get the clean-image Resize + CenterCrop (none with geometry "none")
    clean = manifest["corruption"].eq("clean").to_numpy() & (geometry == "resize_crop")
    dataset = ManifestImages(manifest["path"].tolist(), clean)
    sampler = ChunkBatchSampler(chunks, part_size, n, batch_size)
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_images,
        pin_memory=dev.type == "cuda",
        prefetch_factor=4 if num_workers > 0 else None,
    )
    labels = torch.from_numpy(manifest["label"].to_numpy(np.int64, copy=True))
    kill_after = int(os.environ.get(KILL_AFTER_PARTS_ENV, "0") or 0)
    columns = scorer.columns
    pending: dict[int, _Chunk] = {}
    written = 0
    total = sum(len(sampler.chunk_rows(c)) for c in chunks)
    with tqdm(total=total, unit="img", desc=scorer.name, disable=not progress, smoothing=0.05) as bar:
        for batch in loader:
            chunk = int(batch.rows[0]) // part_size
            acc = pending.setdefault(chunk, _Chunk(len(sampler.chunk_rows(chunk))))
            for rows, images in batch.groups:
                images = images.to(dev, non_blocking=True)
                scored, failed = _score_group(scorer, images, rows, labels[rows])
                acc.add(rows, scored, failed)
            acc.failures.extend(batch.failures)
            acc.seen += len(batch.rows)
            bar.update(len(batch.rows))
            if acc.seen == acc.size:
                parts.write_chunk(pdir, chunk, acc.scores_frame(columns), acc.failures_frame())
                del pending[chunk]
                written += 1
                if kill_after and written >= kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)
    if pending:
        raise RuntimeError(f"chunks {sorted(pending)} were not completed by the loader")


def _score_group(
    scorer: Scorer, images: torch.Tensor, rows: torch.Tensor, labels: torch.Tensor
) -> tuple[dict[str, np.ndarray] | None, list[tuple[int, str]]]:
    """Score a uniform group; on an error, retry image by image so one bad image fails alone.

    If every image of a multi-image group fails, the error is the scorer's, not
    the images': it is raised rather than written as thousands of failures.
    """
    lab = labels if scorer.needs_labels else None
    try:
        return scorer.score(images, lab), []
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as exc:
        if len(rows) == 1:
            return None, [(int(rows[0]), f"scorer error: {type(exc).__name__}: {exc}")]
        first_exc = exc
    results: list[dict[str, np.ndarray] | None] = []
    failures: list[tuple[int, str]] = []
    for i in range(len(rows)):
        res, fail = _score_group(scorer, images[i : i + 1], rows[i : i + 1], labels[i : i + 1])
        results.append(res)
        failures.extend(fail)
    if len(failures) == len(rows):
        raise first_exc
    keep = [i for i, r in enumerate(results) if r is not None]
    merged = {k: np.concatenate([results[i][k] for i in keep]) for k in results[keep[0]]}
    return merged | {"__rows__": rows[keep].numpy()}, failures


class _Chunk:
    """Results of one chunk while its batches come in."""

    def __init__(self, size: int):
        self.size = size
        self.seen = 0
        self.rows: list[np.ndarray] = []
        self.values: list[dict[str, np.ndarray]] = []
        self.failures: list[tuple[int, str]] = []

    def add(
        self, rows: torch.Tensor, scored: dict[str, np.ndarray] | None, failed: list[tuple[int, str]]
    ) -> None:
        self.failures.extend(failed)
        if scored is not None:
            scored = dict(scored)
            kept = scored.pop("__rows__", None)
            self.rows.append(rows.numpy() if kept is None else kept)
            self.values.append(scored)

    def scores_frame(self, columns: tuple[str, ...]) -> pd.DataFrame:
        rows = np.concatenate(self.rows) if self.rows else np.zeros(0, dtype=np.int64)
        data: dict[str, Any] = {parts.ROW: rows.astype(np.int64)}
        for col in columns:
            vals = [v[col] for v in self.values]
            arr = np.concatenate(vals) if vals else np.zeros(0)
            data[col] = arr.astype(COLUMN_DTYPES[col])
        return pd.DataFrame(data).sort_values(parts.ROW, kind="stable")

    def failures_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                parts.ROW: np.array([r for r, _ in self.failures], dtype=np.int64),
                "reason": pd.Series([str(m) for _, m in self.failures], dtype=object),
            }
        )
