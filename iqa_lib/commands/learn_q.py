"""``iqa-kit learn-q``: train a ``learned_q`` model from score files; print its held-out AUCs.

Parses the options and prints the result; the stage is :mod:`iqa_lib.pipeline.learn_q`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from iqa_lib import defaults
from iqa_lib.commands.arguments import between, integer, names_list


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "learn-q",
        help="train a learned_q model (P(correct) from image features) from score files",
        description="Train learned_q: a small model from the f_* feature columns of a learned_q "
        "score file (`iqa-kit score --scorer learned_q ...`) to the probability that the task "
        "models are right (their `correct` columns). Images are split by image_id (no image on "
        "both sides); the held-out AUC of every task model given is printed with n and written "
        "into the model file (JSON) with its provenance. Use it as `learned_q:<out>`.",
    )
    parser.add_argument("--features", required=True, metavar="FILE",
                        help="a learned_q score file (its f_* columns are the features)")
    parser.add_argument("--task", required=True, action="append", metavar="FILE",
                        help="a task model's score file with `correct` (repeat; its name is the "
                        "file's stem); every one given is evaluated on the held-out images")
    parser.add_argument("--train-models", type=names_list, default=[], metavar="A,B",
                        help="learn from these task models only (default: all given with --task); "
                        "the others are held-out models in the printed table")
    parser.add_argument("--out", required=True, metavar="FILE", help="the model file to write (.json)")
    parser.add_argument("--hidden", type=integer(0, "0 = logistic regression"), default=32,
                        help="hidden ReLU units (default: %(default)s; 0 = logistic regression)")
    parser.add_argument("--alpha", type=between(0, 1e6, "L2 penalty"), default=1e-3,
                        help="L2 penalty (default: %(default)s)")
    parser.add_argument("--seed", type=integer(0), default=defaults.SEED, help="split and fit seed")
    parser.add_argument("--test-fraction", type=between(0, 1, "share of images held out"),
                        default=defaults.TEST_FRACTION, help="share of images held out (default: %(default)s)")
    parser.add_argument("--embeddings", metavar="FILE.npy",
                        help="a frozen backbone's embeddings of the feature rows (FILE.keys.parquet "
                        "beside it; benchmarks/learned_q_embeddings.py writes both): the model reads "
                        "the features, then the embedding, and scores batched in-process")
    parser.add_argument("--backbone", default="efficientnet_lite:lite0",
                        help="the backbone of --embeddings (default: %(default)s)")
    parser.add_argument("--embedding-only", action="store_true",
                        help="with --embeddings: no f_* features, the embedding alone")
    parser.add_argument("--note", default="", help="what the data are, in words (kept in the provenance)")
    parser.add_argument("--wait", action="store_true",
                        help="if another run is writing --out, wait for it instead of stopping")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # why: training imports pandas and scikit-learn, not at `iqa-kit --help`
    from iqa_lib.pipeline.learn_q import LearnQSettings, learn_q

    tasks = {Path(f).stem: Path(f) for f in args.task}
    if len(tasks) != len(args.task):
        raise ValueError(f"two --task files share a stem: {args.task}; task models are named by file stem")
    settings = LearnQSettings(Path(args.features), tasks, Path(args.out), tuple(args.train_models),
                              args.hidden, args.alpha, args.seed, args.test_fraction, args.wait,
                              args.note, Path(args.embeddings) if args.embeddings else None,
                              args.backbone if args.embeddings else None, not args.embedding_only)
    result = learn_q(settings)
    split = result.model.provenance["split"]
    print(f"trained on {', '.join(result.model.provenance['task_models'])}: "
          f"{split['n_train_images']} images; held out {split['n_test_images']} images (by image_id)")
    print("held-out AUC of q for each task model's correctness (SE: clustered DeLong):")
    held = set(result.model.provenance["held_out_task_models"])
    for model, row in result.metrics["held_out_images"].items():
        tag = "held-out model" if model in held else "trained on"
        print(f"  {model:<12} AUC {row['auc']:.3f} (SE {row['se']:.3f}), n = {row['n_rows']} rows of "
              f"{row['n_images']} images, accuracy {row['accuracy']:.3f}  [{tag}]")
    print(f"wrote {args.out}; score with --scorer learned_q:{args.out}")
    return 0
