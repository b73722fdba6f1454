"""Score every row of a manifest with one scorer: batched, resumable, distributable.

Loader workers decode each image once (:mod:`.dataset`); uint8 batches go to
the device through pinned memory with non-blocking copies; the scorer
normalises there and runs its model under inference mode (bf16 autocast and
channels_last on CUDA). Results are written as one Parquet part per chunk of
``part_size`` manifest rows, and within an unfinished chunk as a sub-part of
the rows scored so far every ``part_seconds`` (:mod:`.parts`), so a killed run
resumes losing at most about that much work; under ``torchrun`` each rank
takes every world_size-th chunk and rank 0 merges the parts into one file
identical to a single-process run. One process writes an output at a time
(:mod:`iqa_lib.locks`); a finished output records what made it
(:mod:`.complete`) and is reused when that has not changed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm  # text bars: tqdm.auto warns in kernels without ipywidgets

from iqa_lib import fileio
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
from iqa_lib.scoring.checks import nonnegative_int, positive_int, positive_seconds
from iqa_lib.scoring.dataset import ChunkBatchSampler, ManifestImages, collate_images
from iqa_lib.scoring.device import pick_device
from iqa_lib.scoring.distributed import (
    barrier,
    broadcast_object,
    dist_info,
    init_distributed,
    shutdown,
)
from iqa_lib.scoring.progress import ProgressLines

KEY_COLUMNS = ("image_id", "corruption", "severity", "label")
DEFAULT_PART_SIZE = 4096
# Seconds between sub-parts of an unfinished chunk: what a kill can lose at most.
DEFAULT_PART_SECONDS = 10.0  # a kill loses at most about this much scoring
# Dataset-level geometry: ``resize_crop`` = the ImageNet-C protocol (clean images
# Resize(256) + CenterCrop(224), corrupted ones as stored); ``none`` = every image as stored.
GEOMETRIES = ("resize_crop", "none")
# Test hook: SIGKILL this process after it has written this many parts.
KILL_AFTER_PARTS_ENV = "IQA_KIT_KILL_AFTER_PARTS"
# Test hook: sleep this many seconds after each batch, so that a kill can land mid-run.
BATCH_DELAY_ENV = "IQA_KIT_BATCH_DELAY"


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


@dataclass(frozen=True)
class ScoringResult:
    """What a run did, so that callers (the audit, the CLI, benchmarks) can say so."""

    out: Path
    reused: bool  # the output was complete for this very work: nothing was scored
    rows: int  # manifest rows
    kept_rows: int  # rows taken from parts of an earlier, interrupted run
    scored_rows: int  # rows scored (or failed) by this run, all ranks together
    # how it ran, for reports (iqa_lib.presentation.score_report): the scorer it built (None when
    # nothing was left to score), where, in what batches, and the wall time of the call
    scorer: Scorer | None = None
    device: str = ""
    batch_size: int = 0
    num_workers: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class _Plan:
    """Rank 0's decision after taking the lock, broadcast to every rank."""

    reused: bool
    kept: int


@dataclass(frozen=True)
class _Stopped:
    """Rank 0 failed before scoring: the other ranks stop too instead of waiting."""

    message: str


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
    part_seconds: float = DEFAULT_PART_SECONDS,
    wait: bool = False,
) -> Path:
    """Score ``manifest_path`` into ``out_path`` (Parquet contract); return ``out_path``.

    See :func:`run_scoring`, which also says whether the file was reused.
    """
    return run_scoring(
        spec, manifest_path, out_path, batch_size=batch_size, num_workers=num_workers,
        device=device, resume=resume, part_size=part_size, progress=progress, geometry=geometry,
        part_seconds=part_seconds, wait=wait,
    ).out


