"""The ``audit`` stage: a user's own images in, a summary and a report a colleague can open out.

One call does manifest -> score (one file per scorer, resumable, and reused
whole when nothing that changes it has changed) -> summary.json -> report.html.
The numbers come from :mod:`iqa_lib.audit`; this module reads and writes the folder::

    DIR/manifest.parquet, DIR/manifest.failures.csv   the images, and the ones that could not be read
    DIR/scores/<name>.parquet (+ .failures.csv, .done.json)
    DIR/summary.json                                   per scorer and Q variable (see iqa_lib.audit.summary);
                                                       on top, ``headline`` and ``caveat`` (iqa_lib.audit.headline)
    DIR/audit.ipynb, DIR/report.html                   the executed report notebook, self-contained HTML
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from iqa_lib.audit.headline import CAVEAT, headline
from iqa_lib.audit.reference import Q_VARIABLES, matching_reference, reference_identity, spec_slug
from iqa_lib.audit.summary import annotate_closest, summarise_scorer, summary_path
from iqa_lib.data.manifest import failures_path, manifest_classes, read_manifest, write_manifest
from iqa_lib.data.sources import dataset_manifest
from iqa_lib.device import pick_device
from iqa_lib.fileio import atomic_write_text
from iqa_lib.locks import output_lock
from iqa_lib.pipeline.notebook_runner import run_notebook
from iqa_lib.presentation.html_export import export_offline_html
from iqa_lib.scorers.spec import ScorerSpec, SpecError, parse_spec
from iqa_lib.scoring.engine import run_scoring
from iqa_lib.scoring.logits import read_logits
from iqa_lib.scoring.parts import failures_path as score_failures_path
from iqa_lib.scoring.parts import read_score_metadata

SCORES = "scores"
MANIFEST = "manifest.parquet"
REPORT_NOTEBOOK = "audit.ipynb"
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class AuditSettings:
    """What an audit reads, how it scores and what it writes: ``iqa-kit audit``'s options."""

    source: str | os.PathLike  # a folder, a CSV/Parquet list, or WebDataset shards
    # ``NAME=SPEC`` strings, bare specs or spec mappings (see :func:`named_specs`), or named specs
    scorers: Sequence[str | Mapping[str, Any]] | Mapping[str, ScorerSpec]
    out_dir: str | os.PathLike
    labels_file: str | os.PathLike | None = None
    classnames_file: str | os.PathLike | None = None
    check: str = "full"  # how hard the manifest checks each image: full, header, none
    geometry: str = "resize_crop"
    device: str = "auto"
    batch_size: int | None = None
    num_workers: int | None = None
    reference_dirs: Sequence[str | os.PathLike] = ()  # searched before the shipped references
    report: bool = True
    progress: bool = True
    wait: bool = False  # wait for another audit writing ``out_dir`` instead of stopping


@dataclass
class AuditResult:
    out_dir: Path
    summary: dict[str, Any]
    scored: list[str] = field(default_factory=list)  # scorer names scored in this run
    reused: list[str] = field(default_factory=list)  # scorer names whose finished file was reused
    report: Path | None = None


def named_specs(specs: Sequence[str | Mapping[str, Any]]) -> dict[str, ScorerSpec]:
    """``NAME=SPEC`` or a bare spec (named after it) -> {name: parsed spec}; names must be unique."""
    out: dict[str, ScorerSpec] = {}
    for item in specs:
        name = None
        if isinstance(item, str) and "=" in item and not item.lstrip().startswith("{"):
            name, _, item = item.partition("=")
            name = name.strip()
            if not NAME_RE.match(name):
                raise SpecError(f"scorer name {name!r} (before '=') must start with a letter: letters, digits, _ . -")
        parsed = parse_spec(item)
        name = name or spec_slug(parsed.text)
        if name in out:
            raise SpecError(
                f"two scorers are both named {name!r}; name them with NAME=SPEC, e.g. "
                f"--scorer {name}-2={parsed.text}"
            )
        out[name] = parsed
    if not out:
        raise SpecError("give at least one --scorer SPEC")
    return out


def run_audit(settings: AuditSettings) -> AuditResult:
    """Audit the images of ``settings.source`` into ``settings.out_dir``.

    One audit writes a folder at a time: a second one on the same folder is
    refused naming the first (or waits for it with ``wait``).
    """
    scorers = settings.scorers
    specs = scorers if isinstance(scorers, Mapping) else named_specs(scorers)
    pick_device(settings.device)  # a device this machine lacks fails now, not after the scan
    out = Path(settings.out_dir)
    for folder in settings.reference_dirs:
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"reference folder {str(folder)!r} does not exist")
    with output_lock(out, wait=settings.wait):
        return _audit(settings, specs, out)


