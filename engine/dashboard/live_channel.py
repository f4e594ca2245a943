"""The live session's events for the browsers on websocket ``/api/live``: an observer on the
bus turns bars, trades, fills, order updates, positions, feed status and strategy plot points
into JSON once and puts it on every browser's bounded queue without waiting; a browser whose
queue is full (it reads slower than the session makes events) is dropped, so the pump never
waits for one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from typing import Any

from aiohttp import web

from engine.core.events import Bar, FeedStatus, Fill, OrderUpdate, Plot, PositionUpdate, Trades

log = logging.getLogger(__name__)

QUEUE_MESSAGES = 256  # messages held for one browser before it counts as stalled
SEND_BUFFER = 16_384  # kernel and transport bytes per browser: a stalled one fills them soon
NS_PER_MS = 1_000_000


class Client:
    """One browser: its queue of JSON texts and whether it was dropped."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue(size)
        self.dropped = asyncio.Event()


class LiveChannel:
    """What the live run's page is sent: a ``hello`` snapshot on connecting, then each event
    as it is handled (``bar``, ``trade``, ``fill``, ``order``, ``position``, ``equity``,
    ``feed``, ``plot``). Reads the session, never changes it, so the ledger rows are those of a run
    without a dashboard."""

    def __init__(self, queue_messages: int = QUEUE_MESSAGES) -> None:
        self.queue_messages = queue_messages
        self.clients: set[Client] = set()
        self.session: Any = None
        self.feed: Any = None
        self.dropped = 0
        self.closed_bars: dict[str, tuple[int, int]] = {}  # symbol -> its last bar's (open, close) ns

    def attach(self, session: Any, feed: Any) -> None:
        """Observe ``session``'s bus (after the ledger recorder) and ``feed``'s connection."""
        self.session, self.feed = session, feed
        self.observe(session.bus)

    def observe(self, bus: Any) -> None:
        """Subscribe to ``bus``'s events (without a session: no equity or snapshots)."""
        bus.subscribe(Bar, self._on_bar)
        bus.subscribe(Trades, self._on_trades)
        bus.subscribe(Fill, self._on_fill)
        bus.subscribe(OrderUpdate, self._on_order)
        bus.subscribe(PositionUpdate, self._on_position)
        bus.subscribe(FeedStatus, self._on_feed)
        bus.subscribe(Plot, self._on_plot)

    # -- the bus side: never waits, never raises into the pump ------------------------------

    def send(self, message: dict[str, Any]) -> None:
        """Queue ``message`` for every browser; one that has no room left is dropped."""
        if not self.clients:
            return
        message["sent_ms"] = time.time_ns() // NS_PER_MS
        text = json.dumps(message, separators=(",", ":"))
        for client in list(self.clients):
            try:
                client.queue.put_nowait(text)
            except asyncio.QueueFull:
                self.drop(client)

    def drop(self, client: Client) -> None:
        if client in self.clients:
            self.clients.discard(client)
            self.dropped += 1
            client.dropped.set()
            log.warning("dashboard: dropped a browser that fell %d messages behind", self.queue_messages)

    def _on_bar(self, bar: Bar) -> None:
        self.closed_bars[bar.symbol] = (bar.open_time, bar.close_time)
        if not self.clients:
            return
        self.send({"type": "bar", "symbol": bar.symbol, "t": bar.open_time // NS_PER_MS,
                   "close_ms": bar.close_time // NS_PER_MS, "o": bar.open, "h": bar.high, "l": bar.low,
                   "c": bar.close, "v": bar.volume, "n": bar.trades})
        if self.session is None:
            return
        broker = self.session.broker
        self.send({"type": "equity", "t": bar.close_time // NS_PER_MS, "value": broker.account.equity(),
                   "cash": broker.account.cash, "open_orders": self.open_orders(),
                   "bars": self.session.recorder.bars})

    def _on_plot(self, point: Plot) -> None:
        """A plot point goes on the bar it was made for: the symbol's newest closed bar (as the
        run page places the recorded ones); one made before any bar closed has none."""
        opened, closed = self.closed_bars.get(point.symbol, (0, None))
        if not self.clients or closed is None or closed > point.ts_event:
            return
        self.send({"type": "plot", "symbol": point.symbol, "name": point.name, "value": point.value,
                   "t": opened // NS_PER_MS, "ts": point.ts_event // NS_PER_MS})

    def _on_trades(self, trades: Trades) -> None:
        if not self.clients or not len(trades.price):
            return
        self.send({"type": "trade", "symbol": trades.symbol, "t": int(trades.ts_event[-1]) // NS_PER_MS,
                   "price": float(trades.price[-1]), "high": float(trades.price.max()),
                   "low": float(trades.price.min()), "n": len(trades.price)})

    def _on_fill(self, fill: Fill) -> None:
        if not self.clients:
            return
        self.send({"type": "fill", "client_order_id": fill.client_order_id, "symbol": fill.symbol,
                   "side": fill.side, "price": fill.price, "qty": fill.qty, "fee": fill.fee,
                   "liquidity": fill.liquidity, "ts": fill.ts_event // NS_PER_MS})

    def _on_order(self, update: OrderUpdate) -> None:
        if not self.clients:
            return
        self.send({"type": "order", "client_order_id": update.client_order_id, "symbol": update.symbol,
                   "status": update.status, "reason": update.reason, "ts": update.ts_event // NS_PER_MS,
                   "open_orders": self.open_orders()})

    def _on_position(self, pos: PositionUpdate) -> None:
        if not self.clients:
            return
        self.send({"type": "position", "symbol": pos.symbol, "qty": pos.qty, "avg_price": pos.avg_price,
                   "realized_pnl": pos.realized_pnl, "ts": pos.ts_event // NS_PER_MS})

    def _on_feed(self, status: FeedStatus) -> None:
        if not self.clients:
            return
        self.send({"type": "feed", "symbol": status.symbol, "status": status.status, "detail": status.detail,
                   "state": getattr(self.feed, "state", None),
                   "reconnects": getattr(self.feed, "reconnects", 0),
                   "ts": status.ts_event // NS_PER_MS})

    # -- snapshots ---------------------------------------------------------------------------

    def open_orders(self) -> list[dict[str, Any]]:
        return [{"client_order_id": o.id, "symbol": o.symbol, "side": o.side, "qty": o.qty,
                 "filled": o.filled, "type": o.type, "price": o.price, "trigger": o.trigger,
                 "status": o.status} for o in self.session.broker.open_orders()]

    def hello(self) -> dict[str, Any]:
        """Where the session stands when a browser connects."""
        session = self.session
        if session is None:
            return {"type": "hello", "run_id": None}
        account = session.broker.account
        positions = {s: {"qty": p.qty, "avg_price": p.avg_price, "realized_pnl": p.realized_pnl}
                     for s, p in account.positions.items()}
        return {"type": "hello", "run_id": session.run_id, "symbols": list(session.market.symbols),
                "interval": session.market.interval, "state": self.feed.state,
                "reconnects": self.feed.reconnects, "equity": account.equity(), "cash": account.cash,
                "positions": positions, "open_orders": self.open_orders(), "bars": session.recorder.bars,
                "queue_messages": self.queue_messages}

    # -- the websocket side -------------------------------------------------------------------

    async def serve(self, request: web.Request) -> web.WebSocketResponse:
        """``GET /api/live``: the hello, then every event until the browser leaves or is dropped."""
        ws = web.WebSocketResponse(writer_limit=SEND_BUFFER, timeout=1.0)
        await ws.prepare(request)
        _small_buffers(request)
        client = Client(self.queue_messages)
        client.queue.put_nowait(json.dumps(self.hello(), separators=(",", ":")))
        self.clients.add(client)
        sender = asyncio.create_task(_send_all(ws, client))
        reader = asyncio.create_task(_read_until_closed(ws))
        dropped = asyncio.create_task(client.dropped.wait())
        try:
            await asyncio.wait((sender, reader, dropped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.clients.discard(client)
            for task in (sender, reader, dropped):
                task.cancel()
            await asyncio.gather(sender, reader, dropped, return_exceptions=True)
            if client.dropped.is_set() and request.transport is not None:
                request.transport.abort()  # a stalled browser would not read a close frame either
            else:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.close()
        return ws

    async def close(self) -> None:
        """Let every browser go (the session ended)."""
        for client in list(self.clients):
            self.clients.discard(client)
            client.dropped.set()


LIVE = web.AppKey("live", LiveChannel)


async def _send_all(ws: web.WebSocketResponse, client: Client) -> None:
    while True:
        await ws.send_str(await client.queue.get())


async def _read_until_closed(ws: web.WebSocketResponse) -> None:
    async for _ in ws:  # the page sends nothing; this sees it leave
        continue


def _small_buffers(request: web.Request) -> None:
    """Keep what waits for one browser small, so a stalled one shows in its queue soon."""
    transport = request.transport
    if transport is None:
        return
    transport.set_write_buffer_limits(high=SEND_BUFFER)
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
