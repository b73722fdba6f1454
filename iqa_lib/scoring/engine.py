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
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm  # text bars: tqdm.auto warns in kernels without ipywidgets

from iqa_lib import fileio, locks
from iqa_lib.checks import nonnegative_int, positive_int, positive_seconds
from iqa_lib.data.manifest import (
    MANIFEST_COLUMNS,
    UNLABELLED,
    manifest_classes,
    manifest_classnames,
    read_manifest,
)
from iqa_lib.data.workers import die_with_parent
from iqa_lib.device import pick_device
from iqa_lib.scorers.base import Scorer, logits_unavailable, spec_columns
from iqa_lib.scorers.label_space import LabelSpace, resolve_label_space
from iqa_lib.scorers.registry import as_spec, build_scorer
from iqa_lib.scorers.spec import ScorerSpec
from iqa_lib.scorers.spec_files import input_files
from iqa_lib.scoring import allocator, complete, parts, stream
from iqa_lib.scoring.dataset import ChunkBatchSampler, ManifestImages, collate_images
from iqa_lib.scoring.dataset import decode_on_device as decode_on_device_fn
from iqa_lib.scoring.distributed import (
    DistInfo,
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


# CPU cost of scoring one 224 px image, in decodes of it (one core; benchmarks/README.md, "Every
# scorer per core": the decode rate over the scorer's): the per-image scorers the loader workers run.
DECODE_SHARE = {"tv": 0.2, "brisque": 3.0, "niqe": 3.3, "piqe": 1.5}
# The same for the cheapest network the kit runs on CPU (EfficientNet-Lite0, ~47 decodes): a pass
# with networks sizes its workers as if each cost this (more workers than a bigger model needs).
NETWORK_DECODES = 47.0
# Set to 0: per-image CPU scorers are scored in the scoring process, as before (benchmarks compare).
WORKER_SCORING_ENV = "IQA_KIT_WORKER_SCORING"


def default_num_workers(device: torch.device, shares: Sequence[float | None] = ()) -> int:
    """Loader workers per rank: on CPU sized from the pass's scorers; feed a GPU with several decoders.

    ``shares``: for each scorer of the pass, its CPU cost per image in decodes when the workers
    score it (:data:`DECODE_SHARE`), None when the scoring process does (a network). Every
    scorer in the workers: one worker per core (decoding and scoring are the whole work). Some:
    the cores split in proportion of the workers' cost per image (a decode and their scorers)
    to the networks' (:data:`NETWORK_DECODES` each), one core at least left to the networks.
    None (or no ``shares``): half the cores, at most 4, the rest to the model.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    per_rank = max(1, cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1))))
    if device.type == "cuda":
        return max(1, min(8, per_rank - 1))
    in_workers = [s for s in shares if s is not None]
    if not in_workers:
        return max(1, min(4, per_rank // 2))
    if len(in_workers) == len(shares):
        return per_rank
    workers = 1 + sum(in_workers)
    networks = NETWORK_DECODES * (len(shares) - len(in_workers))
    return max(1, min(per_rank - 1, math.ceil(per_rank * workers / (workers + networks))))


def worker_scoring(device: torch.device, settings: RunSettings) -> bool:
    """Whether per-image CPU scorers may run in the loader workers of this run (a CPU run whose
    workers decode; ``IQA_KIT_WORKER_SCORING=0`` turns it off)."""
    on = os.environ.get(WORKER_SCORING_ENV, "1").strip() not in ("0", "off", "false", "no")
    return on and device.type == "cpu" and not settings.decode_on_device


@dataclass(frozen=True)
class RunSettings:
    """How a run goes, whichever scorers it runs: device, loader, parts, resume and what it prints.

    ``num_workers`` None: from the CPU count and the scorers (:func:`default_num_workers`); ``device`` None
    or ``"auto"``: CUDA, else MPS, else CPU. Each field is explained at :func:`run_scoring`.
    """

    num_workers: int | None = None
    device: torch.device | str | None = None
    resume: bool = True
    part_size: int = DEFAULT_PART_SIZE
    progress: bool = True
    geometry: str = "resize_crop"
    part_seconds: float = DEFAULT_PART_SECONDS
    wait: bool = False
    decode_on_device: bool = False
    # keep each image's logits (classifiers, ZSCLIP) beside the score file: iqa_lib.scoring.logits
    keep_logits: bool = False

    def checked(self) -> RunSettings:
        """These settings with their numbers checked; a ValueError names the one that is wrong."""
        part_size = positive_int(self.part_size, "part_size")
        part_seconds = positive_seconds(self.part_seconds, "part_seconds")
        num_workers = None if self.num_workers is None else nonnegative_int(self.num_workers, "num_workers")
        if self.geometry not in GEOMETRIES:
            raise ValueError(f"geometry {self.geometry!r} is not one of {', '.join(GEOMETRIES)}")
        return replace(self, part_size=part_size, part_seconds=part_seconds, num_workers=num_workers)


@dataclass(frozen=True, eq=False)
class ManifestContext:
    """What every job of a run shares about its manifest: the rows, their label space, its identity."""

    path: str | os.PathLike
    frame: pd.DataFrame
    classes: list[str] | None  # the dataset's own classes; None: ImageNet labels
    classnames: list[str] | None
    unlabelled: bool  # every row is unlabelled (a mix is refused)
    fingerprint: str

    @property
    def rows(self) -> int:
        return len(self.frame)


def read_context(manifest_path: str | os.PathLike) -> ManifestContext:
    """Read the manifest and refuse labels a run cannot score against (a mix, or out of its classes)."""
    manifest = read_manifest(manifest_path)
    unlabelled = manifest["label"].to_numpy() == UNLABELLED
    if unlabelled.any() and not unlabelled.all():
        raise ValueError(
            f"manifest {str(manifest_path)!r} mixes labelled rows and unlabelled rows (label "
            f"{UNLABELLED}), e.g. {manifest.loc[unlabelled, 'path'].iloc[0]!r}; label every image "
            "or none"
        )
    classes, classnames = manifest_classes(manifest_path), manifest_classnames(manifest_path)
    if classes is not None and not unlabelled.all():
        _check_labels_index(manifest, classes, manifest_path)
    return ManifestContext(
        path=manifest_path, frame=manifest, classes=classes, classnames=classnames,
        unlabelled=bool(unlabelled.all()), fingerprint=manifest_fingerprint(manifest),
    )


def _check_labels_index(manifest: pd.DataFrame, classes: list[str], manifest_path: str | os.PathLike) -> None:
    labels = manifest["label"].to_numpy()
    bad = (labels < 0) | (labels >= len(classes))
    if bad.any():
        raise ValueError(
            f"manifest {str(manifest_path)!r} has {len(classes)} classes but label "
            f"{int(labels[bad][0])} (e.g. {manifest.loc[bad, 'path'].iloc[0]!r}); labels index "
            "the classes: rebuild the manifest with `iqa-kit manifest`"
        )


@dataclass(frozen=True, eq=False)
class _Run:
    """One run as every step sees it: checked settings, the device, loader workers, the manifest."""

    settings: RunSettings
    device: torch.device
    num_workers: int
    manifest: ManifestContext

    @property
    def n_chunks(self) -> int:
        return -(-self.manifest.rows // self.settings.part_size)

    @property
    def decode(self) -> str:
        """Where images are decoded when not by the loader workers ("" when they are)."""
        return self.device.type if self.settings.decode_on_device else ""

    def chunk_bounds(self, chunk: int) -> tuple[int, int]:
        """The first manifest row of ``chunk`` and the one after its last."""
        size = self.settings.part_size
        return chunk * size, min((chunk + 1) * size, self.manifest.rows)


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
    # with keep_logits: whether this output's logits are kept, or why they are not ("" = kept)
    logits_note: str = ""


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
    settings: RunSettings | None = None,
    *,
    batch_size: int | None = None,
    **options: Any,
) -> Path:
    """Score ``manifest_path`` into ``out_path`` (Parquet contract); return ``out_path``.

    See :func:`run_scoring`, which also says whether the file was reused.
    """
    return run_scoring(spec, manifest_path, out_path, settings, batch_size=batch_size, **options).out


def run_scoring(
    spec: str | Mapping[str, Any] | ScorerSpec | Scorer,
    manifest_path: str | os.PathLike,
    out_path: str | os.PathLike,
    settings: RunSettings | None = None,
    *,
    batch_size: int | None = None,
    **options: Any,
) -> ScoringResult:
    """Score ``manifest_path`` into ``out_path`` (Parquet contract).

    ``settings`` (default :class:`RunSettings`) say how the run goes; ``options``
    are fields of it by name (``device="cpu"``, ``part_size=...``), replacing
    those of ``settings``.

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
    return run_scoring_many([ScoringJob(spec, out_path, batch_size)], manifest_path, settings, **options)[0]


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
    keep_logits: bool = False
    logits_note: str = ""  # asked to keep logits, why these are not ("" = they are, or not asked)

    @property
    def pdir(self) -> Path:
        return parts.parts_dir(self.out)


def run_scoring_many(
    jobs: Sequence[ScoringJob],
    manifest_path: str | os.PathLike,
    settings: RunSettings | None = None,
    **options: Any,
) -> list[ScoringResult]:
    """Score the manifest with several scorers, decoding each image once; a result per job.

    Each job keeps what :func:`run_scoring` gives one scorer: its own lock,
    parts, resume, completion record, batch size and output, identical to a
    run of that scorer alone (:mod:`.stream`). The loader reads the union of
    the rows the jobs still need, in batches of the largest job batch size.
    ``settings`` and ``options``: as for :func:`run_scoring`.
    """
    started = time.perf_counter()
    allocator.tune_allocator()  # big buffers stay mapped between batches (IQA_KIT_MALLOPT=0: off)
    run = _start(jobs, manifest_path, replace(settings or RunSettings(), **options))
    by_index, failed_setup = _set_up_all(jobs, run)
    run = _sized(run, list(by_index.values()))
    created = init_distributed(run.device)
    try:
        active = _plan_score_merge(list(by_index.values()), run)
        seconds = time.perf_counter() - started
        together = [j for j in active if not j.dropped]
        return [
            _result(by_index[i], together, run, seconds) if i in by_index
            else _not_set_up(given, failed_setup[i], run, seconds)
            for i, given in enumerate(jobs)
        ]
    finally:
        shutdown(created)


def _start(jobs: Sequence[ScoringJob], manifest_path: str | os.PathLike, settings: RunSettings) -> _Run:
    """Check the jobs and settings, pick the device (before the manifest is read), read the manifest."""
    if not jobs:
        raise ValueError("no scorers to run")
    outs = [Path(j.out).resolve() for j in jobs]
    if len(set(outs)) < len(outs):
        raise ValueError(f"two scorers write the same output: {sorted(str(o) for o in outs if outs.count(o) > 1)[0]!r}")
    settings = settings.checked()
    dev = _device(jobs, settings.device)  # a missing GPU fails before the manifest is read
    manifest = read_context(manifest_path)
    num_workers = -1 if settings.num_workers is None else settings.num_workers  # -1: sized by _sized
    return _Run(settings=settings, device=dev, num_workers=num_workers, manifest=manifest)


def _sized(run: _Run, set_up: list[_Job]) -> _Run:
    """The run with its loader workers sized for its scorers, unless the settings give them."""
    if run.settings.num_workers is not None:
        return run
    shares = [_decode_share(job, run) for job in set_up]
    return replace(run, num_workers=default_num_workers(run.device, shares))


def _decode_share(job: _Job, run: _Run) -> float | None:
    """The job's cost per image in decodes when the loader workers will score it, else None."""
    if not worker_scoring(run.device, run.settings):
        return None
    per_image = job.scorer.per_image_cpu if job.scorer is not None else job.parsed.family in DECODE_SHARE
    return DECODE_SHARE.get(job.parsed.family, 1.0) if per_image else None


def _device(jobs: Sequence[ScoringJob], requested: torch.device | str | None) -> torch.device:
    """The device of the built scorers among ``jobs`` (one for all), else the one ``requested``."""
    built = {j.spec.device for j in jobs if isinstance(j.spec, Scorer)}
    if len(built) > 1:
        raise ValueError(f"built scorers on different devices ({', '.join(map(str, built))}) cannot share a run")
    return built.pop() if built else pick_device(requested)


def _set_up_all(jobs: Sequence[ScoringJob], run: _Run) -> tuple[dict[int, _Job], dict[int, str]]:
    """The jobs that could be set up, by their place in ``jobs``; why each optional other could not."""
    by_index: dict[int, _Job] = {}
    failed: dict[int, str] = {}
    for i, given in enumerate(jobs):
        try:
            by_index[i] = _set_up(given, run)
        except (ValueError, TypeError, KeyError) as exc:
            if not given.optional:
                raise
            failed[i] = f"{type(exc).__name__}: {exc}"
    if dist_info().is_main:
        for i, why in failed.items():
            _say(f"warning: {jobs[i].out} left to its own run: {why}")
    return by_index, failed


def _plan_score_merge(set_up: list[_Job], run: _Run) -> list[_Job]:
    """Plan every job (rank 0, under the outputs' locks), score the active ones, merge their parts.

    Returns the active jobs (neither reused nor skipped).
    """
    info = dist_info()
    with ExitStack() as held:
        plans = _agree(lambda: [_prepare_job(job, held, run) for job in set_up], info.is_main)
        for job, plan in zip(set_up, plans, strict=True):
            job.plan, job.dropped = plan, plan.skip
        if info.is_main:
            _announce(set_up, run.manifest.rows)
        active = [j for j in set_up if not (j.plan.reused or j.plan.skip)]
        scored = _score_active(active, run, info)
        if info.world_size > 1 and active:
            print(f"[rank {info.rank}/{info.world_size}] scored {scored} part(s)", file=sys.stderr)
        barrier()
        if info.is_main:
            _merge(active, run)
        barrier()
    return active


def _announce(set_up: list[_Job], n: int) -> None:
    """One line per job that is skipped, reused (the required one) or resumed."""
    for job in set_up:
        if job.plan.skip:
            _say(f"warning: {job.out} left to its own run: {job.plan.skip}")
        elif job.plan.reused and not job.given.optional:  # others: quiet
            _say(f"reusing {job.out}: complete for this spec, options, labels, manifest, "
                 "geometry and SCORES_VERSION (--no-resume scores it again)")
        elif job.plan.kept and not job.plan.reused:
            _say(f"resuming {job.out}: {job.plan.kept} of {n} rows kept from {job.pdir}; "
                 f"scoring the other {n - job.plan.kept}")


def _merge(active: list[_Job], run: _Run) -> None:
    """Merge the parts of every active job still in the run into its output, then its record."""
    for job in active:
        if job.dropped:
            continue
        parts.merge_parts(
            job.pdir, run.n_chunks, run.manifest.frame, KEY_COLUMNS, job.out,
            metadata={
                "spec": job.parsed.text, "kind": job.parsed.kind, "geometry": run.settings.geometry,
                **job.space.metadata(),
            },
            columns=job.columns,
            on_merged=functools.partial(complete.mark_complete, job.out, job.record),
            logits_of=job.parsed.text if job.keep_logits else None,
        )


def _result(job: _Job, together: list[_Job], run: _Run, seconds: float) -> ScoringResult:
    """What the run did for a job that was set up."""
    n = run.manifest.rows
    reused = bool(job.plan.reused)
    scored_rows = 0 if (reused or job.dropped) else n - job.plan.kept
    return ScoringResult(
        out=job.out, reused=reused, rows=n, kept_rows=n if reused else job.plan.kept, scored_rows=scored_rows,
        scorer=None if reused else job.scorer, device=str(run.device), batch_size=job.batch_size,
        num_workers=run.num_workers, seconds=seconds,
        together=tuple(j.parsed.text for j in together if j is not job) if scored_rows else (),
        dropped=job.dropped, logits_note=job.logits_note,
    )


def _not_set_up(given: ScoringJob, why: str, run: _Run, seconds: float) -> ScoringResult:
    """The result of an optional job that could not be set up: nothing done, and why."""
    return ScoringResult(
        out=Path(given.out), reused=False, rows=run.manifest.rows, kept_rows=0, scored_rows=0,
        device=str(run.device), num_workers=run.num_workers, seconds=seconds, dropped=why,
    )


def _set_up(given: ScoringJob, run: _Run) -> _Job:
    """The job's spec, label space, columns and the records its parts and output must carry."""
    manifest, geometry = run.manifest, run.settings.geometry
    scorer = given.spec if isinstance(given.spec, Scorer) else None
    parsed = scorer.spec if scorer is not None else as_spec(given.spec)  # type: ignore[union-attr]
    if given.batch_size is None:
        batch_size = default_batch_size(parsed, run.device)
    else:
        batch_size = positive_int(given.batch_size, "batch_size")
    space = resolve_label_space(parsed, manifest.classes, manifest.classnames, manifest.unlabelled)
    if scorer is not None:
        space = _built_scorer_space(scorer, space, manifest.path)
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
        "manifest": manifest.fingerprint,
        "geometry": geometry,
        "rows": manifest.rows,
        "part_size": run.settings.part_size,
    }
    record = complete.completion_record(
        spec_text=parsed.text, options=options, labels=space.resume_key(), fingerprint=manifest.fingerprint,
        rows=manifest.rows, geometry=geometry, columns=[*KEY_COLUMNS, *columns],
    )
    if run.decode:  # images decoded on the device (its decoder's pixels): not the files of a CPU decode
        meta["decode"] = record["decode"] = run.decode
    files = {what: complete.file_facts(path)["sha256"] for what, path in input_files(parsed).items()}
    if files:  # the bytes of the model/weights files the spec names: a retrained file is scored again
        meta["files"] = record["files"] = files
    note = (logits_unavailable(parsed, space) or "") if run.settings.keep_logits else ""
    keep = run.settings.keep_logits and not note
    if keep:  # outputs without logits stay complete for work that does not ask for them
        meta["logits"] = record["logits"] = True
    if scorer is not None:
        scorer.keep_logits = keep
    return _Job(given=given, parsed=parsed, out=Path(given.out), scorer=scorer, space=space, columns=columns,
                meta=meta, record=record, batch_size=batch_size, keep_logits=keep, logits_note=note)


