"""The score stage: one scorer of ``params.yaml`` (and the others of its pass) through the engine.

``iqa-kit score`` and ``notebooks/score.ipynb`` (which ``dvc.yaml`` runs as stage ``score@<scorer>``)
both resolve their settings with :func:`options_from_params` and call :func:`score`, so both write
the same file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from iqa_lib.config import MANIFEST_PATH, SCORES_DIR, Params, load_params
from iqa_lib.data.images import set_max_pixels
from iqa_lib.data.manifest import (
    UNLABELLED,
    manifest_classes,
    manifest_classnames,
    read_manifest,
    write_unlabelled_manifest,
)
from iqa_lib.data.scan import images_manifest
from iqa_lib.device import pick_device
from iqa_lib.scorers.base import Scorer
from iqa_lib.scorers.registry import build_scorer
from iqa_lib.scoring import logits
from iqa_lib.scoring.distributed import dist_info
from iqa_lib.scoring.engine import (
    RunSettings,
    ScoringJob,
    ScoringResult,
    run_scoring,
    run_scoring_many,
)
from iqa_lib.scoring.parts import failures_path

RUN_FIELDS = frozenset(f.name for f in fields(RunSettings))


@dataclass(frozen=True)
class PassScorer:
    """Another scorer of the same pass: its name, spec, output, batch size, and whether it is
    optional (scored only when its output is missing or stale; a failure leaves it to its own run)."""

    name: str
    spec: Any
    out: str
    batch_size: int | None
    optional: bool


@dataclass(frozen=True)
class ScoreOptions:
    """What the score stage runs: one scorer, its manifest and output, and how the run goes.

    ``batch_size`` None: the spec's option, else the engine's default for the device.
    ``images``: a folder whose images are scored directly; its unlabelled manifest is
    written to ``manifest`` first.
    """

    name: str
    spec: Any  # the params.yaml entry: a spec string or a mapping with options
    manifest: str
    out: str
    settings: RunSettings = RunSettings(device="auto")
    batch_size: int | None = None
    # other scorers scored in the same pass, one decode for all (``scoring.decode_once``)
    others: tuple[PassScorer, ...] = ()
    max_pixels: int | None = None  # Pillow's bomb limit (``data.max_pixels``); None: as set already
    images: str | None = None
    # every output gets its ``<name>.logits`` folder, info.json only where none were kept: the
    # score stages declare it as a DVC output (runs from params.yaml)
    logits_folders: bool = False

    def with_overrides(self, **overrides: Any) -> ScoreOptions:
        """These options with ``overrides`` (not None) in their place: run settings by their
        field name, the others by theirs."""
        given = {k: v for k, v in overrides.items() if v is not None}
        run = {k: v for k, v in given.items() if k in RUN_FIELDS}
        own = {k: v for k, v in given.items() if k not in RUN_FIELDS}
        return replace(self, settings=replace(self.settings, **run), **own)


def options_from_params(
    name: str, params_file: str = "params.yaml", alone: bool = False, **overrides: Any
) -> ScoreOptions:
    """Scorer ``name`` of ``params_file`` with the scoring section's settings; ``overrides``
    (not None) win, as explicit command-line options do (a ``batch_size`` override is every
    scorer's of the pass).

    ``name`` may list several scorers (``tv,brisque,lite0``): they are scored in
    one pass, each image decoded once. With one name and ``scoring.decode_once``
    (the default) the pass also takes every other configured scorer, optionally:
    the engine scores one only when its output is missing or stale, so the
    first ``score@`` stage of ``dvc repro`` decodes for all of them and the
    later stages find their outputs complete. ``alone`` scores ``name`` only.
    """
    params = load_params(params_file)
    names = _scorer_names(name, params, params_file)
    batch = overrides.get("batch_size")
    first = names[0]
    opts = ScoreOptions(
        name=first,
        spec=params.scorers[first],
        manifest=MANIFEST_PATH,
        out=_score_path(first),
        settings=_run_settings(params),
        batch_size=_batch_size(params, first, batch),
        max_pixels=params.data.max_pixels,
        logits_folders=True,
        others=tuple(
            PassScorer(other, params.scorers[other], _score_path(other), _batch_size(params, other, batch), optional)
            for other, optional in _pass_others(names, params, alone)
        ),
    )
    return opts.with_overrides(**overrides)


def _scorer_names(name: str, params: Params, params_file: str) -> list[str]:
    """The scorers ``name`` lists (``a`` or ``a,b,c``), each one of ``params``, none twice."""
    names = [n.strip() for n in name.split(",") if n.strip()]
    unknown = [n for n in names if n not in params.scorers]
    if not names or unknown:
        raise ValueError(
            f"--from-params {(unknown or [name])[0]!r} is not a scorer of {params_file}; valid "
            f"choices: {', '.join(params.scorers) or '(none configured)'} (several: a,b,c)"
        )
    if len(set(names)) < len(names):
        raise ValueError(f"--from-params {name!r} names a scorer twice")
    return names


def _pass_others(names: list[str], params: Params, alone: bool) -> list[tuple[str, bool]]:
    """The other scorers of the pass and whether each is optional: the named ones are required;
    with one name and ``scoring.decode_once`` every other configured scorer, optionally."""
    if len(names) > 1:
        return [(n, False) for n in names[1:]]
    if params.scoring.decode_once and not alone:
        return [(n, True) for n in params.scorers if n != names[0]]
    return []


def _batch_size(params: Params, name: str, override: int | None) -> int | None:
    """An override, else None when the spec has its own option, else the scoring section's."""
    if override is not None:
        return override
    return None if "batch_size" in params.scorer_spec(name).options else params.scoring.batch_size


def _score_path(name: str) -> str:
    return f"{SCORES_DIR}/{name}.parquet"


def _run_settings(params: Params) -> RunSettings:
    """The scoring section's run settings (and the data section's geometry)."""
    scoring = params.scoring
    return RunSettings(
        device=scoring.device, geometry=params.data.geometry, num_workers=scoring.num_workers,
        part_size=scoring.part_size, part_seconds=scoring.part_seconds, decode_on_device=scoring.decode_on_device,
        keep_logits=scoring.keep_logits,
    )


def score(opts: ScoreOptions) -> list[ScoringResult]:
    """The score stage: a result for ``opts.name``, then one per ``opts.others`` (one decode for all)."""
    set_max_pixels(opts.max_pixels)
    if opts.images is not None:
        pick_device(opts.settings.device)  # a device this machine lacks fails before the scan
        write_unlabelled_manifest(images_manifest(Path(opts.images)), Path(opts.manifest))
    if not opts.others:
        results = [run_scoring(opts.spec, opts.manifest, opts.out, opts.settings, batch_size=opts.batch_size)]
    else:
        jobs = [ScoringJob(opts.spec, opts.out, opts.batch_size)] + [
            ScoringJob(o.spec, o.out, o.batch_size, o.optional) for o in opts.others
        ]
        results = run_scoring_many(jobs, opts.manifest, opts.settings)
    if opts.logits_folders and dist_info().is_main:
        for result in results:
            _declare_logits(result, opts.settings.keep_logits)
    return results


def _declare_logits(result: ScoringResult, asked: bool) -> None:
    """The ``.logits`` folder of a finished output that kept none: info.json says why."""
    if result.dropped or logits.read_logits(result.out, _rows(result.out)) is not None:
        return
    why = result.logits_note if asked else "scoring.keep_logits is false"
    logits.write_not_kept(result.out, why or "no logits were kept")


def _rows(out: Path) -> int:
    return pq.read_metadata(out).num_rows


def summary(results: Sequence[ScoringResult]) -> list[str]:
    """A line per output of the pass (rank 0 only): rows scored and failed, and where the failures
    are; an optional scorer left to its own run has none (the engine said why)."""
    if not dist_info().is_main:
        return []
    lines = []
    for result in results:
        out = Path(result.out)
        if result.dropped:
            continue
        n_rows = len(pd.read_parquet(out, columns=["image_id"]))
        n_fail = len(pd.read_csv(failures_path(out)))
        lines.append(f"{out}: {n_rows} rows scored; {n_fail} failed (see {failures_path(out)})")
        if logits.logits_path(out).is_file():
            lines.append(f"  its logits: {logits.logits_path(out)}")
        elif result.logits_note:
            lines.append(f"  no logits kept: {result.logits_note}")
    return lines


def folder_manifest_path(out: str | Path) -> Path:
    """Where the manifest of a folder scored directly is written: beside the output."""
    out = Path(out)
    return out.with_name(f"{out.stem}.manifest.parquet")


@dataclass(frozen=True)
class ScoreRun:
    """A score run and its output, as the notebook shows it."""

    options: ScoreOptions
    result: ScoringResult

    @property
    def out(self) -> Path:
        return Path(self.result.out)


def score_from_params(name: str, params_file: str = "params.yaml", **overrides: Any) -> ScoreRun:
    """Score scorer ``name`` exactly as ``iqa-kit score --from-params NAME`` does (the notebook's call)."""
    opts = options_from_params(name, params_file, **overrides)
    return ScoreRun(opts, score(opts)[0])


def built_scorer(opts: ScoreOptions, result: ScoringResult) -> Scorer:
    """The scorer the run built; when nothing was left to score (reused output), built on
    the CPU here so that the report still names its weights."""
    if result.scorer is not None:
        return result.scorer
    unlabelled = bool((read_manifest(opts.manifest)["label"] == UNLABELLED).all())
    return build_scorer(opts.spec, "cpu", classes=manifest_classes(opts.manifest),
                        classnames=manifest_classnames(opts.manifest), unlabelled=unlabelled, warn=False)
