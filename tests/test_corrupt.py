"""ImageNet-C generation: protocol, determinism, resumability, failures, command."""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from iqa_lib import fileio  # noqa: E402
from iqa_lib.data import imagenet_c_render as C  # noqa: E402
from iqa_lib.imagenet import wnid_of  # noqa: E402
from tests.conftest import fail_one_render  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "shared/data/imagenet-sample"

# Fast subset that still covers every RNG path: numpy global (gaussian_noise, motion_blur,
# frost, elastic_transform), scikit-image rng (impulse_noise) and numba (glass_blur).
SUBSET = (
    "gaussian_noise",
    "impulse_noise",
    "glass_blur",
    "motion_blur",
    "frost",
    "elastic_transform",
)
SEVS = (1, 5)
# Corruptions whose output depends on the seed (the others are deterministic transforms).
RANDOM_CORRUPTIONS = {
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "speckle_noise",
    "glass_blur",
    "motion_blur",
    "snow",
    "frost",
    "fog",
    "spatter",
    "elastic_transform",
}


def _synthetic_images(folder: Path) -> pd.DataFrame:
    """Five small images of awkward sizes and modes, with their clean rows."""
    rng = np.random.default_rng(0)
    specs = [  # image_id, label, (w, h), mode, extension
        ("img_a", 0, (40, 30), "RGB", ".JPEG"),  # smaller than 224: upscaled
        ("img_b", 1, (300, 200), "RGB", ".png"),
        ("img_c", 2, (256, 256), "L", ".png"),  # grayscale, already 256
        ("img_d", 999, (500, 90), "RGB", ".jpg"),  # elongated
        ("img_e", 500, (64, 80), "RGBA", ".png"),  # alpha
    ]
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for image_id, label, (w, h), mode, ext in specs:
        channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
        yy, xx = np.mgrid[0:h, 0:w]
        base = ((xx * 255 // max(w - 1, 1) + yy * 128 // max(h - 1, 1)) % 256).astype(np.uint8)
        arr = np.stack([base] * channels, axis=-1) if channels > 1 else base
        arr = (arr.astype(int) + rng.integers(0, 40, arr.shape)).clip(0, 255).astype(np.uint8)
        path = folder / f"{image_id}{ext}"
        Image.fromarray(arr).save(path)
        rows.append((image_id, label, str(path)))
    return pd.DataFrame(rows, columns=["image_id", "label", "path"])


@pytest.fixture()
def clean(tmp_path: Path) -> pd.DataFrame:
    return _synthetic_images(tmp_path / "src")


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.JPEG"))}


def _stats(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*.JPEG"))
    }


def _generate(clean: pd.DataFrame, out: Path, workers: int = 1, **kw) -> C.GenerationReport:
    kw.setdefault("corruptions", SUBSET)
    kw.setdefault("severities", SEVS)
    return C.generate_imagenet_c(clean, out, workers=workers, progress=False, **kw)


# ------------------------------------------------------------------ names and validation


def test_name_lists_match_imagecorruptions():
    from imagecorruptions import get_corruption_names

    assert list(C.COMMON_CORRUPTIONS) == get_corruption_names("common")
    assert list(C.EXTRA_CORRUPTIONS) == get_corruption_names("validation")
    assert C.SEVERITIES == (1, 2, 3, 4, 5)
    assert C.resolve_corruptions("all") == C.COMMON_CORRUPTIONS + C.EXTRA_CORRUPTIONS
    assert C.resolve_corruptions(["fog", "common"])[:2] == ("fog", "gaussian_noise")


@pytest.mark.parametrize("bad", ["gausian_noise", "clean", ""])
def test_unknown_corruption_names_the_value_and_the_valid_ones(bad):
    with pytest.raises(ValueError, match=f"unknown corruption '{bad}'.*gaussian_noise.*saturate"):
        C.resolve_corruptions([bad])


@pytest.mark.parametrize("bad", [0, 6, -1, 2.5, "x"])
def test_bad_severity_names_the_value_and_the_valid_ones(bad):
    with pytest.raises(ValueError, match=r"invalid severity .*valid severities: 1, 2, 3, 4, 5"):
        C.resolve_severities([1, bad])


def test_generate_rejects_bad_names_before_any_work(clean, tmp_path):
    with pytest.raises(ValueError, match="'fogg'"):
        _generate(clean, tmp_path / "out", corruptions=["fog", "fogg"])
    with pytest.raises(ValueError, match="invalid severity 7"):
        _generate(clean, tmp_path / "out", severities=[7])
    assert not (tmp_path / "out").exists()


def test_seed_is_a_stable_hash_not_pythons_hash():
    # Fixed values: a change here changes every rendered file of every user.
    assert C.corruption_seed("ILSVRC2012_val_00000001", "glass_blur", 3) == 4276856705
    assert C.corruption_seed("a", "fog", 1) == 2120352012
    assert C.corruption_seed("a", "fog", 2) != C.corruption_seed("a", "fog", 1)


# ------------------------------------------------------------------ protocol


@pytest.mark.parametrize(
    "size", [(40, 30), (300, 200), (256, 256), (257, 1000), (500, 90), (223, 225), (341, 256)]
)
def test_preprocess_matches_torchvision_resize_centercrop(size):
    transforms = pytest.importorskip("torchvision.transforms")
    rng = np.random.default_rng(sum(size))
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    expected = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])(img)
    got = C.preprocess_clean(img)
    assert got.size == (224, 224)
    assert np.array_equal(np.asarray(got), np.asarray(expected))


