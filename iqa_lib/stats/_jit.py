"""numba when available (compiled, parallel kernels), plain Python otherwise (same results)."""

from __future__ import annotations

try:  # numba ships with imagecorruptions-imaug, a dependency of the kit
    from numba import njit, prange

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only without numba
    HAVE_NUMBA = False
    prange = range

    def njit(*args, **kwargs):  # type: ignore[no-redef]
        """Identity decorator standing in for numba.njit."""
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]
        return lambda f: f


__all__ = ["HAVE_NUMBA", "njit", "prange"]
