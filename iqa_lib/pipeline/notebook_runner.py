"""Run a section notebook with papermill and keep an HTML copy beside it.

Executed notebooks are leaf outputs of the pipeline: nothing downstream depends on
them. ``dvc.lock`` records their hash all the same, so a rerun must write the same
bytes: :func:`deterministic` removes what papermill and nbclient stamp on every run
(start and end times, durations, the temporary output name, random cell ids: the
injected parameters cell's, every cell's of a notebook saved without ids), what
Python and pandas draw at random (memory addresses in reprs, Styler table uuids)
and the kit's log lines (scoring progress, timings), which went to the log when
stderr was streamed. The HTML is exported from the cleaned notebook.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from iqa_lib.fileio import writing
from iqa_lib.scoring.progress import LINE_RE

# what papermill and nbclient record that differs on every run
_RUN_KEYS = ("start_time", "end_time", "duration")
# the injected parameters cell gets a random id from nbformat; the HTML shows ids
INJECTED_ID = "injected-parameters"
# The kit's stderr lines that are about the run, not its results: a scoring progress line
# (iqa_lib.scoring.progress.LINE_RE), a step's time ("group-wise: 0.9s"), a trailing time
# ("... (0.1s)", "... (10.1s in all)"). The first two are dropped, the last cut off.
_TIMED_LINE = re.compile(r"^[^:\n]+: \d+(?:\.\d+)?s$")
_TIME_SUFFIX = re.compile(r" \(\d+(?:\.\d+)?s(?: in all)?\)$")
# a repr with a memory address ("<pandas.io.formats.style.Styler at 0x7f99...>")
_ADDRESS = re.compile(r"(<[^<>\n]*?) at 0x[0-9a-fA-F]+>")
# pandas' Styler names its table and CSS rules after a random uuid: <table id="T_3cc5e">
_STYLER_ID = re.compile(r'<table id="T_([0-9a-zA-Z]+)"')


def run_notebook(
    notebook: str | os.PathLike,
    out_dir: str | os.PathLike,
    parameters: Mapping[str, Any] | None = None,
    html: bool = True,
    cwd: str | os.PathLike | None = None,
    name: str | None = None,
    stream_stderr: bool = False,
) -> Path:
    """Execute ``notebook`` into ``out_dir``, and export HTML unless told not to.

    The executed copy is named like the notebook, or ``<name>.ipynb`` (one notebook
    run per scorer needs one name each). ``stream_stderr`` copies the kernel's stderr
    to ours as it comes, so that a long run (scoring) is not silent under ``dvc repro``.
    """
    import nbformat  # papermill and nbformat load in a second: only when a notebook runs
    import papermill as pm

    notebook, out_dir = Path(notebook), Path(out_dir)
    if not notebook.is_file():
        raise FileNotFoundError(f"notebook {str(notebook)!r} does not exist")
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / (f"{name}.ipynb" if name else notebook.name)
    # papermill saves after every cell: run into a temporary name so that the final name only
    # ever holds a finished notebook; a failed run is kept as <stem>.failed.ipynb to read
    running = executed.with_name(f".{executed.stem}.running-{os.getpid()}.ipynb")
    failed = executed.with_name(f"{executed.stem}.failed.ipynb")
    try:
        with writing(executed):
            pm.execute_notebook(
                str(notebook),
                str(running),
                parameters=dict(parameters or {}),
                cwd=str(cwd) if cwd else None,
                progress_bar=False,
                kernel_name="python3",
                stderr_file=sys.stderr if stream_stderr else None,
            )
            cleaned = deterministic(nbformat.read(str(running), as_version=4), executed, notebook)
            nbformat.write(cleaned, str(running))
            os.replace(running, executed)
    except pm.PapermillExecutionError as exc:
        if running.exists():
            os.replace(running, failed)
        # the cell's own error, in one line; the failed notebook shows the traceback
        raise RuntimeError(
            f"{notebook} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue} "
            f"(the traceback is in {failed})"
        ) from None
    finally:
        running.unlink(missing_ok=True)
    failed.unlink(missing_ok=True)
    if html:
        # self-contained and offline: no CDN scripts (require.js, MathJax), figures embedded
        from iqa_lib.presentation.html_export import export_offline_html

        export_offline_html(executed, executed.with_suffix(".html"), hide_code=False)
    return executed


def _log_line(line: str) -> bool:
    return bool(LINE_RE.match(line) or _TIMED_LINE.match(line))


def _without_log_lines(text: str) -> str:
    lines = text.splitlines(keepends=True)
    kept = [_TIME_SUFFIX.sub("", line.rstrip("\n")) + ("\n" if line.endswith("\n") else "")
            for line in lines if not _log_line(line.rstrip("\n"))]
    return "".join(kept)


def _has_cell_ids(notebook: str | os.PathLike) -> bool:
    import json

    cells = json.loads(Path(notebook).read_text(encoding="utf-8")).get("cells", [])
    return all("id" in cell for cell in cells)


def _plain_output(output: Any, styler_ids: dict[str, str]) -> None:
    """A display output without memory addresses and with the Styler tables numbered."""
    data = output.get("data", {})
    for mime, value in list(data.items()):
        if not mime.startswith("text/"):
            continue
        text = "".join(value) if isinstance(value, list) else value
        text = _ADDRESS.sub(r"\1>", text)
        if mime == "text/html":
            for found in _STYLER_ID.findall(text):
                styler_ids.setdefault(found, f"n{len(styler_ids) + 1}")
                text = re.sub(rf"\bT_{found}(?![0-9a-zA-Z])", f"T_{styler_ids[found]}", text)
        data[mime] = text


def deterministic(nb: Any, executed: str | os.PathLike | None = None,
                  source: str | os.PathLike | None = None) -> Any:
    """``nb`` (an executed ``NotebookNode``) without what changes from run to run; in place.

    Kept: the papermill parameters, input path, versions, each cell's status and
    exception, every output but the kit's log lines on stderr. ``executed`` is the
    final name, recorded instead of the temporary one papermill wrote to. When the
    ``source`` notebook has no cell ids (nbformat 4.4), nbformat gave each cell a random
    one: they become ``cell-<n>``. Memory addresses in reprs go, and pandas Styler
    tables get numbered ids instead of random uuids.
    """
    if source is not None and not _has_cell_ids(source):
        for n, cell in enumerate(nb.cells):
            cell["id"] = f"cell-{n}"
    _clean_run_metadata(nb.metadata.get("papermill"), executed)
    styler_ids: dict[str, str] = {}
    for cell in nb.cells:
        _clean_cell(cell, styler_ids)
    return nb


def _clean_run_metadata(meta: Any, executed: str | os.PathLike | None) -> None:
    """The notebook's papermill record without run times; the final output name, not the temporary one."""
    if meta is None:
        return
    for key in _RUN_KEYS:
        meta.pop(key, None)
    if executed is not None and "output_path" in meta:
        meta["output_path"] = Path(executed).as_posix()


