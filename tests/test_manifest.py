from __future__ import annotations

import pandas as pd
import pytest

from iqa_lib import imagenet
from iqa_lib.data.assemble import build_manifest
from iqa_lib.data.labels import read_labels_file
from iqa_lib.data.manifest import (
    MANIFEST_COLUMNS,
    ManifestError,
    failures_path,
    manifest_classes,
    manifest_classnames,
    read_manifest,
    write_manifest,
)
from iqa_lib.data.scan import clean_images, scan_imagenet_c, scan_labelled_folder
from tests.conftest import GOLDFISH, TENCH, write_image


def test_label_space_is_all_1000_sorted_wnids():
    w = imagenet.wnids()
    assert len(w) == 1000 and list(w) == sorted(w)
    assert imagenet.label_of(TENCH) == 0 and imagenet.label_of(GOLDFISH) == 1
    assert imagenet.label_of("n15075141") == 999
    assert imagenet.class_name(0) == "tench"
    with pytest.raises(KeyError, match="n99999999"):
        imagenet.label_of("n99999999")


def test_class_subfolders_use_the_global_imagenet_index(tmp_path):
    # Only one class present: its label must still be its index among all 1000 wnids.
    write_image(tmp_path / GOLDFISH / "a.jpg")
    write_image(tmp_path / GOLDFISH / "b.png")
    df, classes = scan_labelled_folder(tmp_path)
    assert classes is None
    assert df["label"].tolist() == [1, 1]
    assert df["image_id"].tolist() == ["a", "b"]
    assert set(df["corruption"]) == {"clean"} and set(df["severity"]) == {0}


def test_own_class_folders_get_their_own_labels(tmp_path):
    write_image(tmp_path / "dogs" / "d1.jpg")
    write_image(tmp_path / "cats" / "c1.jpg")
    result = build_manifest(clean_root=tmp_path, progress=False)
    assert result.classes == ["cats", "dogs"]
    assert dict(zip(result.manifest["image_id"], result.manifest["label"], strict=True)) == {"c1": 0, "d1": 1}
    path = write_manifest(result, tmp_path / "m.parquet")
    assert manifest_classes(path) == ["cats", "dogs"]


def test_flat_wnid_named_files(tmp_path):
    write_image(tmp_path / f"{TENCH}_tench.JPEG")
    write_image(tmp_path / f"{GOLDFISH}_goldfish.JPEG")
    df, _ = scan_labelled_folder(tmp_path)
    assert dict(zip(df["image_id"], df["label"], strict=True)) == {f"{TENCH}_tench": 0, f"{GOLDFISH}_goldfish": 1}


@pytest.mark.parametrize(
    "content",
    [
        "img_1.JPEG n01443537\nimg_2.JPEG 0\n",
        "file,label\nimg_1.JPEG,n01443537\nimg_2,0\n",
        "ImageId,PredictionString\nimg_1,n01443537 10 20 30 40\nimg_2,n01440764 1 2 3 4\n",
        "img_1\t1\nimg_2\t0\n",
    ],
)
def test_flat_folder_with_labels_file(tmp_path, content):
    root = tmp_path / "val"
    write_image(root / "img_1.JPEG")
    write_image(root / "img_2.JPEG")
    labels = tmp_path / "labels.txt"
    labels.write_text(content)
    assert read_labels_file(labels) == {"img_1": 1, "img_2": 0}
    df, _ = scan_labelled_folder(root, labels)
    assert dict(zip(df["image_id"], df["label"], strict=True)) == {"img_1": 1, "img_2": 0}


def test_labels_file_errors(tmp_path):
    write_image(tmp_path / "val" / "img_1.JPEG")
    labels = tmp_path / "labels.txt"
    labels.write_text("other.JPEG n01443537\n")
    with pytest.raises(ManifestError, match="no entry in labels file"):
        scan_labelled_folder(tmp_path / "val", labels)
    labels.write_text("img_1.JPEG 1000\n")
    with pytest.raises(ManifestError, match=r"labels.txt:1: label 1000 is outside 0-999"):
        read_labels_file(labels)
    labels.write_text("img_1.JPEG n99999999\n")
    with pytest.raises(ManifestError, match="not one of the 1000"):
        read_labels_file(labels)
    with pytest.raises(ManifestError, match="does not exist"):
        read_labels_file(tmp_path / "none.txt")


