"""``iqa-kit prior``: how well quality (and the task model's own outputs) predict accuracy.

Parses the options and prints the verdict; the stage itself is :mod:`iqa_lib.pipeline.prior`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from iqa_lib import defaults
from iqa_lib.commands.arguments import between, integer, names_list

if TYPE_CHECKING:  # the stage imports pandas and the analysis: not at `iqa-kit --help`
    from iqa_lib.pipeline.prior import PriorSettings


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prior",
        help="validate accuracy priors from quality (and AC/DoC/ATC/COT) by leaving one corruption out",
        description="For each task model and each corruption: fit every accuracy estimator on "
        "the clean images and the other corruptions, predict the accuracy of each severity "
        "group of the held-out corruption and of its severities pooled (a mixed set), and "
        "compare with the actual accuracy; estimators are ranked by the worse of the two "
        "mean errors. Writes "
        "prior.csv, prior_summary.csv, prior_verdict.csv and prior_<task model>.png/.pdf.",
    )
    parser.add_argument(
        "--params",
        help="take the defaults from this params.yaml: results/scores, results/prior, the "
        "configured scorers, and analysis.task_models / seed / n_bootstrap (explicit options "
        "win); this is what dvc.yaml runs",
    )
    parser.add_argument("--scores", help="folder of <scorer>.parquet files")
    parser.add_argument("--out", help="folder for the tables and figures")
    parser.add_argument("--seed", type=integer(0, "numpy seeds are non-negative"), default=None,
                        help=f"bootstrap seed (default: {defaults.SEED})")
    parser.add_argument("--n-bootstrap", type=integer(10, "as analysis.n_bootstrap"), default=None,
                        help="resamples of the held-out corruptions for the intervals "
                        f"(default: {defaults.N_BOOTSTRAP})")
    parser.add_argument("--level", type=between(0, 1, "a CI level"), default=defaults.LEVEL,
                        help="interval level (default: %(default)s)")
    parser.add_argument("--task-models", type=names_list,
                        default=None, help="comma-separated task score files whose 'correct' is M "
                        "(default: every classifier/zero-shot file)")
    parser.add_argument("--scorers", type=names_list,
                        default=None, help="comma-separated score files to load (default: all)")
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    parser.add_argument("--wait", action="store_true",
                        help="if another run is writing the same output, wait for it instead of stopping")
    parser.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> PriorSettings:
    """The stage's settings from the command line (``--params`` fills what is left unset)."""
    # why: the stage imports pandas and the analysis, not at `iqa-kit --help`
    from iqa_lib.pipeline.prior import prior_settings

    return prior_settings(args.params, scores=args.scores, out=args.out, seed=args.seed,
                          n_bootstrap=args.n_bootstrap, level=args.level, task_models=args.task_models,
                          scorers=args.scorers, figures=not args.no_figures, wait=args.wait)


def run(args: argparse.Namespace) -> int:
    # why: the stage and the report import pandas, scipy and matplotlib, not at `iqa-kit --help`
    from iqa_lib.pipeline.prior import write_prior
    from iqa_lib.presentation.prior_report import verdict_text  # why: as the line above

    settings = settings_from_args(args)
    _, summary, v, written = write_prior(settings)
    if summary.empty:
        print((Path(settings.out) / "NOTE.md").read_text().splitlines()[-1])
    else:
        print(verdict_text(v).replace("**", ""))
    print(f"wrote {', '.join(p.name for p in written)} to {settings.out}")
    return 0
