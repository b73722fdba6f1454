"""``iqa-kit notebook``: execute a parameterised notebook (papermill) and export HTML."""

from __future__ import annotations

import argparse
from pathlib import Path

from iqa_lib.locks import output_lock


def _parameter(text: str) -> tuple[str, object]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def _raw_parameter(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "notebook",
        help="execute a section notebook with papermill and export it as HTML",
        description="Execute NOTEBOOK into OUT_DIR (same file name) with papermill, injecting "
        "-p KEY=VALUE parameters (values parsed as YAML), and write an HTML copy beside it.",
    )
    parser.add_argument("notebook", help="the notebook to run, e.g. notebooks/section4_nr_iqa.ipynb")
    parser.add_argument("--out", default="results/notebooks", help="folder for the executed copy (default: %(default)s)")
    parser.add_argument("-p", "--parameter", action="append", type=_parameter, default=[], metavar="KEY=VALUE")
    parser.add_argument("-r", "--raw-parameter", action="append", type=_raw_parameter, default=[],
                        metavar="KEY=VALUE", help="a parameter kept as a string (a scorer named 1e3 or no)")
    parser.add_argument("--name", help="name of the executed copy, without .ipynb (default: the notebook's "
                        "name); e.g. score_lite0 for one copy per scorer")
    parser.add_argument("--stream-stderr", action="store_true",
                        help="copy the notebook's stderr (progress lines, warnings) here as it comes")
    parser.add_argument("--no-html", action="store_true", help="skip the HTML export")
    parser.add_argument("--wait", action="store_true",
                        help="if another run is writing the same output, wait for it instead of stopping")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # papermill, nbformat and nbconvert load only when a notebook runs, never for --help
    from iqa_lib.pipeline.notebook_runner import run_notebook

    name = f"{args.name}.ipynb" if args.name else Path(args.notebook).name
    parameters = dict(args.parameter) | dict(args.raw_parameter)
    with output_lock(Path(args.out) / name, wait=args.wait):
        executed = run_notebook(args.notebook, args.out, parameters, html=not args.no_html,
                                name=args.name, stream_stderr=args.stream_stderr)
    print(f"executed {args.notebook} -> {executed}")
    return 0
