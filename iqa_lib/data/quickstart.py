"""A quickstart image set that needs no download.

Natural photographs that ship inside packages the kit already installs
(scikit-image, scikit-learn, matplotlib, pyiqa), each showing an ImageNet-1k
class, labelled by a person who looked at it (not by a classifier: several are
hard for small models, which is what the analysis needs). Files are copied into
a class-folder tree so the pipeline treats them like any user's data.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

from iqa_lib import imagenet
from iqa_lib.fileio import atomic_write_with, writing


@dataclass(frozen=True)
class QuickstartImage:
    image_id: str
    distribution: str  # the PyPI distribution that ships the file
    relpath: str  # path of the file inside site-packages, as the distribution's RECORD lists it
    wnid: str
    note: str


QUICKSTART_IMAGES: tuple[QuickstartImage, ...] = (
    QuickstartImage("skimage_coffee", "scikit-image", "skimage/data/coffee.png", "n07920052", "espresso in a cup"),
    QuickstartImage("skimage_rocket", "scikit-image", "skimage/data/rocket.jpg", "n03773504", "rocket on its launch pad (missile)"),
    QuickstartImage("skimage_chelsea", "scikit-image", "skimage/data/chelsea.png", "n02123045", "Chelsea the tabby cat"),
    QuickstartImage("skimage_camera", "scikit-image", "skimage/data/camera.png", "n04485082", "cameraman with a tripod (grayscale)"),
    QuickstartImage("sklearn_china", "scikit-learn", "sklearn/datasets/images/china.jpg", "n03877845", "Summer Palace tower (palace)"),
    QuickstartImage("mpl_grace_hopper", "matplotlib", "matplotlib/mpl-data/sample_data/grace_hopper.jpg", "n03763968", "Grace Hopper in naval uniform (military uniform)"),
    QuickstartImage("pyiqa_lighthouse", "pyiqa", "ResultsCalibra/ref_dir/I19.bmp", "n02814860", "lighthouse behind a picket fence (beacon)"),
    QuickstartImage("pyiqa_fountain", "pyiqa", "tests/test_efficiency_img_dir/frame_4wrwr48cdk6rbcjl.jpg", "n03388043", "fountain in a formal garden"),
    QuickstartImage("pyiqa_seashore", "pyiqa", "tests/test_efficiency_img_dir/frame_7gzdcz9sif0ekg31.jpg", "n09428293", "beach at sunset (seashore)"),
)


def locate(image: QuickstartImage) -> Path | None:
    """Where the installed distribution keeps the file, or ``None`` when it does not ship it."""
    try:
        dist = importlib.metadata.distribution(image.distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(image.relpath)))
    return path if path.is_file() else None


def export_quickstart(out_dir: str | os.PathLike, min_images: int = 5) -> list[Path]:
    """Copy the quickstart photographs to ``<out_dir>/<wnid>/<image_id><ext>``.

    Images a package no longer ships are skipped with a warning; fewer than
    ``min_images`` found is an error (the analyses need a few images).
    """
    out_dir = Path(out_dir)
    written, missing = [], []
    for image in QUICKSTART_IMAGES:
        imagenet.label_of(image.wnid)  # a typo in the table above must fail loudly
        src = locate(image)
        if src is None:
            missing.append(f"{image.relpath} ({image.distribution})")
            continue
        dst = out_dir / image.wnid / f"{image.image_id}{src.suffix.lower()}"
        with writing(dst):
            dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists() or dst.stat().st_size != src.stat().st_size:
            # a write fault: one line naming dst, no partial copy under either name
            atomic_write_with(dst, lambda tmp, src=src: shutil.copyfile(src, tmp))
        written.append(dst)
    if missing:
        warnings.warn(f"quickstart images not shipped by the installed packages: {missing}", stacklevel=2)
    if len(written) < min_images:
        raise RuntimeError(
            f"only {len(written)} quickstart images found (need {min_images}); missing: {missing}. "
            "Reinstall the kit's dependencies (pip install -e .) or point data.clean_root at your own images"
        )
    return written
