"""A finished score file says what made it, so that rerunning the same work scores nothing.

The engine's parts make an interrupted run resume; once the parts are merged
they are gone, and a plain rerun would score everything again. So the engine
writes a completion record beside the output (``<out stem>.done.json``: spec,
options that change scores, label space, manifest fingerprint, row count,
geometry, SCORES_VERSION) when it finishes, and returns at once when the
record of a rerun matches (:func:`is_complete`); ``resume=False`` /
``--no-resume`` scores again. The record's format is the one ``iqa-kit audit``
wrote before the engine took this over, so older audit folders are reused too.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from iqa_lib.scoring import parts


def scores_version() -> str:
    """The kit's SCORES_VERSION: bumped whenever a code change alters scores."""
    from importlib import resources

    return resources.files("iqa_lib.scorers").joinpath("SCORES_VERSION").read_text().strip()


def record_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}.done.json")


def completion_record(
    spec_text: str, options: Mapping[str, Any], labels: Any, fingerprint: str, rows: int, geometry: str
) -> dict[str, Any]:
    """Everything that changes what a score file holds (``options`` without runtime ones)."""

    return json.loads(json.dumps({
        "spec": spec_text,
        "options": dict(sorted(options.items())),
        "labels": labels,
        "manifest": fingerprint,
        "rows": rows,
        "geometry": geometry,
        "scores_version": scores_version(),
    }, default=str))


def is_complete(
    out: str | os.PathLike, record: Mapping[str, Any], warn: Callable[[str], Any] | None = None
) -> bool:
    """Whether ``out`` (and its failures CSV) exist, are readable and were made by exactly this work.

    A record that cannot be read is a stale record (scored again, with a
    warning naming it); an output that cannot be read is set aside as
    ``<name>.damaged`` and scored again.
    """
    warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
    out, path = Path(out), record_path(out)
    if not (out.is_file() and path.is_file() and parts.failures_path(out).is_file()):
        return False
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        warn(f"warning: completion record {str(path)!r} is unreadable ({parts.unreadable_reason(exc)}); "
             f"scoring {str(out)!r} again")
        return False
    if found != json.loads(json.dumps(dict(record))):
        return False
    try:
        rows = pq.read_metadata(out).num_rows
    except (OSError, ValueError) as exc:
        moved = parts.set_aside(out)
        warn(f"warning: {str(out)!r} is unreadable ({parts.unreadable_reason(exc)}): set aside as "
             f"{str(moved)!r}; scoring it again")
        return False
    return rows <= int(record.get("rows", rows))  # more rows than the manifest: not this work's


def mark_complete(out: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Write the record atomically (a write fault is a one-line WriteError)."""
    path = record_path(out)
    parts.write_json_atomic(dict(record), path)
    return path


def forget_complete(out: str | os.PathLike) -> None:
    """Remove the record before the output is rewritten: a kill mid-run must not look complete."""
    from iqa_lib import fileio

    path = record_path(out)
    with fileio.writing(path):
        path.unlink(missing_ok=True)
