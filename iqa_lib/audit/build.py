"""Building a reference file: score a labelled reference manifest (or take its scores) and keep Q per group."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from iqa_lib.audit.reference import (
    ReferenceError,
    reference_from_scores,
    scorer_identity,
    spec_slug,
    write_reference,
)
from iqa_lib.scorers.spec import ScorerSpec, parse_spec


def build_reference(
    spec: str | Mapping[str, Any] | ScorerSpec,
    out_dir: str | os.PathLike,
    *,
    manifest: str | os.PathLike | None = None,
    scores: str | os.PathLike | None = None,
    made_from: str | None = None,
    geometry: str = "resize_crop",
    device: str = "auto",
    batch_size: int | None = None,
    num_workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Write ``<out_dir>/<spec slug>.parquet`` and return its path."""
    from iqa_lib.scoring.parts import read_score_metadata

    parsed = spec if isinstance(spec, ScorerSpec) else parse_spec(spec)
    out_dir = Path(out_dir)
    if (manifest is None) == (scores is None):
        raise ReferenceError("give a reference manifest to score or an existing score file, not both")
    if manifest is not None:
        from iqa_lib.scoring.engine import score_manifest

        scores = out_dir / "scores" / f"{spec_slug(parsed.text)}.parquet"
        score_manifest(parsed, manifest, scores, batch_size=batch_size, num_workers=num_workers,
                       device=device, progress=progress, geometry=geometry)
    scores = Path(scores)
    if not scores.is_file():
        raise FileNotFoundError(f"score file {str(scores)!r} does not exist")
    meta = read_score_metadata(scores)
    if meta.get("spec") and meta["spec"] != parsed.text:
        raise ReferenceError(f"{str(scores)!r} was made by {meta['spec']!r}, not {parsed.text!r}")
    if meta.get("geometry") and meta["geometry"] != geometry:
        raise ReferenceError(f"{str(scores)!r} was scored with geometry {meta['geometry']!r}, not {geometry!r}")
    space = meta.get("label_space") or "imagenet"
    if parsed.kind != "nr_iqa" and space not in ("imagenet", "unlabelled"):
        raise ReferenceError(
            f"{str(scores)!r} was scored on {space!r} classes; references are made on ImageNet-labelled images"
        )
    frame = pd.read_parquet(scores)
    tidy = reference_from_scores(frame)
    groups = frame.groupby(["corruption", "severity"]).size()
    info = scorer_identity(parsed.text, parsed.options, geometry) | {
        "label_space": "none" if parsed.kind == "nr_iqa" else "imagenet",
        "made_from": made_from or f"{frame['image_id'].nunique()} images of {scores}",
        "images": int(frame["image_id"].nunique()),
        "groups": int(len(groups)),
        "rows": int(len(frame)),
        "command": "iqa-kit " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None,
    }
    return write_reference(tidy, info, out_dir / f"{spec_slug(parsed.text)}.parquet")