def _clean_cell(cell: Any, styler_ids: dict[str, str]) -> None:
    """One cell without timestamps and log lines; the injected parameters cell gets a fixed id."""
    cell.metadata.pop("execution", None)  # nbclient's iopub timestamps
    for key in _RUN_KEYS:
        cell.metadata.get("papermill", {}).pop(key, None)
    if INJECTED_ID in cell.metadata.get("tags", ()):
        cell["id"] = INJECTED_ID
    if "outputs" not in cell:
        return
    outputs = []
    for output in cell["outputs"]:
        if _is_stderr(output):
            text = output.get("text", "")
            output["text"] = _without_log_lines("".join(text) if isinstance(text, list) else text)
            if not output["text"]:
                continue
        _plain_output(output, styler_ids)
        outputs.append(output)
    cell["outputs"] = outputs


def _is_stderr(output: Any) -> bool:
    return output.get("output_type") == "stream" and output.get("name") == "stderr"


def enter_project_root(start: str | os.PathLike | None = None) -> Path:
    """``chdir`` to the nearest folder at or above ``start`` that holds ``dvc.yaml``.

    Papermill runs notebooks from the project root, JupyterLab from ``notebooks/``:
    this makes the relative paths of ``params.yaml`` mean the same in both.
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file():
            os.chdir(folder)
            return folder
    raise FileNotFoundError(f"no dvc.yaml at or above {here}: open the notebook inside the iqa-kit project")