def test_render_every_corruption_is_deterministic_and_leaves_global_rng_alone(clean):
    img = Image.open(clean.loc[1, "path"]).convert("RGB")
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    for name in C.ALL_CORRUPTIONS:
        first = C.render_corruption(img, "img_b", name, 2)
        np.random.seed(12345)  # whatever the caller did to the global RNG must not matter
        second = C.render_corruption(img, "img_b", name, 2)
        assert first == second, name
        decoded = Image.open(io.BytesIO(first))
        assert decoded.format == "JPEG" and decoded.size == (224, 224) and decoded.mode == "RGB"
        if name in RANDOM_CORRUPTIONS:
            assert C.render_corruption(img, "other_id", name, 2) != first, name
        np.random.seed(7)
    assert np.array_equal(np.random.get_state()[1], before)


def test_render_follows_the_imagenet_c_protocol(clean):
    # contrast is deterministic: preprocess, corrupt, uint8 truncation, JPEG q85 optimised.
    from imagecorruptions import corrupt

    img = Image.open(clean.loc[3, "path"]).convert("RGB")
    pixels = np.asarray(C.preprocess_clean(img))
    out = np.uint8(corrupt(pixels, corruption_name="contrast", severity=4))
    buf = io.BytesIO()
    Image.fromarray(out).save(buf, format="JPEG", quality=85, optimize=True)
    assert C.render_corruption(img, "img_d", "contrast", 4) == buf.getvalue()


# ------------------------------------------------------------------ generation


def test_layout_counts_and_rerun_rewrites_nothing(clean, tmp_path):
    out = tmp_path / "out"
    report = _generate(clean, out)
    n = len(clean) * len(SUBSET) * len(SEVS)
    assert (report.written, report.skipped, report.failed, report.failures) == (n, 0, 0, [])
    expected = {
        f"{c}/{s}/{wnid_of(label)}/{image_id}.JPEG"
        for image_id, label in zip(clean["image_id"], clean["label"], strict=True)
        for c in SUBSET
        for s in SEVS
    }
    assert set(_tree(out)) == expected
    assert not (out / C.FAILURES_FILE).exists()
    others = [p.name for p in out.rglob("*") if p.is_file() and p.suffix != ".JPEG"]
    assert others == [C.RENDER_VERSIONS_FILE]  # the renderer stamp; no temp files

    stats, tree = _stats(out), _tree(out)
    again = _generate(clean, out)
    assert (again.written, again.skipped, again.failed) == (0, n, 0)
    assert _stats(out) == stats  # same inode and mtime: nothing rewritten
    assert _tree(out) == tree

    shutil.rmtree(out)
    _generate(clean, out)
    assert _tree(out) == tree  # from scratch: the same bytes


