"""One loader, several scorers: every decoded batch goes to each scorer that still needs its rows.

Decoding is a large share of what cheap scorers cost (TV is bound by it), so a
run with several scorers decodes each image once (:func:`score_streams`). Each
scorer keeps its own batch grid: its batches start at every chunk's first row
in steps of its own batch size, less the rows it scored before (its
sub-parts), exactly as a run of that scorer alone would batch them. A
:class:`ScorerStream` therefore collects the loader's images into its own
batches (a batch is scored the moment its last needed row arrives), so
batch-dependent numerics give the values of a single-scorer run, and it keeps
its own chunk results, parts and sub-parts (:mod:`.parts`). When its batch
is exactly the loader's batch, the loader's groups go straight to the scorer.

Per-image CPU scorers (:attr:`~iqa_lib.scorers.base.Scorer.scores_in_workers`)
are scored inside the loader workers instead (:class:`WorkerScoring`, the
loader's collate function): a worker cuts the images it decoded into the
scorer's batches (the loader's batches are a multiple of them, so a scorer
batch never spans two loader batches), makes the very ``score`` calls the
scoring process would have made (:func:`score_cell`), and sends back rows and
scores (:class:`CellScores`), not pixels. The scoring process records them in
the same order as its own scoring (:meth:`ScorerStream.feed`), so parts,
sub-parts, failures, resumes and errors are those of scoring in the process.
"""

from __future__ import annotations

import math
import os
import pickle
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from iqa_lib.scorers.base import COLUMN_DTYPES, LOGITS, Scorer
from iqa_lib.scoring import logits, parts
from iqa_lib.scoring.dataset import ImageBatch, collate_images
from iqa_lib.scoring.progress import ProgressLines

# Test hook: SIGKILL this process after it has written this many parts.
KILL_AFTER_PARTS_ENV = "IQA_KIT_KILL_AFTER_PARTS"
# Test hook: sleep this many seconds after each batch, so that a kill can land mid-run.
BATCH_DELAY_ENV = "IQA_KIT_BATCH_DELAY"


class ScorerDropped(Exception):
    """An optional scorer failed: the others go on, its parts so far are kept for its own run."""


# Attribute of a scorer error raised because every image of a group failed: their manifest rows.
FAILED_ROWS = "iqa_kit_failed_rows"


