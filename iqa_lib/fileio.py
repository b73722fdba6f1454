"""Writing files so that a fault is loud and nothing half-written carries a final name.

Every output of the kit is written to a temporary name in the same folder and
``os.replace``d into place. When the write fails because of the machine (disk
full, I/O error, read-only file system, quota), that is not a property of one
image: the run must stop with one line naming the path, what the error means
and how to go on, and a non-zero exit. :func:`writing` turns such an
``OSError`` into a :class:`WriteError`; the CLI prints it as that one line.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# errnos that say "the machine cannot take this write", as opposed to "this input is bad"
WRITE_ERRNOS = frozenset(
    e for e in (errno.ENOSPC, errno.EIO, errno.EROFS, getattr(errno, "EDQUOT", None), errno.EFBIG,
                errno.EACCES, errno.EPERM, errno.ENAMETOOLONG, errno.EMFILE, errno.ENFILE)
    if e is not None
)
RESUME_HINT = "fix that and rerun the same command: what is finished is kept"


class WriteError(RuntimeError):
    """A write the machine refused; the message is one line for a person."""

    def __init__(self, path: str | os.PathLike, cause: OSError, hint: str = RESUME_HINT):
        self.path = Path(path)
        self.errno = cause.errno
        meaning = os.strerror(cause.errno) if cause.errno else str(cause)
        name = errno.errorcode.get(cause.errno or 0, "")
        super().__init__(f"cannot write {str(self.path)!r}: {meaning}" + (f" ({name})" if name else "") + f"; {hint}")

    def __reduce__(self):
        # picklable, so that a fault inside a worker process reaches the parent as itself
        return _rebuild_write_error, (type(self), str(self.path), self.errno, str(self))


def _rebuild_write_error(cls: type[WriteError], path: str, code: int | None, message: str) -> WriteError:
    error = cls.__new__(cls)
    RuntimeError.__init__(error, message)
    error.path, error.errno = Path(path), code
    return error


def is_write_fault(exc: BaseException) -> bool:
    """Whether ``exc`` is the machine refusing a write (not a bad input file)."""
    return isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS


@contextmanager
def writing(path: str | os.PathLike, hint: str = RESUME_HINT) -> Iterator[None]:
    """Turn a write fault inside the block into a :class:`WriteError` naming ``path``."""
    try:
        yield
    except WriteError:
        raise
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS:
            raise WriteError(_reported(getattr(exc, "filename", None), path), exc, hint) from exc
        raise


def _reported(filename: str | os.PathLike | None, path: str | os.PathLike) -> str | os.PathLike:
    """The path a fault message names: the output itself rather than its temporary name."""
    if filename is None:
        return path
    named, path = Path(os.fsdecode(filename)), Path(path)
    if named.parent == path.parent and named.name.startswith(f".{path.name}.tmp-"):
        return path
    return filename


def temporary_name(path: str | os.PathLike) -> Path:
    """``.<name>.tmp-<pid>`` beside ``path``: never mistaken for a finished file."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def temporary_owner(name: str) -> int | None:
    """The process id in a name that :func:`temporary_name` made, else ``None`` (any other file)."""
    stem, sep, pid = name.rpartition(".tmp-")
    return int(pid) if sep and stem.startswith(".") and pid.isdigit() else None


def _replace_from(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, hint: str = RESUME_HINT) -> Path:
    """Write ``data`` to ``path`` atomically; a fault leaves no partial file under either name."""
    path = Path(path)
    tmp = temporary_name(path)
    with writing(path, hint):
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _replace_from(tmp, path)
    return path


def atomic_write_text(path: str | os.PathLike, text: str, hint: str = RESUME_HINT) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), hint)


def atomic_write_with(path: str | os.PathLike, write: Any, hint: str = RESUME_HINT) -> Path:
    """Atomically write through ``write(tmp_path)`` (e.g. ``df.to_parquet``, ``fig.savefig``)."""
    path = Path(path)
    tmp = temporary_name(path)
    with writing(path, hint):
        try:
            write(tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _replace_from(tmp, path)
    return path


def write_csv(table: Any, path: str | os.PathLike, hint: str = RESUME_HINT) -> Path:
    """A data frame as CSV (no index), atomically."""
    return atomic_write_with(path, lambda tmp: table.to_csv(tmp, index=False), hint)


def write_json(value: Any, path: str | os.PathLike, hint: str = RESUME_HINT) -> Path:
    """``value`` as indented JSON with sorted keys, atomically (records, metadata, speeds)."""
    text = json.dumps(value, indent=1, sort_keys=True)
    return atomic_write_with(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), hint)
