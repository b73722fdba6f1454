"""Which label space a manifest's labels live in, and what a task scorer can say about it.

A manifest is labelled in one of three spaces: ImageNet-1k (labels 0-999 in
sorted-wnid order), the dataset's own classes (label = index into the class
folder names stored with the manifest) or none (every label -1). A classifier
or ZSCLIP scorer writes ``correct`` only where its predictions live in the
same space as the labels:

* ImageNet head, ImageNet labels: as in the paper.
* ImageNet head, own classes, no ``class_map``: pred/q_p/q_h/q_l (a Q) but no
  ``correct``; comparing an ImageNet prediction with an own class index would
  be silently wrong.
* ImageNet head, own classes, ``class_map`` (folder -> wnid(s)): logits are
  restricted to the mapped wnids, as ImageNet-R/-A evaluations do; ``pred`` is
  the own class whose wnids hold the argmax, ``correct = pred == label``.
* Own checkpoint (option ``weights``) on own classes: the head is sized to the
  classes, in the manifest's order.
* ZSCLIP on own classes: prompts use the dataset's readable class names.

Everything here is pure (no torch): the engine resolves the label space from
the spec and the manifest before any model loads, so a bad ``class_map`` fails
at once and resumed parts are never mixed across label spaces.
"""

from __future__ import annotations

import csv
import difflib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from iqa_lib import imagenet
from iqa_lib.data.manifest import readable_classname
from iqa_lib.scorers.spec import ScorerSpec

LABEL_SPACES = ("imagenet", "own", "class_map", "unlabelled")
UNLABELLED_NOTE = "unlabelled manifest: `correct` is not defined"
MAP_SUFFIXES = (".yaml", ".yml", ".json", ".csv", ".tsv")


class LabelSpaceError(ValueError):
    """A class map, class-name list or checkpoint that does not fit the manifest's classes."""


def preview(names: Sequence[str], n: int = 5) -> str:
    """``a, b, c, ...``: the first few names of a list, for one-line messages."""
    shown = ", ".join(str(x) for x in list(names)[:n])
    return shown + (", ..." if len(names) > n else "")


# ------------------------------------------------------------------ class map
@dataclass(frozen=True)
class ClassMap:
    """Own classes -> ImageNet-1k wnids, with the logit columns they keep."""

    classes: tuple[str, ...]
    wnids: tuple[tuple[str, ...], ...]  # per own class, in class order
    columns: tuple[int, ...]  # ImageNet labels kept, ascending
    owner: tuple[int, ...]  # own class index of each kept column

    def as_dict(self) -> dict[str, list[str]]:
        return {c: list(w) for c, w in zip(self.classes, self.wnids, strict=True)}


def read_class_map(value: Any, where: str = "class_map") -> dict[str, list[str]]:
    """``{folder: [wnid, ...]}`` from an inline mapping or a YAML/JSON/CSV/TSV file.

    Only the form is checked here; :func:`build_class_map` checks the content
    against the manifest's classes and the ImageNet wnids.
    """
    if isinstance(value, Mapping):
        return _wnid_lists(value, where)
    if isinstance(value, str | os.PathLike):
        return _read_map_file(Path(value).expanduser(), where)
    raise LabelSpaceError(
        f"{where} must be a mapping {{folder: wnid or [wnids]}} or a file path, got {value!r}"
    )


def _read_map_file(path: Path, where: str) -> dict[str, list[str]]:
    """A class map file: CSV/TSV rows folder,wnid, or a YAML/JSON mapping."""
    if not path.is_file():
        raise LabelSpaceError(
            f"{where}: file {str(path)!r} does not exist; give a mapping "
            "{folder: wnid or [wnids]} or a YAML/JSON/CSV/TSV file of one"
        )
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _read_map_table(path, "\t" if suffix == ".tsv" else ",")
    if suffix not in (".yaml", ".yml", ".json"):
        raise LabelSpaceError(
            f"{where}: cannot read {str(path)!r}; a class map file ends in "
            f"{', '.join(MAP_SUFFIXES)}"
        )
    return _wnid_lists(_read_mapping(path, suffix, where), str(path))


