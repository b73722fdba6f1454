"""Manifests: one row per image to score (docs/architecture.md, "Manifest").

Columns: ``image_id`` (file stem; joins the clean and corrupted copies of an
image), ``label`` (ImageNet index 0-999 in sorted-wnid order, or the dataset's
own class index), ``corruption`` (``clean`` when none), ``severity`` (0 when
clean) and ``path``. Raw images are never modified: odd colour modes are
converted when read (:mod:`iqa_lib.data.images`), undecodable files are listed
in a failures file next to the manifest and left out.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm  # text bars: tqdm.auto warns in kernels without ipywidgets

from iqa_lib import imagenet
from iqa_lib.corruptions import ALL_CORRUPTIONS, CORRUPTION_ORDER, SEVERITIES
from iqa_lib.data.images import (
    IMAGE_EXTENSIONS,
    NOT_UTF8,
    check_image,
    is_image_file,
    missing_reason,
    shown,
    unsupported_image_reason,
)
from iqa_lib.data.workers import process_pool
from iqa_lib.fileio import atomic_write_with, temporary_name, writing

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


class NoLabelsError(ManifestError):
    """A flat folder none of whose images carries a label (no labels file, no wnid names)."""


_DTYPES = {"image_id": str, "label": "int64", "corruption": str, "severity": "int64", "path": str}


def _frame(rows: list[tuple[str, int, str, int, str]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    return df.astype(_DTYPES)


def _columns(
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


def _require_dir(root: str | os.PathLike, what: str) -> Path:
    root = Path(root)
    if not root.exists():
        raise ManifestError(f"{what} {str(root)!r} does not exist; check the path in params.yaml or on the command line")
    if not root.is_dir():
        raise ManifestError(f"{what} {str(root)!r} is not a folder")
    return root


def _entries(folder: str) -> list[os.DirEntry]:
    """Visible entries of one folder, sorted by name (no stat: DirEntry caches the type)."""
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as exc:
        raise ManifestError(f"cannot list folder {folder!r}: {exc.strerror or exc}") from None


def _is_dir(entry: os.DirEntry, follow: bool = True) -> bool:
    try:
        return entry.is_dir(follow_symlinks=follow)
    except OSError:
        return False


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def _link_problem(entry: os.DirEntry) -> str | None:
    """Why ``entry``, when a symbolic link, leads to no file (dangling, a loop); else ``None``.

    Costs a stat only for links (``is_symlink`` reads the cached entry type).
    """
    try:
        if not entry.is_symlink():
            return None
        os.stat(entry.path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return missing_reason(entry.path, exc)
        return f"cannot follow symbolic link: {exc.strerror or exc}"
    return None


def _image_entry(entry: os.DirEntry, problems: dict[str, str] | None) -> bool:
    """Whether ``entry`` (named like an image) is one: a file, or a link to none, recorded in ``problems``.

    Dangling and looping links are kept so that they are reported with their
    reason instead of silently lost.
    """
    if _is_file(entry):
        return True
    reason = _link_problem(entry)
    if reason is None:
        return False
    if problems is not None:
        problems[entry.path] = reason
    return True


def _unsupported_entry(entry: os.DirEntry, problems: dict[str, str] | None) -> bool:
    """Whether ``entry`` is a file in an image format the kit does not read, recorded in
    ``problems`` so that it becomes a failure row instead of vanishing from the manifest."""
    reason = unsupported_image_reason(entry.name)
    if reason is None or problems is None or not _is_file(entry):
        return False
    problems[entry.path] = reason
    return True


def walk_images(
    top: str | os.PathLike, recursive: bool = True, problems: dict[str, str] | None = None
) -> tuple[list[str], list[str]]:
    """Paths and file names of the image files under ``top``, in path order.

    ``os.scandir`` with the cached entry types: no stat per file, which is what
    makes a million-file folder take seconds rather than minutes. Hidden
    entries (``.name``) are skipped; symbolic links to files are followed, links
    to folders below ``top`` are not (as ``Path.rglob``), so a link loop cannot
    trap the walk. The order is that of sorted ``Path`` objects. An image-named
    link that leads to no file (dangling, or a loop) is listed too, so that it
    is reported, and ``problems`` (when given) maps its path to the reason; so is a
    file in an image format the kit does not read (``.heic``, ``.avif``, raw, ...).
    """
    paths: list[str] = []
    names: list[str] = []

    def visit(folder: str) -> None:
        for e in _entries(folder):
            name = e.name
            if (
                os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS and _image_entry(e, problems)
            ) or _unsupported_entry(e, problems):
                paths.append(_listed(e.path, problems))
                names.append(shown(name))
            elif recursive and _is_dir(e, follow=False):
                visit(e.path)

    visit(os.fspath(top))
    return paths, names


def _listed(path: str, problems: dict[str, str] | None) -> str:
    """``path`` as the manifest lists it: a name that is not UTF-8 is escaped and recorded in
    ``problems`` (a failure row: Parquet and CSV cannot hold it, and the run goes on)."""
    safe = shown(path)
    if safe != path and problems is not None:
        problems[safe] = NOT_UTF8
    return safe


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


def _stems(names: list[str]) -> list[str]:
    return [os.path.splitext(n)[0] for n in names]


def _examples(items: Iterable[str], n: int = 5) -> str:
    items = list(items)
    shown = ", ".join(repr(x) for x in items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


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
    shown = rows(index) if rows else _examples([str(i + 1) for i in index]).replace("'", "")
    raise ManifestError(
        f"{where}: image_id {ids.iloc[index[0]]!r} in row(s) {shown} {UNSAFE_ID_NOTE}; give "
        "each row a plain id, such as its file stem"
    )


# --------------------------------------------------------------------- labels files
MISSING_LABELS = frozenset({"", "nan", "na", "n/a", "<na>", "none", "null"})  # any case
MISSING_LABEL_NOTE = "NaN, NA, None, null and empty read as missing values, never a class"


def missing_label(value: object) -> bool:
    """Whether a label reads as a missing value: one of them must never become a class."""
    if value is None or (isinstance(value, float) and value != value):
        return True
    return isinstance(value, str) and value.strip().lower() in MISSING_LABELS


def read_labels_file(path: str | os.PathLike) -> dict[str, int]:
    """Map image stem -> label from a labels file.

    Accepted: two columns (file name or stem, then a wnid or an integer label
    0-999 in sorted-wnid order), comma-, tab- or space-separated, with or
    without a header; and the Kaggle ``LOC_val_solution.csv`` form
    (``ImageId,PredictionString`` whose first token is the wnid). Integer
    labels are sorted-wnid indices, *not* the devkit's 1-based ILSVRC2012_ID.
    Errors name the line of the file (blank and ``#`` lines counted).
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"labels file {str(path)!r} does not exist")
    lines = [(n, ln.strip()) for n, ln in enumerate(path.read_text().splitlines(), start=1)
             if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ManifestError(f"labels file {str(path)!r} is empty")
    delimiter = "," if "," in lines[0][1] else ("\t" if "\t" in lines[0][1] else None)
    labels: dict[str, int] = {}
    for lineno, line in lines:
        fields = next(csv.reader([line], delimiter=delimiter)) if delimiter else line.split()
        fields = [f.strip() for f in fields if f.strip()]
        if len(fields) < 2:
            raise ManifestError(f"{path}:{lineno}: expected '<file> <label>', got {line!r}")
        name, value = fields[0], fields[1].split()[0]
        if lineno == lines[0][0] and not imagenet.is_wnid(value) and not value.lstrip("-").isdigit() \
                and not missing_label(value):
            continue  # header row
        label = _file_label(path, lineno, value)
        stem = Path(name).stem if is_image_file(name) else name
        if stem in labels and labels[stem] != label:
            raise ManifestError(f"{path}:{lineno}: {stem!r} is given two labels ({labels[stem]}, {label})")
        labels[stem] = label
    return labels


def _file_label(path: Path, lineno: int, value: str) -> int:
    """The ImageNet label of one labels-file line's value (a wnid or an index 0-999)."""
    if missing_label(value):
        raise ManifestError(
            f"{path}:{lineno}: label {value!r} is a missing value ({MISSING_LABEL_NOTE}); give "
            "the image its wnid or index, or leave it out of the folder"
        )
    if imagenet.is_wnid(value):
        try:
            return imagenet.label_of(value)
        except KeyError as exc:
            raise ManifestError(f"{path}:{lineno}: {exc.args[0]}") from None
    try:
        label = int(value)
    except ValueError:
        raise ManifestError(f"{path}:{lineno}: label {value!r} is neither a wnid nor an integer 0-999") from None
    if not 0 <= label < imagenet.NUM_CLASSES:
        raise ManifestError(f"{path}:{lineno}: label {label} is outside 0-999")
    return label


# --------------------------------------------------------------------- clean folders
def _no_images_error(root: Path, what: str = "image folder") -> ManifestError:
    """An empty folder and a folder of non-image files get different advice."""
    others: list[str] = []

    def visit(folder: str) -> None:
        for e in _entries(folder):
            if len(others) >= 6:
                return
            if _is_dir(e, follow=False):
                visit(e.path)
            elif _is_file(e):
                others.append(os.path.relpath(e.path, root))

    visit(str(root))
    extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
    if not others:
        return ManifestError(
            f"{what} {str(root)!r} is empty or has an unknown layout: it holds no image files "
            f"(looked for {extensions}); point to the folder that holds the images"
        )
    return ManifestError(
        f"{what} {str(root)!r} holds no image files, only other files (e.g. {_examples(others, 3)}); "
        f"images must end in one of {extensions}"
    )


def scan_labelled_folder(
    root: str | os.PathLike,
    labels_file: str | os.PathLike | None = None,
    *,
    problems: dict[str, str] | None = None,
) -> tuple[pd.DataFrame, list[str] | None]:
    """Clean rows of a labelled image folder, and the class names when they are not ImageNet's.

    Layouts, tried in this order:

    1. any folder plus ``labels_file``: every image below it, labelled by the file;
    2. class sub-folders, all wnid-named (ImageNet labels) or none wnid-named
       (the dataset's own classes, labelled by sorted folder name); a mix is
       refused, as are image files beside the class folders and class folders
       without images: each would silently give wrong labels or drop images;
    3. a flat folder of files named ``<wnid>_<anything>``.

    A flat folder none of whose files is wnid-named raises :class:`NoLabelsError`
    (a :class:`ManifestError`), which :func:`iqa_lib.data.sources.dataset_manifest`
    turns into an unlabelled manifest. Folders whose names start with ``.`` or
    ``_`` are ignored. Dangling and looping links to images are rows too (their
    reasons go to ``problems``, see :func:`walk_images`).
    """
    root = _require_dir(root, "image folder")
    if labels_file is not None:
        labels = read_labels_file(labels_file)
        paths, names = walk_images(root, problems=problems)
        if not paths:
            raise _no_images_error(root)
        stems = _stems(names)
        missing = [n for n, stem in zip(names, stems, strict=True) if stem not in labels]
        if missing:
            raise ManifestError(
                f"{len(missing)} image(s) in {str(root)!r} have no entry in labels file "
                f"{str(labels_file)!r}, e.g. {missing[0]!r}"
            )
        return _columns(stems, [labels[s] for s in stems], CLEAN, 0, paths), None
    top = [e for e in _entries(str(root)) if not e.name.startswith("_")]
    dirs = [e for e in top if _is_dir(e)]
    files = [
        e for e in top
        if (is_image_file(e.name) and _image_entry(e, problems)) or _unsupported_entry(e, problems)
    ]
    if dirs and files:
        raise ManifestError(
            f"image folder {str(root)!r} mixes {len(files)} image file(s) at its top level "
            f"(e.g. {files[0].name!r}) with sub-folder(s) {_examples(e.name for e in dirs)}; the "
            "sub-folders would be taken as class folders and the top-level images dropped. Move "
            "the images into class folders, remove the sub-folder(s), or pass a labels file "
            "(--labels-file / data.clean_labels) to label every image below the folder"
        )
    if dirs:
        return _scan_class_folders(root, dirs, problems)
    if files:
        wnids = [e.name.split("_", 1)[0] for e in files]
        named = [imagenet.is_wnid(w) for w in wnids]
        if not any(named):
            raise NoLabelsError(
                f"cannot label the {len(files)} image(s) of flat folder {str(root)!r} (e.g. "
                f"{files[0].name!r}): name files '<wnid>_<anything>', put them in class "
                "sub-folders, or pass a labels file (--labels-file / data.clean_labels)"
            )
        unlabelled = [e.name for e, ok in zip(files, named, strict=True) if not ok]
        if unlabelled:
            raise ManifestError(
                f"cannot label {len(unlabelled)} file(s) in flat folder {str(root)!r} "
                f"(e.g. {unlabelled[0]!r}): name files '<wnid>_<anything>', put them in class "
                "sub-folders, or pass a labels file (--labels-file / data.clean_labels)"
            )
        labels = []
        for e, wnid in zip(files, wnids, strict=True):
            try:
                labels.append(imagenet.label_of(wnid))
            except KeyError as exc:
                raise ManifestError(f"{e.path!r}: {exc.args[0]}") from None
        paths = [_listed(e.path, problems) for e in files]
        return _columns(_stems([shown(e.name) for e in files]), labels, CLEAN, 0, paths), None
    raise _no_images_error(root)


def _scan_class_folders(
    root: Path, dirs: list[os.DirEntry], problems: dict[str, str] | None = None
) -> tuple[pd.DataFrame, list[str] | None]:
    is_wnid = [imagenet.is_wnid(d.name) for d in dirs]
    if any(is_wnid) and not all(is_wnid):
        others = [d.name for d, w in zip(dirs, is_wnid, strict=True) if not w]
        raise ManifestError(
            f"image folder {str(root)!r} mixes {sum(is_wnid)} wnid-named class folder(s) with "
            f"{len(others)} other folder(s): {_examples(others)}. wnid folders mean ImageNet labels, "
            "other names mean the dataset's own classes, and one folder cannot be both: rename or "
            "move the other folder(s); or, if these are really your own classes, give every class "
            "folder a non-wnid name (or use a flat folder with a labels file)"
        )
    imagenet_classes = all(is_wnid)
    classes = [shown(d.name) for d in dirs]
    ids: list[str] = []
    labels: list[int] = []
    paths: list[str] = []
    empty = []
    for index, d in enumerate(dirs):
        if imagenet_classes:
            try:
                label = imagenet.label_of(d.name)
            except KeyError as exc:
                raise ManifestError(f"class folder {d.path!r}: {exc.args[0]}") from None
        else:
            label = index
        found, names = walk_images(d.path, problems=problems)
        if not found:
            empty.append(d.name)
            continue
        ids += _stems(names)
        labels += [label] * len(found)
        paths += found
    if not paths:
        raise ManifestError(
            f"the class folders of {str(root)!r} hold no images ({_examples(classes)}; looked for "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    if empty:
        raise ManifestError(
            f"{len(empty)} class folder(s) of {str(root)!r} hold no images: {_examples(empty)}; "
            "remove them (an empty class changes the label space) or add their images"
        )
    return _columns(ids, labels, CLEAN, 0, paths), None if imagenet_classes else classes


def read_classnames_file(path: str | os.PathLike, classes: list[str]) -> list[str]:
    """Readable names for the dataset's own ``classes`` (folder names), from a classnames file.

    Two forms: one name per line, in class order (sorted folder names), exactly
    one line per class; or two columns ``<folder>,<readable name>`` (comma or
    tab; an optional header ``folder,name``) naming every class folder once.
    The two-column form is recognised when the first field of every line is a
    class folder (or the header): readable names may themselves hold commas.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"classnames file {str(path)!r} does not exist")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise ManifestError(f"classnames file {str(path)!r} is empty")
    known = set(classes)

    def split(line: str) -> tuple[str, str] | None:
        for sep in ("\t", ","):
            if sep in line:
                key, _, value = line.partition(sep)
                return key.strip(), value.strip()
        return None

    pairs = [split(ln) for ln in lines]
    header = pairs[0] is not None and pairs[0][0].lower() in ("folder", "class", "classes", "dir", "directory")
    body = pairs[1:] if header else pairs
    if header or (all(p is not None for p in body) and any(p[0] in known for p in body)):  # type: ignore[index]
        if any(p is None for p in body):
            bad = next(ln for ln, p in zip(lines[int(header):], body, strict=True) if p is None)
            raise ManifestError(f"{path}: line {bad!r} is not '<folder>,<readable name>'")
        names: dict[str, str] = {}
        for key, value in body:  # type: ignore[misc]
            if key in names and names[key] != value:
                raise ManifestError(f"{path}: class folder {key!r} is given two names ({names[key]!r}, {value!r})")
            if not value:
                raise ManifestError(f"{path}: class folder {key!r} has an empty name")
            names[key] = value
        unknown = [k for k in names if k not in known]
        missing = [c for c in classes if c not in names]
        if unknown or missing:
            parts = []
            if unknown:
                parts.append(f"names folder(s) that are not classes of the dataset: {_examples(unknown)}")
            if missing:
                parts.append(f"lacks class folder(s) {_examples(missing)}")
            raise ManifestError(
                f"classnames file {str(path)!r} {' and '.join(parts)}; the classes are "
                f"{_examples(classes)}: give one '<folder>,<readable name>' line per class folder"
            )
        return [names[c] for c in classes]
    if len(lines) != len(classes):
        raise ManifestError(
            f"classnames file {str(path)!r} has {len(lines)} name(s) for {len(classes)} classes "
            f"({_examples(classes)}); give one name per line in sorted class-folder order, or "
            "'<folder>,<readable name>' lines"
        )
    return lines


def _classnames(
    classnames_file: str | os.PathLike | None, classes: list[str] | None, unlabelled: bool = False
) -> list[str] | None:
    """The classnames file's names, refused where the kit has no own classes to name."""
    if classnames_file is None:
        return None
    if unlabelled:
        raise ManifestError(
            f"classnames file {str(classnames_file)!r} given for unlabelled images; it names the "
            "classes of a labelled dataset (class folders, a labels file or a label column)"
        )
    if classes is None:
        raise ManifestError(
            f"classnames file {str(classnames_file)!r} given for an ImageNet-labelled dataset; the "
            "kit knows ImageNet's class names: drop the classnames file (it is for your own classes)"
        )
    return read_classnames_file(classnames_file, classes)


# --------------------------------------------------------------------- ImageNet-C trees
def scan_imagenet_c(
    root: str | os.PathLike, classes: list[str] | None = None, *, problems: dict[str, str] | None = None
) -> pd.DataFrame:
    """Corrupted rows of an ImageNet-C tree ``<root>/<corruption>/<severity>/<class>/<file>``.

    ``classes`` ``None``: class folders are ImageNet wnids. Otherwise they must be
    among ``classes`` (a clean folder's own classes, as ``iqa-kit corrupt``
    writes them) and are labelled by their index there.
    """
    root = _require_dir(root, "ImageNet-C root")
    own = None if classes is None else {c: i for i, c in enumerate(classes)}
    ids: list[str] = []
    labels: list[int] = []
    corruptions: list[str] = []
    severities: list[int] = []
    paths: list[str] = []
    unknown: dict[str, str] = {}  # own-class folders not among the classes: name -> a path
    corruption_dirs = [e for e in _entries(str(root)) if not e.name.startswith("_") and _is_dir(e)]
    if not corruption_dirs:
        raise ManifestError(
            f"ImageNet-C root {str(root)!r} holds no corruption folders; expected "
            "<root>/<corruption>/<severity>/<class>/<file> (generate one with `iqa-kit corrupt`)"
        )
    for cdir in corruption_dirs:
        if cdir.name not in ALL_CORRUPTIONS:
            raise ManifestError(
                f"unknown corruption folder {cdir.path!r}; valid names: {', '.join(ALL_CORRUPTIONS)}"
            )
        for sdir in _entries(cdir.path):
            if sdir.name.startswith("_") or not _is_dir(sdir):
                continue
            if not sdir.name.isdigit() or int(sdir.name) not in SEVERITIES:
                raise ManifestError(f"severity folder {sdir.path!r} is not one of 1-5")
            severity = int(sdir.name)
            for wdir in _entries(sdir.path):
                if wdir.name.startswith("_") or not _is_dir(wdir):
                    continue
                if own is None:
                    try:
                        label = imagenet.label_of(wdir.name)
                    except KeyError:
                        raise ManifestError(
                            f"class folder {wdir.path!r} is not an ImageNet-1k wnid; ImageNet-C trees "
                            "use <root>/<corruption>/<severity>/<wnid>/<file>"
                        ) from None
                elif wdir.name in own:
                    label = own[wdir.name]
                else:
                    unknown.setdefault(wdir.name, wdir.path)
                    continue
                found, names = walk_images(wdir.path, recursive=False, problems=problems)
                ids += _stems(names)
                labels += [label] * len(found)
                corruptions += [cdir.name] * len(found)
                severities += [severity] * len(found)
                paths += found
    if unknown:
        raise ManifestError(
            f"ImageNet-C root {str(root)!r} has class folder(s) that are not classes of the clean "
            f"folder: {_examples(unknown)} (e.g. {next(iter(unknown.values()))!r}); the clean classes "
            f"are {_examples(classes or [])}. Render the tree from this clean folder "
            "(`iqa-kit corrupt`) or remove those folders"
        )
    if not paths:
        raise ManifestError(f"ImageNet-C root {str(root)!r} holds no images")
    return _columns(ids, labels, corruptions, severities, paths)


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


def check_workers(workers: int | None) -> None:
    """``None`` (all cores) or a whole number of at least 1: 0 must not silently mean "all"."""
    if workers is not None and (isinstance(workers, bool) or int(workers) != workers or workers < 1):
        raise ManifestError(f"workers must be a whole number of at least 1, got {workers!r}")


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
        # Lists of paths per task, not one task per image: a million tiny tasks cost
        # more in pickling than a header check.
        size = max(1, min(1024, len(paths) // (workers * 8)))
        chunks = [(paths[i : i + size], full) for i in range(0, len(paths), size)]
        reasons = []
        pool = process_pool(workers)
        try:
            with tqdm(**bar) as pbar:
                for part in pool.map(_check_chunk, chunks):
                    reasons += part
                    pbar.update(len(part))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
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
    if check not in ("full", "header", "none"):
        raise ManifestError(f"check must be one of full, header, none; got {check!r}")
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
    readable names for those classes (:func:`read_classnames_file`).
    """
    if clean_root is None and imagenet_c_root is None:
        raise ManifestError("give a clean image folder, an ImageNet-C root, or both")
    if check not in ("full", "header", "none"):
        raise ManifestError(f"check must be one of full, header, none; got {check!r}")
    check_workers(workers)
    parts, classes = [], None
    problems: dict[str, str] = {}  # dangling and looping links: path -> reason
    if clean_root is not None:
        clean, classes = scan_labelled_folder(clean_root, labels_file, problems=problems)
        parts.append(clean)
    classnames = _classnames(classnames_file, classes)
    if imagenet_c_root is not None:
        corrupted = scan_imagenet_c(imagenet_c_root, classes, problems=problems)
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
    df = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    df, known = split_problems(df, problems)
    return assemble(df, check, workers, progress, classes, classnames, failures=known)


def images_manifest(folder: str | os.PathLike) -> pd.DataFrame:
    """Unlabelled clean rows of every image file under ``folder`` (recursively, sorted).

    ``image_id`` is the path relative to ``folder`` (unique by construction);
    ``label`` is -1. Hidden files and folders are skipped; a broken link to an
    image is kept, so that scoring lists it as a failure instead of losing it.
    """
    root = _require_dir(folder, "image folder")
    paths: list[str] = []

    def visit(current: str) -> None:
        for e in _entries(current):
            # files, links to nothing, and unsupported formats: scoring lists each with its reason
            if (is_image_file(e.name) or unsupported_image_reason(e.name)) and not _is_dir(e):
                paths.append(shown(e.path))  # not UTF-8: scoring lists it with NOT_UTF8
            elif _is_dir(e, follow=False):
                visit(e.path)

    visit(str(root))
    if not paths:
        raise ManifestError(
            f"no image files under {str(root)!r} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    base = len(str(root).rstrip(os.sep)) + 1
    ids = [p[base:].replace(os.sep, "/") for p in paths]
    return _columns(ids, UNLABELLED, CLEAN, 0, paths)


# --------------------------------------------------------------------- files
def failures_path(manifest_path: str | os.PathLike) -> Path:
    manifest_path = Path(manifest_path)
    return manifest_path.with_name(f"{manifest_path.stem}.failures.csv")


def write_manifest(result: ManifestResult, path: str | os.PathLike) -> Path:
    """Write the manifest (Parquet) and its failures file beside it (always, maybe empty).

    Both are written under temporary names first and then moved into place, so
    a write the machine refuses is a :class:`~iqa_lib.fileio.WriteError` naming
    the file, and leaves the previous pair as it was, nothing half-written.
    """
    path = Path(path)
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
    fpath = failures_path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp, ftmp = temporary_name(path), temporary_name(fpath)
    try:
        with writing(path):
            pq.write_table(table, tmp)
        with writing(fpath):
            result.failures.to_csv(ftmp, index=False)
            os.replace(ftmp, fpath)
        with writing(path):
            os.replace(tmp, path)
    finally:
        for leftover in (tmp, ftmp):
            with contextlib.suppress(OSError):
                leftover.unlink()
    return path


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
    df = df[list(MANIFEST_COLUMNS)].reset_index(drop=True).astype(
        {"image_id": str, "label": "int64", "corruption": str, "severity": "int64", "path": str}
    )
    check_image_ids(df["image_id"], f"manifest {str(path)!r}")
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


def clean_source(
    source: str | os.PathLike, labels_file: str | os.PathLike | None = None
) -> tuple[pd.DataFrame, list[str] | None]:
    """Clean rows from a labelled folder or a manifest, and the own classes (``None``: ImageNet).

    What ``iqa-kit corrupt`` renders from: the class names become the class
    folders of the ImageNet-C tree.
    """
    source = Path(source)
    if source.is_file() and source.suffix == ".parquet":
        df = read_manifest(source)
        clean = df[df["corruption"] == CLEAN].reset_index(drop=True)
        if clean.empty:
            raise ManifestError(f"manifest {str(source)!r} has no clean rows to corrupt")
        return clean, manifest_classes(source)
    return scan_labelled_folder(source, labels_file)


def clean_images(source: str | os.PathLike, labels_file: str | os.PathLike | None = None) -> pd.DataFrame:
    """ImageNet-labelled clean rows from a folder or from an existing manifest (its clean rows)."""
    rows, classes = clean_source(source, labels_file)
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

