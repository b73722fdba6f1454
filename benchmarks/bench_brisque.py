"""BRISQUE per core: the kit's batched torch BRISQUE against the ``brisque`` wheel (issue 15).

On the same N 224 x 224 RGB images (ImageNet-sample JPEGs, Resize(256) +
CenterCrop(224) as the clean-image loader does, decoded once to uint8; a
synthetic natural-ish set when the sample folder is absent), each arm in its
own subprocess with one thread (``OMP/MKL/OPENBLAS_NUM_THREADS=1``,
``torch.set_num_threads(1)``), decode excluded:

* ``wheel``: ``brisque.BRISQUE().score(img)`` per image, the package the
  issue names as the baseline (its own re-trained SVM and other features, so
  its scores are not comparable; only its speed is), with the numpy-2 fix of
  its feature scaling that the kit's old wrapper applied;
* ``kit``: :class:`iqa_lib.scorers.brisque.BrisqueScorer` through its batch
  API (``score``) at the engine's default CPU batch (``default_batch_size``);
* ``kit1``: the same scorer one image at a time (batch 1), the unbatched
  reference: the batched scores must equal it (max |diff| reported);
* ``kitall`` (not in the default arms): the kit's batch path with one torch
  thread per available core, as the engine runs it (``by_chunks`` scores
  chunks of a few images in that many threads): images/s of the whole machine;
* ``base`` (with ``--base-tree DIR``): the kit's batch path imported from
  another source tree, e.g. a copy of the code before a change
  (``mkdir /tmp/base && git archive HEAD iqa_lib | tar -x -C /tmp/base``): its
  speed, and max |q - q_base|.

Arms are interleaved for ``--reps`` rounds (default 3, the order reversed
every other round) and the median images/s of each is reported with the
ratios kit/wheel and kit/kit1, both medians of the per-round ratios and
ratios of the medians; also images per second of the process's CPU time
(robust to other jobs taking the core away on a shared machine) and minor
page faults per image. One warm-up image per arm and process is excluded. ``--profile`` adds a cProfile of the kit's (and the
base's) batch path in round 0, which is then not counted: cumulative seconds
per stage (gray conversion, MSCN with its Gaussian filter, pair products,
moments, GGD/AGGD fits, half-scale resize, scaling and SVR). Compiled (numba)
kernels are invisible to cProfile: their time counts in the Python function
that calls them (e.g. the fused products and sums in brisque_scale_features).

``--compare FILE.npy`` reports max |q - q_file| of the kit's batched scores
against scores saved before (``--save FILE.npy``), to check that a change to
the implementation keeps the scores.

    python benchmarks/bench_brisque.py                     # 200 images, 3 rounds
    python benchmarks/bench_brisque.py --images 64 --reps 5 --profile
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "imagenet-sample"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
ARMS = ("wheel", "kit", "kit1")
ALL_ARMS = (*ARMS, "kitall")
BASE_TREE = "BENCH_BRISQUE_BASE_TREE"


# ---------------------------------------------------------------- images


def load_images(sample: Path, n: int):
    """(n, 224, 224, 3) uint8: sample JPEGs (cycled) as the clean loader crops them."""
    import numpy as np

    files = sorted(sample.glob("*.JPEG")) if sample.is_dir() else []
    if not files:
        return synthetic_images(n), "synthetic"
    from PIL import Image

    out = np.empty((n, 224, 224, 3), np.uint8)
    for i in range(n):
        with Image.open(files[i % len(files)]) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = 256 / min(w, h)
            im = im.resize((max(256, round(w * s)), max(256, round(h * s))), Image.BILINEAR)
            w, h = im.size
            left, top = (w - 224) // 2, (h - 224) // 2
            out[i] = np.asarray(im.crop((left, top, left + 224, top + 224)))
    return out, f"{sample} ({len(files)} files, cycled)"


def synthetic_images(n: int):
    """Smooth gradients, edges, texture and noise: no flat image (BRISQUE is defined)."""
    import numpy as np

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:224, 0:224] / 224.0
    out = np.empty((n, 224, 224, 3), np.uint8)
    for i in range(n):
        a, b, c = rng.uniform(0.5, 6, 3)
        base = 0.5 + 0.3 * np.sin(a * xx + b * yy) + 0.15 * (xx > rng.uniform(0.2, 0.8))
        tex = 0.05 * np.sin(c * 40 * xx) * np.cos(c * 35 * yy)
        for ch in range(3):
            img = (
                base * rng.uniform(0.7, 1.0) + tex + rng.normal(0, 0.02 + 0.03 * (i % 4), xx.shape)
            )
            out[i, :, :, ch] = np.clip(img * 255, 0, 255).astype(np.uint8)
    return out


# ---------------------------------------------------------------- one arm (subprocess)


def run_arm(arm: str, images_file: str, out_file: str, profile: bool) -> None:
    import resource

    import numpy as np
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)) if arm == "kitall" else 1)
    images = np.load(images_file)
    n = len(images)
    if arm == "wheel":
        obj = wheel_brisque()
        obj.score(images[0])  # warm-up
        q = np.empty(n)
        f0, c0, t0 = (
            resource.getrusage(resource.RUSAGE_SELF).ru_minflt,
            time.process_time(),
            time.perf_counter(),
        )
        for i in range(n):
            q[i] = obj.score(images[i])
        dt = time.perf_counter() - t0
        batch = threads = 1
    else:
        sys.path.insert(0, os.environ[BASE_TREE] if arm == "base" else str(REPO))
        from iqa_lib.scorers.registry import build_scorer
        from iqa_lib.scoring.engine import default_batch_size

        dev = torch.device("cpu")
        scorer = build_scorer("brisque", device=dev, warn=False)
        batch = 1 if arm == "kit1" else default_batch_size(scorer.spec, dev)
        threads = torch.get_num_threads()
        x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        scorer.score(x[:1], None)  # warm-up (numba kernel, tables)
        parts = []
        prof = None
        if profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        f0, c0, t0 = (
            resource.getrusage(resource.RUSAGE_SELF).ru_minflt,
            time.process_time(),
            time.perf_counter(),
        )
        for i in range(0, n, batch):
            parts.append(scorer.score(x[i : i + batch], None)["q"])
        dt = time.perf_counter() - t0
        if prof is not None:
            prof.disable()
            stages(prof, dt, n)
        q = np.concatenate(parts)
    cpu = time.process_time() - c0
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    np.save(out_file + ".npy", q)
    result = {
        "arm": arm,
        "n": n,
        "seconds": dt,
        "cpu_seconds": cpu,
        "faults": faults,
        "batch": batch,
    }
    result["threads"] = threads
    Path(out_file).write_text(json.dumps(result))


def wheel_brisque():
    """The wheel's BRISQUE as the kit wrapped it (until bbc5a88): upstream's ``scale_features``
    calls ``float()`` on 1-element arrays, which numpy 2 refuses; the same numpy-2-safe
    override as the old wrapper (negligible cost: 36 numbers per image)."""
    import numpy as np
    from brisque import BRISQUE

    class OfflineBRISQUE(BRISQUE):
        def scale_features(self, features):
            f = np.array([np.asarray(v, dtype=np.float64).reshape(-1)[0] for v in features])
            lo = np.asarray(self.scale_params["min_"], dtype=np.float64).reshape(-1)
            hi = np.asarray(self.scale_params["max_"], dtype=np.float64).reshape(-1)
            return -1.0 + 2.0 / (hi - lo) * (f - lo)

    return OfflineBRISQUE(url=False)


STAGES = (
    ("gray conversion (matlab_rgb2gray)", "nss.py", "matlab_rgb2gray"),
    ("MSCN total, both scales (mscn)", "nss.py", "mscn"),
    ("  of which Gaussian filter (gaussian_filter)", "nss.py", "gaussian_filter"),
    ("pair products (pair_products)", "nss.py", "pair_products"),
    ("sums for the fits (moments)", "nss.py", "moments"),
    ("GGD fits (ggd_fit, incl. its moments)", "nss.py", "ggd_fit"),
    ("AGGD fits (aggd_fit, incl. its moments)", "nss.py", "aggd_fit"),
    ("half-scale resize (imresize_half)", "nss.py", "imresize_half"),
    ("one scale's 18 features (brisque_scale_features)", "nss.py", "brisque_scale_features"),
    ("feature scaling (scale_features)", "brisque.py", "scale_features"),
    ("SVR (svr_predict)", "brisque.py", "svr_predict"),
    ("all features (brisque_features)", "nss.py", "brisque_features"),
)


def stages(prof, total: float, n: int) -> None:
    import pstats

    st = pstats.Stats(prof).stats  # (file, line, name) -> (cc, nc, tt, ct, callers)
    tree = os.environ.get(BASE_TREE) if "base" in sys.argv else str(REPO)
    print(
        f"profile of the batched path of {tree} ({n} images, {total:.2f} s under cProfile):",
        file=sys.stderr,
    )
    for label, file, name in STAGES:
        ct = sum(v[3] for k, v in st.items() if k[2] == name and k[0].endswith(file))
        print(
            f"  {label:46s} {ct:7.3f} s  {100 * ct / total:5.1f}%  {1e3 * ct / n:6.2f} ms/img",
            file=sys.stderr,
        )


# ---------------------------------------------------------------- driver


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--sample", type=Path, default=SAMPLE)
    p.add_argument(
        "--arms", default=",".join(ARMS), help="comma-separated, of " + ",".join(ALL_ARMS)
    )
    p.add_argument(
        "--base-tree", type=Path, help="add the arm 'base': the kit from this source tree"
    )
    p.add_argument("--profile", action="store_true", help="cProfile the kit's batch path once")
    p.add_argument("--save", type=Path, help="save the kit's batched scores (.npy)")
    p.add_argument(
        "--compare", type=Path, help="max |diff| of the kit's batched scores against a saved .npy"
    )
    p.add_argument("--json", type=Path, help="write the summary here")
    p.add_argument("--_arm", help=argparse.SUPPRESS)
    p.add_argument("--_images_file", help=argparse.SUPPRESS)
    p.add_argument("--_out", help=argparse.SUPPRESS)
    return p


@dataclass
class Tally:
    """Every arm's rates per counted round, its scores, batch size and threads."""

    arms: list[str]
    rates: dict[str, list[float]] = field(default_factory=dict)
    cpu_rates: dict[str, list[float]] = field(default_factory=dict)
    faults: dict[str, list[float]] = field(default_factory=dict)
    scores: dict[str, Any] = field(default_factory=dict)
    batch: dict[str, int] = field(default_factory=dict)
    threads: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for rates in (self.rates, self.cpu_rates, self.faults):
            rates.update({arm: [] for arm in self.arms})

    def add(self, rep: int, arm: str, r: dict, q: Any, profiled: bool) -> None:
        """One arm's run: counted unless profiled; its scores checked against its earlier rounds'."""
        import numpy as np

        rate = r["n"] / r["seconds"]
        if profiled:
            print(f"  ({arm} round 0 under cProfile: {rate:.1f} img/s, not counted)", file=sys.stderr)
        else:
            self.rates[arm].append(rate)
            self.cpu_rates[arm].append(r["n"] / r["cpu_seconds"])
            self.faults[arm].append(r["faults"] / r["n"])
        self.batch[arm] = r["batch"]
        self.threads[arm] = r["threads"]
        if arm in self.scores and not np.array_equal(self.scores[arm], q, equal_nan=True):
            print(f"  warning: {arm} scores differ between rounds", file=sys.stderr)
        self.scores[arm] = q
        cpu_rate, fault_rate = r["n"] / r["cpu_seconds"], r["faults"] / r["n"]
        print(
            f"round {rep} {arm:6s} batch {r['batch']:3d} threads {r['threads']}: "
            f"{rate:8.2f} img/s, {cpu_rate:8.2f} img per CPU-s, {fault_rate:7.1f} faults/img",
            file=sys.stderr,
        )


