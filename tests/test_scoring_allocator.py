"""glibc malloc settings of scoring processes (iqa_lib.scoring.allocator)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from iqa_lib.scoring import allocator
from tests.conftest import write_image

REPO = Path(__file__).resolve().parents[1]
GLIBC = allocator._glibc() is not None


def _in_fresh_process(code: str, env: dict[str, str] | None = None) -> object:
    """Run ``code`` (which prints JSON) in a new interpreter: mallopt changes the process it runs in."""
    full = {**os.environ, **(env or {})}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=full, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_applies_on_glibc_once_per_process():
    code = ("import json; from iqa_lib.scoring.allocator import tune_allocator as t; "
            "print(json.dumps([t(), t()]))")
    first, second = _in_fresh_process(code, {allocator.ENV: ""})
    assert first == {"mmap_threshold": 1, "trim_threshold": 1}  # mallopt returned 1: applied
    assert second == {}  # once per process
    custom = _in_fresh_process(
        "import json; from iqa_lib.scoring.allocator import tune_allocator as t; print(json.dumps(t()))",
        {allocator.ENV: "mmap_threshold=67108864,arena_max=2"},
    )
    assert custom == {"mmap_threshold": 1, "arena_max": 1}


def test_disabled_and_parsing():
    assert allocator.settings("0") == {} and allocator.settings("off") == {}
    assert allocator.settings("") == allocator.DEFAULTS == allocator.settings("1")
    assert allocator.settings("trim_threshold=5, top_pad=7") == {"trim_threshold": 5, "top_pad": 7}
    with pytest.raises(ValueError, match="names among"):
        allocator.settings("mmap=3")
    with pytest.raises(ValueError, match="must be an integer"):
        allocator.settings("mmap_threshold=big")
    off = _in_fresh_process(
        "import json; from iqa_lib.scoring.allocator import tune_allocator as t; print(json.dumps(t()))",
        {allocator.ENV: "0"},
    )
    assert off == {}


def test_no_op_off_glibc(monkeypatch, caplog):
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    monkeypatch.setattr(allocator, "_applied", None)
    with caplog.at_level(logging.DEBUG, logger=allocator.__name__):
        assert allocator.tune_allocator("1") == {}
    assert "not glibc" in caplog.text


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="loader workers are forked on Linux")
def test_engine_applies_it_in_the_main_process_and_each_loader_worker(tmp_path, monkeypatch):
    from iqa_lib.scoring.engine import score_manifest

    calls = tmp_path / "calls.txt"

    def record(value=None):
        with open(calls, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        return {}

    monkeypatch.setattr(allocator, "tune_allocator", record)
    rows = []
    for i in range(4):
        path = write_image(tmp_path / f"im{i}.png", (40, 32), seed=i)
        rows.append({"image_id": f"im{i}", "label": 0, "corruption": "gaussian_noise", "severity": 1,
                     "path": str(path)})
    pd.DataFrame(rows).to_parquet(tmp_path / "m.parquet")
    score_manifest("tv", tmp_path / "m.parquet", tmp_path / "tv.parquet", batch_size=2, num_workers=2,
                   device="cpu", progress=False)
    pids = calls.read_text().split()
    assert pids[0] == str(os.getpid()) and len(set(pids)) == 3  # the run, then each of 2 workers
