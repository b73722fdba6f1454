"""Manifests: one row per image to score (DESIGN.md section 3).

Columns: ``image_id`` (file stem; joins the clean and corrupted copies of an
image), ``label`` (ImageNet index 0-999 in sorted-wnid order, or the dataset's
own class index), ``corruption`` (``clean`` when none), ``severity`` (0 when
clean) and ``path``. Raw images are never modified: odd colour modes are
converted when read (:mod:`iqa_lib.data.images`), undecodable files are listed
in a failures file next to the manifest and left out.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from iqa_lib import imagenet
from iqa_lib.corruptions import ALL_CORRUPTIONS, CORRUPTION_ORDER, SEVERITIES
from iqa_lib.data.images import IMAGE_EXTENSIONS, check_image, is_image_file

CLEAN = "clean"
UNLABELLED = -1  # label of an image of an unlabelled folder (``iqa-kit score --images``)
MANIFEST_COLUMNS = ("image_id", "label", "corruption", "severity", "path")
FAILURE_COLUMNS = ("image_id", "corruption", "severity", "path", "reason")
CLASSES_METADATA_KEY = b"iqa_kit.classes"
CLASSNAMES_METADATA_KEY = b"iqa_kit.classnames"  # readable names, same order as the classes
Check = Literal["full", "header", "none"]


class ManifestError(ValueError):
    """A source tree or labels file that cannot become a manifest; says what to do."""


@dataclass
class ManifestResult:
    manifest: pd.DataFrame
    failures: pd.DataFrame
    classes: list[str] | None = None  # the dataset's own class names, when not ImageNet
    classnames: list[str] | None = None  # readable names for prompts (a classnames file), same order


def _visible(entries: Iterable[Path]) -> list[Path]:
    return sorted(p for p in entries if not p.name.startswith((".", "_")))


def _frame(rows: list[tuple[str, int, str, int, str]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    return df.astype({"image_id": str, "label": "int64", "corruption": str, "severity": "int64", "path": str})


def _require_dir(root: str | os.PathLike, what: str) -> Path:
    root = Path(root)
    if not root.exists():
        raise ManifestError(f"{what} {str(root)!r} does not exist; check the path in params.yaml or on the command line")
    if not root.is_dir():
        raise ManifestError(f"{what} {str(root)!r} is not a folder")
    return root


# --------------------------------------------------------------------- labels files
def read_labels_file(path: str | os.PathLike) -> dict[str, int]:
    """Map image stem -> label from a labels file.

    Accepted: two columns (file name or stem, then a wnid or an integer label
    0-999 in sorted-wnid order), comma-, tab- or space-separated, with or
    without a header; and the Kaggle ``LOC_val_solution.csv`` form
    (``ImageId,PredictionString`` whose first token is the wnid). Integer
    labels are sorted-wnid indices, *not* the devkit's 1-based ILSVRC2012_ID.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"labels file {str(path)!r} does not exist")
    text = path.read_text().splitlines()
    lines = [ln.strip() for ln in text if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ManifestError(f"labels file {str(path)!r} is empty")
    delimiter = "," if "," in lines[0] else ("\t" if "\t" in lines[0] else None)
    labels: dict[str, int] = {}
    for lineno, line in enumerate(lines, start=1):
        fields = next(csv.reader([line], delimiter=delimiter)) if delimiter else line.split()
        fields = [f.strip() for f in fields if f.strip()]
        if len(fields) < 2:
            raise ManifestError(f"{path}:{lineno}: expected '<file> <label>', got {line!r}")
        name, value = fields[0], fields[1].split()[0]
        if lineno == 1 and not imagenet.is_wnid(value) and not value.lstrip("-").isdigit():
            continue  # header row
        if imagenet.is_wnid(value):
            try:
                label = imagenet.label_of(value)
            except KeyError as exc:
                raise ManifestError(f"{path}:{lineno}: {exc.args[0]}") from None
        else:
            try:
                label = int(value)
            except ValueError:
                raise ManifestError(
                    f"{path}:{lineno}: label {value!r} is neither a wnid nor an integer 0-999"
                ) from None
            if not 0 <= label < imagenet.NUM_CLASSES:
                raise ManifestError(f"{path}:{lineno}: label {label} is outside 0-999")
        stem = Path(name).stem if is_image_file(name) else name
        if stem in labels and labels[stem] != label:
            raise ManifestError(f"{path}:{lineno}: {stem!r} is given two labels ({labels[stem]}, {label})")
        labels[stem] = label
    return labels


# --------------------------------------------------------------------- clean folders
def scan_labelled_folder(
    root: str | os.PathLike, labels_file: str | os.PathLike | None = None
) -> tuple[pd.DataFrame, list[str] | None]:
    """Clean rows of a labelled image folder, and the class names when they are not ImageNet's.

    Layouts, tried in this order: a flat folder plus ``labels_file``; class
    sub-folders (wnid-named: ImageNet labels; otherwise the dataset's own
    classes, labelled by sorted folder name); flat files named
    ``<wnid>_<anything>``.
    """
    root = _require_dir(root, "image folder")
    entries = _visible(root.iterdir())
    files = [p for p in entries if p.is_file() and is_image_file(p)]
    dirs = [p for p in entries if p.is_dir()]
    if labels_file is not None:
        labels = read_labels_file(labels_file)
        images = sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p))
        if not images:
            raise ManifestError(f"image folder {str(root)!r} holds no images")
        missing = [p for p in images if p.stem not in labels]
        if missing:
            raise ManifestError(
                f"{len(missing)} image(s) in {str(root)!r} have no entry in labels file "
                f"{str(labels_file)!r}, e.g. {missing[0].name!r}"
            )
        return _frame([(p.stem, labels[p.stem], CLEAN, 0, str(p)) for p in images]), None
    if dirs:
        classes = [d.name for d in dirs]
        imagenet_classes = all(imagenet.is_wnid(c) for c in classes)
        rows = []
        for index, d in enumerate(dirs):
            if imagenet_classes:
                try:
                    label = imagenet.label_of(d.name)
                except KeyError as exc:
                    raise ManifestError(f"class folder {str(d)!r}: {exc.args[0]}") from None
            else:
                label = index
            rows += [(p.stem, label, CLEAN, 0, str(p)) for p in sorted(d.rglob("*")) if p.is_file() and is_image_file(p)]
        if not rows:
            raise ManifestError(f"the class folders of {str(root)!r} hold no images")
        return _frame(rows), None if imagenet_classes else classes
    if files:
        rows, unlabelled = [], []
        for p in files:
            wnid = p.name.split("_", 1)[0]
            if not imagenet.is_wnid(wnid):
                unlabelled.append(p.name)
                continue
            try:
                rows.append((p.stem, imagenet.label_of(wnid), CLEAN, 0, str(p)))
            except KeyError as exc:
                raise ManifestError(f"{str(p)!r}: {exc.args[0]}") from None
        if unlabelled:
            raise ManifestError(
                f"cannot label {len(unlabelled)} file(s) in flat folder {str(root)!r} "
                f"(e.g. {unlabelled[0]!r}): name files '<wnid>_<anything>', put them in class "
                "sub-folders, or pass a labels file (--labels-file / data.clean_labels)"
            )
        return _frame(rows), None
    raise ManifestError(
        f"image folder {str(root)!r} is empty or has an unknown layout: expected class "
        "sub-folders, files named '<wnid>_<anything>', or a flat folder with a labels file"
    )


