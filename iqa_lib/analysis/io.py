"""Load a folder of score files (``<scorer>.parquet``) into one aligned, compact table.

Each file holds the keys ``image_id, corruption, severity`` and ``label``, and either an
NR-IQA column ``q`` or task columns ``pred, correct, q_p, q_h, q_l`` (docs/architecture.md, "Score files").
Only the needed columns are read; string keys become integer codes; scores keep the file's
float dtype (float32 stays float32). Rows are aligned on the keys across files and sorted
by (image ID, corruption, severity), so the rows of one image are contiguous.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

KEYS = ("image_id", "corruption", "severity")
TASK_QS = ("q_p", "q_h", "q_l")
CLEAN = "clean"
ZERO_SHOT_HINTS = ("open_clip", "zsclip", "zero_shot", "zeroshot", "clip_zs")


@dataclass
class ScoreSet:
    """Aligned scores: one row per (image ID, corruption, severity) present in every file.

    ``q`` maps (scorer, variant) -> score array (variant ``q`` for NR-IQA, ``q_p/q_h/q_l``
    for task scorers); ``m`` maps task scorer -> 0/1 int8 correctness; ``kinds`` maps each
    scorer to ``nr_iqa``, ``classifier`` or ``zero_shot``.
    """

    image: np.ndarray  # int32 codes into image_ids
    image_ids: pd.Index
    corruption: np.ndarray  # int16 codes into corruptions
    corruptions: pd.Index
    severity: np.ndarray  # int16
    label: np.ndarray  # int64
    q: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    m: dict[str, np.ndarray] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return int(self.image.size)

    @property
    def n_images(self) -> int:
        return len(self.image_ids)

    @property
    def task_models(self) -> list[str]:
        """Task files with a correctness M (a file of unlabelled images has Q but no M)."""
        return [s for s, k in self.kinds.items() if k in ("classifier", "zero_shot") and s in self.m]

    @property
    def classifiers(self) -> list[str]:
        return [s for s, k in self.kinds.items() if k == "classifier"]

    def clean_mask(self) -> np.ndarray:
        if CLEAN not in self.corruptions:
            return np.zeros(self.n_rows, dtype=bool)
        return self.corruption == self.corruptions.get_loc(CLEAN)

    def take(self, rows: np.ndarray) -> ScoreSet:
        """A new ScoreSet with the given rows (indices or mask), codes unchanged."""
        return ScoreSet(
            self.image[rows],
            self.image_ids,
            self.corruption[rows],
            self.corruptions,
            self.severity[rows],
            self.label[rows],
            {k: v[rows] for k, v in self.q.items()},
            {k: v[rows] for k, v in self.m.items()},
            dict(self.kinds),
        )

    def keys_frame(self) -> pd.DataFrame:
        """The key columns as a DataFrame (categoricals), for joining results back."""
        return pd.DataFrame(
            {
                "image_id": pd.Categorical.from_codes(self.image, categories=self.image_ids),
                "corruption": pd.Categorical.from_codes(
                    self.corruption, categories=self.corruptions
                ),
                "severity": self.severity,
                "label": self.label,
            }
        )


def scorer_kind(path: Path, columns: list[str]) -> str:
    """``nr_iqa`` for a ``q`` column, else ``zero_shot``/``classifier`` for task columns.

    Zero-shot files are recognised by a ``kind`` entry in the Parquet key-value metadata
    (``b"kind"`` or ``b"iqa_kit.kind"``) or, failing that, by their name (open_clip/zsclip).
    """
    if "q" in columns:
        return "nr_iqa"
    # ``correct`` may be absent: a classifier scored on unlabelled images (its Q without M)
    missing = [c for c in TASK_QS if c not in columns]
    if missing:
        raise ValueError(
            f"{path}: neither an NR-IQA score file (column 'q') nor a task score file "
            f"(columns correct, q_p, q_h, q_l); missing {missing}; a score file is written by `iqa-kit score`"
        )
    kind = _metadata_kind(path)
    if kind is not None:
        return kind
    name = path.stem.lower()
    return "zero_shot" if any(h in name for h in ZERO_SHOT_HINTS) else "classifier"


def _metadata_kind(path: Path) -> str | None:
    """The task kind a file's Parquet key-value metadata names, if any."""
    meta = read_schema(path).metadata or {}
    for key in (b"kind", b"iqa_kit.kind"):
        if key in meta and meta[key].decode() in ("classifier", "zero_shot"):
            return meta[key].decode()
    return None


