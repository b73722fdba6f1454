"""Resumable output: one Parquet part per manifest chunk, written atomically, merged at the end.

Layout next to the output ``<out>``::

    <out>.parts/meta.json                    what the parts belong to (spec, manifest, part size)
    <out>.parts/part-0000012.failures.parquet  rows of chunk 12 that could not be scored
    <out>.parts/part-0000012.parquet         scores of chunk 12 (its presence = chunk done)

Every file is written to a temporary name and ``os.replace``d into place, so a
run killed at any moment leaves only whole parts; the failures part is written
before the scores part, so a done chunk always has both. Chunks depend only on
the part size, not on the number of processes, so a run can resume with a
different world size.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROW = "_row"
FAILURE_COLUMNS = ["image_id", "corruption", "severity", "path", "reason"]


def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def failures_path(out: Path) -> Path:
    """``<out stem>.failures.csv`` next to the output."""
    return out.with_name(out.stem + ".failures.csv")


def part_path(directory: Path, chunk: int) -> Path:
    return directory / f"part-{chunk:07d}.parquet"


def failure_part_path(directory: Path, chunk: int) -> Path:
    return directory / f"part-{chunk:07d}.failures.parquet"


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


# Score files say what made them: readers tell classifiers from zero-shot scorers by this.
METADATA_PREFIX = "iqa_kit."


def write_parquet_atomic(df: pd.DataFrame, path: Path, metadata: dict[str, str] | None = None) -> None:
    tmp = _tmp(path)
    if metadata:
        table = pa.Table.from_pandas(df, preserve_index=False)
        extra = {f"{METADATA_PREFIX}{k}".encode(): str(v).encode() for k, v in metadata.items()}
        pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), **extra}), tmp)
    else:
        df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def read_score_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``iqa_kit.*`` metadata of a score file (``spec``, ``kind``); empty when absent."""
    raw = pq.read_schema(path).metadata or {}
    return {
        k.decode()[len(METADATA_PREFIX):]: v.decode()
        for k, v in raw.items()
        if k.decode(errors="replace").startswith(METADATA_PREFIX)
    }


def write_csv_atomic(df: pd.DataFrame, path: Path) -> None:
    tmp = _tmp(path)
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)


def write_chunk(directory: Path, chunk: int, scores: pd.DataFrame, failures: pd.DataFrame) -> None:
    """Failures first, then scores: the scores part marks the chunk done."""
    write_parquet_atomic(failures, failure_part_path(directory, chunk))
    write_parquet_atomic(scores, part_path(directory, chunk))


def done_chunks(directory: Path) -> set[int]:
    if not directory.is_dir():
        return set()
    out = set()
    for p in directory.glob("part-*.parquet"):
        stem = p.name[len("part-") : -len(".parquet")]
        if stem.isdigit():
            out.add(int(stem))
    return out


def prepare_parts_dir(directory: Path, meta: dict[str, Any], resume: bool) -> None:
    """Create the parts folder, or check that the parts in it belong to this run.

    Parts of another spec, manifest or part size would mix into the output, so
    they are an error when resuming (and are removed when not resuming).
    """
    meta_file = directory / "meta.json"
    if directory.exists() and not resume:
        shutil.rmtree(directory)
    if directory.exists() and meta_file.is_file():
        old = json.loads(meta_file.read_text())
        if old != meta:
            diff = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
            raise RuntimeError(
                f"{directory} holds parts of a different run (differs in: {', '.join(diff)}); "
                "delete that folder or run without resume (--no-resume) to start over"
            )
        return
    directory.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(meta_file)
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    os.replace(tmp, meta_file)


def merge_parts(
    directory: Path,
    n_chunks: int,
    manifest: pd.DataFrame,
    key_columns: Sequence[str],
    out: Path,
    remove_parts: bool = True,
    metadata: dict[str, str] | None = None,
    columns: Sequence[str] | None = None,
) -> tuple[int, int]:
    """Merge every chunk's parts into ``out`` (manifest order) and the failures CSV.

    ``columns`` (default: every scored column) selects the output columns.
    Returns (rows scored, rows failed). Raises if a chunk is missing or a row
    appears twice.
    """
    missing = sorted(set(range(n_chunks)) - done_chunks(directory))
    if missing:
        raise RuntimeError(f"cannot merge {directory}: chunks {missing[:10]} are not done")
    scores = [pd.read_parquet(part_path(directory, c)) for c in range(n_chunks)]
    fails = [pd.read_parquet(failure_part_path(directory, c)) for c in range(n_chunks)]
    scores_df = pd.concat(scores, ignore_index=True) if scores else pd.DataFrame({ROW: []})
    fails_df = pd.concat(fails, ignore_index=True) if fails else pd.DataFrame({ROW: [], "reason": []})
    rows = pd.concat([scores_df[ROW], fails_df[ROW]], ignore_index=True)
    if rows.duplicated().any() or len(rows) != len(manifest):
        raise RuntimeError(
            f"parts in {directory} cover {rows.nunique()} of {len(manifest)} rows "
            f"with {int(rows.duplicated().sum())} duplicates; delete the folder and rerun"
        )
    scores_df = scores_df.sort_values(ROW, kind="stable")
    idx = scores_df[ROW].to_numpy()
    keys = manifest.iloc[idx][list(key_columns)].reset_index(drop=True)
    values = scores_df.drop(columns=[ROW])
    if columns is not None:
        values = values[list(columns)]
    result = pd.concat([keys, values.reset_index(drop=True)], axis=1)
    write_parquet_atomic(result, out, metadata)

    fails_df = fails_df.sort_values(ROW, kind="stable")
    fidx = fails_df[ROW].to_numpy().astype(int)
    fkeys = manifest.iloc[fidx][["image_id", "corruption", "severity", "path"]].reset_index(drop=True)
    failures = pd.concat([fkeys, fails_df[["reason"]].reset_index(drop=True)], axis=1)
    write_csv_atomic(failures[FAILURE_COLUMNS], failures_path(out))
    if remove_parts:
        # Rename first (atomic) so a kill mid-delete never leaves a half-emptied parts folder.
        trash = directory.with_name(f".{directory.name}.done-{os.getpid()}")
        os.replace(directory, trash)
        shutil.rmtree(trash, ignore_errors=True)
    return len(result), len(failures)
