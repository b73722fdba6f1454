"""Open an HTML file in headless Chromium and report what a person's browser would see.

Talks the DevTools protocol over a websocket (``websocket-client``): every
network request that is not the file itself or a ``data:`` URL, every script
error and console error, and a full-page screenshot. Tests skip when Chromium
is not installed.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def chromium_path() -> str | None:
    """The browser to open pages in; None lets a test skip, except where CI installed one
    (IQA_REQUIRE_BROWSER=1): there a missing browser is a failure, not a silent skip."""
    found = next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)
    if found is None and os.environ.get("IQA_REQUIRE_BROWSER") == "1":
        raise RuntimeError("IQA_REQUIRE_BROWSER=1 but no chromium on PATH: the browser checks cannot run")
    return found


@dataclass
class PageReport:
    requests: list[str] = field(default_factory=list)  # URLs other than the page and data: URLs
    errors: list[str] = field(default_factory=list)  # script exceptions and console errors
    screenshot: Path | None = None


def inspect_page(html: Path, screenshot: Path, width: int = 1280, timeout: float = 60.0) -> PageReport:
    import websocket

    binary = chromium_path()
    if binary is None:
        raise FileNotFoundError("chromium is not installed")
    profile = tempfile.mkdtemp(prefix="iqa-chromium-")
    proc = subprocess.Popen(
        [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
         f"--user-data-dir={profile}", "--no-first-run", "--disable-extensions",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--window-size={width},900", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    report = PageReport()
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not port_file.is_file() or not port_file.read_text().strip():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        import urllib.request

        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(t for t in targets if t.get("type") == "page")
        # Chromium 111+ refuses DevTools sockets that send an Origin header it was not told to allow.
        ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout, suppress_origin=True)
        counter = iter(range(1, 10**6))

        def send(method: str, **params) -> int:
            msg_id = next(counter)
            ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
            return msg_id

        def wait_for(msg_id: int | None = None, event: str | None = None) -> dict:
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"chromium: no answer for {msg_id or event}")
                msg = json.loads(ws.recv())
                _record(msg, report, html)
                if msg_id is not None and msg.get("id") == msg_id:
                    return msg
                if event is not None and msg.get("method") == event:
                    return msg

        for method in ("Network.enable", "Runtime.enable", "Log.enable", "Page.enable"):
            wait_for(send(method))
        send("Page.navigate", url=html.resolve().as_uri())
        wait_for(event="Page.loadEventFired")
        time.sleep(0.5)  # late scripts, late requests
        metrics = wait_for(send("Page.getLayoutMetrics"))["result"]
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        shot = wait_for(send(
            "Page.captureScreenshot", format="png", captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": width, "height": min(size["height"], 16000), "scale": 1},
        ))
        screenshot.write_bytes(base64.b64decode(shot["result"]["data"]))
        report.screenshot = screenshot
        ws.close()
    finally:
        proc.kill()
        proc.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)
    return report


def _record(msg: dict, report: PageReport, html: Path) -> None:
    method, params = msg.get("method"), msg.get("params", {})
    if method == "Network.requestWillBeSent":
        url = params["request"]["url"]
        if not url.startswith("data:") and url != html.resolve().as_uri():
            report.requests.append(url)
    elif method == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        report.errors.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
    elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
        report.errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
    elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
        report.errors.append(params["entry"].get("text", ""))