def measure(a: argparse.Namespace, arms: list[str], images: Any, env: dict[str, str]) -> Tally:
    """Every arm once per round in its own process, the order reversed every other round."""
    import numpy as np

    tally = Tally(arms)
    with tempfile.TemporaryDirectory() as tmp:
        img_file = str(Path(tmp) / "images.npy")
        np.save(img_file, images)
        for rep in range(a.reps):
            for arm in arms if rep % 2 == 0 else arms[::-1]:
                out = str(Path(tmp) / f"{arm}.{rep}.json")
                cmd = [sys.executable, __file__, "--_arm", arm, "--_images_file", img_file, "--_out", out]
                profiled = a.profile and arm in ("kit", "base") and rep == 0
                if profiled:
                    cmd.append("--profile")
                subprocess.run(cmd, env=env, check=True)
                tally.add(rep, arm, json.loads(Path(out).read_text()), np.load(out + ".npy"), profiled)
    return tally


def summarise(a: argparse.Namespace, arms: list[str], source: str, tally: Tally) -> dict:
    """Rates per round and their medians, ratios between arms, and how far their scores differ."""
    med = {arm: statistics.median(v) for arm, v in tally.rates.items() if v}
    cpu_med = {arm: statistics.median(v) for arm, v in tally.cpu_rates.items() if v}
    summary: dict = {
        "images": a.images,
        "source": source,
        "rounds": a.reps,
        "threads": tally.threads,
        "batch": tally.batch,
        # wall-clock images/s (per core for the one-thread arms: all but kitall)
        "img_per_s": {k: tally.rates[k] for k in arms},
        "median_img_per_s": med,
        # images per second of the process's CPU time: less sensitive to other jobs
        # taking the core away (for kitall: the CPU time of all its threads)
        "img_per_cpu_second": {k: tally.cpu_rates[k] for k in arms},
        "median_img_per_cpu_second": cpu_med,
        "median_minor_faults_per_img": {k: statistics.median(v) for k, v in tally.faults.items() if v},
    }
    summary.update(ratios(tally.rates, med, cpu_med))
    summary.update(score_differences(tally.scores))
    return summary


