"""The ``prepare`` stage: make the images ``params.yaml`` asks for (quickstart export, ImageNet-C).

DVC tracks the small stamp file this writes, not the image trees: hashing
millions of images on every ``dvc repro`` would take longer than the work. So
the stamp is written only when the trees are complete: a render missing for
any reason other than an undecodable source fails the stage, and ``dvc repro``
stops there instead of building a manifest with silently fewer rows. Called by
``iqa-kit prepare`` (the dvc stage's command).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from iqa_lib.config import PREPARED_STAMP, DataParams, load_params
from iqa_lib.data.imagenet_c_render import GenerationReport, generate_imagenet_c
from iqa_lib.data.images import set_max_pixels
from iqa_lib.data.quickstart import export_quickstart
from iqa_lib.data.scan import clean_source
from iqa_lib.fileio import atomic_write_text, writing
from iqa_lib.locks import output_lock


@dataclass(frozen=True)
class PrepareSettings:
    """What to prepare (the data section of the params) and how."""

    data: DataParams
    workers: int | None = None  # rendering processes; None: all cores
    max_pixels: int | None = None  # Pillow's decompression-bomb limit; None: data.max_pixels
    stamp: str | os.PathLike = PREPARED_STAMP
    wait: bool = False  # wait for another run writing the same outputs instead of stopping


@dataclass(frozen=True)
class Prepared:
    """What :func:`prepare` made and wrote."""

    stamp: Path
    quickstart: list[Path] | None  # the exported photographs; None when data.clean_root is set
    imagenet_c: GenerationReport | None  # the render; None when nothing was rendered


def prepare_settings(params_file: str | os.PathLike = "params.yaml", **explicit) -> PrepareSettings:
    """The data section of ``params_file`` with the explicit values that are not None
    (``workers``, ``max_pixels``, ``stamp``, ``wait``)."""
    values = {k: v for k, v in explicit.items() if v is not None}
    return PrepareSettings(load_params(params_file).data, **values)


def prepare(settings: PrepareSettings, say: Callable[[str], object] = print) -> Prepared:
    """Export and render what the data section asks for, then write the stamp; ``say`` gets a
    line per step (the command prints them). Renders missing for another reason than an
    undecodable source fail the stage, before the stamp is written."""
    data = settings.data
    set_max_pixels(settings.max_pixels if settings.max_pixels is not None else data.max_pixels)
    with ExitStack() as locks:
        # always in this order (the stamp first), so two waiting runs cannot deadlock
        for target in [settings.stamp, *_outputs(data)]:
            locks.enter_context(output_lock(target, wait=settings.wait))
        quickstart = _export(data, say) if data.uses_quickstart else None
        report = _render(data, settings.workers, say) if data.renders_corruptions else None
        return Prepared(_write_stamp(Path(settings.stamp), data, quickstart, report), quickstart, report)


def _outputs(data: DataParams) -> list[str]:
    """What this run writes, each locked: the quickstart folder, the rendered tree (once each)."""
    outputs = []
    if data.uses_quickstart:
        outputs.append(data.clean_dir)
    if data.renders_corruptions:
        outputs.append(data.imagenet_c_dir)
    seen: set[str] = set()
    return [p for p in outputs if not (os.path.abspath(p) in seen or seen.add(os.path.abspath(p)))]


def _export(data: DataParams, say: Callable[[str], object]) -> list[Path]:
    written = export_quickstart(data.clean_dir)
    say(f"quickstart: {len(written)} images in {data.clean_dir}")
    return written


def _render(data: DataParams, workers: int | None, say: Callable[[str], object]) -> GenerationReport:
    clean, classes = clean_source(data.clean_dir, data.clean_labels)
    report = generate_imagenet_c(
        clean, Path(data.imagenet_c_dir), data.corruptions, data.severities, workers=workers,
        classes=classes,
    )
    say(f"ImageNet-C: {report.written} written, {report.skipped} already there, "
        f"{report.failed} failed ({report.undecodable} of undecodable sources), in {data.imagenet_c_dir}")
    if report.rerendered:
        say(f"ImageNet-C: {report.rerendered} existing output(s) did not decode and were rendered again")
    if report.failed > report.undecodable:
        raise RuntimeError(_missing_renders(report, data.imagenet_c_dir))
    return report


def _missing_renders(report: GenerationReport, tree: str) -> str:
    """Why the stage fails: how many renders failed, the first of them in one line, where all are."""
    failed = report.render_failures
    example = ""
    if failed:
        f = failed[0]
        reason = " ".join(f.reason.split())[:200]  # one line, whatever the exception said
        example = f", e.g. {f.image_id} {f.corruption} {f.severity}: {reason}"
    return (
        f"{report.failed - report.undecodable} render(s) into {tree!r} failed{example} "
        f"(all listed in {str(report.failures_file)!r}); fix the cause and rerun `iqa-kit prepare`: "
        "what is rendered is kept"
    )


def _write_stamp(
    out: Path, data: DataParams, quickstart: list[Path] | None, report: GenerationReport | None
) -> Path:
    """The stamp DVC tracks in place of the images: where they are and what was made."""
    stamp: dict[str, object] = {"clean_root": data.clean_dir, "imagenet_c_root": data.imagenet_c_dir}
    if quickstart is not None:
        stamp["quickstart_images"] = sorted(p.name for p in quickstart)
    if report is not None:
        stamp["imagenet_c"] = {
            "images": int(report.images),
            "corruptions": list(data.corruptions),
            "severities": list(data.severities),
            "failed": int(report.failed),
        }
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(stamp, indent=2) + "\n")
    return out
