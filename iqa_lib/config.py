"""The schema of ``params.yaml``, checked before any work starts.

Every mistake is reported at once, one line each, naming the key, the bad value
and the valid choices, so that a typo costs seconds rather than a failed
scoring run an hour in.
"""

from __future__ import annotations

import difflib
import os
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from iqa_lib import defaults
from iqa_lib.checks import check_device
from iqa_lib.corruptions import ALL_CORRUPTIONS, COMMON_CORRUPTIONS, SEVERITIES
from iqa_lib.dvc_params import missing_dvc_params
from iqa_lib.scorers.spec import ScorerSpec, SpecError, parse_spec

CorruptionName = Literal[ALL_CORRUPTIONS]  # type: ignore[valid-type]
Severity = Literal[SEVERITIES]  # type: ignore[valid-type]
MANIFEST_PATH = "data/manifest.parquet"  # fixed: dvc.yaml names it
SCORES_DIR = "results/scores"  # one <scorer>.parquet per scorer: the contract of docs/architecture.md ("Score files")
ANALYSIS_DIR = "results/analysis"
DISTRIBUTION_DIR = "results/distribution"  # iqa-kit describe: quality distribution table + figure
PREPARED_STAMP = "data/prepared.json"  # what `iqa-kit prepare` made; DVC tracks this, not the images
SCORER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
DEFAULT_MIXTURE_FRACTIONS = [round(0.01 * i, 2) for i in range(1, 21)]


def _check_spec(spec: str | dict[str, Any]) -> str | dict[str, Any]:
    try:
        parse_spec(spec)
    except SpecError as exc:
        raise ValueError(str(exc)) from None
    return spec


ScorerEntry = Annotated[Any, AfterValidator(_check_spec)]


class ConfigError(ValueError):
    """``params.yaml`` is invalid; the message lists every problem found."""


class _Strict(BaseModel):
    # strict: YAML gives real types, so `batch_size: true` or `"32"` is a mistake to name, not to coerce
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DataParams(_Strict):
    """Where images come from and which corruptions to render or read.

    ``clean_root: null`` means the quickstart photographs (no download);
    ``imagenet_c_root: null`` with ``generate_corruptions: true`` renders
    ImageNet-C from the clean images. Generated images go under
    ``generated_root``, never into a user's own folders. ``geometry`` is how
    clean images are scored: ``resize_crop`` (Resize 256 + CenterCrop 224, as
    ImageNet-C was made) or ``none`` (as stored); corrupted images are always
    scored as stored.
    """

    clean_root: str | None = None
    clean_labels: str | None = None
    imagenet_c_root: str | None = None
    generate_corruptions: bool = True
    generated_root: str = "data/generated"
    corruptions: list[CorruptionName] = Field(default_factory=lambda: list(COMMON_CORRUPTIONS))
    severities: list[Severity] = Field(default_factory=lambda: list(SEVERITIES))
    check: Literal["full", "header", "none"] = "full"
    geometry: Literal["resize_crop", "none"] = "resize_crop"
    # Pillow's decompression-bomb limit in pixels (null: Pillow's 89,478,485); --max-pixels wins
    max_pixels: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> DataParams:
        if not self.corruptions or not self.severities:
            raise ValueError("data.corruptions and data.severities must not be empty")
        if self.clean_labels is not None and self.clean_root is None:
            raise ValueError("data.clean_labels is set but data.clean_root is null (the quickstart set)")
        return self

    @property
    def uses_quickstart(self) -> bool:
        return self.clean_root is None

    @property
    def renders_corruptions(self) -> bool:
        return self.imagenet_c_root is None and self.generate_corruptions

    @property
    def clean_dir(self) -> str:
        """The clean image folder the pipeline reads."""
        return self.clean_root or f"{self.generated_root}/quickstart"

    @property
    def imagenet_c_dir(self) -> str | None:
        """The ImageNet-C tree the pipeline reads (``None``: clean images only)."""
        if self.imagenet_c_root is not None:
            return self.imagenet_c_root
        return f"{self.generated_root}/imagenet-c" if self.generate_corruptions else None


class ScoringParams(_Strict):
    """How ``iqa-kit score --from-params`` runs: the same checks as its command-line options."""

    device: str = "auto"
    batch_size: int | None = Field(None, ge=1, le=4096)  # null: each scorer's own default
    num_workers: int | None = Field(None, ge=0, le=256)  # null: from the CPU count
    part_size: int = Field(4096, ge=1)  # rows per resumable part
    part_seconds: float = Field(10.0, gt=0, allow_inf_nan=False)  # a kill loses at most about this
    # a scorer's run also scores every other configured scorer whose output is missing or stale,
    # decoding each image once for all of them (iqa_lib.scoring.engine.run_scoring_many)
    decode_once: bool = True
    # JPEGs scored as stored are decoded on the scoring device (nvJPEG on CUDA); changes pixels
    # by a few levels against libjpeg, so it is a dependency of the score stages
    decode_on_device: bool = False
    # keep each task model's logits beside its score file (results/scores/<name>.logits/logits.npy,
    # float16: 2 GB per million images at 1000 classes) for exact COT, MaNo and the nuclear norm
    keep_logits: bool = False

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        return check_device(value)


