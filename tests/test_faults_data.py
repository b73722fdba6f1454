"""Faults in the data commands (corrupt, prepare, manifest): loud, nothing lost, nothing half-written.

Each write site gets ENOSPC and EIO: in this process by replacing what the kit
writes with (``fileio.open``, ``shutil.copyfile``, ``pyarrow.parquet.write_table``,
``DataFrame.to_csv``) with one that writes half the bytes and fails, and inside
worker processes by a worker initializer that does the same there (no hook in
the kit's own code). Every test asserts the exit status, the one
line naming the path, that no file is half-written under any name, and that a
rerun finishes with exactly the files of an uninterrupted run, rendering only
what was missing. Then two writers of one output, and SIGKILLs of ``corrupt``
and ``manifest`` mid-run: no worker may survive its parent, and a caller
capturing their output must not hang.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from iqa_lib import cli, fileio
from iqa_lib.data import imagenet_c_render as C
from iqa_lib.locks import output_lock
from tests.conftest import fail_one_render

TENCH = "n01440764"
CORRUPTIONS = ("contrast", "gaussian_noise")
SEVERITIES = ("1", "2")
FAULTS = (errno.ENOSPC, errno.EIO)
N_IMAGES = 6  # and one undecodable source, so that every run has a failures file


def _source(folder: Path, n: int = N_IMAGES, size: tuple[int, int] = (40, 32)) -> Path:
    """A wnid class folder of ``n`` small images and one undecodable file."""
    import numpy as np

    rng = np.random.default_rng(0)
    cls = folder / TENCH
    cls.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(cls / f"img{i:03d}.png")
    (cls / "undecodable.png").write_bytes(b"not an image" * 10)
    return folder


def _corrupt_argv(src: Path, out: Path, workers: int = 1) -> list[str]:
    return ["corrupt", "--src", str(src), "--out", str(out), "--corruptions", *CORRUPTIONS,
            "--severities", *SEVERITIES, "--workers", str(workers), "--no-progress"]


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _tree(root: Path) -> dict[str, bytes]:
    """Every finished file under ``root`` (not the lock or stamp files), by relative path."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def _leftovers(root: Path) -> list[Path]:
    """Temporary files anywhere below ``root``: none may survive a failed write."""
    return [p for p in root.rglob("*") if ".tmp" in p.name]


def _assert_one_line(err: str, command: str, path: Path, code: int) -> None:
    """The error is the last line, one line, naming the path, the errno's meaning and name."""
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]  # progress bars (\r) come before it
    assert [ln for ln in err.splitlines() if ln.startswith("iqa-kit")] == [last]
    expected = (
        f"iqa-kit {command}: error: cannot write {str(path)!r}: {os.strerror(code)} "
        f"({errno.errorcode[code]}); fix that and rerun"
    )
    assert last.startswith(expected), (last, expected)


def _counts(out: str) -> tuple[int, int]:
    written, skipped = re.search(r"written (\d+), skipped (\d+)", out).groups()
    return int(written), int(skipped)


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    return _source(tmp_path_factory.mktemp("faults") / "src")


@pytest.fixture(scope="module")
def reference(src, tmp_path_factory) -> dict[str, bytes]:
    """The tree of an uninterrupted run (renders depend only on pixels, id, corruption, severity)."""
    out = tmp_path_factory.mktemp("reference") / "out"
    assert cli.main(_corrupt_argv(src, out)) == 0
    tree = _tree(out)
    assert len(tree) == N_IMAGES * len(CORRUPTIONS) * len(SEVERITIES) + 1  # + the failures file
    return tree


