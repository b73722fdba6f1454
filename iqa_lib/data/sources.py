"""A clean manifest from whatever a user has: a folder, a list of images, WebDataset shards.

:func:`dataset_manifest` is the one entry point (``iqa-kit manifest --source``
and ``iqa-kit audit`` call it). It looks at ``source`` and dispatches:

* a **folder** of images: the labelled layouts of
  :func:`~iqa_lib.data.scan.scan_labelled_folder` (class sub-folders, files
  named ``<wnid>_<anything>``, any folder plus a labels file). A *flat* folder
  (no sub-folders) none of whose images is wnid-named, given no labels file,
  becomes an **unlabelled** manifest (label -1, ``image_id`` = the file name, as
  ``iqa-kit score --images``): nothing in it could be a label. Sub-folders are
  always class folders, so a tree is never silently unlabelled, and the
  ambiguous layouts (wnid and other folders mixed, images beside class folders,
  some files wnid-named and some not) are refused with what to do.
* a **list** (``.csv``, ``.tsv`` or ``.parquet``): a ``path`` column (relative
  paths are resolved against the list's folder; ``<shard>::<member>`` paths
  are accepted), an optional ``label`` column (wnids -> ImageNet labels;
  integers -> ImageNet sorted-wnid indices 0-999, as labels files; any other
  strings -> the dataset's own classes, sorted unique names = class order; no
  column -> unlabelled) and an optional ``image_id`` column (default: the file
  stem; ids must be unique). Listed files that do not exist go to the failures
  file ("file not found"). A Parquet *manifest* (it has the manifest columns)
  gives its clean rows as they are: labels, classes, and paths relative to the
  working directory, as the kit writes them.
* **WebDataset shards**: one ``.tar``, a folder of ``*.tar`` files, or a brace
  pattern (``shards/train-{000000..000009}.tar``; ranges and comma lists, not
  nested). Members are grouped into samples by the WebDataset convention (the
  key is the member path up to the first dot of its file name, the extension
  the rest): one image member per sample (``jpg`` first, then ``jpeg``, ``png``,
  ``webp``, ...) and its label from ``cls`` (an integer), else ``json`` (an
  integer or string, or an object with a ``label``, ``cls``, ``class`` or
  ``wnid`` field), else ``txt``. ``cls`` integers are ImageNet sorted-wnid
  indices unless ``cls_labels="own"``, where they index the dataset's own
  classes ``"0"``, ``"1"``, ... (name them with a classnames file). Images are
  never unpacked: a row's path is ``<shard path>::<member name>``, which
  :mod:`iqa_lib.data.images` reads by seeking into the shard. Compressed shards
  (``.tar.gz``) cannot be read that way and are refused.

Every form gives clean rows only (corruption ``clean``, severity 0), checked
and split into manifest and failures as :func:`~iqa_lib.data.assemble.build_manifest` does.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from iqa_lib import imagenet
from iqa_lib.data.assemble import Check, assemble, build_manifest, check_workers, split_problems
from iqa_lib.data.images import (
    ImageDecodeError,
    is_image_file,
    member_path,
    missing_reason,
    read_member,
    shown,
    split_member,
    tar_index,
    tar_truncated_at,
    unsupported_image_reason,
)
from iqa_lib.data.labels import (
    MISSING_LABEL_NOTE,
    checked_classnames,
    classnames_lines,
    missing_label,
)
from iqa_lib.data.manifest import (
    CLEAN,
    MANIFEST_COLUMNS,
    UNLABELLED,
    ManifestError,
    ManifestResult,
    check_image_ids,
    manifest_classes,
    manifest_frame,
    read_manifest,
    stored_classnames,
    unsafe_image_id,
)
from iqa_lib.data.messages import examples, row_numbers
from iqa_lib.data.scan import NoLabelsError
from iqa_lib.data.walk import is_dir, is_file, unreserved_entries, visible_entries, walk_images

ClsLabels = Literal["imagenet", "own"]
SourceKind = Literal["folder", "list", "shards"]
LIST_SUFFIXES = (".csv", ".tsv", ".parquet")
COMPRESSED_TARS = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar.zst")
# image extensions of a WebDataset sample, in the order one is picked when a sample has several
SAMPLE_IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "ppm", "pgm", "gif")
JSON_LABEL_KEYS = ("label", "cls", "class", "wnid")
NOT_FOUND = "file not found"
_INT = re.compile(r"^[+-]?\d+$")


def dataset_manifest(
    source: str | os.PathLike,
    labels_file: str | os.PathLike | None = None,
    classnames_file: str | os.PathLike | None = None,
    check: Check = "full",
    workers: int | None = None,
    progress: bool = True,
    *,
    cls_labels: ClsLabels = "imagenet",
) -> ManifestResult:
    """Clean manifest of ``source`` (folder, image list or WebDataset shards; see the module doc).

    ``labels_file`` labels a folder's images; ``classnames_file`` gives readable
    names to the dataset's own classes (refused for ImageNet labels and for
    unlabelled images); ``check`` / ``workers`` as in ``build_manifest``;
    ``cls_labels`` says what a shard's ``.cls`` integers are.
    """
    if cls_labels not in ("imagenet", "own"):
        raise ManifestError(f"cls_labels must be 'imagenet' or 'own', got {cls_labels!r}")
    check_workers(workers)
    kind = source_kind(source)
    if labels_file is not None and kind != "folder":
        raise ManifestError(
            f"a labels file labels the images of a folder; {os.fspath(source)!r} is "
            f"{'an image list (use its label column)' if kind == 'list' else 'a set of tar shards (labels come from their .cls/.json/.txt members)'}"
        )
    if kind == "folder":
        return folder_manifest(source, labels_file, classnames_file, check, workers, progress)
    if kind == "list":
        return list_manifest(source, classnames_file, check, workers, progress)
    return shards_manifest(source, classnames_file, check, workers, progress, cls_labels=cls_labels)


def source_kind(source: str | os.PathLike) -> SourceKind:
    """What ``source`` is; a ManifestError saying which forms are accepted when it is none."""
    text = os.fspath(source)
    path = Path(text)
    if not path.exists():
        if "{" in text and "}" in text:
            return "shards"
        raise ManifestError(f"dataset source {text!r} does not exist; check the path")
    if path.is_dir():
        return _folder_kind(text)
    return _file_kind(text, path)


def _folder_kind(text: str) -> SourceKind:
    """A folder of images, or of tar shards (never both)."""
    top = unreserved_entries(text)
    tars = [e.name for e in top if _tar_file(e)]
    if not tars:
        return "folder"
    others = [e.name for e in top if is_dir(e) or (is_image_file(e.name) and is_file(e))]
    if others:
        raise ManifestError(
            f"folder {text!r} holds tar shards ({examples(tars, 3)}) and also images or "
            f"sub-folders ({examples(others, 3)}); keep the shards in a folder of their own, "
            "or give one shard or a brace pattern"
        )
    return "shards"


def _tar_file(entry: os.DirEntry) -> bool:
    return entry.name.lower().endswith(".tar") and is_file(entry)


def _file_kind(text: str, path: Path) -> SourceKind:
    """A list or a tar shard; a compressed tar, a single image or anything else is refused."""
    name = path.name.lower()
    if name.endswith(COMPRESSED_TARS):
        raise ManifestError(
            f"{text!r} is a compressed tar: its images cannot be read in place by seeking; "
            "decompress it (e.g. `gunzip`) and give the .tar"
        )
    if name.endswith(".tar"):
        return "shards"
    if path.suffix.lower() in LIST_SUFFIXES:
        return "list"
    if is_image_file(path):
        raise ManifestError(f"{text!r} is a single image; give the folder that holds the images")
    raise ManifestError(
        f"cannot tell what dataset source {text!r} is; give a folder of images, a .csv/.tsv/"
        ".parquet list with a 'path' column, a .tar shard, a folder of .tar shards, or a brace "
        "pattern such as 'shards/train-{000000..000009}.tar'"
    )


# --------------------------------------------------------------------- folders
def folder_manifest(
    folder: str | os.PathLike,
    labels_file: str | os.PathLike | None = None,
    classnames_file: str | os.PathLike | None = None,
    check: Check = "full",
    workers: int | None = None,
    progress: bool = True,
) -> ManifestResult:
    """A labelled folder's manifest, or an unlabelled one for a flat folder with no labels at all."""
    try:
        return build_manifest(
            clean_root=folder, labels_file=labels_file, check=check, workers=workers,
            progress=progress, classnames_file=classnames_file,
        )
    except NoLabelsError:
        pass  # a flat folder none of whose files is wnid-named: unlabelled
    checked_classnames(classnames_file, None, unlabelled=True)
    problems: dict[str, str] = {}
    paths, names = walk_images(folder, recursive=False, problems=problems)
    keep = [i for i, n in enumerate(names) if not n.startswith("_")]
    names, paths = [names[i] for i in keep], [paths[i] for i in keep]
    df, known = split_problems(manifest_frame(names, UNLABELLED, CLEAN, 0, paths), problems)
    return assemble(df, check, workers, progress, failures=known)


