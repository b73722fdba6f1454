from __future__ import annotations

import pytest

from iqa_lib import imagenet
from iqa_lib.data import quickstart
from iqa_lib.data.assemble import build_manifest


def test_every_entry_is_a_real_imagenet_class_and_unique():
    ids = [q.image_id for q in quickstart.QUICKSTART_IMAGES]
    assert len(ids) == len(set(ids)) >= 5
    for q in quickstart.QUICKSTART_IMAGES:
        assert 0 <= imagenet.label_of(q.wnid) < 1000


def test_export_gives_a_labelled_folder_the_manifest_reads(tmp_path):
    written = quickstart.export_quickstart(tmp_path / "qs")
    result = build_manifest(tmp_path / "qs", progress=False)
    assert result.failures.empty  # all decode, grayscale camera included
    expected = {q.image_id: imagenet.label_of(q.wnid) for q in quickstart.QUICKSTART_IMAGES}
    got = dict(zip(result.manifest["image_id"], result.manifest["label"], strict=True))
    assert got == {k: v for k, v in expected.items() if k in got}
    assert len(got) == len(written) >= 5
    # a second export rewrites nothing
    mtimes = {p: p.stat().st_mtime_ns for p in written}
    quickstart.export_quickstart(tmp_path / "qs")
    assert {p: p.stat().st_mtime_ns for p in written} == mtimes


def test_missing_package_files_are_skipped_then_fail_below_minimum(tmp_path, monkeypatch):
    real = quickstart.locate
    monkeypatch.setattr(quickstart, "locate", lambda q: None if q.distribution == "pyiqa" else real(q))
    with pytest.warns(UserWarning, match="not shipped"):
        written = quickstart.export_quickstart(tmp_path / "a")
    assert all(not p.stem.startswith("pyiqa") for p in written)
    monkeypatch.setattr(quickstart, "locate", lambda q: None)
    with pytest.raises(RuntimeError, match="point data.clean_root at your own images"), pytest.warns(UserWarning):
        quickstart.export_quickstart(tmp_path / "b")
