"""Scanning the folder layouts the kit reads into manifest rows (not yet checked).

Labelled clean folders (class sub-folders, ``<wnid>_`` file names, or any
folder with a labels file), ImageNet-C trees
``<root>/<corruption>/<severity>/<class>/<file>`` and unlabelled folders. Each
layout that would silently give wrong labels or drop images is refused with
what to do. :mod:`iqa_lib.data.assemble` orders and checks the rows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from iqa_lib import imagenet
from iqa_lib.corruptions import ALL_CORRUPTIONS, SEVERITIES
from iqa_lib.data.images import IMAGE_EXTENSIONS, shown
from iqa_lib.data.labels import read_labels_file
from iqa_lib.data.manifest import (
    CLEAN,
    UNLABELLED,
    ManifestError,
    manifest_classes,
    manifest_frame,
    read_manifest,
)
from iqa_lib.data.messages import examples
from iqa_lib.data.walk import (
    image_paths,
    is_dir,
    listed,
    listed_image,
    no_images_error,
    require_dir,
    stems,
    unreserved_entries,
    walk_images,
)

LABELS_ADVICE = ("name files '<wnid>_<anything>', put them in class sub-folders, or pass a labels "
                 "file (--labels-file / data.clean_labels)")


class NoLabelsError(ManifestError):
    """A flat folder none of whose images carries a label (no labels file, no wnid names)."""


@dataclass
class _Columns:
    """Manifest columns grown folder by folder (one label, corruption, severity per folder)."""

    ids: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    corruptions: list[str] = field(default_factory=list)
    severities: list[int] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def add(self, ids: list[str], label: int, corruption: str, severity: int, paths: list[str]) -> None:
        self.ids += ids
        self.labels += [label] * len(paths)
        self.corruptions += [corruption] * len(paths)
        self.severities += [severity] * len(paths)
        self.paths += paths

    def frame(self) -> pd.DataFrame:
        return manifest_frame(self.ids, self.labels, self.corruptions, self.severities, self.paths)


def _subfolders(folder: str) -> list[os.DirEntry]:
    """The visible sub-folders of ``folder`` whose names do not start with ``_``."""
    return [e for e in unreserved_entries(folder) if is_dir(e)]


def _wnid_label(wnid: str, where: str) -> int:
    """The ImageNet label of ``wnid``; an unknown wnid is refused naming ``where`` it came from."""
    try:
        return imagenet.label_of(wnid)
    except KeyError as exc:
        raise ManifestError(f"{where}: {exc.args[0]}") from None


# --------------------------------------------------------------------- clean folders
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
    reasons go to ``problems``, see :func:`iqa_lib.data.walk.walk_images`).
    """
    root = require_dir(root, "image folder")
    if labels_file is not None:
        return _scan_with_labels_file(root, labels_file, problems), None
    top = unreserved_entries(str(root))
    dirs = [e for e in top if is_dir(e)]
    files = [e for e in top if listed_image(e, problems)]
    _refuse_images_beside_folders(root, files, dirs)
    if dirs:
        return _scan_class_folders(root, dirs, problems)
    if files:
        return _scan_wnid_named_files(root, files, problems), None
    raise no_images_error(root)


def _refuse_images_beside_folders(root: Path, files: list[os.DirEntry], dirs: list[os.DirEntry]) -> None:
    """Images beside class folders would be dropped without a word: refused."""
    if dirs and files:
        raise ManifestError(
            f"image folder {str(root)!r} mixes {len(files)} image file(s) at its top level "
            f"(e.g. {files[0].name!r}) with sub-folder(s) {examples(e.name for e in dirs)}; the "
            "sub-folders would be taken as class folders and the top-level images dropped. Move "
            "the images into class folders, remove the sub-folder(s), or pass a labels file "
            "(--labels-file / data.clean_labels) to label every image below the folder"
        )


