"""``iqa-kit score``: score every image of a manifest with one scorer (or several, decoding once).

Also runnable as ``python -m iqa_lib.commands.score ...`` so that
``torchrun --nproc_per_node N -m iqa_lib.commands.score ...`` scales it out.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from iqa_lib.checks import check_device, nonnegative_int, positive_int, positive_seconds
from iqa_lib.commands.arguments import add_max_pixels, apply_max_pixels

if TYPE_CHECKING:
    from iqa_lib.scoring.engine import ScoringResult


class PassScorer(NamedTuple):
    """Another scorer of the same pass: its name, spec, output, batch size, and whether it is
    optional (scored only when its output is missing or stale; a failure leaves it to its own run)."""

    name: str
    spec: Any
    out: str
    batch_size: int | None
    optional: bool


@dataclass(frozen=True)
class ScoreOptions:
    """What ``iqa-kit score --from-params NAME`` runs: one scorer of params.yaml, resolved.

    Shared by the command and ``notebooks/score.ipynb`` so that both write the same file.
    ``batch_size``/``num_workers`` None: the engine's defaults for the device.
    """

    name: str
    spec: Any  # the params.yaml entry: a spec string or a mapping with options
    manifest: str
    out: str
    device: str = "auto"
    geometry: str = "resize_crop"
    batch_size: int | None = None
    num_workers: int | None = None
    part_size: int = 4096
    part_seconds: float = 10.0
    resume: bool = True
    wait: bool = False
    progress: bool = True
    decode_on_device: bool = False
    # other scorers scored in the same pass, one decode for all (``scoring.decode_once``)
    others: tuple[PassScorer, ...] = ()
    max_pixels: int | None = None  # Pillow's bomb limit (``data.max_pixels``); None: as set already

    def run_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`iqa_lib.scoring.engine.run_scoring` (after spec, manifest, out)."""
        skip = ("name", "spec", "manifest", "out", "others", "max_pixels")
        return {k: v for k, v in asdict(self).items() if k not in skip}


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
    from iqa_lib.config import MANIFEST_PATH, SCORES_DIR, load_params

    params = load_params(params_file)
    names = [n.strip() for n in name.split(",") if n.strip()]
    unknown = [n for n in names if n not in params.scorers]
    if not names or unknown:
        raise ValueError(
            f"--from-params {(unknown or [name])[0]!r} is not a scorer of {params_file}; valid "
            f"choices: {', '.join(params.scorers) or '(none configured)'} (several: a,b,c)"
        )
    if len(set(names)) < len(names):
        raise ValueError(f"--from-params {name!r} names a scorer twice")
    scoring = params.scoring

    def batch_size(key: str) -> int | None:  # an override, else a spec option, else the section's
        if overrides.get("batch_size") is not None:
            return overrides["batch_size"]
        return None if "batch_size" in params.scorer_spec(key).options else scoring.batch_size

    first = names[0]
    if len(names) > 1:
        others = [(n, False) for n in names[1:]]  # named: required
    elif scoring.decode_once and not alone:
        others = [(n, True) for n in params.scorers if n != first]
    else:
        others = []
    opts = ScoreOptions(
        name=first,
        spec=params.scorers[first],
        manifest=MANIFEST_PATH,
        out=f"{SCORES_DIR}/{first}.parquet",
        device=scoring.device,
        geometry=params.data.geometry,
        batch_size=batch_size(first),
        num_workers=scoring.num_workers,
        part_size=scoring.part_size,
        part_seconds=scoring.part_seconds,
        decode_on_device=scoring.decode_on_device,
        max_pixels=params.data.max_pixels,
        others=tuple(
            PassScorer(n, params.scorers[n], f"{SCORES_DIR}/{n}.parquet", batch_size(n), optional)
            for n, optional in others
        ),
    )
    return replace(opts, **{k: v for k, v in overrides.items() if v is not None})


def run_options(opts: ScoreOptions) -> ScoringResult:
    """Score as ``opts`` say; the result of ``opts.name`` (with ``opts.others`` in the same pass)."""
    return run_options_all(opts)[0]


def run_options_all(opts: ScoreOptions) -> list[ScoringResult]:
    """Score as ``opts`` say: a result for ``opts.name``, then one per ``opts.others``."""
    from iqa_lib.data.images import set_max_pixels
    from iqa_lib.scoring.engine import ScoringJob, run_scoring, run_scoring_many

    set_max_pixels(opts.max_pixels)
    if not opts.others:
        return [run_scoring(opts.spec, opts.manifest, opts.out, **opts.run_kwargs())]
    jobs = [ScoringJob(opts.spec, opts.out, opts.batch_size)] + [
        ScoringJob(o.spec, o.out, o.batch_size, o.optional) for o in opts.others
    ]
    kwargs = {k: v for k, v in opts.run_kwargs().items() if k != "batch_size"}
    return run_scoring_many(jobs, opts.manifest, **kwargs)


def score_from_params(name: str, params_file: str = "params.yaml", **overrides: Any) -> ScoringResult:
    """What ``iqa-kit score --from-params NAME --params PARAMS_FILE`` does, for notebooks."""
    return run_options(options_from_params(name, params_file, **overrides))


