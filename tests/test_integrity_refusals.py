"""What the kit refuses or re-does rather than trust (issue 22, item 5).

Rendered outputs that no longer decode, labels that read as missing values,
image ids that are no safe relative name, devices that do not exist, and file
names that are not UTF-8 through ``score --images`` and ``audit``.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile

import pandas as pd
import pytest
from PIL import Image

from iqa_lib.data import imagenet_c_render as C
from iqa_lib.data.manifest import ManifestError
from iqa_lib.data.sources import dataset_manifest
from tests.conftest import TENCH, write_image


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 20), (120, 30, 200)).save(buf, "JPEG")
    return buf.getvalue()


def _tar(path, members: list[tuple[str, bytes]]):
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


# --------------------------------------------------------------------- corrupt: outputs must decode
def _clean(folder) -> pd.DataFrame:
    paths = [write_image(folder / f"{TENCH}_{i}.png", size=(60, 50), seed=i) for i in range(2)]
    return pd.DataFrame({"image_id": [p.stem for p in paths], "label": 0, "path": [str(p) for p in paths]})


def _render(clean: pd.DataFrame, out) -> C.GenerationReport:
    return C.generate_imagenet_c(clean, out, ["contrast"], [1, 2], workers=1, progress=False)


def test_corrupt_renders_again_an_output_that_does_not_decode(tmp_path):
    clean, out = _clean(tmp_path / "src"), tmp_path / "out"
    _render(clean, out)
    outputs = sorted(out.rglob("*.JPEG"))
    whole = {p: p.read_bytes() for p in outputs}
    outputs[0].write_bytes(whole[outputs[0]][: len(whole[outputs[0]]) // 2])  # a cut copy
    outputs[1].write_bytes(b"")  # an empty file
    damaged = bytearray(whole[outputs[2]])
    damaged[2:40] = b"\0" * 38  # a damaged header, whole length
    outputs[2].write_bytes(bytes(damaged))
    report = _render(clean, out)
    assert (report.written, report.skipped, report.rerendered) == (3, 1, 3)
    assert {p: p.read_bytes() for p in outputs} == whole
    for path in outputs:
        with Image.open(path) as image:
            image.load()


def test_corrupt_command_says_how_many_outputs_it_renders_again(tmp_path, capsys):
    from iqa_lib.cli import main

    _clean(tmp_path / "src")
    argv = ["corrupt", "--src", str(tmp_path / "src"), "--out", str(tmp_path / "out"),
            "--corruptions", "contrast", "--severities", "1", "--workers", "1", "--no-progress"]
    assert main(argv) == 0
    first = sorted((tmp_path / "out").rglob("*.JPEG"))[0]
    first.write_bytes(first.read_bytes()[:100])
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "written 1, skipped 1" in out
    assert "1 existing output(s) did not decode" in out


# --------------------------------------------------------------------- labels that read as missing
MISSING = ["NaN", "NA", "nan", "None", "null", "", "n/a", "<NA>"]


def _two_images(folder) -> None:
    for i, name in enumerate("ab"):
        write_image(folder / f"{name}.png", size=(8, 8), seed=i)


@pytest.mark.parametrize("value", MISSING)
@pytest.mark.parametrize("suffix, sep", [(".csv", ","), (".tsv", "\t")])
def test_a_list_label_that_reads_as_missing_is_refused_with_its_row(tmp_path, value, suffix, sep):
    _two_images(tmp_path)
    listing = tmp_path / f"list{suffix}"
    listing.write_text(f"path{sep}label\na.png{sep}cat\n\nb.png{sep}{value}\n")  # a blank line too
    with pytest.raises(ManifestError) as err:
        dataset_manifest(listing, progress=False)
    message = str(err.value)
    assert str(listing) in message and "row(s) 2 (line(s) 4)" in message
    assert repr(value) in message and "never a class" in message and "label every image" in message


@pytest.mark.parametrize("value", ["NaN", "null", None, float("nan")])
def test_a_parquet_list_label_that_reads_as_missing_is_refused(tmp_path, value):
    _two_images(tmp_path)
    pd.DataFrame({"path": [str(tmp_path / "a.png"), str(tmp_path / "b.png")],
                  "label": ["cat", value]}).to_parquet(tmp_path / "l.parquet")
    with pytest.raises(ManifestError, match=r"row\(s\) 2.*never a class"):
        dataset_manifest(tmp_path / "l.parquet", progress=False)


def test_a_labels_file_label_that_reads_as_missing_names_the_line(tmp_path):
    _two_images(tmp_path)
    labels = tmp_path / "labels.txt"
    labels.write_text(f"# mine\na.png {TENCH}\n\nb.png NaN\n")
    with pytest.raises(ManifestError, match=r"labels\.txt:4: label 'NaN' .*never a class"):
        dataset_manifest(tmp_path, labels_file=labels, progress=False)


@pytest.mark.parametrize("ext, data", [("txt", b"nan"), ("txt", b"None"), ("json", b'"NaN"'),
                                       ("json", b'{"label": null}'), ("json", b'{"cls": "NA"}')])
def test_a_shard_label_that_reads_as_missing_is_refused_naming_the_member(tmp_path, ext, data):
    shard = _tar(tmp_path / "s.tar", [("k0.jpg", _jpeg()), (f"k0.{ext}", b'"dog"' if ext == "json" else b"dog"),
                                      ("k1.jpg", _jpeg()), (f"k1.{ext}", data)])
    with pytest.raises(ManifestError) as err:
        dataset_manifest(shard, progress=False)
    assert f"s.tar::k1.{ext}" in str(err.value) and "never a class" in str(err.value)


# --------------------------------------------------------------------- image ids: safe relative names
UNSAFE_IDS = ["../x", "a/../../x", "/etc/x", "..\\x", "a\\..\\x", "\\\\server\\x", "C:\\x", "x\0y"]


@pytest.mark.parametrize("image_id", UNSAFE_IDS)
def test_a_list_with_an_unsafe_image_id_is_refused_naming_the_row(tmp_path, image_id):
    _two_images(tmp_path)
    pd.DataFrame({"path": ["a.png", "b.png"], "image_id": ["a", image_id]}).to_csv(tmp_path / "l.csv", index=False)
    with pytest.raises(ManifestError) as err:
        dataset_manifest(tmp_path / "l.csv", progress=False)
    message = str(err.value)
    assert "l.csv" in message and "row(s) 2 (line(s) 3)" in message and repr(image_id) in message
    assert "safe relative name" in message


@pytest.mark.parametrize("image_id", ["../x", "/abs/x", "a\\..\\x"])
def test_a_manifest_with_an_unsafe_image_id_is_refused_naming_the_row(tmp_path, image_id):
    from iqa_lib.data.manifest import read_manifest

    write_image(tmp_path / "a.png", size=(8, 8))
    rows = {"image_id": ["ok", image_id, "fine"], "label": 0, "corruption": "clean", "severity": 0,
            "path": str(tmp_path / "a.png")}
    pd.DataFrame(rows).to_parquet(tmp_path / "m.parquet")
    with pytest.raises(ManifestError, match=r"m\.parquet.*row\(s\) 2.*safe relative name") as err:
        read_manifest(tmp_path / "m.parquet")
    assert repr(image_id) in str(err.value)


def test_safe_ids_pass_and_a_shard_member_with_backslash_traversal_is_a_failure_row(tmp_path):
    from iqa_lib.data.manifest import unsafe_image_id

    assert not any(map(unsafe_image_id, ["a", "a/b", "k..2", "..a", "a..", "n01440764_1.JPEG", "ab:c"]))
    assert all(map(unsafe_image_id, UNSAFE_IDS))
    shard = _tar(tmp_path / "s.tar", [("k0.jpg", _jpeg()), ("..\\k1.jpg", _jpeg())])
    result = dataset_manifest(shard, progress=False)
    assert result.manifest["image_id"].tolist() == ["k0"]
    assert result.failures["path"].str.endswith("::..\\k1.jpg").tolist() == [True]
    assert "unsafe member name" in result.failures["reason"].iloc[0]


# --------------------------------------------------------------------- devices checked before any scan
def _absent_device() -> str:
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    return "cuda:7"


def _no_scan(monkeypatch, *targets: tuple[object, str]) -> None:
    def scanned(*args, **kwargs):
        raise AssertionError("the images were scanned before the device was checked")

    for module, name in targets:
        monkeypatch.setattr(module, name, scanned)


@pytest.mark.parametrize("command", ["audit", "score"])
def test_a_device_that_is_not_there_fails_in_one_line_before_any_scan(tmp_path, monkeypatch, capsys, command):
    from iqa_lib.cli import main
    from iqa_lib.pipeline import audit, score

    device = _absent_device()
    _two_images(tmp_path / "imgs")
    # where the stages call them (imported there at module level, so patched there)
    _no_scan(monkeypatch, (audit, "dataset_manifest"), (score, "images_manifest"))
    if command == "audit":
        argv = ["audit", str(tmp_path / "imgs"), "--scorer", "tv", "--out", str(tmp_path / "out")]
    else:
        argv = ["score", "--images", str(tmp_path / "imgs"), "--scorer", "tv", "--out", str(tmp_path / "s.parquet")]
    assert main([*argv, "--device", device, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"'{device}'" in err and "--device" in err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("s.*"))


def test_score_of_a_manifest_checks_the_device_before_reading_it(tmp_path, monkeypatch):
    from iqa_lib.scoring import engine

    device = _absent_device()
    _no_scan(monkeypatch, (engine, "read_manifest"))
    with pytest.raises(RuntimeError, match=device):
        engine.run_scoring("tv", tmp_path / "m.parquet", tmp_path / "s.parquet", device=device, progress=False)


# --------------------------------------------------------------------- names that are not UTF-8, end to end
def _folder_with_a_latin1_name(folder) -> None:
    _two_images(folder)
    with open(os.fsencode(folder) + b"/caf\xe9.png", "wb") as fh:
        fh.write((folder / "a.png").read_bytes())


def _the_latin1_row(failures: pd.DataFrame) -> None:
    from iqa_lib.data.images import NOT_UTF8

    assert failures["reason"].tolist() == [NOT_UTF8], failures
    assert failures["path"].iloc[0].endswith("caf\\xe9.png")


@pytest.mark.skipif(sys.platform != "linux", reason="byte file names are a POSIX matter")
def test_score_images_lists_a_name_that_is_not_utf8_and_scores_the_rest(tmp_path, capsys):
    from iqa_lib.cli import main

    _folder_with_a_latin1_name(tmp_path / "imgs")
    out = tmp_path / "tv.parquet"
    assert main(["score", "--images", str(tmp_path / "imgs"), "--scorer", "tv", "--out", str(out),
                 "--device", "cpu", "--num-workers", "0", "--no-progress"]) == 0
    assert sorted(pd.read_parquet(out)["image_id"]) == ["a.png", "b.png"]
    _the_latin1_row(pd.read_csv(tmp_path / "tv.failures.csv"))
    assert "2 rows scored; 1 failed" in capsys.readouterr().out


@pytest.mark.skipif(sys.platform != "linux", reason="byte file names are a POSIX matter")
def test_audit_lists_a_name_that_is_not_utf8_and_scores_the_rest(tmp_path):
    import json

    from iqa_lib.cli import main

    _folder_with_a_latin1_name(tmp_path / "imgs")
    out = tmp_path / "audit"
    assert main(["audit", str(tmp_path / "imgs"), "--scorer", "tv", "--out", str(out), "--no-report",
                 "--no-progress", "--device", "cpu", "--num-workers", "0"]) == 0
    _the_latin1_row(pd.read_csv(out / "manifest.failures.csv"))
    assert sorted(pd.read_parquet(out / "scores" / "tv.parquet")["image_id"]) == ["a.png", "b.png"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scorers"]["tv"]["variables"]["q"]["n"] == 2


# --------------------------------------------------------------------- data.max_pixels in params
@pytest.fixture
def pixel_limit(monkeypatch):
    """Put Pillow's limit and its environment variable back after the test."""
    from iqa_lib.data.images import MAX_PIXELS_ENV

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)


