"""`dvc repro` end to end in a temporary copy of the repository, on a tiny configuration."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from iqa_lib.data.quickstart import QUICKSTART_IMAGES
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.skipif(shutil.which("dvc") is None or shutil.which("git") is None, reason="needs dvc and git")


def run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def _in_a_virtualenv(name: str) -> bool:
    """A path inside a virtual environment (a folder holding pyvenv.cfg), whatever its name."""
    parts = Path(name).parts
    return any((REPO_ROOT.joinpath(*parts[:i]) / "pyvenv.cfg").is_file() for i in range(1, len(parts)))


@pytest.fixture
def repo_copy(tmp_path) -> Path:
    """What git tracks, plus uncommitted new files inside the folders git tracks.

    Untracked top-level folders (a virtual environment under any name, a user's data) are
    never copied, and neither is a virtual environment anywhere: the copy costs the same
    whatever sits in the checkout.
    """
    def listed(*flags: str) -> list[str]:
        out = subprocess.run(["git", "ls-files", "-z", *flags], cwd=REPO_ROOT, capture_output=True,
                             text=True, check=True).stdout
        return [name for name in out.split("\0") if name]

    tracked = listed("--cached")
    folders = {Path(name).parts[0] for name in tracked if len(Path(name).parts) > 1}
    new = [name for name in listed("--others", "--exclude-standard")
           if len(Path(name).parts) > 1 and Path(name).parts[0] in folders]
    dst = tmp_path / "repo"
    for name in tracked + new:
        if _in_a_virtualenv(name):
            continue
        src = REPO_ROOT / name
        if src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)
    run(["git", "init", "-q"], dst)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"], dst)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "copy"], dst)
    return dst


def check_executed_notebooks(repo: Path) -> None:
    """Every stage after the manifest ran a notebook: .ipynb and offline HTML, figures drawn."""
    notebooks = repo / "results" / "notebooks"
    names = ["score_tv", "score_lite0", "correctness_lite0", "analysis", "describe", "section4_nr_iqa",
             "section5_strong_tg", "section6_zsclip", "appendix_g_content", "section6_3_mixtures", "figures", "prior"]
    for name in names:
        assert (notebooks / f"{name}.ipynb").is_file() and (notebooks / f"{name}.html").is_file(), name
    assert json.loads((repo / "results" / "correctness" / "lite0" / "summary.json").read_text())
    from chromium import chromium_path, inspect_page

    if chromium_path() is None:
        return
    from PIL import Image

    for name in ("analysis", "figures"):  # the gallery holds every section's figures
        page = inspect_page(notebooks / f"{name}.html", repo / f"{name}.png")
        assert page.requests == [] and page.errors == [], name
        shot = np.asarray(Image.open(page.screenshot).convert("L"))
        assert shot.shape[0] > 1500 and shot.std() > 20, name


# What differs from run to run and must not reach an output dvc.lock records: papermill's and
# nbclient's times (ISO dates, "duration"), papermill's temporary output name, scoring progress
# lines and timings (iqa_lib.pipeline.notebook_runner.deterministic), a random injected-parameters cell id.
RUN_STAMPS = re.compile(r'\d{4}-\d\d-\d\dT\d\d:\d\d|"duration"|\.running-\d+|img/s|\d\.\ds in all')


def lock_outs(repo: Path) -> dict[str, str]:
    """Every output's hash as dvc.lock records it."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {out["path"]: out.get("md5") for stage in lock["stages"].values() for out in stage.get("outs", [])}


def check_outputs_reproduce(repo: Path) -> None:
    """A rerun writes the bytes dvc.lock recorded (a fresh clone's `dvc repro` leaves the lock as
    committed): the executed notebooks and their HTML hold no run stamps nor the checkout's path,
    and forcing the analysis and a section (figures, tables, metrics, notebooks) changes no hash."""
    for path in sorted((repo / "results" / "notebooks").iterdir()):
        text = path.read_text()
        stamp = RUN_STAMPS.search(text)
        assert stamp is None, f"{path.name}: {text[max(0, stamp.start() - 80):stamp.end() + 40]!r}"
        assert str(repo) not in text and str(repo.parent) not in text, path.name
        if path.suffix == ".ipynb":  # the HTML shows cell ids: papermill's injected cell has a random one
            ids = [cell["id"] for cell in json.loads(text)["cells"]
                   if "injected-parameters" in cell["metadata"].get("tags", [])]
            assert set(ids) <= {"injected-parameters"}, (path.name, ids)
    locked = lock_outs(repo)
    assert len(locked) > 20 and all(locked.values()), locked
    run(["dvc", "repro", "-f", "-s", "analyze", "section@section4_nr_iqa"], repo)
    changed = {path for path, md5 in lock_outs(repo).items() if md5 != locked[path]}
    assert not changed, f"not reproduced by a rerun: {sorted(changed)}"


def set_params(repo: Path, section: str = "data", **values) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    if isinstance(params.get(section), dict) and section != "scorers":
        params[section].update(values)
    else:
        params[section] = values
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def tiny(repo: Path) -> None:
    """Two corruptions x two severities of the quickstart set; TV and EfficientNet-Lite0."""
    set_params(repo, corruptions=["fog", "contrast"], severities=[1, 2])
    set_params(repo, "scorers", tv="tv", lite0="efficientnet_lite:lite0")
    set_params(repo, "analysis", task_models=["lite0"], n_bootstrap=50, mixture_fractions=[0.2, 0.5])


@pytest.mark.slow
def test_dvc_repro_builds_every_table_and_is_idempotent(repo_copy):
    tiny(repo_copy)
    run(["dvc", "repro"], repo_copy)
    check_outputs_reproduce(repo_copy)
    manifest = pd.read_parquet(repo_copy / "data" / "manifest.parquet")
    n = len(QUICKSTART_IMAGES)
    counts = manifest.groupby(["corruption", "severity"]).size().to_dict()
    assert counts == {("clean", 0): n, ("contrast", 1): n, ("contrast", 2): n, ("fog", 1): n, ("fog", 2): n}
    assert (manifest.groupby("image_id")["label"].nunique() == 1).all()

    for section in ("section4_nr_iqa", "section5_strong_tg", "appendix_g_content", "section6_3_mixtures"):
        assert any((repo_copy / "results" / "tables" / section).glob("*.md")), section
        assert any((repo_copy / "results" / "figures" / section).glob("*.png")), section
        assert (repo_copy / "results" / "notebooks" / f"{section}.html").is_file()
    # no zero-shot scorer configured: the section explains itself instead of failing
    assert (repo_copy / "results" / "tables" / "section6_zsclip" / "NOTE.md").is_file()
    check_table1_against_score_files(repo_copy)
    check_executed_notebooks(repo_copy)
    check_metrics_show_is_narrow(repo_copy)
    describe = pd.read_csv(repo_copy / "results" / "distribution" / "q_distribution.csv")
    assert set(describe["scorer"]) == {"tv", "lite0"} and len(describe) == 5 * 4  # 5 groups x 4 Q

    second = run(["dvc", "repro"], repo_copy)
    assert "didn't change" in second and "Running stage" not in second

    # a new scorer reruns its own stage and what reads it, nothing upstream or beside it
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["scorers"]["brisque"] = "brisque"  # the cheapest scorer that is not there yet
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # --dry: which stages would run is the DAG's answer; running them adds nothing to this test
    added = run(["dvc", "repro", "--dry", "analyze"], repo_copy)  # the sections follow analyze
    ran = {line.split("'")[1] for line in added.splitlines() if line.startswith("Running stage")}
    assert "score@brisque" in ran and "analyze" in ran
    assert not ran & {"prepare", "manifest", "score@tv", "score@lite0"}

    # changing the corruptions reruns the data stages and the manifest follows
    set_params(repo_copy, corruptions=["fog", "contrast", "brightness"], severities=[1])
    third = run(["dvc", "repro", "manifest"], repo_copy)  # what follows the manifest is shown above
    assert "Running stage 'prepare'" in third and "Running stage 'manifest'" in third
    manifest = pd.read_parquet(repo_copy / "data" / "manifest.parquet")
    assert sorted(manifest["severity"].unique()) == [0, 1]
    assert sorted(manifest["corruption"].unique()) == ["brightness", "clean", "contrast", "fog"]


@pytest.mark.slow
def test_dvc_repro_on_clean_images_only(repo_copy):
    """Own images without ImageNet-C: the pipeline runs to the end and says what it skipped."""
    set_params(repo_copy, generate_corruptions=False)
    set_params(repo_copy, "scorers", tv="tv", lite0="efficientnet_lite:lite0")
    set_params(repo_copy, "analysis", task_models=["lite0"], n_bootstrap=50)
    # the sections read below run as notebooks to the end (the others on clean-only data run in
    # test_sections, in process; correctness and describe are the idempotent test's)
    sections = ["section4_nr_iqa", "section6_3_mixtures"]
    run(["dvc", "repro", *(f"section@{name}" for name in sections), "prior"], repo_copy)
    results = repo_copy / "results"
    table1 = pd.read_csv(results / "tables" / "section4_nr_iqa" / "table1_nr_iqa.csv")
    assert table1["auc"].notna().all() and table1["srcc"].isna().all()
    assert "at least 3" in (results / "figures" / "section4_nr_iqa" / "NOTE.md").read_text()
    assert "mixtures need" in (results / "tables" / "section6_3_mixtures" / "NOTE.md").read_text()
    assert (results / "notebooks" / "section6_3_mixtures.html").is_file()
    # no corruption to hold out: the prior stage says so instead of failing
    assert "leave-one-corruption-out needs" in (results / "prior" / "NOTE.md").read_text()
    assert (results / "notebooks" / "prior.html").is_file()


def check_metrics_show_is_narrow(repo: Path) -> None:
    """`dvc metrics show`: one row per section file, the same few keys in each (at most 12)."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(["dvc", "metrics", "show", "--json"], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=300, check=True)
    files: dict[str, dict] = {}

    def walk(node) -> None:
        for key, value in node.items() if isinstance(node, dict) else ():
            if key.endswith(".json") and isinstance(value, dict) and "data" in value:
                files[key] = value["data"]
            else:
                walk(value)

    walk(json.loads(proc.stdout))
    assert len(files) == 5, files
    for name, metrics in files.items():
        assert isinstance(metrics, dict) and 0 < len(metrics) <= 11, (name, metrics)  # + Path: <= 12
        assert all(not isinstance(v, dict) for v in metrics.values()), (name, metrics)  # flat: no sub-columns


def check_table1_against_score_files(repo: Path) -> None:
    """Table 1's numbers recomputed from the score files with scipy and scikit-learn."""
    from scipy import stats
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss, roc_auc_score

    from iqa_lib.stats.splits import group_test_mask

    scores = repo / "results" / "scores"
    keys = ["image_id", "corruption", "severity"]
    df = pd.read_parquet(scores / "tv.parquet").merge(
        pd.read_parquet(scores / "lite0.parquet")[[*keys, "correct"]], on=keys
    )
    table = pd.read_csv(repo / "results" / "tables" / "section4_nr_iqa" / "table1_nr_iqa.csv")
    row = table[(table["task_model"] == "lite0") & (table["scorer"] == "tv")].iloc[0]

    groups = df[df["corruption"] != "clean"].groupby(["corruption", "severity"])
    means = groups.agg(acc=("correct", "mean"), q=("q", "mean"))
    assert row["srcc"] == pytest.approx(abs(stats.spearmanr(means["q"], means["acc"]).statistic), abs=1e-9)
    assert row["plcc"] == pytest.approx(abs(stats.pearsonr(means["q"], means["acc"]).statistic), abs=1e-9)
    assert row["krcc"] == pytest.approx(abs(stats.kendalltau(means["q"], means["acc"]).statistic), abs=1e-9)

    codes = pd.Index(sorted(df["image_id"].unique())).get_indexer(df["image_id"])
    test = group_test_mask(codes, 0.2, 0)
    x, y = df[["q"]].to_numpy(), df["correct"].astype(int).to_numpy()
    fit = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(x[~test], y[~test])
    assert row["auc"] == pytest.approx(roc_auc_score(y[test], fit.decision_function(x[test])), abs=1e-9)
    assert row["ce"] == pytest.approx(log_loss(y[test], fit.predict_proba(x[test])[:, 1]), abs=1e-4)


def test_paper_profile_dag_shows_every_stage(repo_copy):
    shutil.copy(repo_copy / "profiles" / "paper.yaml", repo_copy / "params.yaml")
    dag = run(["dvc", "dag", "--dot"], repo_copy)
    scorers = ["clipiqa", "arniqa", "brisque", "tv", "resnet34", "convnext_base", "swin_b", "zsclip"]
    sections = ["section4_nr_iqa", "section5_strong_tg", "section6_zsclip", "appendix_g_content", "section6_3_mixtures"]
    task_models = ["resnet34", "convnext_base", "swin_b"]
    for stage in ["prepare", "manifest", "analyze", "describe", "prior", "figures",
                  *(f"score@{s}" for s in scorers), *(f"section@{s}" for s in sections),
                  *(f"correctness@{m}" for m in task_models)]:
        assert stage in dag, stage
