"""The ImageNet-1k label space: 1000 wnids in sorted order, with readable names.

Labels are the index of the wnid among all 1000 sorted wnids, never among the
wnids that happen to be present in a folder. The lists come from the files timm
ships (``timm/data/_info``), read without importing timm (and so torch).
"""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from pathlib import Path

WNID_PATTERN = re.compile(r"^n\d{8}$")
NUM_CLASSES = 1000


def _timm_info_dir() -> Path:
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "timm is needed for the ImageNet class list (it ships the canonical wnids); "
            "install it with `pip install timm`"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "_info"


@lru_cache(maxsize=1)
def wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k wnids in sorted order (index = label)."""
    path = _timm_info_dir() / "imagenet_synsets.txt"
    found = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    if len(found) != NUM_CLASSES or found != sorted(found):
        raise RuntimeError(f"{path} does not hold the 1000 sorted ImageNet-1k wnids")
    return tuple(found)


@lru_cache(maxsize=1)
def _wnid_index() -> dict[str, int]:
    return {w: i for i, w in enumerate(wnids())}


@lru_cache(maxsize=1)
def _lemmas() -> dict[str, str]:
    path = _timm_info_dir() / "imagenet_synset_to_lemma.txt"
    out = {}
    for line in path.read_text().splitlines():
        wnid, _, lemma = line.partition("\t")
        if wnid:
            out[wnid.strip()] = lemma.strip()
    return out


def is_wnid(text: str) -> bool:
    return bool(WNID_PATTERN.match(text))


def label_of(wnid: str) -> int:
    """ImageNet-1k label of ``wnid``; ``KeyError`` naming the wnid when it is not one of the 1000."""
    try:
        return _wnid_index()[wnid]
    except KeyError:
        raise KeyError(f"{wnid!r} is not one of the 1000 ImageNet-1k wnids") from None


def wnid_of(label: int) -> str:
    if not 0 <= int(label) < NUM_CLASSES:
        raise IndexError(f"ImageNet label {label} is outside 0-{NUM_CLASSES - 1}")
    return wnids()[int(label)]


def class_name(label: int) -> str:
    """Readable name of a label: the first lemma (``'tench'`` for label 0)."""
    return _lemmas()[wnid_of(label)].split(",")[0].strip()


def suggest_wnids(text: str, n: int = 3) -> list[str]:
    """Close ImageNet-1k wnids for a mistyped wnid or a class name, as ``"n02123045 (tabby)"``.

    For error messages: a wnid-shaped ``text`` is matched against the wnids, any
    other text against the readable names (every synonym of each class).
    """
    import difflib

    if is_wnid(text):
        found = difflib.get_close_matches(text, wnids(), n=n, cutoff=0.75)
    else:
        names: dict[str, str] = {}
        lemmas = _lemmas()
        for wnid in wnids():
            for name in lemmas.get(wnid, "").split(","):
                names.setdefault(name.strip().lower(), wnid)
        close = difflib.get_close_matches(text.strip().lower(), list(names), n=n * 2, cutoff=0.6)
        found = list(dict.fromkeys(names[c] for c in close))[:n]
    return [f"{w} ({class_name(label_of(w))})" for w in found]
