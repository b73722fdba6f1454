"""Share of functions above cyclomatic complexity 10 (radon), closures and methods included.

    python benchmarks/complexity_share.py iqa_lib $(python -c "import pyiqa, os; print(os.path.dirname(pyiqa.__file__))")

prints one line per package folder; tests/test_architecture.py holds the kit to 4% by the same
count (pyiqa 0.1.16: 3.9%, timm 1.0.31: 4.6%).
"""

from __future__ import annotations

import sys
from pathlib import Path

from radon.complexity import cc_visit


def functions(blocks):
    out = []
    for b in blocks:
        if b.letter == "C":
            out += functions(b.methods)
        else:
            out += [b, *functions(b.closures)]
    return out

for root in sys.argv[1:]:
    fs, unreadable = [], []
    for p in sorted(Path(root).rglob("*.py")):
        try:
            fs += functions(cc_visit(p.read_text(encoding="utf-8")))
        except (SyntaxError, UnicodeDecodeError):
            unreadable.append(p.name)
    big = sum(f.complexity > 10 for f in fs)
    skipped = f"; {len(unreadable)} file(s) radon cannot parse: {unreadable}" if unreadable else ""
    print(f"{root}: {big} of {len(fs)} functions above 10 ({big / len(fs):.1%}){skipped}")
