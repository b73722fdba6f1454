"""What the kit refuses or re-does rather than trust (issue 22, item 5).

Rendered outputs that no longer decode, labels that read as missing values,
image ids that are no safe relative name, devices that do not exist, and file
names that are not UTF-8 through ``score --images`` and ``audit``.
"""

from __future__ import annotations

import pandas as pd
from PIL import Image

from iqa_lib.data import corrupt as C
from tests.conftest import TENCH, write_image


# --------------------------------------------------------------------- corrupt: outputs must decode
def _clean(folder) -> pd.DataFrame:
    paths = [write_image(folder / f"{TENCH}_{i}.png", size=(60, 50), seed=i) for i in range(2)]
    return pd.DataFrame({"image_id": [p.stem for p in paths], "label": 0, "path": [str(p) for p in paths]})


def _render(clean: pd.DataFrame, out) -> C.GenerationReport:
    return C.generate_imagenet_c(clean, out, ["contrast"], [1, 2], workers=1, progress=False)


def test_corrupt_renders_again_an_output_that_does_not_decode(tmp_path):
    clean, out = _clean(tmp_path / "src"), tmp_path / "out"
    _render(clean, out)
    outputs = sorted(out.rglob("*.JPEG"))
    whole = {p: p.read_bytes() for p in outputs}
    outputs[0].write_bytes(whole[outputs[0]][: len(whole[outputs[0]]) // 2])  # a cut copy
    outputs[1].write_bytes(b"")  # an empty file
    damaged = bytearray(whole[outputs[2]])
    damaged[2:40] = b"\0" * 38  # a damaged header, whole length
    outputs[2].write_bytes(bytes(damaged))
    report = _render(clean, out)
    assert (report.written, report.skipped, report.rerendered) == (3, 1, 3)
    assert {p: p.read_bytes() for p in outputs} == whole
    for path in outputs:
        with Image.open(path) as image:
            image.load()


def test_corrupt_command_says_how_many_outputs_it_renders_again(tmp_path, capsys):
    from iqa_lib.cli import main

    _clean(tmp_path / "src")
    argv = ["corrupt", "--src", str(tmp_path / "src"), "--out", str(tmp_path / "out"),
            "--corruptions", "contrast", "--severities", "1", "--workers", "1", "--no-progress"]
    assert main(argv) == 0
    first = sorted((tmp_path / "out").rglob("*.JPEG"))[0]
    first.write_bytes(first.read_bytes()[:100])
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "written 1, skipped 1" in out
    assert "1 existing output(s) did not decode" in out
