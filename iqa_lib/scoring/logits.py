"""The reader side of the logits contract: a task model's full logits beside its score file.

A task-model score file ``<dir>/<name>.parquet`` scored with logits kept has beside it the
folder ``<dir>/<name>.logits/`` holding ``logits.npy``: float16, shape (rows of the parquet,
classes), row i = row i of the parquet, class j = the scorer's class j (the index of the
``pred``/``label`` columns), and ``info.json`` (what was kept). The folder, not the file, sits
beside the score file so that a DVC stage can always declare it: a pipeline run writes it for
every scorer, with only ``info.json`` (``"kept": false``) where no logits were kept.
The estimators that need each image's whole softmax vector (exact COT, MaNo, the nuclear
norm; :mod:`iqa_lib.analysis.prior.logit_estimators`) read it here, memory-mapped, so that
a million images x 1000 classes (2 GB) never has to fit in memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SUFFIX = ".logits"
FILE = "logits.npy"
DTYPE = np.dtype(np.float16)
RESCORE = "rescore the task model with its logits kept, or delete the file to go on without logit-based estimators"


def logits_dir(score_file: str | Path) -> Path:
    """``<dir>/<name>.logits`` for the score file ``<dir>/<name>.parquet``."""
    path = Path(score_file)
    return path.with_name(path.stem + SUFFIX) if path.suffix == ".parquet" else path.with_name(path.name + SUFFIX)


def logits_path(score_file: str | Path) -> Path:
    """``<dir>/<name>.logits/logits.npy`` for the score file ``<dir>/<name>.parquet``."""
    return logits_dir(score_file) / FILE


def read_logits(score_file: str | Path, n_rows: int) -> np.ndarray | None:
    """The memory-mapped (``n_rows``, classes) float16 logits kept beside ``score_file``.

    None when none were kept (no file). A file that breaks the contract (not a .npy array,
    another dtype, not two-dimensional, another row count than the score file) raises a
    ValueError naming it: misaligned logits would give every row another image's softmax.
    """
    path = logits_path(score_file)
    if not path.is_file():
        return None
    try:
        logits = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npy array of logits ({exc}); {RESCORE}") from exc
    if logits.dtype != DTYPE:
        raise ValueError(f"{path}: logits must be float16, found {logits.dtype}; {RESCORE}")
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"{path}: logits must have shape (rows, classes >= 2), found {logits.shape}; {RESCORE}")
    if logits.shape[0] != n_rows:
        raise ValueError(
            f"{path}: {logits.shape[0]} rows of logits for {n_rows} rows in {Path(score_file).name} "
            f"(row i must be row i of the score file); {RESCORE}"
        )
    return logits