@pytest.mark.parametrize("value, ok", [(None, True), (1000, True), (True, False), ("1000", False),
                                       (0, False), (2.5, False)])
def test_data_max_pixels_is_a_strict_optional_count(value, ok):
    from iqa_lib.config import ConfigError, validate_params

    if ok:
        assert validate_params({"data": {"max_pixels": value}}).data.max_pixels == value
        return
    with pytest.raises(ConfigError, match="data.max_pixels"):
        validate_params({"data": {"max_pixels": value}})


def _params_with_limit(tmp_path, limit: int) -> str:
    (tmp_path / "params.yaml").write_text(
        f"data:\n  clean_root: {tmp_path / 'clean'}\n  generate_corruptions: false\n  max_pixels: {limit}\n"
        "scorers:\n  tv: tv\n"
    )
    return str(tmp_path / "params.yaml")


def test_manifest_from_params_applies_data_max_pixels_and_the_flag_wins(tmp_path, monkeypatch, pixel_limit):
    from iqa_lib.cli import main

    write_image(tmp_path / "clean" / TENCH / "small.png", size=(8, 8))
    write_image(tmp_path / "clean" / TENCH / "big.png", size=(40, 40))  # 1600 px: over twice 500
    params, out = _params_with_limit(tmp_path, 500), tmp_path / "m.parquet"
    assert main(["manifest", "--params", params, "--out", str(out)]) == 0
    failures = pd.read_csv(tmp_path / "m.failures.csv")
    assert failures["path"].str.endswith("big.png").tolist() == [True]
    assert "image too large" in failures["reason"].iloc[0]
    assert main(["manifest", "--params", params, "--out", str(out), "--max-pixels", "10000"]) == 0
    assert len(pd.read_parquet(out)) == 2


def test_score_from_params_applies_data_max_pixels_and_the_flag_wins(tmp_path, monkeypatch, pixel_limit):
    from iqa_lib.pipeline import score

    params = _params_with_limit(tmp_path, 500)
    seen = []
    monkeypatch.setattr(score, "run_scoring", lambda *a, **k: seen.append(Image.MAX_IMAGE_PIXELS))
    monkeypatch.setattr(score, "_declare_logits", lambda *a: None)  # nothing was scored to declare
    score.score(score.options_from_params("tv", params, alone=True))
    score.score(score.options_from_params("tv", params, alone=True, max_pixels=7000))
    assert seen == [500, 7000]
