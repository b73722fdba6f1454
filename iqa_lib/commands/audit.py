"""``iqa-kit audit``: the quality distribution of your own images, against ImageNet and ImageNet-C."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from iqa_lib.commands.arguments import (
    add_max_pixels,
    apply_max_pixels,
    device_arg,
    nonnegative_int_arg,
    positive_int_arg,
    spec_arg,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="audit your own images: manifest, scores, summary.json and report.html in one go",
        description="Score the images of IMAGES (a folder, flat or with class sub-folders; a CSV or "
        "Parquet list with a path column and an optional label column; or WebDataset .tar shards) "
        "with every --scorer and write OUT/summary.json (per scorer and Q variable: n, mean, sd, "
        "quantiles, the closest clean-ImageNet / ImageNet-C severity group and whether it is "
        "informative) and OUT/report.html. For a task model (a classifier): a labelled dataset gets "
        "its measured accuracy (Wilson 95% interval); an unlabelled one gets a prediction from the "
        "model's confidence (a labelled one gets it too, beside the measurement), with a prediction "
        "interval validated on ImageNet-C-like shifts of ImageNet classes only (elsewhere the "
        "prediction is a guess) and a bootstrap interval over the images. The run ends with these "
        "lines on stderr (summary.json's headline). A rerun reuses every finished score file; an "
        "interrupted one resumes.",
    )
    parser.add_argument("images", metavar="IMAGES", help="folder, .csv/.parquet list, or .tar shard(s)")
    parser.add_argument(
        "--scorer", dest="scorers", action="append", type=spec_arg, required=True,
        help="scorer spec, repeatable; NAME=SPEC names its score file; a mapping adds options, "
        "e.g. '{spec: efficientnet_lite:lite0, class_map: map.yaml}' or "
        "'{spec: torchvision:resnet18, weights: my_model.pt}'",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--labels-file", default=None, help="labels for a flat folder ('<file> <label>' lines)")
    parser.add_argument("--classnames", default=None, help="readable class names for prompts (one per class)")
    parser.add_argument("--reference", action="append", default=[], metavar="DIR",
                        help="folder of reference files from `iqa-kit reference` (searched before the shipped ones)")
    parser.add_argument("--check", choices=("full", "header", "none"), default="full",
                        help="how hard to check each image while building the manifest (default: %(default)s)")
    parser.add_argument(
        "--geometry", choices=("resize_crop", "none"), default="resize_crop",
        help="resize_crop: Resize(256) + CenterCrop(224) before scoring, as the references were made "
        "(default); none: score images as stored (then no shipped reference matches)",
    )
    parser.add_argument("--device", type=device_arg, default="auto")
    parser.add_argument("--batch-size", type=positive_int_arg, default=None)
    parser.add_argument("--num-workers", type=nonnegative_int_arg, default=None)
    add_max_pixels(parser)
    parser.add_argument("--no-report", action="store_true", help="write summary.json only")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--wait", action="store_true",
                        help="if another audit is writing OUT, wait for it instead of stopping")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # pandas, torch and the engine: loaded when an audit runs, not when the parser is built
    from iqa_lib.pipeline.audit import AuditSettings, run_audit

    apply_max_pixels(args)
    result = run_audit(AuditSettings(
        args.images, args.scorers, args.out, labels_file=args.labels_file,
        classnames_file=args.classnames, check=args.check, geometry=args.geometry,
        device=args.device, batch_size=args.batch_size, num_workers=args.num_workers,
        reference_dirs=args.reference, report=not args.no_report, progress=not args.no_progress,
        wait=args.wait,
    ))
    scorers = result.summary["scorers"]
    # task models (their confidence-based closest severity) first
    for name in sorted(scorers, key=lambda n: "q_p" not in scorers[n]["variables"]):
        _print_scorer(name, scorers[name])
    print(f"reused {len(result.reused)} score file(s), scored {len(result.scored)}; "
          f"wrote {result.out_dir / 'summary.json'}" + (f" and {result.report}" if result.report else ""))
    sys.stdout.flush()
    for line in [*result.summary.get("headline", []), result.summary.get("caveat")]:
        if line:
            print(f"audit: {line}", file=sys.stderr, flush=True)
    return 0


def _print_scorer(name: str, entry: dict[str, Any]) -> None:
    """One scorer's lines: each Q variable, then the measured and the predicted accuracy."""
    # numpy and pandas (through the audit's accuracy module): not on the parser's path
    from iqa_lib.audit.accuracy import prediction_sentence

    for variable, item in entry["variables"].items():
        _print_variable(f"{name}.{variable}", item)
    if entry.get("accuracy"):
        acc = entry["accuracy"]
        print(f"{name}: accuracy {acc['value']:.3f} (95% CI {acc['ci95'][0]:.3f}-{acc['ci95'][1]:.3f}, n={acc['n']})")
    if entry.get("predicted_accuracy") is not None:
        print(prediction_sentence(name, entry["predicted_accuracy"]))


def _print_variable(label: str, item: dict[str, Any]) -> None:
    """A Q variable's n, median and closest reference group, and why that group is not informative."""
    not_informative = bool(item.get("reference")) and item.get("closest_informative") is False
    closest = (item.get("reference") or {}).get("closest") or "no reference"
    if not_informative:
        closest += " (not informative)"
    median = item["quantiles"].get("0.5")
    print(f"{label}: n={item['n']} median={median:.4g} closest={closest}"
          if median is not None else f"{label}: no finite values")
    if not_informative:
        print(f"  {item.get('closest_note')}")