# --------------------------------------------------------------------- ImageNet-C trees
def scan_imagenet_c(root: str | os.PathLike) -> pd.DataFrame:
    """Corrupted rows of an ImageNet-C tree ``<root>/<corruption>/<severity>/<wnid>/<file>``."""
    root = _require_dir(root, "ImageNet-C root")
    rows = []
    corruption_dirs = [p for p in _visible(root.iterdir()) if p.is_dir()]
    if not corruption_dirs:
        raise ManifestError(
            f"ImageNet-C root {str(root)!r} holds no corruption folders; expected "
            "<root>/<corruption>/<severity>/<wnid>/<file> (generate one with `iqa-kit corrupt`)"
        )
    for cdir in corruption_dirs:
        if cdir.name not in ALL_CORRUPTIONS:
            raise ManifestError(
                f"unknown corruption folder {str(cdir)!r}; valid names: {', '.join(ALL_CORRUPTIONS)}"
            )
        for sdir in _visible(cdir.iterdir()):
            if not sdir.is_dir():
                continue
            if not sdir.name.isdigit() or int(sdir.name) not in SEVERITIES:
                raise ManifestError(f"severity folder {str(sdir)!r} is not one of 1-5")
            severity = int(sdir.name)
            for wdir in _visible(sdir.iterdir()):
                if not wdir.is_dir():
                    continue
                try:
                    label = imagenet.label_of(wdir.name)
                except KeyError:
                    raise ManifestError(
                        f"class folder {str(wdir)!r} is not an ImageNet-1k wnid; ImageNet-C trees "
                        "use <root>/<corruption>/<severity>/<wnid>/<file>"
                    ) from None
                rows += [
                    (p.stem, label, cdir.name, severity, str(p))
                    for p in sorted(wdir.iterdir())
                    if p.is_file() and is_image_file(p)
                ]
    if not rows:
        raise ManifestError(f"ImageNet-C root {str(root)!r} holds no images")
    return _frame(rows)


