"""`iqa-kit --help` and argument errors stay cheap: no heavy library is imported to build the parser."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("pandas", "numpy", "torch", "scipy", "pyarrow", "matplotlib", "numba", "PIL", "pydantic",
         "sklearn", "yaml")


def _modules_after(code: str) -> set[str]:
    probe = f"""
import sys
{code}
print(__import__("json").dumps(sorted(m.split(".")[0] for m in sys.modules)))
"""
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True,
                         check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_building_the_parser_imports_no_heavy_library():
    # every sub-command's add_parser runs here, as for `iqa-kit --help`
    loaded = _modules_after("from iqa_lib.cli import build_parser; build_parser()")
    assert not loaded & set(HEAVY), f"imported at parser build: {sorted(loaded & set(HEAVY))}"


def test_an_argument_error_imports_no_heavy_library():
    code = """
from iqa_lib.cli import main
try:
    main(["score", "--batch-size", "-1"])
except SystemExit as exc:
    assert exc.code == 2, exc.code
"""
    loaded = _modules_after(code)
    assert not loaded & set(HEAVY), f"imported on an argument error: {sorted(loaded & set(HEAVY))}"


def test_a_cli_run_skips_the_iri_grammar_and_still_validates_notebooks():
    # jsonschema compiles an IRI grammar (1.3 s) when rfc3987_syntax is installed; nbformat never
    # needs it, so the CLI process marks it absent; notebooks still validate (and bad ones fail)
    validate = """
import nbformat
nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
nbformat.validate(nb)
nb.cells[0]["cell_type"] = "nonsense"
try:
    nbformat.validate(nb)
    raise AssertionError("an invalid notebook passed")
except nbformat.ValidationError:
    pass
"""
    if "lark" not in _modules_after(validate):  # the premise: without the skip, the grammar is built
        pytest.skip("rfc3987_syntax is not installed here: jsonschema builds no IRI grammar to skip")
    loaded = _modules_after("from iqa_lib.cli import _skip_iri_grammar\n_skip_iri_grammar()\n" + validate)
    assert "jsonschema" in loaded and "nbformat" in loaded
    assert "lark" not in loaded