def _prepare_job(job: _Job, held: ExitStack, run: _Run) -> _Plan:
    """Lock the job's output, then reuse it, skip it (optional, made elsewhere) or resume its parts."""
    if run.settings.resume and not job.pdir.exists() and _verified_without_writing(job, legacy=False):
        return _Plan(True, run.manifest.rows)  # complete and verified: reading it needs no lock (read-only storage)
    return _lock(job, held, run) or _plan_locked(job, run)


def _lock(job: _Job, held: ExitStack, run: _Run) -> _Plan | None:
    """Hold the output's lock (None); or, when it cannot be had, the plan an optional job or a
    complete output on storage that takes no lock gets instead."""
    try:
        held.enter_context(locks.output_lock(job.out, run.settings.wait and not job.given.optional))
    except locks.LockBusy as exc:
        if not job.given.optional:
            raise
        return _Plan(False, 0, f"another run is writing it ({exc})")
    except fileio.WriteError:
        if run.settings.resume and not job.pdir.exists() and _verified_without_writing(job, legacy=True):
            _say(f"note: {job.out} cannot be locked (storage not writable); reused as checked, its "
                 "old-format completion record left as it is")
            return _Plan(True, run.manifest.rows)
        raise
    return None


def _plan_locked(job: _Job, run: _Run) -> _Plan:
    """Under the output's lock: reuse a complete output, leave one made elsewhere, or check the parts."""
    out, pdir, n = job.out, job.pdir, run.manifest.rows
    with fileio.writing(out.parent):
        out.parent.mkdir(parents=True, exist_ok=True)
    parts.remove_trash(pdir)
    if run.settings.resume and complete.is_complete(out, job.record):
        if pdir.exists():  # killed after the record was written, before the parts went
            parts.remove_tree(pdir)
        return _Plan(True, n)
    if job.given.optional and out.exists() and not complete.record_path(out).exists() and not pdir.exists():
        return _Plan(False, 0, "it exists without a completion record (made elsewhere)")
    complete.forget_complete(out)
    parts.prepare_parts_dir(pdir, job.meta, run.settings.resume)
    return _Plan(False, parts.check_parts(pdir, n, run.settings.part_size))