def test_a_tree_rendered_by_an_older_kit_is_refused_not_completed(clean, tmp_path):
    out = tmp_path / "out"
    old = out / "frost" / "1" / "n01440764" / "x.JPEG"  # frost from before RENDER_VERSIONS, no stamp
    old.parent.mkdir(parents=True)
    old.write_bytes(b"old")
    with pytest.raises(ValueError, match=r"frost were rendered by an older iqa-kit.*delete that folder"):
        C.generate_imagenet_c(clean, out, ["frost", "fog"], [1], workers=1, progress=False)
    assert not list((out).glob("fog"))  # refused before any work
    shutil.rmtree(out / "frost")
    report = C.generate_imagenet_c(clean, out, ["frost"], [1], workers=1, progress=False)
    assert report.written == len(clean)
    stamp = json.loads((out / C.RENDER_VERSIONS_FILE).read_text())
    assert stamp == C.RENDER_VERSIONS
    C.generate_imagenet_c(clean, out, ["frost"], [1], workers=1, progress=False)  # stamped: fine


def test_spatter_of_an_older_kit_is_refused_and_dispatched_to_the_original(clean, tmp_path):
    # spatter 2: the original's float32 mud (iqa_lib.data.imagenet_c_original), not the package's.
    from iqa_lib.data.imagenet_c_original import ORIGINAL_CORRUPTIONS

    assert C.RENDER_VERSIONS["spatter"] == 2 and "spatter" in ORIGINAL_CORRUPTIONS
    out = tmp_path / "out"
    (out / "spatter" / "4" / "n01440764").mkdir(parents=True)
    (out / "spatter" / "4" / "n01440764" / "x.JPEG").write_bytes(b"old")
    (out / C.RENDER_VERSIONS_FILE).write_text('{"elastic_transform": 2, "frost": 2}\n')
    with pytest.raises(ValueError, match=r"spatter were rendered by an older iqa-kit"):
        C.generate_imagenet_c(clean, out, ["saturate"], [1], workers=1, progress=False)


def test_one_worker_and_two_workers_give_identical_bytes(clean, tmp_path):
    one = _generate(clean, tmp_path / "one", workers=1)
    two = _generate(clean, tmp_path / "two", workers=2)
    assert one.written == two.written == len(clean) * len(SUBSET) * len(SEVS)
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two")


def test_resume_renders_only_what_is_missing(clean, tmp_path):
    out = tmp_path / "out"
    _generate(clean, out)
    tree, stats = _tree(out), _stats(out)
    removed = sorted(tree)[::17]
    for rel in removed:
        (out / rel).unlink()
    # what a killed run leaves behind: a hidden temp file, which is not an output
    leftover = out / removed[0]
    leftover.with_name(f".{leftover.name}.999.deadbeef.tmp").write_bytes(b"partial")
    report = _generate(clean, out)
    assert (report.written, report.failed) == (len(removed), 0)
    assert report.skipped == len(tree) - len(removed)
    assert _tree(out) == tree
    after = _stats(out)
    assert {k: v for k, v in after.items() if k not in removed} == {
        k: v for k, v in stats.items() if k not in removed
    }


def test_extending_severities_keeps_existing_files(clean, tmp_path):
    out = tmp_path / "out"
    _generate(clean.head(2), out, corruptions=["gaussian_noise"], severities=[1])
    stats = _stats(out)
    report = _generate(clean.head(2), out, corruptions=["gaussian_noise"], severities=[1, 3])
    assert (report.written, report.skipped) == (2, 2)
    assert {k: v for k, v in _stats(out).items() if k in stats} == stats


