"""The params keys a DVC pipeline reads, checked against a params file.

The kit fills a missing key with its default, but ``dvc repro`` does not: a key a
stage lists under ``params:`` that the file lacks stops the run ("Parameters ... are
missing") after the earlier stages have run, possibly hours in. Checking up front
turns that into one line before any work.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml


def dvc_param_keys(dvc_yaml: str | os.PathLike) -> list[str]:
    """Every params key a stage of ``dvc_yaml`` reads; a ``${key}`` template (one stage per
    scorer) stands for the section it indexes, e.g. ``scorers.${key}`` -> ``scorers``."""
    stages = (yaml.safe_load(Path(dvc_yaml).read_text()) or {}).get("stages", {})
    keys: set[str] = set()
    for stage in stages.values():
        for key in (stage.get("do") or stage).get("params", []):
            if isinstance(key, str):  # a mapping names another params file: not ours to check
                keys.add(key.split(".${")[0])
    return sorted(keys)


def _has(raw: Any, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(raw, dict) or part not in raw:
            return False
        raw = raw[part]
    return True


def missing_dvc_params(raw: dict[str, Any], dvc_yaml: str | os.PathLike) -> list[str]:
    """The keys ``dvc_yaml`` reads that the parsed params mapping ``raw`` lacks."""
    return [k for k in dvc_param_keys(dvc_yaml) if not _has(raw, k)]
