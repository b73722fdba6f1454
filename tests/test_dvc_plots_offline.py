"""`dvc plots show` draws its charts without a network: the repository's page template
(.dvc/plots_offline.html, named in .dvc/config) carries vega, vega-lite and vega-embed inline."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from chromium import chromium_path, inspect_page
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / ".dvc" / "plots_offline.html"


def test_the_repository_names_the_offline_page_template():
    config = configparser.ConfigParser()
    config.read(REPO / ".dvc" / "config")
    assert config["plots"]["html_template"] == TEMPLATE.name
    page = TEMPLATE.read_text(encoding="utf-8")
    assert "{plot_divs}" in page and "{scripts}" not in page  # {scripts} is where DVC puts CDN tags
    assert 'src="http' not in page and "sourceMappingURL" not in page


@pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed")
def test_dvc_plots_show_renders_offline(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "curve.csv").write_text("x,y\n" + "".join(f"{i},{i * i}\n" for i in range(10)))
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "--no-scm", "-f", "-q"], cwd=project, check=True, timeout=120)
    shutil.copy(REPO / ".dvc" / "config", project / ".dvc" / "config")
    shutil.copy(TEMPLATE, project / ".dvc" / TEMPLATE.name)
    subprocess.run([*dvc, "plots", "show", "curve.csv", "-x", "x", "-y", "y", "-o", "out"],
                   cwd=project, check=True, timeout=120, capture_output=True)
    report = inspect_page(project / "out" / "index.html", tmp_path / "plots.png")
    assert report.requests == [] and report.errors == []
    pixels = np.asarray(Image.open(report.screenshot).convert("L"))
    assert (pixels < 200).mean() > 0.002, "the page is blank: the chart did not render"
