"""Resumable output: Parquet parts per manifest chunk, written atomically, checked, merged at the end.

Layout next to the output ``<out>``::

    <out>.parts/meta.json                              what the parts belong to (spec, manifest, part size)
    <out>.parts/part-0000012.failures.parquet          rows of chunk 12 that could not be scored
    <out>.parts/part-0000012.parquet                   scores of chunk 12 (its presence = chunk done)
    <out>.parts/part-0000013.sub-000053300.failures.parquet   a sub-part of unfinished chunk 13:
    <out>.parts/part-0000013.sub-000053300.parquet            rows scored since row 53300, written on time

A chunk is ``part_size`` manifest rows; chunks depend only on the part size,
not on the number of processes, so a run can resume with a different world
size. While a chunk is being scored, the rows scored so far are written as a
sub-part every ``part_seconds`` (see :mod:`.engine`), so a kill loses at most
that much work; when the chunk completes its sub-parts are merged into its part
and deleted. Every file is written to a temporary name and ``os.replace``d
into place (:mod:`iqa_lib.fileio`), the failures file before the scores file,
so the scores file marks a (sub-)part done and a kill at any moment leaves only
whole files. A resumed run reads every part first (:func:`check_parts`): an
unreadable one (truncated, garbled) is set aside as ``<name>.damaged`` with
its partner, with one warning line, and its rows are scored again; after the
merge the set-aside files are kept in ``<out>.damaged/``. A garbled
``meta.json`` is an error naming it: without it the parts cannot be trusted to
belong to this run. Every part carries a digest of its content in its metadata
(``iqa_kit.part_sha256``): a part replaced by a valid file with other values,
or one without a digest in a folder whose ``meta.json`` says its parts have
them, is set aside like an unreadable one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from iqa_lib import fileio
from iqa_lib.scoring import logits

ROW = "_row"
FAILURE_COLUMNS = ["image_id", "corruption", "severity", "path", "reason"]
DAMAGED = ".damaged"
_PART_RE = re.compile(r"^part-(\d+)(?:\.sub-(\d+))?(\.failures)?\.parquet$")


def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def failures_path(out: Path) -> Path:
    """``<out stem>.failures.csv`` next to the output."""
    return out.with_name(out.stem + ".failures.csv")


def damaged_dir(out: Path) -> Path:
    """Where set-aside parts are kept once the output is merged."""
    return out.with_name(out.name + DAMAGED)


def part_path(directory: Path, chunk: int) -> Path:
    return directory / f"part-{chunk:07d}.parquet"


def failure_part_path(directory: Path, chunk: int) -> Path:
    return directory / f"part-{chunk:07d}.failures.parquet"


def sub_part_path(directory: Path, chunk: int, first: int) -> Path:
    return directory / f"part-{chunk:07d}.sub-{first:09d}.parquet"


def sub_failure_path(directory: Path, chunk: int, first: int) -> Path:
    return directory / f"part-{chunk:07d}.sub-{first:09d}.failures.parquet"


# Score files say what made them: readers tell classifiers from zero-shot scorers by this.
METADATA_PREFIX = "iqa_kit."


def write_parquet_atomic(df: pd.DataFrame, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write ``df`` to ``path`` atomically; a write fault is a :class:`~iqa_lib.fileio.WriteError`."""

    def write(tmp: Path) -> None:
        if metadata:
            table = pa.Table.from_pandas(df, preserve_index=False)
            extra = {f"{METADATA_PREFIX}{k}".encode(): str(v).encode() for k, v in metadata.items()}
            pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), **extra}), tmp)
        else:
            df.to_parquet(tmp, index=False)

    fileio.atomic_write_with(path, write)


def read_score_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``iqa_kit.*`` metadata of a score file (``spec``, ``kind``); empty when absent."""
    raw = pq.read_schema(path).metadata or {}
    return {
        k.decode()[len(METADATA_PREFIX):]: v.decode()
        for k, v in raw.items()
        if k.decode(errors="replace").startswith(METADATA_PREFIX)
    }


def unreadable_reason(exc: BaseException) -> str:
    """The first line of a reader's error: messages about a file stay one line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def read_part(path: Path) -> pd.DataFrame:
    """A part as a frame; an unreadable one is an error naming it and saying what to do."""
    try:
        return pq.read_table(path).to_pandas()
    except (OSError, ValueError, pa.ArrowException) as exc:
        if fileio.is_write_fault(exc):
            raise
        raise RuntimeError(
            f"part {str(path)!r} is unreadable ({unreadable_reason(exc)}); rerun the same command: "
            "it is set aside and its rows are scored again"
        ) from None


