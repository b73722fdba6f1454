"""``iqa-kit reference``: a scorer's reference distributions (clean ImageNet and ImageNet-C) for audits."""

from __future__ import annotations

import argparse

from iqa_lib.commands.arguments import device_arg, nonnegative_int_arg, positive_int_arg, spec_arg


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reference",
        help="build a scorer's reference distributions for `iqa-kit audit`",
        description="Score a labelled reference manifest (clean images and an ImageNet-C tree, "
        "e.g. your full ImageNet val: `iqa-kit manifest --clean ... --imagenet-c ...`) with one "
        "scorer, or take an existing score file of one (--scores), and write the reference "
        "distribution file that `iqa-kit audit --reference DIR` compares datasets with.",
    )
    parser.add_argument("--scorer", type=spec_arg, required=True, help="scorer spec, as for `iqa-kit score`")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", help="labelled manifest with clean and ImageNet-C rows to score")
    source.add_argument("--scores", help="an existing score file of this scorer on such a manifest")
    parser.add_argument("--out", required=True, help="reference folder (the file is named after the spec)")
    parser.add_argument("--made-from", default=None, help="one line saying which images (kept in the file)")
    parser.add_argument("--geometry", choices=("resize_crop", "none"), default="resize_crop",
                        help="as for `iqa-kit score`; audits match it (default: %(default)s)")
    parser.add_argument("--device", type=device_arg, default="auto")
    parser.add_argument("--batch-size", type=positive_int_arg, default=None)
    parser.add_argument("--num-workers", type=nonnegative_int_arg, default=None)
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # pandas, torch and the engine: loaded when a reference is built, not when the parser is built
    from iqa_lib.pipeline.reference import ReferenceSettings, build_reference

    path = build_reference(ReferenceSettings(
        args.scorer, args.out, manifest=args.manifest, scores=args.scores,
        made_from=args.made_from, geometry=args.geometry, device=args.device,
        batch_size=args.batch_size, num_workers=args.num_workers, progress=not args.no_progress,
    ))
    print(f"wrote {path}")
    return 0