def _verified_without_writing(job: _Job, legacy: bool) -> bool:
    """Whether the output verifies complete by reading alone; ``legacy``: accept an old-format record."""
    verdict = complete.verify(job.out, job.record)
    return verdict.complete and (legacy or not verdict.legacy)


@dataclass
class _Share:
    """A job's work on this rank: its chunks not done, and the rows of those its sub-parts lack."""

    chunks: int  # this rank's chunks of the job that have no whole part
    needed: np.ndarray  # manifest rows to score (bool)
    todo: list[int] = field(default_factory=list)  # chunks with rows to score
    earlier: dict[int, parts.SubParts] = field(default_factory=dict)  # their sub-parts


def _score_active(active: list[_Job], run: _Run, info: DistInfo) -> int:
    """This rank's share of every active job, through one loader over the rows any of them needs.

    Returns how many of the jobs' chunks fell to this rank.
    """
    labels = torch.from_numpy(run.manifest.frame["label"].to_numpy(np.int64, copy=True))
    streams: dict[str, stream.ScorerStream] = {}
    by_name: dict[str, _Job] = {}
    union = np.zeros(run.manifest.rows, dtype=bool)
    chunks: set[int] = set()
    mine_total = 0
    for job in active:
        share = _share(job, run, info)
        mine_total += share.chunks
        if not share.todo:
            if job.scorer is None and info.is_main and job.space.warning:
                print(f"warning: {job.space.warning}", file=sys.stderr)  # resumed: nothing was built
            continue
        if not _has_scorer(job, run, info):
            continue
        by_name[str(job.out)] = job
        streams[str(job.out)] = stream.ScorerStream(
            job.scorer, job.pdir, share.needed, share.todo, part_size=run.settings.part_size,
            batch_size=job.batch_size, labels=labels, earlier=share.earlier, optional=job.given.optional,
        )
        union |= share.needed
        chunks.update(share.todo)
    if streams:
        _score_streams(streams, by_name, sorted(chunks), union, run, info)
    return mine_total


