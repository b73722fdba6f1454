"""Reference distributions: how a scorer's Q is distributed on clean ImageNet and on ImageNet-C.

An audit compares a user's images with these. A reference is one tidy Parquet
file per scorer (``variable, corruption, severity, value, row``: every scored
image of a labelled reference set, clean rows with severity 0), with metadata
saying what made it (spec, options, geometry, SCORES_VERSION, image count, the
command).

A task model's reference also keeps ``correct`` (1 when its top-1 prediction was
right, else 0) as one more variable, so an audit can predict the model's
accuracy on unlabelled images (``iqa_lib.audit.accuracy``). ``row`` is what
aligns the variables: the position of the image in the score file the reference
was made from, the same for all variables of one image; the values of one
variable keep the score file's order. :meth:`Reference.aligned` joins variables
on it and refuses a file whose rows disagree about their corruption and
severity. References made before ``row`` and ``correct`` were kept still read:
they give distributions, and no accuracy prediction.
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

from iqa_lib.fileio import atomic_write_with
from iqa_lib.scorers.spec import ScorerSpec
from iqa_lib.scoring.complete import scores_version

CLEAN = "clean"
REFERENCE_COLUMNS = ("variable", "corruption", "severity", "value")
ROW = "row"  # the image's position in the score file: aligns the variables of one image
CORRECT = "correct"
METADATA_KEY = b"iqa_kit.reference"
SHIPPED = "iqa_lib.resources.reference"
Q_VARIABLES = ("q", "q_p", "q_h", "q_l")


class ReferenceError(ValueError):
    """A reference that cannot be built or does not match the scorer it is asked for."""


class MisalignedReference(ReferenceError):
    """A reference whose variables disagree about which image a ``row`` is, or repeat one."""


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

    @property
    def variables(self) -> list[str]:
        return sorted(self.frame["variable"].unique().tolist())

    @property
    def has_correct(self) -> bool:
        """Whether this reference can fit accuracy estimators: ``correct`` aligned by ``row``."""
        return ROW in self.frame.columns and CORRECT in set(self.frame["variable"].unique())

    def aligned(self, variables: Iterable[str]) -> pd.DataFrame:
        """One row per reference image: ``corruption, severity`` and each of ``variables``.

        Joined on ``row``; only images with a finite value of every variable are kept,
        in ``row`` order. Raises :class:`ReferenceError` when the file has no ``row``
        column (made before it was kept), lacks a variable, repeats a row within a
        variable, or gives one row different corruptions or severities in different
        variables (misaligned data).
        """
        variables = list(variables)
        self._check_alignable(variables)
        out: pd.DataFrame | None = None
        for variable in variables:
            part = self._by_row(variable)
            out = part if out is None else self._join(out, part, variable, variables[0])
        assert out is not None, "aligned() needs at least one variable"
        out = out.sort_index()
        return out[np.isfinite(out[variables].to_numpy()).all(axis=1)]

    @property
    def _where(self) -> str:
        return f"reference {str(self.path or self.spec)!r}"

    def _check_alignable(self, variables: list[str]) -> None:
        """Refuse a file without ``row`` or without one of ``variables``."""
        if ROW not in self.frame.columns:
            raise ReferenceError(
                f"{self._where} has no {ROW!r} column to align its variables by (made before it was kept)"
            )
        missing = [v for v in variables if v not in set(self.frame["variable"].unique())]
        if missing:
            raise ReferenceError(f"{self._where} has no variable(s) {missing}")

    def _by_row(self, variable: str) -> pd.DataFrame:
        """One variable's corruption, severity and value, indexed by ``row`` (each row once)."""
        df = self.frame[self.frame["variable"] == variable]
        rows = df[ROW].to_numpy(np.int64)
        if len(np.unique(rows)) != len(rows):
            raise MisalignedReference(f"{self._where}: variable {variable!r} repeats a {ROW!r}: misaligned data")
        return pd.DataFrame(
            {"corruption": df["corruption"].to_numpy(), "severity": df["severity"].to_numpy(np.int64),
             variable: df["value"].to_numpy(np.float64)},
            index=pd.Index(rows, name=ROW),
        )

    def _join(self, out: pd.DataFrame, part: pd.DataFrame, variable: str, first: str) -> pd.DataFrame:
        """``out`` and one more variable on their common rows, which must agree about the group."""
        common = out.index.intersection(part.index)
        a, b = out.loc[common], part.loc[common]
        bad = (a["corruption"].to_numpy() != b["corruption"].to_numpy()) | (
            a["severity"].to_numpy() != b["severity"].to_numpy()
        )
        if bad.any():
            raise MisalignedReference(
                f"{self._where}: {int(bad.sum())} row(s) of {variable!r} sit in another corruption or "
                f"severity than the same row of {first!r} (first: {ROW} {common[np.flatnonzero(bad)[0]]}): "
                "misaligned data"
            )
        return out.loc[common].assign(**{variable: b[variable].to_numpy()})