# --------------------------------------------------------------------- lists
def _read_list(path: Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        sep = "\t" if path.suffix.lower() == ".tsv" else ","
        # a listed name that is not UTF-8 (a Latin-1 list) arrives escaped as images.shown
        # writes it, and becomes a failure row that says so
        text = path.read_bytes().decode("utf-8-sig", "backslashreplace")
        table = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                            skipinitialspace=True, skip_blank_lines=False)
    except Exception as exc:  # noqa: BLE001 - any read failure is reported the same way
        raise ManifestError(f"image list {str(path)!r} is not readable: {exc}") from None
    return _without_blank_lines(table)


def _without_blank_lines(table: pd.DataFrame) -> pd.DataFrame:
    """Blank lines dropped, each row's line in the file kept (``attrs["lines"]``) for messages.

    Line numbers assume one line per row (no quoted line breaks), the header on line 1.
    """
    blank = (table.apply(lambda column: column.str.strip()) == "").all(axis=1).to_numpy()
    lines = [n for n, drop in enumerate(blank, start=2) if not drop]
    table = table[~blank].reset_index(drop=True)
    table.attrs["lines"] = lines
    return table


def _not_found(path: str) -> str:
    """Why a listed file does not exist: a dangling or looping link says so."""
    if split_member(path) is None:
        try:
            os.stat(path)
        except OSError as exc:
            reason = missing_reason(path, exc)
            if reason != "missing file":  # a dangling link, a loop, a name that is not UTF-8
                return reason
    return NOT_FOUND