def _share(job: _Job, run: _Run, info: DistInfo) -> _Share:
    """This rank's chunks of ``job`` that are not done; a chunk whose sub-parts hold every row
    is made its part here."""
    done = parts.done_chunks(job.pdir)
    mine = [c for c in range(run.n_chunks) if c % info.world_size == info.rank and c not in done]
    share = _Share(chunks=len(mine), needed=np.zeros(run.manifest.rows, dtype=bool))
    for c in mine:
        sub = parts.read_sub_parts(job.pdir, c)
        lo, hi = run.chunk_bounds(c)
        share.needed[lo:hi] = True
        share.needed[sub.rows] = False
        if share.needed[lo:hi].any():
            share.todo.append(c)
            share.earlier[c] = sub
        else:  # every row already in sub-parts: make them the chunk's part
            scores, failures = stream.ChunkResults(0, sub).frames()
            parts.write_chunk(job.pdir, c, scores, failures)
    return share


def _has_scorer(job: _Job, run: _Run, info: DistInfo) -> bool:
    """Build the job's scorer unless it came built; False when an optional one fails to build."""
    if job.scorer is not None:
        return True
    manifest = run.manifest
    try:
        job.scorer = build_scorer(
            job.parsed, run.device, classes=manifest.classes, classnames=manifest.classnames,
            unlabelled=manifest.unlabelled, warn=info.is_main,
        )
        job.scorer.keep_logits = job.keep_logits
    except Exception as exc:
        if not job.given.optional:
            raise
        job.dropped = f"{type(exc).__name__}: {exc}"
        if info.is_main:
            _say(f"warning: {job.out} left to its own run: {job.dropped}")
        return False
    return True


