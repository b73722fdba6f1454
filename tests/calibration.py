"""The five IQA calibration images and their reference scores, for calibration tests.

The images ship inside the pyiqa wheel (``ResultsCalibra/dist_dir``), a dependency of the
kit, so every installed checkout has them; the reference scores of the original
implementations are carried in ``tests/data/iqa_calibration``.
"""

from __future__ import annotations

import csv
import importlib.metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

IMAGES = ("I03", "I04", "I06", "I08", "I19")
REFERENCE = Path(__file__).resolve().parent / "data" / "iqa_calibration" / "reference_scores.csv"


def image_folder() -> Path | None:
    """``ResultsCalibra/dist_dir`` of the installed pyiqa distribution, if it holds the images."""
    try:
        files = importlib.metadata.distribution("pyiqa").files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.as_posix() == "ResultsCalibra/dist_dir/I03.bmp":
            folder = Path(file.locate()).parent
            if all((folder / f"{n}.bmp").is_file() for n in IMAGES):
                return folder
    return None


def reference_scores() -> dict[str, dict[str, float]]:
    """{metric: {image: value}} of the original implementations."""
    refs: dict[str, dict[str, float]] = {}
    with REFERENCE.open(newline="") as f:
        for row in csv.DictReader(f):
            refs.setdefault(row["metric"], {})[row["image"]] = float(row["value"])
    return refs


def calibration_set() -> tuple[torch.Tensor, dict[str, dict[str, float]]]:
    """(uint8 (5, 3, 384, 512) batch in IMAGES order, reference scores); skips without pyiqa's images."""
    folder = image_folder()
    if folder is None:
        pytest.skip("the calibration images ship in the pyiqa wheel (ResultsCalibra/dist_dir): pip install pyiqa")
    arrays = [np.asarray(Image.open(folder / f"{n}.bmp").convert("RGB")) for n in IMAGES]
    batch = torch.from_numpy(np.stack(arrays).transpose(0, 3, 1, 2).copy())
    return batch, reference_scores()
