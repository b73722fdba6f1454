"""The logits contract's reader: path beside the score file, memory-mapped float16, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from iqa_lib.scoring.logits import logits_dir, logits_path, read_logits, write_logits


def _saved(score_file, array):
    logits_dir(score_file).mkdir(exist_ok=True)
    np.save(logits_path(score_file), array)


def test_path_is_beside_the_score_file(tmp_path):
    assert logits_path(tmp_path / "lite0.parquet") == tmp_path / "lite0.logits" / "logits.npy"
    assert logits_path(tmp_path / "a.b.parquet") == tmp_path / "a.b.logits" / "logits.npy"


def test_absent_logits_read_as_none(tmp_path):
    assert read_logits(tmp_path / "lite0.parquet", 3) is None


def test_reads_memory_mapped_float16_rows_in_order(tmp_path):
    z = np.arange(12, dtype=np.float16).reshape(4, 3)
    _saved(tmp_path / "m.parquet", z)
    got = read_logits(tmp_path / "m.parquet", 4)
    assert isinstance(got, np.memmap)
    assert got.dtype == np.float16 and got.shape == (4, 3)
    np.testing.assert_array_equal(got, z)


@pytest.mark.parametrize(
    ("array", "n_rows", "words"),
    [
        (np.zeros((4, 3), np.float32), 4, "must be float16, found float32"),
        (np.zeros(4, np.float16), 4, "shape (rows, classes >= 2)"),
        (np.zeros((4, 1), np.float16), 4, "shape (rows, classes >= 2)"),
        (np.zeros((5, 3), np.float16), 4, "5 rows of logits for 4 rows in m.parquet"),
    ],
)
def test_contract_breaches_name_the_file_and_the_fix(tmp_path, array, n_rows, words):
    _saved(tmp_path / "m.parquet", array)
    with pytest.raises(ValueError) as err:
        read_logits(tmp_path / "m.parquet", n_rows)
    assert "m.logits/logits.npy" in str(err.value) and words in str(err.value)
    assert "rescore the task model" in str(err.value)


def test_garbled_file_is_a_clear_error(tmp_path):
    logits_dir(tmp_path / "m.parquet").mkdir()
    logits_path(tmp_path / "m.parquet").write_bytes(b"not numpy at all")
    with pytest.raises(ValueError, match=r"m\.logits/logits\.npy: not a readable \.npy array"):
        read_logits(tmp_path / "m.parquet", 1)


def test_an_output_with_no_rows_reads_back_as_no_rows(tmp_path):
    # every image failed: the merge writes (0, 0) logits; a rerun's reuse check must accept them
    write_logits(tmp_path / "m.parquet", [], "efficientnet_lite:lite0")
    assert read_logits(tmp_path / "m.parquet", 0).shape == (0, 0)
    with pytest.raises(ValueError, match="0 rows of logits for 2 rows"):
        read_logits(tmp_path / "m.parquet", 2)
