"""`dvc repro` end to end in a temporary copy of the repository, on a tiny configuration."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from iqa_lib.data.quickstart import QUICKSTART_IMAGES
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.skipif(shutil.which("dvc") is None or shutil.which("git") is None, reason="needs dvc and git")


def run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.fixture
def repo_copy(tmp_path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()
    dst = tmp_path / "repo"
    for name in files:
        src = REPO_ROOT / name
        if src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)
    run(["git", "init", "-q"], dst)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"], dst)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "copy"], dst)
    return dst


def set_params(repo: Path, **data) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["data"].update(data)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.slow
def test_dvc_repro_builds_the_manifest_and_is_idempotent(repo_copy):
    set_params(repo_copy, corruptions=["fog", "contrast"], severities=[1, 2])
    run(["dvc", "repro"], repo_copy)
    manifest = pd.read_parquet(repo_copy / "data" / "manifest.parquet")
    n = len(QUICKSTART_IMAGES)
    counts = manifest.groupby(["corruption", "severity"]).size().to_dict()
    assert counts == {("clean", 0): n, ("contrast", 1): n, ("contrast", 2): n, ("fog", 1): n, ("fog", 2): n}
    assert (manifest.groupby("image_id")["label"].nunique() == 1).all()

    second = run(["dvc", "repro"], repo_copy)
    assert "didn't change" in second and "Running stage" not in second

    # narrowing the severities reruns the data stages and the manifest follows
    set_params(repo_copy, severities=[1])
    third = run(["dvc", "repro"], repo_copy)
    assert "Running stage 'manifest'" in third
    manifest = pd.read_parquet(repo_copy / "data" / "manifest.parquet")
    assert sorted(manifest["severity"].unique()) == [0, 1]
