"""``--ws-url`` as users write it: the base URL or the full endpoint of Bybit's docs and
pybit (``wss://stream.bybit.com/v5/public/linear``) both connect; a handshake the server
refuses on the first connection (a 404 for a wrong path) ends the session at once with one
line and exit 2; a URL of another category or scheme is refused before anything runs."""

from __future__ import annotations

import time

import pytest

from engine.bybit.endpoints import public_ws_endpoint
from tests.helpers.live import SAMPLE_DAY, LiveProcess, papertape, query, start_exchange


@pytest.mark.parametrize("given", ["wss://stream.bybit.com", "wss://stream.bybit.com/",
                                   "wss://stream.bybit.com/v5/public/linear",
                                   "wss://stream.bybit.com/v5/public/linear/", "wss://stream.bybit.com/v5/public"])
def test_the_base_url_and_the_full_endpoint_give_the_same_endpoint(given):
    assert public_ws_endpoint(given, "linear") == "wss://stream.bybit.com/v5/public/linear"


@pytest.mark.parametrize("given, message", [
    ("wss://stream.bybit.com/v5/public/spot", "is the spot endpoint; a linear run needs"),
    ("https://stream.bybit.com", "is not a websocket URL"),
    ("stream.bybit.com", "is not a websocket URL"),
])
def test_another_categorys_endpoint_or_scheme_is_refused(given, message):
    with pytest.raises(ValueError, match=message):
        public_ws_endpoint(given, "linear")


def test_a_bad_ws_url_exits_2_before_a_run_is_recorded(tmp_path):
    ledger = tmp_path / "live.db"
    done = papertape("live", "--ledger", str(ledger), "--ws-url", "wss://stream.bybit.com/v5/public/spot",
                     "--rest-url", "http://127.0.0.1:9", "--duration", "5s", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "is the spot endpoint" in lines[0], done.stderr
    assert not ledger.exists()


def test_the_full_endpoint_connects_and_a_wrong_path_ends_the_session_with_exit_2(tmp_path):
    exchange = start_exchange([SAMPLE_DAY], tmp_path, speed=400)
    try:
        full = LiveProcess(exchange, tmp_path, tmp_path / "full.db", "--ws-url",
                           f"{exchange.ws}/v5/public/linear", duration="6s", interval="1s")
        done = full.wait(60)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.result["status"] == "finished" and done.result["bars"] >= 2
        assert done.result["trades_received"] > 0 and done.result["reconnects"] == 0

        started = time.monotonic()
        wrong = LiveProcess(exchange, tmp_path, tmp_path / "wrong.db", "--ws-url",
                            f"{exchange.ws}/v5/stream/linear", duration="60s", interval="1s")
        refused = wrong.wait(40)
    finally:
        exchange.stop()
    assert time.monotonic() - started < 30  # at once, not after the 60 s duration
    assert refused.returncode == 2 and refused.result is None, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert lines[0].startswith(f"papertape: error: {exchange.ws}/v5/stream/linear refused the websocket "
                               "handshake: HTTP 404") and "is --ws-url" in lines[0], lines[0]
    run = query(tmp_path / "wrong.db", "SELECT * FROM runs").iloc[0]
    assert run.status == "failed" and "HTTP 404" in run.error


def test_wss_to_a_plain_websocket_port_ends_the_session_at_once(tmp_path):
    # a TLS handshake that fails on the first connection is a wrong URL, not an outage: it
    # was retried for the whole --duration and ended "failed" with exit 1
    exchange = start_exchange([SAMPLE_DAY], tmp_path, speed=400)
    try:
        started = time.monotonic()
        tls = LiveProcess(exchange, tmp_path, tmp_path / "tls.db", "--ws-url",
                          exchange.ws.replace("ws://", "wss://"), duration="60s", interval="1s")
        refused = tls.wait(40)
    finally:
        exchange.stop()
    assert time.monotonic() - started < 30
    assert refused.returncode == 2 and refused.result is None, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused the websocket handshake: SSL" in lines[0], refused.stderr
