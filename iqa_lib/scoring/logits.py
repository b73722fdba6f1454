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

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from iqa_lib import fileio

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
    # an output whose every row failed keeps (0, 0) logits: no rows, so no class count to check
    if logits.ndim != 2 or (logits.shape[1] < 2 and logits.shape[0] > 0):
        raise ValueError(f"{path}: logits must have shape (rows, classes >= 2), found {logits.shape}; {RESCORE}")
    if logits.shape[0] != n_rows:
        raise ValueError(
            f"{path}: {logits.shape[0]} rows of logits for {n_rows} rows in {Path(score_file).name} "
            f"(row i must be row i of the score file); {RESCORE}"
        )
    return logits


# ------------------------------------------------------------------ the writer side (the engine's merge)
INFO = "info.json"
COLUMN = "logits"  # the column score parts carry them in (iqa_lib.scorers.base.LOGITS)
BYTES_PER_VALUE = DTYPE.itemsize


def info_path(score_file: str | Path) -> Path:
    """``<dir>/<name>.logits/info.json``: whether logits were kept, their shape and size, or why not."""
    return logits_dir(score_file) / INFO


def rows_as_bytes(z: np.ndarray) -> np.ndarray:
    """(N, K) logits -> N float16 rows as bytes: the form a score part carries them in."""
    z16 = np.ascontiguousarray(z, dtype=DTYPE)
    if z16.ndim != 2:
        raise ValueError(f"logits must be (images, classes), got shape {z16.shape}")
    out = np.empty(len(z16), dtype=object)
    out[:] = [row.tobytes() for row in z16]
    return out


def gigabytes_per_million(classes: int) -> float:
    """Disk taken by the logits of a million images of ``classes`` classes (float16)."""
    return classes * BYTES_PER_VALUE * 1e6 / 1e9


def write_logits(score_file: str | Path, rows: Sequence[bytes], spec: str) -> Path:
    """The logits of the score file's rows (``rows[i]`` = row i, float16 bytes) and their info.

    Written before the score file itself and atomically, so a score file never sits beside
    the logits of an earlier run: a kill leaves either the old pair or a rerun's merge.
    """
    n = len(rows)
    width = len(rows[0]) if n else 0
    if any(len(r) != width for r in rows) or width % BYTES_PER_VALUE:
        raise ValueError(f"{score_file}: logit rows of unequal or odd byte lengths; score the model again")
    classes = width // BYTES_PER_VALUE
    matrix = np.frombuffer(b"".join(rows), dtype=DTYPE).reshape(n, classes)
    folder = logits_dir(score_file)
    with fileio.writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
    path = fileio.atomic_write_with(logits_path(score_file), lambda tmp: _save(tmp, matrix))
    fileio.write_json({
        "kept": True, "spec": spec, "rows": n, "classes": classes, "dtype": DTYPE.name,
        "bytes": path.stat().st_size, "gb_per_million_images": round(gigabytes_per_million(classes), 3),
        "file": FILE,
    }, info_path(score_file))
    return path


def _save(tmp: Path, matrix: np.ndarray) -> None:
    with open(tmp, "wb") as fh:  # a handle: np.save would add ".npy" to the temporary name
        np.save(fh, matrix, allow_pickle=False)


def forget_logits(score_file: str | Path) -> None:
    """Remove logits kept beside ``score_file`` by an earlier run (they would not match its new rows)."""
    for path in (logits_path(score_file), info_path(score_file)):
        with fileio.writing(path):
            path.unlink(missing_ok=True)


def write_not_kept(score_file: str | Path, why: str) -> Path:
    """The folder of a score file without logits: only ``info.json`` saying why (a DVC output
    must exist whichever scorer its stage runs)."""
    folder = logits_dir(score_file)
    with fileio.writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
        logits_path(score_file).unlink(missing_ok=True)
    return fileio.write_json({"kept": False, "why": why}, info_path(score_file))
