"""``papertape live --dashboard`` against the loopback exchange, with a real SQLite ledger and
Debian's Chromium: the live run's page draws each new bar without a reload, and a websocket
client that stops reading is dropped while the session goes on recording its bars."""

from __future__ import annotations

import re
import shutil
import socket

import pytest

from tests.helpers.live import SAMPLE_DAY, LiveProcess, query, start_exchange, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def _stalled_client(port: int) -> socket.socket:
    """A websocket client of /api/live that shakes hands and then never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /api/live HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    return sock


def test_the_live_page_draws_new_bars_without_reloading(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    ledger = tmp_path / "live.db"
    exchange = start_exchange([SAMPLE_DAY], tmp_path, speed=400)
    try:
        live = LiveProcess(exchange, tmp_path, ledger, "--dashboard", "127.0.0.1:0", duration="25s",
                           interval="1s")
        first = wait_for(lambda: live.stderr().splitlines()[:1], 60, "the dashboard URL")[0]
        match = re.match(r"dashboard at (http://127\.0\.0\.1:(\d+)/) \(live run (\d+) at ", first)
        assert match, first
        base, port, run_id = match.group(1), int(match.group(2)), int(match.group(3))
        stalled = _stalled_client(port)
        with sync_api.sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                        headless=True, args=FLAGS)
            page = ctx.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}runs/{run_id}")
            page.wait_for_function("Number(document.getElementById('live').dataset.bars) >= 1", timeout=60_000)
            seen = int(page.locator("#live").get_attribute("data-last-bar"))
            page.wait_for_function(f"Number(document.getElementById('live').dataset.lastBar) > {seen}",
                                   timeout=60_000)
            drawn = page.evaluate("window.papertapeRun.candles.data().map(c => c.time * 1000)")
            assert drawn[-1] > seen and seen in drawn  # the new bar is on the chart, after the one before
            assert page.locator("#live-feed").text_content() in ("connected", "live", "silent")
            ctx.close()
        done = live.wait(120)
        stalled.close()
    finally:
        exchange.stop()
    assert done.returncode == 0, done.stderr[-2000:]
    assert not errors, errors
    assert len(query(ledger, "SELECT * FROM bars")) == done.result["bars"] >= 5
