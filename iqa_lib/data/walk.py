"""Walking a folder tree for image files, fast and without losing a file silently.

``os.scandir`` with the cached entry types: no stat per file, which is what
makes a million-file folder take seconds rather than minutes. Hidden entries
(``.name``) are skipped; links to folders are not followed, so a link loop
cannot trap a walk. What cannot be read (a dangling or looping link, a format
the kit does not read, a name that is not UTF-8) is listed with its reason in
a ``problems`` mapping, so that it becomes a failure row instead of vanishing.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from iqa_lib.data.images import (
    IMAGE_EXTENSIONS,
    NOT_UTF8,
    is_image_file,
    missing_reason,
    shown,
    unsupported_image_reason,
)
from iqa_lib.data.manifest import ManifestError
from iqa_lib.data.messages import examples


def require_dir(root: str | os.PathLike, what: str) -> Path:
    """``root`` as a path, refused (naming ``what`` it should be) unless it is a folder."""
    root = Path(root)
    if not root.exists():
        raise ManifestError(f"{what} {str(root)!r} does not exist; check the path in params.yaml or on the command line")
    if not root.is_dir():
        raise ManifestError(f"{what} {str(root)!r} is not a folder")
    return root


def visible_entries(folder: str) -> list[os.DirEntry]:
    """Visible entries of one folder, sorted by name (no stat: DirEntry caches the type)."""
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as exc:
        raise ManifestError(f"cannot list folder {folder!r}: {exc.strerror or exc}") from None


def unreserved_entries(folder: str) -> list[os.DirEntry]:
    """Visible entries whose names do not start with ``_``: scans ignore such files and folders."""
    return [e for e in visible_entries(folder) if not e.name.startswith("_")]


def is_dir(entry: os.DirEntry, follow: bool = True) -> bool:
    """Whether ``entry`` is a folder (a link to one too, with ``follow``); unreadable: no."""
    try:
        return entry.is_dir(follow_symlinks=follow)
    except OSError:
        return False


def is_file(entry: os.DirEntry) -> bool:
    """Whether ``entry`` is a file or a link to one; unreadable: no."""
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


def image_entry(entry: os.DirEntry, problems: dict[str, str] | None) -> bool:
    """Whether ``entry`` (named like an image) is one: a file, or a link to none, recorded in ``problems``.

    Dangling and looping links are kept so that they are reported with their
    reason instead of silently lost.
    """
    if is_file(entry):
        return True
    reason = _link_problem(entry)
    if reason is None:
        return False
    if problems is not None:
        problems[entry.path] = reason
    return True


def unsupported_entry(entry: os.DirEntry, problems: dict[str, str] | None) -> bool:
    """Whether ``entry`` is a file in an image format the kit does not read, recorded in
    ``problems`` so that it becomes a failure row instead of vanishing from the manifest."""
    reason = unsupported_image_reason(entry.name)
    if reason is None or problems is None or not is_file(entry):
        return False
    problems[entry.path] = reason
    return True


def listed_image(entry: os.DirEntry, problems: dict[str, str] | None) -> bool:
    """Whether ``entry`` is a row of the manifest: an image, a link to none, or an unsupported format."""
    return (is_image_file(entry.name) and image_entry(entry, problems)) or unsupported_entry(entry, problems)


def walk_images(
    top: str | os.PathLike, recursive: bool = True, problems: dict[str, str] | None = None
) -> tuple[list[str], list[str]]:
    """Paths and file names of the image files under ``top``, in path order.

    Symbolic links to files are followed, links to folders below ``top`` are
    not (as ``Path.rglob``). The order is that of sorted ``Path`` objects. An
    image-named link that leads to no file (dangling, or a loop) is listed too,
    so that it is reported, and ``problems`` (when given) maps its path to the
    reason; so is a file in an image format the kit does not read (``.heic``,
    ``.avif``, raw, ...).
    """
    paths: list[str] = []
    names: list[str] = []

    def visit(folder: str) -> None:
        for e in visible_entries(folder):
            if listed_image(e, problems):
                paths.append(listed(e.path, problems))
                names.append(shown(e.name))
            elif recursive and is_dir(e, follow=False):
                visit(e.path)

    visit(os.fspath(top))
    return paths, names


def image_paths(top: str | os.PathLike) -> list[str]:
    """Every image-named entry below ``top`` that is no folder, sorted, names made UTF-8-safe.

    Files, links to nothing and unsupported formats alike: scoring lists each
    one it cannot read with its reason (a name that is not UTF-8 with ``NOT_UTF8``).
    """
    paths: list[str] = []

    def visit(current: str) -> None:
        for e in visible_entries(current):
            if (is_image_file(e.name) or unsupported_image_reason(e.name)) and not is_dir(e):
                paths.append(shown(e.path))
            elif is_dir(e, follow=False):
                visit(e.path)

    visit(os.fspath(top))
    return paths


def listed(path: str, problems: dict[str, str] | None) -> str:
    """``path`` as the manifest lists it: a name that is not UTF-8 is escaped and recorded in
    ``problems`` (a failure row: Parquet and CSV cannot hold it, and the run goes on)."""
    safe = shown(path)
    if safe != path and problems is not None:
        problems[safe] = NOT_UTF8
    return safe


def stems(names: list[str]) -> list[str]:
    """File names without their extension: the image ids."""
    return [os.path.splitext(n)[0] for n in names]


def no_images_error(root: Path, what: str = "image folder") -> ManifestError:
    """An empty folder and a folder of non-image files get different advice."""
    others: list[str] = []

    def visit(folder: str) -> None:
        for e in visible_entries(folder):
            if len(others) >= 6:
                return
            if is_dir(e, follow=False):
                visit(e.path)
            elif is_file(e):
                others.append(os.path.relpath(e.path, root))

    visit(str(root))
    extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
    if not others:
        return ManifestError(
            f"{what} {str(root)!r} is empty or has an unknown layout: it holds no image files "
            f"(looked for {extensions}); point to the folder that holds the images"
        )
    return ManifestError(
        f"{what} {str(root)!r} holds no image files, only other files (e.g. {examples(others, 3)}); "
        f"images must end in one of {extensions}"
    )
