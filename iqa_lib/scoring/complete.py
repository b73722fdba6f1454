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

from iqa_lib.scorers.spec import ScorerSpec


def record_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}.done.json")


def completion_record(
    spec: ScorerSpec, manifest_path: str | os.PathLike, manifest: pd.DataFrame, geometry: str
) -> dict[str, Any]:
    """Everything that changes what a score file holds, the label space included.

    The label space (ImageNet, own classes, a class map's content, prompt names)
    is resolved as the engine will resolve it, so editing a class-map file or
    renaming a class folder makes the file stale.
    """
    from iqa_lib.audit.reference import scores_version
    from iqa_lib.data.manifest import UNLABELLED, manifest_classes, manifest_classnames
    from iqa_lib.scorers.label_space import resolve_label_space
    from iqa_lib.scoring.engine import RUNTIME_OPTIONS, manifest_fingerprint

    unlabelled = bool((manifest["label"].to_numpy() == UNLABELLED).all())
    space = resolve_label_space(
        spec, manifest_classes(manifest_path), manifest_classnames(manifest_path), unlabelled
    )
    options = {k: v for k, v in sorted(spec.options.items()) if k not in RUNTIME_OPTIONS}
    return json.loads(json.dumps({
        "spec": spec.text,
        "options": options,
        "labels": space.resume_key(),
        "manifest": manifest_fingerprint(manifest),
        "rows": len(manifest),
        "geometry": geometry,
        "scores_version": scores_version(),
    }, default=str))


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
