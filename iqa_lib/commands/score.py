"""``iqa-kit score``: score every image of a manifest with one scorer (or several, decoding once).

Also runnable as ``python -m iqa_lib.commands.score ...`` so that
``torchrun --nproc_per_node N -m iqa_lib.commands.score ...`` scales it out.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iqa_lib.commands.arguments import (
    add_max_pixels,
    device_arg,
    nonnegative_int_arg,
    positive_int_arg,
    positive_seconds_arg,
    spec_arg,
)
from iqa_lib.fileio import WriteError, is_write_fault

if TYPE_CHECKING:
    from iqa_lib.pipeline.score import ScoreOptions


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scorer",
        type=spec_arg,
        help="scorer spec, e.g. tv, brisque, pyiqa:clipiqa, efficientnet_lite:lite0, "
        "torchvision:resnet34/IMAGENET1K_V1, timm:convnext_base.fb_in1k, "
        "open_clip:ViT-B-32/openai, or a mapping '{spec: ..., weights: ..., temperature: ...}'",
    )
    parser.add_argument("--manifest", help="manifest.parquet to score")
    parser.add_argument(
        "--images",
        metavar="DIR",
        help="score a folder of images directly (searched recursively; unlabelled: classifiers "
        "write pred and q_p, q_h, q_l but no `correct`); its manifest is written beside --out",
    )
    parser.add_argument(
        "--geometry",
        choices=("resize_crop", "none"),
        default=None,
        help="resize_crop: clean images get Resize(256) + CenterCrop(224) as ImageNet-C was made "
        "(default; corrupted images are always scored as stored); none: every image as stored "
        "(default with --images: none; with --from-params: data.geometry)",
    )
    parser.add_argument("--out", help="output Parquet file (e.g. results/scores/x.parquet)")
    parser.add_argument(
        "--from-params",
        metavar="NAME",
        help="take scorer NAME of --params: its spec, data/manifest.parquet, "
        "results/scores/NAME.parquet and the scoring section's device, batch size, workers, "
        "part size and part seconds "
        "(explicit options still win); this is what dvc.yaml runs. NAME,NAME,...: score several "
        "in one pass, decoding each image once",
    )
    parser.add_argument(
        "--alone", action="store_true",
        help="with --from-params NAME: score NAME only (by default, with scoring.decode_once, the "
        "same pass also scores every other configured scorer whose output is missing or stale)",
    )
    parser.add_argument("--params", default="params.yaml", help="parameters file for --from-params (default: %(default)s)")
    parser.add_argument(
        "--batch-size", type=positive_int_arg, default=None, metavar="N",
        help="images per batch (default: the spec option batch_size, else 256 on CUDA and 32 on "
        "CPU; TV 512/64, BRISQUE 256/32)",
    )
    parser.add_argument(
        "--num-workers", type=nonnegative_int_arg, default=None, metavar="N",
        help="image-decoding worker processes; 0 decodes in the main process (default: from the "
        "CPU count and the scorers: one per core when every scorer of the pass is per-image CPU "
        "work (tv, brisque, niqe, piqe), which the workers then score themselves)",
    )
    add_max_pixels(parser)
    parser.add_argument(
        "--device", type=device_arg, default=None,
        help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N, mps",
    )
    parser.add_argument(
        "--part-size", type=positive_int_arg, default=None, metavar="N",
        help="rows per resumable part (default: 4096)",
    )
    parser.add_argument(
        "--part-seconds", type=positive_seconds_arg, default=None, metavar="S",
        help="write the rows of an unfinished part at least every S seconds, so that a kill loses "
        "at most about that much work (default: 10)",
    )
    parser.add_argument(
        "--decode-on-device", action="store_true", default=None,
        help="decode JPEGs scored as stored (ImageNet-C) on the scoring device, in batches (nvJPEG "
        "on CUDA) instead of in the loader workers; pixels may differ from libjpeg's by a few "
        "levels, so the output records it (default: scoring.decode_on_device with --from-params, "
        "else off)",
    )
    parser.add_argument(
        "--keep-logits", action=argparse.BooleanOptionalAction, default=None,
        help="also keep each image's logits (classifiers, ZSCLIP) as <out stem>.logits/logits.npy, "
        "float16, row i = row i of <out>: 2 GB per million images at 1000 classes; what exact COT, "
        "MaNo and the nuclear norm need in `iqa-kit prior` (default: scoring.keep_logits with "
        "--from-params, else off)",
    )
    parser.add_argument(
        "--no-resume", action="store_true",
        help="discard parts of an earlier interrupted run, and rescore a complete output",
    )
    parser.add_argument(
        "--wait", action="store_true",
        help="if another run is writing --out, wait for it to finish instead of failing",
    )
    parser.add_argument(
        "--no-progress", action="store_true",
        help="no progress bar: a line per written part instead (rows done, images/s, time left), "
        "as when stderr is not a terminal",
    )


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score",
        help="score a manifest's images with one scorer (or several in one pass)",
        description="Score every image of a manifest with one quality scorer or classifier; write "
        "<out> (keys image_id, corruption, severity, label + q or pred, correct, q_p, q_h, q_l) and "
        "<out stem>.failures.csv. Resumable: rerun the same command after an interruption. "
        "Scale out with torchrun --nproc_per_node N -m iqa_lib.commands.score ...",
    )
    _configure(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Score as the options say (params.yaml's, the command line's winning); a line per output."""
    from iqa_lib.pipeline.score import (  # torch and pydantic: off `iqa-kit --help`'s path
        score,
        summary,
    )

    for line in summary(score(_options(args))):
        print(line)
    return 0