def _score_streams(
    streams: dict[str, stream.ScorerStream], by_name: dict[str, _Job], order: list[int], union: np.ndarray,
    run: _Run, info: DistInfo,
) -> None:
    """Feed every loader batch of the ``union`` rows of chunks ``order`` to the streams, with a
    progress bar or lines; a dropped optional job records why."""
    if run.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # batches are almost all one shape
    loader = _loader(order, union, run, *_collation(streams, run))
    name = " + ".join(j.parsed.text for j in by_name.values())
    bar_on = run.settings.progress and info.is_main and sys.stderr.isatty()
    share = int(union.sum())
    lines = _progress_lines(name, share, run.manifest.rows, info) if info.is_main and not bar_on else None
    with tqdm(total=share, unit="img", desc=name, disable=not bar_on, smoothing=0.05) as bar:
        dropped = _feed(streams, loader, order, run, bar=bar, lines=lines)
    for key, why in dropped.items():
        by_name[key].dropped = why


def _feed(
    streams: dict[str, stream.ScorerStream], loader: Any, order: list[int], run: _Run, bar: Any,
    lines: ProgressLines | None,
) -> dict[str, str]:
    """:func:`.stream.score_streams`, its error for a group whose every image failed naming them."""
    try:
        return stream.score_streams(streams, loader, order, run.settings.part_seconds, bar=bar, lines=lines)
    except Exception as exc:
        rows = getattr(exc, stream.FAILED_ROWS, None)
        if rows is None:
            raise
        raise _naming_images(exc, run.manifest.frame["image_id"].to_numpy()[rows]) from exc


