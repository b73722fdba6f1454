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
import sys
import time
from collections.abc import Callable, Mapping, Sequence
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
from iqa_lib.checks import nonnegative_int, positive_int, positive_seconds
from iqa_lib.data.manifest import (
    MANIFEST_COLUMNS,
    UNLABELLED,
    manifest_classes,
    manifest_classnames,
    read_manifest,
)
from iqa_lib.device import pick_device
from iqa_lib.scorers.base import Scorer, spec_columns
from iqa_lib.scorers.label_space import LabelSpace, resolve_label_space
from iqa_lib.scorers.registry import as_spec, build_scorer
from iqa_lib.scorers.spec import ScorerSpec
from iqa_lib.scoring import parts, stream
from iqa_lib.scoring.dataset import ChunkBatchSampler, ManifestImages, collate_images
from iqa_lib.scoring.dataset import decode_on_device as decode_on_device_fn
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
# Test hooks (kill after N parts, sleep after each batch): :mod:`.stream`.
KILL_AFTER_PARTS_ENV, BATCH_DELAY_ENV = stream.KILL_AFTER_PARTS_ENV, stream.BATCH_DELAY_ENV


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
    # the other scorers the same pass scored (one decode for all), and why an optional job of
    # run_scoring_many was left out ("" = it was not)
    together: tuple[str, ...] = ()
    dropped: str = ""


@dataclass(frozen=True)
class _Plan:
    """Rank 0's decision for one output after taking its lock, broadcast to every rank."""

    reused: bool
    kept: int
    skip: str = ""  # an optional job left out, and why


@dataclass(frozen=True)
class _Stopped:
    """Rank 0 failed before scoring: the other ranks stop too instead of waiting."""

    message: str


