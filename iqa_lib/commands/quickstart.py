"""``iqa-kit quickstart``: export the bundled photographs as a labelled folder."""

from __future__ import annotations

import argparse

from iqa_lib import imagenet
from iqa_lib.data.quickstart import QUICKSTART_IMAGES, export_quickstart


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "quickstart",
        help="copy the no-download quickstart photographs into a class-folder tree",
        description="Copy natural photographs that ship inside installed packages "
        "(scikit-image, scikit-learn, matplotlib, pyiqa), each labelled with its ImageNet "
        "class, to OUT/<wnid>/<image_id>.<ext>.",
    )
    parser.add_argument("--out", required=True, help="output folder, e.g. data/raw/quickstart")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    written = export_quickstart(args.out)
    names = {q.image_id: imagenet.class_name(imagenet.label_of(q.wnid)) for q in QUICKSTART_IMAGES}
    print(f"wrote {len(written)} quickstart images to {args.out}:")
    for path in written:
        print(f"  {path.parent.name}/{path.name}  ({names.get(path.stem, '?')})")
    return 0
