"""The paper's analyses over aligned score tables; each returns tidy pandas DataFrames.

``load_scores`` reads a folder of ``<scorer>.parquet`` files; ``run_all`` runs every
analysis and writes CSV tables (what ``iqa-kit analyze`` does).
"""

from iqa_lib.analysis.content import per_image, per_label
from iqa_lib.analysis.groupwise import group_means, groupwise
from iqa_lib.analysis.io import ScoreSet, load_scores
from iqa_lib.analysis.mixtures import make_mixture, mixtures
from iqa_lib.analysis.pairs import pairs, summary_table
from iqa_lib.analysis.pointwise import pointwise
from iqa_lib.analysis.runner import run_all

__all__ = [
    "ScoreSet",
    "group_means",
    "groupwise",
    "load_scores",
    "make_mixture",
    "mixtures",
    "pairs",
    "per_image",
    "per_label",
    "pointwise",
    "run_all",
    "summary_table",
]
