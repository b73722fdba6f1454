"""An audit folder read back as named data frames, for the report notebook and for exploring."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from iqa_lib import imagenet
from iqa_lib.audit.headline import CAVEAT, headline_blocks
from iqa_lib.audit.reference import Reference, read_reference, shipped_reference_files
from iqa_lib.audit.summary import class_quality, reference_distances, severity_level, summary_path
from iqa_lib.data.images import thumbnail
from iqa_lib.data.manifest import failures_path, manifest_classes, read_manifest

THUMBNAIL = 128


@dataclass
class Audit:
    out_dir: Path
    summary: dict[str, Any]
    manifest: pd.DataFrame  # the images that were read, with path
    unreadable: pd.DataFrame  # the manifest's failures: path, reason
    scores: dict[str, pd.DataFrame]  # scorer name -> its score file joined with path
    score_failures: dict[str, pd.DataFrame]
    classes: list[str] | None

    def variables(self, confidence_first: bool = False) -> list[tuple[str, str]]:
        """(scorer, Q variable) pairs; with ``confidence_first`` each task model's q_p leads."""
        pairs = [(n, v) for n, e in self.summary["scorers"].items() for v in e["variables"]]
        if confidence_first:
            first = [(n, v) for n, v in pairs if v == "q_p" and self.summary["scorers"][n].get("kind") != "nr_iqa"]
            pairs = first + [p for p in pairs if p not in first]
        return pairs

    def headline(self) -> dict[str, list[tuple[str, bool]]]:
        """Per task model, its first-screen sentences and whether each is a warning."""
        return headline_blocks(self.summary)

    def caveat(self) -> str:
        return self.summary.get("caveat") or CAVEAT

    def closest_table(self) -> pd.DataFrame:
        """One row per Q variable with a reference: its closest group, the severity level (0 = clean),
        whether that is informative and why; each task model's q_p first."""
        rows = []
        for name, variable in self.variables(confidence_first=True):
            item = self.entry(name, variable)
            closest = (item.get("reference") or {}).get("closest")
            if closest is None:
                continue
            informative = item.get("closest_informative")
            rows.append({
                "scorer": name,
                "Q": variable,
                "closest group": closest,
                "level": severity_level(closest),
                "informative": "-" if informative is None else ("yes" if informative else "no"),
                "why": item.get("closest_note") or "",
            })
        return pd.DataFrame(rows, columns=["scorer", "Q", "closest group", "level", "informative", "why"])

    def entry(self, name: str, variable: str) -> dict[str, Any]:
        return self.summary["scorers"][name]["variables"][variable]

    def overview(self) -> pd.DataFrame:
        """One row per scorer and Q variable: the summary in a table."""
        rows = []
        for name, variable in self.variables():
            item = self.entry(name, variable)
            acc = self.summary["scorers"][name].get("accuracy")
            q = item["quantiles"]
            rows.append({
                "scorer": name,
                "Q": variable,
                "n": item["n"],
                "mean": item["mean"],
                "sd": item["sd"],
                "5%": q.get("0.05"),
                "median": q.get("0.5"),
                "95%": q.get("0.95"),
                "direction": item["direction_words"],
                "closest reference group": (item.get("reference") or {}).get("closest") or "no reference",
                "closest informative": {True: "yes", False: "no"}.get(item.get("closest_informative"), "-"),
                "accuracy": None if not acc else acc["value"],
            })
        return pd.DataFrame(rows)

    def reference(self, name: str) -> Reference | None:
        """The reference the summary used for this scorer (user folder or shipped)."""
        for item in self.summary["scorers"][name]["variables"].values():
            ref = item.get("reference")
            if ref and ref.get("path"):
                path = Path(ref["path"])
                if path.is_file():
                    return read_reference(path)
                shipped = {p.name: p for p in shipped_reference_files()}
                if path.name in shipped:
                    return read_reference(shipped[path.name])
        return None

    def distances(self, name: str, variable: str) -> pd.DataFrame | None:
        ref = self.reference(name)
        if ref is None:
            return None
        return reference_distances(self.scores[name][variable].to_numpy(np.float64), ref, variable)

    def extremes(self, name: str, variable: str, k: int = 16) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The ``k`` lowest- and highest-quality images (by value when the direction is unknown)."""
        df = self.scores[name].dropna(subset=[variable])
        direction = self.entry(name, variable)["direction"]
        ordered = df.sort_values(variable, ascending=direction >= 0, kind="stable")
        return ordered.head(k), ordered.tail(k).iloc[::-1]

    def class_table(self, name: str, variable: str) -> pd.DataFrame:
        return class_quality(self.scores[name], variable, self.entry(name, variable)["direction"], self.classes)

    def class_name(self, label: int) -> str:
        if label < 0:
            return ""
        if self.classes is not None:
            return self.classes[label]
        return imagenet.wnid_of(int(label))

    def thumbnails(self, rows: pd.DataFrame, variable: str) -> tuple[list[np.ndarray], list[str]]:
        """Thumbnails of ``rows`` (a bad file becomes a grey square) and their captions."""
        images, captions = [], []
        for _, row in rows.iterrows():
            images.append(thumbnail(row["path"], THUMBNAIL))
            name = self.class_name(int(row["label"]))
            captions.append(f"{row[variable]:.3g}" + (f"\n{name[:18]}" if name else ""))
        return images, captions


def load_audit(out_dir: str | os.PathLike) -> Audit:
    out = Path(out_dir)
    summary = json.loads(summary_path(out).read_text())
    manifest_path = out / "manifest.parquet"
    manifest = read_manifest(manifest_path)
    keys = ["image_id", "corruption", "severity"]
    scores, failures = {}, {}
    for name, entry in summary["scorers"].items():
        path = out / entry["file"]
        df = pd.read_parquet(path)
        scores[name] = df.merge(manifest[[*keys, "path"]], on=keys, how="left", validate="one_to_one")
        fpath = path.with_name(f"{path.stem}.failures.csv")
        failures[name] = pd.read_csv(fpath) if fpath.is_file() else pd.DataFrame()
    unreadable = pd.read_csv(failures_path(manifest_path))
    return Audit(out, summary, manifest, unreadable, scores, failures, manifest_classes(manifest_path))
