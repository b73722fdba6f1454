"""Realistic shifts that are not ImageNet-C, for validating the audit's prediction interval.

Each clean image gets the reference's geometry first (Resize 256 + CenterCrop 224, the
kit's :func:`iqa_lib.data.images.resize_center_crop`, as ImageNet-C was rendered), then
one shift made with PIL/numpy; every shift is deterministic. Two layouts are written:

- ``OUT/tree/<shift>/1/<wnid>/<stem>.png``: the 224 px shifted images in ImageNet-C's
  layout, and ``OUT/manifest.parquet`` listing them (the manifest contract: corruption
  ``<shift>``, severity 1; ``iqa-kit manifest --imagenet-c`` accepts only ImageNet-C's
  names, so the benchmark writes the rows itself) with the clean images (corruption
  ``clean``), for ``iqa-kit score --manifest OUT/manifest.parquet`` (shifted rows are
  scored as stored) and ``benchmarks/validate_prediction_interval.py --extras``;
- ``OUT/audit/<shift>/<wnid>/<stem>.png`` for the shifts named by ``--audit``: the same
  224 px image in the middle of a 256 x 256 canvas (edge pixels repeated outwards), so that
  ``iqa-kit audit``'s default Resize 256 + CenterCrop 224 gives back exactly the shifted
  224 px image (a 256 px square is not resized; the centre crop starts at 16 px).

PNG throughout (lossless: JPEG artefacts only where a shift makes them). Shifts:

    jpeg_q5, jpeg_q15      JPEG at quality 5 / 15 (PIL, 4:2:0), decoded again
    down_up_x4             downscale x4 (bicubic, antialiased), back up to 224 (bilinear)
    grayscale              ITU-R 601 luma, copied to three channels
    rotate_90, rotate_180  rotated 90 degrees counter-clockwise / upside down
    underexposed           gamma 2.5 (x -> x ** 2.5), a dark image
    overexposed            gamma 0.35 and gain 1.3, clipped: washed out
    zoom_crop_2x           centre 112 px crop zoomed back to 224 (bilinear)
    colour_cast            channel gains (1.0, 0.75, 0.4): strong orange cast
    posterize_3            3 bits per channel (banding)
    hflip                  horizontal flip: a no-shift control

    python benchmarks/curator_shifts.py --src /work/shared/data/imagenet-sample \\
        --out /work/scratch/curator [--shifts NAME ...] [--audit NAME ...] [--workers 2]
"""

from __future__ import annotations

import argparse
import io
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from iqa_lib.data.images import resize_center_crop
from iqa_lib.imagenet import label_of


def _jpeg(q: int):
    def f(img: Image.Image) -> Image.Image:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=q)
        buf.seek(0)
        return Image.open(buf).convert("RGB")
    return f


def _down_up(img: Image.Image, k: int = 4) -> Image.Image:
    w, h = img.size
    small = img.resize((w // k, h // k), Image.Resampling.BICUBIC, reducing_gap=None)
    return small.resize((w, h), Image.Resampling.BILINEAR)


def _gamma(g: float, gain: float = 1.0):
    def f(img: Image.Image) -> Image.Image:
        x = np.asarray(img, dtype=np.float64) / 255.0
        y = np.clip(gain * x ** g, 0.0, 1.0)
        return Image.fromarray(np.round(255 * y).astype(np.uint8))
    return f


def _zoom(img: Image.Image, factor: int = 2) -> Image.Image:
    w, h = img.size
    cw, ch = w // factor, h // factor
    left, top = (w - cw) // 2, (h - ch) // 2
    return img.crop((left, top, left + cw, top + ch)).resize((w, h), Image.Resampling.BILINEAR)


def _cast(gains=(1.0, 0.75, 0.4)):
    def f(img: Image.Image) -> Image.Image:
        x = np.asarray(img, dtype=np.float64) * np.asarray(gains)
        return Image.fromarray(np.clip(np.round(x), 0, 255).astype(np.uint8))
    return f


def _posterize(img: Image.Image, bits: int = 3) -> Image.Image:
    from PIL import ImageOps
    return ImageOps.posterize(img, bits)


SHIFTS = {
    "jpeg_q5": _jpeg(5),
    "jpeg_q15": _jpeg(15),
    "down_up_x4": _down_up,
    "grayscale": lambda im: im.convert("L").convert("RGB"),
    "rotate_90": lambda im: im.transpose(Image.Transpose.ROTATE_90),
    "rotate_180": lambda im: im.transpose(Image.Transpose.ROTATE_180),
    "underexposed": _gamma(2.5),
    "overexposed": _gamma(0.35, 1.3),
    "zoom_crop_2x": _zoom,
    "colour_cast": _cast(),
    "posterize_3": _posterize,
    "hflip": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
}


def _pad256(img: Image.Image) -> Image.Image:
    a = np.asarray(img)
    return Image.fromarray(np.pad(a, ((16, 16), (16, 16), (0, 0)), mode="edge"))


def _one(job: tuple[str, str, list[str], list[str]]) -> int:
    path, out, shifts, audit = job
    src = Path(path)
    wnid = src.name.split("_", 1)[0]
    with Image.open(src) as im:
        base = resize_center_crop(im.convert("RGB"), 256, 224)
    done = 0
    for name in shifts:
        img = SHIFTS[name](base)
        assert img.size == (224, 224) and img.mode == "RGB", (name, img.size, img.mode)
        t = Path(out) / "tree" / name / "1" / wnid / f"{src.stem}.png"
        t.parent.mkdir(parents=True, exist_ok=True)
        img.save(t)
        if name in audit:
            a = Path(out) / "audit" / name / wnid / f"{src.stem}.png"
            a.parent.mkdir(parents=True, exist_ok=True)
            _pad256(img).save(a)
        done += 1
    return done


def write_manifest(files: list[Path], out: Path, shifts: list[str]) -> Path:
    """The clean images and their shifted copies as manifest rows (labels from the wnids)."""
    rows = []
    for name in ["clean", *shifts]:
        for src in files:
            wnid = src.name.split("_", 1)[0]
            path = src if name == "clean" else out / "tree" / name / "1" / wnid / f"{src.stem}.png"
            rows.append({"image_id": src.stem, "label": label_of(wnid), "corruption": name,
                         "severity": 0 if name == "clean" else 1, "path": str(path.resolve())})
    frame = pd.DataFrame(rows).astype({"label": "int64", "severity": "int64"})
    frame.to_parquet(out / "manifest.parquet", index=False)
    return out / "manifest.parquet"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", type=Path, required=True, help="clean images named <wnid>_<anything>")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--shifts", nargs="+", default=list(SHIFTS), choices=list(SHIFTS))
    ap.add_argument("--audit", nargs="*", default=["jpeg_q5", "grayscale", "rotate_90", "hflip"],
                    choices=list(SHIFTS), help="shifts also written as 256 px folders for iqa-kit audit")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    files = sorted(p for p in args.src.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    jobs = [(str(p), str(args.out), args.shifts, args.audit) for p in files]
    with ProcessPoolExecutor(args.workers) as ex:
        n = sum(ex.map(_one, jobs, chunksize=8))
    manifest = write_manifest(files, args.out, args.shifts)
    print(f"{len(files)} images x {len(args.shifts)} shifts: {n} images into {args.out}/tree, "
          f"listed with the clean images in {manifest}"
          + (f"; audit folders for {', '.join(args.audit)} in {args.out}/audit" if args.audit else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
