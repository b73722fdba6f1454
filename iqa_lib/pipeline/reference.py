"""The ``reference`` stage: a scorer's reference distributions (clean ImageNet and ImageNet-C) for audits.

Score a labelled reference manifest (or take an existing score file of one), check that
its scores were made by this scorer and geometry on ImageNet-labelled images, and write
the reference file (:mod:`iqa_lib.audit.reference`) named after the spec: Q per group.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from iqa_lib.audit.reference import (
    ReferenceError,
    check_reference_scores,
    reference_from_scores,
    scorer_identity,
    spec_slug,
    write_reference,
)
from iqa_lib.fileio import atomic_write_with, writing
from iqa_lib.scorers.spec import ScorerSpec, parse_spec
from iqa_lib.scoring.engine import score_manifest
from iqa_lib.scoring.logits import forget_logits, logits_path, read_logits
from iqa_lib.scoring.parts import read_score_metadata


@dataclass(frozen=True)
class ReferenceSettings:
    """Which scorer, from which images, into which folder: ``iqa-kit reference``'s options.

    Exactly one of ``manifest`` (a labelled manifest with clean and ImageNet-C rows, to
    score) and ``scores`` (an existing score file of this scorer on such a manifest).
    """

    spec: str | Mapping[str, Any] | ScorerSpec
    out_dir: str | os.PathLike  # the reference folder; the file is named after the spec
    manifest: str | os.PathLike | None = None
    scores: str | os.PathLike | None = None
    made_from: str | None = None  # one line saying which images (kept in the file)
    geometry: str = "resize_crop"
    device: str = "auto"
    batch_size: int | None = None
    num_workers: int | None = None
    progress: bool = True


def build_reference(settings: ReferenceSettings) -> Path:
    """Write ``<out_dir>/<spec slug>.parquet`` and return its path."""
    spec = settings.spec if isinstance(settings.spec, ScorerSpec) else parse_spec(settings.spec)
    out_dir = Path(settings.out_dir)
    scores = _score_file(settings, spec, out_dir)
    check_reference_scores(read_score_metadata(scores), spec, settings.geometry, scores)
    frame = pd.read_parquet(scores)
    tidy = reference_from_scores(frame)
    out = write_reference(tidy, _info(settings, spec, frame, scores), out_dir / f"{spec_slug(spec.text)}.parquet")
    if read_logits(scores, len(frame)) is not None:  # the audit's COT/MaNo/nuclear norm fit on them
        with writing(logits_path(out).parent):
            logits_path(out).parent.mkdir(exist_ok=True)
        atomic_write_with(logits_path(out), lambda tmp: shutil.copyfile(logits_path(scores), tmp))
    else:
        forget_logits(out)  # an earlier reference's logits would not match these rows
    return out


def _score_file(settings: ReferenceSettings, spec: ScorerSpec, out_dir: Path) -> Path:
    """The score file to make the reference from: the one given, or the manifest scored into the folder."""
    if (settings.manifest is None) == (settings.scores is None):
        raise ReferenceError("give a reference manifest to score or an existing score file, not both")
    scores = settings.scores
    if settings.manifest is not None:
        scores = out_dir / "scores" / f"{spec_slug(spec.text)}.parquet"
        score_manifest(spec, settings.manifest, scores, batch_size=settings.batch_size,
                       num_workers=settings.num_workers, device=settings.device,
                       progress=settings.progress, geometry=settings.geometry)
    scores = Path(scores)
    if not scores.is_file():
        raise FileNotFoundError(f"score file {str(scores)!r} does not exist")
    return scores


def _info(settings: ReferenceSettings, spec: ScorerSpec, frame: pd.DataFrame, scores: Path) -> dict[str, Any]:
    """What made the reference: the scorer's identity, the images and the command, kept in the file."""
    images = int(frame["image_id"].nunique())
    return scorer_identity(spec.text, spec.options, settings.geometry) | {
        "label_space": "none" if spec.kind == "nr_iqa" else "imagenet",
        "made_from": settings.made_from or f"{images} images of {scores}",
        "images": images,
        "groups": int(len(frame.groupby(["corruption", "severity"]).size())),
        "rows": int(len(frame)),
        "command": "iqa-kit " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None,
    }
