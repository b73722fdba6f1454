"""The paper's reported values, shipped with the kit so tables can show them beside ours."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib.resources import files

import pandas as pd


@lru_cache(maxsize=1)
def paper_tables() -> pd.DataFrame:
    """Tables 1-4: one row per (table, task model, quality scorer, Q variant).

    ``auc``/``ce`` are point-wise; ``krcc``/``plcc``/``srcc`` are absolute
    group-wise correlations over the 75 groups, each ``*_ci`` the half-width
    of its 95% bootstrap interval. Table 4 reports no KRCC.
    """
    with files("iqa_lib.resources.paper").joinpath("tables.csv").open() as fh:
        return pd.read_csv(fh)


@lru_cache(maxsize=1)
def paper_text_values() -> dict:
    """Numbers the paper states in its text (per-label control, mixtures)."""
    return json.loads(files("iqa_lib.resources.paper").joinpath("text_values.json").read_text())