def _progress_lines(name: str, share: int, n: int, info: DistInfo) -> ProgressLines:
    """Lines of progress for rank 0 (all rows alone; its own share under torchrun)."""
    if info.world_size == 1:
        return ProgressLines(name, n, n - share)
    return ProgressLines(f"{name} [rank 0 of {info.world_size}]", share)


def _collation(streams: dict[str, stream.ScorerStream], run: _Run) -> tuple[int, Callable[..., Any]]:
    """The loader's batch size and collate function: per-image CPU scorers scored in the workers
    (:class:`.stream.WorkerScoring`) when the run allows it, the others fed pixels."""
    on = worker_scoring(run.device, run.settings)
    in_workers = {k: s for k, s in streams.items() if on and s.scorer.scores_in_workers}
    main = [s.batch_size for k, s in streams.items() if k not in in_workers]
    batch_size = stream.loader_batch_size(main, [s.batch_size for s in in_workers.values()])
    if not in_workers or batch_size is None:
        return max(s.batch_size for s in streams.values()), collate_images
    return batch_size, stream.WorkerScoring.of(in_workers, pixels=bool(main))


def _loader(order: list[int], union: np.ndarray, run: _Run, batch_size: int, collate: Callable[..., Any]) -> Any:
    """Batches of the ``union`` rows of chunks ``order``, decoded by the workers (or on the device)."""
    done_rows = {}
    for c in order:
        lo, hi = run.chunk_bounds(c)
        if not union[lo:hi].all():
            done_rows[c] = (np.flatnonzero(~union[lo:hi]) + lo).tolist()
    sampler = ChunkBatchSampler(order, run.settings.part_size, run.manifest.rows, batch_size, done_rows)
    frame, workers = run.manifest.frame, run.num_workers
    # rows that get the clean-image Resize + CenterCrop (none with geometry "none")
    clean = frame["corruption"].eq("clean").to_numpy() & (run.settings.geometry == "resize_crop")
    dataset = ManifestImages(frame["path"].tolist(), clean, encoded=run.settings.decode_on_device)
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=run.device.type == "cuda",
        prefetch_factor=4 if workers > 0 else None,
        worker_init_fn=functools.partial(_die_with, os.getpid()) if workers > 0 else None,
    )
    if run.settings.decode_on_device:
        return (decode_on_device_fn(batch, run.device) for batch in loader)
    return loader


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
    die_with_parent(parent)
    allocator.tune_allocator()


