"""/api/live's fan-out on a real aiohttp server fed by a real bus: a browser that reads gets
every bar in order; one that stops reading is dropped once its queue is full, and the bus
goes on delivering (the recorder-like subscriber still sees every bar); a strategy's plot
point goes to the bar it was made at."""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp
from aiohttp import web

from engine.core.bus import Bus
from engine.core.clock import ReplayClock
from engine.core.events import Bar, Plot
from engine.dashboard.live_channel import LiveChannel

BARS = 3000
MINUTE_NS = 60 * 10**9


def _bar(i: int) -> Bar:
    t = i * MINUTE_NS
    return Bar("BTCUSDT", "1m", t, t + MINUTE_NS, 100.0 + i, 101.0 + i, 99.0 + i, 100.5 + i, 1.0, 100.0, 3,
               t + MINUTE_NS, t + MINUTE_NS)


async def _stalled(port: int) -> socket.socket:
    """A client that shakes hands on /api/live and then never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    sock.sendall(b"GET /api/live HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    return sock


async def _scenario() -> tuple[list[int], int, int, LiveChannel]:
    bus = Bus(ReplayClock())
    recorded: list[int] = []
    bus.subscribe(Bar, lambda bar: recorded.append(bar.open_time))
    channel = LiveChannel(queue_messages=16)
    channel.observe(bus)
    app = web.Application()
    app.router.add_get("/api/live", channel.serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    received: list[int] = []
    url = f"http://127.0.0.1:{port}/api/live"
    async with aiohttp.ClientSession() as client, client.ws_connect(url) as ws:
        assert json.loads((await ws.receive()).data) == {"type": "hello", "run_id": None}
        stalled = await _stalled(port)
        while len(channel.clients) < 2:
            await asyncio.sleep(0.01)
        for i in range(BARS):
            bus.process(_bar(i))
            msg = json.loads((await ws.receive()).data)  # the reading browser keeps up
            received.append(msg["t"])
        dropped, left = channel.dropped, len(channel.clients)
        stalled.close()
    await runner.cleanup()
    return received, dropped, left, recorded


def test_a_stalled_browser_is_dropped_and_the_bus_goes_on():
    received, dropped, left, recorded = asyncio.run(_scenario())
    every = [i * 60_000 for i in range(BARS)]
    assert recorded == [i * MINUTE_NS for i in range(BARS)]  # every bar delivered on the bus
    assert received == every  # the reading browser got every bar in order
    assert dropped == 1 and left == 1  # only the stalled one was dropped


async def _plots() -> list[dict]:
    bus = Bus(ReplayClock())
    channel = LiveChannel()
    channel.observe(bus)
    # a strategy plotting while it handles each bar (its plot is published then, delivered after)
    bus.subscribe(Bar, lambda b: bus.publish(Plot("s", b.symbol, "sma", b.close, b.ts_init, b.ts_init)))
    app = web.Application()
    app.router.add_get("/api/live", channel.serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/api/live"
    got = []
    async with aiohttp.ClientSession() as client, client.ws_connect(url) as ws:
        await ws.receive()  # hello
        bus.process(Plot("s", "BTCUSDT", "sma", 1.0, 0, 0))  # before any bar: on no bar, not sent
        for i in range(3):
            bus.process(_bar(i))
            got += [json.loads((await ws.receive()).data) for _ in range(2)]
    await runner.cleanup()
    return got


def test_a_plot_point_is_sent_for_the_bar_it_was_made_at():
    got = asyncio.run(_plots())
    assert [m["type"] for m in got] == ["bar", "plot"] * 3
    for i, (bar, plot) in enumerate(zip(got[::2], got[1::2], strict=True)):
        assert plot["t"] == bar["t"] == i * 60_000 and plot["value"] == bar["c"] and plot["name"] == "sma"
