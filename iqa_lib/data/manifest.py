"""The manifest as a contract: its columns, its image ids and the files it lives in.

A manifest has one row per image to score (docs/architecture.md, "Manifest"):
``image_id`` (file stem; joins the clean and corrupted copies of an image),
``label`` (ImageNet index 0-999 in sorted-wnid order, or the dataset's own
class index), ``corruption`` (``clean`` when none), ``severity`` (0 when clean)
and ``path``. It is written as Parquet, with the dataset's own class names in
the file's metadata, and a failures file beside it lists the images left out.
Building one is :mod:`iqa_lib.data.assemble` (from :mod:`iqa_lib.data.scan` or
:mod:`iqa_lib.data.sources`); this module only defines and stores it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from iqa_lib.data.messages import row_numbers
from iqa_lib.fileio import atomic_write_with, write_csv, writing

CLEAN = "clean"
UNLABELLED = -1  # label of an image of an unlabelled folder (``iqa-kit score --images``)
MANIFEST_COLUMNS = ("image_id", "label", "corruption", "severity", "path")
FAILURE_COLUMNS = ("image_id", "corruption", "severity", "path", "reason")
CLASSES_METADATA_KEY = b"iqa_kit.classes"
CLASSNAMES_METADATA_KEY = b"iqa_kit.classnames"  # readable names, same order as the classes


class ManifestError(ValueError):
    """A source tree or labels file that cannot become a manifest; says what to do."""


@dataclass
class ManifestResult:
    manifest: pd.DataFrame
    failures: pd.DataFrame
    classes: list[str] | None = None  # the dataset's own class names, when not ImageNet
    classnames: list[str] | None = None  # readable names for prompts (a classnames file), same order


_DTYPES = {"image_id": str, "label": "int64", "corruption": str, "severity": "int64", "path": str}


def rows_frame(rows: list[tuple[str, int, str, int, str]]) -> pd.DataFrame:
    """A manifest frame from row tuples (the benchmarks' baseline; the kit builds columns)."""
    df = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    return df.astype(_DTYPES)


def manifest_frame(
    image_ids: list[str],
    labels: list[int] | int,
    corruption: list[str] | str,
    severity: list[int] | int,
    paths: list[str],
) -> pd.DataFrame:
    """A manifest frame from column lists (or one value for all rows): no per-row tuples."""
    n = len(paths)

    def ints(value: list[int] | int) -> np.ndarray:
        return np.full(n, value, dtype=np.int64) if isinstance(value, int) else np.asarray(value, np.int64)

    df = pd.DataFrame(
        {
            "image_id": image_ids,
            "label": ints(labels),
            "corruption": [corruption] * n if isinstance(corruption, str) else corruption,
            "severity": ints(severity),
            "path": paths,
        }
    )
    return df.astype(_DTYPES)


# --------------------------------------------------------------------- image ids
_UNSAFE_ID = re.compile(r"\x00|^[/\\]|^[A-Za-z]:|(?:^|[/\\])\.\.(?:[/\\]|$)")
UNSAFE_ID_NOTE = ("is not a safe relative name (absolute, a '..' component, or a NUL character): "
                  "image ids name output files, so none may reach outside an output folder")


def unsafe_image_id(image_id: str) -> bool:
    """Whether ``image_id`` is absolute, has a ``..`` component (``/`` or ``\\``) or a NUL."""
    suspect = ".." in image_id or "\0" in image_id or image_id[:1] in ("/", "\\") or image_id[1:2] == ":"
    return suspect and _UNSAFE_ID.search(image_id) is not None


def check_image_ids(ids: pd.Series, where: str, rows: Callable[[list[int]], str] | None = None) -> None:
    """Refuse ``ids`` (a column) holding an unsafe image id, naming its row(s): ``rows`` formats
    positions (default: 1-based data rows). Each distinct id is checked once."""
    bad = {v for v in pd.unique(ids) if unsafe_image_id(str(v))}
    if not bad:
        return
    index = np.flatnonzero(ids.isin(bad).to_numpy()).tolist()
    shown = rows(index) if rows else row_numbers(index)
    raise ManifestError(
        f"{where}: image_id {ids.iloc[index[0]]!r} in row(s) {shown} {UNSAFE_ID_NOTE}; give "
        "each row a plain id, such as its file stem"
    )


# --------------------------------------------------------------------- files
def failures_path(manifest_path: str | os.PathLike) -> Path:
    manifest_path = Path(manifest_path)
    return manifest_path.with_name(f"{manifest_path.stem}.failures.csv")


def _class_metadata(result: ManifestResult) -> dict[bytes, bytes]:
    """The own classes (and their readable names) as Parquet metadata; none for ImageNet labels."""
    if result.classes is None:
        return {}
    meta = {CLASSES_METADATA_KEY: json.dumps(result.classes).encode()}
    if result.classnames is not None:
        if len(result.classnames) != len(result.classes):
            raise ManifestError(
                f"{len(result.classnames)} class names for {len(result.classes)} classes; "
                "give one readable name per class"
            )
        meta[CLASSNAMES_METADATA_KEY] = json.dumps(result.classnames).encode()
    return meta


def write_manifest(result: ManifestResult, path: str | os.PathLike) -> Path:
    """Write the manifest (Parquet) and its failures file beside it (always, maybe empty).

    Both are written under temporary names first and then moved into place, the
    failures file first, so a write the machine refuses is a
    :class:`~iqa_lib.fileio.WriteError` naming the file, and leaves the previous
    manifest as it was, nothing half-written.
    """
    path = Path(path)
    table = pa.Table.from_pandas(result.manifest[list(MANIFEST_COLUMNS)], preserve_index=False)
    meta = _class_metadata(result)
    if meta:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)

    def manifest_then_failures(tmp: Path) -> None:
        # the manifest under its temporary name, then the failures file in place: a fault in
        # either leaves the manifest's temporary name only, which atomic_write_with removes
        pq.write_table(table, tmp)
        write_csv(result.failures, failures_path(path))

    return atomic_write_with(path, manifest_then_failures)


