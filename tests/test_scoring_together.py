"""Several scorers over one decode (``run_scoring_many``): each output equals its scorer's run alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pandas.testing as pdt
import pytest
import torch

from iqa_lib.scorers.registry import build_scorer
from iqa_lib.scoring import complete, parts
from iqa_lib.scoring.dataset import ManifestImages
from iqa_lib.scoring.engine import ScoringJob, run_scoring, run_scoring_many
from iqa_lib.scoring.stream import KILL_AFTER_PARTS_ENV
from tests.conftest import write_image

REPO = Path(__file__).resolve().parents[1]
SIZES = [(112, 96), (112, 96), (96, 112), (112, 96), (128, 128)]  # several size groups per batch


def _manifest(tmp: Path, n: int = 29) -> Path:
    rows = []
    for i in range(n):
        path = tmp / "img" / f"im{i:03d}.png"
        if i == 11:  # undecodable: a failure row in every output
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"not an image")
        else:
            write_image(path, SIZES[i % len(SIZES)], seed=i)
        rows.append({"image_id": f"im{i:03d}", "label": i % 1000, "corruption": "gaussian_noise",
                     "severity": 1 + i % 5, "path": str(path)})
    path = tmp / "manifest.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path


# batch sizes that do not divide each other nor the part size: every scorer has its own grid
JOBS = {"tv": 4, "niqe": 3, "efficientnet_lite:lite0": 5}
RUN = {"num_workers": 0, "device": "cpu", "part_size": 8, "progress": False, "geometry": "none"}


def _alone(manifest: Path, folder: Path) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    found = {}
    for spec, batch in JOBS.items():
        out = folder / f"{spec.split(':')[-1]}.parquet"
        run_scoring(spec, manifest, out, batch_size=batch, **RUN)
        found[spec] = (pd.read_parquet(out), pd.read_csv(parts.failures_path(out)))
    return found


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("together")
    manifest = _manifest(tmp)
    return manifest, _alone(manifest, tmp / "alone")


def _jobs(folder: Path, **extra) -> list[ScoringJob]:
    return [ScoringJob(spec, folder / f"{spec.split(':')[-1]}.parquet", batch, **extra)
            for spec, batch in JOBS.items()]


def _assert_same(found: list, reference: dict) -> None:
    for job, (spec, (scores, failures)) in zip(found, reference.items(), strict=True):
        out = Path(job.out)
        pdt.assert_frame_equal(pd.read_parquet(out), scores, check_exact=True, obj=spec)
        pdt.assert_frame_equal(pd.read_csv(parts.failures_path(out)), failures, obj=spec)
        assert complete.record_path(out).is_file()


def test_together_equals_each_scorer_alone_and_decodes_once(reference, tmp_path, monkeypatch):
    manifest, alone = reference
    calls = []
    getitem = ManifestImages.__getitem__
    monkeypatch.setattr(ManifestImages, "__getitem__", lambda self, i: calls.append(i) or getitem(self, i))
    jobs = _jobs(tmp_path)
    results = run_scoring_many(jobs, manifest, **RUN)
    _assert_same(jobs, alone)
    assert sorted(calls) == list(range(len(pd.read_parquet(manifest))))  # each image decoded once
    assert [r.scored_rows for r in results] == [29] * 3
    assert set(results[0].together) == {"niqe", "efficientnet_lite:lite0"}
    assert [r.batch_size for r in results] == list(JOBS.values())
    assert len(alone["tv"][1]) == 1  # the undecodable image is a failure row of each output
    # a second run reuses every output
    again = run_scoring_many(jobs, manifest, **RUN)
    assert all(r.reused and r.scored_rows == 0 for r in again)


def test_together_resumes_each_scorer_from_its_own_state(reference, tmp_path):
    """tv complete, niqe killed after 2 parts, lite0 never run: one run finishes all, as alone."""
    manifest, alone = reference
    jobs = _jobs(tmp_path)
    run_scoring("tv", manifest, jobs[0].out, batch_size=4, **RUN)
    code = (
        "import sys; from iqa_lib.scoring.engine import run_scoring;"
        f"run_scoring('niqe', {str(manifest)!r}, {str(jobs[1].out)!r}, batch_size=3, num_workers=0,"
        "device='cpu', part_size=8, progress=False, geometry='none', part_seconds=1e-9)"
    )
    env = {**os.environ, KILL_AFTER_PARTS_ENV: "2", "PYTHONPATH": str(REPO)}
    killed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    pdir = parts.parts_dir(Path(jobs[1].out))
    assert len(parts.done_chunks(pdir)) == 2
    results = run_scoring_many(jobs, manifest, **RUN)
    assert results[0].reused
    assert results[1].kept_rows >= 16 and results[1].scored_rows == 29 - results[1].kept_rows
    assert results[2].kept_rows == 0
    _assert_same(jobs, alone)


def test_optional_scorers_are_dropped_not_fatal(reference, tmp_path):
    manifest, alone = reference
    tv = build_scorer("tv", "cpu")

    def broken(images, labels=None):
        raise RuntimeError("weights on fire")

    niqe = build_scorer("niqe", "cpu")
    niqe.score = broken
    made_elsewhere = tmp_path / "piqe.parquet"
    made_elsewhere.write_bytes(b"fetched by dvc pull")
    jobs = [
        ScoringJob(tv, tmp_path / "tv.parquet", 4),
        ScoringJob(niqe, tmp_path / "niqe.parquet", 3, optional=True),
        ScoringJob("no_such_scorer", tmp_path / "nope.parquet", optional=True),
        ScoringJob("piqe", made_elsewhere, optional=True),
    ]
    results = run_scoring_many(jobs, manifest, **RUN)
    pdt.assert_frame_equal(pd.read_parquet(tmp_path / "tv.parquet"), alone["tv"][0])
    assert "weights on fire" in results[1].dropped and results[1].scored_rows == 0
    assert not (tmp_path / "niqe.parquet").exists()
    assert parts.parts_dir(tmp_path / "niqe.parquet").is_dir()  # its own run resumes from here
    assert "no_such_scorer" in results[2].dropped
    assert "without a completion record" in results[3].dropped
    assert made_elsewhere.read_bytes() == b"fetched by dvc pull"
    assert results[0].together == ()  # tv's pass ended with no other scorer


def test_a_required_scorer_error_ends_the_run(reference, tmp_path):
    manifest, _ = reference
    niqe = build_scorer("niqe", "cpu")

    def broken(images, labels=None):
        raise RuntimeError("weights on fire")

    niqe.score = broken
    with pytest.raises(RuntimeError, match="weights on fire"):
        run_scoring_many([ScoringJob("tv", tmp_path / "tv.parquet"), ScoringJob(niqe, tmp_path / "n.parquet")],
                         manifest, **RUN)
    with pytest.raises(ValueError, match="same output"):
        run_scoring_many([ScoringJob("tv", tmp_path / "a.parquet"), ScoringJob("niqe", tmp_path / "a.parquet")],
                         manifest, **RUN)


class _Recorder:
    """A scorer that records the rows of every batch it is given."""

    name, columns, needs_labels = "recorder", ("q",), False

    def __init__(self):
        self.device = torch.device("cpu")
        self.batches: list[list[int]] = []

    def score(self, images, labels=None):
        self.batches.append(images[:, 0, 0, 0].tolist())  # pixel (0, 0) holds the row
        return {"q": images[:, 0, 0, 0].double().numpy()}


@pytest.mark.parametrize("load_batch", [3, 7, 16])
def test_each_stream_gets_exactly_its_own_batches(tmp_path, load_batch):
    """Whatever the loader's batches, a stream scores the batches its scorer alone would get."""
    import numpy as np

    from iqa_lib.scoring.dataset import ChunkBatchSampler, collate_images
    from iqa_lib.scoring.stream import ScorerStream, score_streams

    n, part = 45, 16
    done = {1: [17, 18, 19, 25], 2: [32]}  # this scorer's rows in sub-parts of an earlier run
    needed = np.ones(n, dtype=bool)
    for rows in done.values():
        needed[rows] = False
    other = np.zeros(n, dtype=bool)
    other[::2] = True  # another scorer needs every other row: the loader reads the union
    union = needed | other

    def item(row):  # even rows 14x14, odd 10x12: two size groups; row 9 is undecodable
        if row == 9:
            return row, None, "broken"
        shape = (3, 14, 14) if row % 2 == 0 else (3, 10, 12)
        return row, torch.full(shape, row, dtype=torch.uint8), None

    skip = {c: [r for r in range(c * part, min(c * part + part, n)) if not union[r]] for c in range(3)}
    loader = [collate_images([item(r) for r in b])
              for b in ChunkBatchSampler(range(3), part, n, load_batch, skip)]
    alone = [b for b in ChunkBatchSampler(range(3), part, n, 5, done)]
    rec = _Recorder()
    stream = ScorerStream(rec, tmp_path / "p", needed, [0, 1, 2], part, 5, torch.zeros(n, dtype=torch.long))
    (tmp_path / "p").mkdir()
    score_streams({"rec": stream}, loader, [0, 1, 2], 1e9, _NoBar())
    expected = []
    for batch in alone:  # within a batch: one group per size, in order of first appearance
        ok = [r for r in batch if r != 9]
        expected += [g for g in ([r for r in ok if r % 2 == ok[0] % 2], [r for r in ok if r % 2 != ok[0] % 2]) if g]
    assert rec.batches == expected
    assert parts.done_chunks(tmp_path / "p") == {0, 1, 2}


class _NoBar:
    def update(self, n):
        pass


def test_an_optional_output_being_written_elsewhere_is_left_alone(reference, tmp_path):
    from iqa_lib.locks import LockBusy, output_lock

    manifest, alone = reference
    busy = tmp_path / "niqe.parquet"
    with output_lock(busy):  # another run is writing it
        results = run_scoring_many([ScoringJob("tv", tmp_path / "tv.parquet", 4),
                                    ScoringJob("niqe", busy, 3, optional=True)], manifest, **RUN)
        with pytest.raises(LockBusy, match="being written"):
            run_scoring_many([ScoringJob("niqe", busy, 3)], manifest, **RUN)  # required: an error
    assert "another run is writing it" in results[1].dropped and not busy.exists()
    pdt.assert_frame_equal(pd.read_parquet(tmp_path / "tv.parquet"), alone["tv"][0])
