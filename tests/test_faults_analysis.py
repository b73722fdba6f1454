"""Faults in the analysis half: disk full and I/O errors at each write site, damaged inputs, two writers.

Each write of ``analyze``, ``describe`` and the notebooks goes through
:mod:`iqa_lib.fileio`; the fault is injected at its last step (moving the
finished temporary file into place), so every site is hit in turn. Asserted:
exit code 2, one line naming the path and the errno, nothing half-written, and
a rerun after the fault gives exactly an undisturbed run's files.
"""

from __future__ import annotations

import errno
import filecmp
from pathlib import Path

import pytest

from iqa_lib import fileio
from iqa_lib.analysis.synthetic import write_synthetic_scores
from iqa_lib.cli import main
from iqa_lib.locks import output_lock


@pytest.fixture(scope="module")
def scores_dir(tmp_path_factory) -> Path:
    return write_synthetic_scores(
        tmp_path_factory.mktemp("faults") / "scores", 30, corruptions=("fog", "contrast"),
        severities=(1, 2), n_labels=4, nr_scorers=("tv",), classifiers=("resnet34",), zero_shot=(),
    )


def _analyze(scores: Path, out: Path, *extra: str) -> int:
    return main(["analyze", "--scores", str(scores), "--out", str(out), "--n-bootstrap", "20",
                 "--analyses", "groupwise,pointwise", "--no-progress", *extra])


def _fail_at(monkeypatch, site: int, code: int) -> list[Path]:
    """Make the ``site``-th atomic replace fail with ``code``; return the paths attempted."""
    seen: list[Path] = []
    real = fileio._replace_from

    def replace(tmp: Path, path: Path) -> None:
        seen.append(path)
        if len(seen) == site:
            tmp.unlink(missing_ok=True)  # as a full disk leaves it: the data never landed
            raise OSError(code, __import__("os").strerror(code), str(path))
        real(tmp, path)

    monkeypatch.setattr(fileio, "_replace_from", replace)
    return seen


def _error_line(stderr: str) -> str:
    """The one error line (progress logs may come before it)."""
    (line,) = [ln for ln in stderr.splitlines() if ln.startswith("iqa-kit ")]
    return line


def _no_temporaries(folder: Path) -> None:
    assert not [p for p in folder.rglob(".*tmp*")], "a temporary file was left behind"


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_analyze_write_faults_at_every_site(scores_dir, tmp_path, monkeypatch, capsys, code):
    reference = tmp_path / "reference"
    assert _analyze(scores_dir, reference) == 0
    written = sorted(p.name for p in reference.iterdir())
    capsys.readouterr()
    for site in range(1, len(written) + 1):
        out = tmp_path / f"out{site}"
        seen = _fail_at(monkeypatch, site, code)
        assert _analyze(scores_dir, out) == 2
        err = _error_line(capsys.readouterr().err)
        assert str(seen[-1]) in err and errno.errorcode[code] in err
        assert not seen[-1].exists()  # nothing under the final name
        _no_temporaries(out)
        monkeypatch.undo()
        assert _analyze(scores_dir, out) == 0
        assert sorted(p.name for p in out.iterdir()) == written
        for name in written:
            if name.endswith(".csv"):
                assert filecmp.cmp(out / name, reference / name, shallow=False), name


def test_describe_write_faults_and_a_truncated_score_file(scores_dir, tmp_path, monkeypatch, capsys):
    for site in (1, 2, 3):  # the CSV, the PNG, the PDF
        out = tmp_path / f"d{site}"
        seen = _fail_at(monkeypatch, site, errno.ENOSPC)
        assert main(["describe", "--scores", str(scores_dir), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert str(seen[-1]) in err and "No space left on device" in err and "\n" not in err
        _no_temporaries(out)
        monkeypatch.undo()
        assert main(["describe", "--scores", str(scores_dir), "--out", str(out)]) == 0
        assert {p.name for p in out.iterdir()} == {"q_distribution.csv", "q_distribution.png", "q_distribution.pdf"}
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    data = (scores_dir / "tv.parquet").read_bytes()
    (damaged / "tv.parquet").write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    assert main(["describe", "--scores", str(damaged), "--out", str(tmp_path / "x")]) == 2
    assert main(["analyze", "--scores", str(damaged), "--out", str(tmp_path / "y")]) == 2
    for line in capsys.readouterr().err.strip().splitlines():
        assert str(damaged / "tv.parquet") in line and "truncated" in line


def test_a_second_analysis_of_one_output_is_refused(scores_dir, tmp_path, capsys):
    out = tmp_path / "analysis"
    with output_lock(out):
        assert _analyze(scores_dir, out) == 2
    err = capsys.readouterr().err
    assert "is being written by process" in err and "--wait" in err
    assert not out.exists()


def test_a_failing_notebook_is_one_line_and_a_full_disk_names_the_notebook(tmp_path, monkeypatch, capsys):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = tmp_path / "nb.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1"), new_code_cell("1 / 0")],
                                metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                         "language": "python"}}), nb)
    assert main(["notebook", str(nb), "--out", str(tmp_path / "out"), "--no-html"]) == 2
    err = capsys.readouterr().err.strip()
    assert "ZeroDivisionError" in err and "cell 2" in err and "\n" not in err
    assert (tmp_path / "out" / "nb.failed.ipynb").is_file() and not (tmp_path / "out" / "nb.ipynb").exists()

    import papermill.engines
    import papermill.execute

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out2" / "nb.ipynb"))

    for module in (papermill.engines, papermill.execute):  # where papermill saves the notebook
        monkeypatch.setattr(module, "write_ipynb", full)
    good = tmp_path / "good" / "nb.ipynb"
    good.parent.mkdir()
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1")], metadata=nbformat.read(nb, 4).metadata), good)
    assert main(["notebook", str(good), "--out", str(tmp_path / "out2"), "--no-html"]) == 2
    err = capsys.readouterr().err.strip()
    assert str(tmp_path / "out2" / "nb.ipynb") in err and "ENOSPC" in err and "\n" not in err