def run_scoring(
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
    part_seconds: float = DEFAULT_PART_SECONDS,
    wait: bool = False,
) -> ScoringResult:
    """Score ``manifest_path`` into ``out_path`` (Parquet contract).

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

    One writer per output: the run holds :func:`iqa_lib.locks.output_lock` of
    ``out_path`` throughout (rank 0 under torchrun); a second writer gets
    :class:`~iqa_lib.locks.LockBusy` naming the holder, or waits with ``wait``.
    Work is kept across kills: a chunk of ``part_size`` rows is one part, and
    within a chunk the rows scored so far are written as a sub-part every
    ``part_seconds``; a resumed run scores only rows in no part, in the same
    batches, so the output is identical to an uninterrupted run's. When the
    output is complete and its ``<out stem>.done.json`` record matches this
    work (:mod:`.complete`), nothing is scored (``resume=False`` scores again).
    Write faults end the run with a one-line :class:`~iqa_lib.fileio.WriteError`.

    ``progress`` shows a tqdm bar when stderr is a terminal; otherwise, and with
    ``progress=False``, rank 0 prints a line per written part instead
    (:mod:`.progress`): a run under ``dvc repro`` or in a log is never silent.
    """
    from iqa_lib.locks import output_lock
    from iqa_lib.scoring import complete
    from iqa_lib.scoring.allocator import tune_allocator

    started = time.perf_counter()
    tune_allocator()  # big buffers stay mapped between batches (IQA_KIT_MALLOPT=0: off)
    scorer = spec if isinstance(spec, Scorer) else None
    parsed = scorer.spec if scorer is not None else as_spec(spec)  # type: ignore[union-attr]
    out = Path(out_path)
    part_size = positive_int(part_size, "part_size")
    part_seconds = positive_seconds(part_seconds, "part_seconds")
    if batch_size is not None:
        batch_size = positive_int(batch_size, "batch_size")
    if num_workers is not None:
        num_workers = nonnegative_int(num_workers, "num_workers")
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry {geometry!r} is not one of {', '.join(GEOMETRIES)}")
    manifest = read_manifest(manifest_path)
    dev = scorer.device if scorer is not None else pick_device(device)
    batch_size = batch_size or default_batch_size(parsed, dev)
    num_workers = default_num_workers(dev) if num_workers is None else num_workers
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

    n = len(manifest)
    n_chunks = -(-n // part_size)
    pdir = parts.parts_dir(out)
    options = json.loads(
        json.dumps(
            {k: v for k, v in parsed.options.items() if k not in RUNTIME_OPTIONS}, default=str
        )
    )
    fingerprint = manifest_fingerprint(manifest)
    meta = {
        "spec": parsed.text,
        "options": options,
        "columns": columns,
        "labels": space.resume_key(),
        "manifest": fingerprint,
        "geometry": geometry,
        "rows": n,
        "part_size": part_size,
    }
    record = complete.completion_record(parsed.text, options, space.resume_key(), fingerprint, n, geometry)

    def prepare(held: ExitStack) -> _Plan:
        """Rank 0, before any other rank goes on: lock, reuse or resume, check the parts."""
        held.enter_context(output_lock(out, wait))
        with fileio.writing(out.parent):
            out.parent.mkdir(parents=True, exist_ok=True)
        parts.remove_trash(pdir)
        if resume and complete.is_complete(out, record):
            if pdir.exists():  # killed after the record was written, before the parts went
                parts.remove_tree(pdir)
            return _Plan(True, n)
        complete.forget_complete(out)
        parts.prepare_parts_dir(pdir, meta, resume)
        return _Plan(False, parts.check_parts(pdir, n, part_size))

    created = init_distributed(dev)
    try:
        info = dist_info()
        with ExitStack() as held:
            plan = _agree(lambda: prepare(held), info.is_main)
            how = {"device": str(dev), "batch_size": batch_size, "num_workers": num_workers}
            if plan.reused:
                if info.is_main:
                    _say(f"reusing {out}: complete for this spec, options, labels, manifest, geometry "
                         "and SCORES_VERSION (--no-resume scores it again)")
                return ScoringResult(out, True, n, n, 0, seconds=time.perf_counter() - started, **how)
            if info.is_main and plan.kept:
                _say(f"resuming {out}: {plan.kept} of {n} rows kept from {pdir}; scoring the other "
                     f"{n - plan.kept}")
            done = parts.done_chunks(pdir)
            mine = [c for c in range(n_chunks) if c % info.world_size == info.rank and c not in done]
            earlier = {c: parts.read_sub_parts(pdir, c) for c in mine}
            sampler = ChunkBatchSampler(
                mine, part_size, n, batch_size, {c: sub.rows for c, sub in earlier.items()}
            )
            todo = [c for c in mine if sampler.todo_count(c)]
            for c in mine:
                if c not in todo:  # every row already in sub-parts: make them the chunk's part
                    parts.write_chunk(pdir, c, *_Chunk(0, earlier[c]).frames())
            if todo and scorer is None:
                scorer = build_scorer(
                    parsed, dev, classes, classnames, bool(unlabelled.all()), warn=info.is_main
                )
            elif scorer is None and info.is_main and space.warning:
                print(f"warning: {space.warning}", file=sys.stderr)  # resumed: nothing was built
            if todo:
                sampler.chunks = todo
                bar = progress and info.is_main and sys.stderr.isatty()
                lines = None
                if info.is_main and not bar:
                    share = sum(sampler.todo_count(c) for c in todo)
                    lines = (
                        ProgressLines(parsed.text, n, plan.kept) if info.world_size == 1
                        else ProgressLines(f"{parsed.text} [rank 0 of {info.world_size}]", share)
                    )
                _score_chunks(
                    scorer, manifest, sampler, pdir, num_workers, bar,
                    geometry, part_seconds, {c: earlier[c] for c in todo}, lines,
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
                    on_merged=lambda: complete.mark_complete(out, record),
                )
            barrier()
        return ScoringResult(
            out, False, n, plan.kept, n - plan.kept, scorer=scorer,
            seconds=time.perf_counter() - started, **how,
        )
    finally:
        shutdown(created)


def _agree(prepare: Callable[[], _Plan], is_main: bool) -> _Plan:
    """Rank 0 prepares, every rank gets its plan; a failure on rank 0 stops every rank."""
    if not is_main:
        got = broadcast_object(None)
        if isinstance(got, _Stopped):
            raise RuntimeError(f"rank 0 stopped before scoring: {got.message}")
        return got
    try:
        plan = prepare()
    except BaseException as exc:
        broadcast_object(_Stopped(str(exc)))
        raise
    return broadcast_object(plan)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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
    sampler: ChunkBatchSampler,
    pdir: Path,
    num_workers: int,
    progress: bool,
    geometry: str = "resize_crop",
    part_seconds: float = DEFAULT_PART_SECONDS,
    earlier: Mapping[int, parts.SubParts] | None = None,
    lines: ProgressLines | None = None,
) -> None:
    """Score the sampler's rows; a chunk's part when it completes, sub-parts on time before that.

    ``progress`` shows a tqdm bar; ``lines`` prints progress lines instead (logs, dvc repro).
    """
    dev = scorer.device
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # batches are almost all one shape
    # rows that get the clean-image Resize + CenterCrop (none with geometry "none")
    clean = manifest["corruption"].eq("clean").to_numpy() & (geometry == "resize_crop")
    dataset = ManifestImages(manifest["path"].tolist(), clean)
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_images,
        pin_memory=dev.type == "cuda",
        prefetch_factor=4 if num_workers > 0 else None,
        worker_init_fn=functools.partial(_die_with, os.getpid()) if num_workers > 0 else None,
    )
    labels = torch.from_numpy(manifest["label"].to_numpy(np.int64, copy=True))
    kill_after = int(os.environ.get(KILL_AFTER_PARTS_ENV, "0") or 0)
    delay = float(os.environ.get(BATCH_DELAY_ENV, "0") or 0)
    columns = scorer.columns
    earlier = earlier or {}
    pending = {c: _Chunk(sampler.todo_count(c), earlier.get(c)) for c in sampler.chunks}
    written = 0
    total = sum(acc.size for acc in pending.values())
    last_write = time.monotonic()
    with tqdm(total=total, unit="img", desc=scorer.name, disable=not progress, smoothing=0.05) as bar:
        for batch in loader:
            chunk = int(batch.rows[0]) // sampler.part_size
            acc = pending[chunk]
            acc.start_batch(int(batch.rows[0]))
            for rows, images in batch.groups:
                images = images.to(dev, non_blocking=True)
                scored, failed = _score_group(scorer, images, rows, labels[rows])
                acc.add(rows, scored, failed)
            acc.failures.extend(batch.failures)
            acc.seen += len(batch.rows)
            bar.update(len(batch.rows))
            if lines is not None:
                lines.update(len(batch.rows))
            if acc.seen == acc.size:
                parts.write_chunk(pdir, chunk, *acc.frames(columns))
                del pending[chunk]
                if lines is not None:
                    lines.part_written()
                last_write = time.monotonic()
                written += 1
                if kill_after and written >= kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)
            elif time.monotonic() - last_write >= part_seconds:
                for c, open_chunk in pending.items():
                    if open_chunk.first_new is not None:
                        parts.write_sub_part(
                            pdir, c, open_chunk.first_new, *open_chunk.frames(columns, new_only=True)
                        )
                        open_chunk.mark_written()
                last_write = time.monotonic()
            if delay:
                time.sleep(delay)
    if pending:
        raise RuntimeError(f"chunks {sorted(pending)} were not completed by the loader")


