"""Reference distributions: how a scorer's Q is distributed on clean ImageNet and on ImageNet-C.

An audit compares a user's images with these. A reference is one tidy Parquet
file per scorer (``variable, corruption, severity, value``: every scored image of
a labelled reference set, clean rows with severity 0), with metadata saying what
made it (spec, options, geometry, SCORES_VERSION, image count, the command).
The kit ships references for its offline scorers in
``iqa_lib/resources/reference/`` (made from a documented 500-image ImageNet
sample and the ImageNet-C rendered from it; see that folder's README);
``iqa-kit reference`` builds one for any scorer from any labelled reference
manifest. A reference matches a scorer only when everything that changes the
scores matches: the spec and its options, the geometry and SCORES_VERSION.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

CLEAN = "clean"
REFERENCE_COLUMNS = ("variable", "corruption", "severity", "value")
METADATA_KEY = b"iqa_kit.reference"
SHIPPED = "iqa_lib.resources.reference"
Q_VARIABLES = ("q", "q_p", "q_h", "q_l")


class ReferenceError(ValueError):
    """A reference that cannot be built or does not match the scorer it is asked for."""


@dataclass(frozen=True)
class Reference:
    """The reference values of one scorer, and what made them."""

    frame: pd.DataFrame  # variable, corruption, severity, value
    info: dict[str, Any]
    path: Path | None = None

    @property
    def spec(self) -> str:
        return str(self.info.get("spec", ""))

    def groups(self, variable: str) -> dict[str, np.ndarray]:
        """``clean`` and ``severity 1`` .. ``severity 5`` (corruptions pooled) -> values."""
        df = self.frame[self.frame["variable"] == variable]
        out: dict[str, np.ndarray] = {}
        clean = df[df["corruption"] == CLEAN]["value"].to_numpy(np.float64)
        if len(clean):
            out[CLEAN] = clean
        corrupted = df[df["corruption"] != CLEAN]
        for severity, values in corrupted.groupby("severity", sort=True)["value"]:
            out[f"severity {int(severity)}"] = values.to_numpy(np.float64)
        return out


def spec_slug(spec_text: str) -> str:
    """A file-name-safe stem for a spec: ``efficientnet_lite:lite0`` -> ``efficientnet_lite-lite0``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", spec_text).strip("-") or "scorer"


def scorer_identity(spec_text: str, options: Mapping[str, Any], geometry: str) -> dict[str, Any]:
    """What must match between a reference and an audited score file."""
    from iqa_lib.scoring.complete import scores_version
    from iqa_lib.scoring.engine import RUNTIME_OPTIONS

    kept = {k: str(v) for k, v in sorted(options.items()) if k not in RUNTIME_OPTIONS}
    return {"spec": spec_text, "options": kept, "geometry": geometry, "scores_version": scores_version()}


def reference_from_scores(
    scores: pd.DataFrame, variables: Iterable[str] | None = None
) -> pd.DataFrame:
    """Tidy reference rows of a score frame with clean and corrupted rows."""
    variables = [v for v in (variables or Q_VARIABLES) if v in scores.columns]
    if not variables:
        raise ReferenceError(f"the score file has none of the Q columns {', '.join(Q_VARIABLES)}")
    if not (scores["corruption"] == CLEAN).any():
        raise ReferenceError("a reference needs clean images (corruption 'clean'); the score file has none")
    frames = []
    for variable in variables:
        values = scores[variable].to_numpy(np.float64)
        keep = np.isfinite(values)
        frames.append(
            pd.DataFrame(
                {
                    "variable": variable,
                    "corruption": scores["corruption"].to_numpy()[keep],
                    "severity": scores["severity"].to_numpy(np.int64)[keep],
                    "value": values[keep].astype(np.float32),
                }
            )
        )
    out = pd.concat(frames, ignore_index=True)
    return out.astype({"variable": "category", "corruption": "category", "severity": "int8"})


def write_reference(frame: pd.DataFrame, info: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write a reference atomically with its provenance in the Parquet metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame[list(REFERENCE_COLUMNS)], preserve_index=False)
    meta = {**(table.schema.metadata or {}), METADATA_KEY: json.dumps(dict(info), sort_keys=True).encode()}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table.replace_schema_metadata(meta), tmp, compression="zstd")
    os.replace(tmp, path)
    return path


def read_reference(path: str | os.PathLike) -> Reference:
    path = Path(path)
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - any read failure is reported the same way
        raise ReferenceError(f"reference {str(path)!r} is not a readable Parquet file: {exc}") from None
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ReferenceError(f"{str(path)!r} is not an iqa-kit reference (no {METADATA_KEY.decode()} metadata)")
    frame = table.to_pandas()
    missing = [c for c in REFERENCE_COLUMNS if c not in frame.columns]
    if missing:
        raise ReferenceError(f"reference {str(path)!r} lacks column(s) {missing}")
    frame["variable"] = frame["variable"].astype(str)
    frame["corruption"] = frame["corruption"].astype(str)
    return Reference(frame, json.loads(raw), path)


def shipped_reference_files() -> list[Path]:
    """The references that ship inside the package."""
    folder = resources.files(SHIPPED)
    return sorted(Path(str(p)) for p in folder.iterdir() if str(p).endswith(".parquet"))


def find_reference(
    identity: Mapping[str, Any], folders: Iterable[str | os.PathLike] = ()
) -> tuple[Reference | None, str]:
    """The first reference (user folders first, then the shipped ones) matching ``identity``.

    Returns (reference, "") or (None, why none matched) for the report to say.
    """
    candidates = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise ReferenceError(f"reference folder {str(folder)!r} does not exist")
        candidates += sorted(folder.glob("*.parquet"))
    candidates += shipped_reference_files()
    near = []
    for path in candidates:
        try:
            ref = read_reference(path)
        except ReferenceError:
            continue
        found = {k: ref.info.get(k) for k in identity}
        if found == dict(identity):
            return ref, ""
        if ref.info.get("spec") == identity.get("spec"):
            diff = [k for k in identity if found.get(k) != identity[k]]
            near.append(f"{path.name} differs in {', '.join(diff)}")
    why = (
        f"no reference for {identity.get('spec')!r}"
        + (f" ({'; '.join(near)})" if near else "")
        + ": build one with `iqa-kit reference --manifest <labelled ImageNet manifest> --scorer ...`"
    )
    return None, why
