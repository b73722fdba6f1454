"""Where model weights come from, and a clear error when they cannot be had.

Real users reach the model hubs; offline machines do not. Every loader takes a
local-path override (spec option ``weights``). When neither the override nor a
cached download exists, the loaders raise :class:`WeightsError` naming the
file, where it was looked for and how to supply it: never a silent fallback to
random weights, and never a long retry loop against an unreachable hub.
"""

from __future__ import annotations

import importlib.metadata
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path


class WeightsError(FileNotFoundError):
    """Weights for a scorer are missing and cannot be downloaded."""


def weights_error(
    scorer: str,
    filename: str,
    looked_in: str,
    cause: BaseException | str | None = None,
    source: str | None = None,
) -> WeightsError:
    """Build the standard message: what is missing, where we looked, how to supply it."""
    why = ""
    if cause is not None:
        why = f" ({type(cause).__name__}: {cause})" if isinstance(cause, BaseException) else f" ({cause})"
    return WeightsError(
        f"weights for scorer {scorer!r} are missing: {filename}"
        + (f" (from {source})" if source else "")
        + f" was not found in {looked_in} and could not be downloaded{why}."
        f" Supply it either by downloading it on a machine "
        f"with internet access into {looked_in}, or by giving a local file with the spec "
        f"option `weights`, e.g. {{spec: {scorer!r}, weights: /path/to/{Path(filename).name}}}."
    )


def local_weights(path: str | os.PathLike, scorer: str) -> Path:
    """Resolve a ``weights`` override; raise :class:`WeightsError` if the file is absent."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsError(
            f"weights file {str(p)!r} given for scorer {scorer!r} does not exist "
            f"(looked for {p.resolve()}); fix the spec option `weights`"
        )
    return p


def distribution_file(dist: str, relpath: str) -> tuple[Path | None, str]:
    """A data file shipped by an installed distribution, found without importing it.

    Returns (path, "") or (None, where it was looked for) for the caller's error message.
    """
    try:
        found = importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return None, f"{relpath} of the {dist!r} distribution, which is not installed"
    path = Path(str(found.locate_file(relpath)))
    if not path.is_file():
        return None, f"{path} ({dist} is installed, the file is not there)"
    return path, ""


@lru_cache(maxsize=8)
def host_reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``host`` opens within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def hf_offline_if_unreachable() -> bool:
    """Switch the Hugging Face hub to offline mode when huggingface.co cannot be reached.

    Offline mode makes a missing file fail at once instead of after retries.
    Returns whether the hub is offline now.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        offline = True
    else:
        offline = not host_reachable("huggingface.co")
        if offline:
            os.environ["HF_HUB_OFFLINE"] = "1"
    if offline:
        try:
            import huggingface_hub.constants as hf_constants

            hf_constants.HF_HUB_OFFLINE = True
        except (ImportError, AttributeError):
            pass
    return offline


def hf_cached_file(repo_id: str, filename: str) -> Path | None:
    """The cached copy of a hub file (what a report names as the weights), or None."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, filename)
    except Exception:  # noqa: BLE001 - a report names what it can find
        return None
    return Path(found) if isinstance(found, str) else None


def hf_cache_dir() -> str:
    """The Hugging Face hub cache directory (for error messages)."""
    try:
        import huggingface_hub.constants as hf_constants

        return str(hf_constants.HF_HUB_CACHE)
    except (ImportError, AttributeError):
        return os.path.expanduser("~/.cache/huggingface/hub")


@contextmanager
def download_errors(
    scorer: str, filename: str, looked_in: str, source: str | None = None
) -> Iterator[None]:
    """Turn any failure while fetching pretrained weights into a :class:`WeightsError`."""
    try:
        yield
    except (WeightsError, ImportError):
        raise  # a missing package is not a missing weight file
    except Exception as exc:  # hub libraries raise many types: name them all the same way
        raise weights_error(scorer, filename, looked_in, exc, source) from exc