# A part's content digest, in its metadata: a resume takes only parts that hold what was written.
PART_DIGEST = "part_sha256"
# meta.json of a parts folder whose parts all carry it (folders of older runs: only those that have one)
DIGESTS_KEY = "part_digests"


def frame_digest(frame: pd.DataFrame) -> str:
    """sha256 of a frame's column names and values (as read back): the same before writing and after."""
    digest = hashlib.sha256(json.dumps([str(c) for c in frame.columns]).encode())
    for column in frame.columns:
        digest.update(pd.util.hash_pandas_object(frame[column], index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _write_part(frame: pd.DataFrame, path: Path) -> None:
    write_parquet_atomic(frame, path, {PART_DIGEST: frame_digest(frame)})


def write_chunk(directory: Path, chunk: int, scores: pd.DataFrame, failures: pd.DataFrame) -> None:
    """Failures first, then scores: the scores part marks the chunk done; its sub-parts go."""
    _write_part(failures, failure_part_path(directory, chunk))
    _write_part(scores, part_path(directory, chunk))
    for path in _sub_files(directory, chunk):
        with fileio.writing(path):
            path.unlink(missing_ok=True)


def write_sub_part(
    directory: Path, chunk: int, first: int, scores: pd.DataFrame, failures: pd.DataFrame
) -> None:
    """Rows of an unfinished chunk scored since the last write: failures first, then scores."""
    _write_part(failures, sub_failure_path(directory, chunk, first))
    _write_part(scores, sub_part_path(directory, chunk, first))


def _sub_files(directory: Path, chunk: int) -> list[Path]:
    return sorted(directory.glob(f"part-{chunk:07d}.sub-*.parquet"))


def done_chunks(directory: Path) -> set[int]:
    if not directory.is_dir():
        return set()
    out = set()
    for p in directory.glob("part-*.parquet"):
        stem = p.name[len("part-") : -len(".parquet")]
        if stem.isdigit():
            out.add(int(stem))
    return out


@dataclass
class SubParts:
    """What the sub-parts of one unfinished chunk hold: their scores, failures and rows."""

    scores: list[pd.DataFrame] = field(default_factory=list)
    failures: list[pd.DataFrame] = field(default_factory=list)

    @property
    def rows(self) -> np.ndarray:
        got = [f[ROW].to_numpy(np.int64) for f in (*self.scores, *self.failures)]
        return np.concatenate(got) if got else np.zeros(0, dtype=np.int64)


def read_sub_parts(directory: Path, chunk: int) -> SubParts:
    """The sub-parts of ``chunk`` whose scores file exists (checked by :func:`check_parts`)."""
    found = SubParts()
    for path in _sub_files(directory, chunk):
        m = _PART_RE.match(path.name)
        if m is None or m.group(3):
            continue
        fpath = sub_failure_path(directory, chunk, int(m.group(2)))
        found.scores.append(read_part(path))
        found.failures.append(read_part(fpath))
    return found


def prepare_parts_dir(directory: Path, meta: dict[str, Any], resume: bool) -> None:
    """Create the parts folder, or check that the parts in it belong to this run.

    Parts of another spec, manifest or part size would mix into the output, so
    they are an error when resuming (and are removed when not resuming).
    """
    meta_file = directory / "meta.json"
    if directory.exists() and not resume:
        remove_tree(directory)
    if directory.exists() and meta_file.is_file():
        old = _read_meta(meta_file)
        if {k: v for k, v in old.items() if k != DIGESTS_KEY} != meta:
            diff = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
            raise RuntimeError(
                f"{directory} holds parts of a different run (differs in: {', '.join(diff)}); "
                "delete that folder or run without resume (--no-resume) to start over"
            )
        return
    with fileio.writing(directory):
        directory.mkdir(parents=True, exist_ok=True)
    fileio.write_json({**meta, DIGESTS_KEY: True}, meta_file)


def _read_meta(meta_file: Path) -> dict[str, Any]:
    """A parts folder's ``meta.json``; an error naming it when it cannot be read as an object."""
    try:
        old = json.loads(meta_file.read_text())
        if not isinstance(old, dict):
            raise ValueError(f"a JSON {type(old).__name__}, not an object")
    except (OSError, ValueError) as exc:
        raise RuntimeError(
            f"{str(meta_file)!r} is unreadable ({unreadable_reason(exc)}), so the parts beside it "
            f"cannot be checked against this run; rerun with --no-resume to score from scratch, "
            f"or delete {str(meta_file.parent)!r}"
        ) from None
    return old


def _readable(path: Path) -> tuple[pd.DataFrame | None, str | None, str | None]:
    """The part's frame and stored digest, or why it cannot be read."""
    try:
        table = pq.read_table(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        if fileio.is_write_fault(exc):
            raise
        return None, None, unreadable_reason(exc)
    stored = (table.schema.metadata or {}).get(f"{METADATA_PREFIX}{PART_DIGEST}".encode())
    return table.to_pandas(), None if stored is None else stored.decode(), None


def _digest_problem(frame: pd.DataFrame, stored: str | None, required: bool) -> str | None:
    """Why a readable part is not the one the run wrote (its digest differs or is missing)."""
    if stored is None:
        return "carries no checksum (not written by this run)" if required else None
    if stored != frame_digest(frame):
        return "holds other values than were written (its checksum differs)"
    return None


def _digests_required(directory: Path) -> bool:
    try:
        return bool(json.loads((directory / "meta.json").read_text()).get(DIGESTS_KEY))
    except (OSError, ValueError, AttributeError):
        return False


def set_aside(path: Path, suffix: str = DAMAGED) -> Path:
    """Rename ``path`` to ``<name><suffix>`` (``-2``, ... if taken): kept, never used."""
    target = path.with_name(path.name + suffix)
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}{suffix}-{n}")
    with fileio.writing(target):
        os.replace(path, target)
    return target


def check_parts(
    directory: Path, n_rows: int, part_size: int, warn: Callable[[str], Any] | None = None
) -> int:
    """Make every part in ``directory`` usable; return how many manifest rows they hold.

    A part and its failures file are one unit; a unit whose files cannot be read
    (or whose rows are not the chunk's) is set aside as ``*.damaged`` with one
    warning line, so its rows are scored again. Leftovers of a kill are tidied:
    a failures file without its scores file, and sub-parts of a chunk whose
    whole part was written.
    """
    warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
    units = _units(directory)
    required = _digests_required(directory)
    coverage = _Coverage(n_rows, part_size)
    # each chunk's whole part first, then its sub-parts in row order
    for chunk, sub in sorted(units, key=lambda key: (key[0], -1 if key[1] is None else key[1])):
        files = units[(chunk, sub)]
        if _tidied(files, sub is not None and chunk in coverage.whole):
            continue
        rows, problems = _unit_rows(directory, chunk, sub, files, required)
        if rows is not None:
            problem = coverage.take(chunk, sub is None, rows, files["scores"])
            if problem is None:
                continue
            problems.append(problem)
        _set_aside_unit(files, problems, warn)
    return coverage.kept


def _set_aside_unit(files: dict[str, Path], problems: list[str], warn: Callable[[str], Any]) -> None:
    """Set a unit's files aside (its rows are scored again), with one warning line saying why."""
    moved = [set_aside(p) for p in files.values() if p.exists()]
    warn(
        f"warning: {'; '.join(problems)}: set aside as {', '.join(repr(str(p)) for p in moved)}; "
        f"its rows are scored again"
    )


@dataclass
class _Coverage:
    """The rows the good units hold so far, per chunk, and the chunks whose whole part is good."""

    n_rows: int
    part_size: int
    kept: int = 0
    covered: dict[int, set[int]] = field(default_factory=dict)
    whole: set[int] = field(default_factory=set)  # their sub-parts are leftovers

    def take(self, chunk: int, whole: bool, rows: np.ndarray, scores: Path) -> str | None:
        """Count a unit's rows, or say why they are not its chunk's (and count nothing)."""
        seen = self.covered.setdefault(chunk, set())
        bounds = (chunk * self.part_size, min((chunk + 1) * self.part_size, self.n_rows))
        problem = _rows_problem(rows, bounds, whole, seen, scores)
        if problem is None:
            seen.update(rows.tolist())
            self.kept += len(rows)
            if whole:
                self.whole.add(chunk)
        return problem


def _units(directory: Path) -> dict[tuple[int, int | None], dict[str, Path]]:
    """The files of each (chunk, sub-part's first row or None for the whole part): scores, failures."""
    units: dict[tuple[int, int | None], dict[str, Path]] = {}
    for path in sorted(directory.glob("part-*.parquet")):
        m = _PART_RE.match(path.name)
        if m is None:
            continue
        key = (int(m.group(1)), None if m.group(2) is None else int(m.group(2)))
        units.setdefault(key, {})["failures" if m.group(3) else "scores"] = path
    return units


def _tidied(files: dict[str, Path], superseded: bool) -> bool:
    """Remove a unit a kill left behind: a failures file without its scores file, or a sub-part of
    a chunk whose whole part is written (``superseded``); whether it was one."""
    if "scores" not in files:  # killed between the two writes: not a part yet
        _unlink(files["failures"])
        return True
    if superseded:  # killed after the whole part, before its sub-parts went
        for path in files.values():
            _unlink(path)
        return True
    return False


def _unit_rows(
    directory: Path, chunk: int, sub: int | None, files: dict[str, Path], required: bool
) -> tuple[np.ndarray | None, list[str]]:
    """The manifest rows a unit's two files hold, or (None) what is wrong with them."""
    frames, problems = [], []
    for role in ("scores", "failures"):
        path = files.get(role) or (
            failure_part_path(directory, chunk) if sub is None else sub_failure_path(directory, chunk, sub)
        )
        rows, problem = _file_rows(path, required)
        if problem is None:
            frames.append(rows)
        else:
            problems.append(problem)
    return (None if problems else np.concatenate(frames)), problems


def _file_rows(path: Path, required: bool) -> tuple[np.ndarray | None, str | None]:
    """The ``_row`` values of a part file, or what is wrong with it (missing, unreadable, altered)."""
    if not path.exists():
        return None, f"{str(path)!r} is missing"
    frame, stored, why = _readable(path)
    if frame is None:
        return None, f"{str(path)!r} is unreadable ({why})"
    if ROW not in frame.columns:
        return None, f"{str(path)!r} has no {ROW} column"
    if bad := _digest_problem(frame, stored, required):
        return None, f"{str(path)!r} {bad}"
    return frame[ROW].to_numpy(np.int64), None


def _rows_problem(
    rows: np.ndarray, bounds: tuple[int, int], whole: bool, seen: set[int], scores: Path
) -> str | None:
    """Why the rows of a unit are not its chunk's: a whole part holds exactly the chunk's rows
    (``bounds``: first, one after the last), a sub-part rows within it that no other unit holds."""
    lo, hi = bounds
    if whole:
        if len(rows) != hi - lo or set(rows.tolist()) != set(range(lo, hi)):
            return f"{str(scores)!r} does not hold exactly rows {lo}-{hi - 1}"
        return None
    if ((rows < lo) | (rows >= hi)).any() or len(set(rows.tolist())) != len(rows) or seen.intersection(rows.tolist()):
        return f"{str(scores)!r} holds rows outside its chunk or twice"
    return None


def _unlink(path: Path) -> None:
    with fileio.writing(path):
        path.unlink(missing_ok=True)


def remove_tree(directory: Path) -> None:
    """Rename first (atomic), then delete: a kill mid-delete never leaves a half-emptied folder."""
    trash = directory.with_name(f".{directory.name}.done-{os.getpid()}")
    with fileio.writing(directory):
        os.replace(directory, trash)
    shutil.rmtree(trash, ignore_errors=True)


def remove_trash(directory: Path) -> None:
    """Folders a killed run was deleting (``.<name>.done-<pid>``)."""
    for trash in directory.parent.glob(f".{directory.name}.done-*"):
        shutil.rmtree(trash, ignore_errors=True)


def merge_parts(
    directory: Path,
    n_chunks: int,
    manifest: pd.DataFrame,
    key_columns: Sequence[str],
    out: Path,
    remove_parts: bool = True,
    metadata: dict[str, str] | None = None,
    columns: Sequence[str] | None = None,
    on_merged: Callable[[], Any] | None = None,
    logits_of: str | None = None,
) -> tuple[int, int]:
    """Merge every chunk's parts into ``out`` (manifest order) and the failures CSV.

    ``columns`` (default: every scored column) selects the output columns. The
    failures CSV is written before ``out`` (so an ``out`` always has its
    failures beside it), then ``on_merged()`` (the engine's completion record),
    and only then are the parts removed: a kill at any point can merge again.
    ``logits_of`` (a scorer's spec): the parts carry each row's logits, written
    before ``out`` as its ``.logits`` folder (:mod:`iqa_lib.scoring.logits`); else
    logits an earlier run kept beside ``out`` are removed first.
    Returns (rows scored, rows failed). Raises if a chunk is missing or a row
    appears twice.
    """
    missing = sorted(set(range(n_chunks)) - done_chunks(directory))
    if missing:
        raise RuntimeError(f"cannot merge {directory}: chunks {missing[:10]} are not done")
    scores = [read_part(part_path(directory, c)) for c in range(n_chunks)]
    fails = [read_part(failure_part_path(directory, c)) for c in range(n_chunks)]
    scores_df = _concat(scores, pd.DataFrame({ROW: []}))
    fails_df = _concat(fails, pd.DataFrame({ROW: [], "reason": []}))
    rows = pd.concat([scores_df[ROW], fails_df[ROW]], ignore_index=True)
    if rows.duplicated().any() or len(rows) != len(manifest):
        raise RuntimeError(
            f"parts in {directory} cover {rows.nunique()} of {len(manifest)} rows "
            f"with {int(rows.duplicated().sum())} duplicates; delete the folder and rerun"
        )
    scores_df = scores_df.sort_values(ROW, kind="stable")
    idx = scores_df[ROW].to_numpy()
    keys = manifest.iloc[idx][list(key_columns)].reset_index(drop=True)
    values = scores_df.drop(columns=[ROW])
    if columns is not None:
        values = values[list(columns)]
    result = pd.concat([keys, values.reset_index(drop=True)], axis=1)

    fails_df = fails_df.sort_values(ROW, kind="stable")
    fidx = fails_df[ROW].to_numpy().astype(int)
    fkeys = manifest.iloc[fidx][["image_id", "corruption", "severity", "path"]].reset_index(drop=True)
    failures = pd.concat([fkeys, fails_df[["reason"]].reset_index(drop=True)], axis=1)
    fileio.write_csv(failures[FAILURE_COLUMNS], failures_path(out))
    if logits_of is None:
        logits.forget_logits(out)
    else:
        logits.write_logits(out, scores_df[logits.COLUMN].tolist(), logits_of)
    write_parquet_atomic(result, out, metadata)
    if on_merged is not None:
        on_merged()
    if remove_parts:
        keep_damaged(directory, damaged_dir(out))
        remove_tree(directory)
    return len(result), len(failures)


def keep_damaged(directory: Path, keep: Path) -> list[Path]:
    """Move set-aside files out of a parts folder about to be removed; say where they are."""
    found = sorted(p for p in directory.glob(f"*{DAMAGED}*") if p.is_file())
    if not found:
        return []
    with fileio.writing(keep):
        keep.mkdir(parents=True, exist_ok=True)
        moved = []
        for path in found:
            target = keep / path.name
            os.replace(path, target)
            moved.append(target)
    print(f"warning: {len(moved)} damaged part file(s) kept in {str(keep)!r}; delete it when done",
          file=sys.stderr, flush=True)
    return moved


def _concat(frames: list[pd.DataFrame], empty: pd.DataFrame) -> pd.DataFrame:
    """Concatenate, skipping empty frames (whose dtypes could change the result's)."""
    full = [f for f in frames if len(f)]
    if full:
        return pd.concat(full, ignore_index=True)
    return frames[0].iloc[:0] if frames else empty
