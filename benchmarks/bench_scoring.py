"""Does the loader keep the model busy? End-to-end scoring vs the bare forward pass.

For each scorer, in one run and on the same images:

* bare: the model's forward on batches already decoded, preprocessed and on
  the device (no loading, no writing): the ceiling;
* scorer: ``Scorer.score`` on preloaded uint8 device batches (adds the
  on-device normalisation and the confidence columns);
* end-to-end: ``score_manifest`` from image files to the merged Parquet
  (worker decoding, pinned copies, parts, merge), model already built.

The ratio end-to-end / bare should be close to 1 (target >= 0.9). Bare and
end-to-end runs are interleaved for several rounds and the best of each is
kept, because other jobs may share the machine. On CUDA the models run in bf16 autocast, and every
scorer given is reported (images/s per model).

For the CPU bounds of issue 15 as whole processes (TV against the decode-only
rate, Lite0 through the engine against a bare decode + forward loop, with and
without the allocator setting of :mod:`iqa_lib.scoring.allocator`), see
``bench_decode_bound.py``; results in ``README.md`` here.

    python benchmarks/bench_scoring.py                      # CPU: EfficientNet-Lite0, 256 images
    python benchmarks/bench_scoring.py --images 2000 --scorer efficientnet_lite:lite0 \\
        --scorer efficientnet_lite:lite2 --scorer torchvision:resnet34   # on a GPU machine
    python benchmarks/bench_scoring.py --decode-on-device --scorer efficientnet_lite:lite0 \\
        --scorer tv   # + an end-to-end arm with the JPEGs decoded on the GPU (nvJPEG)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_decode_bound import render  # noqa: E402

from iqa_lib.device import pick_device  # noqa: E402
from iqa_lib.imagenet import label_of  # noqa: E402
from iqa_lib.scorers.base import Scorer  # noqa: E402
from iqa_lib.scorers.registry import build_scorer  # noqa: E402
from iqa_lib.scorers.weights import WeightsError  # noqa: E402
from iqa_lib.scoring.dataset import ManifestImages  # noqa: E402
from iqa_lib.scoring.engine import RunSettings, default_num_workers, score_manifest  # noqa: E402

SAMPLE = REPO.parent / "shared" / "data" / "imagenet-sample"


def make_manifest(sample: Path, n: int, path: Path) -> pd.DataFrame:
    """n rows cycling over the sample's images (clean: Resize 256 + CenterCrop 224)."""
    files = sorted(sample.glob("*.JPEG"))
    if not files:
        raise SystemExit(f"no images in {sample}; pass --sample DIR")
    rows = []
    for i in range(n):
        f = files[i % len(files)]
        rows.append({"image_id": f"{f.stem}#{i}", "label": label_of(f.stem.split("_")[0]),
                     "corruption": "clean", "severity": 0, "path": str(f)})
    df = pd.DataFrame(rows)
    df.to_parquet(path)
    return df


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_loop(fn, batches, device: torch.device, n_images: int, repeats: int = 1) -> float:
    """Images per second of ``fn`` over ``batches`` (after one warm-up batch)."""
    fn(batches[0])
    sync(device)
    n = n_images * repeats
    t0 = time.perf_counter()
    for _ in range(repeats):
        for b in batches:
            fn(b)
    sync(device)
    return n / (time.perf_counter() - t0)


@dataclass(frozen=True)
class Bench:
    """How every scorer is measured: device, batches, loader workers, rounds, which images."""

    device: torch.device
    batch_size: int
    num_workers: int
    rounds: int = 3
    stored: bool = False  # rendered 224 px JPEGs scored as stored, not clean crops
    device_decode: bool = False  # also end-to-end with the JPEGs decoded on the device

    def run_settings(self, decode_on_device: bool) -> RunSettings:
        """The engine's settings of an end-to-end run: rescore from scratch, in large parts, quietly."""
        return RunSettings(
            num_workers=self.num_workers, resume=False, part_size=max(self.batch_size * 8, 1024),
            progress=False, geometry="none" if self.stored else "resize_crop", decode_on_device=decode_on_device,
        )