def ratios(rates: dict[str, list[float]], med: dict[str, float], cpu_med: dict[str, float]) -> dict:
    """Speed ratios between pairs of arms that both ran: of the medians, per round, of the CPU rates."""
    out = {}
    for x, y in (("kit", "wheel"), ("kit", "kit1"), ("kit1", "wheel"), ("kitall", "kit"), ("kit", "base"),
                 ("base", "wheel")):
        if x in med and y in med:
            per_round = [u / v for u, v in zip(rates[x], rates[y], strict=False)]
            out[f"{x}/{y}"] = {
                "ratio_of_medians": med[x] / med[y],
                "median_of_round_ratios": statistics.median(per_round) if per_round else None,
                "ratio_of_median_cpu_rates": cpu_med[x] / cpu_med[y],
            }
    return out


def score_differences(scores: dict[str, Any]) -> dict[str, Any]:
    """max |q| differences of the kit's batched scores against its other arms (and the wheel's, for
    information: a different model)."""
    import numpy as np

    out: dict[str, Any] = {}
    if "kit" not in scores:
        return out
    kit = scores["kit"]
    for other, key in (("kit1", "max_abs_q_batched_minus_unbatched"), ("kitall", "max_abs_q_kit_minus_kitall"),
                       ("base", "max_abs_q_kit_minus_base")):
        if other in scores:
            out[key] = float(np.max(np.abs(kit - scores[other])))
    if "wheel" in scores:
        d = kit - scores["wheel"]
        out["kit_minus_wheel_q (different models, for information)"] = {
            "median_abs": float(np.median(np.abs(d))),
            "max_abs": float(np.max(np.abs(d))),
        }
    return out


