"""Scoring under faults: full or failing disks, kills, two writers, damaged parts, bad options.

Every case ends the same way: the run says what happened in one line and the
rerun ends with exactly the rows (same order, same values) of an uninterrupted
run, having scored only what no part held.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from iqa_lib import fileio
from iqa_lib.cli import main
from iqa_lib.scoring import parts
from iqa_lib.scoring.engine import run_scoring, score_manifest
from iqa_lib.scoring.progress import LINE_RE

REPO = Path(__file__).resolve().parents[1]
N = 10  # rows: chunks of 4, 4, 2 with --part-size 4
RUN = ["--batch-size", "2", "--num-workers", "0", "--device", "cpu", "--part-size", "4", "--no-progress"]
EVERY_BATCH = ["--part-seconds", "1e-9"]  # a sub-part after every batch that does not end a chunk


def _manifest(root: Path, n: int, broken: int | None = None) -> Path:
    """n small images of a few sizes (clean and corrupted), one of them a zero-byte file."""
    rows = []
    for i in range(n):
        rng = np.random.default_rng(i)
        path = root / "img" / f"im{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if i == broken:
            path.write_bytes(b"")  # a failure: the failures files are not empty
        else:
            Image.fromarray(rng.integers(0, 255, (24 + 4 * (i % 3), 32, 3), dtype=np.uint8)).save(path)
        rows.append({"image_id": f"im{i:03d}", "label": i % 7, "corruption": "gaussian_noise",
                     "severity": 1 + i % 5, "path": str(path)})
    out = root / "manifest.parquet"
    pd.DataFrame(rows).to_parquet(out)
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """A manifest and its uninterrupted scores (the reference every rerun must equal)."""
    root = tmp_path_factory.mktemp("faults")
    manifest = _manifest(root, N, broken=5)
    ref = score_manifest("tv", manifest, root / "ref" / "tv.parquet", batch_size=2, num_workers=0,
                         device="cpu", part_size=4, progress=False)
    return {"manifest": manifest, "ref": ref}


def _args(data: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["score", "--scorer", "tv", "--manifest", str(data["manifest"]), "--out", str(out), *RUN, *extra]


def _same_as_reference(out: Path, ref: Path) -> None:
    """Row by row, bit for bit: the scores and the failures."""
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(ref), check_exact=True)
    pd.testing.assert_frame_equal(pd.read_csv(parts.failures_path(out)), pd.read_csv(parts.failures_path(ref)))
    assert parts.read_score_metadata(out) == parts.read_score_metadata(ref)


def _rows_in_parts(pdir: Path, n: int = N, part_size: int = 4) -> int:
    """Rows a resume may keep: whole parts, else the sub-parts whose scores file was written."""
    if not pdir.is_dir():
        return 0
    count = 0
    for chunk in range(-(-n // part_size)):
        whole = parts.part_path(pdir, chunk)
        units = [whole] if whole.exists() else sorted(pdir.glob(f"part-{chunk:07d}.sub-*[0-9].parquet"))
        for scores in units:
            fails = scores.with_name(scores.name.replace(".parquet", ".failures.parquet"))
            count += pq.read_metadata(scores).num_rows + pq.read_metadata(fails).num_rows
    return count


def _rows_in_parts_now(pdir: Path, n: int, part_size: int) -> int:
    """:func:`_rows_in_parts` while a run writes: a sub-part may go as its chunk's part comes."""
    while True:
        try:
            return _rows_in_parts(pdir, n, part_size)
        except FileNotFoundError:
            continue


def _nothing_half_written(root: Path) -> None:
    """No temporary file left, and every file under a final name reads back whole."""
    for path in root.rglob("*"):
        assert ".tmp-" not in path.name, path
        if path.suffix == ".parquet" and path.is_file():
            pq.read_table(path)
        elif path.name.endswith(".done.json"):
            json.loads(path.read_text())
        elif path.suffix == ".csv":
            pd.read_csv(path)


def _error_line(stderr: str) -> str:
    """What the run said besides its progress lines (one a part under --no-progress)."""
    return "\n".join(ln for ln in stderr.strip().splitlines() if not LINE_RE.match(ln))


def _kept(stderr: str) -> int:
    found = re.search(r"resuming .*: (\d+) of (\d+) rows kept .*; scoring the other (\d+)", stderr)
    if found is None:
        return 0
    kept, total, scored = map(int, found.groups())
    assert kept + scored == total
    return kept


