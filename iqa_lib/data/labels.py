"""Reading the files that label images and name classes: labels files and classnames files.

A labels file maps an image (file name or stem) to an ImageNet label (a wnid
or a sorted-wnid index 0-999); a classnames file gives readable names to a
dataset's own classes (its class folders). A label that reads as a missing
value (NaN, NA, None, null, empty) is never taken for a class.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from iqa_lib import imagenet
from iqa_lib.data.images import is_image_file
from iqa_lib.data.manifest import ManifestError
from iqa_lib.data.messages import examples

MISSING_LABELS = frozenset({"", "nan", "na", "n/a", "<na>", "none", "null"})  # any case
MISSING_LABEL_NOTE = "NaN, NA, None, null and empty read as missing values, never a class"
CLASSNAMES_HEADERS = ("folder", "class", "classes", "dir", "directory")


def missing_label(value: object) -> bool:
    """Whether a label reads as a missing value: one of them must never become a class."""
    if value is None or (isinstance(value, float) and value != value):
        return True
    return isinstance(value, str) and value.strip().lower() in MISSING_LABELS


# --------------------------------------------------------------------- labels files
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
    lines = _labels_lines(path)
    first_line, first = lines[0]
    delimiter = "," if "," in first else ("\t" if "\t" in first else None)
    labels: dict[str, int] = {}
    for lineno, line in lines:
        entry = _labels_entry(path, lineno, line, delimiter, may_be_header=lineno == first_line)
        if entry is None:
            continue  # header row
        stem, label = entry
        if stem in labels and labels[stem] != label:
            raise ManifestError(f"{path}:{lineno}: {stem!r} is given two labels ({labels[stem]}, {label})")
        labels[stem] = label
    return labels


def _labels_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of a labels file's lines that are neither blank nor ``#`` comments."""
    if not path.is_file():
        raise ManifestError(f"labels file {str(path)!r} does not exist")
    lines = [(n, ln.strip()) for n, ln in enumerate(path.read_text().splitlines(), start=1)
             if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ManifestError(f"labels file {str(path)!r} is empty")
    return lines


def _labels_entry(
    path: Path, lineno: int, line: str, delimiter: str | None, may_be_header: bool
) -> tuple[str, int] | None:
    """(stem, label) of one labels-file line; ``None`` for a header line."""
    fields = next(csv.reader([line], delimiter=delimiter)) if delimiter else line.split()
    fields = [f.strip() for f in fields if f.strip()]
    if len(fields) < 2:
        raise ManifestError(f"{path}:{lineno}: expected '<file> <label>', got {line!r}")
    name, value = fields[0], fields[1].split()[0]
    if may_be_header and _header_value(value):
        return None
    label = _file_label(path, lineno, value)
    return (Path(name).stem if is_image_file(name) else name), label


def _header_value(value: str) -> bool:
    """Whether the first line's label field is a column name (no wnid, integer or missing value)."""
    return not imagenet.is_wnid(value) and not value.lstrip("-").isdigit() and not missing_label(value)


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


# --------------------------------------------------------------------- classnames files
def classnames_lines(path: Path) -> list[str]:
    """A classnames file's lines, stripped, without blank lines and ``#`` comments."""
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


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
    lines = classnames_lines(path)
    if not lines:
        raise ManifestError(f"classnames file {str(path)!r} is empty")
    pairs = [_split_pair(ln) for ln in lines]
    header = pairs[0] is not None and pairs[0][0].lower() in CLASSNAMES_HEADERS
    body = pairs[1:] if header else pairs
    if header or _two_columns(body, set(classes)):
        return _names_by_folder(path, lines[int(header):], body, classes)
    if len(lines) != len(classes):
        raise ManifestError(
            f"classnames file {str(path)!r} has {len(lines)} name(s) for {len(classes)} classes "
            f"({examples(classes)}); give one name per line in sorted class-folder order, or "
            "'<folder>,<readable name>' lines"
        )
    return lines


def _split_pair(line: str) -> tuple[str, str] | None:
    """``(folder, name)`` of a tab- or comma-separated line (tab first); ``None`` for one field."""
    for sep in ("\t", ","):
        if sep in line:
            key, _, value = line.partition(sep)
            return key.strip(), value.strip()
    return None


def _two_columns(body: list[tuple[str, str] | None], known: set[str]) -> bool:
    """Whether every line has two fields and some first field is a class folder."""
    return all(p is not None for p in body) and any(p[0] in known for p in body)  # type: ignore[index]


def _names_by_folder(
    path: Path, lines: list[str], body: list[tuple[str, str] | None], classes: list[str]
) -> list[str]:
    """The two-column form: each class folder named once, every class named, nothing else."""
    if any(p is None for p in body):
        bad = next(ln for ln, p in zip(lines, body, strict=True) if p is None)
        raise ManifestError(f"{path}: line {bad!r} is not '<folder>,<readable name>'")
    names: dict[str, str] = {}
    for key, value in body:  # type: ignore[misc]
        if key in names and names[key] != value:
            raise ManifestError(f"{path}: class folder {key!r} is given two names ({names[key]!r}, {value!r})")
        if not value:
            raise ManifestError(f"{path}: class folder {key!r} has an empty name")
        names[key] = value
    _check_every_class_named(path, names, classes)
    return [names[c] for c in classes]


def _check_every_class_named(path: Path, names: dict[str, str], classes: list[str]) -> None:
    known = set(classes)
    unknown = [k for k in names if k not in known]
    missing = [c for c in classes if c not in names]
    if not unknown and not missing:
        return
    parts = []
    if unknown:
        parts.append(f"names folder(s) that are not classes of the dataset: {examples(unknown)}")
    if missing:
        parts.append(f"lacks class folder(s) {examples(missing)}")
    raise ManifestError(
        f"classnames file {str(path)!r} {' and '.join(parts)}; the classes are "
        f"{examples(classes)}: give one '<folder>,<readable name>' line per class folder"
    )


def checked_classnames(
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
