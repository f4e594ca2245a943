"""The run page in Debian's Chromium (driven by Playwright, no downloaded browser): the chart
is drawn with no console error and a zoom asks the server for the visible window's bars."""

import shutil
import signal
import subprocess

import pytest

from tests.dashboard.test_server import PAPERTAPE, _serve

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def test_a_run_page_draws_its_chart_and_zoom_fetches_finer_bars(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    ledger = tmp_path / "l.db"
    for fast in ("5", "8"):
        subprocess.run([PAPERTAPE, "backtest", "--ledger", str(ledger), "--no-progress",
                        "--param", f"fast={fast}"],
                       cwd=tmp_path, capture_output=True, timeout=300, check=True)
    proc, url = _serve(ledger)
    try:
        with sync_api.sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                        headless=True, args=FLAGS)
            page = ctx.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            asked: list[str] = []
            page.on("request", lambda r: asked.append(r.url) if "/bars" in r.url else None)
            page.goto(url.rstrip("/") + "/runs/1")
            drawn = "document.getElementById('status').textContent.includes('drawn')"
            page.wait_for_function(drawn, timeout=60_000)
            assert page.locator("#chart canvas").count() > 0
            box = page.locator("#chart").bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 200)
            for _ in range(5):
                page.mouse.wheel(0, -400)
            page.wait_for_timeout(1500)
            assert any("start=" in u for u in asked), asked
            page.goto(url.rstrip("/") + "/compare?runs=1,2")
            page.wait_for_function("document.getElementById('status').textContent.includes('2 curves')",
                                   timeout=60_000)
            assert not errors, errors
            ctx.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
