"""dataset_manifest: folders, image lists and WebDataset shards, read in place."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from iqa_lib import imagenet
from iqa_lib.cli import main
from iqa_lib.data.images import check_image, load_rgb, tar_index
from iqa_lib.data.manifest import (
    UNLABELLED,
    ManifestError,
    manifest_classes,
    read_manifest,
    write_manifest,
)
from iqa_lib.data.sources import dataset_manifest, expand_braces, source_kind, split_key
from tests.conftest import GOLDFISH, TENCH, write_image


def _jpeg(seed: int, size: tuple[int, int] = (24, 20)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _shard(path: Path, samples: dict[str, dict[str, bytes]]) -> Path:
    """An uncompressed tar of ``key.ext`` members, in WebDataset order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for key, members in samples.items():
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def _samples(keys, start=0, label=lambda i: str(i % 2).encode(), ext="cls"):
    return {k: {"jpg": _jpeg(start + i), ext: label(i)} for i, k in enumerate(keys)}


# ------------------------------------------------------------------ dispatch and folders
def test_source_kind_dispatch(tmp_path):
    (tmp_path / "imgs").mkdir()
    _shard(tmp_path / "shards" / "a.tar", {})
    for name in ("l.csv", "l.parquet", "x.tar", "y.tar.gz"):
        (tmp_path / name).write_bytes(b"")
    assert source_kind(tmp_path / "imgs") == "folder"
    assert source_kind(tmp_path / "shards") == "shards"
    assert source_kind(tmp_path / "l.csv") == source_kind(tmp_path / "l.parquet") == "list"
    assert source_kind(tmp_path / "x.tar") == source_kind(f"{tmp_path}/s-{{0..3}}.tar") == "shards"
    with pytest.raises(ManifestError, match="compressed tar.*decompress"):
        source_kind(tmp_path / "y.tar.gz")
    with pytest.raises(ManifestError, match="does not exist"):
        source_kind(tmp_path / "nope")


def test_flat_folder_without_labels_is_unlabelled_and_labelled_folders_stay_labelled(tmp_path):
    write_image(tmp_path / "flat" / "holiday.jpg", size=(8, 8))
    write_image(tmp_path / "flat" / "beach.png", size=(8, 8))
    result = dataset_manifest(tmp_path / "flat", progress=False)
    assert result.manifest["image_id"].tolist() == ["beach.png", "holiday.jpg"]
    assert (result.manifest["label"] == UNLABELLED).all() and result.classes is None
    (tmp_path / "n.txt").write_text("a\n")
    with pytest.raises(ManifestError, match="unlabelled images"):
        dataset_manifest(tmp_path / "flat", classnames_file=tmp_path / "n.txt", progress=False)
    write_image(tmp_path / "own" / "cat" / "c.png", size=(8, 8))
    assert dataset_manifest(tmp_path / "own", progress=False).classes == ["cat"]
    write_image(tmp_path / "half" / f"{TENCH}_1.png", size=(8, 8))
    write_image(tmp_path / "half" / "other.png", size=(8, 8))
    with pytest.raises(ManifestError, match="cannot label 1 file"):  # ambiguous: refused
        dataset_manifest(tmp_path / "half", progress=False)


# ------------------------------------------------------------------ lists
def test_csv_list_with_own_classes_relative_paths_and_missing_files(tmp_path):
    write_image(tmp_path / "imgs" / "a.png", size=(8, 8))
    write_image(tmp_path / "imgs" / "b.png", size=(8, 8), seed=1)
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "l.csv").write_text(
        "path,label\n../imgs/a.png,dog\n../imgs/b.png,cat\n../imgs/gone.png,cat\n"
    )
    result = dataset_manifest(tmp_path / "lists" / "l.csv", progress=False)
    assert result.classes == ["cat", "dog"]
    assert dict(zip(result.manifest["image_id"], result.manifest["label"], strict=True)) == {"a": 1, "b": 0}
    assert result.failures[["image_id", "reason"]].values.tolist() == [["gone", "file not found"]]
    assert Path(result.manifest["path"][0]).resolve() == (tmp_path / "imgs" / "a.png").resolve()


@pytest.mark.parametrize(
    "labels, expected",
    [([TENCH, GOLDFISH], [0, 1]), ([5, 999], [5, 999]), (None, [UNLABELLED, UNLABELLED])],
)
def test_parquet_list_labels(tmp_path, labels, expected):
    paths = [str(write_image(tmp_path / f"{s}.png", size=(8, 8), seed=i)) for i, s in enumerate("xy")]
    table = pd.DataFrame({"path": paths, "image_id": ["first", "second"]})
    if labels is not None:
        table["label"] = labels
    table.to_parquet(tmp_path / "l.parquet")
    result = dataset_manifest(tmp_path / "l.parquet", check="header", progress=False)
    assert result.manifest["label"].tolist() == expected and result.classes is None
    assert result.manifest["image_id"].tolist() == ["first", "second"]