def device_batches(manifest: pd.DataFrame, bench: Bench) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The manifest's images decoded once (repeated rows share a tensor), as uint8 batches on the
    device, with their label batches."""
    ds = ManifestImages(manifest["path"].tolist(), [not bench.stored] * len(manifest))
    cache: dict[str, torch.Tensor] = {}
    images = []
    for i, p in enumerate(manifest["path"]):
        if p not in cache:
            cache[p] = ds[i][1]
        images.append(cache[p])
    labels = torch.from_numpy(manifest["label"].to_numpy(copy=True))
    size = bench.batch_size
    return ([torch.stack(images[i : i + size]).to(bench.device) for i in range(0, len(images), size)],
            [labels[i : i + size] for i in range(0, len(images), size)])


def bare_pass(scorer: Scorer, uint8_batches: list[torch.Tensor]) -> tuple[Callable[[torch.Tensor], None], list]:
    """The model's forward alone and its inputs (preprocessed batches); for an NR-IQA scorer,
    its score on the uint8 batch."""
    model = getattr(scorer, "model", None)
    network = model is not None and hasattr(scorer, "logits") or hasattr(scorer, "cosines")
    with torch.inference_mode():
        inputs = [scorer.preprocess(b) for b in uint8_batches] if network else uint8_batches

    def bare(x: torch.Tensor) -> None:
        with torch.inference_mode(), scorer.autocast():
            if model is not None and hasattr(scorer, "logits"):
                model(x)
            elif hasattr(scorer, "cosines"):
                scorer.model.encode_image(x)
            else:
                scorer.score(x, None)

    return bare, inputs


def end_to_end(scorer: Scorer, manifest_path: Path, out: Path, bench: Bench, on_device: bool, n: int) -> float:
    """Images per second of one engine run from the image files to the merged Parquet."""
    t0 = time.perf_counter()
    score_manifest(scorer, manifest_path, out, bench.run_settings(on_device), batch_size=bench.batch_size)
    sync(bench.device)
    return n / (time.perf_counter() - t0)


def bench_one(spec: str, manifest: pd.DataFrame, manifest_path: Path, bench: Bench, work: Path) -> dict:
    """Bare forward, ``Scorer.score`` and end-to-end rates of one scorer, interleaved rounds."""
    scorer = build_scorer(spec, bench.device)
    uint8_batches, label_batches = device_batches(manifest, bench)
    bare, inputs = bare_pass(scorer, uint8_batches)
    n = len(manifest)
    out = work / f"{spec.replace(':', '_').replace('/', '_')}.parquet"
    arms = [False, True] if bench.device_decode else [False]
    runs: dict[str, list[float]] = {"bare": [], False: [], True: []}
    for _ in range(bench.rounds):  # interleaved, best of each: robust to other jobs on the machine
        runs["bare"].append(time_loop(bare, inputs, bench.device, n))
        for on_device in arms:
            runs[on_device].append(end_to_end(scorer, manifest_path, out, bench, on_device, n))
    pairs = list(zip(uint8_batches, label_batches, strict=True))
    scorer_ips = time_loop(lambda bl: scorer.score(bl[0], bl[1]), pairs, bench.device, n)
    acc = float(pd.read_parquet(out)["correct"].mean()) if scorer.kind != "nr_iqa" else None
    return report(spec, bench, n, runs, scorer_ips, acc)


def report(spec: str, bench: Bench, n: int, runs: dict, scorer_ips: float, acc: float | None) -> dict:
    """One scorer's row of the results (images/s, best of the rounds, and their ratios)."""
    bare_runs, e2e_runs, dev_runs = runs["bare"], runs[False], runs[True]
    bare_ips, e2e = max(bare_runs), max(e2e_runs)
    device = bench.device
    return {
        "scorer": spec, "device": str(device), "dtype": "bf16" if device.type == "cuda" else "fp32",
        "images": n, "batch_size": bench.batch_size, "num_workers": bench.num_workers,
        "torch_threads": torch.get_num_threads(),
        "rounds": bench.rounds, "bare_forward_ips": round(bare_ips, 1),
        "bare_runs_ips": [round(x, 1) for x in bare_runs],
        "end_to_end_runs_ips": [round(x, 1) for x in e2e_runs], "scorer_ips": round(scorer_ips, 1),
        "end_to_end_ips": round(e2e, 1), "ratio_e2e_over_bare": round(e2e / bare_ips, 3),
        "top1": None if acc is None else round(acc, 4),
        "images_as": "stored 224 px JPEGs (geometry none)" if bench.stored else "clean: Resize 256 + CenterCrop 224",
        **({"end_to_end_device_decode_ips": round(max(dev_runs), 1),
            "ratio_device_decode_over_bare": round(max(dev_runs) / bare_ips, 3),
            "device_decode_runs_ips": [round(x, 1) for x in dev_runs]} if dev_runs else {}),
    }


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scorer", action="append", help="scorer spec (repeatable); default EfficientNet-Lite0")
    ap.add_argument("--images", type=int, default=None, help="rows to score (default 256 CPU, 4096 CUDA)")
    ap.add_argument("--batch-size", type=int, default=None, help="default 32 CPU, 256 CUDA")
    ap.add_argument("--num-workers", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved bare/end-to-end rounds (best kept)")
    ap.add_argument("--sample", type=Path, default=SAMPLE, help="folder of <wnid>_<name>.JPEG images")
    ap.add_argument("--stored", action="store_true",
                    help="score rendered 224 px JPEGs as stored (as ImageNet-C), not clean crops")
    ap.add_argument("--decode-on-device", action="store_true",
                    help="also run end-to-end with JPEGs decoded on the device (implies --stored)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    return ap


def stored_sample(sample: Path, work: Path, n: int) -> Path:
    """224 px JPEGs rendered from the sample, named <wnid>_... as make_manifest wants them."""
    out = work / "stored"
    for path, wnid in render(sample, work / "rendered", min(n, 1000)):
        out.mkdir(exist_ok=True)
        path.rename(out / f"{wnid}_{path.stem}.JPEG")
    return out


def summary_line(spec: str, res: dict) -> str:
    line = (f"{spec:32s} {res['dtype']} bare {res['bare_forward_ips']:8.1f} img/s | "
            f"scorer {res['scorer_ips']:8.1f} | end-to-end {res['end_to_end_ips']:8.1f} | "
            f"ratio {res['ratio_e2e_over_bare']:.3f} | top-1 {res['top1']}")
    if "end_to_end_device_decode_ips" in res:
        line += (f" | device decode {res['end_to_end_device_decode_ips']:8.1f} "
                 f"(ratio {res['ratio_device_decode_over_bare']:.3f})")
    return line


def bench_of(args: argparse.Namespace) -> Bench:
    """The device (cuDNN autotuning on CUDA) and the measuring settings the options ask for."""
    device = pick_device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    return Bench(
        device=device, batch_size=args.batch_size or (256 if cuda else 32),
        num_workers=default_num_workers(device) if args.num_workers is None else args.num_workers,
        rounds=args.rounds, stored=args.stored or args.decode_on_device, device_decode=args.decode_on_device,
    )


def bench_all(specs: list[str], sample: Path, n: int, bench: Bench) -> list[dict]:
    """A result per scorer (one whose weights cannot be had is skipped, saying so)."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sample = stored_sample(sample, work, n) if bench.stored else sample
        manifest = make_manifest(sample, n, work / "manifest.parquet")
        for spec in specs:
            try:
                res = bench_one(spec, manifest, work / "manifest.parquet", bench, work)
            except WeightsError as exc:
                print(f"skip {spec}: {exc}", file=sys.stderr)
                continue
            results.append(res)
            print(summary_line(spec, res), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    bench = bench_of(args)
    cuda = bench.device.type == "cuda"
    specs = args.scorer or (["efficientnet_lite:lite0", "efficientnet_lite:lite1",
                             "efficientnet_lite:lite2"] if cuda else ["efficientnet_lite:lite0"])
    results = bench_all(specs, args.sample, args.images or (4096 if cuda else 256), bench)
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
