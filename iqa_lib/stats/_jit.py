"""numba when available (compiled, parallel kernels), plain Python otherwise (same results).

Compiled kernels are cached on disk (``cache=True``) so only a user's first analysis pays
the compile (~10 s on 2 cores). numba writes the cache next to this package
(``__pycache__``) or, where the install is read-only, to its user-wide cache directory
(``$XDG_CACHE_HOME/numba`` or ``~/.cache/numba``). Where neither is writable (a read-only
install run with an unwritable home, as in some containers) numba would silently cache
nothing and every process would compile again: then the kernels are cached under
``<tempdir>/iqa-kit-numba-<uid>`` instead. ``NUMBA_CACHE_DIR`` set by the user always wins.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _writable(path: Path) -> bool:
    """Whether ``path`` exists or can be made, and a file can be created in it (numba's test)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


def fallback_cache_dir(package_dir: Path, user_cache: Path, temp_root: Path) -> Path | None:
    """The cache directory to give numba, or None when its own choice works (see the
    module docstring): ``package_dir/__pycache__``, then ``user_cache/numba``, then
    ``temp_root/iqa-kit-numba-<uid>`` if that one is writable."""
    if _writable(package_dir / "__pycache__") or _writable(user_cache / "numba"):
        return None
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    tmp = temp_root / f"iqa-kit-numba-{uid}"
    return tmp if _writable(tmp) else None


try:  # numba ships with imagecorruptions-imaug, a dependency of the kit
    import numba
    from numba import njit, prange

    HAVE_NUMBA = True
    if not os.environ.get("NUMBA_CACHE_DIR") and not numba.config.CACHE_DIR:
        _home_cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(
            os.path.expanduser("~"), ".cache"
        )
        _dir = fallback_cache_dir(
            Path(__file__).parent, Path(_home_cache), Path(tempfile.gettempdir())
        )
        if _dir is not None:  # read by numba when the kernels below are decorated
            numba.config.CACHE_DIR = str(_dir)
except ImportError:  # pragma: no cover - exercised only without numba
    HAVE_NUMBA = False
    prange = range

    def njit(*args, **kwargs):  # type: ignore[no-redef]
        """Identity decorator standing in for numba.njit."""
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]
        return lambda f: f


__all__ = ["HAVE_NUMBA", "fallback_cache_dir", "njit", "prange"]
