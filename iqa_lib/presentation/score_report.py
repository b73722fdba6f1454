"""What a score run reports: the named tables and figures of ``notebooks/score.ipynb``.

The notebook only calls these, one cell each, so a reader can check the run
(which spec, which weight file, how fast) and its output (failures, how Q
moves with corruption and severity, the images at both ends) and the tests can
check the same functions without a kernel. Nothing here scores or builds a
model: the notebook gets its run from the score stage (``iqa_lib.pipeline.score``)
and hands its result and scorer to these functions.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from iqa_lib import fileio
from iqa_lib.analysis.distribution import describe_scoreset
from iqa_lib.analysis.io import ScoreSet, load_scores
from iqa_lib.data.images import thumbnail
from iqa_lib.data.manifest import read_manifest
from iqa_lib.presentation.plots_distribution import groups_text, q_distribution_figure
from iqa_lib.scorers.base import Scorer
from iqa_lib.scorers.registry import as_spec
from iqa_lib.scoring.engine import RunSettings, ScoringResult
from iqa_lib.scoring.parts import FAILURE_COLUMNS, failures_path

if TYPE_CHECKING:
    import matplotlib.pyplot as plt

KEYS = ["image_id", "corruption", "severity"]
THUMBNAIL = 128


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, read in 1 MiB blocks (weight files reach gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ScoreSettings(Protocol):
    """What the table of a score run shows of its options (the score stage's ``ScoreOptions``)."""

    @property
    def name(self) -> str: ...
    @property
    def spec(self) -> Any: ...
    @property
    def manifest(self) -> str: ...
    @property
    def out(self) -> str: ...
    @property
    def settings(self) -> RunSettings: ...


def spec_table(opts: ScoreSettings) -> pd.DataFrame:
    """The spec, its options and the run's settings from params.yaml: (setting, value) rows."""
    spec = as_spec(opts.spec)
    run = opts.settings
    rows: list[tuple[str, Any]] = [
        ("scorer", opts.name), ("spec", spec.text), ("family", spec.family), ("kind", spec.kind),
    ]
    rows += [(f"option {k}", v) for k, v in sorted(spec.options.items())]
    rows += [
        ("manifest", opts.manifest), ("output", opts.out), ("geometry", run.geometry),
        ("part size (rows)", run.part_size), ("part seconds", run.part_seconds), ("resume", run.resume),
    ]
    return pd.DataFrame(rows, columns=["setting", "value"]).astype({"value": str})


def weights_table(scorer: Scorer) -> pd.DataFrame:
    """One row: where the weights came from, the file and its sha256 (none for TV, PIQE)."""
    path = scorer.weights_file
    row = {
        "scorer": scorer.name,
        "weights": scorer.weights_source or "not recorded by this scorer's builder",
        "file": str(path) if path is not None else "",
        "sha256": "",
        "MiB": np.nan,
    }
    if path is not None and Path(path).is_file():
        row["sha256"] = file_sha256(path)
        row["MiB"] = round(Path(path).stat().st_size / 2**20, 2)
    return pd.DataFrame([row])


def runtime_table(result: ScoringResult) -> pd.DataFrame:
    """Device, batch size and loader workers the run used."""
    return pd.DataFrame([{
        "device": result.device, "batch size": result.batch_size, "workers": result.num_workers,
    }])


def speed_table(result: ScoringResult) -> pd.DataFrame:
    """Wall time and images/s, or that the output was reused, or how much a resume kept."""
    if result.reused:
        status = "reused: the output was complete for this very work, nothing was scored"
    elif result.kept_rows:
        status = f"resumed: {result.kept_rows} rows kept from the parts of an interrupted run"
    else:
        status = "scored"
    if result.together:  # one decode for several scorers: the time and rate are the whole pass's
        status += f" in one pass with {len(result.together)} other(s)"
    rate = result.scored_rows / result.seconds if result.scored_rows and result.seconds > 0 else np.nan
    return pd.DataFrame([{
        "status": status, "rows": result.rows, "kept rows": result.kept_rows,
        "scored rows": result.scored_rows, "wall time (s)": round(result.seconds, 2),
        "images/s": round(rate, 2) if np.isfinite(rate) else np.nan,
    }])


# what differs on every run; kept out of the report (dvc.lock records its hash), see write_speed
TIMING_COLUMNS = ["wall time (s)", "images/s"]


def speed_path(out: str | os.PathLike) -> Path:
    """``<out stem>.speed.json`` beside the score file (``.dvcignore``d: never a DVC output)."""
    out = Path(out)
    return out.with_name(f"{out.stem}.speed.json")


def write_speed(out: str | os.PathLike, speed: pd.DataFrame) -> Path | None:
    """Record the speed of a call that scored rows in ``speed_path(out)``; None (and the file
    left as it is) when nothing was scored, so a reuse keeps the record of the run that scored."""
    row = speed.iloc[0].to_dict()
    if not row["scored rows"]:
        return None
    path = speed_path(out)
    fileio.write_json({k: (None if isinstance(v, float) and not np.isfinite(v) else
                           v.item() if hasattr(v, "item") else v) for k, v in row.items()}, path)
    return path


def without_timing(speed: pd.DataFrame) -> pd.DataFrame:
    """The speed table as the report shows it: what the call did, not how long it took."""
    return speed.drop(columns=TIMING_COLUMNS)


def together_table(result: ScoringResult) -> pd.DataFrame:
    """The other scorers of the same pass (each image decoded once for all); empty when alone."""
    return pd.DataFrame({"scored in the same pass": list(result.together)})


def failures_table(out: str | os.PathLike) -> pd.DataFrame:
    """Rows the scorer could not score, with the reason (``<out stem>.failures.csv``)."""
    path = failures_path(Path(out))
    return pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=FAILURE_COLUMNS)


