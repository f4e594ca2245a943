"""The live run's events for browsers: the bus's bars, fills, order updates and feed status
as JSON messages, each browser with its own bounded queue. Publishing never waits: a browser
whose queue is full (it reads slower than the session makes events) is dropped."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from engine.core.clock import NS_PER_MS
from engine.core.events import Bar, FeedStatus, Fill, OrderUpdate

log = logging.getLogger(__name__)

QUEUE_SIZE = 256


class _Browser:
    """One websocket client: its queue of encoded messages and the task serving it."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=size)
        self.task = asyncio.current_task()
        self.ended = False


class LiveChannel:
    """Fans the live session's events out to every connected browser (``GET /api/live``)."""

    def __init__(self, run_id: int, facts: Callable[[], dict[str, Any]], queue_size: int = QUEUE_SIZE) -> None:
        self.run_id, self.facts, self.queue_size = run_id, facts, queue_size
        self.browsers: set[_Browser] = set()
        self.dropped = 0

    def observe(self, bus) -> None:
        """Subscribe to the bus (after the recorder, so a message follows its ledger row)."""
        bus.subscribe(Bar, self.on_bar)
        bus.subscribe(Fill, self.on_fill)
        bus.subscribe(OrderUpdate, self.on_order)
        bus.subscribe(FeedStatus, self.on_feed)

    def on_bar(self, bar: Bar) -> None:
        self.publish({"type": "bar", "symbol": bar.symbol, "time": bar.open_time // NS_PER_MS,
                      "close_time": bar.close_time // NS_PER_MS, "open": bar.open, "high": bar.high,
                      "low": bar.low, "close": bar.close, "volume": bar.volume})
        self.publish_status()

    def on_fill(self, fill: Fill) -> None:
        self.publish({"type": "fill", "symbol": fill.symbol, "order": fill.client_order_id, "side": fill.side,
                      "price": fill.price, "qty": fill.qty, "fee": fill.fee, "liquidity": fill.liquidity,
                      "time": fill.ts_event // NS_PER_MS})

    def on_order(self, update: OrderUpdate) -> None:
        self.publish({"type": "order", "symbol": update.symbol, "order": update.client_order_id,
                      "status": update.status, "reason": update.reason, "time": update.ts_event // NS_PER_MS})

    def on_feed(self, status: FeedStatus) -> None:
        self.publish({"type": "feed", "symbol": status.symbol, "status": status.status,
                      "detail": status.detail, "time": status.ts_event // NS_PER_MS})
        self.publish_status()

    def publish_status(self) -> None:
        """Equity, positions, open orders, feed state and reconnects as they are now."""
        self.publish({"type": "status", **self.facts()})

    def publish(self, message: dict[str, Any]) -> None:
        """Queue ``message`` for every browser; drop those whose queue is full."""
        if not self.browsers:
            return
        text = json.dumps(message, allow_nan=False, default=str)
        for browser in list(self.browsers):
            try:
                browser.queue.put_nowait(text)
            except asyncio.QueueFull:
                self._drop(browser)

    def _drop(self, browser: _Browser) -> None:
        self.dropped += 1
        log.warning("a dashboard browser fell %d messages behind and was dropped", self.queue_size)
        self._end(browser)

    def _end(self, browser: _Browser) -> None:
        self.browsers.discard(browser)
        browser.ended = True
        if browser.task is not None:
            browser.task.cancel()

    async def handler(self, request: web.Request) -> web.StreamResponse:
        """``GET /api/live``: a hello with the run id and its status, then every message."""
        ws = web.WebSocketResponse(heartbeat=20.0)
        await ws.prepare(request)
        browser = _Browser(self.queue_size)
        self.browsers.add(browser)
        reader = asyncio.create_task(_ignore_input(ws))
        gone = browser.task.cancel if browser.task is not None else None

        def browser_left(_: asyncio.Task) -> None:  # closed by the browser: stop waiting for messages
            if gone is not None:
                gone()

        reader.add_done_callback(browser_left)
        try:
            await ws.send_str(json.dumps({"type": "hello", "run_id": self.run_id, **self.facts()}, default=str))
            while not ws.closed:
                await ws.send_str(await browser.queue.get())
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.browsers.discard(browser)
            reader.remove_done_callback(browser_left)
            reader.cancel()
            if browser.ended and request.transport is not None:
                request.transport.abort()  # a stalled browser would hold a polite close for seconds
            elif not ws.closed:
                await ws.close()
        return ws

    async def close(self) -> None:
        """End every browser's stream (the session is over)."""
        for browser in list(self.browsers):
            self._end(browser)


async def _ignore_input(ws: web.WebSocketResponse) -> None:
    """Read (and ignore) what a browser sends, so closes and pings are seen."""
    async for msg in ws:
        if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            break