class _HalfWrite:
    """A file opened for writing whose write puts half the bytes on disk, then fails with
    ``code``, as a full disk does."""

    def __init__(self, fh, code: int):
        self._fh, self._code = fh, code

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._fh.close()

    def write(self, data: bytes) -> int:
        self._fh.write(data[: len(data) // 2])
        self._fh.flush()
        raise OSError(self._code, os.strerror(self._code))


def _fail_writes(monkeypatch, code: int, matches) -> dict:
    """Replace the ``open`` of the kit's atomic writes: the first write whose temp name ``matches``
    gets half its bytes and ``code``; ``state['after']`` counts the writes tried after that (none
    may be)."""
    real_open = open
    state = {"failed": None, "after": 0}

    def faulty_open(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        if state["failed"] is not None:
            state["after"] += 1
        elif matches(Path(file)):
            state["failed"] = Path(file)
            return _HalfWrite(fh, code)
        return fh

    monkeypatch.setattr(fileio, "open", faulty_open, raising=False)
    return state


def _failing_after(code: int, after: int):
    """An ``open`` for :mod:`iqa_lib.fileio` under which this process's writes after its first
    ``after`` get half their bytes and ``code``."""
    real_open, writes = open, [0]

    def faulty_open(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        writes[0] += 1
        return fh if writes[0] <= after else _HalfWrite(fh, code)

    return faulty_open


def _worker_failing_after(code: int, after: int, stop=None) -> None:
    """The renderer's worker initializer, then :func:`_failing_after` in that worker process."""
    _render_worker_init(stop)
    fileio.open = _failing_after(code, after)


_render_worker_init = C._init_worker  # the real one: tests replace it in this process


def _final_name(tmp: Path) -> Path:
    """``.<name>.tmp-<pid>`` -> ``<name>``."""
    return tmp.with_name(tmp.name[1:].rsplit(".tmp-", 1)[0])


# --------------------------------------------------------------------- corrupt, in this process
@pytest.mark.parametrize("code", FAULTS, ids=lambda c: errno.errorcode[c])
@pytest.mark.parametrize("site", ["render", "folder", "stamp", "failures"])
def test_corrupt_write_fault_stops_the_run_and_the_rerun_finishes_it(
    src, reference, tmp_path, monkeypatch, capsys, site, code
):
    out = tmp_path / "out"
    if site == "folder":  # creating a render's folder fails
        real_mkdir = Path.mkdir

        def mkdir(self, *args, **kwargs):
            if "gaussian_noise" in self.parts:
                raise OSError(code, os.strerror(code), str(self))
            return real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", mkdir)
    else:
        names = {"stamp": C.RENDER_VERSIONS_FILE, "failures": C.FAILURES_FILE}
        renders = iter(range(10**6))
        matches = {
            "render": lambda tmp: ".JPEG.tmp-" in tmp.name and next(renders) == 5,
            "stamp": lambda tmp: tmp.name.startswith(f".{names['stamp']}."),
            "failures": lambda tmp: tmp.name.startswith(f".{names['failures']}."),
        }[site]
        state = _fail_writes(monkeypatch, code, matches)

    rc, stdout, err = _run(capsys, _corrupt_argv(src, out))
    assert rc == 2
    if site == "folder":
        failed = out / "gaussian_noise" / "1" / TENCH / "img000.JPEG"  # its first render
    else:
        failed = _final_name(state["failed"])
        assert state["after"] == 0  # stopped at once: no write tried after the fault
    _assert_one_line(err, "corrupt", failed, code)
    assert "written" not in stdout  # no summary of a run that did not finish
    assert _leftovers(tmp_path) == []
    before = _tree(out)
    assert all(reference[k] == v for k, v in before.items())  # whole files only, nothing half-written
    assert C.FAILURES_FILE not in before  # the fault is not listed as an image's failure

    monkeypatch.undo()
    rc, stdout, err = _run(capsys, _corrupt_argv(src, out))
    assert rc == 0, err
    renders = [k for k in before if k.endswith(".JPEG")]
    assert _counts(stdout) == (len(reference) - 1 - len(renders), len(renders))  # nothing redone
    assert _tree(out) == reference and _leftovers(tmp_path) == []


def test_stale_temporary_files_of_a_killed_run_are_removed(src, reference, tmp_path, capsys):
    out = tmp_path / "out"
    folder = out / "contrast" / "1" / TENCH
    folder.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = folder / f".img000.JPEG.tmp-{int(dead.stdout)}"  # a temporary name of fileio's
    stale.write_bytes(b"half a JPEG")
    assert _run(capsys, _corrupt_argv(src, out))[0] == 0
    assert not stale.exists() and _tree(out) == reference


def test_a_failed_render_is_listed_and_fails_the_command_but_an_undecodable_source_does_not(
    src, tmp_path, monkeypatch, capsys
):
    fail_one_render(monkeypatch, ("img001", "contrast", 2), "boom")
    rc, _, err = _run(capsys, _corrupt_argv(src, tmp_path / "out"))
    assert rc == 1 and "1 render(s) failed (not an undecodable source" in err
    failures = pd.read_csv(tmp_path / "out" / C.FAILURES_FILE)
    assert sorted(failures["image_id"]) == ["img001", "undecodable"]


# --------------------------------------------------------------------- corrupt, inside workers
@pytest.mark.parametrize("code", FAULTS, ids=lambda c: errno.errorcode[c])
def test_corrupt_write_fault_inside_a_worker_process(src, reference, tmp_path, monkeypatch, capsys, code):
    out = tmp_path / "out"
    # each process: the first write (the parent's stamp, a worker's first render) works
    monkeypatch.setattr(fileio, "open", _failing_after(code, 1), raising=False)
    monkeypatch.setattr(C, "_init_worker", functools.partial(_worker_failing_after, code, 1))
    rc, _, err = _run(capsys, _corrupt_argv(src, out, workers=2))
    assert rc == 2
    path = re.search(r"cannot write '([^']+)'", err).group(1)
    assert path.startswith(str(out)) and path.endswith(".JPEG")
    _assert_one_line(err, "corrupt", Path(path), code)
    before = _tree(out)
    assert _leftovers(tmp_path) == [] and C.FAILURES_FILE not in before
    assert all(reference[k] == v for k, v in before.items())

    monkeypatch.undo()
    rc, stdout, err = _run(capsys, _corrupt_argv(src, out, workers=1))
    assert rc == 0, err
    assert _counts(stdout) == (len(reference) - 1 - len(before), len(before))
    assert _tree(out) == reference and _leftovers(tmp_path) == []


# --------------------------------------------------------------------- prepare
def _params(tmp_path: Path, clean_root: Path | None, render: bool = True) -> Path:
    params = tmp_path / "params.yaml"
    params.write_text(
        "data:\n"
        f"  clean_root: {'null' if clean_root is None else str(clean_root)}\n"
        f"  generated_root: {tmp_path / 'gen'}\n"
        f"  generate_corruptions: {'true' if render else 'false'}\n"
        f"  corruptions: [{', '.join(CORRUPTIONS)}]\n"
        f"  severities: [{', '.join(SEVERITIES)}]\n"
    )
    return params


@pytest.mark.parametrize("code", FAULTS, ids=lambda c: errno.errorcode[c])
@pytest.mark.parametrize("site", ["quickstart", "render", "stamp"])
def test_prepare_write_fault_fails_the_stage_and_the_rerun_finishes_it(
    src, reference, tmp_path, monkeypatch, capsys, site, code
):
    monkeypatch.chdir(tmp_path)
    stamp = tmp_path / "data" / "prepared.json"
    argv = ["prepare", "--params", str(_params(tmp_path, None if site == "quickstart" else src,
                                              render=site != "quickstart")), "--workers", "1"]
    if site == "quickstart":
        real_copy, copies = shutil.copyfile, []

        def copy(source, dst, **kwargs):
            copies.append(Path(dst))
            if len(copies) == 3:
                Path(dst).write_bytes(Path(source).read_bytes()[:100])
                raise OSError(code, os.strerror(code))
            return real_copy(source, dst, **kwargs)

        monkeypatch.setattr(shutil, "copyfile", copy)
        failed = lambda: _final_name(copies[2])  # noqa: E731
    elif site == "render":
        renders = iter(range(10**6))
        state = _fail_writes(monkeypatch, code, lambda tmp: ".JPEG.tmp-" in tmp.name and next(renders) == 3)
        failed = lambda: _final_name(state["failed"])  # noqa: E731
    else:
        real_open = open

        def faulty_open(file, mode="r", *args, **kwargs):
            fh = real_open(file, mode, *args, **kwargs)
            if Path(file).name.startswith(".prepared.json.tmp"):
                fh.write(b'{"half": ')
                fh.close()
                raise OSError(code, os.strerror(code))
            return fh

        monkeypatch.setattr(fileio, "open", faulty_open, raising=False)
        failed = lambda: Path("data/prepared.json")  # noqa: E731 - as params.yaml's paths, relative

    rc, _, err = _run(capsys, argv)
    assert rc == 2
    _assert_one_line(err, "prepare", failed(), code)
    assert not stamp.exists()  # the DVC stage failed: no stamp, so no manifest of what is there
    assert _leftovers(tmp_path) == []

    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    rc, _, err = _run(capsys, argv)
    assert rc == 0, err
    assert stamp.is_file() and _leftovers(tmp_path) == []
    if site == "quickstart":
        from iqa_lib.data.quickstart import QUICKSTART_IMAGES, locate

        for image in QUICKSTART_IMAGES:
            source = locate(image)
            if source is not None:
                copied = tmp_path / "gen" / "quickstart" / image.wnid / f"{image.image_id}{source.suffix.lower()}"
                assert copied.read_bytes() == source.read_bytes()
    else:
        assert _tree(tmp_path / "gen" / "imagenet-c") == reference


def test_prepare_fails_when_a_render_is_missing_for_another_reason_than_an_undecodable_source(
    src, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    real = fail_one_render(monkeypatch, ("img002", "gaussian_noise", 1), "out of\nluck")
    argv = ["prepare", "--params", str(_params(tmp_path, src)), "--workers", "1"]
    rc, _, err = _run(capsys, argv)
    assert rc == 2 and [ln for ln in err.splitlines() if ln.startswith("iqa-kit")] == [err.strip().splitlines()[-1]]
    assert "1 render(s) into" in err and "img002 gaussian_noise 1: RuntimeError: out of luck" in err
    assert str(tmp_path / "gen" / "imagenet-c" / C.FAILURES_FILE) in err
    assert not (tmp_path / "data" / "prepared.json").exists()
    monkeypatch.setattr(C, "_render_preprocessed", real)
    rc, stdout, _ = _run(capsys, argv)  # the undecodable source alone does not fail the stage
    assert rc == 0 and "1 written" in stdout and (tmp_path / "data" / "prepared.json").is_file()


# --------------------------------------------------------------------- manifest
def _manifest_argv(src: Path, out: Path) -> list[str]:
    return ["manifest", "--clean", str(src), "--out", str(out), "--workers", "1"]


@pytest.mark.parametrize("code", FAULTS, ids=lambda c: errno.errorcode[c])
@pytest.mark.parametrize("site", ["parquet", "failures"])
def test_manifest_write_fault_keeps_the_previous_files_and_the_rerun_finishes(
    tmp_path, monkeypatch, capsys, site, code
):
    src = _source(tmp_path / "src", n=3)
    out = tmp_path / "m" / "manifest.parquet"
    failures = out.with_name("manifest.failures.csv")
    assert _run(capsys, _manifest_argv(src, out))[0] == 0
    previous = _tree(out.parent)
    for i in range(3, 5):  # the dataset grows; the next manifest must have them all
        shutil.copy(src / TENCH / "img000.png", src / TENCH / f"img{i:03d}.png")

    def half(real):
        def write(self_or_table, where, *args, **kwargs):
            real(self_or_table, where, *args, **kwargs)
            size = Path(where).stat().st_size
            with open(where, "r+b") as fh:
                fh.truncate(size // 2)
            raise OSError(code, os.strerror(code))

        return write

    if site == "parquet":
        monkeypatch.setattr(pq, "write_table", half(pq.write_table))
    else:
        monkeypatch.setattr(pd.DataFrame, "to_csv", half(pd.DataFrame.to_csv))
    rc, _, err = _run(capsys, _manifest_argv(src, out))
    assert rc == 2
    _assert_one_line(err, "manifest", out if site == "parquet" else failures, code)
    assert _tree(out.parent) == previous and _leftovers(tmp_path) == []

    monkeypatch.undo()
    assert _run(capsys, _manifest_argv(src, out))[0] == 0
    assert len(pd.read_parquet(out)) == 5 and pd.read_csv(failures)["image_id"].tolist() == ["undecodable"]
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------- two writers, --wait
def test_a_second_writer_of_each_output_is_refused_naming_the_holder(src, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cases = [
        (tmp_path / "out", _corrupt_argv(src, tmp_path / "out")),
        (tmp_path / "m.parquet", _manifest_argv(src, tmp_path / "m.parquet")),
        (Path("data/prepared.json"), ["prepare", "--params", str(_params(tmp_path, src))]),
        # prepare renders into the same tree a corrupt run may be writing
        (tmp_path / "gen" / "imagenet-c", ["prepare", "--params", str(_params(tmp_path, src))]),
    ]
    for target, argv in cases:
        with output_lock(target):
            rc, _, err = _run(capsys, argv)
        assert rc == 2 and len(err.strip().splitlines()) == 1
        assert f"{str(target)!r} is being written by process {os.getpid()}" in err and "--wait" in err
    assert _leftovers(tmp_path) == [] and not (tmp_path / "out").exists()
    assert not (tmp_path / "m.parquet").exists() and not (tmp_path / "data" / "prepared.json").exists()


@pytest.mark.parametrize("command", ["corrupt", "manifest"])
def test_wait_starts_when_the_other_writer_finishes(src, tmp_path, capsys, command):
    target = tmp_path / ("out" if command == "corrupt" else "m.parquet")
    argv = _corrupt_argv(src, target) if command == "corrupt" else _manifest_argv(src, target)
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with output_lock(target):
            locked.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    locked.wait(30)
    threading.Timer(0.5, release.set).start()
    started = time.monotonic()
    rc, _, err = _run(capsys, [*argv, "--wait"])
    holder.join()
    assert rc == 0 and time.monotonic() - started >= 0.4
    assert f"waiting for process {os.getpid()}" in err


# --------------------------------------------------------------------- numeric options
@pytest.mark.parametrize(
    "argv, message",
    [
        (["corrupt", "--src", "x", "--out", "y", "--workers", "0"], "--workers must be at least 1, got 0"),
        (["corrupt", "--src", "x", "--out", "y", "--limit", "-2"], "--limit must be at least 1, got -2"),
        (["prepare", "--workers", "0"], "--workers must be at least 1, got 0"),
        (["manifest", "--clean", "x", "--out", "y", "--workers", "-1"], "--workers must be at least 1, got -1"),
    ],
)
def test_numeric_options_must_be_positive(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    rc, _, err = _run(capsys, argv)
    assert rc == 2 and err.strip() == f"iqa-kit {argv[0]}: error: {message}; leave it out for the default"
    assert list(tmp_path.iterdir()) == []  # refused before any lock or scan


# --------------------------------------------------------------------- SIGKILL: no worker survives
def _group(pgid: int) -> list[tuple[int, str]]:
    """(pid, state) of the live processes of a process group (zombies are dead already)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append((int(entry), fields[0]))
    return found


def _kill_mid_run(argv: list[str], ready, cwd: Path, capsys) -> None:
    """Start ``iqa-kit argv`` in its own process group, wait until ``ready()`` and two workers
    run, try a second writer, SIGKILL it, then: its output pipes close, no process of it lives."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "iqa_lib.cli", *argv], cwd=cwd, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (len(_group(proc.pid)) >= 3 and ready()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never got going"
            time.sleep(0.05)
        rc, _, err = _run(capsys, argv)  # a second writer of the same output
        assert rc == 2 and f"is being written by process {proc.pid}" in err
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=20)  # returns: no worker holds the pipes
        deadline = time.monotonic() + 10
        while _group(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _group(proc.pid) == []
    finally:
        for pid, _ in _group(proc.pid):  # never leave a process behind, whatever failed
            os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers die with their parent on Linux")
def test_sigkill_of_corrupt_leaves_no_worker_and_no_hang(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    src = _source(tmp_path / "src", n=300, size=(24, 16))
    out = tmp_path / "out"
    argv = ["corrupt", "--src", str(src), "--out", str(out), "--corruptions", "gaussian_noise",
            "--severities", "1", "--workers", "2", "--no-progress"]
    _kill_mid_run(argv, lambda: any(out.rglob("*.JPEG")), tmp_path, capsys)
    C._existing_names(out / "gaussian_noise" / "1" / TENCH)  # the next run's scan drops the temporaries
    assert _leftovers(out) == []
    for path in out.rglob("*.JPEG"):  # whatever has a final name is whole
        with Image.open(path) as img:
            img.load()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers die with their parent on Linux")
def test_sigkill_of_manifest_leaves_no_worker_and_no_hang(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cls = tmp_path / "src" / TENCH
    cls.mkdir(parents=True)
    Image.new("RGB", (3000, 3000), (120, 30, 200)).save(tmp_path / "big.jpg", quality=50)
    for i in range(200):  # slow to decode, cheap to make: 200 names of one large JPEG
        os.link(tmp_path / "big.jpg", cls / f"x{i:03d}.jpg")
    out = tmp_path / "m.parquet"
    argv = ["manifest", "--clean", str(tmp_path / "src"), "--out", str(out), "--workers", "2"]
    _kill_mid_run(argv, lambda: True, tmp_path, capsys)
    assert not out.exists() and _leftovers(tmp_path) == []


def test_a_worker_whose_parent_is_gone_before_it_could_ask_to_die_with_it_exits(tmp_path):
    code = "import sys; from iqa_lib.data.workers import die_with_parent; die_with_parent(int(sys.argv[1])); print('alive')"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = subprocess.run([sys.executable, "-c", code, gone.stdout.strip()], capture_output=True, text=True)
    assert orphan.returncode == 1 and "alive" not in orphan.stdout
    child = subprocess.run([sys.executable, "-c", code, str(os.getpid())], capture_output=True, text=True)
    assert child.returncode == 0 and child.stdout.strip() == "alive"
