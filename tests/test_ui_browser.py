"""`glu-ray ui` serves a real tiny sweep, checked in headless Chromium the way a researcher looks.

Reads the session's finished tiny sweep (conftest.finished_tiny_sweep: one model, two metrics,
one width), starts `glu-ray ui` over its storage on a free loopback port, opens the printed URL in Debian's chromium
through Playwright and finds every trial's run name. The screenshot is kept under
.cache/test-artifacts/. Skips when chromium or playwright is missing (`make browser` installs it).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import SWEEP_EXPERIMENT as EXPERIMENT

pytestmark = [pytest.mark.browser, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / ".cache" / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sweep_storage(finished_tiny_sweep) -> Path:
    """The session's finished tiny sweep (conftest): a baseline and two pruned trials."""
    _need_browser()
    result, _, opts = finished_tiny_sweep
    return Path(opts.storage)


@pytest.fixture
def ui(sweep_storage):
    """`glu-ray ui` in a subprocess; yields the URL it prints, stops it with Ctrl-C afterwards."""
    port = free_port()
    cmd = [sys.executable, "-m", "glu_ray.cli.main", "ui", "--storage", str(sweep_storage), "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield _read_url(proc, timeout=180)
    finally:
        proc.send_signal(signal.SIGINT)  # what a researcher does
        try:
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def _read_url(proc: subprocess.Popen, timeout: float) -> str:
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if line.strip().startswith("http://"):
            return line.strip()
    raise AssertionError("glu-ray ui printed no URL:\n" + "".join(seen))


def _loopback_only(route) -> None:
    # Nothing may leave the machine: the UI's own requests go to 127.0.0.1; anything else is cut.
    host = urlsplit(route.request.url).hostname
    if host in ("127.0.0.1", "localhost"):
        route.continue_()
    else:
        route.abort()


def _need_browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is not installed (make browser)")
    return pytest.importorskip("playwright.sync_api")


def test_ui_opens_with_every_trial_showing_and_what_tells_them_apart_first(ui, finished_tiny_sweep):
    sync_api = _need_browser()

    assert urlsplit(ui).hostname == "127.0.0.1" and "#/experiments/" in ui
    names = [t.name for t in finished_tiny_sweep[0].trials]
    assert len(names) == 3
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.route("**/*", _loopback_only)
            try:
                page.goto(ui, wait_until="domcontentloaded", timeout=120_000)
                page.get_by_role("link", name=EXPERIMENT, exact=True).first.wait_for(timeout=120_000)
                for name in names:  # no click: the view opens with the trials' group expanded
                    page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
                close = page.get_by_role("button", name="Close")  # MLflow's assistant panel covers the table
                if close.count():
                    close.first.click()
                order = _header_order(page, "Parameters", "Metrics")
            finally:  # kept on failure too: it shows what the page did show
                page.screenshot(path=str(SHOTS / "mlflow_ui.png"), full_page=True)
        finally:
            browser.close()
    assert order == ["Parameters", "Metrics"], order  # what tells trials apart before their scores
    assert (SHOTS / "mlflow_ui.png").stat().st_size > 10_000


def _header_order(page, *groups: str) -> list[str]:
    """The runs table's column groups (Parameters, Metrics, ...) sorted left to right."""
    x = {}
    for name in groups:
        header = page.locator(".ag-header-group-cell", has_text=name).first
        header.wait_for(timeout=30_000)
        x[name] = header.bounding_box()["x"]
    return sorted(groups, key=x.get)
