"""``iqa-kit validate``: check params.yaml before any work."""

from __future__ import annotations

import argparse
from pathlib import Path


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


def _dvc_yaml_for(params_file: Path) -> Path | None:
    for folder in (params_file.resolve().parent, Path.cwd()):
        if (folder / "dvc.yaml").is_file():
            return folder / "dvc.yaml"
    return None


def run(args: argparse.Namespace) -> int:
    import yaml

    from iqa_lib.config import ConfigError, load_params
    from iqa_lib.dvc_params import missing_dvc_params

    params = load_params(args.params)
    dvc_yaml = _dvc_yaml_for(Path(args.params))
    if dvc_yaml is not None:
        missing = missing_dvc_params(yaml.safe_load(Path(args.params).read_text()), dvc_yaml)
        if missing:
            raise ConfigError(
                f"{args.params} lacks key(s) that {dvc_yaml} reads, so dvc repro would stop: "
                + ", ".join(missing) + " (copy them, with their values, from the repository's params.yaml)")
    kinds = {name: params.scorer_spec(name).kind for name in params.scorers}
    print(f"{args.params}: valid; {len(params.scorers)} scorer(s): "
          + (", ".join(f"{n} ({k})" for n, k in kinds.items()) or "none"))
    return 0
