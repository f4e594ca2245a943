"""The loopback exchange's public websockets: acks, pongs, limits and the shapes of the
publicTrade and kline pushes, checked with a raw ``websockets`` client."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
import websockets

from engine.loopback.server import run_exchange
from engine.loopback.timemap import wall_ms
from tests.helpers.loopback import (
    DAY0,
    hist_ns,
    make_trades,
    recv_json,
    recv_until,
    write_derivatives,
    write_spot,
)

SPEED = 300.0
TICKS = {"PlusTick", "ZeroPlusTick", "MinusTick", "ZeroMinusTick"}


@pytest.fixture
def trades():
    return {"linear": make_trades(3000, DAY0, 1800, seed=1), "spot": make_trades(800, DAY0, 1800, seed=2)}


@pytest.fixture
def archives(tmp_path, trades):
    return [write_derivatives(tmp_path / "BTCUSDT2025-06-01.csv", trades["linear"]),
            write_spot(tmp_path / "BTCUSDT_2025-06-01.csv", trades["spot"])]


@pytest.fixture
async def server(archives):
    async with run_exchange(archives, speed=SPEED) as srv:
        yield srv


async def send(ws, **request):
    await ws.send(json.dumps(request))
    return await recv_until(ws, lambda m: "op" in m)


async def test_subscribe_acks_linear(server):
    async with websockets.connect(server.ws_url("linear")) as ws:
        reply = await send(ws, op="subscribe", args=["publicTrade.BTCUSDT"], req_id="r1")
        assert set(reply) == {"success", "ret_msg", "conn_id", "req_id", "op"}
        assert reply["success"] is True and reply["ret_msg"] == "" and reply["req_id"] == "r1"
        assert reply["op"] == "subscribe" and reply["conn_id"]
        reply = await send(ws, op="unsubscribe", args=["publicTrade.BTCUSDT"])
        assert reply["success"] is True and reply["op"] == "unsubscribe"
        assert reply["req_id"] == "" and reply["ret_msg"] == ""


async def test_subscribe_ack_spot_echoes_op_and_req_id(server):
    async with websockets.connect(server.ws_url("spot")) as ws:
        reply = await send(ws, op="subscribe", args=["publicTrade.BTCUSDT"], req_id="10001")
        assert reply == {"success": True, "ret_msg": "subscribe", "conn_id": reply["conn_id"],
                         "req_id": "10001", "op": "subscribe"}


@pytest.mark.parametrize("request_text", [
    '{"op": "subscribe", "args": ["publicTrade.ETHUSDT"]}',       # no such symbol
    '{"op": "subscribe", "args": ["orderbook.1.BTCUSDT"]}',       # topic not served
    '{"op": "subscribe", "args": ["kline.7.BTCUSDT"]}',           # no such interval
    '{"op": "subscribe", "args": "publicTrade.BTCUSDT"}',         # args not a list
    '{"op": "subscribe"}',
    '{"op": "dance", "args": []}',
    '{"op": "subscribe", "args": [',                               # not JSON
    '[1, 2]',
])
async def test_bad_requests_get_failure_acks(server, request_text):
    async with websockets.connect(server.ws_url("linear")) as ws:
        await ws.send(request_text)
        reply = await recv_until(ws, lambda m: "success" in m)
        assert reply["success"] is False and reply["ret_msg"].startswith("error:")
        assert set(reply) == {"success", "ret_msg", "conn_id", "req_id", "op"}
        pong = await send(ws, op="ping")  # the connection still works
        assert pong["ret_msg"] == "pong"


async def test_bad_topic_subscribes_nothing_and_repeat_subscribe_fails(server):
    async with websockets.connect(server.ws_url("linear")) as ws:
        reply = await send(ws, op="subscribe", args=["publicTrade.BTCUSDT", "publicTrade.NOPE"])
        assert reply["success"] is False and "publicTrade.NOPE" in reply["ret_msg"]
        assert (await send(ws, op="subscribe", args=["publicTrade.BTCUSDT"]))["success"] is True
        again = await send(ws, op="subscribe", args=["publicTrade.BTCUSDT"])
        assert again["success"] is False and "already subscribed" in again["ret_msg"]


async def test_pong_shapes(server):
    async with websockets.connect(server.ws_url("linear")) as ws:
        pong = await send(ws, op="ping", req_id="p1")
        assert pong == {"success": True, "ret_msg": "pong", "conn_id": pong["conn_id"], "req_id": "p1",
                        "op": "ping"}
    async with websockets.connect(server.ws_url("spot")) as ws:
        pong = await send(ws, op="ping", req_id="p2")
        assert pong == {"success": True, "ret_msg": "pong", "conn_id": pong["conn_id"], "op": "ping"}


async def test_spot_allows_at_most_ten_args(server):
    ten = ["publicTrade.BTCUSDT"] + [f"kline.{i}.BTCUSDT" for i in ("1", "3", "5", "15", "30", "60", "120",
                                                                     "240", "360")]
    async with websockets.connect(server.ws_url("spot")) as ws:
        reply = await send(ws, op="subscribe", args=[*ten, "kline.720.BTCUSDT"])
        assert reply["success"] is False and "10" in reply["ret_msg"]
        assert (await send(ws, op="subscribe", args=ten))["success"] is True
    async with websockets.connect(server.ws_url("linear")) as ws:  # derivatives have no such limit
        assert (await send(ws, op="subscribe", args=[*ten, "kline.720.BTCUSDT"]))["success"] is True


async def test_categories_have_separate_streams(server):
    async with websockets.connect(server.ws_url("inverse")) as ws:
        reply = await send(ws, op="subscribe", args=["publicTrade.BTCUSDT"])
        assert reply["success"] is False  # BTCUSDT is served on linear and spot only


async def _trade_messages(ws, count: int) -> list[dict]:
    messages = []
    while len(messages) < count:
        message = await recv_json(ws)
        if message.get("topic", "").startswith("publicTrade."):
            messages.append(message)
    return messages


@pytest.mark.parametrize("category", ["linear", "spot"])
async def test_public_trade_messages(server, trades, category):
    async with websockets.connect(server.ws_url(category)) as ws:
        await send(ws, op="subscribe", args=["publicTrade.BTCUSDT"])
        messages = await _trade_messages(ws, 40)
    state = server.state()
    fixture = trades[category]
    index = {trade_id: k for k, trade_id in enumerate(fixture["id"])} if category == "linear" else None
    hist = hist_ns(fixture, category == "spot")
    hist_start = min(hist_ns(trades[c], c == "spot")[0] for c in trades)  # one mapping for every symbol
    rows = []
    for message in messages:
        assert set(message) == {"topic", "type", "ts", "data"}
        assert message["topic"] == "publicTrade.BTCUSDT" and message["type"] == "snapshot"
        data = message["data"]
        assert 1 <= len(data) <= 1024
        assert [d["T"] for d in data] == sorted(d["T"] for d in data)
        assert message["ts"] >= data[-1]["T"]
        for d in data:
            keys = {"T", "s", "S", "v", "p", "i", "BT", "RPI", "seq"}
            assert set(d) == (keys | {"L"} if category == "linear" else keys)
            assert d["s"] == "BTCUSDT" and d["S"] in ("Buy", "Sell")
            assert d["BT"] is False and d["RPI"] is False
            assert isinstance(d["T"], int) and isinstance(d["seq"], int)
            assert isinstance(d["v"], str) and isinstance(d["p"], str) and isinstance(d["i"], str)
            if category == "linear":
                assert d["L"] in TICKS
            rows.append(d)
    positions = [index[d["i"]] if index else int(d["i"]) - 1000 for d in rows]
    assert positions == list(range(positions[0], positions[0] + len(rows)))  # consecutive, none lost
    for d, k in zip(rows, positions, strict=True):
        assert float(d["p"]) == fixture["price"][k] and float(d["v"]) == fixture["size"][k]
        assert d["S"] == ("Buy" if fixture["side"][k] > 0 else "Sell")
        expected = state["wall_start_ms"] + (hist[k] - hist_start) / SPEED / 1e6
        assert abs(d["T"] - expected) <= 1  # T = wall_start + (T_hist - hist_start) / speed
    assert state["hist_start_ms"] == hist_start // 1_000_000


async def test_kline_confirm_false_then_true(archives):
    """The served clock is shifted to 2.5 s before a minute boundary so a 1-minute candle
    closes during the test."""
    offset = 60_000 - wall_ms() % 60_000 - 2_500
    async with run_exchange(archives, speed=SPEED, now=lambda: wall_ms() + offset) as srv:
        async with websockets.connect(srv.ws_url("linear")) as ws:
            await send(ws, op="subscribe", args=["kline.1.BTCUSDT"])
            pushes = []
            async with asyncio.timeout(8):
                while not any(p["data"][0]["confirm"] for p in pushes):
                    message = await recv_json(ws)
                    if message.get("topic") == "kline.1.BTCUSDT":
                        pushes.append(message)
                pushes.append(await recv_until(ws, lambda m: m.get("topic") == "kline.1.BTCUSDT"))
        closed = next(p["data"][0] for p in pushes if p["data"][0]["confirm"])
        rows = await _rest_klines(srv, closed["start"])
    candles = [p["data"][0] for p in pushes]
    assert any(c["start"] == closed["start"] and not c["confirm"] for c in candles), \
        "the candle was pushed open (confirm false) before it closed"
    assert sum(p["data"][0]["confirm"] for p in pushes) == 1
    after = pushes[-1]["data"][0]
    assert after["start"] == closed["start"] + 60_000 and after["confirm"] is False
    message = pushes[0]
    assert set(message) == {"topic", "data", "ts", "type"} and message["type"] == "snapshot"
    assert set(closed) == {"start", "end", "interval", "open", "close", "high", "low", "volume", "turnover",
                           "confirm", "timestamp"}
    assert closed["end"] == closed["start"] + 59_999 and closed["interval"] == "1"
    assert closed["start"] <= closed["timestamp"] <= closed["end"]
    assert float(closed["low"]) <= float(closed["open"]) <= float(closed["high"])
    row = next(r for r in rows if int(r[0]) == closed["start"])
    assert row[1:] == [closed[k] for k in ("open", "high", "low", "close", "volume", "turnover")]


async def _rest_klines(srv, start: int) -> list[list[str]]:
    async with aiohttp.ClientSession() as session:
        params = {"category": "linear", "symbol": "BTCUSDT", "interval": "1", "start": str(start)}
        async with session.get(srv.url + "/v5/market/kline", params=params) as resp:
            return (await resp.json())["result"]["list"]