def _exists(path: str) -> bool:
    parts = split_member(path)
    if parts is None:
        return os.path.exists(path)
    try:
        return parts[1] in tar_index(parts[0])
    except (OSError, tarfile.TarError):
        return False


def _resolve(base: str, path: str) -> str:
    parts = split_member(path)
    if parts is None:
        return os.path.join(base, path)
    return member_path(os.path.join(base, parts[0]), parts[1])


def _stem(path: str) -> str:
    parts = split_member(path)
    name = posixpath.basename(parts[1]) if parts else os.path.basename(path)
    return os.path.splitext(name)[0]


def list_manifest(
    list_file: str | os.PathLike,
    classnames_file: str | os.PathLike | None = None,
    check: Check = "full",
    workers: int | None = None,
    progress: bool = True,
) -> ManifestResult:
    """Manifest of a CSV/TSV/Parquet list of images (``path``, optional ``label``, ``image_id``)."""
    path = Path(list_file)
    table = _read_list(path)
    if set(MANIFEST_COLUMNS) <= set(table.columns):
        return _manifest_file(path, classnames_file, check, workers, progress)
    where = f"image list {str(path)!r}"
    rows = _row_lines(table.attrs.get("lines"))
    raw = _listed_paths(table, where)
    paths = [_resolve(str(path.parent), p) for p in raw]
    ids = _list_ids(table, raw, where, rows)
    labels, classes = _list_labels(table, where, rows)
    classnames = checked_classnames(classnames_file, classes, unlabelled="label" not in table.columns)
    df = manifest_frame(ids, labels, CLEAN, 0, paths)
    return _with_missing(df, check, workers, progress, classes, classnames)