def _read_mapping(path: Path, suffix: str, where: str) -> Mapping[Any, Any]:
    """The mapping a YAML or JSON file holds; anything else is a :class:`LabelSpaceError`."""
    try:
        text = path.read_text()
        raw = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - JSONDecodeError, yaml.YAMLError: one message
        raise LabelSpaceError(f"{where}: {str(path)!r} is not valid {suffix[1:]}: {exc}") from None
    if not isinstance(raw, Mapping):
        raise LabelSpaceError(
            f"{where}: {str(path)!r} holds a {type(raw).__name__}, not a mapping "
            "{folder: wnid or [wnids]}"
        )
    return raw


def _wnid_lists(raw: Mapping[Any, Any], where: str) -> dict[str, list[str]]:
    """Each folder's wnid (or list of wnids) as a non-empty list of stripped strings."""
    out: dict[str, list[str]] = {}
    for key, wn in raw.items():
        values = [wn] if isinstance(wn, str) else wn
        if not isinstance(values, list | tuple) or not values or not all(isinstance(w, str) for w in values):
            raise LabelSpaceError(
                f"{where}: class {str(key)!r} maps to {wn!r}; give a wnid such as n02123045 or a "
                "non-empty list of them"
            )
        out[str(key)] = [w.strip() for w in values]
    if not out:
        raise LabelSpaceError(f"{where} is empty; map every class folder to its wnid(s)")
    return out


def _read_map_table(path: Path, delimiter: str) -> dict[str, list[str]]:
    """Two columns folder, wnid; a class with several wnids repeats its row."""
    out: dict[str, list[str]] = {}
    with path.open(newline="") as fh:
        for lineno, fields in enumerate(csv.reader(fh, delimiter=delimiter), start=1):
            row = _map_row(path, lineno, fields, delimiter)
            if row is not None:
                out.setdefault(row[0], []).append(row[1])
    if not out:
        raise LabelSpaceError(f"{path} holds no folder{delimiter}wnid rows")
    return out


def _map_row(path: Path, lineno: int, fields: list[str], delimiter: str) -> tuple[str, str] | None:
    """(folder, wnid) of one table row; ``None`` for a blank, comment or header row."""
    fields = [f.strip() for f in fields]
    if not any(fields) or fields[0].startswith("#"):
        return None
    if len(fields) < 2 or not fields[0] or not fields[1]:
        raise LabelSpaceError(f"{path}:{lineno}: expected two columns folder{delimiter}wnid, got {fields!r}")
    if lineno == 1 and not imagenet.is_wnid(fields[1]) and fields[1].isalpha():
        return None  # header row, e.g. folder,wnid
    return fields[0], fields[1]


def build_class_map(value: Any, classes: Sequence[str], where: str = "class_map") -> ClassMap:
    """Parse and check a class map against the manifest's classes; raise :class:`LabelSpaceError`."""
    mapping = read_class_map(value, where)
    _check_map_keys(mapping, classes, where)
    owner_of: dict[str, int] = {}
    wnids: list[tuple[str, ...]] = []
    for index, cls in enumerate(classes):
        kept = tuple(dict.fromkeys(mapping[cls]))
        for w in kept:
            _check_wnid(w, cls, where)
            if w in owner_of:
                raise LabelSpaceError(
                    f"{where}: wnid {w} is mapped to two classes, {classes[owner_of[w]]!r} and "
                    f"{cls!r}; a wnid may belong to one class only"
                )
            owner_of[w] = index
        wnids.append(kept)
    columns = tuple(sorted(imagenet.label_of(w) for w in owner_of))
    owner = tuple(owner_of[imagenet.wnid_of(c)] for c in columns)
    return ClassMap(tuple(classes), tuple(wnids), columns, owner)


def _check_map_keys(mapping: Mapping[str, Any], classes: Sequence[str], where: str) -> None:
    """The map's keys are exactly the manifest's classes (a near miss is named)."""
    known = set(classes)
    strangers = [k for k in mapping if k not in known]
    if strangers:
        hints = [_with_close_match(k, classes) for k in strangers]
        raise LabelSpaceError(
            f"{where}: {', '.join(hints)} {'is not a class' if len(strangers) == 1 else 'are not classes'} "
            f"of the manifest; its classes are {preview(classes, 12)}"
        )
    missing = [c for c in classes if c not in mapping]
    if missing:
        raise LabelSpaceError(
            f"{where}: manifest class(es) {preview(missing, 8)} are missing from the map; map every "
            "class folder to its ImageNet wnid(s)"
        )


