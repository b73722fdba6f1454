"""Logits kept by the engine: aligned with the score file, resumable, vouched for, never stale."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from iqa_lib.scorers.registry import build_scorer
from iqa_lib.scoring import logits, parts
from iqa_lib.scoring.dataset import clean_geometry
from iqa_lib.scoring.engine import RunSettings, run_scoring

REPO = Path(__file__).resolve().parents[1]
LITE0 = "efficientnet_lite:lite0"


def _manifest(tmp: Path, n: int = 9) -> Path:
    """Clean images of several sizes and 224 px 'corrupted' ones, a few unreadable."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        corrupted = i % 3 == 2
        path = tmp / "img" / f"im{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if i == 4:
            path.write_bytes(b"not an image")  # a failure: no score row, no logits row
        else:
            h, w = (224, 224) if corrupted else (260 + 5 * i, 300)
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        rows.append({"image_id": f"im{i:02d}", "label": i, "path": str(path),
                     "corruption": "gaussian_noise" if corrupted else "clean", "severity": 3 if corrupted else 0})
    out = tmp / "manifest.parquet"
    pd.DataFrame(rows).to_parquet(out)
    return out


@pytest.fixture(scope="module")
def lite0():
    """Lite0 built once: the engine takes a built scorer and sets its keep_logits per run."""
    return build_scorer(LITE0, "cpu")


def _settings() -> RunSettings:
    return RunSettings(device="cpu", num_workers=0, part_size=3, progress=False, keep_logits=True)


def _direct_logits(scorer, manifest: Path, scored: pd.DataFrame) -> np.ndarray:
    """Lite0's logits of each scored row, image by image, outside the engine."""
    frame = pd.read_parquet(manifest).set_index("image_id")
    out = []
    for image_id in scored["image_id"]:
        img = Image.open(frame.loc[image_id, "path"]).convert("RGB")
        if frame.loc[image_id, "corruption"] == "clean":
            img = clean_geometry(img, 256, 224)
        x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)[None]
        out.append(scorer.logits(x)[0].numpy())
    return np.stack(out)


def test_kept_logits_are_the_models_rows_in_score_file_order(tmp_path, lite0):
    manifest = _manifest(tmp_path)
    out = tmp_path / "lite0.parquet"
    result = run_scoring(lite0, manifest, out, _settings(), batch_size=2)
    scored = pd.read_parquet(out)
    assert len(scored) == 8 and list(scored.columns) == [
        "image_id", "corruption", "severity", "label", "pred", "correct", "q_p", "q_h", "q_l"]
    z = logits.read_logits(out, len(scored))
    assert z is not None and z.dtype == np.float16 and z.shape == (8, 1000)
    # the very logits, to float16 rounding (another batch composition moves the last float32 bits)
    np.testing.assert_allclose(z.astype(np.float64), _direct_logits(lite0, manifest, scored), rtol=2e-3, atol=2e-2)
    assert (z.astype(np.float32).argmax(axis=1) == scored["pred"].to_numpy()).mean() >= 0.75
    info = json.loads(logits.info_path(out).read_text())
    assert info["kept"] is True and info["rows"] == 8 and info["classes"] == 1000
    assert info["gb_per_million_images"] == 2.0 and result.logits_note == ""


@pytest.mark.slow
def test_logits_survive_a_kill_and_resume_identically(tmp_path, lite0):
    manifest = _manifest(tmp_path, n=9)
    ref = tmp_path / "ref.parquet"
    run_scoring(lite0, manifest, ref, _settings(), batch_size=2)
    out = tmp_path / "lite0.parquet"
    args = [sys.executable, "-m", "iqa_lib.commands.score", "--scorer", LITE0, "--manifest", str(manifest),
            "--out", str(out), "--batch-size", "2", "--num-workers", "0", "--device", "cpu",
            "--part-size", "3", "--no-progress", "--keep-logits"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "IQA_KIT_KILL_AFTER_PARTS": "2"}
    killed = subprocess.run(args, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert killed.returncode == -9, killed.stderr
    assert parts.done_chunks(parts.parts_dir(out)) == {0, 1} and not logits.logits_dir(out).exists()
    env.pop("IQA_KIT_KILL_AFTER_PARTS")
    resumed = subprocess.run(args, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "its logits:" in resumed.stdout
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(ref))
    np.testing.assert_array_equal(logits.read_logits(out, 8), logits.read_logits(ref, 8))


def test_asking_for_logits_rescores_and_dropping_them_removes_them(tmp_path, lite0):
    manifest = _manifest(tmp_path, n=6)
    out = tmp_path / "lite0.parquet"
    without = RunSettings(device="cpu", num_workers=0, part_size=3, progress=False)
    plain = run_scoring(lite0, manifest, out, without, batch_size=2)
    assert not plain.reused and not logits.logits_dir(out).exists()
    kept = run_scoring(lite0, manifest, out, _settings(), batch_size=2)
    assert not kept.reused and logits.read_logits(out, 5) is not None  # an output without logits is not enough
    again = run_scoring(lite0, manifest, out, _settings(), batch_size=2)
    assert again.reused
    dropped = run_scoring(lite0, manifest, out, without, batch_size=2)
    assert not dropped.reused and not logits.logits_path(out).exists()  # no stale logits beside new rows


def test_a_changed_logits_file_is_not_reused(tmp_path, capsys, lite0):
    manifest = _manifest(tmp_path, n=6)
    out = tmp_path / "lite0.parquet"
    run_scoring(lite0, manifest, out, _settings(), batch_size=2)
    good = np.load(logits.logits_path(out))
    swapped = good[::-1].copy()  # same shape, rows in another order: only the hash can tell
    with open(logits.logits_path(out), "wb") as fh:
        np.save(fh, swapped)
    again = run_scoring(lite0, manifest, out, _settings(), batch_size=2)
    assert not again.reused
    assert "sha256 differs" in capsys.readouterr().err
    np.testing.assert_array_equal(np.load(logits.logits_path(out)), good)
    logits.logits_path(out).unlink()
    assert not run_scoring(lite0, manifest, out, _settings(), batch_size=2).reused


def test_scorers_without_logits_say_why(tmp_path):
    manifest = _manifest(tmp_path, n=3)
    out = tmp_path / "tv.parquet"
    result = run_scoring("tv", manifest, out, _settings())
    assert result.logits_note == "a nr_iqa scorer has no logits"
    assert not logits.logits_dir(out).exists()


def test_pipeline_outputs_always_have_their_logits_folder(tmp_path):
    from iqa_lib.pipeline.score import ScoreOptions, score

    manifest = _manifest(tmp_path, n=3)
    opts = ScoreOptions(name="tv", spec="tv", manifest=str(manifest), out=str(tmp_path / "tv.parquet"),
                        settings=_settings(), logits_folders=True)
    score(opts)
    info = json.loads(logits.info_path(tmp_path / "tv.parquet").read_text())
    assert info == {"kept": False, "why": "a nr_iqa scorer has no logits"}


def test_rows_as_bytes_round_trip_and_bad_rows_refused(tmp_path):
    z = np.linspace(-8, 8, 12, dtype=np.float32).reshape(3, 4)
    rows = logits.rows_as_bytes(z)
    path = logits.write_logits(tmp_path / "m.parquet", list(rows), "spec")
    np.testing.assert_array_equal(np.load(path), z.astype(np.float16))
    with pytest.raises(ValueError, match="unequal or odd byte lengths"):
        logits.write_logits(tmp_path / "m.parquet", [rows[0], rows[1][:4]], "spec")
