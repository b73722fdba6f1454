"""From scanned rows to a manifest: ordered, consistent, checked, and split from the failures.

:func:`assemble` is the last step of every source (folders, ImageNet-C trees,
lists, shards); :func:`build_manifest` is the whole way from a clean folder
and an ImageNet-C tree. Undecodable files are listed in the failures and left
out; the checks run in worker processes that die with this one
(:mod:`iqa_lib.data.workers`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Literal

import pandas as pd
from tqdm import tqdm  # text bars: tqdm.auto warns in kernels without ipywidgets

from iqa_lib.corruptions import CORRUPTION_ORDER
from iqa_lib.data.images import check_image
from iqa_lib.data.labels import checked_classnames
from iqa_lib.data.manifest import CLEAN, FAILURE_COLUMNS, ManifestError, ManifestResult
from iqa_lib.data.scan import scan_imagenet_c, scan_labelled_folder
from iqa_lib.data.workers import process_pool

Check = Literal["full", "header", "none"]
CHECKS = ("full", "header", "none")


def check_mode(check: str) -> None:
    """Refuse a check mode that is not one of :data:`CHECKS`."""
    if check not in CHECKS:
        raise ManifestError(f"check must be one of full, header, none; got {check!r}")


def check_workers(workers: int | None) -> None:
    """``None`` (all cores) or a whole number of at least 1: 0 must not silently mean "all"."""
    if workers is not None and (isinstance(workers, bool) or int(workers) != workers or workers < 1):
        raise ManifestError(f"workers must be a whole number of at least 1, got {workers!r}")


def split_problems(
    df: pd.DataFrame, problems: dict[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Rows whose file is a dangling or looping link become failures with the reason.

    Known at scan time, so they are listed whatever the check mode (``none`` too).
    """
    if not problems:
        return df, None
    bad = df["path"].isin(problems)
    failures = df.loc[bad, ["image_id", "corruption", "severity", "path"]]
    failures = failures.assign(reason=failures["path"].map(problems))
    return df.loc[~bad].reset_index(drop=True), failures


def _order(df: pd.DataFrame) -> pd.DataFrame:
    rank = {name: i for i, name in enumerate((CLEAN, *CORRUPTION_ORDER))}
    key = df["corruption"].map(rank).fillna(len(rank)).astype(int)
    out = df.assign(_rank=key).sort_values(["_rank", "corruption", "severity", "image_id"], kind="stable")
    return out.drop(columns="_rank").reset_index(drop=True)


def _check_consistency(df: pd.DataFrame) -> None:
    dup = df.duplicated(["image_id", "corruption", "severity"], keep=False)
    if dup.any():
        ex = df.loc[dup].sort_values("image_id").head(2)["path"].tolist()
        raise ManifestError(
            f"{int(dup.sum())} rows share an image_id within one (corruption, severity), e.g. "
            f"{ex}: image ids are file stems and must be unique per group; rename the files"
        )
    if df["corruption"].nunique() < 2:
        return  # one group with unique ids: each id has one row, so one label
    labels = df.groupby("image_id")["label"].nunique()
    bad = labels[labels > 1]
    if len(bad):
        raise ManifestError(
            f"{len(bad)} image_id(s) carry different labels in different copies, e.g. "
            f"{bad.index[0]!r}: the clean and corrupted trees disagree"
        )


def _check_chunk(args: tuple[list[str], bool]) -> list[str | None]:
    paths, full = args
    return [check_image(p, full=full) for p in paths]