def spec_slug(spec_text: str) -> str:
    """A file-name-safe stem for a spec: ``efficientnet_lite:lite0`` -> ``efficientnet_lite-lite0``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", spec_text).strip("-") or "scorer"


def scorer_identity(spec_text: str, options: Mapping[str, Any], geometry: str) -> dict[str, Any]:
    """What must match between a reference and an audited score file."""
    # the engine loads torch (seconds); reading a reference (the report notebook) needs none of it
    from iqa_lib.scoring.engine import RUNTIME_OPTIONS

    kept = {k: str(v) for k, v in sorted(options.items()) if k not in RUNTIME_OPTIONS}
    return {"spec": spec_text, "options": kept, "geometry": geometry, "scores_version": scores_version()}


def _label_space(meta: Mapping[str, Any], kind: str | None) -> str:
    """Over which classes a score file's confidences are: a reference must share them.

    No-reference scores have none. A classifier's q_p, q_h, q_l are over the
    1000 ImageNet classes unless a class map restricted them (an own head is
    told apart by its ``weights`` option, part of the identity already); ZSCLIP's
    are over the names it prompted with: ImageNet's unless the data has its own.
    """
    if kind == "nr_iqa":
        return "none"
    space = meta.get("label_space") or "imagenet"
    if space == "class_map" or (kind == "zero_shot" and space not in ("imagenet", "unlabelled")):
        return str(space)
    return "imagenet"


def reference_identity(spec: ScorerSpec, meta: Mapping[str, Any], geometry: str) -> dict[str, Any]:
    """What a reference must match to be compared with a score file (``meta``: its metadata)."""
    return scorer_identity(spec.text, spec.options, geometry) | {
        "label_space": _label_space(meta, meta.get("kind") or spec.kind)
    }


def reference_from_scores(
    scores: pd.DataFrame, variables: Iterable[str] | None = None
) -> pd.DataFrame:
    """Tidy reference rows of a score frame with clean and corrupted rows.

    By default the Q columns and, for a task model, ``correct`` (as 0/1); ``row`` is
    each value's position in ``scores`` (see the module docstring). Each variable's
    values keep the order of ``scores``; non-finite values are left out.
    """
    wanted = list(variables) if variables is not None else [*Q_VARIABLES, CORRECT]
    variables = [v for v in wanted if v in scores.columns]
    if not [v for v in variables if v != CORRECT]:
        raise ReferenceError(f"the score file has none of the Q columns {', '.join(Q_VARIABLES)}")
    if not (scores["corruption"] == CLEAN).any():
        raise ReferenceError("a reference needs clean images (corruption 'clean'); the score file has none")
    rows = np.arange(len(scores), dtype=np.int32)
    frames = []
    for variable in variables:
        column = scores[variable]
        if variable == CORRECT:
            column = column.astype("Float64")  # bool or nullable boolean -> 0/1 with NA kept
        values = column.to_numpy(np.float64, na_value=np.nan)
        keep = np.isfinite(values)
        frames.append(
            pd.DataFrame(
                {
                    "variable": variable,
                    "corruption": scores["corruption"].to_numpy()[keep],
                    "severity": scores["severity"].to_numpy(np.int64)[keep],
                    "value": values[keep].astype(np.float32),
                    ROW: rows[keep],
                }
            )
        )
    out = pd.concat(frames, ignore_index=True)
    return out.astype({"variable": "category", "corruption": "category", "severity": "int8"})


def write_reference(frame: pd.DataFrame, info: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write a reference atomically with its provenance in the Parquet metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = [*REFERENCE_COLUMNS, *([ROW] if ROW in frame.columns else [])]
    table = pa.Table.from_pandas(frame[columns], preserve_index=False)
    meta = {**(table.schema.metadata or {}), METADATA_KEY: json.dumps(dict(info), sort_keys=True).encode()}
    # row counts up within each variable: delta-encoded it costs next to nothing
    encoding = {ROW: "DELTA_BINARY_PACKED"} if ROW in columns else None
    return atomic_write_with(path, lambda tmp: pq.write_table(
        table.replace_schema_metadata(meta), tmp, compression="zstd",
        use_dictionary=["variable", "corruption"], column_encoding=encoding))


def check_reference_scores(meta: Mapping[str, Any], spec: ScorerSpec, geometry: str, path: Path) -> None:
    """Refuse a score file (``meta``: its metadata) made by another scorer or geometry, or over
    other classes than ImageNet's: a reference is made on ImageNet-labelled images."""
    if meta.get("spec") and meta["spec"] != spec.text:
        raise ReferenceError(f"{str(path)!r} was made by {meta['spec']!r}, not {spec.text!r}")
    if meta.get("geometry") and meta["geometry"] != geometry:
        raise ReferenceError(f"{str(path)!r} was scored with geometry {meta['geometry']!r}, not {geometry!r}")
    space = meta.get("label_space") or "imagenet"
    if spec.kind != "nr_iqa" and space not in ("imagenet", "unlabelled"):
        raise ReferenceError(
            f"{str(path)!r} was scored on {space!r} classes; references are made on ImageNet-labelled images"
        )


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
    near = []
    for path in _candidate_files(folders):
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


def _candidate_files(folders: Iterable[str | os.PathLike]) -> list[Path]:
    """The Parquet files of each user folder (which must exist), then the shipped references."""
    candidates = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise ReferenceError(f"reference folder {str(folder)!r} does not exist")
        candidates += sorted(folder.glob("*.parquet"))
    return candidates + shipped_reference_files()


def matching_reference(
    identity: Mapping[str, Any], folders: Iterable[str | os.PathLike] = ()
) -> tuple[Reference | None, str]:
    """:func:`find_reference` for confidences over ImageNet classes (or none, an NR-IQA metric's);
    confidences over a dataset's own classes have no reference: (None, why)."""
    if identity["label_space"] in ("none", "imagenet"):
        return find_reference(identity, folders)
    return None, (
        f"confidences over this dataset's own classes ({identity['label_space']}) have no "
        "ImageNet reference to compare with; the accuracy below is what they tell"
    )
