"""``iqa-kit audit`` end to end on real photographs in class folders with their own names."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from chromium import chromium_path, inspect_page
from PIL import Image

from iqa_lib.pipeline.audit import AuditSettings, run_audit
from iqa_lib.scoring.parts import read_score_metadata

# Own classes made of real ImageNet photographs: folder name -> the wnids of its images.
CLASSES = {
    "fish": ["n01440764", "n01484850", "n01494475", "n01498041"],
    "bird": ["n01514859", "n01530575", "n01532829", "n01537544"],
    "beetle": ["n02165105", "n02167151", "n02169497", "n02174001"],
}


@pytest.fixture(scope="module")
def own_dataset(imagenet_sample, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("own") / "photos"
    for folder, wnids in CLASSES.items():
        (root / folder).mkdir(parents=True)
        for wnid in wnids:
            (src,) = imagenet_sample.glob(f"{wnid}_*.JPEG")
            shutil.copy(src, root / folder / f"{folder}_{src.name.split('_', 1)[1]}")
    return root


@pytest.fixture(scope="module")
def own_checkpoint(tmp_path_factory) -> Path:
    """A torchvision ResNet-18 with a new 3-class head, random weights, classes recorded."""
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = resnet18(num_classes=len(CLASSES))
    path = tmp_path_factory.mktemp("ckpt") / "resnet18_own.pt"
    torch.save({"state_dict": model.state_dict(), "classes": sorted(CLASSES)}, path)
    return path


@pytest.mark.slow
def test_audit_own_classes_end_to_end(own_dataset, own_checkpoint, tiny_clip, tmp_path):
    class_map = tmp_path / "class_map.yaml"
    class_map.write_text(yaml.safe_dump(CLASSES))
    scorers = [
        "tv",
        "brisque",
        {"spec": "efficientnet_lite:lite0", "class_map": str(class_map)},
        {"spec": "torchvision:resnet18", "weights": str(own_checkpoint)},
        {"spec": f"open_clip:{tiny_clip.arch}/random", "weights": str(tiny_clip.path)},
    ]
    out = tmp_path / "audit"
    first = run_audit(AuditSettings(own_dataset, scorers, out, device="cpu", num_workers=0, progress=False))
    names = ["tv", "brisque", "efficientnet_lite-lite0", "torchvision-resnet18",
             f"open_clip-{tiny_clip.arch}-random"]
    assert first.scored == names and first.reused == []

    summary = json.loads((out / "summary.json").read_text())
    assert summary == first.summary
    assert summary["dataset"]["images"] == 12 and summary["dataset"]["classes"] == sorted(CLASSES)
    for name in names:
        scores = pd.read_parquet(out / "scores" / f"{name}.parquet")
        assert len(scores) == 12
        for variable, item in summary["scorers"][name]["variables"].items():
            s = scores[variable]
            assert item["n"] == 12 and item["mean"] == pytest.approx(s.mean(), rel=1e-12)
            for p, value in item["quantiles"].items():
                assert value == pytest.approx(s.quantile(float(p)), rel=1e-12), (name, variable, p)

    # the ImageNet classifier through the class map: correct over the mapped classes
    lite = summary["scorers"]["efficientnet_lite-lite0"]
    assert lite["label_space"] == "class_map" and lite["accuracy"]["n"] == 12
    assert lite["accuracy"]["value"] >= 0.75  # real photographs of these very classes
    meta = read_score_metadata(out / "scores" / "efficientnet_lite-lite0.parquet")
    assert "mapped" in meta["label_note"]
    # the user's checkpoint: its own 3-way head, its class order written down
    own = summary["scorers"]["torchvision-resnet18"]
    assert own["label_space"] == "own" and own["accuracy"]["n"] == 12
    assert json.loads(read_score_metadata(out / "scores" / "torchvision-resnet18.parquet")["classes"]) == sorted(CLASSES)
    assert summary["scorers"][names[-1]]["label_space"] == "own"
    # no-reference scorers sit against the shipped references: these are clean ImageNet photos
    assert summary["scorers"]["brisque"]["variables"]["q"]["reference"]["closest"] == "clean"
    assert summary["scorers"]["torchvision-resnet18"]["variables"]["q_p"]["reference"] is None
    # own classes have no ImageNet reference to fit accuracy estimators on: a note, not a number
    for name in names[2:]:
        pred = summary["scorers"][name]["predicted_accuracy"]
        assert pred["value"] is None and "no matching reference" in pred["note"], name
    assert summary["scorers"]["tv"]["predicted_accuracy"] is None
    # the first screen: each task model's lines (no prediction without a reference, the measurement)
    from iqa_lib.audit.headline import CAVEAT

    assert list(summary)[:2] == ["headline", "caveat"] and summary["caveat"] == CAVEAT
    assert summary["headline"][0].startswith("efficientnet_lite-lite0: no accuracy prediction")
    assert any(line.startswith("torchvision-resnet18: measured on these labelled images") for line in summary["headline"])
    assert summary["closest_severity_from_confidence"] == {name: None for name in names[2:]}
    brisque = summary["scorers"]["brisque"]["variables"]["q"]
    assert brisque["closest_informative"] is False and "held-out" in brisque["closest_note"]
    assert summary["scorers"]["torchvision-resnet18"]["variables"]["q_p"]["closest_informative"] is False

    second = run_audit(AuditSettings(own_dataset, scorers, out, device="cpu", num_workers=0, progress=False,
                                      report=False))
    assert second.scored == [] and second.reused == names
    assert second.summary == summary

    report = out / "report.html"
    html = report.read_text()
    assert "<script src=\"http" not in html
    from iqa_lib.presentation.html_export import remote_references

    assert remote_references(html) == []
    # the prediction block comes first, before the report's introduction and tables
    assert html.index("Accuracy to expect on these images") < html.index("About this report") < html.index("Overview")
    # every figure is embedded: a distribution panel per Q variable (tv, brisque: 1; three task models: 3),
    # two thumbnail grids per scorer, a class panel per scorer
    assert html.count("src=\"data:image/png;base64,") >= 11 + 2 * 5 + 5
    if chromium_path() is None:
        pytest.skip("chromium is not installed: the report was written but not opened")
    page = inspect_page(report, tmp_path / "report.png")
    assert page.requests == [] and page.errors == []
    shot = np.asarray(Image.open(page.screenshot).convert("L"))
    assert shot.shape[0] > 3000  # overview, distributions, thumbnails, classes, accuracy
    assert shot.std() > 20  # not a blank page


def test_audit_errors_name_what_to_fix(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty"):
        run_audit(AuditSettings(empty, ["tv"], tmp_path / "out", device="cpu", progress=False, report=False))
    with pytest.raises(FileNotFoundError, match="reference folder"):
        run_audit(AuditSettings(empty, ["tv"], tmp_path / "out", reference_dirs=[tmp_path / "nope"], progress=False))
    from iqa_lib.locks import LockBusy, output_lock

    with output_lock(tmp_path / "busy"), pytest.raises(LockBusy, match="is being written by process"):
        run_audit(AuditSettings(empty, ["tv"], tmp_path / "busy", progress=False))


def _jpeg_bytes(seed: int) -> bytes:
    import io

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (48, 56, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def test_interrupted_audit_of_shards_keeps_its_scores(tmp_path, monkeypatch, capsys):
    import io
    import os
    import subprocess
    import sys
    import tarfile

    from iqa_lib.cli import main

    shard = tmp_path / "train-000.tar"
    with tarfile.open(shard, "w") as tar:
        for i in range(6):
            for ext, data in (("jpg", _jpeg_bytes(i)), ("cls", str(i % 2).encode())):
                info = tarfile.TarInfo(f"s{i}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    out = tmp_path / "audit"
    cmd = [sys.executable, "-m", "iqa_lib.cli", "audit", str(shard), "--scorer", "tv", "--out", str(out),
           "--no-report", "--no-progress", "--device", "cpu", "--num-workers", "0"]
    env = {**os.environ, "IQA_KIT_KILL_AFTER_PARTS": "1"}
    killed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    assert (out / "scores" / "tv.parquet.parts" / "part-0000000.parquet").is_file()
    assert not (out / "scores" / "tv.parquet").exists()

    def no_scoring(*args, **kwargs):
        raise AssertionError("the rerun scored again")

    monkeypatch.setattr("iqa_lib.scoring.engine.build_scorer", no_scoring)
    assert main(cmd[3:]) == 0  # finishes from the part written before the kill
    from iqa_lib.audit.headline import CAVEAT, NO_TASK_MODEL

    err = capsys.readouterr().err.splitlines()
    assert err[-2:] == [f"audit: {NO_TASK_MODEL}", f"audit: {CAVEAT}"]  # the run ends with the headline
    scores = pd.read_parquet(out / "scores" / "tv.parquet")
    assert scores["image_id"].tolist() == [f"s{i}" for i in range(6)] and scores["q"].notna().all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"]["labels"] == "ImageNet" and summary["scorers"]["tv"]["variables"]["q"]["n"] == 6


def test_audit_of_a_csv_list_with_own_labels(tmp_path):
    rows = []
    for i in range(4):
        (tmp_path / f"p{i}.jpg").write_bytes(_jpeg_bytes(i))
        rows.append({"path": f"p{i}.jpg", "label": ["cat", "dog"][i % 2]})
    rows.append({"path": "missing.jpg", "label": "cat"})
    pd.DataFrame(rows).to_csv(tmp_path / "list.csv", index=False)
    result = run_audit(AuditSettings(tmp_path / "list.csv", ["tv"], tmp_path / "out", device="cpu", num_workers=0,
                                     progress=False, report=False))
    assert result.summary["dataset"] == {
        "source": str(tmp_path / "list.csv"), "images": 4, "unreadable": 1, "labels": "own classes",
        "classes": ["cat", "dog"], "geometry": "resize_crop",
    }


@pytest.mark.slow
def test_audit_of_imagenet_images_predicts_and_says_what_to_read(imagenet_sample, tmp_path, capsys):
    """A task model on ImageNet-labelled images: the headline (prediction, both intervals, in-reference,
    measurement) is summary.json's and ends the CLI's run; the NR-IQA closest group is not read as a severity."""
    from iqa_lib.audit.headline import CAVEAT
    from iqa_lib.cli import main

    images = tmp_path / "images"
    images.mkdir()
    for src in sorted(imagenet_sample.glob("*.JPEG"))[:10]:
        shutil.copy(src, images / src.name)
    out = tmp_path / "audit"
    assert main(["audit", str(images), "--scorer", "efficientnet_lite:lite0", "--scorer", "tv", "--out", str(out),
                 "--no-report", "--no-progress", "--device", "cpu", "--num-workers", "0"]) == 0
    captured = capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    lines = summary["headline"]
    assert lines[0].startswith("efficientnet_lite-lite0: ")
    assert any("predicted top-1 accuracy" in line and "95% bootstrap interval" in line for line in lines)
    assert any(line.startswith("efficientnet_lite-lite0: measured on these labelled images") for line in lines)
    pred = summary["scorers"]["efficientnet_lite-lite0"]["predicted_accuracy"]
    if pred.get("in_reference") is False:
        assert "NOT like its reference" in lines[0]
    level = summary["closest_severity_from_confidence"]["efficientnet_lite-lite0"]
    assert level in range(6) and lines[-1].endswith(f"{'clean ImageNet' if level == 0 else f'severity {level}'}.")
    tv = summary["scorers"]["tv"]["variables"]["q"]
    assert tv["closest_informative"] is False and tv["closest_note"]
    assert tv["closest_validation"]["within_one_severity"] < 0.5  # TV does not find ImageNet-C severities
    err = captured.err.splitlines()
    assert err[-len(lines) - 1:] == [f"audit: {line}" for line in [*lines, CAVEAT]]
    out_lines = captured.out.splitlines()
    assert out_lines[0].startswith("efficientnet_lite-lite0.q_p:")  # the confidence-based closest first
    assert any(line.startswith("tv.q:") and "(not informative)" in line for line in out_lines)