class AnalysisParams(_Strict):
    task_models: list[str] = Field(default_factory=list)
    seed: int = Field(defaults.SEED, ge=0)  # numpy seeds are non-negative
    n_bootstrap: int = Field(defaults.N_BOOTSTRAP, ge=10)
    test_fraction: float = Field(defaults.TEST_FRACTION, gt=0.0, lt=1.0)
    n_folds: int = Field(defaults.N_FOLDS, ge=2)
    mixture_fractions: list[float] = Field(default_factory=lambda: list(DEFAULT_MIXTURE_FRACTIONS))
    mixture_corruptions: list[CorruptionName] | None = None
    mixture_severities: list[Severity] = Field(default_factory=lambda: [1, 2, 3])

    @field_validator("mixture_fractions")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        bad = [v for v in value if not 0.0 < v <= 1.0]
        if bad or not value:
            raise ValueError(f"mixture fractions must lie in (0, 1], got {bad or value}")
        return value


class Params(_Strict):
    data: DataParams = Field(default_factory=DataParams)
    scoring: ScoringParams = Field(default_factory=ScoringParams)
    scorers: dict[str, ScorerEntry] = Field(default_factory=dict)
    analysis: AnalysisParams = Field(default_factory=AnalysisParams)

    @field_validator("scorers", mode="before")
    @classmethod
    def _scorers(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        bad = [name for name in value if not SCORER_NAME.match(name)]
        if bad:
            raise ValueError(
                f"scorer name(s) {bad} must be letters, digits, '_', '.', '-' (each names a file)"
            )
        return value

    @model_validator(mode="after")
    def _task_models(self) -> Params:
        for name in self.analysis.task_models:
            if name not in self.scorers:
                raise ValueError(
                    f"analysis.task_models names {name!r}, which is not in scorers; valid choices: "
                    f"{', '.join(self.scorers) or '(no scorers configured)'}"
                )
            if self.scorer_spec(name).kind == "nr_iqa":
                raise ValueError(
                    f"analysis.task_models names {name!r}, a no-reference IQA scorer: task models "
                    "must be classifiers or zero-shot scorers (they give correctness M)"
                )
        return self

    def scorer_spec(self, name: str) -> ScorerSpec:
        return parse_spec(self.scorers[name])


# --------------------------------------------------------------------- error messages
def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the last key of ``loc`` (to list valid keys)."""
    model: Any = Params
    for part in loc[:-1]:
        model = _field_model(model, part)
        if model is None:
            return None
    return model if _is_model(model) else None


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _field_model(model: Any, part: Any) -> Any:
    """The type of field ``part`` of ``model``; for ``list[M]``, ``M | None`` and the like, its model ``M``."""
    if not _is_model(model):
        return None
    field = model.model_fields.get(str(part))
    if field is None:
        return None
    annotation = field.annotation
    origin = typing.get_origin(annotation)
    if origin is None or origin is Literal:
        return annotation
    return next((a for a in typing.get_args(annotation) if _is_model(a)), None)


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _describe(err: dict[str, Any]) -> str:
    """One line for one pydantic error: the dotted key, what is wrong, and what would be right."""
    loc = tuple(err["loc"])
    key = _dotted(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        return _unknown_key(key, loc)
    if kind == "literal_error":
        return _bad_choice(key, err)
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "value_error" or not loc:
        return f"{key}: {msg}" if loc else msg
    return f"{key}: {msg} (got {err.get('input')!r})"


def _unknown_key(key: str, loc: tuple[Any, ...]) -> str:
    model = _model_at(loc)
    valid = list(model.model_fields) if model else []
    hint = difflib.get_close_matches(str(loc[-1]), valid, n=1)
    more = f" (did you mean {hint[0]!r}?)" if hint else ""
    return f"{key}: unknown key{more}; valid keys here: {', '.join(valid)}"


def _bad_choice(key: str, err: dict[str, Any]) -> str:
    value = err.get("input")
    expected = err.get("ctx", {}).get("expected", "")
    choices = re.findall(r"'([^']*)'|(\d+)", expected)
    names = [a or b for a, b in choices]
    hint = difflib.get_close_matches(str(value), names, n=1)
    more = f" (did you mean {hint[0]!r}?)" if hint else ""
    return f"{key}: {value!r} is not valid{more}; valid choices: {', '.join(names)}"


def validate_params(raw: dict[str, Any] | None, source: str = "params.yaml") -> Params:
    """Validate a parsed params mapping; raise :class:`ConfigError` listing every problem."""
    try:
        return Params.model_validate(raw or {})
    except ValidationError as exc:
        lines, seen = [], set()
        for err in exc.errors():
            line = _describe(err)
            if line not in seen:
                seen.add(line)
                lines.append(f"  - {line}")
        raise ConfigError(f"{source} is invalid:\n" + "\n".join(lines)) from None


def load_params(path: str | os.PathLike = "params.yaml") -> Params:
    """Read and validate ``params.yaml``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; run from the project root or pass --params")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (data, scoring, scorers, analysis)")
    return validate_params(raw, source=str(path))


def validate_params_file(path: str | os.PathLike = "params.yaml") -> Params:
    """What ``iqa-kit validate`` checks: the schema, and (where a dvc.yaml sits beside the file or
    in the current folder) that every key a dvc.yaml stage reads is written out, which dvc repro needs."""
    params = load_params(path)
    dvc_yaml = _dvc_yaml_for(Path(path))
    if dvc_yaml is not None:
        missing = missing_dvc_params(yaml.safe_load(Path(path).read_text()), dvc_yaml)
        if missing:
            raise ConfigError(
                f"{path} lacks key(s) that {dvc_yaml} reads, so dvc repro would stop: "
                + ", ".join(missing) + " (copy them, with their values, from the repository's params.yaml)")
    return params


def _dvc_yaml_for(params_file: Path) -> Path | None:
    for folder in (params_file.resolve().parent, Path.cwd()):
        if (folder / "dvc.yaml").is_file():
            return folder / "dvc.yaml"
    return None