def _listed_paths(table: pd.DataFrame, where: str) -> pd.Series:
    """The list's ``path`` column, stripped and UTF-8-safe; no column, no rows or a blank path is refused."""
    if "path" not in table.columns:
        raise ManifestError(
            f"{where} has no 'path' column (columns: {list(table.columns)}); "
            "give one path per row, optionally with 'label' and 'image_id' columns"
        )
    if table.empty:
        raise ManifestError(f"{where} has no rows")
    raw = table["path"].astype(str).str.strip().map(shown)
    blank = raw.index[raw == ""].tolist()
    if blank:
        raise ManifestError(f"{where} has empty paths in row(s) {row_numbers(blank)}")
    return raw


def _list_ids(table: pd.DataFrame, raw: pd.Series, where: str, rows: Callable[[list[int]], str]) -> list[str]:
    """The ``image_id`` column (each id safe and given), else the file stems; all unique."""
    if "image_id" in table.columns:
        ids = [shown(x) for x in table["image_id"].astype(str).str.strip()]
        empty = [i for i, x in enumerate(ids) if x in ("", "nan", "None")]
        if empty:
            raise ManifestError(f"{where} has empty image_id in row(s) {row_numbers(empty)}")
        check_image_ids(pd.Series(ids), where, rows)
    else:
        ids = [_stem(p) for p in raw]
    dup = pd.Series(ids)[pd.Series(ids).duplicated(keep=False)]
    if len(dup):
        first = dup.iloc[0]
        same = dup.index[dup == first].tolist()
        raise ManifestError(
            f"{where}: {dup.nunique()} image_id(s) occur more than once, e.g. "
            f"{first!r} in row(s) {row_numbers(same)} ({examples(raw[same], 2)}); image ids are file stems "
            "unless the list has an 'image_id' column: add one with a unique id per row"
        )
    return ids


def _list_labels(
    table: pd.DataFrame, where: str, rows: Callable[[list[int]], str]
) -> tuple[list[int], list[str] | None]:
    """Labels (and own classes) of the ``label`` column; unlabelled rows when there is none."""
    if "label" not in table.columns:
        return [UNLABELLED] * len(table), None
    column = table["label"]
    if pd.api.types.is_float_dtype(column) and column.notna().all() and (column % 1 == 0).all():
        column = column.astype("int64")  # integers stored as floats: 5.0 is label 5
    return _interpret_labels(column, where, rows)


def _with_missing(
    df: pd.DataFrame, check: Check, workers: int | None, progress: bool,
    classes: list[str] | None, classnames: list[str] | None,
) -> ManifestResult:
    """Rows whose file does not exist become failures ("file not found"), never silently lost."""
    found = [_exists(p) for p in df["path"]]
    missing = df[[not f for f in found]]
    failures = missing[["image_id", "corruption", "severity", "path"]]
    failures = failures.assign(reason=[_not_found(p) for p in failures["path"]])
    present = df[found].reset_index(drop=True)
    if present.empty:
        raise ManifestError(
            f"none of the {len(df)} listed images exists, e.g. {df['path'].iloc[0]!r}; relative "
            "paths are resolved against the list file's folder"
        )
    return assemble(present, check, workers, progress, classes, classnames, failures=failures)


def _row_lines(lines: list[int] | None) -> Callable[[list[int]], str]:
    """``row_numbers`` that also names the rows' lines in a CSV/TSV list (``lines``: ``attrs["lines"]``)."""
    if not lines:
        return row_numbers
    return lambda index: f"{row_numbers(index)} (line(s) {examples([str(lines[i]) for i in index])})".replace("'", "")


def _manifest_file(
    path: Path, classnames_file: str | os.PathLike | None, check: Check, workers: int | None, progress: bool,
) -> ManifestResult:
    """A Parquet manifest given as a list: its clean rows as they are, with its classes."""
    df = read_manifest(path)
    df = df[df["corruption"] == CLEAN].reset_index(drop=True)
    if df.empty:
        raise ManifestError(f"manifest {str(path)!r} has no clean rows")
    classes = manifest_classes(path)
    unlabelled = bool((df["label"] == UNLABELLED).all())
    if classnames_file is not None:
        classnames = checked_classnames(classnames_file, classes, unlabelled=unlabelled)
    else:
        classnames = stored_classnames(path)
    return _with_missing(df, check, workers, progress, classes, classnames)