def test_folder_errors_say_what_to_do(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        scan_labelled_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="empty or has an unknown layout"):
        scan_labelled_folder(tmp_path / "empty")
    write_image(tmp_path / "flat" / "holiday.jpg")
    with pytest.raises(ManifestError, match="labels file"):
        scan_labelled_folder(tmp_path / "flat")
    (tmp_path / "classes" / TENCH).mkdir(parents=True)
    with pytest.raises(ManifestError, match="hold no images"):
        scan_labelled_folder(tmp_path / "classes")
    with pytest.raises(ManifestError, match="give a clean image folder"):
        build_manifest()


def make_tree(root, ids=("a", "b"), corruptions=("fog", "snow"), severities=(1, 2)):
    """A clean class-folder tree and the matching ImageNet-C tree."""
    clean, imc = root / "clean", root / "imagenet-c"
    for i, image_id in enumerate(ids):
        wnid = (TENCH, GOLDFISH)[i % 2]
        write_image(clean / wnid / f"{image_id}.JPEG", seed=i)
        for c in corruptions:
            for s in severities:
                write_image(imc / c / str(s) / wnid / f"{image_id}.JPEG", seed=i)
    return clean, imc


def test_imagenet_c_tree_joins_clean_images(tmp_path):
    clean, imc = make_tree(tmp_path)
    (imc / "corrupt_failures.csv").write_text("stray file at the root is ignored\n")
    result = build_manifest(clean, imc, progress=False)
    df = result.manifest
    assert list(df.columns) == list(MANIFEST_COLUMNS)
    assert len(df) == 2 + 2 * 2 * 2
    # clean first, then corruptions in the ImageNet-C order, severities ascending
    assert df["corruption"].tolist()[:2] == ["clean", "clean"]
    assert df["corruption"].drop_duplicates().tolist() == ["clean", "snow", "fog"]
    assert (df.groupby("image_id")["label"].nunique() == 1).all()
    assert df.set_index("image_id")["label"].to_dict() == {"a": 0, "b": 1}
    assert result.failures.empty
    subset = build_manifest(clean, imc, corruptions=["fog"], severities=[2], progress=False).manifest
    assert subset.groupby(["corruption", "severity"]).size().to_dict() == {("clean", 0): 2, ("fog", 2): 2}


def test_imagenet_c_layout_errors(tmp_path):
    _, imc = make_tree(tmp_path, ids=("a",), corruptions=("fog",), severities=(1,))
    (imc / "blurry").mkdir()
    with pytest.raises(ManifestError, match="unknown corruption folder .*blurry.*valid names: gaussian_noise"):
        scan_imagenet_c(imc)
    (imc / "blurry").rmdir()
    (imc / "fog" / "7").mkdir()
    with pytest.raises(ManifestError, match="not one of 1-5"):
        scan_imagenet_c(imc)
    (imc / "fog" / "7").rmdir()
    (imc / "fog" / "1" / "cats").mkdir()
    with pytest.raises(ManifestError, match="not an ImageNet-1k wnid"):
        scan_imagenet_c(imc)
    (tmp_path / "bare").mkdir()
    with pytest.raises(ManifestError, match="iqa-kit corrupt"):
        scan_imagenet_c(tmp_path / "bare")


def test_disagreeing_labels_and_duplicate_ids_are_errors(tmp_path):
    clean, imc = make_tree(tmp_path, ids=("a",), corruptions=("fog",), severities=(1,))
    moved = imc / "fog" / "1" / GOLDFISH
    (imc / "fog" / "1" / TENCH).rename(moved)
    with pytest.raises(ManifestError, match="different labels"):
        build_manifest(clean, imc, progress=False)
    write_image(clean / GOLDFISH / "a.png")
    with pytest.raises(ManifestError, match="share an image_id"):
        build_manifest(clean, progress=False)


