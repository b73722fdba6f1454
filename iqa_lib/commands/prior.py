"""``iqa-kit prior``: how well quality (and the task model's own outputs) predict accuracy.

Leave-one-corruption-out over a folder of score files: every estimator of
``iqa_lib.analysis.prior`` (Q-prior on each Q; AC, DoC, ATC, a COT approximation from the
task model's own outputs) is fitted on clean + the other corruptions and predicts each
severity group of the held-out one. Writes ``prior.csv`` (one row per group and
estimator), ``prior_summary.csv`` (mean / max absolute error with bootstrap intervals),
``prior_verdict.csv`` and a figure per task model (PNG + PDF).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from iqa_lib.commands.arguments import between, integer

PRIOR_DIR = "results/prior"  # its own DVC output: results/analysis belongs to `analyze`


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prior",
        help="validate accuracy priors from quality (and AC/DoC/ATC/COT) by leaving one corruption out",
        description="For each task model and each corruption: fit every accuracy estimator on "
        "the clean images and the other corruptions, predict the accuracy of each severity "
        "group of the held-out corruption, and compare with the actual accuracy. Writes "
        "prior.csv, prior_summary.csv, prior_verdict.csv and prior_<task model>.png/.pdf.",
    )
    parser.add_argument(
        "--params",
        help=f"take the defaults from this params.yaml: results/scores, {PRIOR_DIR}, the "
        "configured scorers, and analysis.task_models / seed / n_bootstrap (explicit options "
        "win); this is what dvc.yaml runs",
    )
    parser.add_argument("--scores", help="folder of <scorer>.parquet files")
    parser.add_argument("--out", help="folder for the tables and figures")
    parser.add_argument("--seed", type=integer(0, "numpy seeds are non-negative"), default=None,
                        help="bootstrap seed (default: 0)")
    parser.add_argument("--n-bootstrap", type=integer(10, "as analysis.n_bootstrap"), default=None,
                        help="resamples of the held-out corruptions for the intervals (default: 1000)")
    parser.add_argument("--level", type=between(0, 1, "a CI level"), default=0.95,
                        help="interval level (default: %(default)s)")
    parser.add_argument("--task-models", type=lambda t: [v.strip() for v in t.split(",") if v.strip()],
                        default=None, help="comma-separated task score files whose 'correct' is M "
                        "(default: every classifier/zero-shot file)")
    parser.add_argument("--scorers", type=lambda t: [v.strip() for v in t.split(",") if v.strip()],
                        default=None, help="comma-separated score files to load (default: all)")
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    parser.add_argument("--wait", action="store_true",
                        help="if another run is writing the same output, wait for it instead of stopping")
    parser.set_defaults(func=run)


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill options left unset from ``--params`` and the built-in defaults."""
    if args.params:
        from iqa_lib.config import SCORES_DIR, load_params

        params = load_params(args.params)
        a = params.analysis
        defaults = {"scores": SCORES_DIR, "out": PRIOR_DIR, "seed": a.seed,
                    "n_bootstrap": a.n_bootstrap, "task_models": list(a.task_models) or None,
                    "scorers": list(params.scorers) or None}
        for key, value in defaults.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    if args.scores is None or args.out is None:
        raise ValueError("give --scores and --out, or --params params.yaml")
    args.seed = 0 if args.seed is None else args.seed
    args.n_bootstrap = 1000 if args.n_bootstrap is None else args.n_bootstrap
    return args


def write_prior(args: argparse.Namespace):
    """Compute the validation and write every output under the output lock.

    Returns (table, summary, verdict, written paths); the notebook calls this too.
    Under ``--params`` (the pipeline), data that cannot support the validation (your own
    clean images, no ImageNet-C) writes empty tables and ``NOTE.md`` saying why, as the
    other stages do, instead of failing; alone, the command says why and stops.
    """
    import pandas as pd

    from iqa_lib.analysis.prior import LocoUnsupported, run_prior, verdict
    from iqa_lib.fileio import atomic_write_text, write_csv
    from iqa_lib.locks import output_lock

    args = resolve(args)
    out = Path(args.out)
    note = None
    try:
        table, summary = run_prior(args.scores, args.task_models, args.scorers,
                                   n_bootstrap=args.n_bootstrap, seed=args.seed, level=args.level)
        v = verdict(summary, table, n_bootstrap=args.n_bootstrap, seed=args.seed, level=args.level)
    except LocoUnsupported as exc:
        if not args.params:
            raise
        note = f"Not computed: {exc}."
        table = summary = v = pd.DataFrame()
    written = []
    with output_lock(out, wait=args.wait):
        out.mkdir(parents=True, exist_ok=True)
        if note:
            written.append(atomic_write_text(out / "NOTE.md", f"# Accuracy prior\n\n{note}\n"))
        else:
            (out / "NOTE.md").unlink(missing_ok=True)
        written.append(write_csv(table, out / "prior.csv"))
        written.append(write_csv(summary, out / "prior_summary.csv"))
        written.append(write_csv(v, out / "prior_verdict.csv"))
        if not args.no_figures and not summary.empty:
            from iqa_lib.presentation.plots_prior import save_prior_figures

            written += save_prior_figures(table, summary, out)
    return table, summary, v, written


def run(args: argparse.Namespace) -> int:
    from iqa_lib.analysis.prior import verdict_text

    _, summary, v, written = write_prior(args)
    if summary.empty:
        print((Path(args.out) / "NOTE.md").read_text().splitlines()[-1])
    else:
        print(verdict_text(v).replace("**", ""))
    print(f"wrote {', '.join(p.name for p in written)} to {args.out}")
    return 0
