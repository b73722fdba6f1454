"""What the kit vouches for is what is on disk: completion records carry size and hash; locks go by the real path.

Each case failed before: an emptied or re-columned score file was "reused ... complete",
a swapped one was taken silently, a symlinked output got a second lock, and a complete
output on read-only storage could not be reused because its lock file had to be created.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from iqa_lib import fileio, locks
from iqa_lib.locks import LockBusy, lock_path, output_lock
from iqa_lib.scoring import complete, parts
from iqa_lib.scoring.engine import run_scoring

N = 6
KW = {"batch_size": 2, "num_workers": 0, "device": "cpu", "part_size": 4, "progress": False}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("integrity")
    rows = []
    for i in range(N):
        path = root / "img" / f"im{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(path)
        rows.append({"image_id": f"im{i}", "label": i % 3, "corruption": "gaussian_noise",
                     "severity": 1 + i % 5, "path": str(path)})
    out = root / "manifest.parquet"
    pd.DataFrame(rows).to_parquet(out)
    return out


def _scored(manifest: Path, out: Path) -> bytes:
    assert not run_scoring("tv", manifest, out, **KW).reused
    return out.read_bytes()


def _rewrite(out: Path, frame: pd.DataFrame) -> None:
    """Replace ``out`` by a valid parquet of ``frame`` that keeps the kit's metadata."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = {**(table.schema.metadata or {}), **(pq.read_schema(out).metadata or {})}
    pq.write_table(table.replace_schema_metadata(meta), out)


def test_the_record_carries_size_hash_and_columns(manifest, tmp_path):
    out = tmp_path / "tv.parquet"
    _scored(manifest, out)
    record = json.loads(complete.record_path(out).read_text())
    assert record["columns"] == ["image_id", "corruption", "severity", "label", "q"]
    assert record["output"] == complete.file_facts(out)
    assert record["failures"] == complete.file_facts(parts.failures_path(out))


def test_an_emptied_score_file_is_rescored_not_reused(manifest, tmp_path, capsys):
    out = tmp_path / "tv.parquet"
    good = _scored(manifest, out)
    _rewrite(out, pd.read_parquet(out).iloc[:0])
    capsys.readouterr()
    result = run_scoring("tv", manifest, out, **KW)
    err = capsys.readouterr().err
    assert not result.reused and result.scored_rows == N
    assert f"{str(out)!r}" in err and "0 scored" in err and f"{out}.mismatch" in err
    assert out.read_bytes() == good and (tmp_path / "tv.parquet.mismatch").is_file()


def test_a_file_with_a_wrong_column_is_rescored(manifest, tmp_path, capsys):
    out = tmp_path / "tv.parquet"
    good = _scored(manifest, out)
    _rewrite(out, pd.read_parquet(out).rename(columns={"q": "pred"}))
    capsys.readouterr()
    assert not run_scoring("tv", manifest, out, **KW).reused
    assert "has columns" in capsys.readouterr().err and out.read_bytes() == good


def test_a_swapped_file_of_the_same_shape_is_found_by_its_hash(manifest, tmp_path, capsys):
    out = tmp_path / "tv.parquet"
    good = _scored(manifest, out)
    frame = pd.read_parquet(out)
    frame["q"] = frame["q"].to_numpy()[::-1]  # same rows, columns and metadata; other values
    _rewrite(out, frame)
    capsys.readouterr()
    assert not run_scoring("tv", manifest, out, **KW).reused
    err = capsys.readouterr().err
    assert "sha256 differs" in err or "bytes, its record says" in err
    assert out.read_bytes() == good


def test_an_old_record_is_checked_then_upgraded_or_refused(manifest, tmp_path, capsys):
    out = tmp_path / "tv.parquet"
    good = _scored(manifest, out)
    path = complete.record_path(out)
    old = {k: v for k, v in json.loads(path.read_text()).items() if k not in ("output", "failures", "columns")}
    path.write_text(json.dumps(old))
    capsys.readouterr()
    assert run_scoring("tv", manifest, out, **KW).reused  # rows, columns and spec hold: upgraded
    assert "now vouches" in capsys.readouterr().err
    assert json.loads(path.read_text())["output"] == complete.file_facts(out)
    path.write_text(json.dumps(old))
    _rewrite(out, pd.read_parquet(out).iloc[:2])  # an old record over a short file: not trusted
    assert not run_scoring("tv", manifest, out, **KW).reused and out.read_bytes() == good


def test_a_complete_output_on_storage_that_refuses_writes_is_reused(manifest, tmp_path, monkeypatch):
    out = tmp_path / "tv.parquet"
    _scored(manifest, out)
    before = sorted(p.name for p in tmp_path.iterdir())

    def refused(*args, **kwargs):
        raise fileio.WriteError(lock_path(out), OSError(errno.EROFS, "Read-only file system"))

    monkeypatch.setattr(locks, "output_lock", refused)
    monkeypatch.setattr(fileio, "write_json", refused)
    assert run_scoring("tv", manifest, out, **KW).reused
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_symlinked_output_takes_the_real_paths_lock(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    assert lock_path(link) == lock_path(real)
    assert lock_path(link / "summary.json") == lock_path(real / "summary.json")
    with output_lock(real), pytest.raises(LockBusy), output_lock(link):
        pass
    with output_lock(link / "tv.parquet"), pytest.raises(LockBusy), output_lock(real / "tv.parquet"):
        pass


def _parts_left(manifest: Path, out: Path, monkeypatch) -> Path:
    """Every chunk written, the merge not: the parts folder a resume reads."""

    def stop(*args, **kwargs):
        raise RuntimeError("stopped before the merge")

    monkeypatch.setattr(parts, "merge_parts", stop)
    with pytest.raises(RuntimeError, match="stopped before the merge"):
        run_scoring("tv", manifest, out, **KW)
    monkeypatch.undo()
    return parts.parts_dir(out)


@pytest.mark.parametrize("keep_digest", [True, False], ids=["digest-kept", "plain-parquet"])
def test_a_tampered_part_is_not_resumed(manifest, tmp_path, monkeypatch, capsys, keep_digest):
    reference = _scored(manifest, tmp_path / "ref" / "tv.parquet")
    out = tmp_path / "tv.parquet"
    part = parts.part_path(_parts_left(manifest, out, monkeypatch), 0)
    frame = pd.read_parquet(part)
    frame["q"] = frame["q"] + 1.0  # same rows, other values
    if keep_digest:
        _rewrite(part, frame)
    else:
        frame.to_parquet(part, index=False)
    capsys.readouterr()
    result = run_scoring("tv", manifest, out, **KW)
    err = capsys.readouterr().err
    assert f"{str(part)!r}" in err and ("checksum differs" in err if keep_digest else "no checksum" in err)
    assert result.kept_rows == N - 4 and result.scored_rows == 4
    assert out.read_bytes() == reference