@dataclass(frozen=True)
class ScoringJob:
    """One scorer and its output, for a run that decodes each image once for several scorers.

    ``batch_size`` None: the spec's option, else the family default for the
    device. ``optional``: if this scorer cannot be set up, its output is busy,
    or it fails while scoring, it is dropped with a warning (its result says
    why) and the others go on; and when its output exists without a completion
    record (made elsewhere, e.g. fetched with ``dvc pull``), it is left alone
    rather than scored again. The pipeline passes the other configured scorers
    this way, so that a stage never fails for another stage's scorer.
    """

    spec: str | Mapping[str, Any] | ScorerSpec | Scorer
    out: str | os.PathLike
    batch_size: int | None = None
    optional: bool = False


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
    decode_on_device: bool = False,
) -> Path:
    """Score ``manifest_path`` into ``out_path`` (Parquet contract); return ``out_path``.

    See :func:`run_scoring`, which also says whether the file was reused.
    """
    return run_scoring(
        spec, manifest_path, out_path, batch_size=batch_size, num_workers=num_workers,
        device=device, resume=resume, part_size=part_size, progress=progress, geometry=geometry,
        part_seconds=part_seconds, wait=wait, decode_on_device=decode_on_device,
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
    decode_on_device: bool = False,
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

    ``decode_on_device``: JPEGs scored as stored (ImageNet-C) are read, not
    decoded, by the loader workers and decoded on the scoring device in batches
    (nvJPEG on CUDA; :func:`~.dataset.decode_on_device`); other files and clean
    images with their Resize + CenterCrop are decoded by the workers as usual.
    nvJPEG's pixels may differ from libjpeg's by a few levels, so the completion
    record says how the images were decoded.

    Several scorers over one decode: :func:`run_scoring_many`.
    """
    return run_scoring_many(
        [ScoringJob(spec, out_path, batch_size)], manifest_path, num_workers=num_workers,
        device=device, resume=resume, part_size=part_size, progress=progress, geometry=geometry,
        part_seconds=part_seconds, wait=wait, decode_on_device=decode_on_device,
    )[0]


@dataclass
class _Job:
    """A job once set up: what its output must record, its parts, and what is left to score."""

    given: ScoringJob
    parsed: ScorerSpec
    out: Path
    scorer: Scorer | None
    space: LabelSpace
    columns: list[str]
    meta: dict[str, Any]
    record: dict[str, Any]
    batch_size: int
    plan: _Plan | None = None
    dropped: str = ""  # why an optional job was left out ("" = it was not)

    @property
    def pdir(self) -> Path:
        return parts.parts_dir(self.out)


def run_scoring_many(
    jobs: Sequence[ScoringJob],
    manifest_path: str | os.PathLike,
    num_workers: int | None = None,
    device: torch.device | str | None = None,
    resume: bool = True,
    part_size: int = DEFAULT_PART_SIZE,
    progress: bool = True,
    geometry: str = "resize_crop",
    part_seconds: float = DEFAULT_PART_SECONDS,
    wait: bool = False,
    decode_on_device: bool = False,
) -> list[ScoringResult]:
    """Score the manifest with several scorers, decoding each image once; a result per job.

    Each job keeps what :func:`run_scoring` gives one scorer: its own lock,
    parts, resume, completion record, batch size and output, identical to a
    run of that scorer alone (:mod:`.stream`). The loader reads the union of
    the rows the jobs still need, in batches of the largest job batch size.
    """
    from iqa_lib.scoring import complete
    from iqa_lib.scoring.allocator import tune_allocator

    started = time.perf_counter()
    tune_allocator()  # big buffers stay mapped between batches (IQA_KIT_MALLOPT=0: off)
    if not jobs:
        raise ValueError("no scorers to run")
    outs = [Path(j.out).resolve() for j in jobs]
    if len(set(outs)) < len(outs):
        raise ValueError(f"two scorers write the same output: {sorted(str(o) for o in outs if outs.count(o) > 1)[0]!r}")
    part_size = positive_int(part_size, "part_size")
    part_seconds = positive_seconds(part_seconds, "part_seconds")
    if num_workers is not None:
        num_workers = nonnegative_int(num_workers, "num_workers")
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry {geometry!r} is not one of {', '.join(GEOMETRIES)}")
    built = {j.spec.device for j in jobs if isinstance(j.spec, Scorer)}
    if len(built) > 1:
        raise ValueError(f"built scorers on different devices ({', '.join(map(str, built))}) cannot share a run")
    dev = built.pop() if built else pick_device(device)  # a missing GPU fails before the manifest is read
    manifest = read_manifest(manifest_path)
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
    n = len(manifest)
    n_chunks = -(-n // part_size)
    fingerprint = manifest_fingerprint(manifest)
    decode = dev.type if decode_on_device else ""
    context = (manifest_path, classes, classnames, bool(unlabelled.all()), fingerprint, n, geometry,
               part_size, decode)
    by_index: dict[int, _Job] = {}  # the jobs that could be set up, by their place in ``jobs``
    failed_setup: dict[int, str] = {}
    for i, given in enumerate(jobs):
        try:
            by_index[i] = _set_up(given, dev, *context)
        except (ValueError, TypeError, KeyError) as exc:
            if not given.optional:
                raise
            failed_setup[i] = f"{type(exc).__name__}: {exc}"
    set_up = list(by_index.values())
    info_main = dist_info().is_main
    for i, why in failed_setup.items():
        if info_main:
            _say(f"warning: {jobs[i].out} left to its own run: {why}")

    def prepare(held: ExitStack) -> list[_Plan]:
        """Rank 0, before any other rank goes on: lock, reuse or resume, check the parts."""
        plans = []
        for job in set_up:
            plans.append(_prepare_job(job, held, resume, wait, n, part_size))
        return plans

    created = init_distributed(dev)
    try:
        info = dist_info()
        with ExitStack() as held:
            for job, plan in zip(set_up, _agree(lambda: prepare(held), info.is_main), strict=True):
                job.plan = plan
            how = {"device": str(dev), "num_workers": num_workers}
            for job in set_up:
                if job.plan.skip and info.is_main:
                    _say(f"warning: {job.out} left to its own run: {job.plan.skip}")
                elif job.plan.reused and info.is_main and not job.given.optional:  # others: quiet
                    _say(f"reusing {job.out}: complete for this spec, options, labels, manifest, "
                         "geometry and SCORES_VERSION (--no-resume scores it again)")
                elif info.is_main and job.plan.kept:
                    _say(f"resuming {job.out}: {job.plan.kept} of {n} rows kept from {job.pdir}; "
                         f"scoring the other {n - job.plan.kept}")
                if job.plan.skip:
                    job.dropped = job.plan.skip
            active = [j for j in set_up if not (j.plan.reused or j.plan.skip)]
            scored = _score_active(active, manifest, n, n_chunks, part_size, part_seconds, dev,
                                   num_workers, progress, geometry, classes, classnames,
                                   bool(unlabelled.all()), info, decode_on_device)
            if info.world_size > 1 and active:
                print(f"[rank {info.rank}/{info.world_size}] scored {scored} part(s)", file=sys.stderr)
            barrier()
            if info.is_main:
                for job in active:
                    if job.dropped:
                        continue
                    parts.merge_parts(
                        job.pdir, n_chunks, manifest, KEY_COLUMNS, job.out,
                        metadata={
                            "spec": job.parsed.text, "kind": job.parsed.kind, "geometry": geometry,
                            **job.space.metadata(),
                        },
                        columns=job.columns,
                        on_merged=functools.partial(complete.mark_complete, job.out, job.record),
                    )
            barrier()
        seconds = time.perf_counter() - started
        scored_together = [j for j in active if not j.dropped]
        results: list[ScoringResult] = []
        for i, given in enumerate(jobs):
            job = by_index.get(i)
            if job is None:
                results.append(ScoringResult(Path(given.out), False, n, 0, 0, seconds=seconds,
                                             dropped=failed_setup[i], **how))
                continue
            reused = bool(job.plan.reused)
            scored_rows = 0 if (reused or job.dropped) else n - job.plan.kept
            results.append(ScoringResult(
                job.out, reused, n, n if reused else job.plan.kept, scored_rows,
                scorer=None if reused else job.scorer, batch_size=job.batch_size, seconds=seconds,
                together=tuple(j.parsed.text for j in scored_together if j is not job) if scored_rows else (),
                dropped=job.dropped, **how,
            ))
        return results
    finally:
        shutdown(created)


def _set_up(
    given: ScoringJob, dev: torch.device, manifest_path: Any, classes: Any, classnames: Any,
    unlabelled: bool, fingerprint: str, n: int, geometry: str, part_size: int, decode: str = "",
) -> _Job:
    """The job's spec, label space, columns and the records its parts and output must carry."""
    from iqa_lib.scoring import complete

    scorer = given.spec if isinstance(given.spec, Scorer) else None
    parsed = scorer.spec if scorer is not None else as_spec(given.spec)  # type: ignore[union-attr]
    batch_size = given.batch_size
    if batch_size is not None:
        batch_size = positive_int(batch_size, "batch_size")
    batch_size = batch_size or default_batch_size(parsed, dev)
    space = resolve_label_space(parsed, classes, classnames, unlabelled)
    if scorer is not None:
        space = _built_scorer_space(scorer, space, manifest_path)
    columns = list(spec_columns(parsed, space.defines_correct))
    options = json.loads(
        json.dumps(
            {k: v for k, v in parsed.options.items() if k not in RUNTIME_OPTIONS}, default=str
        )
    )
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
    record = complete.completion_record(parsed.text, options, space.resume_key(), fingerprint, n, geometry,
                                        [*KEY_COLUMNS, *columns])
    if decode:  # images decoded on the device (its decoder's pixels): not the files of a CPU decode
        meta["decode"] = record["decode"] = decode
    return _Job(given, parsed, Path(given.out), scorer, space, columns, meta, record, batch_size)


def _prepare_job(job: _Job, held: ExitStack, resume: bool, wait: bool, n: int, part_size: int) -> _Plan:
    """Lock the job's output, then reuse it, skip it (optional, made elsewhere) or resume its parts."""
    from iqa_lib.locks import LockBusy, output_lock
    from iqa_lib.scoring import complete

    out, pdir = job.out, job.pdir
    if resume and not pdir.exists() and _verified_without_writing(job, legacy=False):
        return _Plan(True, n)  # complete and verified: reading it needs no lock (read-only storage)
    try:
        held.enter_context(output_lock(out, wait and not job.given.optional))
    except LockBusy as exc:
        if not job.given.optional:
            raise
        return _Plan(False, 0, f"another run is writing it ({exc})")
    except fileio.WriteError:
        if resume and not pdir.exists() and _verified_without_writing(job, legacy=True):
            _say(f"note: {out} cannot be locked (storage not writable); reused as checked, its "
                 "old-format completion record left as it is")
            return _Plan(True, n)
        raise
    with fileio.writing(out.parent):
        out.parent.mkdir(parents=True, exist_ok=True)
    parts.remove_trash(pdir)
    if resume and complete.is_complete(out, job.record):
        if pdir.exists():  # killed after the record was written, before the parts went
            parts.remove_tree(pdir)
        return _Plan(True, n)
    if job.given.optional and out.exists() and not complete.record_path(out).exists() and not pdir.exists():
        return _Plan(False, 0, "it exists without a completion record (made elsewhere)")
    complete.forget_complete(out)
    parts.prepare_parts_dir(pdir, job.meta, resume)
    return _Plan(False, parts.check_parts(pdir, n, part_size))


def _verified_without_writing(job: _Job, legacy: bool) -> bool:
    """Whether the output verifies complete by reading alone; ``legacy``: accept an old-format record."""
    from iqa_lib.scoring import complete

    verdict = complete.verify(job.out, job.record)
    return verdict.complete and (legacy or not verdict.legacy)


def _score_active(
    active: list[_Job], manifest: pd.DataFrame, n: int, n_chunks: int, part_size: int,
    part_seconds: float, dev: torch.device, num_workers: int, progress: bool, geometry: str,
    classes: Any, classnames: Any, unlabelled: bool, info: Any, decode_on_device: bool = False,
) -> int:
    """This rank's share of every active job: one loader over the rows any of them needs."""
    labels = torch.from_numpy(manifest["label"].to_numpy(np.int64, copy=True))
    streams: dict[str, stream.ScorerStream] = {}
    by_name: dict[str, _Job] = {}
    union = np.zeros(n, dtype=bool)
    chunks: set[int] = set()
    mine_total = 0
    for job in active:
        done = parts.done_chunks(job.pdir)
        mine = [c for c in range(n_chunks) if c % info.world_size == info.rank and c not in done]
        mine_total += len(mine)
        needed = np.zeros(n, dtype=bool)
        earlier = {}
        todo = []
        for c in mine:
            sub = parts.read_sub_parts(job.pdir, c)
            lo, hi = c * part_size, min((c + 1) * part_size, n)
            needed[lo:hi] = True
            needed[sub.rows] = False
            if needed[lo:hi].any():
                todo.append(c)
                earlier[c] = sub
            else:  # every row already in sub-parts: make them the chunk's part
                parts.write_chunk(job.pdir, c, *stream.ChunkResults(0, sub).frames())
        if not todo:
            if job.scorer is None and info.is_main and job.space.warning:
                print(f"warning: {job.space.warning}", file=sys.stderr)  # resumed: nothing was built
            continue
        if job.scorer is None:
            try:
                job.scorer = build_scorer(
                    job.parsed, dev, classes, classnames, unlabelled, warn=info.is_main
                )
            except Exception as exc:
                if not job.given.optional:
                    raise
                job.dropped = f"{type(exc).__name__}: {exc}"
                if info.is_main:
                    _say(f"warning: {job.out} left to its own run: {job.dropped}")
                continue
        name = str(job.out)
        by_name[name] = job
        streams[name] = stream.ScorerStream(
            job.scorer, job.pdir, needed, todo, part_size, job.batch_size, labels, earlier,
            optional=job.given.optional,
        )
        union |= needed
        chunks.update(todo)
    if not streams:
        return mine_total
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # batches are almost all one shape
    order = sorted(chunks)
    load_batch = max(s.batch_size for s in streams.values())
    done_rows = {}
    for c in order:
        lo, hi = c * part_size, min((c + 1) * part_size, n)
        if not union[lo:hi].all():
            done_rows[c] = (np.flatnonzero(~union[lo:hi]) + lo).tolist()
    sampler = ChunkBatchSampler(order, part_size, n, load_batch, done_rows)
    # rows that get the clean-image Resize + CenterCrop (none with geometry "none")
    clean = manifest["corruption"].eq("clean").to_numpy() & (geometry == "resize_crop")
    dataset = ManifestImages(manifest["path"].tolist(), clean, encoded=decode_on_device)
    loader: Any = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_images,
        pin_memory=dev.type == "cuda",
        prefetch_factor=4 if num_workers > 0 else None,
        worker_init_fn=functools.partial(_die_with, os.getpid()) if num_workers > 0 else None,
    )
    if decode_on_device:
        loader = (decode_on_device_fn(batch, dev) for batch in loader)
    name = " + ".join(j.parsed.text for j in by_name.values())
    bar_on = progress and info.is_main and sys.stderr.isatty()
    lines = None
    share = int(union.sum())
    if info.is_main and not bar_on:
        lines = (
            ProgressLines(name, n, n - share) if info.world_size == 1
            else ProgressLines(f"{name} [rank 0 of {info.world_size}]", share)
        )
    with tqdm(total=share, unit="img", desc=name, disable=not bar_on, smoothing=0.05) as bar:
        try:
            dropped = stream.score_streams(streams, loader, order, part_seconds, bar, lines)
        except Exception as exc:
            rows = getattr(exc, stream.FAILED_ROWS, None)
            if rows is None:
                raise
            raise _naming_images(exc, manifest["image_id"].to_numpy()[rows]) from exc
    for key, why in dropped.items():
        by_name[key].dropped = why
    return mine_total


def _naming_images(exc: Exception, image_ids: Any) -> Exception:
    """The scorer's error for a same-size group whose every image failed, naming the images."""
    shown = ", ".join(repr(str(i)) for i in image_ids[:3])
    more = f" and {len(image_ids) - 3} more" if len(image_ids) > 3 else ""
    message = f"{exc} (every image of this size failed: {shown}{more})"
    try:
        return type(exc)(message)
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {message}")


def _agree(prepare: Callable[[], list[_Plan]], is_main: bool) -> list[_Plan]:
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


def _die_with(parent: int, worker_id: int) -> None:
    """Loader workers die with the run: a killed run leaves no decoder behind; malloc as the run's."""
    from iqa_lib.data.workers import die_with_parent
    from iqa_lib.scoring.allocator import tune_allocator

    die_with_parent(parent)
    tune_allocator()