def _scan_with_labels_file(
    root: Path, labels_file: str | os.PathLike, problems: dict[str, str] | None
) -> pd.DataFrame:
    """Every image below ``root``, labelled by ``labels_file``; one it does not list is refused."""
    labels = read_labels_file(labels_file)
    paths, names = walk_images(root, problems=problems)
    if not paths:
        raise no_images_error(root)
    ids = stems(names)
    missing = [n for n, stem in zip(names, ids, strict=True) if stem not in labels]
    if missing:
        raise ManifestError(
            f"{len(missing)} image(s) in {str(root)!r} have no entry in labels file "
            f"{str(labels_file)!r}, e.g. {missing[0]!r}"
        )
    return manifest_frame(ids, [labels[s] for s in ids], CLEAN, 0, paths)


def _scan_wnid_named_files(
    root: Path, files: list[os.DirEntry], problems: dict[str, str] | None
) -> pd.DataFrame:
    """A flat folder of ``<wnid>_<anything>`` files; none named so is :class:`NoLabelsError`."""
    wnids = [e.name.split("_", 1)[0] for e in files]
    named = [imagenet.is_wnid(w) for w in wnids]
    if not any(named):
        raise NoLabelsError(
            f"cannot label the {len(files)} image(s) of flat folder {str(root)!r} (e.g. "
            f"{files[0].name!r}): {LABELS_ADVICE}"
        )
    unlabelled = [e.name for e, ok in zip(files, named, strict=True) if not ok]
    if unlabelled:
        raise ManifestError(
            f"cannot label {len(unlabelled)} file(s) in flat folder {str(root)!r} "
            f"(e.g. {unlabelled[0]!r}): {LABELS_ADVICE}"
        )
    labels = [_wnid_label(wnid, repr(e.path)) for e, wnid in zip(files, wnids, strict=True)]
    paths = [listed(e.path, problems) for e in files]
    return manifest_frame(stems([shown(e.name) for e in files]), labels, CLEAN, 0, paths)


def _wnid_class_folders(root: Path, dirs: list[os.DirEntry]) -> bool:
    """Whether the class folders are ImageNet wnids (all) or the dataset's own (none); a mix is refused."""
    is_wnid = [imagenet.is_wnid(d.name) for d in dirs]
    if any(is_wnid) and not all(is_wnid):
        others = [d.name for d, w in zip(dirs, is_wnid, strict=True) if not w]
        raise ManifestError(
            f"image folder {str(root)!r} mixes {sum(is_wnid)} wnid-named class folder(s) with "
            f"{len(others)} other folder(s): {examples(others)}. wnid folders mean ImageNet labels, "
            "other names mean the dataset's own classes, and one folder cannot be both: rename or "
            "move the other folder(s); or, if these are really your own classes, give every class "
            "folder a non-wnid name (or use a flat folder with a labels file)"
        )
    return all(is_wnid)