def test_atomic_write_never_leaves_a_partial_file_under_the_final_name(tmp_path, monkeypatch):
    target = tmp_path / "a" / "b.JPEG"

    def killed(src, dst):
        raise KeyboardInterrupt  # killed between writing the temp file and the rename

    monkeypatch.setattr(fileio.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        C.write_output(target, b"x" * 1000)
    assert list(target.parent.iterdir()) == []
    monkeypatch.undo()
    C.write_output(target, b"done")
    assert target.read_bytes() == b"done" and list(target.parent.iterdir()) == [target]


def test_undecodable_sources_are_listed_and_the_run_goes_on(clean, tmp_path):
    src = Path(clean.loc[0, "path"]).parent
    (src / "empty.JPEG").write_bytes(b"")
    (src / "garbage.JPEG").write_bytes(b"not an image at all" * 10)
    bad = pd.DataFrame(
        [
            ("empty", 3, str(src / "empty.JPEG")),
            ("garbage", 4, str(src / "garbage.JPEG")),
            ("missing", 5, str(src / "missing.JPEG")),
        ],
        columns=["image_id", "label", "path"],
    )
    out = tmp_path / "out"
    pairs = len(SUBSET) * len(SEVS)
    report = _generate(pd.concat([clean, bad]), out, workers=2)
    assert report.written == len(clean) * pairs
    assert report.failed == 3 * pairs
    failures = pd.read_csv(out / C.FAILURES_FILE, keep_default_na=False)
    assert list(failures.columns) == ["image_id", "corruption", "severity", "path", "reason"]
    reasons = dict(zip(failures["image_id"], failures["reason"], strict=True))
    assert reasons["empty"] == "zero-byte file"
    assert reasons["missing"] == "missing file"
    assert reasons["garbage"]
    assert not list(out.rglob("empty.JPEG")) and not list(out.rglob("garbage.JPEG"))

    # Once the bad sources are gone, a rerun has no failures and the stale list goes too.
    report = _generate(clean, out)
    assert (report.written, report.failed) == (0, 0)
    assert not (out / C.FAILURES_FILE).exists()


def test_a_failing_render_is_recorded_and_the_others_written(clean, tmp_path, monkeypatch):
    fail_one_render(monkeypatch, ("img_b", "frost", 5), "boom")
    out = tmp_path / "out"
    report = _generate(clean, out, workers=1)
    assert report.failed == 1
    assert report.written == len(clean) * len(SUBSET) * len(SEVS) - 1
    assert report.failures == [
        C.Failure("img_b", "frost", 5, clean.loc[1, "path"], "RuntimeError: boom")
    ]
    assert (out / C.FAILURES_FILE).read_text().count("boom") == 1


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda df: df.drop(columns="label"), r"lacks column\(s\) \['label'\]"),
        (lambda df: pd.concat([df, df.head(1)]), "occur more than once.*'img_a'"),
        (lambda df: df.assign(label=[0, 1, 2, 1000, 5]), "label 1000 of image 'img_d'"),
        (lambda df: df.assign(image_id=["a", "b/c", "d", "e", "f"]), "'b/c'"),
    ],
)
def test_bad_tables_get_clear_errors(clean, tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        _generate(change(clean), tmp_path / "out")


def test_a_whole_manifest_is_accepted_and_only_its_clean_rows_rendered(clean, tmp_path):
    manifest = pd.concat(
        [
            clean.assign(corruption="clean", severity=0),
            clean.assign(corruption="fog", severity=1),
        ]
    )
    report = _generate(manifest, tmp_path / "out", corruptions=["contrast"], severities=[1])
    assert (report.images, report.written) == (len(clean), len(clean))


def test_the_manifest_builder_reads_the_tree_back(clean, tmp_path):
    scan = pytest.importorskip("iqa_lib.data.scan")
    out = tmp_path / "out"
    _generate(clean, out)
    (out / C.FAILURES_FILE).write_text("image_id\n")  # a root-level file must not confuse it
    rows = scan.scan_imagenet_c(out)
    assert len(rows) == len(clean) * len(SUBSET) * len(SEVS)
    labels = dict(zip(clean["image_id"], clean["label"], strict=True))
    assert (rows["label"] == rows["image_id"].map(labels)).all()
    assert set(rows["corruption"]) == set(SUBSET) and set(rows["severity"]) == set(SEVS)


# ------------------------------------------------------------------ command


def _parse(argv: list[str]) -> argparse.Namespace:
    from iqa_lib.commands import corrupt as cmd

    parser = argparse.ArgumentParser(prog="iqa-kit")
    cmd.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["corrupt", *argv])


