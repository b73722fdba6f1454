"""``iqa-kit manifest``: one row per image to score, from folders, lists, shards or params.yaml.

The stage is :func:`iqa_lib.pipeline.manifest.make_manifest`; this parses its options and prints.
"""

from __future__ import annotations

import argparse

from iqa_lib.commands.arguments import add_max_pixels
from iqa_lib.commands.corrupt import check_positive


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "manifest",
        help="build manifest.parquet from a clean image folder and/or an ImageNet-C tree",
        description="Build the manifest (image_id, label, corruption, severity, path). "
        "Clean images: class sub-folders (wnid-named for ImageNet, or your own class names), "
        "files named <wnid>_<anything>, or a flat folder with --labels-file. ImageNet-C: "
        "<root>/<corruption>/<severity>/<class>/<file>. --source instead takes any one dataset "
        "(a folder, a .csv/.parquet list with a path column, or WebDataset .tar shards) and "
        "writes its clean rows. Undecodable images are left out and listed in "
        "<manifest stem>.failures.csv. Without --clean/--imagenet-c/--source, the data section "
        "of --params is used.",
    )
    parser.add_argument("--clean", help="folder of clean labelled images")
    parser.add_argument("--labels-file", help="labels for a flat clean folder: '<file> <wnid|label>' lines")
    parser.add_argument("--imagenet-c", help="root of an ImageNet-C tree")
    parser.add_argument(
        "--source",
        help="one dataset, clean rows only: a folder (a flat folder without labels gives an "
        "unlabelled manifest), a .csv/.tsv/.parquet list (path, optional label and image_id "
        "columns), a .tar shard, a folder of .tar shards, or a pattern like "
        "'shards/train-{000000..000009}.tar'",
    )
    parser.add_argument(
        "--classnames",
        help="readable names of your own classes: one per line in class order, or "
        "'<folder>,<name>' lines (not for ImageNet labels)",
    )
    parser.add_argument(
        "--cls-labels",
        choices=("imagenet", "own"),
        default="imagenet",
        help="with --source shards: .cls integers are ImageNet indices 0-999 (default) or your "
        "own class indices",
    )
    parser.add_argument("--out", help="manifest path (default with --params: data/manifest.parquet)")
    parser.add_argument(
        "--check",
        choices=("full", "header", "none"),
        help="decode every image (full), read headers only (header, for millions of files), or "
        "trust the files (none); default: data.check of --params, else full",
    )
    parser.add_argument("--workers", type=int, default=None, help="processes for checking (default: all cores)")
    add_max_pixels(parser)
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: %(default)s)")
    parser.add_argument(
        "--wait", action="store_true",
        help="when another run is writing the same manifest, wait for it to finish instead of failing",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # the stage imports pandas, pyarrow and pydantic: kept off the parser's start-up path
    from iqa_lib.pipeline.manifest import make_manifest

    check_positive("--workers", args.workers)
    written = make_manifest(_settings(args))
    result = written.result
    print(written.summary.to_string(index=False))
    if result.classes is not None:
        print(f"own classes: {len(result.classes)} ({', '.join(result.classes[:5])}"
              f"{', ...' if len(result.classes) > 5 else ''})")
    print(f"wrote {len(result.manifest)} rows to {written.path}")
    if len(result.failures):
        print(f"left out {len(result.failures)} undecodable image(s); reasons in {written.failures}")
    return 0


def _settings(args: argparse.Namespace):
    """The stage's settings: ``--source``, else ``--clean``/``--imagenet-c``, else ``--params``."""
    # pydantic and pandas come with the stage's settings: kept off the parser's start-up path
    from iqa_lib.pipeline.manifest import ManifestSettings, params_settings

    common = dict(workers=args.workers, classnames=getattr(args, "classnames", None),
                  max_pixels=getattr(args, "max_pixels", None), wait=getattr(args, "wait", False))
    source = getattr(args, "source", None)
    if source is not None:
        if args.clean or args.imagenet_c:
            raise ValueError("--source takes the whole dataset; give it without --clean/--imagenet-c")
        if args.out is None:
            raise ValueError("--out is required with --source")
        return ManifestSettings(out=args.out, source=source, labels_file=args.labels_file,
                                cls_labels=getattr(args, "cls_labels", "imagenet"),
                                check=args.check or "full", **common)
    if args.clean or args.imagenet_c:
        if args.out is None:
            raise ValueError("--out is required when --clean or --imagenet-c is given")
        return ManifestSettings(out=args.out, clean=args.clean, imagenet_c=args.imagenet_c,
                                labels_file=args.labels_file, check=args.check or "full", **common)
    return params_settings(args.params, out=args.out, check=args.check, **common)
