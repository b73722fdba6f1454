"""Run a section notebook with papermill and keep an HTML copy beside it.

Executed notebooks are leaf outputs of the pipeline (they change on every run:
timestamps), so nothing downstream may depend on them; the tables and figures
they write are the stable outputs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


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
    import papermill as pm

    from iqa_lib.fileio import writing

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