def _interpret_labels(
    values: pd.Series | list, where: str, rows: Callable[[list[int]], str] | None = None
) -> tuple[list[int], list[str] | None]:
    """wnids -> ImageNet labels; integers -> ImageNet indices; other strings -> own classes."""
    rows = rows or (lambda idx: examples([str(i + 1) for i in idx]))
    series = pd.Series(list(values), dtype=object)
    _refuse_missing_labels(series, where, rows)
    text = series.map(lambda v: str(v).strip())
    is_int = text.str.match(_INT)
    is_wnid = text.map(imagenet.is_wnid).astype(bool)
    if is_wnid.all():
        return _wnid_labels(text, where), None
    if is_int.all():
        return _index_labels(text, where, rows), None
    _refuse_mixed_labels(text, is_wnid | is_int, where)
    classes = sorted(set(text))
    index = {c: i for i, c in enumerate(classes)}
    return [index[c] for c in text], classes


def _refuse_missing_labels(series: pd.Series, where: str, rows: Callable[[list[int]], str]) -> None:
    blank = [i for i, v in enumerate(series) if missing_label(v)]
    if blank:
        raise ManifestError(
            f"{where}: {len(blank)} row(s) have no label, e.g. {series[blank[0]]!r} in row(s) "
            f"{rows(blank)} ({MISSING_LABEL_NOTE}); label every image, or leave the labels out "
            "altogether for unlabelled images"
        )


def _refuse_mixed_labels(text: pd.Series, imagenet_like: pd.Series, where: str) -> None:
    """ImageNet labels (wnids, integers) and other class names in one column: refused."""
    if imagenet_like.any():
        odd = text[imagenet_like].iloc[0]
        other = text[~imagenet_like].iloc[0]
        raise ManifestError(
            f"{where} mixes ImageNet labels (wnids or integers, e.g. {odd!r}) with other class "
            f"names (e.g. {other!r}); use ImageNet wnids/indices throughout, or your own class "
            "names throughout"
        )


def _wnid_labels(text: pd.Series, where: str) -> list[int]:
    known = set(imagenet.wnids())
    bad = sorted({w for w in text if w not in known})
    if bad:
        raise ManifestError(f"{where}: {examples(bad)} are not ImageNet-1k wnids (not one of the 1000)")
    return [imagenet.label_of(w) for w in text]


def _index_labels(text: pd.Series, where: str, rows: Callable[[list[int]], str]) -> list[int]:
    ints = text.astype(int)
    bad = ints.index[(ints < 0) | (ints >= imagenet.NUM_CLASSES)].tolist()
    if bad:
        raise ManifestError(
            f"{where}: integer label(s) outside 0-999 in row(s) {rows(bad)} (e.g. "
            f"{ints[bad[0]]}); integers are ImageNet sorted-wnid indices, use class names "
            "for your own classes"
        )
    return ints.tolist()


# --------------------------------------------------------------------- WebDataset shards
_BRACE = re.compile(r"\{([^{}]*)\}")


def expand_braces(pattern: str) -> list[str]:
    """Bash-style ``{000..009}`` ranges (zero padding kept) and ``{a,b}`` lists, left to right."""
    m = _BRACE.search(pattern)
    if m is None:
        return [pattern]
    head, body, tail = pattern[: m.start()], m.group(1), pattern[m.end() :]
    options = _brace_options(body)
    if options is None:  # neither a range nor a list: the braces are part of the name
        return [head + "{" + body + "}" + p for p in expand_braces(tail)]
    return [head + o + t for o in options for t in expand_braces(tail)]


def _brace_options(body: str) -> list[str] | None:
    """What one ``{...}`` stands for: a range's numbers, a list's items, or ``None``."""
    rng = re.fullmatch(r"(-?\d+)\.\.(-?\d+)", body)
    if rng:
        return _range_options(rng.group(1), rng.group(2))
    if "," in body:
        return body.split(",")
    return None


