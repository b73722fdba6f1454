from __future__ import annotations

import pandas as pd
import pytest

from iqa_lib.paper import paper_tables, paper_text_values
from tests.conftest import REPO_ROOT


def test_shipped_tables_cover_the_four_tables():
    df = paper_tables()
    assert sorted(df["table"].unique()) == [1, 2, 3, 4]
    assert df.loc[df["table"] == 1, "auc"].between(0.47, 0.61).all()
    assert df.loc[df["table"] == 4, "krcc"].isna().all()
    assert paper_text_values()["per_label_nr_iqa"]["mauc"] == 0.5652


def test_shipped_copy_equals_the_shared_reference():
    shared = REPO_ROOT.parent / "shared" / "paper" / "tables.csv"
    if not shared.is_file():
        pytest.skip("../shared/paper not present")
    pd.testing.assert_frame_equal(paper_tables(), pd.read_csv(shared))