def _with_close_match(key: str, classes: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, classes, n=2)
    return f"{key!r} (did you mean {', '.join(close)}?)" if close else repr(key)


def _check_wnid(wnid: str, cls: str, where: str) -> None:
    try:
        imagenet.label_of(wnid)
    except KeyError:
        close = imagenet.suggest_wnids(wnid)
        raise LabelSpaceError(
            f"{where}: class {cls!r} maps to {wnid!r}, which is not an ImageNet-1k wnid"
            + (f"; did you mean {', '.join(close)}?" if close else "")
        ) from None


def read_classnames(value: Any, where: str = "classnames") -> tuple[str, ...] | None:
    """Prompt names from a list, or a file of one name per line (in class order)."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    path = Path(value).expanduser()
    if not path.is_file():
        raise LabelSpaceError(
            f"{where}: file {str(path)!r} does not exist; give a list of names or a file with "
            "one name per line, in class order"
        )
    names = tuple(ln.strip() for ln in path.read_text().splitlines() if ln.strip())
    if not names:
        raise LabelSpaceError(f"{where}: {str(path)!r} holds no names; write one name per line")
    return names


# ---------------------------------------------------------------- label space
@dataclass(frozen=True)
class LabelSpace:
    """What a scorer's pred/correct mean on one manifest (see the module docstring).

    ``classes``: the manifest's own classes (``None`` for ImageNet labels and
    unlabelled manifests); ``classnames``: ZSCLIP prompt names (``None`` = the
    1000 ImageNet names); ``own_head``: the classifier's head comes from the
    user's checkpoint, sized to ``classes`` (or to the checkpoint when unlabelled).
    """

    name: str = "imagenet"
    classes: tuple[str, ...] | None = None
    classnames: tuple[str, ...] | None = None
    class_map: ClassMap | None = None
    own_head: bool = False
    defines_correct: bool = True
    note: str = ""
    warning: str = ""

    def describe(self) -> str:
        if self.name == "unlabelled":
            return "an unlabelled manifest"
        if self.classes is None:
            return "ImageNet-1k labels"
        how = " mapped by class_map" if self.class_map else ""
        return f"its own {len(self.classes)} classes ({preview(self.classes)}){how}"

    def metadata(self) -> dict[str, str]:
        """Score-file metadata: label_space, classes (JSON), class_map, classnames, label_note."""
        meta = {"label_space": self.name}
        if self.classes is not None:
            meta["classes"] = json.dumps(list(self.classes))
        if self.class_map is not None:
            meta["class_map"] = json.dumps(self.class_map.as_dict())
        if self.classnames is not None:
            meta["classnames"] = json.dumps(list(self.classnames))
        if self.note:
            meta["label_note"] = self.note
        return meta

    def resume_key(self) -> dict[str, Any]:
        """Everything of the label space that changes a score file (for resumable parts)."""
        return {
            "label_space": self.name,
            "classes": None if self.classes is None else list(self.classes),
            "classnames": None if self.classnames is None else list(self.classnames),
            "class_map": None if self.class_map is None else self.class_map.as_dict(),
            "own_head": self.own_head,
            "correct": self.defines_correct,
        }

    def as_unlabelled(self) -> LabelSpace:
        """The same predictions on an unlabelled manifest: no ``correct``."""
        return replace(self, name="unlabelled", defines_correct=False, note=UNLABELLED_NOTE, warning="")


IMAGENET = LabelSpace()


def resolve_label_space(
    spec: ScorerSpec,
    classes: Sequence[str] | None = None,
    classnames: Sequence[str] | None = None,
    unlabelled: bool = False,
) -> LabelSpace:
    """The label space of ``spec`` on a manifest with these own ``classes`` (``None``: ImageNet).

    ``classnames``: the manifest's readable names (ZSCLIP prompts; default: the
    folder names made readable). Raises :class:`LabelSpaceError` for a class
    map or name list that does not fit.
    """
    classes = None if classes is None else tuple(str(c) for c in classes)
    if spec.kind == "nr_iqa":
        name = "unlabelled" if unlabelled else ("own" if classes is not None else "imagenet")
        return LabelSpace(name, classes, defines_correct=False)
    if spec.options.get("class_map") is not None:
        return _class_map_space(spec, classes, unlabelled)
    if spec.kind == "classifier":
        return _classifier_space(spec, classes, unlabelled)
    return _zero_shot_space(spec, classes, classnames, unlabelled)


def _class_map_space(spec: ScorerSpec, classes: tuple[str, ...] | None, unlabelled: bool) -> LabelSpace:
    """Option class_map: ImageNet logits restricted to the mapped wnids, pred an own class."""
    opts, text = spec.options, spec.text
    if unlabelled:
        raise LabelSpaceError(
            f"option class_map of {text!r}: the manifest is unlabelled, so there is nothing to "
            "map; drop class_map"
        )
    if classes is None:
        raise LabelSpaceError(
            f"option class_map of {text!r} is not needed: the manifest's labels are already "
            "ImageNet-1k classes; drop class_map"
        )
    if spec.kind == "zero_shot" and opts.get("classnames") is not None:
        raise LabelSpaceError(
            f"{text!r} has both class_map (prompt with the mapped ImageNet names) and "
            "classnames (prompt with these names); give one"
        )
    cmap = build_class_map(opts["class_map"], classes, f"option class_map of {text!r}")
    note = (
        f"pred, correct, q_p, q_h and q_l over the {len(cmap.columns)} mapped ImageNet classes "
        "(class_map); pred is an index into classes"
    )
    return LabelSpace("class_map", classes, class_map=cmap, note=note)


def _classifier_space(spec: ScorerSpec, classes: tuple[str, ...] | None, unlabelled: bool) -> LabelSpace:
    """A classifier without class_map: its ImageNet head, or the user's own (option weights)."""
    own_head = bool(spec.options.get("weights")) and (classes is not None or unlabelled)
    if unlabelled:
        return LabelSpace(own_head=own_head).as_unlabelled()
    if classes is None:
        return IMAGENET
    if own_head:
        return LabelSpace("own", classes, own_head=True)
    return LabelSpace(
        "own",
        classes,
        defines_correct=False,
        note="pred is an ImageNet-1k label (0-999), not an own class: `correct` left out "
        "(give option class_map to define it)",
        warning=f"{spec.text} predicts ImageNet classes but the manifest has its own "
        f"{len(classes)} classes ({preview(classes)}): `correct` left out; give option "
        "class_map (folder -> wnid(s)) or your own checkpoint (option weights) to get it",
    )