def _range_options(first: str, last: str) -> list[str]:
    """``first..last`` inclusive, either way, zero-padded to the wider end when one is padded."""
    a, b = int(first), int(last)
    padded = any(g.lstrip("-").startswith("0") and len(g.lstrip("-")) > 1 for g in (first, last))
    width = max(len(first), len(last)) if padded else 0
    step = 1 if b >= a else -1
    return [f"{i:0{width}d}" for i in range(a, b + step, step)]


def shard_paths(source: str | os.PathLike) -> list[str]:
    """The shard files of a ``.tar``, a folder of ``*.tar`` or a brace pattern (all must exist)."""
    text = os.fspath(source)
    if os.path.isdir(text):
        shards = [e.path for e in visible_entries(text) if _tar_file(e)]
    elif os.path.exists(text):
        shards = [text]
    else:
        shards = _pattern_shards(text)
    compressed = [s for s in shards if s.lower().endswith(COMPRESSED_TARS)]
    if compressed:
        raise ManifestError(
            f"compressed shard(s) {examples(compressed, 3)} cannot be read in place; decompress them"
        )
    if not shards:
        raise ManifestError(f"no .tar shards in {text!r}")
    return shards


def _pattern_shards(text: str) -> list[str]:
    """The shards of a brace pattern; every one must exist."""
    shards = expand_braces(text)
    missing = [s for s in shards if not os.path.isfile(s)]
    if missing:
        raise ManifestError(
            f"{len(missing)} of the {len(shards)} shard(s) of pattern {text!r} do not exist: "
            f"{examples(missing, 3)}; check the pattern's range"
        )
    return shards


def split_key(name: str) -> tuple[str, str] | None:
    """WebDataset's (key, extension) of a member: ``a/b/x.seg.png`` -> (``a/b/x``, ``seg.png``)."""
    folder, base = posixpath.split(name)
    dot = base.find(".")
    if dot <= 0:
        return None  # no extension, or a hidden file (WebDataset skips both)
    return posixpath.join(folder, base[:dot]), base[dot + 1 :].lower()


_NO_LABEL = object()  # a .json member without a label field: the sample's .txt may have one


def _sample_label(shard: str, members: dict[str, str]) -> object:
    """The raw label of one sample (an int from .cls, else .json, else .txt), or None."""
    for ext in ("cls", "json", "txt"):
        name = members.get(ext)
        if name is None:
            continue
        where = member_path(shard, name)
        text = _member_text(where)
        if ext == "cls":
            return _cls_label(where, text)
        if ext == "json":
            value = _json_label(where, text)
            if value is _NO_LABEL:
                continue
            return _present_label(where, value)
        return _present_label(where, text) if text else None
    return None


def _member_text(where: str) -> str:
    """A label member's text, stripped (a zero-byte member is empty text)."""
    try:
        return read_member(where).decode("utf-8").strip()
    except ImageDecodeError as exc:
        if "zero-byte" in exc.reason:
            return ""
        raise ManifestError(f"cannot read label member {where!r}: {exc.reason}") from None
    except UnicodeDecodeError:
        raise ManifestError(f"label member {where!r} is not UTF-8 text") from None


def _cls_label(where: str, text: str) -> int:
    if not _INT.match(text):
        raise ManifestError(f"label member {where!r} holds {text[:40]!r}, not an integer class index")
    return int(text)


def _json_label(where: str, text: str) -> object:
    """A ``.json`` member's label: the value itself, or its label field (``_NO_LABEL``: none)."""
    try:
        value = json.loads(text)
    except ValueError:
        raise ManifestError(f"label member {where!r} is not valid JSON") from None
    if isinstance(value, dict):
        key = next((k for k in JSON_LABEL_KEYS if k in value), None)
        if key is None:
            return _NO_LABEL  # metadata without a label
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, int | str | None):
        raise ManifestError(f"label member {where!r}: the label must be an integer or a string")
    return value


def _present_label(where: str, value: int | str | None) -> int | str:
    """A shard's label, unless it reads as a missing value (refused, naming the member)."""
    if missing_label(value):
        raise ManifestError(
            f"label member {where!r} holds {value!r}, a missing value ({MISSING_LABEL_NOTE}); "
            "give the sample its class, or leave the label members out of every sample for "
            "unlabelled shards"
        )
    return value  # type: ignore[return-value]