def _check_in_workers(paths: list[str], full: bool, workers: int, bar: dict) -> list[str | None]:
    """Reasons of ``paths``, checked by ``workers`` processes in lists of paths per task: a
    million tiny tasks would cost more in pickling than a header check."""
    size = max(1, min(1024, len(paths) // (workers * 8)))
    chunks = [(paths[i : i + size], full) for i in range(0, len(paths), size)]
    reasons: list[str | None] = []
    pool = process_pool(workers)
    try:
        with tqdm(**bar) as pbar:
            for part in pool.map(_check_chunk, chunks):
                reasons += part
                pbar.update(len(part))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return reasons


def find_failures(
    df: pd.DataFrame, check: Check = "full", workers: int | None = None, progress: bool = True
) -> pd.Series:
    """Reason per row (``None`` when the image is fine), checked in parallel.

    The worker processes die with this one (:mod:`iqa_lib.data.workers`), and an
    error or Ctrl-C drops the checks not started yet instead of waiting for them.
    """
    check_workers(workers)
    if check == "none" or df.empty:
        return pd.Series([None] * len(df), index=df.index, dtype=object)
    full = check == "full"
    workers = workers or os.cpu_count() or 1
    paths = df["path"].tolist()
    bar = dict(total=len(paths), desc=f"checking images ({check})", unit="img", disable=not progress)
    if workers == 1 or len(paths) < 64:
        reasons = [check_image(p, full=full) for p in tqdm(paths, **bar)]
    else:
        reasons = _check_in_workers(paths, full, workers, bar)
    return pd.Series(reasons, index=df.index, dtype=object)


def assemble(
    df: pd.DataFrame,
    check: Check = "full",
    workers: int | None = None,
    progress: bool = True,
    classes: list[str] | None = None,
    classnames: list[str] | None = None,
    failures: pd.DataFrame | None = None,
) -> ManifestResult:
    """Order, check and split rows into manifest and failures: the last step of every source.

    ``failures`` are rows already known bad (e.g. listed files that do not
    exist), with a ``reason`` column; they are added to the failures file.
    """
    check_mode(check)
    df = _order(df)
    _check_consistency(df)
    reasons = find_failures(df, check=check, workers=workers, progress=progress)
    bad = reasons.notna()
    found = df.loc[bad, ["image_id", "corruption", "severity", "path"]].assign(reason=reasons[bad])
    if failures is not None and len(failures):
        found = pd.concat([failures[list(FAILURE_COLUMNS)], found], ignore_index=True)
    manifest = df.loc[~bad].reset_index(drop=True)
    if manifest.empty:
        raise ManifestError(
            f"none of the {len(df) + (0 if failures is None else len(failures))} images could be "
            f"read; see the reasons: {found['reason'].head(3).tolist()}"
        )
    found = found.reset_index(drop=True)[list(FAILURE_COLUMNS)].astype(
        {"image_id": str, "corruption": str, "severity": "int64", "path": str, "reason": str}
    )
    return ManifestResult(manifest, found, classes, classnames)


def build_manifest(
    clean_root: str | os.PathLike | None = None,
    imagenet_c_root: str | os.PathLike | None = None,
    labels_file: str | os.PathLike | None = None,
    check: Check = "full",
    workers: int | None = None,
    progress: bool = True,
    corruptions: Iterable[str] | None = None,
    severities: Iterable[int] | None = None,
    classnames_file: str | os.PathLike | None = None,
) -> ManifestResult:
    """Join clean images and an ImageNet-C tree into one manifest, leaving out undecodable files.

    ``corruptions`` / ``severities`` keep only those groups of the tree (the
    clean rows always stay); ``None`` keeps every group present. A clean folder
    with its own classes takes an ImageNet-C tree whose class folders are those
    classes (as ``iqa-kit corrupt`` renders it), and ``classnames_file`` gives
    readable names for those classes (:func:`iqa_lib.data.labels.read_classnames_file`).
    """
    if clean_root is None and imagenet_c_root is None:
        raise ManifestError("give a clean image folder, an ImageNet-C root, or both")
    check_mode(check)
    check_workers(workers)
    parts, classes = [], None
    problems: dict[str, str] = {}  # dangling and looping links: path -> reason
    if clean_root is not None:
        clean, classes = scan_labelled_folder(clean_root, labels_file, problems=problems)
        parts.append(clean)
    classnames = checked_classnames(classnames_file, classes)
    if imagenet_c_root is not None:
        parts.append(_corrupted_rows(imagenet_c_root, classes, corruptions, severities, problems))
    df = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    df, known = split_problems(df, problems)
    return assemble(df, check, workers, progress, classes, classnames, failures=known)


def _corrupted_rows(
    root: str | os.PathLike,
    classes: list[str] | None,
    corruptions: Iterable[str] | None,
    severities: Iterable[int] | None,
    problems: dict[str, str],
) -> pd.DataFrame:
    """The ImageNet-C tree's rows of the requested groups; none of them is refused."""
    corrupted = scan_imagenet_c(root, classes, problems=problems)
    if corruptions is not None:
        corrupted = corrupted[corrupted["corruption"].isin(list(corruptions))]
    if severities is not None:
        corrupted = corrupted[corrupted["severity"].isin([int(s) for s in severities])]
    if corrupted.empty:
        raise ManifestError(
            f"ImageNet-C root {str(root)!r} holds none of the requested "
            "corruptions and severities (data.corruptions / data.severities)"
        )
    return corrupted