def _wnid_named_folder(clean: pd.DataFrame, folder: Path) -> Path:
    folder.mkdir()
    for image_id, label, path in clean.itertuples(index=False):
        shutil.copy(path, folder / f"{wnid_of(label)}_{image_id}{Path(path).suffix}")
    return folder


def test_command_renders_a_folder_with_limit(clean, tmp_path, capsys):
    src = _wnid_named_folder(clean, tmp_path / "named")
    out = tmp_path / "out"
    argv = [
        "--src",
        str(src),
        "--out",
        str(out),
        "--corruptions",
        "contrast",
        "fog",
        "--severities",
        "2",
        "--limit",
        "3",
        "--workers",
        "1",
        "--no-progress",
    ]
    args = _parse(argv)
    assert args.func(args) == 0
    first = sorted(
        f"{wnid_of(lab)}_{i}" for i, lab in zip(clean["image_id"], clean["label"], strict=True)
    )[:3]
    assert sorted(p.stem for p in out.rglob("*.JPEG")) == sorted(first * 2)
    assert "written 6, skipped 0" in capsys.readouterr().out
    assert args.func(args) == 0
    assert "written 0, skipped 6" in capsys.readouterr().out


def test_command_takes_a_manifest_and_renders_its_clean_rows(clean, tmp_path, capsys):
    manifest = pytest.importorskip("iqa_lib.data.manifest")
    assemble = pytest.importorskip("iqa_lib.data.assemble")
    src = _wnid_named_folder(clean, tmp_path / "named")
    path = manifest.write_manifest(
        assemble.build_manifest(src, check="none", progress=False), tmp_path / "m.parquet"
    )
    out = tmp_path / "out"
    args = _parse(
        [
            "--src",
            str(path),
            "--out",
            str(out),
            "--corruptions",
            "pixelate",
            "--severities",
            "1",
            "3",
            "--workers",
            "1",
            "--no-progress",
        ]
    )
    assert args.func(args) == 0
    assert len(list(out.rglob("*.JPEG"))) == len(clean) * 2
    assert f"written {len(clean) * 2}, skipped 0" in capsys.readouterr().out


def test_command_rejects_unknown_corruption_before_scanning(tmp_path):
    args = _parse(
        ["--src", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), "--corruptions", "snoww"]
    )
    with pytest.raises(ValueError, match="unknown corruption 'snoww'"):
        args.func(args)


def test_command_renders_own_classes_into_class_folders_and_the_manifest_reads_them(clean, tmp_path):
    from iqa_lib.data.assemble import build_manifest

    src = tmp_path / "own"
    for i, name in enumerate(("cats", "dogs")):
        (src / name).mkdir(parents=True)
        shutil.copy(clean.loc[i, "path"], src / name / f"{name}{Path(clean.loc[i, 'path']).suffix}")
    out = tmp_path / "o"
    args = _parse(["--src", str(src), "--out", str(out), "--corruptions", "contrast",
                   "--severities", "2", "--workers", "1", "--no-progress"])
    assert args.func(args) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.JPEG")) == [
        "contrast/2/cats/cats.JPEG", "contrast/2/dogs/dogs.JPEG"]
    result = build_manifest(src, out, check="none", progress=False)
    assert result.classes == ["cats", "dogs"]
    labels = result.manifest.groupby("corruption")["label"].apply(sorted).to_dict()
    assert labels == {"clean": [0, 1], "contrast": [0, 1]}


