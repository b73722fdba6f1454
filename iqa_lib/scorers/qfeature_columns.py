"""The names of ``learned_q``'s feature columns, in order (what :mod:`iqa_lib.scorers.qfeatures`
computes). Pure data, so that :mod:`iqa_lib.scorers.base` lists them as score-file columns
without importing the feature code (which imports the NSS scorers, which import base).
"""

from __future__ import annotations

_SCALE = ("ggd_alpha", "ggd_var") + tuple(
    f"{d}_{p}" for d in ("h", "v", "d1", "d2") for p in ("alpha", "eta", "lvar", "rvar")
)
NSS_COLUMNS: tuple[str, ...] = tuple(f"f_nss_s{s}_{n}" for s in (1, 2) for n in _SCALE)
METRIC_COLUMNS: tuple[str, ...] = ("f_flat_fraction", "f_brisque", "f_niqe", "f_piqe", "f_tv")
COLOUR_COLUMNS: tuple[str, ...] = (
    "f_mean_r", "f_mean_g", "f_mean_b", "f_gray_mean", "f_gray_std", "f_colourfulness",
    "f_saturation", "f_dark", "f_bright", "f_entropy",
)
FREQUENCY_COLUMNS: tuple[str, ...] = (
    "f_band1", "f_band2", "f_band3", "f_band4", "f_spectral_slope", "f_log_power",
    "f_log_laplacian_var", "f_log_gradient", "f_blockiness",
)
FEATURE_COLUMNS: tuple[str, ...] = NSS_COLUMNS + METRIC_COLUMNS + COLOUR_COLUMNS + FREQUENCY_COLUMNS