def _zero_shot_space(
    spec: ScorerSpec,
    classes: tuple[str, ...] | None,
    classnames: Sequence[str] | None,
    unlabelled: bool,
) -> LabelSpace:
    """ZSCLIP without class_map: prompts with option classnames, the manifest's names or ImageNet's."""
    text = spec.text
    given = spec.options.get("classnames") is not None
    names = read_classnames(spec.options.get("classnames"), f"option classnames of {text!r}")
    if unlabelled:
        return LabelSpace(classnames=names).as_unlabelled()
    if classes is None:
        _check_imagenet_classnames(names, text)
        return LabelSpace(classnames=names)
    if names is None:
        names = tuple(classnames) if classnames is not None else tuple(readable_classname(c) for c in classes)
    if len(names) != len(classes):
        raise LabelSpaceError(
            f"{'option classnames of ' + repr(text) if given else 'the manifest'} "
            f"has {len(names)} class names ({preview(names)}) but the manifest has {len(classes)} "
            f"classes ({preview(classes)}); give one name per class, in class order"
        )
    return LabelSpace("own", classes, classnames=tuple(names))


def _check_imagenet_classnames(names: tuple[str, ...] | None, text: str) -> None:
    """Names given for ImageNet labels must be 1000, in sorted-wnid order."""
    if names is not None and len(names) != imagenet.NUM_CLASSES:
        raise LabelSpaceError(
            f"option classnames of {text!r} has {len(names)} names but the manifest's labels "
            f"are ImageNet-1k ({imagenet.NUM_CLASSES} classes); give 1000 names in sorted-wnid "
            "order or drop the option"
        )
