"""Hostile inputs end as listed failures, and the rest of the run goes on (issue 22, items 2-4).

File names that are not UTF-8, shard members that are no image, damaged and truncated shards,
path-traversal member names and decompression bombs.
"""

from __future__ import annotations

import io
import os
import resource
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from iqa_lib.cli import main
from iqa_lib.data.images import DEFAULT_MAX_PIXELS, NOT_UTF8, check_image, load_rgb
from iqa_lib.data.manifest import ManifestError
from iqa_lib.data.scan import images_manifest
from iqa_lib.data.sources import dataset_manifest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="byte file names are a POSIX matter")
LATIN1 = b"caf\xe9.jpg"


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 20), (120, 30, 200)).save(buf, "JPEG")
    return buf.getvalue()


def _write(folder: Path, name: bytes | str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    raw = name if isinstance(name, bytes) else name.encode()
    with open(os.fsencode(folder) + b"/" + raw, "wb") as fh:
        fh.write(_jpeg())


def _not_utf8_row(failures: pd.DataFrame) -> pd.Series:
    row = failures.loc[failures["reason"] == NOT_UTF8]
    assert len(row) == 1, failures
    assert row["path"].iloc[0].endswith("caf\\xe9.jpg")  # shown escaped, and writable as UTF-8
    return row.iloc[0]


# --------------------------------------------------------------------- names that are not UTF-8
def test_class_folder_name_not_utf8_is_a_failure_row(tmp_path):
    for cls in ("cat", "dog"):
        _write(tmp_path / "src" / cls, f"a_{cls}.jpg")
    _write(tmp_path / "src" / "cat", LATIN1)
    out = tmp_path / "m.parquet"
    assert main(["manifest", "--source", str(tmp_path / "src"), "--out", str(out)]) == 0
    assert len(pd.read_parquet(out)) == 2
    _not_utf8_row(pd.read_csv(tmp_path / "m.failures.csv"))


def test_flat_folder_name_not_utf8_is_a_failure_row_with_check_none(tmp_path):
    _write(tmp_path / "flat", "one.jpg")
    _write(tmp_path / "flat", LATIN1)
    result = dataset_manifest(tmp_path / "flat", check="none", progress=False)
    assert result.manifest["image_id"].tolist() == ["one.jpg"]
    _not_utf8_row(result.failures)


def test_list_with_a_latin1_path_is_a_failure_row(tmp_path):
    _write(tmp_path / "flat", "one.jpg")
    _write(tmp_path / "flat", LATIN1)
    listing = tmp_path / "list.csv"
    listing.write_bytes(b"path\nflat/one.jpg\nflat/" + LATIN1 + b"\n")
    result = dataset_manifest(listing, progress=False)
    assert len(result.manifest) == 1
    _not_utf8_row(result.failures)


def test_score_images_lists_the_name_that_is_not_utf8(tmp_path):
    _write(tmp_path / "flat", "one.jpg")
    _write(tmp_path / "flat", LATIN1)
    df = images_manifest(tmp_path / "flat")
    df.to_parquet(tmp_path / "m.parquet")  # writable: the name is escaped
    bad = df.loc[df["path"].str.contains("\\x", regex=False), "path"].iloc[0]
    assert check_image(bad) == NOT_UTF8  # the scorer's failure reason for that row


# --------------------------------------------------------------------- shards
def _add(tar: tarfile.TarFile, name: str, data: bytes, size: int | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data) if size is None else size
    tar.addfile(info, io.BytesIO(data))


def _tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            _add(tar, name, data)
    return path


def test_every_shard_member_is_accounted_for(tmp_path):
    shard = _tar(tmp_path / "a.tar", [
        ("s1.jpg", _jpeg()), ("s1.cls", b"3"), ("s2.heic", b"heic"), ("s2.cls", b"4"),
        ("s3.txt", b"hello"), ("s4.mp4", b"\0" * 10), ("../s5.jpg", _jpeg()),
    ])
    result = dataset_manifest(shard, progress=False)
    assert result.manifest["image_id"].tolist() == ["s1"]
    reasons = dict(zip(result.failures["path"].str.split("::").str[1], result.failures["reason"], strict=True))
    assert set(reasons) == {"s2.heic", "s3.txt", "s4.mp4", "../s5.jpg"}
    assert "unsupported image format (.heic)" in reasons["s2.heic"]
    assert "no image" in reasons["s3.txt"] and "no image" in reasons["s4.mp4"]
    assert "unsafe member name" in reasons["../s5.jpg"]
    assert "s5" not in result.manifest["image_id"].tolist()
    assert "" in result.failures["image_id"].tolist() or result.failures["image_id"].isna().any()


def test_member_whose_header_claims_60_gib_is_one_clear_error(tmp_path):
    shard = tmp_path / "huge.tar"
    with tarfile.open(shard, "w", format=tarfile.GNU_FORMAT) as tar:
        _add(tar, "s1.jpg", _jpeg())
        _add(tar, "s1.cls", b"3")
        info = tarfile.TarInfo("s2.jpg")
        info.size = 60 << 30
        tar.fileobj.write(info.tobuf(tarfile.GNU_FORMAT))  # a header only: the data is not there
    with pytest.raises(ManifestError, match="more than the whole") as err:
        dataset_manifest(shard, progress=False)
    assert "s2.jpg" in str(err.value) and "\n" not in str(err.value)
    assert "1,073,741,824" in check_image(f"{shard}::s2.jpg")  # a row, never a MemoryError


def test_truncated_shard_says_so_and_lists_what_could_be_read(tmp_path):
    shard = _tar(tmp_path / "t.tar", [("s1.jpg", _jpeg()), ("s1.cls", b"3"),
                                      ("s2.jpg", _jpeg()), ("s2.cls", b"4")])
    data = shard.read_bytes()
    shard.write_bytes(data[: 512 * 5 + 100])  # cut inside s2.jpg's data
    with pytest.raises(ManifestError, match="truncated shard") as err:
        dataset_manifest(shard, progress=False)
    assert "s1.jpg" in str(err.value) and "have no label" not in str(err.value)


# --------------------------------------------------------------------- decompression bombs
def test_pillow_default_pixel_limit():
    assert Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_PIXELS == 89_478_485


def test_20000_square_png_is_a_failure_row_in_bounded_memory(tmp_path):
    big = tmp_path / "flat" / "bomb.png"
    big.parent.mkdir()
    Image.new("L", (20000, 20000)).save(big, optimize=False)  # ~400 KB on disk, 400 Mpx
    _write(tmp_path / "flat", "one.jpg")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = dataset_manifest(tmp_path / "flat", workers=1, progress=False)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert result.manifest["image_id"].tolist() == ["one.jpg"]
    reason = result.failures["reason"].iloc[0]
    assert "image too large" in reason and "--max-pixels" in reason
    assert grown_mb < 200
    with pytest.raises(Exception, match="image too large"):
        load_rgb(big)
