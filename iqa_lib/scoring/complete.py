"""A finished score file says what made it, so that rerunning the same work scores nothing.

The engine's parts make an interrupted run resume; once the parts are merged
they are gone, and a plain rerun would score everything again. A completion
record beside the output (``<out stem>.done.json``: spec, options that change
scores, manifest fingerprint, geometry, SCORES_VERSION) lets a caller reuse the
file when every one of those is unchanged, and rescore when any differs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd


def record_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}.done.json")


def completion_record(
    spec_text: str, options: Mapping[str, Any], manifest: pd.DataFrame, geometry: str
) -> dict[str, Any]:
    """Everything that changes what a score file holds."""
    from iqa_lib.audit.reference import scores_version
    from iqa_lib.scoring.engine import RUNTIME_OPTIONS, manifest_fingerprint

    return {
        "spec": spec_text,
        "options": json.loads(
            json.dumps({k: v for k, v in sorted(options.items()) if k not in RUNTIME_OPTIONS}, default=str)
        ),
        "manifest": manifest_fingerprint(manifest),
        "rows": len(manifest),
        "geometry": geometry,
        "scores_version": scores_version(),
    }


def is_complete(out: str | os.PathLike, record: Mapping[str, Any]) -> bool:
    """Whether ``out`` exists and was made by exactly this work."""
    out, path = Path(out), record_path(out)
    if not (out.is_file() and path.is_file()):
        return False
    try:
        return json.loads(path.read_text()) == json.loads(json.dumps(dict(record)))
    except (OSError, ValueError):
        return False


def mark_complete(out: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    path = record_path(out)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(dict(record), indent=1, sort_keys=True))
    os.replace(tmp, path)
    return path