def _spec_arg(text: str) -> Any:
    """A spec string, or a YAML/JSON mapping such as ``{spec: open_clip:ViT-B-32/openai, temperature: 1}``."""
    text = text.strip()
    if text.startswith("{"):
        import yaml

        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise argparse.ArgumentTypeError(f"scorer mapping {text!r} is not valid YAML: {exc}") from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError(f"scorer mapping {text!r} is not a mapping")
        return value
    return text


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scorer",
        type=_spec_arg,
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
        "CPU count)",
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


def _arg_type(check: Callable[[Any, str], Any], what: str) -> Callable[[str], Any]:
    """An argparse type from a check of :mod:`iqa_lib.checks` (argparse names the option)."""

    def parse(text: str) -> Any:
        try:
            return check(text, "value")
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None

    parse.__name__ = what  # argparse's fallback message names the type
    return parse


positive_int_arg = _arg_type(positive_int, "a positive integer")
nonnegative_int_arg = _arg_type(nonnegative_int, "an integer >= 0")
positive_seconds_arg = _arg_type(positive_seconds, "a positive number of seconds")


def device_arg(text: str) -> str:
    """A device of the kit's own list (argparse type): a typo gets that list, not torch's."""
    try:
        return check_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
    from iqa_lib.scoring.engine import DEFAULT_PART_SECONDS, DEFAULT_PART_SIZE, run_scoring

    apply_max_pixels(args)
    explicit = [f"--{k}" for k in ("scorer", "manifest", "out", "images") if getattr(args, k) is not None]
    if args.from_params and not explicit:
        return _run_from_params(args)
    if args.from_params:
        if "," in args.from_params:
            raise ValueError(f"--from-params {args.from_params!r} names several scorers: leave out "
                             f"{', '.join(explicit)} (each scorer writes results/scores/<name>.parquet)")
        _fill_from_params(args)
    if args.images is not None:
        if args.manifest is not None:
            raise ValueError("give --images DIR or --manifest FILE, not both")
        if args.out is None:
            raise ValueError("give --out (e.g. results/scores/my_images.parquet) with --images")
        from iqa_lib.device import pick_device

        pick_device(args.device or "auto")  # a device this machine lacks fails before the scan
        args.manifest = _folder_manifest(Path(args.images), Path(args.out))
        args.geometry = args.geometry or "none"
    missing = [f"--{k}" for k in ("scorer", "manifest", "out") if getattr(args, k) is None]
    if missing:
        raise ValueError(
            f"give {', '.join(missing)} (or --images DIR instead of --manifest, or --from-params "
            "NAME to read them from params.yaml)"
        )
    result = run_scoring(
        args.scorer,
        args.manifest,
        args.out,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=args.device or "auto",
        resume=not args.no_resume,
        part_size=DEFAULT_PART_SIZE if args.part_size is None else args.part_size,
        progress=not args.no_progress,
        geometry=args.geometry or "resize_crop",
        part_seconds=DEFAULT_PART_SECONDS if args.part_seconds is None else args.part_seconds,
        wait=args.wait,
        decode_on_device=bool(args.decode_on_device),
    )
    _summarise([result])
    return 0


def _run_from_params(args: argparse.Namespace) -> int:
    """``--from-params NAME[,NAME...]``: what the pipeline's score stages run (one decode for all)."""
    opts = options_from_params(
        args.from_params, args.params, alone=args.alone, device=args.device, geometry=args.geometry,
        batch_size=args.batch_size, num_workers=args.num_workers, part_size=args.part_size,
        part_seconds=args.part_seconds, resume=False if args.no_resume else None,
        wait=True if args.wait else None, progress=False if args.no_progress else None,
        decode_on_device=args.decode_on_device, max_pixels=args.max_pixels,
    )
    _summarise(run_options_all(opts))
    return 0


def _summarise(results: Sequence[ScoringResult]) -> None:
    """A line per output: rows and failures, or why an optional scorer was left to its own run."""
    import pandas as pd

    from iqa_lib.scoring.distributed import dist_info
    from iqa_lib.scoring.parts import failures_path

    if not dist_info().is_main:
        return
    for result in results:
        out = Path(result.out)
        if result.dropped:
            continue  # the engine said why when it left it out
        n_rows = len(pd.read_parquet(out, columns=["image_id"]))
        n_fail = len(pd.read_csv(failures_path(out)))
        print(f"{out}: {n_rows} rows scored; {n_fail} failed (see {failures_path(out)})")


def _folder_manifest(folder: Path, out: Path) -> Path:
    """An unlabelled manifest of every image under ``folder``, written beside ``out``."""
    from iqa_lib.data.manifest import images_manifest, write_unlabelled_manifest

    path = out.with_name(f"{out.stem}.manifest.parquet")
    write_unlabelled_manifest(images_manifest(folder), path)
    return path


def _fill_from_params(args: argparse.Namespace) -> None:
    """Options left out on the command line come from params.yaml (:func:`options_from_params`)."""
    opts = options_from_params(args.from_params, args.params)
    for key in ("manifest", "out", "device", "geometry", "batch_size", "num_workers", "part_size",
                "part_seconds", "decode_on_device"):
        if getattr(args, key) is None:
            setattr(args, key, getattr(opts, key))
    args.scorer = args.scorer or opts.spec
    apply_max_pixels(args, opts.max_pixels)


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
        from iqa_lib.fileio import WriteError, is_write_fault

        message = WriteError(exc.filename or "?", exc) if is_write_fault(exc) else exc
        print(f"iqa-kit score: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
