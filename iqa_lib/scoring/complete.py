"""A finished score file says what made it, so that rerunning the same work scores nothing.

The engine's parts make an interrupted run resume; once the parts are merged
they are gone, and a plain rerun would score everything again. So the engine
writes a completion record beside the output (``<out stem>.done.json``: spec,
options that change scores, label space, manifest fingerprint, row count,
geometry, SCORES_VERSION, the columns written) when it finishes, and returns at
once when the record of a rerun matches (:func:`is_complete`); ``resume=False``
/ ``--no-resume`` scores again. The record's format is the one ``iqa-kit audit``
wrote before the engine took this over, so older audit folders are reused too.

A record vouches only for the files it saw: it carries the size and sha256 of
the output and of its failures CSV (``"output"``, ``"failures"``), taken right
after the merge under the output's lock. Reuse checks them (and the columns and
row count), so an emptied, truncated, replaced or swapped file is never reused:
it is set aside as ``<name>.mismatch`` with one warning line and scored again.
A record written before these fields existed is checked for what it can be
(readable, the columns and spec of this work, scored plus failed rows = the
manifest's) and, when that holds, upgraded with the files' size and hash.
:func:`verify` does all of this without writing, so a complete output on
read-only storage is reused without a lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from iqa_lib import fileio
from iqa_lib.scoring import logits, parts

# What a record says about the files rather than about the work; old records lack them.
FILE_FACTS = ("output", "failures")
LOGITS_FACTS = "logits_file"  # the same for the logits kept beside the output (when it says so)
MISMATCH = ".mismatch"
_CHUNK = 1 << 20


def scores_version() -> str:
    """The kit's SCORES_VERSION: bumped whenever a code change alters scores."""
    return resources.files("iqa_lib.scorers").joinpath("SCORES_VERSION").read_text().strip()


def record_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}.done.json")


