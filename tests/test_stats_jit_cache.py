"""The numba kernels are cached on first use in a writable directory, so only the first
process compiles them; a read-only install with an unwritable home falls back to tempdir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from iqa_lib.stats._jit import HAVE_NUMBA, fallback_cache_dir

PROBE = """
import json, numpy as np
from iqa_lib.stats import _kernels as K
K.auc_raw(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1], np.int8))
print(json.dumps({"hits": sum(K.auc_raw.stats.cache_hits.values()),
                  "misses": sum(K.auc_raw.stats.cache_misses.values())}))
"""


def _blocked(tmp_path: Path) -> Path:
    """A directory path nobody can create (its parent is a file), even as root."""
    f = tmp_path / "a_file"
    f.write_text("")
    return f / "sub"


def test_numba_own_locations_are_kept_when_writable(tmp_path):
    assert fallback_cache_dir(tmp_path / "pkg", _blocked(tmp_path), tmp_path / "t") is None
    assert fallback_cache_dir(_blocked(tmp_path), tmp_path / "home", tmp_path / "t") is None


def test_unwritable_install_and_home_fall_back_to_tempdir(tmp_path):
    got = fallback_cache_dir(_blocked(tmp_path), _blocked(tmp_path), tmp_path)
    assert got is not None and got.parent == tmp_path and got.name.startswith("iqa-kit-numba-")
    assert got.is_dir()


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
def test_first_process_compiles_and_caches_second_loads(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
            ).stdout.strip().splitlines()[-1]
        )
        for _ in range(2)
    ]
    assert runs[0] == {"hits": 0, "misses": 1}
    assert runs[1] == {"hits": 1, "misses": 0}
    assert any(tmp_path.rglob("*auc_raw*.nbi"))
