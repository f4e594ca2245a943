"""``papertape live --dashboard`` against the loopback exchange, watched by Debian's Chromium:
the live run's page draws new bars, fills and plot points without a reload and shows the
feed's drop and reconnect; a websocket client that stops reading is dropped while the session goes on
recording bars; and the session's recording replays into the same ledger rows, so the
dashboard changed nothing the session wrote."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import urllib.error
import urllib.request

import pytest

from tests.dashboard.test_browser import browser  # noqa: F401 - the fixture
from tests.helpers.live import (
    SAMPLE_DAY,
    LiveProcess,
    aligned_start_ms,
    assert_same_rows,
    check_ledger,
    papertape,
    query,
    start_exchange,
    table_has,
    wait_for,
)

STRATEGY = "tests.helpers.live:PlottingFlip"
PLOTTED = "(window.papertapeRun.plots().close || []).length"
DROPPED = "dashboard: dropped a browser"


def stalled_client(port: int) -> socket.socket:
    """A websocket client of /api/live that reads the handshake and then nothing (a tiny
    receive buffer, so what the server sends backs up there soon)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /api/live HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def closed_by_server(sock: socket.socket, timeout: float = 10) -> bool:
    """Read what was queued; True when the server ended the connection (EOF or a reset)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):  # drain until EOF
            continue
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def page_number(page, selector: str) -> int:
    text = page.locator(selector).text_content() or ""
    return int(text) if text.isdigit() else -1


def test_the_live_page_updates_in_place_and_a_stalled_client_is_dropped(tmp_path, browser):  # noqa: F811
    page = browser
    navigations = []
    page.on("framenavigated",
            lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
    ledger, recording = tmp_path / "live.db", tmp_path / "rec.jsonl"
    exchange = start_exchange([SAMPLE_DAY], tmp_path, speed=400, faults="drop@16",
                              wall_start_ms=aligned_start_ms(lead_s=4))
    try:
        live = LiveProcess(exchange, tmp_path, ledger, "--strategy", STRATEGY, "--record", str(recording),
                           "--dashboard", "127.0.0.1:0", duration="30s")
        first = wait_for(lambda: live.stderr().splitlines()[:1], 30, "the dashboard's URL")[0]
        url = re.fullmatch(r"dashboard at (http://127\.0\.0\.1:(\d+)/)", first)
        assert url, first
        wait_for(lambda: table_has(ledger, "SELECT 1 FROM bars"), 30, "the first bar")
        page.goto(url.group(1) + "runs/1")
        page.wait_for_function("window.papertapeLive && window.papertapeLive.messages > 0", timeout=60_000)
        assert page.locator("#live").is_visible()
        shown = page.evaluate("window.papertapeRun.lastBar().time")
        markers = int(page.locator("#chart").get_attribute("data-markers") or 0)
        plotted = page.evaluate(PLOTTED)

        stalled = stalled_client(int(url.group(2)))
        page.wait_for_function("Number(document.getElementById('chart').dataset.liveBars || 0) >= 2",
                               timeout=30_000)
        assert page.evaluate("window.papertapeRun.lastBar().time") > shown  # a new bar, drawn in place
        page.wait_for_function(f"Number(document.getElementById('chart').dataset.markers) > {markers}",
                               timeout=30_000)  # FlipEveryBar fills on every bar
        page.wait_for_function(f"{PLOTTED} > {plotted}", timeout=30_000)  # and plots every close
        last = page.evaluate("window.papertapeRun.plots().close.slice(-1)[0]")

        wait_for(lambda: DROPPED in live.stderr(), 40, "the stalled client to be dropped")
        assert closed_by_server(stalled)
        stalled.close()
        bars_at_drop = query(ledger, "SELECT COUNT(*) n FROM bars").n[0]
        page_bars = page.evaluate("window.papertapeLive.bars")
        page.wait_for_function(f"window.papertapeLive.bars > {page_bars}", timeout=30_000)  # still fed
        wait_for(lambda: page_number(page, "#live-reconnects") >= 1, 30, "the feed's reconnect on the page")
        assert page.locator("#live-feed").text_content().startswith("connected")
        done = live.wait(120)
    finally:
        exchange.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.result["reconnects"] >= 1
    assert query(ledger, "SELECT COUNT(*) n FROM bars").n[0] > bars_at_drop  # recorded on after the drop
    opened = round(last["time"] * 1000) * 10**6
    on_bar = query(ledger, "SELECT close FROM bars WHERE open_time = ?", (opened,))
    assert on_bar.close.tolist() == [last["value"]]  # the live point sits on the bar it was made at
    check_ledger(ledger, [done.result["run_id"]], status="finished")
    assert len(navigations) == 1, navigations  # never reloaded
    assert not page.errors, page.errors
    latencies = page.evaluate("window.papertapeLive.latencies")
    assert latencies and max(latencies) < 5_000, latencies  # generous: a busy machine

    replay = tmp_path / "replay.db"
    out = papertape("backtest", "--data", str(recording), "--ledger", str(replay), "--interval", "2s",
                    "--strategy", STRATEGY, "--json", "--no-progress", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    counts = assert_same_rows(ledger, done.result["run_id"], replay, json.loads(out.stdout)["run_id"])
    assert counts["bars"] >= 8 and counts["fills"] >= 4 and counts["plots"] == counts["bars"]


def test_api_live_is_not_served_by_the_plain_dashboard(tmp_path):
    from tests.dashboard.test_server import _serve
    from tests.helpers.ledgers import sample_ledger

    proc, url = _serve(sample_ledger(tmp_path / "l.db", 2, 3))
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url.rstrip("/") + "/api/live", timeout=10)
        assert err.value.code == 404
    finally:
        proc.terminate()
        proc.wait(timeout=60)
