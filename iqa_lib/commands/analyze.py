"""``iqa-kit analyze``: every analysis of the paper over a folder of score files."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from iqa_lib import defaults
from iqa_lib.commands.arguments import between, fractions_list, integer, integers_list, names_list

if TYPE_CHECKING:  # the stage imports pandas and the analysis: not at `iqa-kit --help`
    from iqa_lib.pipeline.analyze import AnalyzeSettings


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="compute every table of the paper from score files",
        description="Group-wise correlations, point-wise AUC/CE, per-label and per-image-ID "
        "cross-validation, task-model pairs and mild-corruption mixtures over a folder of "
        "<scorer>.parquet score files; writes tidy CSV tables.",
    )
    parser.add_argument(
        "--params",
        help="take every default from this params.yaml: results/scores, results/analysis, the "
        "configured scorers and task models, and the analysis section (explicit options win); "
        "this is what dvc.yaml runs",
    )
    parser.add_argument("--scores", help="folder of <scorer>.parquet files")
    parser.add_argument("--out", help="folder for the CSV tables")
    parser.add_argument("--seed", type=integer(0, "numpy seeds are non-negative"), default=None, help=f"random seed (default: {defaults.SEED})")
    parser.add_argument(
        "--n-bootstrap",
        type=integer(10, "as analysis.n_bootstrap"),
        default=None,
        help=f"bootstrap resamples for the CIs (default: {defaults.N_BOOTSTRAP})",
    )
    parser.add_argument("--level", type=between(0, 1, "a CI level"), default=defaults.LEVEL, help="CI level (default: %(default)s)")
    parser.add_argument(
        "--test-fraction",
        type=between(0, 1, "as analysis.test_fraction"),
        default=None,
        help=f"held-out fraction of image IDs (default: {defaults.TEST_FRACTION})",
    )
    parser.add_argument("--folds", type=integer(2, "as analysis.n_folds"), default=None, help=f"CV folds (default: {defaults.N_FOLDS})")
    parser.add_argument(
        "--task-models",
        type=names_list,
        default=None,
        help="comma-separated score files whose 'correct' is M "
        "(default: every classifier/zero-shot file)",
    )
    parser.add_argument(
        "--scorers",
        type=names_list,
        default=None,
        help="comma-separated score files to load (default: all)",
    )
    parser.add_argument(
        "--zero-shot",
        type=names_list,
        default=None,
        help="comma-separated task files that are zero-shot (ZSCLIP-IQA), left out of the "
        "classifier-pairs table (default: from the file's 'kind' metadata or an "
        "open_clip/zsclip name)",
    )
    parser.add_argument(
        "--mixture-fractions",
        type=fractions_list,
        default=None,
        help="comma-separated p_c as fractions or percentages, e.g. "
        "0.01,0.05 or 1%%,5%% (default: 1%%..20%% in steps of 1%%)",
    )
    parser.add_argument(
        "--mixture-corruptions",
        type=names_list,
        default=None,
        help="comma-separated corruptions to mix in (default: the 15 ImageNet-C ones present)",
    )
    parser.add_argument(
        "--mixture-severities",
        type=integers_list,
        default=None,
        help="comma-separated severities to mix in (default: 1,2,3)",
    )
    parser.add_argument(
        "--include-clean-group",
        action="store_true",
        help="count the clean images as one more group in the group-wise "
        "analysis (the paper uses the 75 corrupted groups only)",
    )
    parser.add_argument(
        "--analyses",
        type=names_list,
        default=None,
        help="comma-separated subset of groupwise,pointwise,paired,per_label,"
        "per_image,mixtures (default: all)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--wait", action="store_true",
                        help="if another run is writing the same output, wait for it instead of stopping")
    parser.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> AnalyzeSettings:
    """The stage's settings from the command line (``--params`` fills what is left unset)."""
    # why: the stage imports pandas and the analysis, not at `iqa-kit --help`
    from iqa_lib.pipeline.analyze import analyze_settings

    return analyze_settings(
        args.params, scores=args.scores, out=args.out, wait=args.wait, seed=args.seed,
        n_bootstrap=args.n_bootstrap, level=args.level, test_fraction=args.test_fraction,
        n_folds=args.folds, task_models=args.task_models, scorers=args.scorers, zero_shot=args.zero_shot,
        mixture_fractions=args.mixture_fractions, mixture_corruptions=args.mixture_corruptions,
        mixture_severities=args.mixture_severities, include_clean_group=args.include_clean_group,
        analyses=args.analyses, progress=not args.no_progress,
    )


def run(args: argparse.Namespace) -> int:
    from iqa_lib.pipeline.analyze import analyze  # why: as settings_from_args

    analyze(settings_from_args(args))
    return 0
