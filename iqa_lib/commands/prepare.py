"""``iqa-kit prepare``: make the images params.yaml asks for (quickstart export, ImageNet-C).

DVC tracks the small stamp file this writes, not the image trees: hashing
millions of images on every ``dvc repro`` would take longer than the work. So
the stamp is written only when the trees are complete: a render missing for
any reason other than an undecodable source fails the stage, and ``dvc repro``
stops there instead of building a manifest with silently fewer rows.
"""

from __future__ import annotations

import argparse
import json
import os
from contextlib import ExitStack
from pathlib import Path

from iqa_lib.commands.arguments import add_max_pixels, apply_max_pixels


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="export the quickstart images and render ImageNet-C as params.yaml asks",
        description="Export the quickstart photographs when data.clean_root is null, and render "
        "ImageNet-C from the clean images into data.generated_root when data.imagenet_c_root is "
        "null and data.generate_corruptions is true. Resumable: existing files are kept. Writes "
        "data/prepared.json describing what is there (DVC tracks it instead of the images), "
        "only when every render is there or its source is undecodable; otherwise it fails.",
    )
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=None, help="processes for rendering (default: all cores)")
    add_max_pixels(parser)  # default: data.max_pixels of --params
    parser.add_argument(
        "--wait", action="store_true",
        help="when another run is writing these outputs, wait for it to finish instead of failing",
    )
    parser.set_defaults(func=run)


def _outputs(data) -> list[str]:
    """What this run writes, each locked: the stamp, the quickstart folder, the rendered tree."""
    outputs = []
    if data.uses_quickstart:
        outputs.append(data.clean_dir)
    if data.renders_corruptions:
        outputs.append(data.imagenet_c_dir)
    seen: set[str] = set()
    return [p for p in outputs if not (os.path.abspath(p) in seen or seen.add(os.path.abspath(p)))]


def run(args: argparse.Namespace) -> int:
    from iqa_lib.commands.corrupt import check_positive
    from iqa_lib.config import PREPARED_STAMP, load_params
    from iqa_lib.locks import output_lock

    check_positive("--workers", args.workers)
    data = load_params(args.params).data
    apply_max_pixels(args, data.max_pixels)
    with ExitStack() as locks:
        # always in this order (the stamp first), so two waiting runs cannot deadlock
        for target in [PREPARED_STAMP, *_outputs(data)]:
            locks.enter_context(output_lock(target, wait=getattr(args, "wait", False)))
        return _prepare(args, data, Path(PREPARED_STAMP))


def _prepare(args: argparse.Namespace, data, out: Path) -> int:
    from iqa_lib.data.scan import clean_source
    from iqa_lib.data.quickstart import export_quickstart
    from iqa_lib.fileio import atomic_write_text, writing

    stamp: dict[str, object] = {"clean_root": data.clean_dir, "imagenet_c_root": data.imagenet_c_dir}
    if data.uses_quickstart:
        written = export_quickstart(data.clean_dir)
        print(f"quickstart: {len(written)} images in {data.clean_dir}")
        stamp["quickstart_images"] = sorted(p.name for p in written)
    if data.renders_corruptions:
        from iqa_lib.data.imagenet_c_render import generate_imagenet_c

        clean, classes = clean_source(data.clean_dir, data.clean_labels)
        report = generate_imagenet_c(
            clean, Path(data.imagenet_c_dir), data.corruptions, data.severities, workers=args.workers,
            classes=classes,
        )
        print(f"ImageNet-C: {report.written} written, {report.skipped} already there, "
              f"{report.failed} failed ({report.undecodable} of undecodable sources), in {data.imagenet_c_dir}")
        if report.rerendered:
            print(f"ImageNet-C: {report.rerendered} existing output(s) did not decode and were rendered again")
        if report.failed > report.undecodable:
            failed = report.render_failures
            example = ""
            if failed:
                f = failed[0]
                reason = " ".join(f.reason.split())[:200]  # one line, whatever the exception said
                example = f", e.g. {f.image_id} {f.corruption} {f.severity}: {reason}"
            raise RuntimeError(
                f"{report.failed - report.undecodable} render(s) into {data.imagenet_c_dir!r} failed{example} "
                f"(all listed in {str(report.failures_file)!r}); fix the cause and rerun `iqa-kit prepare`: "
                "what is rendered is kept"
            )
        stamp["imagenet_c"] = {
            "images": int(len(clean)),
            "corruptions": list(data.corruptions),
            "severities": list(data.severities),
            "failed": int(report.failed),
        }
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(stamp, indent=2) + "\n")
    print(f"wrote {out}")
    return 0