def test_list_errors_name_the_rows_and_say_what_to_do(tmp_path):
    write_image(tmp_path / "a" / "x.png", size=(8, 8))
    write_image(tmp_path / "b" / "x.png", size=(8, 8))
    lst = tmp_path / "l.csv"
    lst.write_text("path\na/x.png\nb/x.png\n")
    with pytest.raises(ManifestError, match=r"'x' in row\(s\) 1, 2.*add one with a unique id"):
        dataset_manifest(lst, progress=False)
    lst.write_text("path,image_id,label\na/x.png,1,n01440764\nb/x.png,2,cat\n")
    with pytest.raises(ManifestError, match="mixes ImageNet labels"):
        dataset_manifest(lst, progress=False)
    lst.write_text("path,image_id,label\na/x.png,1,7\nb/x.png,2,1000\n")
    with pytest.raises(ManifestError, match=r"outside 0-999 in row\(s\) 2"):
        dataset_manifest(lst, progress=False)
    lst.write_text("file\na/x.png\n")
    with pytest.raises(ManifestError, match="no 'path' column"):
        dataset_manifest(lst, progress=False)
    with pytest.raises(ManifestError, match="labels file labels the images of a folder"):
        dataset_manifest(lst, labels_file=lst, progress=False)


# ------------------------------------------------------------------ WebDataset shards
def test_brace_expansion_and_webdataset_keys():
    assert expand_braces("s-{000..002}.tar") == ["s-000.tar", "s-001.tar", "s-002.tar"]
    assert expand_braces("{a,b}-{1..2}") == ["a-1", "a-2", "b-1", "b-2"]
    assert expand_braces("plain.tar") == ["plain.tar"]
    assert split_key("dir/000123.seg.png") == ("dir/000123", "seg.png")
    assert split_key("x.JPG") == ("x", "jpg") and split_key("._x.jpg") is None and split_key("README") is None


def test_shards_are_read_in_place(tmp_path):
    s0 = _shard(tmp_path / "sh" / "train-000.tar", _samples(["k0", "k1"]))
    _shard(tmp_path / "sh" / "train-001.tar", {**_samples(["k2"], start=2), "meta": {"json": b"{}"}})
    for source in (tmp_path / "sh", f"{tmp_path}/sh/train-{{000..001}}.tar"):
        result = dataset_manifest(source, progress=False)
        df = result.manifest
        assert df["image_id"].tolist() == ["k0", "k1", "k2"] and df["label"].tolist() == [0, 1, 0]
        assert df["path"][0] == f"{s0}::k0.jpg"
        # a sample with no image is listed, never dropped in silence (issue 22)
        assert result.failures["path"].str.endswith("::meta.json").tolist() == [True]
    assert dataset_manifest(s0, check="none", progress=False).manifest["image_id"].tolist() == ["k0", "k1"]
    # members decode exactly as the same bytes on disk
    (tmp_path / "k1.jpg").write_bytes(_jpeg(1))
    assert np.array_equal(np.asarray(load_rgb(f"{s0}::k1.jpg")), np.asarray(load_rgb(tmp_path / "k1.jpg")))
    assert check_image(f"{s0}::nope.jpg", full=False).startswith("missing file")
    assert check_image(f"{tmp_path}/gone.tar::k1.jpg").startswith("missing file")
    with pytest.raises(ManifestError, match=r"1 of the 2 shard\(s\).*train-002"):
        dataset_manifest(f"{tmp_path}/sh/train-{{001..002}}.tar", progress=False)


def test_shard_labels_cls_own_txt_json_and_unlabelled(tmp_path):
    cls = _shard(tmp_path / "cls.tar", _samples(["a", "b"], label=lambda i: str(3 * i).encode()))
    (tmp_path / "names.txt").write_text("zero\none\ntwo\nthree\nfour\n")
    own = dataset_manifest(cls, classnames_file=tmp_path / "names.txt", cls_labels="own", progress=False)
    assert own.classes == ["0", "1", "2", "3", "4"] and own.manifest["label"].tolist() == [0, 3]
    assert own.classnames[3] == "three"
    with pytest.raises(ManifestError, match="ImageNet-labelled"):
        dataset_manifest(cls, classnames_file=tmp_path / "names.txt", progress=False)
    txt = _shard(tmp_path / "txt.tar", _samples(["a", "b"], label=lambda i: [b"dog", b"cat"][i], ext="txt"))
    assert dataset_manifest(txt, progress=False).classes == ["cat", "dog"]
    js = _shard(tmp_path / "js.tar", _samples(["a"], label=lambda i: json.dumps({"wnid": GOLDFISH}).encode(),
                                              ext="json"))
    assert dataset_manifest(js, progress=False).manifest["label"].tolist() == [1]
    bare = _shard(tmp_path / "bare.tar", {"a": {"jpg": _jpeg(0)}, "b": {"png": b"not a png"}})
    result = dataset_manifest(bare, progress=False)
    assert (result.manifest["label"] == UNLABELLED).all()
    assert result.failures["reason"].tolist() == ["not a recognised image format"]
    half = _shard(tmp_path / "half.tar", {**_samples(["a"]), "b": {"jpg": _jpeg(1)}})
    with pytest.raises(ManifestError, match="1 of 2 samples have no label"):
        dataset_manifest(half, progress=False)


