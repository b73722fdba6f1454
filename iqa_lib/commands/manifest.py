"""``iqa-kit manifest``: one row per image to score, from folders, lists, shards or params.yaml."""

from __future__ import annotations

import argparse
from functools import partial

from iqa_lib.commands.arguments import add_max_pixels, apply_max_pixels


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
    from iqa_lib.commands.corrupt import check_positive
    from iqa_lib.locks import output_lock

    check_positive("--workers", args.workers)
    apply_max_pixels(args)
    source = getattr(args, "source", None)
    if source is not None:
        if args.clean or args.imagenet_c:
            raise ValueError("--source takes the whole dataset; give it without --clean/--imagenet-c")
        if args.out is None:
            raise ValueError("--out is required with --source")
        build = partial(_from_source, args, source)
        out = args.out
    elif args.clean or args.imagenet_c:
        if args.out is None:
            raise ValueError("--out is required when --clean or --imagenet-c is given")
        out = args.out
        build = partial(
            _build, args, args.clean, args.labels_file, args.imagenet_c, args.check or "full", None, None
        )
    else:
        from iqa_lib.config import MANIFEST_PATH, load_params

        data = load_params(args.params).data
        apply_max_pixels(args, data.max_pixels)
        out = args.out or MANIFEST_PATH
        build = partial(
            _build, args, data.clean_dir, data.clean_labels, data.imagenet_c_dir,
            args.check or data.check, data.corruptions, data.severities,
        )
    # one writer per manifest, taken before the scan so that a second run fails at once
    with output_lock(out, wait=getattr(args, "wait", False)):
        return _write(build(), out)


def _from_source(args: argparse.Namespace, source: str):
    from iqa_lib.data.sources import dataset_manifest

    return dataset_manifest(
        source, labels_file=args.labels_file, classnames_file=getattr(args, "classnames", None),
        check=args.check or "full", workers=args.workers,
        cls_labels=getattr(args, "cls_labels", "imagenet"),
    )


def _build(args: argparse.Namespace, clean, labels, imagenet_c, check, corruptions, severities):
    from iqa_lib.data.assemble import build_manifest

    return build_manifest(
        clean, imagenet_c, labels_file=labels, check=check, workers=args.workers,
        corruptions=corruptions, severities=severities,
        classnames_file=getattr(args, "classnames", None),
    )


def _write(result, out: str) -> int:
    from pathlib import Path

    from iqa_lib.data.manifest import failures_path, summarize, write_manifest

    path = write_manifest(result, out)
    print(summarize(result.manifest).to_string(index=False))
    if result.classes is not None:
        print(f"own classes: {len(result.classes)} ({', '.join(result.classes[:5])}"
              f"{', ...' if len(result.classes) > 5 else ''})")
    print(f"wrote {len(result.manifest)} rows to {path}")
    if len(result.failures):
        print(f"left out {len(result.failures)} undecodable image(s); reasons in {failures_path(Path(out))}")
    return 0
