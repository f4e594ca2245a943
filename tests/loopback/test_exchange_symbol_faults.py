"""Faults aimed at one symbol of a server that serves two (``stall:ETHUSDT@40s+5s``, or
``{"symbol": "ETHUSDT"}`` on the control): they hit that symbol's topics, the connections
subscribed to it and its REST calls, and leave the other symbol streaming."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
import websockets
from websockets.exceptions import ConnectionClosedError

from engine.loopback.faults import FaultError, make_fault, parse_schedule
from engine.loopback.server import run_exchange
from tests.helpers.loopback import DAY0, collect, make_trades, recv_until, write_derivatives

SPEED = 300.0
SYMBOLS = ("BTCUSDT", "ETHUSDT")


@pytest.fixture
def archives(tmp_path):
    return [write_derivatives(tmp_path / f"{symbol}2025-06-01.csv", make_trades(6000, DAY0, 6000, seed=k + 5),
                              symbol=symbol) for k, symbol in enumerate(SYMBOLS)]


@pytest.fixture
async def server(archives):
    async with run_exchange(archives, speed=SPEED) as srv:
        yield srv


async def subscribe(server, *symbols: str):
    # max_queue=None: a connection left unread while a test reads another keeps reading its
    # socket, so its close handshake is not stuck behind unread frames (10 s close timeout)
    ws = await websockets.connect(server.ws_url("linear"), max_queue=None)
    await ws.send(json.dumps({"op": "subscribe", "args": [f"publicTrade.{s}" for s in symbols]}))
    await recv_until(ws, lambda m: m.get("op") == "subscribe")
    for symbol in symbols:  # every topic is flowing
        await recv_until(ws, lambda m, s=symbol: m.get("topic") == f"publicTrade.{s}", timeout=10)
    return ws


async def post(server, body: dict) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.post(server.url + "/_control/fault", json=body) as resp:
            return resp.status, await resp.json()


async def ping(ws, timeout: float) -> dict:
    await ws.send(json.dumps({"op": "ping"}))
    return await recv_until(ws, lambda m: m.get("ret_msg") == "pong", timeout)


def trade_frames(frames: list, symbol: str) -> list[dict]:
    return [f for f in frames if isinstance(f, dict) and f.get("topic") == f"publicTrade.{symbol}"]


def test_a_schedule_names_the_symbol_a_fault_is_aimed_at():
    faults = parse_schedule("drop@20s, stall:ETHUSDT@40s+5s,rest403:BTCUSDT@50+2")
    assert [(f.name, f.symbol, f.arg) for f in faults] == [
        ("drop", None, None), ("stall", "ETHUSDT", 5.0), ("rest403", "BTCUSDT", 2)]
    assert faults[1].describe() == "stall 5 s on ETHUSDT"
    for bad in ("stall:@4s", "stall:ethusdt@4s", "stall:ETH/USDT@4s", "stall:ETHUSDT:X@4s"):
        with pytest.raises(FaultError):
            parse_schedule(bad)


def test_a_fault_aimed_at_a_symbol_not_served_is_refused_before_the_server_starts(archives):
    with pytest.raises(FaultError, match="serves no SOLUSDT.*BTCUSDT, ETHUSDT"):
        asyncio.run(run_exchange(archives, faults="stall:SOLUSDT@1s").__aenter__())


async def test_the_control_refuses_a_symbol_not_served_or_not_a_symbol(server):
    for body in ({"fault": "stall", "symbol": "SOLUSDT"}, {"fault": "drop", "symbol": 7},
                 {"fault": "drop", "symbol": "eth"}):
        status, answer = await post(server, body)
        assert status == 400 and answer["ok"] is False, (body, answer)
    assert server.state()["faults_fired"] == []


async def test_a_stall_of_one_symbol_leaves_the_other_streaming(server):
    async with await subscribe(server, *SYMBOLS) as ws:
        status, answer = await post(server, {"fault": "stall", "seconds": 3.0, "symbol": "ETHUSDT"})
        fired_at = server.now()
        assert status == 200 and answer["symbol"] == "ETHUSDT"
        assert server.state()["stalled_symbols"] == ["ETHUSDT"] and not server.state()["stalled"]
        frames = await collect(ws, 1.0)
        assert trade_frames(frames, "BTCUSDT")  # BTCUSDT goes on
        assert all(d["T"] <= fired_at for f in trade_frames(frames, "ETHUSDT") for d in f["data"])
        resumed = await recv_until(ws, lambda m: m.get("topic") == "publicTrade.ETHUSDT", timeout=10)
    assert resumed["data"][0]["T"] > fired_at + 2000  # what was due during the stall never comes
    assert server.state()["faults_fired"][0] | {"at_ms": 0} == {
        "fault": "stall", "arg": 3.0, "at_ms": 0, "source": "control", "symbol": "ETHUSDT"}


async def test_a_drop_of_one_symbol_closes_only_the_connections_subscribed_to_it(server):
    async with await subscribe(server, "BTCUSDT") as btc, await subscribe(server, "ETHUSDT") as eth:
        server.fire(make_fault("drop", symbol="ETHUSDT"))
        with pytest.raises(ConnectionClosedError) as closed:
            async with asyncio.timeout(10):
                while True:
                    await eth.recv()
        assert closed.value.rcvd is None  # aborted: no close frame
        assert (await ping(btc, 5))["success"] is True
        await recv_until(btc, lambda m: m.get("topic") == "publicTrade.BTCUSDT", timeout=10)


async def test_a_nopong_of_one_symbol_ignores_only_its_subscribers_pings(server):
    async with await subscribe(server, "BTCUSDT") as btc, await subscribe(server, "ETHUSDT") as eth:
        server.fire(make_fault("nopong", 30.0, symbol="ETHUSDT"))
        assert (await ping(btc, 5))["success"] is True
        with pytest.raises(TimeoutError):
            await ping(eth, 1.0)


async def test_duplicate_and_malformed_of_one_symbol(server):
    async with await subscribe(server, "BTCUSDT") as btc, await subscribe(server, *SYMBOLS) as both:
        before = await collect(both, 0.3)  # holds the ETHUSDT message the fault repeats
        server.fire(make_fault("duplicate", symbol="ETHUSDT"))
        server.fire(make_fault("malformed", symbol="ETHUSDT"))
        seen_both = before + await collect(both, 1.0)
        seen_btc = await collect(btc, 0.2)
    eth = [tuple(d["i"] for d in f["data"]) for f in trade_frames(seen_both, "ETHUSDT")]
    btc_ids = [tuple(d["i"] for d in f["data"]) for f in trade_frames(seen_both, "BTCUSDT")]
    assert len(eth) != len(set(eth)) and len(btc_ids) == len(set(btc_ids))  # ETHUSDT's message came twice
    assert any(isinstance(f, str) for f in seen_both)  # the frame that is not JSON
    assert not any(isinstance(f, str) for f in seen_btc)  # BTCUSDT's subscriber got none


async def test_rest403_of_one_symbol_answers_the_others_calls(server):
    server.fire(make_fault("rest403", 1, symbol="ETHUSDT"))
    statuses = []
    async with aiohttp.ClientSession() as session:
        for symbol in ("BTCUSDT", "ETHUSDT", "ETHUSDT"):
            params = {"category": "linear", "symbol": symbol, "interval": "1"}
            async with session.get(server.url + "/v5/market/kline", params=params) as resp:
                statuses.append(resp.status)
    assert statuses == [200, 403, 200]
