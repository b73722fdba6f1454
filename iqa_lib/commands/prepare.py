"""``iqa-kit prepare``: make the images params.yaml asks for (quickstart export, ImageNet-C).

The stage is :func:`iqa_lib.pipeline.prepare.prepare`; this parses its options and prints.
"""

from __future__ import annotations

import argparse

from iqa_lib.commands.arguments import add_max_pixels
from iqa_lib.commands.corrupt import check_positive


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


def run(args: argparse.Namespace) -> int:
    # the stage imports pandas, Pillow and pydantic: kept off the parser's start-up path
    from iqa_lib.pipeline.prepare import prepare, prepare_settings

    check_positive("--workers", args.workers)
    settings = prepare_settings(
        args.params, workers=args.workers, max_pixels=getattr(args, "max_pixels", None),
        wait=getattr(args, "wait", False),
    )
    prepared = prepare(settings, say=print)
    print(f"wrote {prepared.stamp}")
    return 0
