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

from iqa_lib.audit.run import run_audit
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
    first = run_audit(own_dataset, scorers, out, device="cpu", num_workers=0, progress=False)
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

    second = run_audit(own_dataset, scorers, out, device="cpu", num_workers=0, progress=False, report=False)
    assert second.scored == [] and second.reused == names
    assert second.summary == summary

    report = out / "report.html"
    assert report.is_file() and "<script src=\"http" not in report.read_text()
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
        run_audit(empty, ["tv"], tmp_path / "out", device="cpu", progress=False, report=False)
    with pytest.raises(FileNotFoundError, match="reference folder"):
        run_audit(empty, ["tv"], tmp_path / "out", reference_dirs=[tmp_path / "nope"], progress=False)
