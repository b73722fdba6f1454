"""``iqa-kit audit``: a user's own images in, a summary and a report a colleague can open out.

One call does manifest -> score (one file per scorer, resumable, and reused
whole when nothing that changes it has changed) -> summary.json -> report.html.
The output folder::

    DIR/manifest.parquet, DIR/manifest.failures.csv   the images, and the ones that could not be read
    DIR/scores/<name>.parquet (+ .failures.csv, .done.json)
    DIR/summary.json                                   per scorer and Q variable (see .summary); on top,
                                                       ``headline`` and ``caveat`` (see .headline)
    DIR/audit.ipynb, DIR/report.html                   the executed report notebook, self-contained HTML
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from iqa_lib.audit.reference import Reference, find_reference, scorer_identity, spec_slug
from iqa_lib.audit.summary import annotate_closest, summarise_scorer, summary_path
from iqa_lib.scorers.spec import ScorerSpec, SpecError, parse_spec

SCORES = "scores"
MANIFEST = "manifest.parquet"
REPORT_NOTEBOOK = "audit.ipynb"
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")


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


def _label_space(meta: Mapping[str, Any], kind: str | None) -> str:
    """Over which classes a score file's confidences are: a reference must share them.

    No-reference scores have none. A classifier's q_p, q_h, q_l are over the
    1000 ImageNet classes unless a class map restricted them (an own head is
    told apart by its ``weights`` option, part of the identity already); ZSCLIP's
    are over the names it prompted with: ImageNet's unless the data has its own.
    """
    if kind == "nr_iqa":
        return "none"
    space = meta.get("label_space") or "imagenet"
    if space == "class_map" or (kind == "zero_shot" and space not in ("imagenet", "unlabelled")):
        return str(space)
    return "imagenet"


def reference_identity(spec: ScorerSpec, meta: Mapping[str, Any], geometry: str) -> dict[str, Any]:
    return scorer_identity(spec.text, spec.options, geometry) | {
        "label_space": _label_space(meta, meta.get("kind") or spec.kind)
    }


def run_audit(
    source: str | os.PathLike,
    scorers: Sequence[str | Mapping[str, Any]] | Mapping[str, ScorerSpec],
    out_dir: str | os.PathLike,
    *,
    labels_file: str | os.PathLike | None = None,
    classnames_file: str | os.PathLike | None = None,
    check: str = "full",
    geometry: str = "resize_crop",
    device: str = "auto",
    batch_size: int | None = None,
    num_workers: int | None = None,
    reference_dirs: Iterable[str | os.PathLike] = (),
    report: bool = True,
    progress: bool = True,
    wait: bool = False,
) -> AuditResult:
    """Audit the images of ``source`` (folder, CSV/Parquet list, or WebDataset shards).

    One audit writes a folder at a time: a second one on the same ``out_dir`` is
    refused naming the first (or waits for it with ``wait``).
    """
    from iqa_lib.device import pick_device
    from iqa_lib.locks import output_lock

    specs = scorers if isinstance(scorers, Mapping) else named_specs(scorers)
    pick_device(device)  # a device this machine lacks fails now, not after the scan
    out = Path(out_dir)
    reference_dirs = list(reference_dirs)
    for folder in reference_dirs:
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"reference folder {str(folder)!r} does not exist")
    with output_lock(out, wait=wait):
        return _audit(source, specs, out, labels_file, classnames_file, check, geometry, device,
                      batch_size, num_workers, reference_dirs, report, progress)


def _audit(
    source: str | os.PathLike,
    specs: Mapping[str, ScorerSpec],
    out: Path,
    labels_file: str | os.PathLike | None,
    classnames_file: str | os.PathLike | None,
    check: str,
    geometry: str,
    device: str,
    batch_size: int | None,
    num_workers: int | None,
    reference_dirs: list[str | os.PathLike],
    report: bool,
    progress: bool,
) -> AuditResult:
    from iqa_lib.data.manifest import failures_path, read_manifest, write_manifest
    from iqa_lib.data.sources import dataset_manifest
    from iqa_lib.fileio import atomic_write_text
    from iqa_lib.scoring.engine import run_scoring

    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    result = dataset_manifest(
        source, labels_file=labels_file, classnames_file=classnames_file, check=check, progress=progress
    )
    write_manifest(result, manifest_path)
    manifest = read_manifest(manifest_path)
    _say(f"audit: {len(manifest)} image(s) from {source}" + (
        f"; {len(result.failures)} could not be read (see {failures_path(manifest_path)})" if len(result.failures) else ""
    ))
    done = AuditResult(out, {})
    (out / SCORES).mkdir(exist_ok=True)
    for name, spec in specs.items():
        score_path = out / SCORES / f"{name}.parquet"
        started = time.perf_counter()
        # the engine reuses a complete file made by this very work (its .done.json record)
        scored = run_scoring(
            spec, manifest_path, score_path, batch_size=batch_size, num_workers=num_workers,
            device=device, progress=progress, geometry=geometry,
        )
        if scored.reused:
            _say(f"audit: {name}: reusing {score_path} (same images, spec and code)")
            done.reused.append(name)
            continue
        done.scored.append(name)
        _say(f"audit: {name}: scored in {time.perf_counter() - started:.1f} s -> {score_path}")
    done.summary = build_summary(out, specs, geometry, reference_dirs, source=str(source))
    atomic_write_text(summary_path(out), json.dumps(_finite(done.summary), indent=1, allow_nan=False,
                                                    default=_json_default))
    if report:
        done.report = render_report(out)
        _say(f"audit: report {done.report}")
    return done


def build_summary(
    out: Path,
    specs: Mapping[str, ScorerSpec],
    geometry: str,
    reference_dirs: Sequence[str | os.PathLike],
    source: str,
) -> dict[str, Any]:
    """summary.json's content, from the files in ``out``."""
    from iqa_lib.data.manifest import failures_path, manifest_classes, read_manifest
    from iqa_lib.scoring.parts import failures_path as score_failures_path
    from iqa_lib.scoring.parts import read_score_metadata

    manifest_path = out / MANIFEST
    manifest = read_manifest(manifest_path)
    classes = manifest_classes(manifest_path)
    labelled = bool((manifest["label"] >= 0).all())
    failures = pd.read_csv(failures_path(manifest_path))
    summary: dict[str, Any] = {
        "dataset": {
            "source": source,
            "images": int(len(manifest)),
            "unreadable": int(len(failures)),
            "labels": "own classes" if classes is not None else ("ImageNet" if labelled else "none"),
            "classes": classes,
            "geometry": geometry,
        },
        "scorers": {},
    }
    for name, spec in specs.items():
        path = out / SCORES / f"{name}.parquet"
        scores = pd.read_parquet(path)
        meta = read_score_metadata(path)
        identity = reference_identity(spec, meta, geometry)
        references: dict[str, tuple[Reference | None, str]] = {}
        if identity["label_space"] in ("none", "imagenet"):
            ref, why = find_reference(identity, reference_dirs)
        else:
            ref, why = None, (
                f"confidences over this dataset's own classes ({identity['label_space']}) have no "
                "ImageNet reference to compare with; the accuracy below is what they tell"
            )
        for variable in ("q", "q_p", "q_h", "q_l"):
            references[variable] = (ref, why)
        entry = summarise_scorer(name, scores, meta, references)
        entry["file"] = f"{SCORES}/{path.name}"
        entry["failures"] = int(len(pd.read_csv(score_failures_path(path))))
        summary["scorers"][name] = entry
    from iqa_lib.audit.headline import CAVEAT, headline

    levels = annotate_closest(summary["scorers"])
    summary = {"closest_severity_from_confidence": levels} | summary
    return {"headline": headline(summary), "caveat": CAVEAT} | summary


def render_report(out: Path) -> Path:
    """Execute the report notebook on ``out`` and export it as self-contained, offline HTML."""
    from iqa_lib.pipeline.notebook_runner import run_notebook
    from iqa_lib.presentation.html_export import export_offline_html

    notebook = report_notebook()
    executed = run_notebook(notebook, out, parameters={"audit_dir": str(out.resolve())}, html=False)
    return export_offline_html(executed, out / "report.html")


def report_notebook() -> Path:
    """``notebooks/audit.ipynb`` of the repository the package is installed from."""
    path = Path(__file__).resolve().parents[2] / "notebooks" / REPORT_NOTEBOOK
    if not path.is_file():
        raise FileNotFoundError(
            f"the report notebook {path} is missing: iqa-kit audit runs notebooks/{REPORT_NOTEBOOK} "
            "of the iqa-kit checkout it is installed from (pip install -e .); or pass --no-report"
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
