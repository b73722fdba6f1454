from __future__ import annotations

import pytest
import yaml

from iqa_lib.config import ConfigError, load_params, validate_params
from iqa_lib.corruptions import COMMON_CORRUPTIONS
from iqa_lib.dvc_params import dvc_param_keys, missing_dvc_params
from tests.conftest import REPO_ROOT


def errors_of(raw) -> str:
    with pytest.raises(ConfigError) as info:
        validate_params(raw)
    return str(info.value)


def test_repository_params_are_valid():
    params = load_params(REPO_ROOT / "params.yaml")
    assert params.data.corruptions == list(COMMON_CORRUPTIONS)


def test_defaults_use_quickstart_and_generated_corruptions():
    data = validate_params({}).data
    assert data.uses_quickstart and data.renders_corruptions
    assert data.clean_dir == "data/generated/quickstart"
    assert data.imagenet_c_dir == "data/generated/imagenet-c"
    own = validate_params({"data": {"clean_root": "imgs", "imagenet_c_root": "/c"}}).data
    assert own.clean_dir == "imgs" and own.imagenet_c_dir == "/c" and not own.renders_corruptions
    assert validate_params({"data": {"generate_corruptions": False}}).data.imagenet_c_dir is None


def test_misspelt_corruption_names_key_value_and_choices():
    msg = errors_of({"data": {"corruptions": ["fog", "gausian_noise"]}})
    assert "data.corruptions[1]" in msg and "'gausian_noise'" in msg
    assert "did you mean 'gaussian_noise'" in msg
    assert all(name in msg for name in COMMON_CORRUPTIONS)


def test_unknown_key_lists_valid_keys():
    msg = errors_of({"data": {"severitys": [1]}})
    assert "data.severitys: unknown key" in msg and "did you mean 'severities'" in msg
    assert "valid keys here:" in msg and "corruptions" in msg
    assert "scorerz" in errors_of({"scorerz": {}})


def test_impossible_values():
    assert "data.severities[0]: 6 is not valid; valid choices: 1, 2, 3, 4, 5" in errors_of({"data": {"severities": [6]}})
    assert "analysis.test_fraction" in errors_of({"analysis": {"test_fraction": 1.5}})
    assert "scoring.batch_size" in errors_of({"scoring": {"batch_size": 0}})
    assert "'gpu' is not a device" in errors_of({"scoring": {"device": "gpu"}})
    assert "mixture fractions" in errors_of({"analysis": {"mixture_fractions": [0.0, 0.5]}})
    assert "must not be empty" in errors_of({"data": {"severities": []}})


def test_every_problem_is_reported_at_once():
    msg = errors_of({"data": {"severities": [9]}, "scoring": {"device": "tpu"}, "oops": 1})
    assert msg.count("\n  - ") == 3


def test_scorer_specs_are_checked():
    msg = errors_of({"scorers": {"a": "torchvison:resnet34", "b": {"spec": "tv", "foo": 1}, "c": 3}})
    assert "scorers.a: unknown scorer family 'torchvison'" in msg and "torchvision" in msg
    assert "scorers.b: unknown option(s) ['foo']" in msg
    assert "scorers.c:" in msg
    assert "open_clip:<arch>/<pretrained>" in errors_of({"scorers": {"z": "open_clip:ViT-B-32"}})
    assert "lite0, lite1, lite2" in errors_of({"scorers": {"e": "efficientnet_lite:lite9"}})
    assert "each names a file" in errors_of({"scorers": {"bad name": "tv"}})


def test_task_models_must_be_configured_classifiers():
    scorers = {"tv": "tv", "lite0": "efficientnet_lite:lite0"}
    ok = validate_params({"scorers": scorers, "analysis": {"task_models": ["lite0"]}})
    assert ok.scorer_spec("lite0").kind == "classifier"
    assert "valid choices: tv, lite0" in errors_of({"scorers": scorers, "analysis": {"task_models": ["lite1"]}})
    assert "no-reference" in errors_of({"scorers": scorers, "analysis": {"task_models": ["tv"]}})


def test_load_params_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump({"data": {"check": "thorough"}}))
    with pytest.raises(ConfigError, match=r"wrong.yaml is invalid:\n  - data.check: 'thorough'"):
        load_params(wrong)


def test_paper_profile_is_valid_and_names_the_papers_models():
    params = load_params(REPO_ROOT / "profiles" / "paper.yaml")
    assert params.analysis.task_models == ["resnet34", "convnext_base", "swin_b"]
    kinds = {name: params.scorer_spec(name).kind for name in params.scorers}
    assert sorted(n for n, k in kinds.items() if k == "nr_iqa") == ["arniqa", "brisque", "clipiqa", "tv"]
    assert [n for n, k in kinds.items() if k == "zero_shot"] == ["zsclip"]
    assert not params.data.renders_corruptions and params.data.imagenet_c_dir == "data/imagenet-c"



@pytest.mark.parametrize("path", ["params.yaml", "profiles/paper.yaml", "docs/mini-reproduction/params.yaml"])
def test_every_shipped_params_file_names_every_key_dvc_reads(path):
    # dvc stops a repro with "Parameters ... are missing" for a key absent from params.yaml,
    # even where the kit's own default would do: a shipped profile must name them all.
    load_params(REPO_ROOT / path)
    assert "scoring.decode_on_device" in dvc_param_keys(REPO_ROOT / "dvc.yaml")
    assert missing_dvc_params(yaml.safe_load((REPO_ROOT / path).read_text()), REPO_ROOT / "dvc.yaml") == []


def test_validate_names_the_keys_dvc_would_miss(tmp_path, monkeypatch, capsys):
    from iqa_lib.cli import main

    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    del raw["scoring"]["decode_on_device"], raw["data"]["geometry"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    (tmp_path / "dvc.yaml").write_text((REPO_ROOT / "dvc.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    assert main(["validate"]) == 2
    err = capsys.readouterr().err
    assert "data.geometry, scoring.decode_on_device" in err and "dvc repro would stop" in err
    (tmp_path / "dvc.yaml").unlink()  # without a pipeline the kit's defaults do
    assert main(["validate"]) == 0


@pytest.mark.parametrize(("key", "value"), [("batch_size", True), ("batch_size", "32"), ("decode_once", "yes"),
                                            ("part_size", 4096.5), ("decode_on_device", 1)])
def test_values_of_the_wrong_type_are_named_not_coerced(key, value):
    # `batch_size: true` used to become 1, `"32"` 32 and `decode_once: "yes"` True without a word
    assert f"scoring.{key}" in errors_of({"scoring": {key: value}})
