"""Pixels and decode failure reasons of this tree's ``iqa_lib.data.images`` against another tree's.

Every file of ``--sample`` (real JPEGs of many sizes, some grayscale or CMYK),
its ``--files`` 224 px renders (``bench_decode_bound.render``) and damaged
copies of ``--damaged`` of them (truncated at several points, bytes flipped in
the headers and in the scan, the end marker cut, trailing junk, an MPO-like
APP2 marker, zero bytes, a PNG named .jpg) and re-encoded copies (other
chroma subsampling, progressive, restart markers, gray, CMYK, EXIF, 1x1) are read by each tree in a fresh
process (``PYTHONPATH`` = the tree) through ``opened_rgb`` + ``planar`` and
``load_rgb``: the SHA-256 of the pixels (3xHxW and HxWx3) or the failure
reason of each file must be equal.

    git archive <commit> iqa_lib | tar -x -C /tmp/base
    python benchmarks/check_pixels.py --base-tree /tmp/base
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_decode_bound import render  # noqa: E402

CHILD = """
import hashlib, json, sys
import numpy as np
import iqa_lib
from iqa_lib.data.images import ImageDecodeError, load_rgb, opened_rgb, planar
print(iqa_lib.__file__, file=sys.stderr)
out = {}
for path in open(sys.argv[1]).read().split("\\n"):
    try:
        with opened_rgb(path) as img:
            chw = planar(img)
        hwc = np.asarray(load_rgb(path))
        out[path] = hashlib.sha256(chw.tobytes()).hexdigest() + hashlib.sha256(hwc.tobytes()).hexdigest()
    except ImageDecodeError as exc:
        out[path] = "failure: " + exc.reason
print(json.dumps(out))
"""


def damaged(sources: list[Path], folder: Path) -> list[Path]:
    """Damaged copies of each source JPEG (the decoder's and the header parser's failure paths)."""
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for src in sources:
        data = src.read_bytes()
        sos = data.find(b"\xff\xda")
        variants = {
            "trunc10": data[: len(data) // 10], "trunc50": data[: len(data) // 2],
            "trunc99": data[: len(data) - 50], "noeoi": data[:-2], "junk": data + b"junk" * 10,
            "hdrflip": data[:6] + bytes([data[6] ^ 0xFF]) + data[7:],
            "sofcut": data[: max(sos, 12)], "zero": b"", "magic": data[:3],
            "scanflip": data[: sos + 40] + bytes(b ^ 0x5A for b in data[sos + 40 : sos + 400]) + data[sos + 400 :],
            "mpo": data[:2] + b"\xff\xe2\x00\x0cMPF\x00II*\x00" + data[2:],
            "png": b"\x89PNG\r\n\x1a\n" + data[8:],
        }
        for name, blob in variants.items():
            path = folder / f"{src.stem}-{name}.jpg"
            path.write_bytes(blob)
            made.append(path)
    return made


def encodings(sources: list[Path], folder: Path) -> list[Path]:
    """Each source saved in other JPEG encodings: 4:4:4 and 4:2:2 chroma, progressive, optimised
    Huffman tables, restart markers, grayscale, CMYK, an EXIF block, a tiny 1x1."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    made = []
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotated (the kit does not apply it)
    for src in sources:
        with Image.open(src) as im:
            rgb = im.convert("RGB")
        kinds = {
            "444": (rgb, {"subsampling": 0, "quality": 95}), "422": (rgb, {"subsampling": 1}),
            "prog": (rgb, {"progressive": True}), "opt": (rgb, {"optimize": True, "quality": 75}),
            "gray": (rgb.convert("L"), {}), "cmyk": (rgb.convert("CMYK"), {}),
            "exif": (rgb, {"exif": exif}), "tiny": (rgb.resize((1, 1)), {}),
            "restart": (rgb, {"restart_marker_blocks": 4}),
        }
        for name, (img, options) in kinds.items():
            path = folder / f"{src.stem}-{name}.jpg"
            img.save(path, **options)
            made.append(path)
    return made


def read_all(tree: Path, listing: Path) -> dict[str, str]:
    """Each listed file's pixel hashes or failure reason, read with the ``iqa_lib`` of ``tree`` (the child
    runs outside any checkout: ``python -c`` puts its working folder first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(listing)], env=env, capture_output=True,
                          text=True, check=True, cwd=listing.parent)
    assert proc.stderr.startswith(str(tree.resolve())), (tree, proc.stderr[:300])
    return json.loads(proc.stdout)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base-tree", type=Path, required=True, help="a folder holding another iqa_lib")
    p.add_argument("--sample", type=Path, default=HERE.parent.parent / "shared/data/imagenet-sample")
    p.add_argument("--work", type=Path, default=Path("/tmp/check_pixels"))
    p.add_argument("--files", type=int, default=1000)
    p.add_argument("--damaged", type=int, default=40)
    args = p.parse_args(argv)
    sample = sorted(q for q in args.sample.rglob("*") if q.is_file())
    renders = [path for path, *_ in render(args.sample, args.work / "images", args.files)]
    jpegs = [q for q in sample if q.read_bytes()[:3] == b"\xff\xd8\xff"]
    broken = damaged(jpegs[: args.damaged // 2] + renders[: args.damaged // 2], args.work / "damaged")
    broken += encodings(jpegs[: args.damaged], args.work / "encodings")
    listing = args.work.resolve() / "paths.txt"
    listing.write_text("\n".join(str(q) for q in [*sample, *renders, *broken]))
    here, base = read_all(HERE.parent, listing), read_all(args.base_tree, listing)
    differ = [k for k in here if here[k] != base.get(k)]
    failures = sum(v.startswith("failure") for v in here.values())
    print(f"{len(here)} files ({len(sample)} sample, {len(renders)} renders, {len(broken)} damaged or re-encoded; "
          f"{failures} failures): {len(differ)} differ")
    for k in differ[:20]:
        print(f"  {k}\n    here: {here[k][:160]}\n    base: {base.get(k, '')[:160]}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
