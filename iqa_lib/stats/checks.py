"""Input checks shared by the statistics: one clear error instead of a silent NaN."""

from __future__ import annotations

import numpy as np


def as_float(values, name: str) -> np.ndarray:
    """1-D float64 copy-free view of ``values``; NaN or inf raise a ValueError naming ``name``."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} has {int(bad.sum())} NaN/inf value(s) (first at position {first}); "
            "drop or rescore those rows before the analysis"
        )
    return arr


def as_binary(values, name: str) -> np.ndarray:
    """1-D int8 array of 0/1 from bool or 0/1 numbers; anything else raises naming ``name``."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.astype(np.int8)
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError(f"{name} has {int(np.isnan(arr).sum())} NaN value(s); M must be 0/1")
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0/1 or True/False (correctness M)")
    return arr.astype(np.int8)


def same_length(**arrays: np.ndarray) -> int:
    """Common length of the arrays, or a ValueError listing each one's length."""
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"arrays differ in length: {lengths}")
    return next(iter(lengths.values()))
