"""``iqa-kit validate``: check params.yaml before any work."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check params.yaml and list every problem",
        description="Validate params.yaml: unknown keys, misspelt scorers or corruptions, "
        "impossible values, and (where a dvc.yaml sits beside it or in the current folder) every key "
        "a dvc.yaml stage reads, which dvc repro needs written out. Exit code 2 when invalid.",
    )
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: %(default)s)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # the params schema loads pydantic and yaml: imported when the command runs, not for `--help`
    from iqa_lib.config import validate_params_file

    params = validate_params_file(args.params)
    kinds = {name: params.scorer_spec(name).kind for name in params.scorers}
    print(f"{args.params}: valid; {len(params.scorers)} scorer(s): "
          + (", ".join(f"{n} ({k})" for n, k in kinds.items()) or "none"))
    return 0