def score_group(
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
        return _one_by_one(scorer, images, rows, labels, exc)


def _one_by_one(
    scorer: Scorer, images: torch.Tensor, rows: torch.Tensor, labels: torch.Tensor, first_exc: Exception
) -> tuple[dict[str, np.ndarray], list[tuple[int, str]]]:
    """A group that failed as a whole, scored image by image; ``first_exc`` when every image fails."""
    results: list[dict[str, np.ndarray] | None] = []
    failures: list[tuple[int, str]] = []
    for i in range(len(rows)):
        res, fail = score_group(scorer, images[i : i + 1], rows[i : i + 1], labels[i : i + 1])
        results.append(res)
        failures.extend(fail)
    if len(failures) == len(rows):
        setattr(first_exc, FAILED_ROWS, rows.tolist())  # the engine names their images
        raise first_exc
    keep = [i for i, r in enumerate(results) if r is not None]
    merged = {k: np.concatenate([results[i][k] for i in keep]) for k in results[keep[0]]}
    return merged | {"__rows__": rows[keep].numpy()}, failures


Groups = list[tuple[torch.Tensor, torch.Tensor]]  # (manifest rows, uint8 images) of one size each
# (rows, scores, failures) per size group; rows are numpy once a loader worker sends them
Scored = list[tuple["torch.Tensor | np.ndarray", "dict[str, np.ndarray] | None", list[tuple[int, str]]]]


def score_cell(scorer: Scorer, groups: Groups, labels: torch.Tensor) -> Scored:
    """Score one scorer batch, size group by size group: (rows, scores, failures) per group."""
    out: Scored = []
    for rows, images in groups:
        images = images.to(scorer.device, non_blocking=True)
        scored, failed = score_group(scorer, images, rows, labels[rows])
        out.append((rows, scored, failed))
    return out


@dataclass
class CellScores:
    """One scorer batch, scored: what :meth:`ScorerStream.feed` records for it.

    ``cell`` is (chunk, first row of the batch); ``failures`` the rows that could
    not be decoded; ``count`` every row of the batch. ``error``: the scorer's
    error (then ``scored`` is empty), raised where scoring it would have raised.
    """

    cell: tuple[int, int]
    scored: Scored
    failures: list[tuple[int, str]]
    count: int
    error: BaseException | None = None


def cell_of(row: int, part_size: int, batch_size: int) -> tuple[int, int]:
    """(chunk, first row) of the scorer batch that holds ``row``: the grid from each chunk's first row."""
    chunk = row // part_size
    start = chunk * part_size
    return chunk, start + (row - start) // batch_size * batch_size


def expected_rows(cell: tuple[int, int], needed: np.ndarray, part_size: int, batch_size: int) -> int:
    """How many rows of the scorer batch ``cell`` the scorer needs."""
    stop = min(cell[1] + batch_size, (cell[0] + 1) * part_size, len(needed))
    return int(needed[cell[1] : stop].sum())


class ChunkResults:
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
            if LOGITS in scored and scored[LOGITS].ndim == 2:  # (N, K) from the scorer: bytes per row
                scored[LOGITS] = logits.rows_as_bytes(scored[LOGITS])
            self.rows.append(np.asarray(rows) if kept is None else kept)  # a tensor, or numpy from a worker
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


class ScorerStream:
    """One scorer's share of a run: the rows it needs, its batch grid, its chunks and parts.

    ``needed`` marks the manifest rows this scorer scores in this run (its
    chunks, less the rows of its sub-parts); ``earlier`` holds those sub-parts
    per chunk. ``optional``: an error of this scorer drops it
    (:class:`ScorerDropped`) instead of ending the run.
    """

    def __init__(
        self,
        scorer: Scorer,
        pdir: Path,
        needed: np.ndarray,
        chunks: Sequence[int],
        part_size: int,
        batch_size: int,
        labels: torch.Tensor,
        earlier: Mapping[int, parts.SubParts] | None = None,
        optional: bool = False,
    ):
        self.scorer, self.pdir, self.needed = scorer, pdir, needed
        self.part_size, self.batch_size, self.labels = part_size, batch_size, labels
        self.optional = optional
        self.columns = scorer.columns
        n = len(needed)
        earlier = earlier or {}
        self.pending = {
            c: ChunkResults(int(needed[c * part_size : min((c + 1) * part_size, n)].sum()), earlier.get(c))
            for c in chunks
        }
        self._cell: tuple[int, int] | None = None  # (chunk, first row) of the batch being collected
        self._expected = 0
        self._images: dict[int, torch.Tensor] = {}
        self._failed: dict[int, str] = {}
        self._rows: list[int] = []
        self.key: str | None = None  # set when the loader workers score it (its key in their results)

    def _cell_of(self, row: int) -> tuple[int, int]:
        return cell_of(row, self.part_size, self.batch_size)

    def _expect(self, cell: tuple[int, int]) -> int:
        return expected_rows(cell, self.needed, self.part_size, self.batch_size)

    def feed(self, batch: ImageBatch, rows: np.ndarray) -> list[int]:
        """Take the loader batch's rows this scorer needs; score each of its batches once whole
        (or record the batches the loader workers scored).

        Returns the chunks whose part this call wrote.
        """
        if self.key is not None:
            return self._take(batch.scored.get(self.key, ()))
        mask = self.needed[rows]
        if not mask.any():
            return []
        cell = self._whole_batch(rows, mask)
        if cell is not None:
            return self._score(cell, batch.groups, batch.failures, len(rows))  # the loader's batch is ours
        by_row = {}
        for group_rows, images in batch.groups:
            for i, row in enumerate(group_rows.tolist()):
                by_row[row] = images[i]
        failed = dict(batch.failures)
        written: list[int] = []
        for row in rows[mask].tolist():
            self._enter(row)
            self._rows.append(row)
            if row in by_row:
                self._images[row] = by_row[row]
            else:
                self._failed[row] = failed.get(row, "unknown error")
            if len(self._rows) == self._expected:
                written += self._flush()
        return written

    def _whole_batch(self, rows: np.ndarray, mask: np.ndarray) -> tuple[int, int] | None:
        """The cell of this scorer's batch when the loader's batch is exactly it, else None."""
        if self._cell is not None or not mask.all():
            return None
        cell = self._cell_of(int(rows[0]))
        if self._cell_of(int(rows[-1])) == cell and self._expect(cell) == len(rows):
            return cell
        return None

    def _enter(self, row: int) -> None:
        """Start collecting the batch of ``row`` unless it is the one being collected; the batch
        before must be whole by then."""
        cell = self._cell_of(row)
        if self._cell == cell:
            return
        if self._cell is not None:
            raise RuntimeError(
                f"{self.scorer.name}: rows of batch {self._cell} did not all arrive before row {row}"
            )
        self._cell, self._expected = cell, self._expect(cell)

    def _flush(self) -> list[int]:
        """Score the collected batch (size groups in order of first appearance, as the loader's)."""
        items = [(r, self._images.get(r), self._failed.get(r)) for r in self._rows]
        cell, count = self._cell, len(self._rows)
        self._cell, self._expected, self._rows, self._images, self._failed = None, 0, [], {}, {}
        collated = collate_images(items)
        return self._score(cell, collated.groups, collated.failures, count)

    def _score(
        self,
        cell: tuple[int, int],
        groups: list[tuple[torch.Tensor, torch.Tensor]],
        failures: list[tuple[int, str]],
        count: int,
    ) -> list[int]:
        try:
            scored = score_cell(self.scorer, groups, self.labels)
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as exc:
            if self.optional:
                raise _dropped(exc) from exc
            raise
        return self._record(CellScores(cell, scored, failures, count))

    def _take(self, cells: Sequence[CellScores]) -> list[int]:
        """Record the scorer batches a loader worker scored, in order; an error is raised here,
        where scoring the batch in this process would have raised it."""
        written: list[int] = []
        for cell in cells:
            if cell.error is not None:
                if self.optional:
                    raise _dropped(cell.error) from cell.error
                raise cell.error
            written += self._record(cell)
        return written

    def _record(self, done: CellScores) -> list[int]:
        """Add a scored batch to its chunk; write the chunk's part when it is whole."""
        chunk, first = done.cell
        acc = self.pending[chunk]
        acc.start_batch(first)
        for rows, scored, failed in done.scored:
            acc.add(rows, scored, failed)
        acc.failures.extend(done.failures)
        acc.seen += done.count
        if acc.seen == acc.size:
            parts.write_chunk(self.pdir, chunk, *acc.frames(self.columns))
            del self.pending[chunk]
            return [chunk]
        return []

    def write_sub_parts(self) -> None:
        """Write what each unfinished chunk scored since its last write (a kill loses less)."""
        for c, acc in self.pending.items():
            if acc.first_new is not None:
                parts.write_sub_part(self.pdir, c, acc.first_new, *acc.frames(self.columns, new_only=True))
                acc.mark_written()


def _dropped(exc: BaseException) -> ScorerDropped:
    return ScorerDropped(f"{type(exc).__name__}: {exc}")


@dataclass
class _InWorker:
    """What a loader worker needs of one stream to score its batches."""

    scorer: Scorer
    needed: np.ndarray
    part_size: int
    batch_size: int
    labels: torch.Tensor
    failed: bool = False  # this worker met the scorer's error: the run stops or drops it there


@dataclass
class WorkerScoring:
    """The loader's collate function when scorers run in the loader workers.

    For each such stream (by key), the worker cuts the loader batch's decoded
    images into that scorer's batches and scores them (:func:`score_cell`, in
    ordinary memory); the batch it sends holds these :class:`CellScores`, and
    the pixels only when ``pixels`` (scorers left to the scoring process need
    them). The loader's batches must be a multiple of every such scorer's batch
    (:func:`loader_batch_size`).
    """

    streams: dict[str, _InWorker]
    pixels: bool

    @classmethod
    def of(cls, streams: Mapping[str, ScorerStream], pixels: bool) -> WorkerScoring:
        """Collation for ``streams`` (each is marked as scored by the workers)."""
        jobs = {}
        for key, stream in streams.items():
            stream.key = key
            jobs[key] = _InWorker(stream.scorer, stream.needed, stream.part_size, stream.batch_size, stream.labels)
        return cls(jobs, pixels)

    def __call__(self, items: Sequence[tuple[int, torch.Tensor | None, str | None]]) -> ImageBatch:
        scored = {key: self._cells(job, items) for key, job in self.streams.items()}
        if self.pixels:
            batch = collate_images(items)
        else:  # rows as numpy: pickled inline, where a tensor costs a shared-memory block and a socket
            batch = ImageBatch(np.array([it[0] for it in items], dtype=np.int64))  # type: ignore[arg-type]
        batch.scored = scored
        return batch

    def _cells(self, job: _InWorker, items: Sequence[tuple[int, Any, Any]]) -> list[CellScores]:
        """The scorer batches of ``job`` among ``items`` (ascending rows), each scored."""
        by_cell: dict[tuple[int, int], list[tuple[int, Any, Any]]] = {}
        for item in items:
            if job.needed[item[0]]:
                by_cell.setdefault(cell_of(item[0], job.part_size, job.batch_size), []).append(item)
        cells = []
        for cell, members in by_cell.items():
            if len(members) != expected_rows(cell, job.needed, job.part_size, job.batch_size):
                raise RuntimeError(f"{job.scorer.name}: scorer batch {cell} spans two loader batches")
            collated = collate_images(members, shared=False)
            cells.append(CellScores(cell, [], collated.failures, len(members)))
            if job.failed:  # the scoring process stops or drops the scorer at its first error
                cells[-1].error = RuntimeError(f"{job.scorer.name}: not scored after an earlier error")
                continue
            try:
                scored = score_cell(job.scorer, collated.groups, job.labels)
                cells[-1].scored = [(rows.numpy(), values, failed) for rows, values, failed in scored]  # sent inline
            except Exception as exc:
                job.failed = True
                cells[-1].error = _portable(exc)
        return cells


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives the trip from a worker (pickled), else a RuntimeError saying the same;
    the attribute naming the rows of a group whose every image failed is kept."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        same = RuntimeError(f"{type(exc).__name__}: {exc}")
        if hasattr(exc, FAILED_ROWS):
            setattr(same, FAILED_ROWS, getattr(exc, FAILED_ROWS))
        return same


def loader_batch_size(main: Sequence[int], in_workers: Sequence[int], limit: int = 1024) -> int | None:
    """The loader's batch when scorers of batches ``in_workers`` run in the workers and others
    (``main``) in the scoring process: the least multiple of every ``in_workers`` batch that is at
    least every batch; None when that exceeds both ``limit`` and the largest batch (the workers
    then score nothing: a worker holds a loader batch of pixels)."""
    grid = 1
    for size in in_workers:
        grid = math.lcm(grid, size)
    biggest = max([*main, *in_workers])
    size = grid * -(-biggest // grid)
    return size if size <= max(limit, biggest) else None


def score_streams(
    streams: Mapping[str, ScorerStream],
    loader: Any,
    chunks: Sequence[int],
    part_seconds: float,
    bar: Any,
    lines: ProgressLines | None = None,
    warn: Any = None,
) -> dict[str, str]:
    """Feed every loader batch to every stream; return the optional scorers dropped, with why.

    A chunk counts as written (a progress line) when the last stream needing it
    wrote its part.
    """
    run = _Pass(streams, chunks, part_seconds, lines, warn or (lambda line: print(line, file=sys.stderr, flush=True)))
    delay = float(os.environ.get(BATCH_DELAY_ENV, "0") or 0)
    for batch in loader:
        rows = np.asarray(batch.rows)  # a tensor, or numpy when the workers scored every scorer
        closed, released = run.feed(batch, rows)
        bar.update(len(rows))
        if lines is not None:
            lines.update(len(rows))
        run.close(closed + released)  # after the rows are counted: a part's line includes them
        run.wrote(len(closed))
        if delay:
            time.sleep(delay)
    for name, stream in run.live.items():
        if stream.pending:
            raise RuntimeError(f"{name}: chunks {sorted(stream.pending)} were not completed by the loader")
    return run.dropped


class _Pass:
    """One pass over the loader: the streams still in it, the chunks some stream has yet to write,
    and when parts were last written."""

    def __init__(
        self, streams: Mapping[str, ScorerStream], chunks: Sequence[int], part_seconds: float,
        lines: ProgressLines | None, warn: Any,
    ):
        self.live = dict(streams)
        self.dropped: dict[str, str] = {}
        self.open_chunks = {c: sum(c in s.pending for s in streams.values()) for c in chunks}
        self.part_seconds, self.lines, self.warn = part_seconds, lines, warn
        self.kill_after = int(os.environ.get(KILL_AFTER_PARTS_ENV, "0") or 0)
        self.written = 0
        self.last_write = time.monotonic()

    def feed(self, batch: ImageBatch, rows: np.ndarray) -> tuple[list[int], list[int]]:
        """Give the batch to every live stream: the chunks they wrote the part of, and those a
        stream dropped now will not write."""
        closed: list[int] = []
        released: list[int] = []
        for name, stream in list(self.live.items()):
            try:
                closed += stream.feed(batch, rows)
            except ScorerDropped as exc:
                self.dropped[name] = str(exc)
                self.warn(f"warning: {name} failed ({exc}); the other scorers go on, its own run scores "
                          "it again (its parts so far are kept)")
                del self.live[name]
                released += list(stream.pending)
        return closed, released

    def close(self, chunks: list[int]) -> None:
        """A progress line per chunk that no stream has left to write."""
        for chunk in chunks:
            self.open_chunks[chunk] -= 1
            if self.open_chunks[chunk] == 0 and self.lines is not None:
                self.lines.part_written()

    def wrote(self, parts_written: int) -> None:
        """After a batch: the kill test hook, and sub-parts when no part was written for ``part_seconds``."""
        self.written += parts_written
        if self.kill_after and self.written >= self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        if parts_written:
            self.last_write = time.monotonic()
        elif time.monotonic() - self.last_write >= self.part_seconds:
            for stream in self.live.values():
                stream.write_sub_parts()
            self.last_write = time.monotonic()