def test_bad_images_go_to_the_failures_file(tmp_path):
    root = tmp_path / "clean"
    write_image(root / TENCH / "good.jpg")
    write_image(root / TENCH / "gray.png", mode="L")
    write_image(root / TENCH / "cmyk.jpg", mode="CMYK")
    write_image(root / TENCH / "rgba.png", mode="RGBA")
    write_image(root / TENCH / "palette.png", mode="P")
    write_image(root / TENCH / "deep.png", mode="I;16")
    (root / TENCH / "zero.jpg").write_bytes(b"")
    data = write_image(tmp_path / "big.jpg", size=(128, 128)).read_bytes()
    (root / TENCH / "trunc.jpg").write_bytes(data[: len(data) // 2])
    result = build_manifest(root, progress=False)
    assert sorted(result.manifest["image_id"]) == ["cmyk", "deep", "good", "gray", "palette", "rgba"]
    reasons = dict(zip(result.failures["image_id"], result.failures["reason"], strict=True))
    assert reasons["zero"] == "zero-byte file" and "truncated" in reasons["trunc"]
    out = write_manifest(result, tmp_path / "out" / "manifest.parquet")
    written = pd.read_csv(failures_path(out))
    assert list(written.columns) == ["image_id", "corruption", "severity", "path", "reason"]
    assert sorted(written["image_id"]) == ["trunc", "zero"]
    # a header-only check is fast and still catches the empty file
    header = build_manifest(root, check="header", progress=False)
    assert header.failures["image_id"].tolist() == ["zero"]


def test_checks_run_in_parallel_with_the_same_answer(tmp_path):
    root = tmp_path / "clean"
    for i in range(70):
        write_image(root / TENCH / f"img{i:03d}.png", size=(8, 8), seed=i)
    (root / TENCH / "img000.png").write_bytes(b"")
    one = build_manifest(root, workers=1, progress=False)
    two = build_manifest(root, workers=2, progress=False)
    pd.testing.assert_frame_equal(one.manifest, two.manifest)
    pd.testing.assert_frame_equal(one.failures, two.failures)
    assert len(two.failures) == 1


def test_write_read_round_trip_and_clean_images(tmp_path):
    clean, imc = make_tree(tmp_path)
    result = build_manifest(clean, imc, progress=False)
    path = write_manifest(result, tmp_path / "m.parquet")
    back = read_manifest(path)
    pd.testing.assert_frame_equal(back, result.manifest, check_dtype=False)
    assert back["label"].dtype == "int64" and back["severity"].dtype == "int64"
    assert len(clean_images(path)) == 2
    assert len(clean_images(clean)) == 2
    with pytest.raises(ManifestError, match="build it with `iqa-kit manifest`"):
        read_manifest(tmp_path / "none.parquet")
    pd.DataFrame({"image_id": ["x"]}).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ManifestError, match="lacks column"):
        read_manifest(tmp_path / "bad.parquet")


def test_shared_sample_labels_match_wnids(imagenet_sample):
    result = build_manifest(imagenet_sample, check="header", progress=False)
    df = result.manifest
    assert len(df) == 500 and result.failures.empty
    wnids = df["image_id"].str.split("_").str[0]
    assert (df["label"] == wnids.map(imagenet.label_of)).all()
    assert (df["label"] % 2 == 0).all()


def test_clean_images_refuses_own_classes(tmp_path):
    write_image(tmp_path / "dogs" / "d1.jpg")
    with pytest.raises(ManifestError, match="its own classes"):
        clean_images(tmp_path)


# ------------------------------------------------------------------ layouts that used to mislead
WNIDS = ("n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331")


def test_wnid_class_folders_mixed_with_another_folder_are_refused(tmp_path):
    for i, wnid in enumerate(WNIDS):
        write_image(tmp_path / wnid / f"{wnid}_{i}.JPEG", size=(8, 8))
    write_image(tmp_path / "other" / "x.JPEG", size=(8, 8))
    with pytest.raises(ManifestError, match=r"mixes 6 wnid-named class folder\(s\) with 1 other.*'other'.*rename or move"):
        scan_labelled_folder(tmp_path)
    (tmp_path / "other" / "x.JPEG").unlink()
    (tmp_path / "other").rmdir()
    df, classes = scan_labelled_folder(tmp_path)  # all wnid: ImageNet labels
    assert classes is None and sorted(df["label"]) == [imagenet.label_of(w) for w in WNIDS]


def test_top_level_images_beside_a_sub_folder_are_refused(tmp_path):
    for i, wnid in enumerate(WNIDS[:3]):
        write_image(tmp_path / f"{wnid}_{i}.JPEG", size=(8, 8))
    write_image(tmp_path / "stray" / "y.JPEG", size=(8, 8))
    with pytest.raises(ManifestError, match=r"3 image file\(s\) at its top level.*'stray'.*Move the images into class"):
        scan_labelled_folder(tmp_path)
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"{w}_{i} {w}\n" for i, w in enumerate(WNIDS[:3])) + f"y {TENCH}\n")
    df, _ = scan_labelled_folder(tmp_path, labels)  # a labels file labels every image below
    assert len(df) == 4