def write_unlabelled_manifest(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a manifest (no classes, no failures file) atomically; a fault is a WriteError."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    columns = df[list(MANIFEST_COLUMNS)]
    return atomic_write_with(path, lambda tmp: columns.to_parquet(tmp, index=False))


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate a manifest; errors name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest {str(path)!r} does not exist; build it with `iqa-kit manifest`")
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any read failure is reported the same way
        raise ManifestError(f"manifest {str(path)!r} is not a readable Parquet file: {exc}") from None
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(f"manifest {str(path)!r} lacks column(s) {missing}; expected {list(MANIFEST_COLUMNS)}")
    if df.empty:
        raise ManifestError(f"manifest {str(path)!r} has no rows")
    df = df[list(MANIFEST_COLUMNS)].reset_index(drop=True).astype(_DTYPES)
    check_image_ids(df["image_id"], f"manifest {str(path)!r}")
    return df


def _metadata_list(path: str | os.PathLike, key: bytes) -> list[str] | None:
    raw = (pq.read_schema(path).metadata or {}).get(key)
    return json.loads(raw) if raw else None


def manifest_classes(path: str | os.PathLike) -> list[str] | None:
    """The dataset's own class names stored with a manifest, or ``None`` for ImageNet labels."""
    return _metadata_list(path, CLASSES_METADATA_KEY)


def stored_classnames(path: str | os.PathLike) -> list[str] | None:
    """The readable class names a classnames file gave the manifest, or ``None`` when none did."""
    return _metadata_list(path, CLASSNAMES_METADATA_KEY)


def manifest_classnames(path: str | os.PathLike) -> list[str] | None:
    """Readable class names for prompts: a classnames file's, else the folder names made readable.

    ``None`` for ImageNet labels (the scorers know ImageNet's names).
    """
    stored = stored_classnames(path)
    if stored is not None:
        return stored
    classes = manifest_classes(path)
    return None if classes is None else [readable_classname(c) for c in classes]


def readable_classname(folder: str) -> str:
    """``golden_retriever`` / ``golden-retriever`` -> ``golden retriever`` (a prompt word)."""
    return " ".join(folder.replace("_", " ").replace("-", " ").split()) or folder


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Images per (corruption, severity): the table users check first."""
    return (
        df.groupby(["corruption", "severity"], sort=False)
        .agg(images=("image_id", "size"), labels=("label", "nunique"))
        .reset_index()
    )
