"""Every fault the loopback exchange injects, observed by a raw websocket or HTTP client."""

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


@pytest.fixture
def archive(tmp_path):
    return write_derivatives(tmp_path / "BTCUSDT2025-06-01.csv", make_trades(4000, DAY0, 3000, seed=3))


@pytest.fixture
async def server(archive):
    async with run_exchange([archive], speed=SPEED) as srv:
        yield srv


async def subscribed(server):
    ws = await websockets.connect(server.ws_url("linear"))
    await ws.send(json.dumps({"op": "subscribe", "args": ["publicTrade.BTCUSDT"]}))
    await recv_until(ws, lambda m: m.get("op") == "subscribe")
    await recv_until(ws, lambda m: "topic" in m)  # the stream is flowing
    return ws


async def fire(server, fault: str, **arg) -> dict:
    async with aiohttp.ClientSession() as session:
        async with session.post(server.url + "/_control/fault", json={"fault": fault, **arg}) as resp:
            assert resp.status == 200
            return await resp.json()


async def ping(ws, timeout: float):
    await ws.send(json.dumps({"op": "ping"}))
    return await recv_until(ws, lambda m: m.get("ret_msg") == "pong", timeout)


def test_schedule_grammar():
    faults = parse_schedule("stall@40s+5s, drop@20s,nopong@60+30,rest403@90s+3,malformed@70.5s")
    assert [(f.name, f.at_s, f.arg) for f in faults] == [
        ("drop", 20.0, None), ("stall", 40.0, 5.0), ("nopong", 60.0, 30.0), ("malformed", 70.5, None),
        ("rest403", 90.0, 3)]
    assert make_fault("stall").arg == 5.0 and make_fault("cut").arg == 1
    for bad in ("drop", "drop@x", "teleport@3s", "drop@3s+2", "rest403@1s+1.5", "stall@1s+0"):
        with pytest.raises(FaultError):
            parse_schedule(bad)


async def test_control_rejects_bad_faults(server):
    async with aiohttp.ClientSession() as session:
        for body in ({"fault": "teleport"}, {"fault": "stall", "seconds": -1}, ["drop"]):
            async with session.post(server.url + "/_control/fault", json=body) as resp:
                assert resp.status == 400 and (await resp.json())["ok"] is False


async def test_drop_aborts_without_close_frame(server):
    ws = await subscribed(server)
    await fire(server, "drop")
    with pytest.raises(ConnectionClosedError) as closed:
        async with asyncio.timeout(3):
            while True:
                await ws.recv()
    assert closed.value.rcvd is None  # no close frame: the TCP connection was cut
    async with websockets.connect(server.ws_url("linear")) as again:  # reconnecting works
        assert (await ping(again, 2))["success"] is True
    assert server.state()["faults_fired"][0]["fault"] == "drop"


async def test_stall_sends_nothing_but_answers_pings_and_never_resends(server):
    async with await subscribed(server) as ws:
        await fire(server, "stall", seconds=1.5)
        fired_at = server.now()
        served_before = server.state()["trades_served"]
        frames = await collect(ws, 0.6)
        assert all(d["T"] <= fired_at for f in frames if "topic" in f for d in f["data"])
        assert (await ping(ws, 1))["success"] is True
        assert server.state()["stalled"]
        resumed = await recv_until(ws, lambda m: "topic" in m, timeout=3)
        resumed_at = server.now()
    first_after = resumed["data"][0]["T"]
    assert first_after >= fired_at + 1400  # what was due during the stall never comes
    assert server.state()["trades_served"] > served_before  # ...though the exchange went on
    async with aiohttp.ClientSession() as session:
        params = {"category": "linear", "symbol": "BTCUSDT", "limit": "1000"}
        async with session.get(server.url + "/v5/market/recent-trade", params=params) as resp:
            times = [int(t["time"]) for t in (await resp.json())["result"]["list"]]
    assert any(fired_at + 100 < t < first_after for t in times)  # REST has the missed trades
    assert resumed_at - fired_at < 2500


async def test_nopong_ignores_pings_for_a_while(server):
    async with websockets.connect(server.ws_url("linear")) as ws:
        await fire(server, "nopong", seconds=1.0)
        with pytest.raises(TimeoutError):
            await ping(ws, 0.6)
        waiter = await ws.ping()  # protocol-level pings go unanswered too
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiter), 0.2)
        await asyncio.sleep(0.4)
        assert (await ping(ws, 1))["op"] == "ping"


async def test_malformed_frame(server):
    async with await subscribed(server) as ws:
        await fire(server, "malformed")
        frames = await collect(ws, 0.5)
    assert any(isinstance(f, str) for f in frames)  # a frame that does not parse as JSON


async def test_duplicate_resends_the_last_trade_message(server):
    async with await subscribed(server) as ws:
        frames = await collect(ws, 0.2)
        await fire(server, "duplicate")
        frames = [f for f in frames + await collect(ws, 0.5) if isinstance(f, dict) and "topic" in f]
    ids = [tuple(d["i"] for d in f["data"]) for f in frames]
    assert len(ids) != len(set(ids))


async def test_outoforder_swaps_two_messages(server):
    async with await subscribed(server) as ws:
        await fire(server, "outoforder")
        frames = [f for f in await collect(ws, 0.6) if isinstance(f, dict) and "topic" in f]
    starts = [f["data"][0]["T"] for f in frames]
    ends = [f["data"][-1]["T"] for f in frames]
    assert any(start < end for start, end in zip(starts[1:], ends[:-1], strict=True))
    ids = [d["i"] for f in frames for d in f["data"]]
    assert len(ids) == len(set(ids))  # swapped, not repeated


async def test_rest403_then_normal_answers(server):
    await fire(server, "rest403", count=2)
    params = {"category": "linear", "symbol": "BTCUSDT", "interval": "1"}
    async with aiohttp.ClientSession() as session:
        statuses = []
        for _ in range(3):
            async with session.get(server.url + "/v5/market/kline", params=params) as resp:
                statuses.append((resp.status, await resp.text()))
    assert [s for s, _ in statuses] == [403, 403, 200]
    assert "access too frequent" in statuses[0][1]
    assert json.loads(statuses[2][1])["retCode"] == 0


async def test_scheduled_faults_fire_on_time(archive):
    async with run_exchange([archive], speed=SPEED, faults="malformed@0.3s,rest403@0.3s+1") as srv:
        async with websockets.connect(srv.ws_url("linear")) as ws:
            frames = await collect(ws, 1.0)
        fired = srv.state()["faults_fired"]
    assert any(isinstance(f, str) for f in frames)
    assert [(f["fault"], f["source"]) for f in fired] == [("malformed", "schedule"), ("rest403", "schedule")]