def _scan_class_folders(
    root: Path, dirs: list[os.DirEntry], problems: dict[str, str] | None = None
) -> tuple[pd.DataFrame, list[str] | None]:
    imagenet_classes = _wnid_class_folders(root, dirs)
    classes = [shown(d.name) for d in dirs]
    columns = _Columns()
    empty = []
    for index, d in enumerate(dirs):
        label = _wnid_label(d.name, f"class folder {d.path!r}") if imagenet_classes else index
        found, names = walk_images(d.path, problems=problems)
        if not found:
            empty.append(d.name)
            continue
        columns.add(stems(names), label, CLEAN, 0, found)
    if not columns.paths:
        raise ManifestError(
            f"the class folders of {str(root)!r} hold no images ({examples(classes)}; looked for "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    if empty:
        raise ManifestError(
            f"{len(empty)} class folder(s) of {str(root)!r} hold no images: {examples(empty)}; "
            "remove them (an empty class changes the label space) or add their images"
        )
    return columns.frame(), None if imagenet_classes else classes


# --------------------------------------------------------------------- ImageNet-C trees
def scan_imagenet_c(
    root: str | os.PathLike, classes: list[str] | None = None, *, problems: dict[str, str] | None = None
) -> pd.DataFrame:
    """Corrupted rows of an ImageNet-C tree ``<root>/<corruption>/<severity>/<class>/<file>``.

    ``classes`` ``None``: class folders are ImageNet wnids. Otherwise they must be
    among ``classes`` (a clean folder's own classes, as ``iqa-kit corrupt``
    writes them) and are labelled by their index there.
    """
    root = require_dir(root, "ImageNet-C root")
    own = None if classes is None else {c: i for i, c in enumerate(classes)}
    columns = _Columns()
    unknown: dict[str, str] = {}  # own-class folders not among the classes: name -> a path
    for cdir in _corruption_folders(root):
        for severity, sdir in _severity_folders(cdir):
            for wdir in _subfolders(sdir.path):
                label = _tree_label(wdir, own, unknown)
                if label is not None:
                    found, names = walk_images(wdir.path, recursive=False, problems=problems)
                    columns.add(stems(names), label, cdir.name, severity, found)
    if unknown:
        raise ManifestError(
            f"ImageNet-C root {str(root)!r} has class folder(s) that are not classes of the clean "
            f"folder: {examples(unknown)} (e.g. {next(iter(unknown.values()))!r}); the clean classes "
            f"are {examples(classes or [])}. Render the tree from this clean folder "
            "(`iqa-kit corrupt`) or remove those folders"
        )
    if not columns.paths:
        raise ManifestError(f"ImageNet-C root {str(root)!r} holds no images")
    return columns.frame()


def _corruption_folders(root: Path) -> list[os.DirEntry]:
    folders = _subfolders(str(root))
    if not folders:
        raise ManifestError(
            f"ImageNet-C root {str(root)!r} holds no corruption folders; expected "
            "<root>/<corruption>/<severity>/<class>/<file> (generate one with `iqa-kit corrupt`)"
        )
    return folders


def _severity_folders(cdir: os.DirEntry) -> Iterator[tuple[int, os.DirEntry]]:
    """(severity, folder) of one corruption folder, each refused in turn when not 1-5.

    A generator: a folder's name is checked when the scan reaches it, as the scan goes.
    """
    if cdir.name not in ALL_CORRUPTIONS:
        raise ManifestError(
            f"unknown corruption folder {cdir.path!r}; valid names: {', '.join(ALL_CORRUPTIONS)}"
        )
    for sdir in _subfolders(cdir.path):
        if not sdir.name.isdigit() or int(sdir.name) not in SEVERITIES:
            raise ManifestError(f"severity folder {sdir.path!r} is not one of 1-5")
        yield int(sdir.name), sdir


def _tree_label(wdir: os.DirEntry, own: dict[str, int] | None, unknown: dict[str, str]) -> int | None:
    """The label of an ImageNet-C class folder; ``None`` (and noted in ``unknown``) for an own-class
    folder that is not a class of the clean folder."""
    if own is None:
        try:
            return imagenet.label_of(wdir.name)
        except KeyError:
            raise ManifestError(
                f"class folder {wdir.path!r} is not an ImageNet-1k wnid; ImageNet-C trees "
                "use <root>/<corruption>/<severity>/<wnid>/<file>"
            ) from None
    if wdir.name in own:
        return own[wdir.name]
    unknown.setdefault(wdir.name, wdir.path)
    return None


# --------------------------------------------------------------------- other sources
def images_manifest(folder: str | os.PathLike) -> pd.DataFrame:
    """Unlabelled clean rows of every image file under ``folder`` (recursively, sorted).

    ``image_id`` is the path relative to ``folder`` (unique by construction);
    ``label`` is -1. Hidden files and folders are skipped; a broken link to an
    image is kept, so that scoring lists it as a failure instead of losing it.
    """
    root = require_dir(folder, "image folder")
    paths = image_paths(root)
    if not paths:
        raise ManifestError(
            f"no image files under {str(root)!r} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    base = len(str(root).rstrip(os.sep)) + 1
    ids = [p[base:].replace(os.sep, "/") for p in paths]
    return manifest_frame(ids, UNLABELLED, CLEAN, 0, paths)


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
