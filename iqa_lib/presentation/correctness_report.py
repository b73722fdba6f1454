"""A task model's correctness in a few lines: what ``iqa-kit correctness`` prints and its notebook shows."""

from __future__ import annotations

from iqa_lib.analysis.correctness import Correctness


def _pct(metric: dict) -> str:
    v = metric.get("value")
    return "-" if v is None else f"{100 * v:.1f}%"


def format_summary(result: Correctness) -> list[str]:
    """A few lines: top-1 clean / corrupted, mCE and relative mCE, ECE clean / corrupted."""
    s = result.summary
    lines = [
        f"{result.model}: top-1 clean {_pct(s['clean_top1'])} (n {s['clean_top1']['n']}), "
        f"corrupted {_pct(s['corrupted_top1'])} (n {s['corrupted_top1']['n']}, mean over groups)",
        f"  mCE {_pct(s['mce'])}, relative mCE {_pct(s['relative_mce'])} "
        f"(AlexNet = 100%, over {s['mce']['n']} corruption(s))",
        f"  ECE of q_p (15 bins): clean {_pct(s['ece_clean'])}, corrupted {_pct(s['ece_corrupted'])}",
    ]
    return lines + [f"  note: {n}" for n in result.notes]