def _audit(settings: AuditSettings, specs: Mapping[str, ScorerSpec], out: Path) -> AuditResult:
    out.mkdir(parents=True, exist_ok=True)
    _write_manifest(settings, out / MANIFEST)
    done = AuditResult(out, {})
    (out / SCORES).mkdir(exist_ok=True)
    for name, spec in specs.items():
        _score(settings, name, spec, out, done)
    done.summary = build_summary(out, specs, settings.geometry, settings.reference_dirs,
                                 source=str(settings.source))
    atomic_write_text(summary_path(out), json.dumps(_finite(done.summary), indent=1, allow_nan=False,
                                                    default=_json_default))
    if settings.report:
        done.report = render_report(out)
        _say(f"audit: report {done.report}")
    return done


def _write_manifest(settings: AuditSettings, manifest_path: Path) -> None:
    """The manifest of the images to audit, and a line saying how many could not be read."""
    result = dataset_manifest(
        settings.source, labels_file=settings.labels_file, classnames_file=settings.classnames_file,
        check=settings.check, progress=settings.progress,
    )
    write_manifest(result, manifest_path)
    manifest = read_manifest(manifest_path)
    _say(f"audit: {len(manifest)} image(s) from {settings.source}" + (
        f"; {len(result.failures)} could not be read (see {failures_path(manifest_path)})" if len(result.failures) else ""
    ))


def _score(settings: AuditSettings, name: str, spec: ScorerSpec, out: Path, done: AuditResult) -> None:
    """Score the manifest with one scorer, or reuse its finished file; noted in ``done``."""
    score_path = out / SCORES / f"{name}.parquet"
    started = time.perf_counter()
    # the engine reuses a complete file made by this very work (its .done.json record); task
    # models keep their logits (2 KB an image) for the estimators that need the whole softmax
    scored = run_scoring(
        spec, out / MANIFEST, score_path, batch_size=settings.batch_size, num_workers=settings.num_workers,
        device=settings.device, progress=settings.progress, geometry=settings.geometry, keep_logits=True,
    )
    if scored.reused:
        _say(f"audit: {name}: reusing {score_path} (same images, spec and code)")
        done.reused.append(name)
        return
    done.scored.append(name)
    _say(f"audit: {name}: scored in {time.perf_counter() - started:.1f} s -> {score_path}")


def build_summary(
    out: Path,
    specs: Mapping[str, ScorerSpec],
    geometry: str,
    reference_dirs: Sequence[str | os.PathLike],
    source: str,
) -> dict[str, Any]:
    """summary.json's content, from the files in ``out``."""
    summary: dict[str, Any] = {
        "dataset": _dataset_entry(out / MANIFEST, source, geometry),
        "scorers": {name: _scorer_entry(out, name, spec, geometry, reference_dirs) for name, spec in specs.items()},
    }
    levels = annotate_closest(summary["scorers"])
    summary = {"closest_severity_from_confidence": levels} | summary
    return {"headline": headline(summary), "caveat": CAVEAT} | summary


def _dataset_entry(manifest_path: Path, source: str, geometry: str) -> dict[str, Any]:
    """summary.json's ``dataset``: where the images came from, how many, and their labels."""
    manifest = read_manifest(manifest_path)
    classes = manifest_classes(manifest_path)
    labelled = bool((manifest["label"] >= 0).all())
    failures = pd.read_csv(failures_path(manifest_path))
    return {
        "source": source,
        "images": int(len(manifest)),
        "unreadable": int(len(failures)),
        "labels": "own classes" if classes is not None else ("ImageNet" if labelled else "none"),
        "classes": classes,
        "geometry": geometry,
    }


def _scorer_entry(
    out: Path, name: str, spec: ScorerSpec, geometry: str, reference_dirs: Sequence[str | os.PathLike]
) -> dict[str, Any]:
    """One scorer's summary entry, from its score file and the reference that matches it."""
    path = out / SCORES / f"{name}.parquet"
    scores = pd.read_parquet(path)
    meta = read_score_metadata(path)
    found = matching_reference(reference_identity(spec, meta, geometry), reference_dirs)
    entry = summarise_scorer(name, scores, meta, dict.fromkeys(Q_VARIABLES, found), read_logits(path, len(scores)))
    entry["file"] = f"{SCORES}/{path.name}"
    entry["failures"] = int(len(pd.read_csv(score_failures_path(path))))
    return entry


def render_report(out: Path) -> Path:
    """Execute the report notebook on ``out`` and export it as self-contained, offline HTML."""
    notebook = report_notebook()
    executed = run_notebook(notebook, out, parameters={"audit_dir": str(out.resolve())}, html=False)
    return export_offline_html(executed, out / "report.html")


def report_notebook() -> Path:
    """The report notebook, package data of the installed kit (a wheel carries it too)."""
    path = Path(str(resources.files("iqa_lib.resources").joinpath("notebooks", REPORT_NOTEBOOK)))
    if not path.is_file():
        raise FileNotFoundError(
            f"the report notebook {path} is missing from the installed iqa-kit: reinstall it "
            "(pip install iqa-kit, or pip install -e . in a checkout); or pass --no-report"
        )
    return path


def _finite(value: Any) -> Any:
    """NaN and infinities become null: JSON has no NaN, and a reader must not get a fake number."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
