"""The scoring engine: output contract, order, bad images, size groups, resume, torchrun."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from iqa_lib.data.manifest import ManifestError, read_manifest
from iqa_lib.scorers.nr_iqa import total_variation
from iqa_lib.scoring import parts
from iqa_lib.scoring.dataset import clean_geometry
from iqa_lib.scoring.engine import score_manifest

REPO = Path(__file__).resolve().parents[1]
KEYS = ["image_id", "corruption", "severity", "label"]


def _img(path: Path, size: tuple[int, int], seed: int, mode: str = "RGB") -> Path:
    rng = np.random.default_rng(seed)
    w, h = size
    arr = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
    # smooth random images: TV varies with the seed
    arr = (arr.astype(float) * (seed % 5 + 1) / 5).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img.convert("L"), dtype=np.uint16) * 257)
    elif mode != "RGB":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def _manifest(tmp: Path, n: int = 12, corrupted_sizes: bool = False) -> Path:
    rows = []
    for i in range(n):
        corr = i % 3 == 2
        size = (224, 224) if corr else (300 + 7 * i, 260 + 3 * i)
        if corr and corrupted_sizes:
            size = (64 + 8 * (i % 2), 48)
        p = _img(tmp / "img" / f"im{i:03d}.png", size, seed=i)
        rows.append(
            {
                "image_id": f"im{i:03d}",
                "label": i % 1000,
                "corruption": "gaussian_noise" if corr else "clean",
                "severity": 3 if corr else 0,
                "path": str(p),
            }
        )
    path = tmp / "manifest.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path


def _expected_tv(manifest: Path) -> np.ndarray:
    df = pd.read_parquet(manifest)
    out = []
    for path, corruption in zip(df["path"], df["corruption"], strict=True):
        img = Image.open(path).convert("RGB")
        if corruption == "clean":
            img = clean_geometry(img, 256, 224)
        x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)[None].float() / 255
        out.append(float(total_variation(x)[0]))
    return np.array(out)


def test_tv_scores_follow_manifest_order_and_contract(tmp_path):
    manifest = _manifest(tmp_path, n=10, corrupted_sizes=True)
    out = score_manifest("tv", manifest, tmp_path / "scores" / "tv.parquet", batch_size=4,
                         num_workers=0, device="cpu", part_size=3, progress=False)
    df = pd.read_parquet(out)
    m = pd.read_parquet(manifest)
    assert list(df.columns) == [*KEYS, "q"]
    pd.testing.assert_frame_equal(df[KEYS], m[KEYS], check_dtype=False)
    assert df["severity"].dtype == np.int64 and df["label"].dtype == np.int64
    np.testing.assert_allclose(df["q"].to_numpy(), _expected_tv(manifest), rtol=1e-5)
    assert parts.read_score_metadata(out) == {"spec": "tv", "kind": "nr_iqa", "geometry": "resize_crop",
                                              "label_space": "imagenet"}
    # parts are merged and removed; an empty failures file is still written
    assert not parts.parts_dir(out).exists()
    fails = pd.read_csv(parts.failures_path(out))
    assert list(fails.columns) == parts.FAILURE_COLUMNS and fails.empty


def test_bad_images_are_listed_and_the_rest_scored(tmp_path):
    d = tmp_path / "img"
    good = {
        "rgb": _img(d / "rgb.png", (40, 30), 1),
        "cmyk": _img(d / "cmyk.jpg", (40, 30), 2, "CMYK"),
        "gray": _img(d / "gray.png", (40, 30), 3, "L"),
        "rgba": _img(d / "rgba.png", (40, 30), 4, "RGBA"),
        "png16": _img(d / "png16.png", (40, 30), 5, "I;16"),
        "tiny": _img(d / "tiny.png", (8, 8), 6),
    }
    (d / "zero.jpg").write_bytes(b"")
    jpeg = _img(d / "full.jpg", (300, 300), 7).read_bytes()
    (d / "trunc.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (d / "text.jpg").write_text("not an image")
    bad = {"zero": d / "zero.jpg", "trunc": d / "trunc.jpg", "text": d / "text.jpg",
           "missing": d / "nope.png"}
    rows = []
    for name, p in [*good.items(), *bad.items()]:
        # the 8x8 image is an ImageNet-C style copy: scored as is, at 8x8
        corr = "blur" if name == "tiny" else "clean"
        rows.append({"image_id": name, "label": 1, "corruption": corr,
                     "severity": 1 if corr != "clean" else 0, "path": str(p)})
    manifest = tmp_path / "m.parquet"
    pd.DataFrame(rows).to_parquet(manifest)
    out = score_manifest("tv", manifest, tmp_path / "tv.parquet", batch_size=4, num_workers=1,
                         device="cpu", part_size=5, progress=False)
    df = pd.read_parquet(out)
    assert list(df["image_id"]) == list(good)
    assert np.isfinite(df["q"]).all()
    fails = pd.read_csv(tmp_path / "tv.failures.csv")
    assert list(fails["image_id"]) == list(bad)
    reasons = dict(zip(fails["image_id"], fails["reason"], strict=True))
    assert reasons["zero"] == "zero-byte file"
    assert "truncated" in reasons["trunc"]
    assert reasons["missing"] == "missing file"
    assert fails["path"].tolist() == [str(p) for p in bad.values()]


def test_scorer_error_on_one_image_fails_only_that_image(tmp_path):
    from iqa_lib.scorers.nr_iqa import TotalVariationScorer
    from iqa_lib.scorers.spec import parse_spec

    class Picky(TotalVariationScorer):
        def score(self, images, labels):
            if (images.float().mean(dim=(1, 2, 3)) < 1).any():
                raise ValueError("black image")
            return super().score(images, labels)

    manifest = _manifest(tmp_path, n=6)
    m = pd.read_parquet(manifest)
    Image.new("RGB", (300, 300)).save(m.loc[1, "path"])  # black: the scorer rejects it
    scorer = Picky(parse_spec("tv"), torch.device("cpu"))
    out = score_manifest(scorer, manifest, tmp_path / "o.parquet", batch_size=6, num_workers=0,
                         part_size=6, progress=False)
    df = pd.read_parquet(out)
    assert list(df["image_id"]) == [i for j, i in enumerate(m["image_id"]) if j != 1]
    fails = pd.read_csv(tmp_path / "o.failures.csv")
    assert fails["image_id"].tolist() == ["im001"]
    assert "black image" in fails["reason"][0]

    class Broken(TotalVariationScorer):
        def score(self, images, labels):
            raise RuntimeError("scorer bug")

    with pytest.raises(RuntimeError, match="scorer bug"):
        score_manifest(Broken(parse_spec("tv"), torch.device("cpu")), manifest,
                       tmp_path / "b.parquet", batch_size=6, num_workers=0, part_size=6,
                       progress=False)


def test_manifest_errors_name_the_file_and_column(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "none.parquet")
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"image_id": ["a"], "path": ["x"]}).to_parquet(bad)
    with pytest.raises(ManifestError, match=r"bad.parquet' lacks column\(s\) \['label', 'corruption', 'severity'\]"):
        read_manifest(bad)


def test_parts_of_another_run_are_refused(tmp_path):
    manifest = _manifest(tmp_path, n=4)
    out = tmp_path / "o.parquet"
    pdir = parts.parts_dir(out)
    parts.prepare_parts_dir(pdir, {"spec": "brisque"}, resume=True)
    with pytest.raises(RuntimeError, match="different run"):
        score_manifest("tv", manifest, out, num_workers=0, device="cpu", progress=False)
    score_manifest("tv", manifest, out, num_workers=0, device="cpu", resume=False, progress=False)
    assert len(pd.read_parquet(out)) == 4


def _run_cli(args: list[str], env_extra: dict[str, str] | None = None, torchrun: int = 0):
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.update(env_extra or {})
    launcher = [sys.executable]
    if torchrun:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}"]
    cmd = [*launcher, "-m", "iqa_lib.commands.score", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)


def test_killed_run_resumes_to_identical_output(tmp_path):
    manifest = _manifest(tmp_path, n=14)
    ref = score_manifest("tv", manifest, tmp_path / "ref.parquet", batch_size=2, num_workers=0,
                         device="cpu", part_size=3, progress=False)
    out = tmp_path / "tv.parquet"
    args = ["--scorer", "tv", "--manifest", str(manifest), "--out", str(out), "--batch-size", "2",
            "--num-workers", "1", "--device", "cpu", "--part-size", "3", "--no-progress"]
    killed = _run_cli(args, {"IQA_KIT_KILL_AFTER_PARTS": "2"})
    assert killed.returncode == -9, killed.stderr
    pdir = parts.parts_dir(out)
    assert parts.done_chunks(pdir) == {0, 1} and not out.exists()
    # a temporary file left by a kill mid-write is not a part
    (pdir / ".part-0000002.parquet.tmp-99999").write_bytes(b"half")
    assert parts.done_chunks(pdir) == {0, 1}
    resumed = _run_cli(args)
    assert resumed.returncode == 0, resumed.stderr
    assert "14 rows scored; 0 failed" in resumed.stdout
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(ref))


def test_sampler_leaves_out_rows_in_sub_parts_on_the_same_batch_grid():
    from iqa_lib.scoring.dataset import ChunkBatchSampler

    # chunk 0 = rows 0-4 in batches [0, 1], [2, 3], [4]; rows 0-2 were in a sub-part already
    sampler = ChunkBatchSampler([0, 1], part_size=5, n_rows=9, batch_size=2, done_rows={0: [0, 1, 2]})
    assert list(sampler) == [[3], [4], [5, 6], [7, 8]] and len(sampler) == 4
    assert sampler.todo_count(0) == 2 and sampler.todo_rows(0) == [3, 4] and sampler.todo_count(1) == 4


def test_resume_from_sub_parts_with_another_world_size(tmp_path):
    """Sub-parts written by one process are finished by two (torchrun), identically."""
    manifest = _manifest(tmp_path, n=9)
    ref = score_manifest("tv", manifest, tmp_path / "ref.parquet", batch_size=2, num_workers=0,
                         device="cpu", part_size=4, progress=False)
    out = tmp_path / "tv.parquet"
    args = ["--scorer", "tv", "--manifest", str(manifest), "--out", str(out), "--batch-size", "2",
            "--num-workers", "0", "--device", "cpu", "--part-size", "4", "--part-seconds", "1e-9",
            "--no-progress"]
    killed = _run_cli(args, {"IQA_KIT_KILL_AFTER_PARTS": "1"})  # chunk 0 whole, chunk 1 not begun
    assert killed.returncode == -9, killed.stderr
    pdir = parts.parts_dir(out)
    assert parts.done_chunks(pdir) == {0}
    # chunk 1 = rows 4-7 as a kill mid-chunk leaves it: rows 4-5 in a sub-part
    sub = pd.read_parquet(parts.part_path(pdir, 0)).assign(_row=lambda d: d["_row"] + 4).iloc[:2]
    values = pd.read_parquet(ref)["q"].to_numpy()[4:6]
    sub["q"] = values.astype(sub["q"].dtype)
    parts.write_sub_part(pdir, 1, 4, sub, pd.DataFrame({"_row": np.zeros(0, np.int64), "reason": []}))
    res = _run_cli(args, torchrun=2)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming" in res.stderr and "6 of 9 rows kept" in res.stderr
    # the reference ran in this process, the resume in two others with their own thread
    # counts: float sums may differ in the last bit (bitwise identity is tested in-process)
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(ref), rtol=1e-6)


def test_torchrun_two_processes_gloo_equals_single_process(tmp_path):
    manifest = _manifest(tmp_path, n=11)
    (tmp_path / "img" / "im004.png").write_bytes(b"")  # a failure on one rank
    ref = score_manifest("tv", manifest, tmp_path / "ref.parquet", batch_size=2, num_workers=0,
                         device="cpu", part_size=2, progress=False)
    out = tmp_path / "dist.parquet"
    res = _run_cli(["--scorer", "tv", "--manifest", str(manifest), "--out", str(out),
                    "--batch-size", "2", "--num-workers", "0", "--device", "cpu",
                    "--part-size", "2", "--no-progress"], torchrun=2)
    assert res.returncode == 0, res.stderr[-3000:]
    # 6 chunks of 2 rows: each rank took every other one
    assert "[rank 0/2] scored 3 part(s)" in res.stderr and "[rank 1/2] scored 3 part(s)" in res.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(ref))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "dist.failures.csv"),
                                  pd.read_csv(tmp_path / "ref.failures.csv"))
    assert pd.read_csv(tmp_path / "dist.failures.csv")["image_id"].tolist() == ["im004"]


def test_score_command_parser_and_run(tmp_path, capsys):
    from iqa_lib.commands import score

    manifest = _manifest(tmp_path, n=3)
    parser = argparse.ArgumentParser()
    score.add_parser(parser.add_subparsers())
    args = parser.parse_args(["score", "--scorer", "{spec: tv}", "--manifest", str(manifest),
                              "--out", str(tmp_path / "s.parquet"), "--num-workers", "0",
                              "--device", "cpu", "--no-progress"])
    assert args.func(args) == 0
    assert "3 rows scored" in capsys.readouterr().out
    assert len(pd.read_parquet(tmp_path / "s.parquet")) == 3


def test_geometry_none_scores_clean_images_as_stored(tmp_path):
    manifest = _manifest(tmp_path, n=4)
    crop = score_manifest("tv", manifest, tmp_path / "crop.parquet", batch_size=4, num_workers=0,
                          device="cpu", progress=False)
    stored = score_manifest("tv", manifest, tmp_path / "stored.parquet", batch_size=4,
                            num_workers=0, device="cpu", progress=False, geometry="none")
    df = pd.read_parquet(manifest)
    expected = []
    for path in df["path"]:
        x = torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy())
        expected.append(float(total_variation(x.permute(2, 0, 1)[None].float() / 255)[0]))
    np.testing.assert_allclose(pd.read_parquet(stored)["q"], expected, rtol=1e-6)
    np.testing.assert_allclose(pd.read_parquet(crop)["q"], _expected_tv(manifest), rtol=1e-6)
    clean = df["corruption"].eq("clean").to_numpy()
    assert not np.allclose(pd.read_parquet(crop)["q"][clean], np.array(expected)[clean])
    assert parts.read_score_metadata(stored)["geometry"] == "none"
    with pytest.raises(ValueError, match="geometry 'crop' is not one of resize_crop, none"):
        score_manifest("tv", manifest, tmp_path / "x.parquet", geometry="crop")


def test_score_images_folder_unlabelled(tmp_path, capsys):
    from iqa_lib.cli import main

    folder = tmp_path / "mine"
    _img(folder / "a.png", (50, 40), seed=1)
    _img(folder / "sub" / "a.png", (64, 64), seed=2)  # same name, other folder: its own image_id
    _img(folder / "b.jpg", (30, 90), seed=3)
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").symlink_to(folder / "gone.png")  # listed as a failure, not lost
    out = tmp_path / "scores" / "tv.parquet"
    assert main(["score", "--scorer", "tv", "--images", str(folder), "--out", str(out),
                 "--num-workers", "0", "--device", "cpu", "--no-progress"]) == 0
    assert "3 rows scored; 1 failed" in capsys.readouterr().out
    df = pd.read_parquet(out)
    assert df["image_id"].tolist() == ["a.png", "b.jpg", "sub/a.png"]
    assert (df["label"] == -1).all() and (df["corruption"] == "clean").all()
    x = torch.from_numpy(np.asarray(Image.open(folder / "b.jpg").convert("RGB")).copy())
    assert df["q"].iloc[1] == pytest.approx(float(total_variation(x.permute(2, 0, 1)[None] / 255.0)[0]))
    assert pd.read_csv(tmp_path / "scores" / "tv.failures.csv")["image_id"].tolist() == ["broken.png"]
    # a classifier on unlabelled images: its confidence is a Q, its correctness is unknown
    clf = tmp_path / "scores" / "lite0.parquet"
    assert main(["score", "--scorer", "efficientnet_lite:lite0", "--images", str(folder),
                 "--out", str(clf), "--num-workers", "0", "--device", "cpu", "--no-progress"]) == 0
    cols = pd.read_parquet(clf).columns.tolist()
    assert cols == ["image_id", "corruption", "severity", "label", "pred", "q_p", "q_h", "q_l"]
    assert main(["score", "--scorer", "tv", "--images", str(tmp_path / "nowhere"), "--out",
                 str(out)]) != 0
    assert "does not exist" in capsys.readouterr().err


def test_mixed_labelled_and_unlabelled_manifest_is_refused(tmp_path):
    manifest = _manifest(tmp_path, n=3)
    df = pd.read_parquet(manifest)
    df.loc[1, "label"] = -1
    df.to_parquet(manifest)
    with pytest.raises(ValueError, match="mixes labelled rows and unlabelled rows"):
        score_manifest("tv", manifest, tmp_path / "s.parquet", num_workers=0, device="cpu")