# --------------------------------------------------------------------- assembly
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
    labels = df.groupby("image_id")["label"].nunique()
    bad = labels[labels > 1]
    if len(bad):
        raise ManifestError(
            f"{len(bad)} image_id(s) carry different labels in different copies, e.g. "
            f"{bad.index[0]!r}: the clean and corrupted trees disagree"
        )


def _check_one(args: tuple[str, bool]) -> str | None:
    return check_image(args[0], full=args[1])


def find_failures(
    df: pd.DataFrame, check: Check = "full", workers: int | None = None, progress: bool = True
) -> pd.Series:
    """Reason per row (``None`` when the image is fine), checked in parallel."""
    if check == "none" or df.empty:
        return pd.Series([None] * len(df), index=df.index, dtype=object)
    full = check == "full"
    workers = workers or os.cpu_count() or 1
    jobs = [(p, full) for p in df["path"]]
    bar = dict(total=len(jobs), desc=f"checking images ({check})", unit="img", disable=not progress)
    if workers == 1 or len(jobs) < 64:
        reasons = [_check_one(j) for j in tqdm(jobs, **bar)]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            chunk = max(1, min(256, len(jobs) // (workers * 8)))
            reasons = list(tqdm(pool.map(_check_one, jobs, chunksize=chunk), **bar))
    return pd.Series(reasons, index=df.index, dtype=object)


def build_manifest(
    clean_root: str | os.PathLike | None = None,
    imagenet_c_root: str | os.PathLike | None = None,
    labels_file: str | os.PathLike | None = None,
    check: Check = "full",
    workers: int | None = None,
    progress: bool = True,
    corruptions: Iterable[str] | None = None,
    severities: Iterable[int] | None = None,
) -> ManifestResult:
    """Join clean images and an ImageNet-C tree into one manifest, leaving out undecodable files.

    ``corruptions`` / ``severities`` keep only those groups of the tree (the
    clean rows always stay); ``None`` keeps every group present.
    """
    if clean_root is None and imagenet_c_root is None:
        raise ManifestError("give a clean image folder, an ImageNet-C root, or both")
    if check not in ("full", "header", "none"):
        raise ManifestError(f"check must be one of full, header, none; got {check!r}")
    parts, classes = [], None
    if clean_root is not None:
        clean, classes = scan_labelled_folder(clean_root, labels_file)
        parts.append(clean)
    if imagenet_c_root is not None:
        if classes is not None:
            raise ManifestError(
                "the clean folder uses its own (non-ImageNet) classes, but ImageNet-C trees are "
                "labelled by ImageNet wnids; use wnid-named class folders or a labels file"
            )
        corrupted = scan_imagenet_c(imagenet_c_root)
        if corruptions is not None:
            corrupted = corrupted[corrupted["corruption"].isin(list(corruptions))]
        if severities is not None:
            corrupted = corrupted[corrupted["severity"].isin([int(s) for s in severities])]
        if corrupted.empty:
            raise ManifestError(
                f"ImageNet-C root {str(imagenet_c_root)!r} holds none of the requested "
                "corruptions and severities (data.corruptions / data.severities)"
            )
        parts.append(corrupted)
    df = _order(pd.concat(parts, ignore_index=True))
    _check_consistency(df)
    reasons = find_failures(df, check=check, workers=workers, progress=progress)
    bad = reasons.notna()
    failures = df.loc[bad, ["image_id", "corruption", "severity", "path"]].assign(reason=reasons[bad])
    manifest = df.loc[~bad].reset_index(drop=True)
    if manifest.empty:
        raise ManifestError(f"none of the {len(df)} images could be decoded; see the reasons: {failures['reason'].head(3).tolist()}")
    return ManifestResult(manifest, failures.reset_index(drop=True)[list(FAILURE_COLUMNS)], classes)


def images_manifest(folder: str | os.PathLike) -> pd.DataFrame:
    """Unlabelled clean rows of every image file under ``folder`` (recursively, sorted).

    ``image_id`` is the path relative to ``folder`` (unique by construction);
    ``label`` is -1. Hidden files and folders are skipped; a broken link to an
    image is kept, so that scoring lists it as a failure instead of losing it.
    """
    root = _require_dir(folder, "image folder")
    rows = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not is_image_file(p):
            continue
        if p.is_file() or p.is_symlink():
            rows.append((rel.as_posix(), UNLABELLED, CLEAN, 0, str(p)))
    if not rows:
        raise ManifestError(
            f"no image files under {str(root)!r} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    return _frame(rows)


# --------------------------------------------------------------------- files
def failures_path(manifest_path: str | os.PathLike) -> Path:
    manifest_path = Path(manifest_path)
    return manifest_path.with_name(f"{manifest_path.stem}.failures.csv")


def write_manifest(result: ManifestResult, path: str | os.PathLike) -> Path:
    """Write the manifest (Parquet, atomically) and its failures file beside it (always, maybe empty)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(result.manifest[list(MANIFEST_COLUMNS)], preserve_index=False)
    if result.classes is not None:
        meta = dict(table.schema.metadata or {})
        meta[CLASSES_METADATA_KEY] = json.dumps(result.classes).encode()
        if result.classnames is not None:
            if len(result.classnames) != len(result.classes):
                raise ManifestError(
                    f"{len(result.classnames)} class names for {len(result.classes)} classes; "
                    "give one readable name per class"
                )
            meta[CLASSNAMES_METADATA_KEY] = json.dumps(result.classnames).encode()
        table = table.replace_schema_metadata(meta)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    fpath = failures_path(path)
    tmp = fpath.with_name(f".{fpath.name}.tmp")
    result.failures.to_csv(tmp, index=False)
    os.replace(tmp, fpath)
    return path


def write_unlabelled_manifest(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a manifest (no classes, no failures file) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    df[list(MANIFEST_COLUMNS)].to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


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
    df = df[list(MANIFEST_COLUMNS)].reset_index(drop=True).astype(
        {"image_id": str, "label": "int64", "corruption": str, "severity": "int64", "path": str}
    )
    return df


def manifest_classes(path: str | os.PathLike) -> list[str] | None:
    """The dataset's own class names stored with a manifest, or ``None`` for ImageNet labels."""
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(CLASSES_METADATA_KEY)
    return json.loads(raw) if raw else None


def manifest_classnames(path: str | os.PathLike) -> list[str] | None:
    """Readable class names for prompts: a classnames file's, else the folder names made readable.

    ``None`` for ImageNet labels (the scorers know ImageNet's names).
    """
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(CLASSNAMES_METADATA_KEY)
    if raw:
        return json.loads(raw)
    classes = manifest_classes(path)
    return None if classes is None else [readable_classname(c) for c in classes]


def readable_classname(folder: str) -> str:
    """``golden_retriever`` / ``golden-retriever`` -> ``golden retriever`` (a prompt word)."""
    return " ".join(folder.replace("_", " ").replace("-", " ").split()) or folder


def clean_images(source: str | os.PathLike, labels_file: str | os.PathLike | None = None) -> pd.DataFrame:
    """ImageNet-labelled clean rows from a folder or from an existing manifest (its clean rows)."""
    source = Path(source)
    if source.is_file() and source.suffix == ".parquet":
        df = read_manifest(source)
        clean = df[df["corruption"] == CLEAN].reset_index(drop=True)
        if clean.empty:
            raise ManifestError(f"manifest {str(source)!r} has no clean rows to corrupt")
        return clean
    rows, classes = scan_labelled_folder(source, labels_file)
    if classes is not None:
        raise ManifestError(
            f"{str(source)!r} uses its own classes ({', '.join(classes[:3])}, ...), not ImageNet "
            "wnids; ImageNet-C trees need wnid-named class folders, <wnid>_ file names or a labels file"
        )
    return rows


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Images per (corruption, severity): the table users check first."""
    return (
        df.groupby(["corruption", "severity"], sort=False)
        .agg(images=("image_id", "size"), labels=("label", "nunique"))
        .reset_index()
    )

