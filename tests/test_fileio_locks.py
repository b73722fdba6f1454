"""The write helpers and the output lock: faults are one clear line, nothing half-written stays."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time

import pytest

from iqa_lib.fileio import WriteError, atomic_write_bytes, atomic_write_with, writing
from iqa_lib.locks import LockBusy, lock_path, output_lock


def test_a_write_fault_names_the_path_and_leaves_nothing(tmp_path):
    target = tmp_path / "out.bin"

    def full_disk(tmp):
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(WriteError) as err:
        atomic_write_with(target, full_disk)
    msg = str(err.value)
    assert str(target) in msg and "No space left on device (ENOSPC)" in msg and "rerun" in msg
    assert "\n" not in msg and err.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []  # neither the final name nor the temporary one
    atomic_write_bytes(target, b"whole")
    assert target.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [target]


def test_other_os_errors_pass_through(tmp_path):
    with pytest.raises(FileNotFoundError), writing(tmp_path / "x"):
        (tmp_path / "missing" / "x").read_bytes()
    with pytest.raises(WriteError, match="Read-only file system"), writing(tmp_path / "y"):
        raise OSError(errno.EROFS, "Read-only file system")


def test_a_second_writer_is_told_who_holds_the_output(tmp_path):
    target = tmp_path / "scores.parquet"
    with output_lock(target):
        with pytest.raises(LockBusy) as err, output_lock(target):
            pass
        msg = str(err.value)
        assert f"process {os.getpid()}" in msg and "--wait" in msg and str(target) in msg
    with output_lock(target):  # released
        pass
    assert lock_path(target) == tmp_path / ".scores.parquet.lock"


def test_wait_blocks_until_the_holder_exits_and_a_killed_holder_leaves_no_lock(tmp_path):
    target = tmp_path / "out"
    code = (
        "import sys, time; from iqa_lib.locks import output_lock\n"
        f"with output_lock({str(target)!r}):\n"
        "    print('locked', flush=True); time.sleep(float(sys.argv[1]))\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, "1.5"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    started = time.monotonic()
    with output_lock(target, wait=True):
        assert time.monotonic() - started > 0.5
    holder.wait(timeout=30)
    killed = subprocess.Popen([sys.executable, "-c", code, "60"], stdout=subprocess.PIPE, text=True)
    assert killed.stdout.readline().strip() == "locked"
    killed.kill()
    killed.wait(timeout=30)
    with output_lock(target):  # the kernel released it with the process
        pass