# (site, which matching write fails): the second chunk's (sub-)part, so that the first one is kept
SITES = {
    "meta.json": (lambda p: p.name == "meta.json", 1),
    "sub-part failures": (lambda p: ".sub-" in p.name and p.name.endswith(".failures.parquet"), 2),
    "sub-part scores": (lambda p: ".sub-" in p.name and not p.name.endswith(".failures.parquet"), 2),
    "part failures": (lambda p: re.fullmatch(r"part-\d+\.failures\.parquet", p.name) is not None, 2),
    "part scores": (lambda p: re.fullmatch(r"part-\d+\.parquet", p.name) is not None, 2),
    "failures csv": (lambda p: p.name.endswith(".failures.csv"), 1),
    "output": (lambda p: p.name == "tv.parquet", 1),
    "done record": (lambda p: p.name.endswith(".done.json"), 1),
}
ERRNOS = {errno.ENOSPC: "No space left on device (ENOSPC)", errno.EIO: "Input/output error (EIO)"}


@pytest.mark.parametrize("code", sorted(ERRNOS), ids=lambda c: errno.errorcode[c])
@pytest.mark.parametrize("site", list(SITES))
def test_a_write_fault_stops_the_run_in_one_line_and_the_rerun_finishes(
    data, tmp_path, monkeypatch, capsys, site, code
):
    match, nth = SITES[site]
    out = tmp_path / "scores" / "tv.parquet"
    real = fileio.atomic_write_with
    seen = []

    def faulty(path, write, hint=fileio.RESUME_HINT):
        if match(Path(path)):
            seen.append(path)
            if len(seen) == nth:
                def half(tmp):  # half a file under the temporary name, then the disk refuses
                    Path(tmp).write_bytes(b"PAR1 half a file")
                    raise OSError(code, os.strerror(code), str(tmp))
                return real(path, half, hint)
        return real(path, write, hint)

    monkeypatch.setattr(fileio, "atomic_write_with", faulty)
    assert main(_args(data, out, *EVERY_BATCH)) == 2
    line = _error_line(capsys.readouterr().err)
    assert len(seen) == nth, f"no write to {site} happened"
    assert "\n" not in line, line
    assert line.startswith(f"iqa-kit score: error: cannot write {str(seen[-1])!r}: {ERRNOS[code]}"), line
    assert "rerun the same command" in line
    _nothing_half_written(tmp_path)

    monkeypatch.setattr(fileio, "atomic_write_with", real)
    in_parts = _rows_in_parts(parts.parts_dir(out))
    if site in ("sub-part failures", "sub-part scores", "part failures", "part scores"):
        assert in_parts >= 4  # the first chunk was done before the fault
    assert main(_args(data, out, *EVERY_BATCH)) == 0
    assert _kept(capsys.readouterr().err) == in_parts  # kept every row in parts, scored the rest
    _same_as_reference(out, data["ref"])
    assert not parts.parts_dir(out).exists()


@pytest.mark.parametrize("target", ["output", "parts folder removal"])
def test_a_fault_when_moving_into_place_names_the_final_path(data, tmp_path, monkeypatch, capsys, target):
    out = tmp_path / "tv.parquet"
    real = os.replace
    pdir = parts.parts_dir(out)

    def refuse(src, dst, **kw):
        hit = Path(dst) == out if target == "output" else Path(src) == pdir
        if hit:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(src), None, str(dst))
        return real(src, dst, **kw)

    monkeypatch.setattr(os, "replace", refuse)
    assert main(_args(data, out)) == 2
    line = _error_line(capsys.readouterr().err)
    named = out if target == "output" else pdir
    assert "\n" not in line and f"cannot write {str(named)!r}: Read-only file system (EROFS)" in line
    _nothing_half_written(tmp_path)
    monkeypatch.setattr(os, "replace", real)
    result = run_scoring("tv", data["manifest"], out, batch_size=2, num_workers=0, device="cpu",
                         part_size=4, progress=False)
    # the output failed: merged again from the parts; the parts folder could not be removed:
    # the output was complete, so it is reused (and the folder removed)
    assert result.reused == (target != "output") and result.kept_rows == N and result.scored_rows == 0
    _same_as_reference(out, data["ref"])
    assert not pdir.exists()


