"""How much CPU does ``iqa-kit --help`` cost? Against a bare ``python -c pass``, in one run.

Runs, interleaved, ``--runs`` times each:

* baseline: ``python -c pass`` (the interpreter and ``site``, nothing else);
* ``iqa-kit --help``;
* an argument error: ``iqa-kit score --batch-size -1`` (argparse rejects it, exit 2);

and reports the median user + system CPU seconds of each child process
(``resource.getrusage(RUSAGE_CHILDREN)`` before and after each run) and the
ratios to the baseline. The claim (issue 15): each <= 3x the baseline, and
under 0.15 s of CPU. ``iqa-kit`` is the console script installed next to this
Python (a pyenv shim in front of it would add its own start-up); without one,
``python -m iqa_lib.cli`` (``--module`` forces that: run this file from
another checkout to measure its CLI).

    python benchmarks/bench_cli.py              # 15 runs each
    python benchmarks/bench_cli.py --runs 31 --json cli.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def kit_command(module: bool = False) -> list[str]:
    script = Path(sys.executable).parent / "iqa-kit"
    if script.is_file() and not module:
        return [str(script)]
    return [sys.executable, "-m", "iqa_lib.cli"]  # the checkout this file is in (cwd first on sys.path)


def child_cpu(cmd: list[str], expect: int) -> float:
    """User + system CPU seconds of one run of ``cmd`` (its exit status must be ``expect``)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != expect:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}, expected {expect}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15, help="runs of each command (median kept)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--module", action="store_true",
                    help="run `python -m iqa_lib.cli` from this checkout instead of the installed script "
                    "(to measure another checkout, e.g. an older commit unpacked with git archive)")
    args = ap.parse_args(argv)

    kit = kit_command(args.module)
    cases = {
        "python -c pass": ([sys.executable, "-c", "pass"], 0),
        "iqa-kit --help": ([*kit, "--help"], 0),
        "iqa-kit score --batch-size -1": ([*kit, "score", "--batch-size", "-1"], 2),
    }
    for cmd, expect in cases.values():  # warm the page cache and the bytecode caches
        child_cpu(cmd, expect)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):  # interleaved: load on the machine hits every case alike
        for name, (cmd, expect) in cases.items():
            samples[name].append(child_cpu(cmd, expect))
    base = statistics.median(samples["python -c pass"])
    results = {
        name: {
            "median_cpu_s": round(statistics.median(s), 4),
            "min_cpu_s": round(min(s), 4),
            "ratio_to_python": round(statistics.median(s) / base, 2),
        }
        for name, s in samples.items()
    }
    results["_meta"] = {"runs": args.runs, "kit": " ".join(kit), "python": sys.version.split()[0],
                        "cpus": os.cpu_count()}
    for name, res in results.items():
        if not name.startswith("_"):
            print(f"{name:32s} median CPU {res['median_cpu_s']:.3f} s  "
                  f"(min {res['min_cpu_s']:.3f})  ratio {res['ratio_to_python']:.2f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
