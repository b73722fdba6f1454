"""Export an executed notebook to one HTML file that works offline and loads nothing.

nbconvert's ``lab`` template links require.js, MathJax and Mermaid from CDNs: a
report opened on an offline machine (or mailed to a colleague behind a proxy)
would stall on them, and a report should not phone anywhere. The kit's
template extends ``lab`` with those three blocks removed; figures are
embedded as base64 PNG by the notebook itself; code cells are shown or hidden.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

from iqa_lib.fileio import atomic_write_text

TEMPLATE = "offline.html.j2"
_REMOTE = re.compile(r"""(?:src|href)\s*=\s*["'](?:https?:)?//""", re.IGNORECASE)


def remote_references(html: str) -> list[str]:
    """Every ``src=``/``href=`` in ``html`` that points at another host (should be none)."""
    return [html[m.start() : m.start() + 120] for m in _REMOTE.finditer(html)]


def export_offline_html(notebook: str | os.PathLike, out: str | os.PathLike, hide_code: bool = True) -> Path:
    """``notebook`` as one HTML file at ``out`` that loads nothing from the network (code hidden by default)."""
    import nbformat  # nbconvert and nbformat are slow to import: only when a report is exported
    from nbconvert import HTMLExporter

    template = Path(str(resources.files("iqa_lib.resources").joinpath("templates", TEMPLATE)))
    exporter = HTMLExporter(template_file=str(template), exclude_input=hide_code,
                            exclude_input_prompt=hide_code, exclude_output_prompt=hide_code,
                            embed_images=True)
    body, _ = exporter.from_notebook_node(nbformat.read(str(notebook), as_version=4))
    remote = remote_references(body)
    if remote:
        raise RuntimeError(f"the report would load {len(remote)} remote resource(s), e.g. {remote[0]!r}")
    return atomic_write_text(out, body)
