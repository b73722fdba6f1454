"""``iqa-kit prepare``: make the images params.yaml asks for (quickstart export, ImageNet-C).

DVC tracks the small stamp file this writes, not the image trees: hashing
millions of images on every ``dvc repro`` would take longer than the work.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="export the quickstart images and render ImageNet-C as params.yaml asks",
        description="Export the quickstart photographs when data.clean_root is null, and render "
        "ImageNet-C from the clean images into data.generated_root when data.imagenet_c_root is "
        "null and data.generate_corruptions is true. Resumable: existing files are kept. Writes "
        "data/prepared.json describing what is there (DVC tracks it instead of the images).",
    )
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=None, help="processes for rendering (default: all cores)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from iqa_lib.config import PREPARED_STAMP, load_params
    from iqa_lib.data.manifest import clean_source
    from iqa_lib.data.quickstart import export_quickstart

    data = load_params(args.params).data
    stamp: dict[str, object] = {"clean_root": data.clean_dir, "imagenet_c_root": data.imagenet_c_dir}
    if data.uses_quickstart:
        written = export_quickstart(data.clean_dir)
        print(f"quickstart: {len(written)} images in {data.clean_dir}")
        stamp["quickstart_images"] = sorted(p.name for p in written)
    if data.renders_corruptions:
        from iqa_lib.data.corrupt import generate_imagenet_c

        clean, classes = clean_source(data.clean_dir, data.clean_labels)
        report = generate_imagenet_c(
            clean, Path(data.imagenet_c_dir), data.corruptions, data.severities, workers=args.workers,
            classes=classes,
        )
        print(f"ImageNet-C: {report.written} written, {report.skipped} already there, "
              f"{report.failed} failed, in {data.imagenet_c_dir}")
        stamp["imagenet_c"] = {
            "images": int(len(clean)),
            "corruptions": list(data.corruptions),
            "severities": list(data.severities),
            "failed": int(report.failed),
        }
    out = Path(PREPARED_STAMP)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(stamp, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0