def print_medians(summary: dict, arms: list[str], reps: int, n_images: int) -> None:
    print(f"\nmedians of {reps} interleaved rounds, {n_images} images 224x224:", file=sys.stderr)
    med, cpu_med = summary["median_img_per_s"], summary["median_img_per_cpu_second"]
    for arm in arms:
        if arm in med:
            print(
                f"  {arm:6s} batch {summary['batch'][arm]:3d} threads {summary['threads'][arm]}: "
                f"{med[arm]:8.1f} img/s wall, {cpu_med[arm]:8.1f} img per CPU-s",
                file=sys.stderr,
            )
    for key, val in summary.items():
        if "/" in key:
            print(
                f"  {key:12s} {val['ratio_of_medians']:6.2f}x (median of round ratios "
                f"{val['median_of_round_ratios']:.2f}x, "
                f"CPU-time rates {val['ratio_of_median_cpu_rates']:.2f}x)",
                file=sys.stderr,
            )


def arms_and_env(arms: list[str], base_tree: Path | None) -> tuple[list[str], dict[str, str]]:
    """The arms to run (with 'base' when a base tree is given) and the one-thread environment."""
    env = {**os.environ, **{v: "1" for v in THREAD_VARS}}
    unknown = set(arms) - set(ALL_ARMS)
    if unknown:
        raise SystemExit(f"unknown arm(s) {sorted(unknown)}; choose from {ALL_ARMS}")
    if base_tree:
        arms = [*arms, "base"]
        env[BASE_TREE] = str(base_tree.resolve())
    return arms, env


def main() -> None:
    a = parser().parse_args()
    if a._arm:
        run_arm(a._arm, a._images_file, a._out, a.profile)
        return

    import numpy as np

    arms = [s for s in a.arms.split(",") if s]
    images, source = load_images(a.sample, a.images)
    arms, env = arms_and_env(arms, a.base_tree)
    tally = measure(a, arms, images, env)
    summary = summarise(a, arms, source, tally)
    if a.save and "kit" in tally.scores:
        np.save(a.save, tally.scores["kit"])
    if a.compare and "kit" in tally.scores:
        ref = np.load(a.compare)
        summary["max_abs_q_vs_saved"] = float(np.max(np.abs(tally.scores["kit"] - ref)))
    text = json.dumps(summary, indent=2)
    print(text)
    print_medians(summary, arms, a.reps, a.images)
    if a.json:
        a.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
