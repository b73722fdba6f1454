"""Helpers shared by the analyses: which (task model, Q) combinations to run, progress."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from tqdm import tqdm  # text bars: tqdm.auto warns in kernels without ipywidgets

from iqa_lib.analysis.io import ScoreSet


def resolve(
    scores: ScoreSet,
    q_names: Iterable[tuple[str, str]] | None = None,
    task_models: Iterable[str] | None = None,
) -> tuple[list[tuple[str, str]], list[str]]:
    """Q variables and task models to analyse (default: all), checked against ``scores``."""
    qs = list(scores.q) if q_names is None else [tuple(q) for q in q_names]
    models = scores.task_models if task_models is None else list(task_models)
    _check_known(scores, qs, models)
    return qs, models


def _check_known(scores: ScoreSet, qs: list[tuple[str, str]], models: list[str]) -> None:
    """A KeyError naming unknown Qs or task models; a ValueError when there is no task model."""
    bad_q = [q for q in qs if q not in scores.q]
    if bad_q:
        raise KeyError(f"unknown Q variable(s) {bad_q}; available: {list(scores.q)}")
    bad_m = [m for m in models if m not in scores.m]
    if bad_m:
        raise KeyError(
            f"unknown task model(s) {bad_m}; task models are the classifier/zero-shot score "
            f"files: {list(scores.m)}"
        )
    if not models:
        raise ValueError("no task model: the scores folder has no classifier/zero-shot file")


def combos(
    qs: list[tuple[str, str]], models: list[str], progress: bool, desc: str
) -> Iterator[tuple[tuple[str, str], str]]:
    """(Q variable, task model) pairs, Q-major (work per Q is shared), with a progress bar."""
    items = [(q, m) for q in qs for m in models]
    return iter(tqdm(items, desc=desc, disable=not progress, leave=False))


def label_cols(scores: ScoreSet, q: tuple[str, str], model: str) -> dict[str, str]:
    """The identifying columns of one result row."""
    return {"task_model": model, "scorer": q[0], "q": q[1], "kind": scores.kinds[q[0]]}


def n_workers() -> int:
    """Threads for running independent (Q, M) pairs at once: numba's thread count (set by
    ``NUMBA_NUM_THREADS`` or ``numba.set_num_threads``; 1 = serial), else the usable cores."""
    try:
        import numba

        return max(1, int(numba.get_num_threads()))
    except ImportError:  # pragma: no cover - numba comes with the kit's dependencies
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def parallel_map(
    func: Callable,
    items: Iterable,
    workers: int | None = None,
    *,
    progress: bool = False,
    desc: str | None = None,
) -> list:
    """``[func(item) for item in items]``, in order, on ``workers`` threads (default
    :func:`n_workers`). ``func`` should spend its time in code that releases the GIL
    (nogil numba kernels, numpy) and must not call numba's parallel kernels (their thread
    pool is not re-entrant); each item's result does not depend on the others, so the
    output is the same as the serial loop's, bit for bit."""
    items = list(items)
    workers = n_workers() if workers is None else workers
    bar = tqdm(total=len(items), desc=desc, disable=not progress, leave=False)
    try:
        if workers <= 1 or len(items) <= 1:
            out = []
            for item in items:
                out.append(func(item))
                bar.update()
            return out
        with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
            out = []
            for result in pool.map(func, items):
                out.append(result)
                bar.update()
            return out
    finally:
        bar.close()