def _cli(args: list[str], **env: str) -> subprocess.Popen:
    environ = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **env}
    return subprocess.Popen([sys.executable, "-m", "iqa_lib.cli", *args], env=environ, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_sigkill_at_random_moments_then_resume_gives_the_same_rows(tmp_path, capsys):
    rng = random.Random(12)
    root = tmp_path / "kill"
    n = 32
    manifest = _manifest(root, n, broken=9)
    ref = score_manifest("tv", manifest, root / "ref.parquet", batch_size=2, num_workers=0,
                         device="cpu", part_size=8, progress=False)
    out = root / "tv.parquet"
    args = ["score", "--scorer", "tv", "--manifest", str(manifest), "--out", str(out), "--batch-size", "2",
            "--num-workers", "1", "--device", "cpu", "--part-size", "8", "--part-seconds", "0.3",
            "--no-progress"]
    before = 0
    # 16 batches of 0.15 s: both kills land in the scoring, the second after it wrote something
    for round_ in range(2):
        proc = _cli(args, IQA_KIT_BATCH_DELAY="0.15")
        _wait_for(parts.parts_dir(out) / "meta.json", proc)
        while round_ and _rows_in_parts_now(parts.parts_dir(out), n, 8) == before:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.5))
        proc.kill()
        proc.communicate()
        assert proc.returncode == -9
        in_parts = _rows_in_parts(parts.parts_dir(out), n, 8)
        assert in_parts >= before  # a kill never loses what an earlier run kept
        before = in_parts
    assert 0 < before < n
    capsys.readouterr()
    assert main(args) == 0  # the resume, in this process
    resumed = capsys.readouterr()
    assert _kept(resumed.err) == before  # it kept every row in parts and scored only the rest
    assert f"{n - 1} rows scored; 1 failed" in resumed.out
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(ref), check_exact=True)
    pd.testing.assert_frame_equal(pd.read_csv(parts.failures_path(out)), pd.read_csv(parts.failures_path(ref)))


def test_two_writers_on_one_output(data, tmp_path, capsys):
    out = tmp_path / "tv.parquet"
    first = _cli(_args(data, out), IQA_KIT_BATCH_DELAY="0.3")  # 5 batches: about 1.5 s of scoring
    try:
        _wait_for(parts.parts_dir(out) / "meta.json", first)
        assert main(_args(data, out)) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and f"is being written by process {first.pid} (" in err and "--wait" in err
        assert main(_args(data, out, "--no-resume")) == 2  # cannot delete the parts being written
        capsys.readouterr()
        assert main(_args(data, out, "--wait")) == 0  # waits, then finds the output complete
        err = capsys.readouterr().err
        assert f"waiting for process {first.pid}" in err and "reusing" in err
    finally:
        _, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, first_err
    _same_as_reference(out, data["ref"])


def test_a_damaged_part_is_set_aside_and_its_rows_scored_again(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "tv.parquet"
    pdir = parts.parts_dir(out)

    def stop(*a, **k):  # keep the parts: every chunk is written, the merge is not
        raise RuntimeError("stopped before the merge")

    monkeypatch.setattr(parts, "merge_parts", stop)
    assert main(_args(data, out)) == 2
    monkeypatch.undo()
    capsys.readouterr()
    damaged = parts.part_path(pdir, 1)
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])  # truncated
    (pdir / "part-0000002.failures.parquet").write_bytes(b"garbage")
    result = run_scoring("tv", data["manifest"], out, batch_size=2, num_workers=0, device="cpu",
                         part_size=4, progress=False)
    err = capsys.readouterr().err
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 3, err  # two set aside, one saying where they are kept
    assert f"{str(damaged)!r} is unreadable (" in warnings[0] and f"{str(damaged)}.damaged" in warnings[0]
    assert "part-0000002.failures.parquet' is unreadable" in warnings[1] and "scored again" in warnings[1]
    assert result.kept_rows == 4 and result.scored_rows == N - 4
    _same_as_reference(out, data["ref"])
    kept = sorted(p.name for p in parts.damaged_dir(out).iterdir())
    assert kept == ["part-0000001.failures.parquet.damaged", "part-0000001.parquet.damaged",
                    "part-0000002.failures.parquet.damaged", "part-0000002.parquet.damaged"]


def _stopped_in_second_chunk(data: dict[str, Path], out: Path, monkeypatch) -> Path:
    """Parts as a kill leaves them: chunk 0 whole, chunk 1 in a sub-part; the parts folder."""
    real = parts.write_chunk

    def fail_second_chunk(directory, chunk, *frames):
        if chunk == 1:
            raise fileio.WriteError(parts.part_path(directory, chunk), OSError(errno.ENOSPC, "full"))
        return real(directory, chunk, *frames)

    monkeypatch.setattr(parts, "write_chunk", fail_second_chunk)
    assert main(_args(data, out, *EVERY_BATCH)) == 2
    monkeypatch.undo()
    return parts.parts_dir(out)