def _die_with(parent: int, worker_id: int) -> None:
    """Loader workers die with the run: a killed run leaves no decoder behind; malloc as the run's."""
    from iqa_lib.data.workers import die_with_parent
    from iqa_lib.scoring.allocator import tune_allocator

    die_with_parent(parent)
    tune_allocator()


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
    """Results of one chunk while its batches come in, after what its sub-parts already hold."""

    def __init__(self, size: int, earlier: parts.SubParts | None = None):
        self.size = size  # rows this run scores
        self.seen = 0
        self.rows: list[np.ndarray] = []
        self.values: list[dict[str, np.ndarray]] = []
        self.failures: list[tuple[int, str]] = []
        for frame in earlier.scores if earlier else ():
            self.rows.append(frame[parts.ROW].to_numpy(np.int64))
            self.values.append({c: frame[c].to_numpy() for c in frame.columns if c != parts.ROW})
        for frame in earlier.failures if earlier else ():
            rows = frame[parts.ROW].to_numpy(np.int64).tolist()
            self.failures.extend(zip(rows, frame["reason"].astype(str).tolist(), strict=True))
        self.columns = tuple(earlier.scores[0].columns.drop(parts.ROW)) if earlier and earlier.scores else ()
        self.first_new: int | None = None  # first row scored since the last write
        self.mark_written()

    def start_batch(self, first_row: int) -> None:
        if self.first_new is None:
            self.first_new = first_row

    def mark_written(self) -> None:
        self.written = (len(self.rows), len(self.failures))
        self.first_new = None

    def add(
        self, rows: torch.Tensor, scored: dict[str, np.ndarray] | None, failed: list[tuple[int, str]]
    ) -> None:
        self.failures.extend(failed)
        if scored is not None:
            scored = dict(scored)
            kept = scored.pop("__rows__", None)
            self.rows.append(rows.numpy() if kept is None else kept)
            self.values.append(scored)

    def frames(
        self, columns: tuple[str, ...] | None = None, new_only: bool = False
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(scores, failures) of the whole chunk, or of what was scored since the last write."""
        return self.scores_frame(columns or self.columns, new_only), self.failures_frame(new_only)

    def scores_frame(self, columns: tuple[str, ...], new_only: bool = False) -> pd.DataFrame:
        start = self.written[0] if new_only else 0
        rows = np.concatenate(self.rows[start:]) if self.rows[start:] else np.zeros(0, dtype=np.int64)
        data: dict[str, Any] = {parts.ROW: rows.astype(np.int64)}
        for col in columns:
            vals = [v[col] for v in self.values[start:]]
            arr = np.concatenate(vals) if vals else np.zeros(0)
            data[col] = arr.astype(COLUMN_DTYPES[col])
        return pd.DataFrame(data).sort_values(parts.ROW, kind="stable")

    def failures_frame(self, new_only: bool = False) -> pd.DataFrame:
        failures = self.failures[self.written[1]:] if new_only else self.failures
        return pd.DataFrame(
            {
                parts.ROW: np.array([r for r, _ in failures], dtype=np.int64),
                "reason": pd.Series([str(m) for _, m in failures], dtype=object),
            }
        )
