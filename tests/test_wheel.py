"""The kit works installed, not only from the developers' checkout.

A wheel is built from the package sources alone, installed into a fresh virtual
environment (its dependencies come from the machine's site-packages, the checkout is not
on the path), and `iqa-kit audit` runs from an unrelated folder to its HTML report: the
report notebook is package data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    run = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kwargs)
    assert run.returncode == 0, f"{cmd}:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv holding the kit as a wheel; returns its bin folder."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "iqa_lib", src / "iqa_lib", ignore=shutil.ignore_patterns("__pycache__"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", root / "dist", src])
    wheel = next((root / "dist").glob("iqa_kit-*.whl"))
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", venv])
    _run([venv / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel])
    return venv / "bin"


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # the dependencies come from this interpreter's site-packages; their data files (nbconvert's
    # HTML templates) lie under its prefix, where a full install would have put them in the venv
    return {**env, "HF_HUB_OFFLINE": "1", "JUPYTER_PATH": str(Path(sys.prefix) / "share" / "jupyter")}


@pytest.mark.slow
def test_the_wheel_holds_the_package_and_its_report_notebook(installed, tmp_path):
    code = ("import iqa_lib, importlib.resources as r; print(iqa_lib.__file__); "
            "print((r.files('iqa_lib.resources') / 'notebooks' / 'audit.ipynb').is_file())")
    out = _run([installed / "python", "-c", code], cwd=tmp_path, env=_environment()).stdout.split()
    assert Path(out[0]).is_relative_to(installed.parent), f"imported from {out[0]}, not the wheel"
    assert out[1] == "True"


@pytest.mark.slow
def test_iqa_kit_audit_from_the_wheel_writes_its_report(installed, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        pixels = (rng.random((64, 80, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(images / f"img{i}.jpg", quality=90)
    out = tmp_path / "audit"
    _run([installed / "iqa-kit", "audit", images, "--scorer", "tv", "--out", out, "--device", "cpu",
          "--num-workers", "0", "--no-progress"], cwd=tmp_path, env=_environment())
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "Traceback" not in report and "tv" in report
    assert (out / "summary.json").is_file()