def completion_record(
    spec_text: str, options: Mapping[str, Any], labels: Any, fingerprint: str, rows: int, geometry: str,
    columns: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Everything that changes what a score file holds (``options`` without runtime ones).

    ``columns``: the output's columns, in order, as this work writes them.
    """
    record = {
        "spec": spec_text,
        "options": dict(sorted(options.items())),
        "labels": labels,
        "manifest": fingerprint,
        "rows": rows,
        "geometry": geometry,
        "scores_version": scores_version(),
    }
    if columns is not None:
        record["columns"] = list(columns)
    return json.loads(json.dumps(record, default=str))


def file_facts(path: str | os.PathLike) -> dict[str, Any]:
    """Size and sha256 of the bytes of ``path``: what a record vouches for."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
            size += len(block)
    return {"size": size, "sha256": digest.hexdigest()}


@dataclass(frozen=True)
class Verdict:
    """What :func:`verify` found, without writing anything.

    ``why`` says what differs ("" when there is nothing to say: no record, or
    another work's record); ``suspect`` names the files to set aside, each with
    its suffix (``.damaged``: unreadable; ``.mismatch``: not what the record says).
    """

    complete: bool
    legacy: bool = False  # a record without size and hash, checked as far as it goes
    why: str = ""
    suspect: tuple[tuple[Path, str], ...] = ()


def verify(out: str | os.PathLike, record: Mapping[str, Any]) -> Verdict:
    """Whether ``out`` and its failures CSV are complete for exactly this work; reads only."""
    out, path = Path(out), record_path(out)
    fails = parts.failures_path(out)
    if not (out.is_file() and path.is_file() and fails.is_file()):
        return Verdict(False)
    found, unreadable = _read_record(path)
    if found is None:
        return Verdict(False, why=unreadable)
    if not _same_work(found, record):
        return Verdict(False)  # made by other work: scored again, nothing to say
    legacy = not all(isinstance(found.get(key), dict) for key in FILE_FACTS)
    problems = _shape_problems(out, fails, record)
    if not legacy:
        _add_facts_problems(problems, found, (out, fails))
    if record.get("logits") and out not in problems:
        problems.update(_logits_problems(out, found.get(LOGITS_FACTS)))
    if not problems:
        return Verdict(True, legacy=legacy)
    return _failed(problems, legacy)


def _add_facts_problems(
    problems: dict[Path, tuple[list[str], str]], found: Mapping[str, Any], files: tuple[Path, Path]
) -> None:
    """Then the bytes: the size and sha256 of each file (output, failures) not already found wrong."""
    for key, file in zip(FILE_FACTS, files, strict=True):
        if file not in problems:
            problems.update(_facts_problems(file, found[key]))


def _failed(problems: dict[Path, tuple[list[str], str]], legacy: bool) -> Verdict:
    """The verdict on files found wrong: what each says, and the suffix each is set aside with."""
    why = "; ".join(f"{str(file)!r} {', '.join(said)}" for file, (said, _) in problems.items())
    return Verdict(False, legacy=legacy, why=why,
                   suspect=tuple((file, suffix) for file, (_, suffix) in problems.items()))


def _read_record(path: Path) -> tuple[dict[str, Any] | None, str]:
    """A completion record, or (None) why it cannot be read as a JSON object."""
    try:
        found = json.loads(path.read_text())
        if not isinstance(found, dict):
            raise ValueError(f"a JSON {type(found).__name__}, not an object")
    except (OSError, ValueError) as exc:
        return None, f"completion record {str(path)!r} is unreadable ({parts.unreadable_reason(exc)})"
    return found, ""


def _same_work(found: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """Whether a record found on disk is this work's (its file facts aside; an older record
    without ``columns`` is compared without them)."""
    expected = json.loads(json.dumps(dict(record)))
    if "columns" not in found:  # a record older than the columns it vouches for
        expected.pop("columns", None)
    return {k: v for k, v in found.items() if k not in (*FILE_FACTS, LOGITS_FACTS)} == expected


def _shape_problems(out: Path, fails: Path, record: Mapping[str, Any]) -> dict[Path, tuple[list[str], str]]:
    """The output's columns, spec and rows (scored + failed) against this work's: cheap, from metadata."""
    try:
        meta = pq.read_metadata(out)
        columns = list(meta.schema.to_arrow_schema().names)
        spec = parts.read_score_metadata(out).get("spec")
    except (OSError, ValueError) as exc:
        return {out: ([f"is unreadable ({parts.unreadable_reason(exc)})"], parts.DAMAGED)}
    try:
        failed = len(pd.read_csv(fails))
    except (OSError, ValueError) as exc:
        return {fails: ([f"is unreadable ({parts.unreadable_reason(exc)})"], parts.DAMAGED)}
    said = []
    wanted = record.get("columns")
    if wanted is not None and columns != list(wanted):
        said.append(f"has columns {columns}, this work writes {list(wanted)}")
    if spec != record.get("spec"):
        said.append(f"was written by scorer {spec!r}, not {record.get('spec')!r}")
    if meta.num_rows + failed != int(record.get("rows", -1)):
        said.append(f"holds {meta.num_rows} scored + {failed} failed rows, the manifest has {record.get('rows')}")
    return {out: (said, MISMATCH)} if said else {}


def _logits_problems(out: Path, facts: Mapping[str, Any] | None) -> dict[Path, tuple[list[str], str]]:
    """The logits kept beside ``out``: present, of its row count, and the bytes the record saw."""
    path = logits.logits_path(out)
    if not path.is_file():
        return {out: ([f"has no logits in {str(path)!r} although its record says they were kept"], MISMATCH)}
    try:
        logits.read_logits(out, pq.read_metadata(out).num_rows)
    except ValueError as exc:
        return {path: ([str(exc)], MISMATCH)}
    if facts is None:
        return {out: ([f"has a record that does not vouch for its logits {str(path)!r}"], MISMATCH)}
    return _facts_problems(path, facts)


def _facts_problems(file: Path, facts: Mapping[str, Any]) -> dict[Path, tuple[list[str], str]]:
    """Size, then sha256, of ``file`` against the record's."""
    try:
        have = file_facts(file)
    except OSError as exc:
        return {file: ([f"is unreadable ({parts.unreadable_reason(exc)})"], parts.DAMAGED)}
    if have["size"] != facts.get("size"):
        return {file: ([f"is {have['size']} bytes, its record says {facts.get('size')}"], MISMATCH)}
    if have["sha256"] != facts.get("sha256"):
        return {file: (["has other content than its record vouches for (sha256 differs)"], MISMATCH)}
    return {}


def is_complete(
    out: str | os.PathLike, record: Mapping[str, Any], warn: Callable[[str], Any] | None = None
) -> bool:
    """Whether ``out`` (and its failures CSV) are complete for this work; called under the output's lock.

    A record that cannot be read is a stale record (scored again, with a
    warning naming it); a file that cannot be read is set aside as
    ``<name>.damaged``, one that differs from its record as ``<name>.mismatch``,
    with one warning line, and scored again. A record of the old format whose
    files pass every check but the hash is upgraded with their size and hash.
    """
    warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
    out = Path(out)
    verdict = verify(out, record)
    if verdict.complete:
        if verdict.legacy:
            mark_complete(out, record)
            warn(f"note: completion record {str(record_path(out))!r} had no size or hash; {str(out)!r} "
                 "has this work's columns, spec and rows: the record now vouches for its bytes")
        return True
    if verdict.why:
        moved = [parts.set_aside(file, suffix) for file, suffix in verdict.suspect]
        aside = f": set aside as {', '.join(repr(str(m)) for m in moved)}" if moved else ""
        warn(f"warning: {verdict.why}{aside}; scoring {str(out)!r} again")
    return False


def mark_complete(out: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Write the record with the size and hash of the files it vouches for, atomically.

    Called right after the merge, under the output's lock; a write fault is a
    one-line WriteError.
    """
    out = Path(out)
    facts = {"output": file_facts(out), "failures": file_facts(parts.failures_path(out))}
    if record.get("logits"):
        facts[LOGITS_FACTS] = file_facts(logits.logits_path(out))
    path = record_path(out)
    fileio.write_json({**dict(record), **facts}, path)
    return path


def forget_complete(out: str | os.PathLike) -> None:
    """Remove the record before the output is rewritten: a kill mid-run must not look complete."""
    path = record_path(out)
    with fileio.writing(path):
        path.unlink(missing_ok=True)
