"""``serve-exchange`` as a process: it starts, serves, stops on SIGTERM, and a server killed
and started again on the same port continues the same stream."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys

import aiohttp
import pytest
import websockets

from engine.loopback.cli import register, run
from engine.loopback.timemap import wall_ms
from tests.helpers.loopback import (
    DAY0,
    ROOT,
    free_port,
    make_trades,
    recv_until,
    start_server,
    write_derivatives,
)


async def get_json(url: str, **params) -> dict:
    async with aiohttp.ClientSession() as session:
        async with session.get(url, params=params) as resp:
            return await resp.json()


async def first_trade(ws_url: str) -> dict:
    async with websockets.connect(ws_url) as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": ["publicTrade.BTCUSDT"]}))
        return (await recv_until(ws, lambda m: "topic" in m, timeout=5))["data"][0]


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=10)
    finally:
        proc.stdout.close()
        proc.stderr.close()


async def test_serves_and_stops_on_sigterm(tmp_path):
    archive = write_derivatives(tmp_path / "BTCUSDT2025-06-01.csv", make_trades(2000, DAY0, 3600, seed=40))
    proc, url = start_server(["--data", str(archive), "--port", "0", "--speed", "600",
                              "--faults", "malformed@60s"])
    try:
        port = url.rsplit(":", 1)[1]
        trade = await first_trade(f"ws://127.0.0.1:{port}/v5/public/linear")
        state = await get_json(url + "/_control/state")
        assert abs(trade["T"] - wall_ms()) < 2000 and state["speed"] == 600 and state["trades_served"] > 0
    finally:
        code = stop(proc)
    assert code == 0


async def test_restart_on_the_same_port_continues_the_stream(tmp_path):
    # 1200 trades over an hour at 100x: the stream lasts 36 s and REST's last 1000 trades reach
    # back 30 s, so a restart slowed down by a loaded machine still falls inside both
    archive = write_derivatives(tmp_path / "BTCUSDT2025-06-01.csv", make_trades(1200, DAY0, 3600, seed=41))
    port = free_port()
    args = ["--data", str(archive), "--port", str(port), "--speed", "100", "--wall-start-ms", str(wall_ms())]
    proc, url = start_server(args)
    before = await first_trade(f"ws://127.0.0.1:{port}/v5/public/linear")  # leaves a connection in TIME_WAIT
    mapping = {k: v for k, v in (await get_json(url + "/_control/state")).items()
               if k in ("hist_start_ms", "wall_start_ms", "speed")}
    stop(proc, signal.SIGKILL)
    killed_at = wall_ms()
    await asyncio.sleep(0.5)
    proc, again_url = start_server(args)
    try:
        assert again_url == url
        after = await first_trade(f"ws://127.0.0.1:{port}/v5/public/linear")
        state = await get_json(url + "/_control/state")
        recent = await get_json(url + "/v5/market/recent-trade", category="linear", symbol="BTCUSDT",
                                limit="1000")
    finally:
        stop(proc)
    assert {k: state[k] for k in mapping} == mapping  # the same time mapping
    assert after["T"] >= killed_at + 400 and after["seq"] > before["seq"]  # the stream went on meanwhile
    times = [int(t["time"]) for t in recent["result"]["list"]]
    assert min(times) < killed_at < max(times)  # REST has the trades served before and during the outage


def test_help_documents_the_mapping_and_the_fault_grammar():
    shown = subprocess.run([sys.executable, "-m", "engine.loopback", "--help"], cwd=ROOT, capture_output=True,
                           text=True, timeout=30)
    assert shown.returncode == 0 and "wall_start_ms" in shown.stdout
    assert "NAME[:SYMBOL]@TIME[+ARG]" in shown.stdout


@pytest.mark.parametrize("argv, message", [
    (["--data", "/no/such/file.csv"], "no file matches"),
    (["--data", "{sample}", "--faults", "drop@x"], "NAME[:SYMBOL]@SECONDS"),
    (["--data", "{sample}", "--faults", "stall:ETHUSDT@1s"], "serves no ETHUSDT (it serves BTCUSDT)"),
    ([], "nothing to serve"),
    (["--data", "{sample}", "--start-at", "yesterday"], "--start-at"),
])
def test_user_errors_exit_2_with_one_line(tmp_path, capsys, argv, message):
    sample = write_derivatives(tmp_path / "BTCUSDT2025-06-01.csv", make_trades(10, DAY0, 60))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["serve-exchange", *(a.format(sample=sample) for a in argv)])
    assert run(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("argv, message", [
    (["--port", "99999"], "port 99999 is not a port (0-65535)"),  # was an OverflowError from bind()
    (["--port", "-1"], "port -1 is not a port"),
    (["--speed", "inf"], "speed must be positive and finite"),
])
def test_bad_flags_exit_2_naming_the_flag(capsys, argv, message):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["serve-exchange", "--data", "x.csv", *argv])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and message in err.splitlines()[-1] and "Traceback" not in err