def read_schema(path: Path) -> pa.Schema:
    """The schema of a score file; a truncated or foreign file is an error that names it."""
    try:
        return pq.read_schema(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for bad files
        raise ValueError(
            f"{path}: not a readable score file ({type(exc).__name__}: {exc}); it may be truncated: "
            "rescore it (iqa-kit score, or dvc repro -f score@<name>)"
        ) from None


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    try:
        table = pq.read_table(path, columns=columns, read_dictionary=["image_id", "corruption"])
    except Exception as exc:  # pyarrow raises several types for bad files
        raise ValueError(f"{path}: cannot read the score file ({exc})") from exc
    return table.to_pandas()


def _categories(values: pd.Series) -> pd.Index:
    """Sorted distinct values as strings, from the dictionary (not from every row)."""
    cat = values.astype("category").cat.remove_unused_categories()
    return pd.Index(cat.cat.categories.astype(str)).unique().sort_values()


def _codes(values: pd.Series, ref: pd.Index) -> np.ndarray:
    cat = values.astype("category")
    mapping = ref.get_indexer(cat.cat.categories.astype(str))
    codes = cat.cat.codes.to_numpy()
    return np.where(codes >= 0, mapping[codes], -1)


def _check_finite(path: Path, df: pd.DataFrame, cols: list[str]) -> None:
    for c in cols:
        bad = ~np.isfinite(df[c].to_numpy(dtype=np.float64, na_value=np.nan))
        if bad.any():
            first = df.loc[bad, list(KEYS)].iloc[0].tolist()
            raise ValueError(
                f"{path}: column {c!r} has {int(bad.sum())} NaN/inf value(s), first at "
                f"{dict(zip(KEYS, first, strict=True))}; rescore or drop those rows"
            )


def _is_manifest(path: Path) -> bool:
    """A manifest (image paths, no scores) kept beside the scores: not a broken score file."""
    names = read_schema(path).names
    return "path" in names and "q" not in names and "correct" not in names


def _unscored_skipped(d: Path, found: dict[str, Path]) -> list[Path]:
    """Every file of ``found`` but a manifest (skipped with a warning)."""
    paths = [p for p in found.values() if not _is_manifest(p)]
    skipped = sorted(set(found) - {p.stem for p in paths})
    if skipped:
        warnings.warn(f"{d}: skipped {skipped}: a manifest, not scores", stacklevel=3)
    if not paths:
        raise FileNotFoundError(f"no <scorer>.parquet score files in {d} (only {skipped})")
    return paths


def list_score_files(scores_dir: str | Path, scorers: list[str] | None = None) -> list[Path]:
    """The ``<scorer>.parquet`` files of a folder (all, or the named ones, in that order).

    With ``scorers=None``, a manifest in the folder (a ``path`` column, no scores) is skipped
    with a warning; any other Parquet file is read as scores, so a broken one is an error.
    """
    d = Path(scores_dir)
    if not d.is_dir():
        raise FileNotFoundError(
            f"scores folder {d} does not exist; give the folder of <scorer>.parquet files "
            "written by `iqa-kit score --out <folder>/<scorer>.parquet`"
        )
    found = {p.stem: p for p in sorted(d.glob("*.parquet"))}
    if not found:
        raise FileNotFoundError(f"no <scorer>.parquet score files in {d}; run `iqa-kit score`")
    if scorers is None:
        return _unscored_skipped(d, found)
    missing = [s for s in scorers if s not in found]
    if missing:
        raise FileNotFoundError(
            f"no score file for {missing} in {d}; available: {sorted(found)} "
            "(names are the file stems)"
        )
    return [found[s] for s in scorers]


def _value_columns(path: Path) -> tuple[str, list[str]]:
    """A score file's kind and the value columns to read, its key columns checked."""
    cols = read_schema(path).names
    missing = [c for c in (*KEYS, "label") if c not in cols]
    if missing:
        raise ValueError(f"{path}: missing key column(s) {missing} (every score file has image_id, corruption, severity and label)")
    kind = scorer_kind(path, cols)
    return kind, ["q"] if kind == "nr_iqa" else [c for c in ("correct", *TASK_QS) if c in cols]


def _first_file(path: Path, df: pd.DataFrame) -> tuple[ScoreSet, np.ndarray, pd.DataFrame]:
    """The first file sets the rows: its keys, sorted and unique. Returns the empty ScoreSet,
    the sorted keys and the file's rows in that order."""
    image_ids = _categories(df["image_id"])
    corruptions = _categories(df["corruption"])
    img = _codes(df["image_id"], image_ids).astype(np.int64)
    cor = _codes(df["corruption"], corruptions).astype(np.int64)
    sev = df["severity"].to_numpy(np.int64)
    key = (img * len(corruptions) + cor) * 1000 + sev
    order = np.argsort(key, kind="stable")
    ref_keys = key[order]
    dup = np.flatnonzero(ref_keys[1:] == ref_keys[:-1])
    if dup.size:
        row = df.iloc[order[dup[0]]]
        raise ValueError(f"{path}: duplicate key {[row[k] for k in KEYS]}")
    if sev.min() < 0 or sev.max() >= 1000:
        raise ValueError(f"{path}: severity must be in 0..999")
    out = ScoreSet(
        img[order].astype(np.int32),
        image_ids,
        cor[order].astype(np.int16),
        corruptions,
        sev[order].astype(np.int16),
        df["label"].to_numpy(np.int64)[order],
    )
    return out, ref_keys, df.iloc[order]


def _match_rows(
    path: Path, df: pd.DataFrame, out: ScoreSet, ref_keys: np.ndarray, first: str
) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    """A later file's rows among the first file's: (positions, matched rows, which of the
    first file's rows it has). Extra or missing rows warn; duplicates and labels that
    disagree raise."""
    img = _codes(df["image_id"], out.image_ids).astype(np.int64)
    cor = _codes(df["corruption"], out.corruptions).astype(np.int64)
    sev = df["severity"].to_numpy(np.int64)
    key = np.where(
        (img >= 0) & (cor >= 0), (img * len(out.corruptions) + cor) * 1000 + sev, -1
    )
    pos = np.searchsorted(ref_keys, key)
    pos_c = np.minimum(pos, len(ref_keys) - 1)
    hit = (key >= 0) & (ref_keys[pos_c] == key)
    if (~hit).any():
        warnings.warn(f"{path}: {int((~hit).sum())} row(s) not in {first}; ignored", stacklevel=3)
    pos = pos_c[hit]
    df = df.loc[hit]
    seen = np.zeros(len(ref_keys), dtype=bool)
    seen[pos] = True
    if int(seen.sum()) != pos.size:
        raise ValueError(f"{path}: duplicate (image_id, corruption, severity) keys")
    if (~seen).any():
        warnings.warn(
            f"{path}: lacks {int((~seen).sum())} row(s) of {first}; "
            "those rows are left out of every analysis",
            stacklevel=3,
        )
    if (out.label[pos] != df["label"].to_numpy(np.int64)).any():
        raise ValueError(f"{path}: labels disagree with {first} for the same keys")
    return pos, df, seen


def _store(out: ScoreSet, path: Path, kind: str, df: pd.DataFrame, pos: np.ndarray, value_cols: list[str]) -> None:
    """A file's value columns into ``out`` at rows ``pos``: ``correct`` as M, the rest as Q."""
    scorer = path.stem
    if scorer in out.kinds:
        raise ValueError(f"two score files named {scorer!r}")
    out.kinds[scorer] = kind
    n = out.n_rows
    for c in value_cols:
        vals = df[c].to_numpy()
        if c == "correct":
            if vals.dtype != bool and not np.isin(vals, (0, 1)).all():
                raise ValueError(f"{path}: column 'correct' must be bool or 0/1")
            arr = np.zeros(n, dtype=np.int8)
            arr[pos] = vals.astype(np.int8)
            out.m[scorer] = arr
        else:
            dtype = vals.dtype if vals.dtype in (np.float32, np.float64) else np.float64
            arr = np.zeros(n, dtype=dtype)
            arr[pos] = vals
            out.q[(scorer, c)] = arr


def load_scores(scores_dir: str | Path, scorers: list[str] | None = None) -> ScoreSet:
    """Read and align the score files of ``scores_dir`` (see the module docstring).

    Rows missing from some file are dropped with a warning that names the file; duplicate
    keys, NaN scores, non-0/1 ``correct`` and labels that disagree between files raise.
    """
    paths = list_score_files(scores_dir, scorers)
    out: ScoreSet | None = None
    ref_keys = present = None
    for path in paths:
        kind, value_cols = _value_columns(path)
        df = _read(path, [*KEYS, "label", *value_cols])
        _check_finite(path, df, value_cols)
        if out is None:
            out, ref_keys, df = _first_file(path, df)
            pos = np.arange(len(ref_keys))
            present = np.ones(len(ref_keys), dtype=bool)
        else:
            pos, df, seen = _match_rows(path, df, out, ref_keys, paths[0].name)
            present &= seen
        _store(out, path, kind, df, pos, value_cols)
    assert out is not None and present is not None
    if not present.all():
        out = out.take(np.flatnonzero(present))
    return out