def _options(args: argparse.Namespace) -> ScoreOptions:
    """``--from-params NAME[,NAME...]`` alone: what the pipeline's score stages run (one decode for
    all); with ``--scorer``, ``--manifest``, ``--out`` or ``--images``: that one output."""
    from iqa_lib.pipeline.score import options_from_params  # as in run

    explicit = [f"--{k}" for k in ("scorer", "manifest", "out", "images") if getattr(args, k) is not None]
    if args.from_params and not explicit:
        return options_from_params(args.from_params, args.params, alone=args.alone, **_overrides(args))
    if args.from_params and "," in args.from_params:
        raise ValueError(f"--from-params {args.from_params!r} names several scorers: leave out "
                         f"{', '.join(explicit)} (each scorer writes results/scores/<name>.parquet)")
    return _explicit_options(args)


def _explicit_options(args: argparse.Namespace) -> ScoreOptions:
    """One output from ``--scorer`` and ``--manifest``/``--images``, ``--out``; with ``--from-params``
    what they leave out comes from that scorer of params.yaml."""
    from iqa_lib.pipeline.score import ScoreOptions, options_from_params  # as in run

    base = options_from_params(args.from_params, args.params, alone=True) if args.from_params else None
    manifest, geometry = args.manifest, args.geometry
    if args.images is not None:
        manifest, geometry = _folder_manifest(args, from_params=base is not None)
    missing = [f"--{k}" for k, v in (("scorer", args.scorer), ("manifest", manifest), ("out", args.out)) if v is None]
    if base is None and missing:
        raise ValueError(
            f"give {', '.join(missing)} (or --images DIR instead of --manifest, or --from-params "
            "NAME to read them from params.yaml)"
        )
    base = base or ScoreOptions(name=Path(args.out).stem, spec=args.scorer, manifest=manifest, out=args.out)
    return base.with_overrides(spec=args.scorer, manifest=manifest, out=args.out, images=args.images,
                               logits_folders=False if args.out is not None else None,
                               **{**_overrides(args), "geometry": geometry})


def _folder_manifest(args: argparse.Namespace, from_params: bool) -> tuple[str, str]:
    """With ``--images``: the manifest the stage writes of the folder, and the geometry (as stored
    unless ``--geometry`` says otherwise)."""
    from iqa_lib.pipeline.score import folder_manifest_path  # as in run

    if args.manifest is not None or from_params:  # --from-params names data/manifest.parquet
        raise ValueError("give --images DIR or --manifest FILE, not both")
    if args.out is None:
        raise ValueError("give --out (e.g. results/scores/my_images.parquet) with --images")
    return str(folder_manifest_path(args.out)), args.geometry or "none"


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The options given on the command line (None: not given, params.yaml's or the default)."""
    return {
        "device": args.device, "geometry": args.geometry, "batch_size": args.batch_size,
        "num_workers": args.num_workers, "part_size": args.part_size, "part_seconds": args.part_seconds,
        "resume": False if args.no_resume else None, "wait": True if args.wait else None,
        "progress": False if args.no_progress else None, "decode_on_device": args.decode_on_device,
        "max_pixels": args.max_pixels, "keep_logits": args.keep_logits,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="iqa-kit score", description=__doc__)
    _configure(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"iqa-kit score: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine refused a write: one line, as iqa-kit itself prints it
        message = WriteError(exc.filename or "?", exc) if is_write_fault(exc) else exc
        print(f"iqa-kit score: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
