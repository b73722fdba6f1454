from __future__ import annotations

import pandas as pd
import pytest
import yaml

from iqa_lib.cli import main
from tests.conftest import REPO_ROOT, TENCH, write_image


def test_validate_accepts_the_repository_params(capsys):
    assert main(["validate", "--params", str(REPO_ROOT / "params.yaml")]) == 0
    assert "valid" in capsys.readouterr().out


def test_validate_reports_errors_without_traceback(tmp_path, capsys):
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump({"data": {"corruptions": ["fogg"]}, "scorers": {"x": "resnet"}}))
    assert main(["validate", "--params", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "data.corruptions[0]: 'fogg' is not valid (did you mean 'fog'?)" in err
    assert "scorers.x: unknown scorer family 'resnet'" in err
    assert "Traceback" not in err


def test_manifest_command_writes_manifest_and_failures(tmp_path, capsys):
    write_image(tmp_path / "imgs" / TENCH / "a.jpg")
    (tmp_path / "imgs" / TENCH / "b.jpg").write_bytes(b"")
    out = tmp_path / "m" / "manifest.parquet"
    assert main(["manifest", "--clean", str(tmp_path / "imgs"), "--out", str(out)]) == 0
    assert pd.read_parquet(out)["image_id"].tolist() == ["a"]
    assert pd.read_csv(out.with_name("manifest.failures.csv"))["reason"].tolist() == ["zero-byte file"]
    assert "left out 1 undecodable image" in capsys.readouterr().out


def test_manifest_command_error_names_the_folder(tmp_path, capsys):
    assert main(["manifest", "--clean", str(tmp_path / "missing"), "--out", str(tmp_path / "m.parquet")]) == 2
    assert "missing' does not exist" in capsys.readouterr().err


def test_quickstart_command(tmp_path, capsys):
    assert main(["quickstart", "--out", str(tmp_path / "qs")]) == 0
    assert "(espresso)" in capsys.readouterr().out


def test_unknown_command_is_an_argparse_error():
    with pytest.raises(SystemExit):
        main(["frobnicate"])


def test_score_from_params_names_the_valid_scorers(capsys):
    params = str(REPO_ROOT / "params.yaml")
    assert main(["score", "--from-params", "lite9", "--params", params]) == 2
    err = capsys.readouterr().err
    assert "'lite9' is not a scorer" in err and "lite0" in err


def test_score_needs_a_scorer_or_params(capsys):
    assert main(["score", "--manifest", "m.parquet"]) == 2
    assert "--from-params" in capsys.readouterr().err


def test_analyze_from_params_without_scores_names_the_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    assert main(["analyze", "--params", "params.yaml", "--no-progress"]) == 2
    assert "results/scores" in capsys.readouterr().err


def test_notebook_command_reports_a_missing_notebook(tmp_path, capsys):
    assert main(["notebook", str(tmp_path / "none.ipynb"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