def test_a_damaged_sub_part_is_set_aside(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "tv.parquet"
    pdir = _stopped_in_second_chunk(data, out, monkeypatch)
    (sub,) = sorted(pdir.glob("part-0000001.sub-*[0-9].parquet"))
    sub.write_bytes(b"PAR1")
    capsys.readouterr()
    result = run_scoring("tv", data["manifest"], out, batch_size=2, num_workers=0, device="cpu",
                         part_size=4, progress=False)
    assert result.kept_rows == 4 and result.scored_rows == N - 4
    assert f"{str(sub)!r} is unreadable" in capsys.readouterr().err
    _same_as_reference(out, data["ref"])


def test_a_garbled_meta_json_is_an_error_naming_it(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "tv.parquet"
    pdir = _stopped_in_second_chunk(data, out, monkeypatch)
    (pdir / "meta.json").write_text('{"spec": "tv", "opt')
    capsys.readouterr()
    assert main(_args(data, out)) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and f"{str(pdir / 'meta.json')!r} is unreadable (JSONDecodeError" in line
    assert "--no-resume" in line
    assert main(_args(data, out, "--no-resume")) == 0
    _same_as_reference(out, data["ref"])


def test_a_complete_output_is_reused_unless_asked_or_damaged(data, tmp_path, capsys):
    out = tmp_path / "tv.parquet"
    kw = {"batch_size": 2, "num_workers": 0, "device": "cpu", "part_size": 4, "progress": False}
    assert not run_scoring("tv", data["manifest"], out, **kw).reused
    record = json.loads((tmp_path / "tv.done.json").read_text())
    assert record["manifest"] and record["rows"] == N and record["scores_version"]
    assert run_scoring("tv", data["manifest"], out, **{**kw, "batch_size": 3}).reused  # runtime option
    assert "reusing" in capsys.readouterr().err
    assert not run_scoring("tv", data["manifest"], out, resume=False, **kw).reused
    assert not run_scoring("tv", data["manifest"], out, geometry="none", **kw).reused  # changes scores
    run_scoring("tv", data["manifest"], out, **kw)
    out.write_bytes(out.read_bytes()[:100])  # truncated output
    capsys.readouterr()
    result = run_scoring("tv", data["manifest"], out, **kw)
    assert not result.reused and f"{str(out)!r} is unreadable" in capsys.readouterr().err
    assert (tmp_path / "tv.parquet.damaged").is_file()
    _same_as_reference(out, data["ref"])


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--batch-size", "-3", "argument --batch-size: must be a positive integer, got '-3'"),
        ("--batch-size", "0", "argument --batch-size: must be a positive integer, got '0'"),
        ("--part-size", "0", "argument --part-size: must be a positive integer, got '0'"),
        ("--part-size", "2.5", "argument --part-size: must be a positive integer, got '2.5'"),
        ("--part-seconds", "0", "argument --part-seconds: must be a positive number of seconds, got '0'"),
        ("--part-seconds", "nan", "argument --part-seconds: must be a positive number of seconds, got 'nan'"),
        ("--num-workers", "-1", "argument --num-workers: must be an integer >= 0, got '-1'"),
        ("--device", "gpu", "argument --device: 'gpu' is not a device; valid: auto, cpu, cuda, cuda:N"),
    ],
)
def test_bad_numbers_and_devices_are_refused_in_one_line(data, tmp_path, capsys, option, value, message):
    with pytest.raises(SystemExit) as stop:
        main(["score", "--scorer", "tv", "--manifest", str(data["manifest"]), "--out",
              str(tmp_path / "x.parquet"), option, value])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "ipu" not in err  # not torch's list of every backend
    assert not (tmp_path / "x.parquet").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        ({"batch_size": -3}, "batch_size must be a positive integer, got -3"),
        ({"part_size": 0}, "part_size must be a positive integer, got 0"),
        ({"part_seconds": -1}, "part_seconds must be a positive number of seconds, got -1"),
        ({"num_workers": -1}, "num_workers must be an integer >= 0, got -1"),
        ({"device": "gpu"}, "'gpu' is not a device; valid: auto, cpu, cuda, cuda:N"),
    ],
)
def test_score_manifest_checks_the_same(data, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        score_manifest("tv", data["manifest"], tmp_path / "x.parquet", **{"device": "cpu", **kwargs})
    assert not any(tmp_path.iterdir())