def failure_reasons(failures: pd.DataFrame) -> pd.DataFrame:
    """How many rows failed for each reason, most frequent first."""
    if failures.empty:
        return pd.DataFrame(columns=["reason", "rows"])
    counts = failures["reason"].astype(str).value_counts()
    return counts.rename_axis("reason").reset_index(name="rows")


def load_scoreset(out: str | os.PathLike) -> ScoreSet:
    out = Path(out)
    return load_scores(out.parent, [out.stem])


def distribution_table(scores: ScoreSet) -> pd.DataFrame:
    """n, mean, sd and quantiles of each Q per (corruption, severity)."""
    return describe_scoreset(scores)


def distribution_figure(scores: ScoreSet, table: pd.DataFrame, name: str) -> plt.Figure | None:
    """Q against severity per corruption (a histogram on clean-only data); None without rows."""
    if table.empty:
        return None
    return q_distribution_figure(scores, table=table, title=f"{name}: Q over {groups_text(table)}")


def main_variable(out: str | os.PathLike) -> str:
    """The Q the extremes are ranked by: ``q``, or ``q_p`` for a task model."""
    return "q" if "q" in pq.read_schema(out).names else "q_p"


def extremes(
    out: str | os.PathLike, manifest: str | os.PathLike, variable: str, k: int = 8
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``k`` lowest and ``k`` highest rows by ``variable`` (highest first), with image paths."""
    scores = pd.read_parquet(out)
    paths = read_manifest(manifest)[[*KEYS, "path"]]
    df = scores.merge(paths, on=KEYS, how="left", validate="one_to_one").dropna(subset=[variable])
    ordered = df.sort_values(variable, kind="stable")
    return ordered.head(k).reset_index(drop=True), ordered.tail(k).iloc[::-1].reset_index(drop=True)


def thumbnails(rows: pd.DataFrame, variable: str) -> tuple[list[np.ndarray], list[str]]:
    """Thumbnails of ``rows`` (an unreadable file becomes a grey square), captioned with Q and group."""
    images, captions = [], []
    for _, row in rows.iterrows():
        images.append(thumbnail(row["path"], THUMBNAIL))
        group = "clean" if row["corruption"] == "clean" else f"{row['corruption'][:14]} s{row['severity']}"
        captions.append(f"{row[variable]:.4g}\n{group}")
    return images, captions