def test_own_classes_and_unlabelled_rows_are_checked(clean, tmp_path):
    with pytest.raises(ValueError, match="label 2 of image 'img_c' is not one of the dataset's 2 classes"):
        _generate(clean.head(3).assign(label=[0, 1, 2]), tmp_path / "a", classes=["cats", "dogs"])
    with pytest.raises(ValueError, match="class name '_x' cannot be a class folder"):
        _generate(clean.head(1).assign(label=0), tmp_path / "b", classes=["_x"])
    with pytest.raises(ValueError, match="unlabelled \\(label -1\\).*'img_a'"):
        _generate(clean.head(1).assign(label=-1), tmp_path / "c")


# ------------------------------------------------------------------ the real sample


@pytest.mark.slow
def test_full_imagenet_c_on_four_sample_images(tmp_path):
    if not SAMPLE.is_dir():
        pytest.skip(f"shared ImageNet sample not found at {SAMPLE}")
    out = tmp_path / "imagenet-c"
    argv = [
        "--src",
        str(SAMPLE),
        "--out",
        str(out),
        "--limit",
        "4",
        "--workers",
        "2",
        "--no-progress",
    ]
    args = _parse(argv)
    assert args.func(args) == 0
    tree = _tree(out)
    assert len(tree) == 4 * 15 * 5
    assert {Path(k).parts[0] for k in tree} == set(C.COMMON_CORRUPTIONS)
    stats = _stats(out)
    assert args.func(args) == 0
    assert _stats(out) == stats and _tree(out) == tree

    shutil.rmtree(out)
    args = _parse([*argv[:-3], "--workers", "1", "--no-progress"])
    assert args.func(args) == 0
    assert _tree(out) == tree


def test_a_dying_worker_fails_the_run_instead_of_hanging(clean, tmp_path):
    # Without a __main__ guard every spawned worker re-runs the script and dies at start-up:
    # the run must stop with a clear error, not wait forever for the lost work.
    import subprocess
    import sys

    clean.to_csv(tmp_path / "clean.csv", index=False)
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import pandas as pd\n"
        "from iqa_lib.data.imagenet_c_render import generate_imagenet_c\n"
        f"df = pd.read_csv({str(tmp_path / 'clean.csv')!r})\n"
        f"generate_imagenet_c(df, {str(tmp_path / 'out')!r}, corruptions=['contrast'], "
        "severities=[1], workers=2, progress=False)\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=180
    )
    assert proc.returncode != 0
    assert "worker process died" in proc.stderr and "run again to resume" in proc.stderr


def test_a_dangling_link_to_a_source_is_listed_with_its_reason(clean, tmp_path):
    src = Path(clean.loc[0, "path"]).parent
    (src / "gone.png").symlink_to(src / "nowhere.png")
    (src / "loop.png").symlink_to(src / "loop.png")
    links = pd.DataFrame(
        [("gone", 3, str(src / "gone.png")), ("loop", 4, str(src / "loop.png"))],
        columns=["image_id", "label", "path"],
    )
    report = _generate(pd.concat([clean.head(1), links]), tmp_path / "out", corruptions=["contrast"], severities=[1])
    assert (report.written, report.failed, report.undecodable) == (1, 2, 2)
    assert {f.image_id: f.reason for f in report.failures} == {
        "gone": "broken symbolic link", "loop": "symbolic link loop",
    }
    with pytest.raises(ValueError, match="workers must be a whole number of at least 1, got 0"):
        _generate(clean, tmp_path / "out", workers=0)