@dataclass
class _Samples:
    """The shards' samples with an image, and the members that are no sample's image."""

    ids: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    raw_labels: list[object] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (image_id, path, reason)
    without_image: int = 0


def _collect_samples(shards: list[str]) -> _Samples:
    found = _Samples()
    for shard in shards:
        for key, members in _shard_samples(shard, found.failed).items():
            ext = next((x for x in SAMPLE_IMAGE_EXTS if x in members), None)
            if ext is None:
                found.without_image += 1
                found.failed.append(_imageless(shard, key, members))
                continue
            found.ids.append(posixpath.basename(key))
            found.paths.append(member_path(shard, members[ext]))
            found.raw_labels.append(_sample_label(shard, members))
    return found


def shards_manifest(
    source: str | os.PathLike,
    classnames_file: str | os.PathLike | None = None,
    check: Check = "full",
    workers: int | None = None,
    progress: bool = True,
    *,
    cls_labels: ClsLabels = "imagenet",
) -> ManifestResult:
    """Manifest of WebDataset shards, one row per sample with an image (see the module doc)."""
    samples = _collect_samples(shard_paths(source))
    if not samples.paths:
        raise ManifestError(
            f"the shard(s) of {os.fspath(source)!r} hold no image samples (members named "
            f"<key>.{'/'.join(SAMPLE_IMAGE_EXTS[:4])}, ...); {samples.without_image} sample(s) without an image"
        )
    _refuse_duplicate_keys(samples)
    labels, classes = _shard_labels(samples, source, classnames_file, cls_labels)
    unlabelled = all(v is None for v in samples.raw_labels)
    classnames = checked_classnames(classnames_file, classes, unlabelled=unlabelled)
    df = manifest_frame(samples.ids, labels, CLEAN, 0, samples.paths)
    return assemble(df, check, workers, progress, classes, classnames, failures=_failure_rows(samples.failed))


def _refuse_duplicate_keys(samples: _Samples) -> None:
    dup = pd.Series(samples.ids)[pd.Series(samples.ids).duplicated(keep=False)]
    if len(dup):
        first = dup.iloc[0]
        where = [samples.paths[i] for i in dup.index[dup == first]]
        raise ManifestError(
            f"{dup.nunique()} sample key(s) occur more than once across the shards, e.g. {first!r} "
            f"({examples(where, 2)}); image ids are sample keys and must be unique: rename the samples"
        )


def _shard_labels(
    samples: _Samples, source: str | os.PathLike, classnames_file: str | os.PathLike | None,
    cls_labels: ClsLabels,
) -> tuple[list[int], list[str] | None]:
    """Every sample labelled (ImageNet or own classes), or none (unlabelled); a mix is refused."""
    raw, paths = samples.raw_labels, samples.paths
    labelled = [v is not None for v in raw]
    if not any(labelled):
        return [UNLABELLED] * len(paths), None
    if not all(labelled):
        missing = [paths[i] for i, ok in enumerate(labelled) if not ok]
        raise ManifestError(
            f"{len(missing)} of {len(paths)} samples have no label (no .cls, .json label or .txt), "
            f"e.g. {missing[0]!r}; label every sample or none"
        )
    if cls_labels == "own" and all(isinstance(v, int) for v in raw):
        return _own_indices(raw, classnames_file)  # type: ignore[arg-type]
    labels, classes = _interpret_labels(raw, f"the labels of shards {os.fspath(source)!r}")
    _refuse_captions(classes, len(paths))
    return labels, classes


def _refuse_captions(classes: list[str] | None, samples: int) -> None:
    """Text labels with more than 1000 values, more than one per two samples, are captions."""
    if classes is not None and len(classes) > 1000 and len(classes) > samples / 2:
        raise ManifestError(
            f"the shards' text labels have {len(classes)} distinct values for {samples} "
            "samples: they look like captions, not classes; give .cls class indices"
        )


