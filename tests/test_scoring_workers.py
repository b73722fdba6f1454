"""Per-image CPU scorers scored inside the loader workers: the outputs of scoring in the process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest
import torch

from iqa_lib.scorers.nr_iqa import TotalVariationScorer
from iqa_lib.scorers.registry import build_scorer
from iqa_lib.scorers.spec import parse_spec
from iqa_lib.scoring import complete, engine, parts, stream
from iqa_lib.scoring.engine import ScoringJob, default_num_workers, run_scoring, run_scoring_many
from tests.test_scoring_together import (
    _manifest,  # 29 rows in several size groups, row 11 undecodable
)

REPO = Path(__file__).resolve().parents[1]
# batch sizes that do not divide each other nor the part size
JOBS = {"tv": 4, "brisque": 6, "niqe": 3, "piqe": 5, "efficientnet_lite:lite0": 5}
RUN = {"num_workers": 2, "device": "cpu", "part_size": 8, "progress": False, "geometry": "none"}


def _jobs(folder: Path, specs: dict[str, int] = JOBS) -> list[ScoringJob]:
    return [ScoringJob(spec, folder / f"{spec.split(':')[-1]}.parquet", batch) for spec, batch in specs.items()]


def _read(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_parquet(out), pd.read_csv(parts.failures_path(out))


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    """Every scorer scored in the scoring process (worker scoring off), together, one pass."""
    tmp = tmp_path_factory.mktemp("in_process")
    manifest = _manifest(tmp)
    mp = pytest.MonkeyPatch()
    mp.setenv(engine.WORKER_SCORING_ENV, "0")
    try:
        jobs = _jobs(tmp / "out")
        run_scoring_many(jobs, manifest, **RUN)
    finally:
        mp.undo()
    return manifest, {spec: _read(Path(j.out)) for spec, j in zip(JOBS, jobs, strict=True)}


def _assert_same(jobs: list[ScoringJob], reference: dict) -> None:
    for job in jobs:
        spec = str(job.spec)
        scores, failures = _read(Path(job.out))
        pdt.assert_frame_equal(scores, reference[spec][0], check_exact=True, obj=spec)
        pdt.assert_frame_equal(failures, reference[spec][1], obj=spec)
        assert complete.record_path(Path(job.out)).is_file()


@pytest.mark.parametrize("workers", [0, 2])
def test_workers_score_what_the_process_scores(in_process, tmp_path, workers, monkeypatch):
    manifest, reference = in_process
    fed = []
    feed = stream.ScorerStream.feed
    monkeypatch.setattr(stream.ScorerStream, "feed", lambda self, b, r: fed.append((self.key, b)) or feed(self, b, r))
    jobs = _jobs(tmp_path)
    results = run_scoring_many(jobs, manifest, **{**RUN, "num_workers": workers})
    _assert_same(jobs, reference)
    assert [r.scored_rows for r in results] == [29] * len(JOBS)
    assert len(reference["tv"][1]) == 1  # the undecodable image is a failure row of each output
    keys = {key for key, _ in fed}
    assert keys == {str(j.out) for j in jobs[:4]} | {None}  # the per-image four in the workers, lite0 not
    # loader batches hold whole batches of every per-image scorer (lcm of 4, 6, 3, 5 = 60 rows): whole parts
    assert {len(b.rows) for _, b in fed} == {8, 5}


def test_workers_alone_send_rows_not_pixels(in_process, tmp_path, monkeypatch):
    manifest, reference = in_process
    seen = []
    feed = stream.ScorerStream.feed
    monkeypatch.setattr(stream.ScorerStream, "feed", lambda self, b, r: seen.append(b) or feed(self, b, r))
    specs = {"tv": 4, "piqe": 5}
    jobs = _jobs(tmp_path, specs)
    run_scoring_many(jobs, manifest, **RUN)
    _assert_same(jobs, reference)
    assert seen and all(not b.groups and not b.failures and b.scored for b in seen)


def test_a_resume_in_the_workers_gives_the_same_rows(in_process, tmp_path):
    """Killed after two parts (worker scoring, sub-parts every batch), then resumed: the same outputs."""
    manifest, reference = in_process
    jobs = _jobs(tmp_path, {"tv": 4, "niqe": 3})
    code = (
        "from iqa_lib.scoring.engine import ScoringJob, run_scoring_many;"
        f"run_scoring_many([ScoringJob('tv', {str(jobs[0].out)!r}, 4), ScoringJob('niqe', {str(jobs[1].out)!r}, 3)],"
        f" {str(manifest)!r}, num_workers=2, device='cpu', part_size=8, progress=False, geometry='none',"
        " part_seconds=1e-9)"
    )
    env = {**os.environ, stream.KILL_AFTER_PARTS_ENV: "2", "PYTHONPATH": str(REPO)}
    killed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    results = run_scoring_many(jobs, manifest, **RUN)
    assert sum(r.kept_rows for r in results) >= 8
    _assert_same(jobs, reference)


class _Picky(TotalVariationScorer):
    """TV that refuses dark images (a scorer error on one image)."""

    def score(self, images, labels):
        if (images.float().mean(dim=(1, 2, 3)) < 1).any():
            raise ValueError("black image")
        return super().score(images, labels)


class _Broken(TotalVariationScorer):
    def score(self, images, labels):
        raise RuntimeError("scorer bug")


def test_scorer_errors_in_the_workers_are_those_of_the_process(tmp_path):
    from PIL import Image

    manifest = _manifest(tmp_path, n=12)
    frame = pd.read_parquet(manifest)
    Image.new("RGB", (112, 96)).save(frame.loc[1, "path"])  # black: _Picky rejects it
    picky = _Picky(parse_spec("tv"), torch.device("cpu"))
    assert picky.scores_in_workers
    out = run_scoring(picky, manifest, tmp_path / "o.parquet", batch_size=4, **RUN).out
    fails = pd.read_csv(parts.failures_path(out))
    assert fails["image_id"].tolist() == ["im001", "im011"]
    assert "black image" in fails["reason"][0]
    with pytest.raises(RuntimeError, match=r"scorer bug \(every image of this size failed: 'im"):
        run_scoring(_Broken(parse_spec("tv"), torch.device("cpu")), manifest, tmp_path / "b.parquet",
                    batch_size=4, **RUN)
    # optional: dropped, the others go on, its parts so far kept for its own run
    jobs = [ScoringJob("tv", tmp_path / "tv.parquet", 4),
            ScoringJob(_Broken(parse_spec("tv"), torch.device("cpu")), tmp_path / "x.parquet", 4, optional=True)]
    results = run_scoring_many(jobs, manifest, **RUN)
    assert "scorer bug" in results[1].dropped and not (tmp_path / "x.parquet").exists()
    assert len(pd.read_parquet(tmp_path / "tv.parquet")) == 11


def test_networks_and_other_devices_keep_the_batched_path():
    cpu = torch.device("cpu")
    assert build_scorer("tv", "cpu").scores_in_workers
    assert build_scorer("piqe", "cpu").scores_in_workers
    assert not build_scorer("efficientnet_lite:lite0", "cpu").scores_in_workers
    settings = engine.RunSettings()
    assert engine.worker_scoring(cpu, settings)
    assert not engine.worker_scoring(cpu, engine.RunSettings(decode_on_device=True))
    assert not engine.worker_scoring(torch.device("cuda"), settings)


def test_loader_batch_holds_whole_scorer_batches():
    assert stream.loader_batch_size([32], [64]) == 64
    assert stream.loader_batch_size([32], [64, 32, 32]) == 64
    assert stream.loader_batch_size([5], [4, 3]) == 12
    assert stream.loader_batch_size([100], [4, 3]) == 108
    assert stream.loader_batch_size([], [1000, 999]) is None  # too big a common multiple: scored in the process
    assert stream.loader_batch_size([], [2048]) == 2048


@pytest.mark.parametrize(
    ("cpus", "shares", "workers"),
    [
        (2, [], 1), (16, [], 4), (16, [None, None], 4),  # networks only: as before
        (2, [0.2], 2), (16, [0.2, 3.0, 3.3, 1.5], 16),  # every scorer per-image: every core
        (16, [0.2, None], 1), (16, [3.0, 3.3, None], 3), (2, [3.0, None], 1), (64, [0.2, None], 2),
    ],
)
def test_workers_sized_to_the_machine_and_the_scorers(monkeypatch, cpus, shares, workers):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_num_workers(torch.device("cpu"), shares) == workers


def test_a_run_sizes_its_workers_unless_told(tmp_path, monkeypatch):
    manifest = _manifest(tmp_path, n=4)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    kw = {**RUN, "num_workers": None}
    assert run_scoring("tv", manifest, tmp_path / "a.parquet", **kw).num_workers == 3
    assert run_scoring("tv", manifest, tmp_path / "b.parquet", **RUN).num_workers == 2  # --num-workers wins
    monkeypatch.setenv(engine.WORKER_SCORING_ENV, "0")
    assert run_scoring("tv", manifest, tmp_path / "c.parquet", **kw).num_workers == 1  # the old default


def test_a_worker_cuts_its_batch_into_the_scorers_batches():
    n = 10
    needed = np.ones(n, dtype=bool)
    needed[[2, 7]] = False  # scored before (sub-parts)
    tv = build_scorer("tv", "cpu")
    s = stream.ScorerStream(tv, Path("unused"), needed, [0, 1], 8, 3, torch.zeros(n, dtype=torch.long))
    collate = stream.WorkerScoring.of({"tv": s}, pixels=False)
    rng = np.random.default_rng(0)
    items = [(r, torch.from_numpy(rng.integers(0, 255, (3, 5, 6), dtype=np.uint8)), None) for r in range(8)]
    items[4] = (4, None, "zero-byte file")
    batch = collate(items)
    cells = batch.scored["tv"]
    assert [c.cell for c in cells] == [(0, 0), (0, 3), (0, 6)]
    assert [c.count for c in cells] == [2, 3, 1]
    assert cells[1].failures == [(4, "zero-byte file")]
    assert [r.tolist() for r, _, _ in cells[1].scored] == [[3, 5]]
    assert not batch.groups and batch.rows.tolist() == list(range(8))