def test_tar_index_is_rebuilt_when_a_shard_is_rewritten(tmp_path):
    shard = _shard(tmp_path / "s.tar", _samples(["a"]))
    assert set(tar_index(shard)) == {"a.jpg", "a.cls"}
    _shard(shard, _samples(["b", "c"]))
    assert set(tar_index(shard)) == {"b.jpg", "b.cls", "c.jpg", "c.cls"}
    assert load_rgb(f"{shard}::c.jpg").size == (24, 20)
    data = shard.read_bytes()
    cut = tar_index(shard)["c.jpg"][0] + 100
    shard.write_bytes(data[:cut])  # a truncated shard: what is there still reads
    assert check_image(f"{shard}::b.jpg") is None
    assert check_image(f"{shard}::c.jpg").startswith("truncated file")


@pytest.mark.parametrize("num_workers", [0, 1])
def test_scoring_shard_members_equals_scoring_the_unpacked_files(tmp_path, num_workers):
    from iqa_lib.scoring.engine import score_manifest

    samples = {f"im{i}": {"jpg": _jpeg(i, size=(40 + 8 * i, 36)), "cls": str(i).encode()} for i in range(5)}
    shard = _shard(tmp_path / "s.tar", samples)
    for key, members in samples.items():
        (tmp_path / "unpacked" / imagenet.wnid_of(int(members["cls"]))).mkdir(parents=True)
        (tmp_path / "unpacked" / imagenet.wnid_of(int(members["cls"])) / f"{key}.jpg").write_bytes(members["jpg"])
    scores = {}
    for name, source in (("tar", shard), ("folder", tmp_path / "unpacked")):
        m = write_manifest(dataset_manifest(source, check="none", progress=False), tmp_path / f"{name}.parquet")
        out = score_manifest("tv", m, tmp_path / f"{name}-tv.parquet", batch_size=2, num_workers=num_workers,
                             device="cpu", progress=False)
        scores[name] = pd.read_parquet(out)
    assert scores["tar"]["q"].notna().all() and len(scores["tar"]) == 5
    pd.testing.assert_frame_equal(scores["tar"], scores["folder"])


def test_manifest_command_with_source(tmp_path, capsys):
    shard = _shard(tmp_path / "s.tar", _samples(["a", "b"]))
    out = tmp_path / "m.parquet"
    assert main(["manifest", "--source", str(shard), "--out", str(out), "--check", "header"]) == 0
    assert read_manifest(out)["label"].tolist() == [0, 1] and manifest_classes(out) is None
    assert "wrote 2 rows" in capsys.readouterr().out
    write_image(tmp_path / "own" / "cat" / "c.png", size=(8, 8))
    (tmp_path / "n.txt").write_text("cat,Felis catus\n")
    assert main(["manifest", "--clean", str(tmp_path / "own"), "--classnames", str(tmp_path / "n.txt"),
                 "--out", str(out)]) == 0
    assert "own classes: 1 (cat)" in capsys.readouterr().out


def test_shards_written_by_webdataset_read_back_as_webdataset_reads_them(tmp_path):
    """The webdataset package as an independent oracle: its writer's shards, its reader's samples."""
    wds = pytest.importorskip("webdataset")
    pattern = str(tmp_path / "wds-%06d.tar")
    with wds.ShardWriter(pattern, maxcount=3, verbose=0) as sink:
        for i in range(5):
            sink.write({"__key__": f"sample{i:03d}", "jpg": _jpeg(i), "cls": i % 3, "json": {"i": i}})
    source = f"{tmp_path}/wds-{{000000..000001}}.tar"
    result = dataset_manifest(source, progress=False)
    theirs = list(wds.WebDataset(source, shardshuffle=False).to_tuple("__key__", "cls"))
    assert result.manifest["image_id"].tolist() == [k for k, _ in theirs]
    assert result.manifest["label"].tolist() == [int(c) for _, c in theirs]
    for (key, _), path in zip(theirs, result.manifest["path"], strict=True):
        assert np.array_equal(np.asarray(load_rgb(path)), np.asarray(Image.open(io.BytesIO(_jpeg(int(key[-3:]))))))