def _shard_index(shard: str) -> dict[str, tuple[int, int]]:
    """A shard's member index; a truncated shard, or a header claiming more than the shard,
    is refused in one line that names the member and what could be read."""
    try:
        index = tar_index(shard)
        size = os.path.getsize(shard)
    except (tarfile.TarError, OSError) as exc:
        raise ManifestError(f"shard {shard!r} is not a readable uncompressed tar: {exc}") from None
    complete = [name for name, (offset, length) in index.items() if offset + length <= size]
    for name, (offset, length) in index.items():
        if offset + length <= size:
            continue
        what = (f"its header claims {length:,} bytes, more than the whole {size:,}-byte shard "
                "(a damaged header)" if length > size else
                f"the shard ends at byte {size:,}, inside it (a truncated shard)")
        raise ManifestError(
            f"truncated shard {shard!r}: member {shown(name)!r} cannot be read: {what}; "
            f"{len(complete)} member(s) before it are complete ({examples(map(shown, complete), 3)}); "
            "download or rebuild the shard, or leave it out of the source"
        )
    end = tar_truncated_at(shard)
    if end is not None:
        raise ManifestError(
            f"truncated shard {shard!r}: its tar stream stops at byte {end:,} of {size:,} without "
            f"the end-of-archive block; {len(complete)} member(s) could be read "
            f"({examples(map(shown, complete), 3)}); download or rebuild the shard, or leave it "
            "out of the source"
        )
    return index


def _unsafe_member(name: str) -> bool:
    """An absolute member name or one with ``..`` (``/`` or ``\\``): never an image_id (it could
    name a file outside any output folder)."""
    return unsafe_image_id(name)


def _shard_samples(shard: str, failed: list[tuple[str, str, str]]) -> dict[str, dict[str, str]]:
    """The shard's samples (key -> extension -> member); members that cannot be part of one
    (unsafe, hidden or extension-less names) are added to ``failed``."""
    samples: dict[str, dict[str, str]] = {}
    for name in _shard_index(shard):
        split = split_key(name)
        if _unsafe_member(name):
            failed.append(("", member_path(shard, shown(name)),  # no id: the name is unsafe
                           "unsafe member name (absolute, or with '..'): rename the member"))
        elif split is None:
            failed.append((shown(name), member_path(shard, shown(name)),
                           "member name has no extension (or is hidden): not a WebDataset sample member"))
        else:
            samples.setdefault(split[0], {}).setdefault(split[1], name)
    return samples


def _imageless(shard: str, key: str, members: dict[str, str]) -> tuple[str, str, str]:
    """The failure row of a sample with no image member the kit reads (``.heic``, ``.mp4``,
    a lone ``.txt``): named by its first non-label member."""
    names = sorted(members.values())
    first = next((n for n in names if split_key(n)[1] not in ("cls", "json", "txt")), names[0])
    reason = unsupported_image_reason(first) or (
        f"sample has no image the kit reads (members: {', '.join(map(shown, names))}); images are "
        f"<key>.{'/'.join(SAMPLE_IMAGE_EXTS[:4])}, ...")
    return shown(posixpath.basename(key)), member_path(shard, shown(first)), reason


def _failure_rows(failed: list[tuple[str, str, str]]) -> pd.DataFrame | None:
    if not failed:
        return None
    ids, paths, reasons = zip(*failed, strict=True)
    return pd.DataFrame({"image_id": ids, "corruption": CLEAN, "severity": 0, "path": paths, "reason": reasons})


def _own_indices(values: list[int], classnames_file: str | os.PathLike | None) -> tuple[list[int], list[str]]:
    """``.cls`` integers as own class indices: classes ``"0"``..``"K-1"``.

    K is the largest index + 1, or the number of names of a one-name-per-line
    classnames file when that is larger (classes absent from these shards).
    """
    low = min(values)
    if low < 0:
        raise ManifestError(f"class index {low} in a .cls member is negative")
    k = max(max(values) + 1, _names_per_line(classnames_file))
    return list(values), [str(i) for i in range(k)]


def _names_per_line(classnames_file: str | os.PathLike | None) -> int:
    """How many names a one-name-per-line classnames file holds (0: none, or two columns)."""
    if classnames_file is None or not Path(classnames_file).is_file():
        return 0
    lines = classnames_lines(Path(classnames_file))
    if lines and not any("," in ln or "\t" in ln for ln in lines):
        return len(lines)
    return 0
