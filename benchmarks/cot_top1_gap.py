"""How far ``cot_top1`` (COT from pred and q_p only) is from exact COT on synthetic softmax data.

Score files keep pred and q_p, not the softmax vector, so ``iqa-kit prior`` reports an
approximation of COT (Lu et al. 2023) that spreads 1 - q_p evenly over the other classes.
This draws softmax vectors of K classes from Gaussian logits with a signal on the true
class (the signal sets accuracy; a temperature sets confidence), computes exact COT with
POT (``ot.emd2``) and the approximation, and prints the difference in accuracy points.

    python benchmarks/cot_top1_gap.py            # needs POT (pip install -e .[dev])
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

for _backend in ("PYTORCH", "JAX", "TENSORFLOW", "CUPY"):
    os.environ.setdefault(f"POT_BACKEND_DISABLE_{_backend}", "1")


def softmax_case(n: int, k: int, signal: float, temperature: float, rng: np.random.Generator):
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) * 1.5
    logits[np.arange(n), labels] += signal
    z = logits / temperature
    p = np.exp(z - z.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True), labels


def main() -> int:
    import ot

    from iqa_lib.analysis.prior.estimators import cot_top1_error, label_marginal

    rng = np.random.default_rng(0)
    n = 500
    rows = []
    t0 = time.perf_counter()
    for k in (10, 100, 1000):
        for signal in (2.0, 4.0, 6.0):
            for temperature in (0.5, 1.0, 2.0):
                p, labels = softmax_case(n, k, signal, temperature, rng)
                ref_labels = rng.integers(0, k, 5 * n)  # reference: the same classes, uniform
                marg = label_marginal(ref_labels, k)
                exact = ot.emd2(np.full(n, 1 / n), marg, 1 - p, numItermax=10_000_000)
                approx = cot_top1_error(p.argmax(1), p.max(1), marg)
                acc = float((p.argmax(1) == labels).mean())
                rows.append((k, signal, temperature, acc, 1 - exact, 1 - approx))
    print(f"{'K':>5} {'signal':>6} {'T':>4} {'acc':>6} {'COT acc':>8} {'top1 acc':>8} {'gap pts':>8}")
    gaps = []
    for k, s, t, acc, e, a in rows:
        gaps.append(100 * (a - e))
        print(f"{k:>5} {s:>6.1f} {t:>4.1f} {acc:>6.3f} {e:>8.3f} {a:>8.3f} {100 * (a - e):>8.2f}")
    gaps = np.asarray(gaps)
    print(f"top1 minus exact COT accuracy, points: mean {gaps.mean():.2f}, mean |gap| "
          f"{np.abs(gaps).mean():.2f}, max |gap| {np.abs(gaps).max():.2f} over {len(gaps)} cases "
          f"({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