def test_own_class_folders_stay_valid(tmp_path):
    for name in ("cat", "dog", "car"):
        write_image(tmp_path / name / f"{name}1.png", size=(8, 8))
    df, classes = scan_labelled_folder(tmp_path)
    assert classes == ["car", "cat", "dog"]
    assert dict(zip(df["image_id"], df["label"], strict=True)) == {"car1": 0, "cat1": 1, "dog1": 2}


def test_empty_non_image_and_imageless_class_folders_are_named(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("x")
    with pytest.raises(ManifestError, match="holds no image files, only other files.*notes.txt"):
        scan_labelled_folder(tmp_path / "docs")
    write_image(tmp_path / "own" / "cat" / "c.png", size=(8, 8))
    (tmp_path / "own" / "dog").mkdir()
    (tmp_path / "own" / "dog" / "readme.md").write_text("x")
    with pytest.raises(ManifestError, match=r"1 class folder\(s\) of .* hold no images: 'dog'; remove them"):
        scan_labelled_folder(tmp_path / "own")


def test_scanning_skips_hidden_files_and_keeps_path_order(tmp_path):
    write_image(tmp_path / "a" / "x.png", size=(8, 8))
    write_image(tmp_path / "a" / ".x.png", size=(8, 8))  # e.g. macOS '._' files
    write_image(tmp_path / "a" / "sub" / "y.png", size=(8, 8))
    write_image(tmp_path / "a-b" / "z.png", size=(8, 8))
    df, classes = scan_labelled_folder(tmp_path)
    assert classes == ["a", "a-b"] and df["image_id"].tolist() == ["y", "x", "z"]


# ------------------------------------------------------------------ classnames files
def _own(root):
    for name in ("golden_retriever", "tabby"):
        write_image(root / name / f"{name}.png", size=(8, 8))
    return root


@pytest.mark.parametrize(
    "content",
    ["golden retriever\ntabby, tabby cat\n", "tabby,tabby, tabby cat\ngolden_retriever,golden retriever\n",
     "folder\tname\ngolden_retriever\tgolden retriever\ntabby\ttabby, tabby cat\n"],
)
def test_classnames_file_names_own_classes(tmp_path, content):
    (tmp_path / "names.txt").write_text(content)
    result = build_manifest(_own(tmp_path / "d"), classnames_file=tmp_path / "names.txt", progress=False)
    assert result.classnames == ["golden retriever", "tabby, tabby cat"]
    path = write_manifest(result, tmp_path / "m.parquet")
    assert manifest_classnames(path) == ["golden retriever", "tabby, tabby cat"]
    assert manifest_classes(path) == ["golden_retriever", "tabby"]


def test_classnames_file_errors(tmp_path):
    root = _own(tmp_path / "d")
    names = tmp_path / "names.txt"
    names.write_text("a\nb\nc\n")
    with pytest.raises(ManifestError, match=r"has 3 name\(s\) for 2 classes"):
        build_manifest(root, classnames_file=names, progress=False)
    names.write_text("tabby,cat\nhusky,dog\n")
    with pytest.raises(ManifestError, match="'husky'.*lacks class folder.*'golden_retriever'"):
        build_manifest(root, classnames_file=names, progress=False)
    write_image(tmp_path / "inet" / TENCH / "t.png", size=(8, 8))
    with pytest.raises(ManifestError, match="ImageNet-labelled dataset; the kit knows ImageNet's"):
        build_manifest(tmp_path / "inet", classnames_file=names, progress=False)


def test_imagenet_c_tree_of_own_classes(tmp_path):
    clean = _own(tmp_path / "clean")
    imc = tmp_path / "imc"
    for name in ("golden_retriever", "tabby"):
        write_image(imc / "fog" / "1" / name / f"{name}.JPEG", size=(8, 8))
    result = build_manifest(clean, imc, progress=False)
    assert result.classes == ["golden_retriever", "tabby"]
    assert (result.manifest.groupby("image_id")["label"].nunique() == 1).all()
    assert sorted(result.manifest.loc[result.manifest["corruption"] == "fog", "label"]) == [0, 1]
    write_image(imc / "fog" / "1" / "husky" / "h.JPEG", size=(8, 8))
    with pytest.raises(ManifestError, match="not classes of the clean folder: 'husky'"):
        build_manifest(clean, imc, progress=False)


@pytest.mark.parametrize("check", ["full", "header", "none"])
def test_dangling_and_looping_links_to_images_are_listed_not_skipped(tmp_path, check):
    from iqa_lib.data.sources import dataset_manifest

    clean, imc = make_tree(tmp_path, ids=("a",), corruptions=("fog",), severities=(1,))
    (clean / TENCH / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (clean / TENCH / "loop.jpg").symlink_to(clean / TENCH / "loop.jpg")
    (imc / "fog" / "1" / TENCH / "gone.JPEG").symlink_to("missing.JPEG")
    result = build_manifest(clean, imc, check=check, progress=False)
    assert result.manifest["image_id"].tolist() == ["a", "a"]
    reasons = {(r.image_id, r.corruption): r.reason for r in result.failures.itertuples()}
    assert reasons == {
        ("gone", "clean"): "broken symbolic link",
        ("loop", "clean"): "symbolic link loop",
        ("gone", "fog"): "broken symbolic link",
    }
    # a flat folder without labels (an unlabelled manifest) and an image list do the same
    flat = tmp_path / "flat"
    write_image(flat / "b.png")
    (flat / "c.png").symlink_to(flat / "none.png")
    (flat / "d.png").symlink_to(flat / "d.png")
    unlabelled = dataset_manifest(flat, check=check, progress=False)
    assert dict(zip(unlabelled.failures["image_id"], unlabelled.failures["reason"], strict=True)) == {
        "c.png": "broken symbolic link", "d.png": "symbolic link loop",
    }
    listed = tmp_path / "list.csv"
    listed.write_text("path\nflat/b.png\nflat/c.png\nflat/d.png\n")
    result = dataset_manifest(listed, check=check, progress=False)
    assert result.failures["reason"].tolist() == ["broken symbolic link", "symbolic link loop"]


def test_workers_must_be_positive(tmp_path):
    write_image(tmp_path / TENCH / "a.png")
    for bad in (0, -2, 1.5):
        with pytest.raises(ManifestError, match=f"workers must be a whole number of at least 1, got {bad}"):
            build_manifest(tmp_path, workers=bad, progress=False)


@pytest.mark.parametrize("check", ["full", "none"])
def test_images_in_formats_the_kit_does_not_read_are_listed_not_skipped(tmp_path, check):
    """A .heic or a camera raw among the images is a failure row naming the format, whatever the layout."""
    from iqa_lib.data.scan import images_manifest
    from iqa_lib.data.sources import dataset_manifest

    clean, imc = make_tree(tmp_path, ids=("a",), corruptions=("fog",), severities=(1,))
    (clean / TENCH / "phone.heic").write_bytes(b"ftypheic")
    (imc / "fog" / "1" / TENCH / "raw.DNG").write_bytes(b"II*\x00")
    result = build_manifest(clean, imc, check=check, progress=False)
    assert result.manifest["image_id"].tolist() == ["a", "a"]
    reasons = {(r.image_id, r.corruption): r.reason for r in result.failures.itertuples()}
    assert set(reasons) == {("phone", "clean"), ("raw", "fog")}
    assert reasons[("phone", "clean")].startswith("unsupported image format (.heic): convert it to one of")
    assert reasons[("raw", "fog")].startswith("unsupported image format (.dng)")
    # a flat wnid-named folder, an unlabelled one, and a folder scored directly do the same
    named = tmp_path / "named"
    write_image(named / f"{TENCH}_b.png")
    (named / f"{TENCH}_c.avif").write_bytes(b"....ftypavif")
    assert build_manifest(named, check=check, progress=False).failures["image_id"].tolist() == [f"{TENCH}_c"]
    flat = tmp_path / "flat"
    write_image(flat / "b.png")
    (flat / "c.jxl").write_bytes(b"\xff\x0a")
    assert dataset_manifest(flat, check=check, progress=False).failures["image_id"].tolist() == ["c.jxl"]
    assert images_manifest(flat)["image_id"].tolist() == ["b.png", "c.jxl"]  # scoring lists it


def test_scoring_names_the_unsupported_format(tmp_path):
    from iqa_lib.data.images import ImageDecodeError, load_rgb

    path = tmp_path / "x.heic"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic")
    with pytest.raises(ImageDecodeError, match=r"unsupported image format \(.heic\)"):
        load_rgb(path)
