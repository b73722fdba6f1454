"""Render ImageNet-C from clean images, deterministically and resumably.

For users who have clean images but not the 70 GB ImageNet-C download. The
protocol is the original one (Hendrycks & Dietterich, ``make_imagenet_c.py``):
Resize(256) + CenterCrop(224), the corruption, ``np.uint8`` truncation, then
JPEG quality 85 (``optimize=True``), written to
``<root>/<corruption>/<severity>/<wnid>/<image_id>.JPEG``. A dataset with its
own classes (``classes``: the clean folder's class folder names) is written
the same way with the class folder name in place of the wnid, and
:func:`iqa_lib.data.assemble.build_manifest` reads such a tree back with the
same labels. Unlabelled images (label -1) are refused: the tree's folders are
classes, and a made-up ``unlabelled`` class could not be told from a real one.

The corruptions come from ``imagecorruptions`` (the ``imagecorruptions-imaug``
fork), except ``elastic_transform``, ``frost`` and ``spatter``: the package's
versions of those are not the original's (a different warp without the affine;
frost textures from six files, upscaled; spatter's mud, severities 4-5, blended
in float64 instead of float32, 1 apart in a few values per image), so they come
from the kit's own transcription of the original,
:mod:`iqa_lib.data.imagenet_c_original`. Of the four extra corruptions, the
package's ``speckle_noise``, ``gaussian_blur`` and ``saturate`` are the
original's code and give the original's bytes (checked: same image, same seed,
every severity, identical ``np.uint8`` output; ``tests/test_imagenet_c_original.py``),
so they come from the package.

Determinism: every random draw is seeded from a stable hash of
``(image_id, corruption, severity)``. The corruptions of ``imagecorruptions``
and of :mod:`~iqa_lib.data.imagenet_c_original` draw from numpy's global RNG,
except ``impulse_noise`` (scikit-image ``random_noise(rng=seed)``) and
``glass_blur`` (numba's own RNG, seeded inside the jitted shuffle); both take a
``seed`` argument, which we pass. Nothing uses Python's ``random`` or OpenCV's
RNG. So the bytes of a file depend only on the source pixels, the image ID, the
corruption and the severity (for given versions of numpy, scipy, scikit-image,
OpenCV and Pillow): not on the worker count, the order of work or what was
rendered before.

Resumability: outputs are written atomically (:func:`iqa_lib.fileio.atomic_write_bytes`:
a temporary file in the same directory, moved into place), so a final name
always holds a whole JPEG; a rerun skips every output that exists and decodes
(and removes the temporary files a killed run left behind). An output that does not decode
(cut short by a copy, damaged on disk) is rendered again and counted in
``GenerationReport.rerendered``: only outputs that would be skipped are
checked, on threads (Pillow decodes without the GIL), about 1 ms each.

Failures: an undecodable source is listed in ``corrupt_failures.csv`` and the
run goes on; so is a render that raises. A write the machine refuses (disk
full, I/O error, read-only file system: :func:`iqa_lib.fileio.is_write_fault`)
is no property of one image: it stops the whole run, workers included, with a
:class:`~iqa_lib.fileio.WriteError` naming the path, and a rerun finishes the
work.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import inspect
import io
import json
import multiprocessing
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm  # text bars: tqdm.auto warns in kernels without ipywidgets

# The name lists live in a light module (no image stack) so params validation can use them.
from iqa_lib.corruptions import ALL_CORRUPTIONS, COMMON_CORRUPTIONS, EXTRA_CORRUPTIONS, SEVERITIES
from iqa_lib.data.imagenet_c_original import ORIGINAL_CORRUPTIONS
from iqa_lib.data.images import ImageDecodeError, load_rgb, resize_center_crop
from iqa_lib.data.workers import process_alive, process_pool
from iqa_lib.fileio import WriteError, atomic_write_bytes, is_write_fault, temporary_owner, writing
from iqa_lib.imagenet import wnid_of

__all__ = [
    "ALL_CORRUPTIONS",
    "COMMON_CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "SEVERITIES",
    "Failure",
    "GenerationReport",
    "corrupt_array",
    "corruption_seed",
    "generate_imagenet_c",
    "output_path",
    "preprocess_clean",
    "render_corruption",
    "resolve_corruptions",
    "resolve_severities",
]

CORRUPTION_SETS: dict[str, tuple[str, ...]] = {
    "common": COMMON_CORRUPTIONS,
    "extra": EXTRA_CORRUPTIONS,
    "all": ALL_CORRUPTIONS,
}
RESIZE_SIZE = 256
CROP_SIZE = 224
JPEG_QUALITY = 85
OUTPUT_SUFFIX = ".JPEG"
FAILURES_FILE = "corrupt_failures.csv"
FAILURE_COLUMNS = ("image_id", "corruption", "severity", "path", "reason")  # as the manifest's


# --------------------------------------------------------------------------- validation


def resolve_corruptions(names: str | Iterable[str]) -> tuple[str, ...]:
    """Expand ``common``/``extra``/``all`` and check every name; order kept, duplicates dropped.

    Raises ``ValueError`` naming the unknown value and listing the valid ones.
    """
    if isinstance(names, str):
        names = [names]
    out: list[str] = []
    for name in names:
        key = str(name).strip()
        expanded = CORRUPTION_SETS.get(key.lower(), (key,))
        for c in expanded:
            if c not in ALL_CORRUPTIONS:
                raise ValueError(
                    f"unknown corruption {c!r}; valid names: {', '.join(ALL_CORRUPTIONS)} "
                    f"(or one of the sets: {', '.join(CORRUPTION_SETS)})"
                )
            if c not in out:
                out.append(c)
    if not out:
        raise ValueError(f"no corruption given; valid names: {', '.join(ALL_CORRUPTIONS)}")
    return tuple(out)


def resolve_severities(severities: int | Iterable[int]) -> tuple[int, ...]:
    """Check severities are integers in 1-5; sorted, duplicates dropped."""
    if isinstance(severities, int | np.integer):
        severities = [int(severities)]
    out: set[int] = set()
    for s in severities:
        try:
            value = int(s)
            ok = value == s and value in SEVERITIES  # rejects 2.5
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(
                f"invalid severity {s!r}; valid severities: {', '.join(map(str, SEVERITIES))}"
            )
        out.add(value)
    if not out:
        raise ValueError(f"no severity given; valid severities: {', '.join(map(str, SEVERITIES))}")
    return tuple(sorted(out))


# --------------------------------------------------------------------------- rendering


def corruption_seed(image_id: str, corruption: str, severity: int) -> int:
    """Stable 32-bit seed of one render (never Python's salted ``hash()``)."""
    key = f"{image_id}\x1f{corruption}\x1f{int(severity)}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "little")


def preprocess_clean(image: Image.Image) -> Image.Image:
    """torchvision ``Resize(256)`` + ``CenterCrop(224)`` on a PIL image, pixel for pixel.

    Shorter side to 256 with PIL bilinear (longer side ``int(256 * long / short)``,
    unchanged when the shorter side is already 256), then the centre crop with
    torchvision's ``int(round(...))`` offsets. Images smaller than 224 are upscaled.
    """
    if image.mode != "RGB":
        image = image.convert("RGB")
    return resize_center_crop(image, RESIZE_SIZE, CROP_SIZE)


@contextlib.contextmanager
def _numpy_global_seed(seed: int) -> Iterator[None]:
    """Seed numpy's global RNG for one render and restore the caller's state after."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


_SEED_KWARG: dict[str, bool] = {}


def _takes_seed(corruption: str) -> bool:
    if corruption not in _SEED_KWARG:
        from imagecorruptions import corruption_dict  # heavy (numba, OpenCV): only when rendering

        params = inspect.signature(corruption_dict[corruption]).parameters
        _SEED_KWARG[corruption] = "seed" in params
    return _SEED_KWARG[corruption]


def corrupt_array(image: np.ndarray, image_id: str, corruption: str, severity: int) -> np.ndarray:
    """Seeded corruption of a preprocessed HxWx3 uint8 array (no resize, no JPEG).

    ``elastic_transform``, ``frost`` and ``spatter`` (the original's, from
    :mod:`iqa_lib.data.imagenet_c_original`) take 224x224x3 images only.
    """
    from imagecorruptions import corrupt  # heavy (numba, OpenCV): only when rendering

    (corruption,) = resolve_corruptions([corruption])
    (severity,) = resolve_severities([severity])
    seed = corruption_seed(image_id, corruption, severity)
    with _numpy_global_seed(seed):
        if corruption in ORIGINAL_CORRUPTIONS:
            # np.uint8 truncation of the float result, as the original saves it
            out = np.uint8(ORIGINAL_CORRUPTIONS[corruption](image, severity))
        else:
            kwargs = {"seed": seed} if _takes_seed(corruption) else {}
            out = corrupt(image, corruption_name=corruption, severity=severity, **kwargs)
    return np.ascontiguousarray(out, dtype=np.uint8)


def encode_jpeg(pixels: np.ndarray) -> bytes:
    """JPEG quality 85 with ``optimize=True``, as ImageNet-C was saved."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return buf.getvalue()


def _render_preprocessed(
    pixels: np.ndarray, image_id: str, corruption: str, severity: int
) -> bytes:
    return encode_jpeg(corrupt_array(pixels, image_id, corruption, severity))


def render_corruption(image: Image.Image, image_id: str, corruption: str, severity: int) -> bytes:
    """The ImageNet-C JPEG bytes of one clean image at one corruption and severity.

    Pure: the same pixels, ``image_id``, corruption and severity always give the
    same bytes, and numpy's global RNG state is left as it was.
    """
    pixels = np.asarray(preprocess_clean(image), dtype=np.uint8)
    return _render_preprocessed(pixels, image_id, corruption, severity)


# --------------------------------------------------------------------------- files


def output_path(
    out_root: str | os.PathLike, corruption: str, severity: int, wnid: str, image_id: str
) -> Path:
    """``<root>/<corruption>/<severity>/<wnid>/<image_id>.JPEG`` (``wnid``: the class folder)."""
    return Path(out_root) / corruption / str(int(severity)) / wnid / f"{image_id}{OUTPUT_SUFFIX}"


def write_output(path: Path, data: bytes) -> None:
    """Write one output atomically, its folder first; a write the machine refuses, the folder's
    included, is a :class:`~iqa_lib.fileio.WriteError` naming the output.

    A killed process leaves at most a hidden temporary file, never a partial file
    under the final name. Not fsynced: this protects against killed runs, not power loss.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if is_write_fault(exc):
            raise WriteError(path, exc) from exc
        raise
    atomic_write_bytes(path, data)


def _remove_stale_temporaries(directory: Path, owners: dict[str, int]) -> None:
    """Delete the temporary files of killed runs (their process is gone); best effort."""
    for name, pid in owners.items():
        if pid != os.getpid() and not process_alive(pid):
            with contextlib.suppress(OSError):
                (directory / name).unlink()


# --------------------------------------------------------------------------- generation


@dataclass(frozen=True)
class Failure:
    """One source image that could not be decoded (corruption ``""``) or one failed render."""

    image_id: str
    corruption: str
    severity: int
    path: str
    reason: str


@dataclass
class GenerationReport:
    """Counts are of output files: ``failed`` counts the outputs not produced.

    ``undecodable`` counts the failed outputs whose source image could not be
    read; the rest (``failed - undecodable``) are renders that failed, which
    ``iqa-kit prepare`` must not pass over.
    """

    written: int = 0
    skipped: int = 0
    rerendered: int = 0  # outputs there that did not decode: in the work again, as missing ones
    failed: int = 0
    failures: list[Failure] = field(default_factory=list)
    images: int = 0
    elapsed_s: float = 0.0
    failures_file: Path | None = None
    undecodable: int = 0

    @property
    def renders_per_s(self) -> float:
        return self.written / self.elapsed_s if self.elapsed_s > 0 else float("nan")

    @property
    def render_failures(self) -> list[Failure]:
        """Failures of a render, not of reading its source."""
        return [f for f in self.failures if f.corruption]


# A unit of work: one source image and the outputs it still lacks.
_Unit = tuple[str, str, str, str, tuple[tuple[str, int], ...]]  # image_id, path, wnid, root, todo
_Result = tuple[str, int, int, list[Failure]]  # image_id, written, failed, failures


# Set in pool workers: the parent sets it to stop them after their current render.
_STOP: Any = None


def _stopping() -> bool:
    return _STOP is not None and _STOP.is_set()


def _render_unit(unit: _Unit) -> _Result:
    """Decode one image once and write all of its missing outputs (runs in a worker).

    A write fault is raised (:class:`~iqa_lib.fileio.WriteError`), not listed:
    it would fail every later write too.
    """
    image_id, path, wnid, root, todo = unit
    if _stopping():
        return image_id, 0, 0, []
    try:
        pixels = np.asarray(preprocess_clean(load_rgb(path)), dtype=np.uint8)
    except ImageDecodeError as exc:
        return image_id, 0, len(todo), [Failure(image_id, "", 0, path, exc.reason)]
    except Exception as exc:  # noqa: BLE001 - a bad file must never kill a long run
        reason = f"{type(exc).__name__}: {exc}"
        return image_id, 0, len(todo), [Failure(image_id, "", 0, path, reason)]
    written, failures = 0, []
    for corruption, severity in todo:
        if _stopping():
            break
        try:
            data = _render_preprocessed(pixels, image_id, corruption, severity)
            write_output(output_path(root, corruption, severity, wnid, image_id), data)
            written += 1
        except WriteError:
            raise
        except Exception as exc:  # noqa: BLE001
            reason = f"{type(exc).__name__}: {exc}"
            failures.append(Failure(image_id, corruption, severity, path, reason))
    return image_id, written, len(failures), failures


def _enable_numba_cache() -> None:
    """Cache glass_blur's numba kernel on disk: it costs ~3 s to compile in every process.

    ``imagecorruptions`` jits it without ``cache=True``; we re-jit the same Python
    function with caching and put it back in the module, where ``glass_blur`` looks
    it up at call time. Any problem leaves the original in place.
    """
    try:
        import imagecorruptions.corruptions as ic

        original = getattr(ic, "_shuffle_pixels_njit_glass_blur", None)
        py_func = getattr(original, "py_func", None)
        if py_func is None or getattr(original, "_iqa_cached", False):
            return
        from numba import njit

        cached = njit(cache=True)(py_func)
        cached._iqa_cached = True
        ic._shuffle_pixels_njit_glass_blur = cached
    except Exception:  # noqa: BLE001 - caching is an optimisation only
        return


def _limit_threads() -> None:
    """One thread per worker process: the parallelism is across processes."""
    with contextlib.suppress(Exception):
        import cv2

        cv2.setNumThreads(1)
    with contextlib.suppress(Exception):
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)


def _init_worker(stop: Any = None) -> None:
    global _STOP
    _STOP = stop
    _limit_threads()
    _enable_numba_cache()


@contextlib.contextmanager
def _single_threaded_here() -> Iterator[None]:
    """Like ``_limit_threads`` for the calling process, restored afterwards."""
    with contextlib.ExitStack() as stack:
        try:
            import cv2

            previous = cv2.getNumThreads()
            cv2.setNumThreads(1)
            stack.callback(cv2.setNumThreads, previous)
        except Exception:  # noqa: BLE001
            pass
        try:
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(1))
        except Exception:  # noqa: BLE001
            pass
        yield


def default_workers() -> int:
    """The cores this process may use."""
    if hasattr(os, "process_cpu_count"):
        n = os.process_cpu_count()
    elif hasattr(os, "sched_getaffinity"):
        n = len(os.sched_getaffinity(0))
    else:
        n = os.cpu_count()
    return max(1, n or 1)


def _bad_class_folder(name: str) -> bool:
    """Whether ``name`` cannot be a class folder: empty, a slash, ``.``/``..``, or one the scanners skip."""
    return not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith((".", "_"))


def _check_classes(classes: Sequence[str]) -> list[str]:
    """Own class names become folder names: refuse what a folder cannot be or scanners skip."""
    classes = [str(c) for c in classes]
    for c in classes:
        if _bad_class_folder(c):
            raise ValueError(
                f"class name {c!r} cannot be a class folder of an ImageNet-C tree (empty, a slash, "
                "or a leading '.' or '_', which the manifest scanner skips); rename the class"
            )
    dup = sorted({c for c in classes if classes.count(c) > 1})
    if dup:
        raise ValueError(f"class name(s) {dup} occur more than once in the class list")
    return classes


def _check_clean(clean: pd.DataFrame, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """The clean rows to render, sorted by image id; ids that cannot name a file and labels
    that name no class folder are refused."""
    clean = _clean_rows(clean)
    _check_output_ids(clean["image_id"])
    clean["label"] = _class_labels(clean, classes)
    return clean.sort_values("image_id", kind="stable").reset_index(drop=True)


def _clean_rows(clean: pd.DataFrame) -> pd.DataFrame:
    """image_id, label and path of the clean rows (a whole manifest gives its clean rows)."""
    missing = [c for c in ("image_id", "label", "path") if c not in clean.columns]
    if missing:
        raise ValueError(
            f"clean-image table lacks column(s) {missing}; it needs image_id, label, path "
            "(e.g. from iqa_lib.data.scan.clean_images)"
        )
    if "corruption" in clean.columns:  # a whole manifest: keep its clean rows
        clean = clean[clean["corruption"].astype(str) == "clean"]
    clean = clean[["image_id", "label", "path"]].copy()
    clean["image_id"] = clean["image_id"].astype(str)
    clean["path"] = clean["path"].astype(str)
    return clean


def _check_output_ids(ids: pd.Series) -> None:
    """Image ids name output files: each a file stem (no slash, not empty), each once."""
    bad_ids = ids[(ids == "") | ids.str.contains(r"[/\\]") | ids.isin([".", ".."])]
    if len(bad_ids):
        raise ValueError(
            f"image_id must be a file stem, got {bad_ids.iloc[0]!r}: no slashes, not empty"
        )
    dup = ids[ids.duplicated()]
    if len(dup):
        raise ValueError(
            f"{dup.nunique()} image_id(s) occur more than once (e.g. {dup.iloc[0]!r}); "
            "image_id joins clean and corrupted copies, so it must be unique"
        )


def _class_labels(clean: pd.DataFrame, classes: Sequence[str] | None) -> pd.Series:
    """The labels as integers, each naming a class folder: a wnid (0-999) or one of ``classes``."""
    labels = pd.to_numeric(clean["label"], errors="coerce")
    unlabelled = clean[labels == -1]
    if len(unlabelled):
        raise ValueError(
            f"{len(unlabelled)} image(s) are unlabelled (label -1), e.g. "
            f"{unlabelled['image_id'].iloc[0]!r}: an ImageNet-C tree is organised in class folders; "
            "label the images (class folders, a labels file or a label column) to render them"
        )
    top = 999 if classes is None else len(classes) - 1
    bad = clean[labels.isna() | (labels < 0) | (labels > top) | (labels != labels.round())]
    if not len(bad):
        return labels.astype(np.int64)
    row = bad.iloc[0]
    if classes is not None:
        raise ValueError(
            f"label {row['label']} of image {row['image_id']!r} is not one of the dataset's "
            f"{len(classes)} classes (0-{top})"
        )
    raise ValueError(
        f"label {row['label']} of image {row['image_id']!r} is not an ImageNet label "
        "(an integer 0-999): ImageNet-C folders are named by wnid"
    )


def _existing_names(directory: Path) -> frozenset[str]:
    """The finished files of ``directory``; temporary files of killed runs are removed."""
    try:
        with os.scandir(directory) as it:
            names = [e.name for e in it]
    except (FileNotFoundError, NotADirectoryError):
        return frozenset()
    owners = {n: pid for n in names if (pid := temporary_owner(n)) is not None}
    if owners:
        _remove_stale_temporaries(directory, owners)
    return frozenset(n for n in names if n not in owners)


def output_decodes(path: str | os.PathLike) -> bool:
    """Whether an output is a whole 224 x 224 JPEG that decodes: only such an output is skipped.

    The markers first (a cut copy lacks its end), then a full decode (a damaged header or
    entropy stream raises).
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
            fh.seek(-2, os.SEEK_END)
            tail = fh.read(2)
        if head != b"\xff\xd8" or tail != b"\xff\xd9":
            return False
        with Image.open(path) as image:
            image.load()
            return image.format == "JPEG" and image.size == (CROP_SIZE, CROP_SIZE)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return False


def _undecodable(paths: list[Path]) -> set[Path]:
    """The outputs of ``paths`` that do not decode (checked on threads)."""
    if not paths:
        return set()
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        ok = list(pool.map(output_decodes, paths, chunksize=64))
    return {p for p, good in zip(paths, ok, strict=True) if not good}


def _plan(
    clean: pd.DataFrame,
    root: Path,
    pairs: Sequence[tuple[str, int]],
    classes: Sequence[str] | None = None,
) -> tuple[list[_Unit], int, int]:
    """Work units for the outputs that are missing or do not decode; the counts skipped and damaged.

    One class at a time: a directory listing per output folder (not a stat per file),
    and only one class's listings in memory (ImageNet-C has 3.75 M files). Only the
    outputs that would be skipped are decoded.
    """
    units: list[_Unit] = []
    skipped = damaged = 0
    for label, group in clean.groupby("label", sort=True):
        wnid = wnid_of(int(label)) if classes is None else classes[int(label)]
        class_units, class_skipped, class_damaged = _plan_class(group, root, pairs, wnid)
        units += class_units
        skipped += class_skipped
        damaged += class_damaged
    return units, skipped, damaged


def _plan_class(
    group: pd.DataFrame, root: Path, pairs: Sequence[tuple[str, int]], wnid: str
) -> tuple[list[_Unit], int, int]:
    """``_plan`` for the images of one class folder."""
    found = _finished(group["image_id"], root, pairs, wnid)
    bad = _undecodable([output_path(root, c, s, wnid, i) for i, done in found.items() for c, s in done])
    units: list[_Unit] = []
    skipped = 0
    for image_id, path in zip(group["image_id"], group["path"], strict=True):
        whole = [p for p in found[image_id] if output_path(root, *p, wnid, image_id) not in bad]
        todo = tuple(pair for pair in pairs if pair not in whole)
        skipped += len(whole)
        if todo:
            units.append((image_id, path, wnid, str(root), todo))
    return units, skipped, len(bad)


def _finished(
    image_ids: Iterable[str], root: Path, pairs: Sequence[tuple[str, int]], wnid: str
) -> dict[str, list[tuple[str, int]]]:
    """The (corruption, severity) pairs each image has an output for, by one listing per folder."""
    existing = {(c, s): _existing_names(root / c / str(s) / wnid) for c, s in pairs}
    return {
        image_id: [pair for pair in pairs if f"{image_id}{OUTPUT_SUFFIX}" in existing[pair]]
        for image_id in image_ids
    }


def _write_failures(root: Path, failures: list[Failure]) -> Path | None:
    """This run's failures as CSV; a stale file from an earlier run is removed when none."""
    target = root / FAILURES_FILE
    if not failures:
        with contextlib.suppress(FileNotFoundError), writing(target):
            target.unlink()
        return None
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(FAILURE_COLUMNS)
    for f in sorted(failures, key=lambda f: (f.image_id, f.corruption, f.severity)):
        writer.writerow([f.image_id, f.corruption, f.severity, f.path, f.reason])
    atomic_write_bytes(target, buf.getvalue().encode())
    return target


def generate_imagenet_c(
    clean: pd.DataFrame,
    out_root: str | os.PathLike,
    corruptions: Sequence[str] = COMMON_CORRUPTIONS,
    severities: Sequence[int] = SEVERITIES,
    workers: int | None = None,
    progress: bool = True,
    classes: Sequence[str] | None = None,
) -> GenerationReport:
    """Render every missing ``(image, corruption, severity)`` output under ``out_root``.

    ``clean`` has columns image_id, label (0-999), path; with ``classes`` (a
    dataset's own class names, e.g. ``ManifestResult.classes``) labels index
    ``classes`` and outputs go to ``<class>/`` folders instead of wnid folders.
    Unlabelled rows (label -1) are refused. One work unit is one source
    image, decoded once; units run on ``workers`` processes (``None``: all cores;
    ``1``: in this process). Undecodable sources and failed renders are listed in
    ``<out_root>/corrupt_failures.csv`` and the run goes on; a write the machine
    refuses stops it at once with a :class:`~iqa_lib.fileio.WriteError` (nothing
    half-written stays; a rerun renders only what is missing).
    """
    start = time.perf_counter()
    corruptions = resolve_corruptions(corruptions)
    severities = resolve_severities(severities)
    _check_workers(workers)
    if classes is not None:
        classes = _check_classes(classes)
    clean = _check_clean(clean, classes)
    root = Path(out_root)
    _open_tree(root)
    pairs = [(c, s) for c in corruptions for s in severities]
    units, skipped, damaged = _plan(clean, root, pairs, classes)
    report = GenerationReport(skipped=skipped, images=len(clean), rerendered=damaged)
    n_workers = min(int(workers) if workers else default_workers(), max(1, len(units)))
    _render_into(report, units, n_workers, progress)
    report.failures_file = _write_failures(root, report.failures)
    report.elapsed_s = time.perf_counter() - start
    return report


def _check_workers(workers: int | None) -> None:
    if workers is not None and (isinstance(workers, bool) or int(workers) != workers or workers < 1):
        raise ValueError(f"workers must be a whole number of at least 1, got {workers!r}")


def _open_tree(root: Path) -> None:
    """The tree's folder, stamped with the renderer versions (refused when older renders are there)."""
    seen = _check_render_versions(root)
    with writing(root):
        root.mkdir(parents=True, exist_ok=True)
    if seen != {**seen, **RENDER_VERSIONS}:
        stamp = (json.dumps({**seen, **RENDER_VERSIONS}, indent=1) + "\n").encode()
        atomic_write_bytes(root / RENDER_VERSIONS_FILE, stamp)


def _render_into(report: GenerationReport, units: list[_Unit], n_workers: int, progress: bool) -> None:
    """Run the units, counting what they wrote and what failed into ``report``, with a progress bar."""
    n_todo = sum(len(u[4]) for u in units)
    bar = tqdm(
        total=n_todo,
        unit="render",
        desc="corrupt",
        disable=not progress or n_todo == 0,
        smoothing=0.05,
    )
    try:
        for _, written, failed, failures in _run_units(units, n_workers):
            report.written += written
            report.failed += failed
            report.failures.extend(failures)
            if failures and not failures[0].corruption:  # the source could not be read
                report.undecodable += failed
            bar.update(written + failed)
    finally:
        bar.close()


# Bumped when a corruption's rendering changes; a tree rendered by an older kit
# must not be completed with newer renders (two algorithms in one group).
# spatter 2: the original's float32 mud (severities 4-5) instead of the package's float64.
RENDER_VERSIONS: dict[str, int] = {"elastic_transform": 2, "frost": 2, "spatter": 2}
RENDER_VERSIONS_FILE = ".iqa_kit_render.json"  # hidden: tree scanners skip it


def _check_render_versions(root: Path) -> dict[str, int]:
    """Refuse to add to corruption folders rendered by an older algorithm; say what to delete.

    Returns the tree's recorded renderer versions (empty for a new tree).
    """
    stamp = root / RENDER_VERSIONS_FILE
    try:
        seen = json.loads(stamp.read_text()) if stamp.is_file() else {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{stamp} is unreadable ({exc}); delete it only if {root} is empty") from None
    stale = [
        c for c, v in RENDER_VERSIONS.items()
        if int(seen.get(c, 1)) < v and (root / c).is_dir() and any((root / c).rglob("*.JPEG"))
    ]
    if stale:
        folders = ", ".join(str(root / c) for c in stale)
        raise ValueError(
            f"{folders} were rendered by an older iqa-kit whose {', '.join(stale)} was not "
            f"ImageNet-C's; delete {'that folder' if len(stale) == 1 else 'those folders'} and "
            "rerun to render them as the original does (then rescore: dvc repro does both)"
        )
    return seen


def _render_chunk(units: list[_Unit]) -> list[_Result]:
    return [_render_unit(u) for u in units]


def _chunks(units: list[_Unit], n_workers: int) -> list[list[_Unit]]:
    """About 32 renders per task, and at least 8 tasks per worker when there is enough work."""
    per_unit = max(1, max(len(u[4]) for u in units))
    size = max(1, min(32 // per_unit, len(units) // (n_workers * 8)))
    return [units[i : i + size] for i in range(0, len(units), size)]


def _run_units(units: list[_Unit], n_workers: int) -> Iterator[_Result]:
    if not units:
        return
    if n_workers == 1:
        _enable_numba_cache()
        with _single_threaded_here():
            for unit in units:
                yield _render_unit(unit)
        return
    # spawn: safe whatever the parent imported (torch, CUDA, thread pools). A process
    # pool executor, unlike multiprocessing.Pool, fails instead of hanging when a worker dies;
    # process_pool's workers die with this process. ``stop`` ends the workers' chunks early
    # when this generator ends before the work does (a write fault, Ctrl-C).
    stop = multiprocessing.get_context("spawn").Event()
    executor = process_pool(n_workers, context="spawn", initializer=_init_worker, initargs=(stop,))
    try:
        futures = [executor.submit(_render_chunk, chunk) for chunk in _chunks(units, n_workers)]
        for future in as_completed(futures):
            yield from future.result()
    except BrokenProcessPool as exc:
        raise RuntimeError(
            "a corruption worker process died (killed, or out of memory; a script that calls "
            "generate_imagenet_c needs an `if __name__ == '__main__':` guard). Every file "
            "already written is complete: run again to resume"
        ) from exc
    finally:
        # On an error or Ctrl-C, drop the queued work rather than finishing it, and end the
        # running chunks after their current render.
        stop.set()
        executor.shutdown(wait=True, cancel_futures=True)
