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
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from iqa_lib.device import pick_device  # noqa: E402
from iqa_lib.imagenet import label_of  # noqa: E402
from iqa_lib.scorers.registry import build_scorer  # noqa: E402
from iqa_lib.scorers.weights import WeightsError  # noqa: E402
from iqa_lib.scoring.dataset import ManifestImages  # noqa: E402
from iqa_lib.scoring.engine import default_num_workers, score_manifest  # noqa: E402

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


def bench_one(spec: str, manifest: pd.DataFrame, manifest_path: Path, device: torch.device,
              batch_size: int, num_workers: int, work: Path, rounds: int = 3,
              stored: bool = False, device_decode: bool = False) -> dict:
    scorer = build_scorer(spec, device)
    geometry = "none" if stored else "resize_crop"
    ds = ManifestImages(manifest["path"].tolist(), [not stored] * len(manifest))
    # decode each distinct file once; reuse tensors for repeated rows
    cache: dict[str, torch.Tensor] = {}
    images = []
    for i, p in enumerate(manifest["path"]):
        if p not in cache:
            cache[p] = ds[i][1]
        images.append(cache[p])
    labels = torch.from_numpy(manifest["label"].to_numpy(copy=True))
    uint8_batches = [torch.stack(images[i : i + batch_size]).to(device)
                     for i in range(0, len(images), batch_size)]
    label_batches = [labels[i : i + batch_size] for i in range(0, len(images), batch_size)]
    model = getattr(scorer, "model", None)
    network = model is not None and hasattr(scorer, "logits") or hasattr(scorer, "cosines")
    with torch.inference_mode():  # an NR-IQA scorer's bare pass is its score on the uint8 batch
        inputs = [scorer.preprocess(b) for b in uint8_batches] if network else uint8_batches

    def bare(x: torch.Tensor) -> None:
        with torch.inference_mode(), scorer.autocast():
            if model is not None and hasattr(scorer, "logits"):
                model(x)
            elif hasattr(scorer, "cosines"):
                scorer.model.encode_image(x)
            else:
                scorer.score(x, None)

    pairs = list(zip(uint8_batches, label_batches, strict=True))
    n = len(manifest)
    out = work / f"{spec.replace(':', '_').replace('/', '_')}.parquet"
    bare_runs, e2e_runs, dev_runs = [], [], []
    for _ in range(rounds):  # interleaved, best of each: robust to other jobs on the machine
        bare_runs.append(time_loop(bare, inputs, device, n))
        for runs, on_device in ((e2e_runs, False), (dev_runs, True)):
            if on_device and not device_decode:
                continue
            t0 = time.perf_counter()
            score_manifest(scorer, manifest_path, out, batch_size=batch_size, num_workers=num_workers,
                           resume=False, part_size=max(batch_size * 8, 1024), progress=False,
                           geometry=geometry, decode_on_device=on_device)
            sync(device)
            runs.append(n / (time.perf_counter() - t0))
    scorer_ips = time_loop(lambda bl: scorer.score(bl[0], bl[1]), pairs, device, n)
    bare_ips, e2e = max(bare_runs), max(e2e_runs)
    acc = float(pd.read_parquet(out)["correct"].mean()) if scorer.kind != "nr_iqa" else None
    return {
        "scorer": spec, "device": str(device), "dtype": "bf16" if device.type == "cuda" else "fp32",
        "images": len(manifest), "batch_size": batch_size, "num_workers": num_workers,
        "torch_threads": torch.get_num_threads(),
        "rounds": rounds, "bare_forward_ips": round(bare_ips, 1),
        "bare_runs_ips": [round(x, 1) for x in bare_runs],
        "end_to_end_runs_ips": [round(x, 1) for x in e2e_runs], "scorer_ips": round(scorer_ips, 1),
        "end_to_end_ips": round(e2e, 1), "ratio_e2e_over_bare": round(e2e / bare_ips, 3),
        "top1": None if acc is None else round(acc, 4),
        "images_as": "stored 224 px JPEGs (geometry none)" if stored else "clean: Resize 256 + CenterCrop 224",
        **({"end_to_end_device_decode_ips": round(max(dev_runs), 1),
            "ratio_device_decode_over_bare": round(max(dev_runs) / bare_ips, 3),
            "device_decode_runs_ips": [round(x, 1) for x in dev_runs]} if dev_runs else {}),
    }


def main(argv: list[str] | None = None) -> int:
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
    args = ap.parse_args(argv)
    stored = args.stored or args.decode_on_device

    device = pick_device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    specs = args.scorer or (["efficientnet_lite:lite0", "efficientnet_lite:lite1",
                             "efficientnet_lite:lite2"] if cuda else ["efficientnet_lite:lite0"])
    n = args.images or (4096 if cuda else 256)
    batch_size = args.batch_size or (256 if cuda else 32)
    num_workers = default_num_workers(device) if args.num_workers is None else args.num_workers
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sample = args.sample
        if stored:  # 224 px JPEGs named <wnid>_..., as make_manifest wants them
            from bench_decode_bound import render

            sample = work / "stored"
            for path, wnid in render(args.sample, work / "rendered", min(n, 1000)):
                sample.mkdir(exist_ok=True)
                path.rename(sample / f"{wnid}_{path.stem}.JPEG")
        manifest = make_manifest(sample, n, work / "manifest.parquet")
        for spec in specs:
            try:
                res = bench_one(spec, manifest, work / "manifest.parquet", device, batch_size,
                                num_workers, work, args.rounds, stored, args.decode_on_device)
            except WeightsError as exc:
                print(f"skip {spec}: {exc}", file=sys.stderr)
                continue
            results.append(res)
            print(f"{spec:32s} {res['dtype']} bare {res['bare_forward_ips']:8.1f} img/s | "
                  f"scorer {res['scorer_ips']:8.1f} | end-to-end {res['end_to_end_ips']:8.1f} | "
                  f"ratio {res['ratio_e2e_over_bare']:.3f} | top-1 {res['top1']}"
                  + (f" | device decode {res['end_to_end_device_decode_ips']:8.1f} "
                     f"(ratio {res['ratio_device_decode_over_bare']:.3f})" if args.decode_on_device else ""),
                  flush=True)
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
