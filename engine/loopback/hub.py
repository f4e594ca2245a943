"""The websocket clients of a server and what goes out to them.

Every client has one outgoing queue drained by one writer task, so a slow client never holds
up the stream or the others (one that falls ``MAX_QUEUED`` messages behind is cut off).
Data pushes pass the fault state here: nothing goes out during a stall, and the
duplicate/out-of-order faults act on trade messages.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from aiohttp import web

from engine.loopback.faults import FaultState

log = logging.getLogger(__name__)

MAX_QUEUED = 100_000
GARBAGE = '{"topic":"publicTrade.BTCUSDT","type":"snapshot","data":[{"T":17'  # cut-off JSON


class Connection:
    """One websocket client of one category, with its subscribed topics."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, category: str) -> None:
        self.ws, self.request, self.category = ws, request, category
        self.conn_id = str(uuid.uuid4())
        self.topics: set[str] = set()
        self._queue: asyncio.Queue[str] = asyncio.Queue()

    def send(self, text: str) -> None:
        """Queue a text frame; cut the client off when it is hopelessly behind."""
        if self._queue.qsize() >= MAX_QUEUED:
            log.warning("client %s is %d messages behind; disconnecting it", self.conn_id, MAX_QUEUED)
            self.abort()
            return
        self._queue.put_nowait(text)

    async def write_loop(self) -> None:
        """Send queued frames in order until the connection goes away."""
        try:
            while True:
                await self.ws.send_str(await self._queue.get())
        except ConnectionError:
            self.abort()

    def abort(self) -> None:
        """Drop the TCP connection at once, without a close frame."""
        transport = self.request.transport
        if transport is not None:
            transport.abort()


class Hub:
    """All connected clients; broadcasts a topic's messages to its subscribers."""

    def __init__(self, faults: FaultState) -> None:
        self.faults = faults
        self.connections: set[Connection] = set()
        self.messages_published = 0
        self._last_trade: tuple[str, str, str] | None = None
        self._held: tuple[str, str, str] | None = None

    def subscribed(self) -> set[tuple[str, str]]:
        """Every (category, topic) at least one client is subscribed to."""
        return {(c.category, t) for c in self.connections for t in c.topics}

    def broadcast(self, category: str, topic: str, text: str) -> None:
        """Send a data message to the topic's subscribers (if any), unless the stream is
        stalled; counted in ``messages_published``."""
        if self.faults.stalled():
            return
        for conn in self.connections:
            if conn.category == category and topic in conn.topics:
                conn.send(text)
        self.messages_published += 1

    def publish_trades(self, category: str, topic: str, text: str) -> None:
        """Broadcast a trade message, holding one back if an out-of-order fault is pending
        and sending it after the topic's next message."""
        if self.faults.stalled():
            return
        if self.faults.outoforder_pending and self._held is None:
            self.faults.outoforder_pending = False
            self._held = (category, topic, text)
            return
        self.broadcast(category, topic, text)
        self._last_trade = (category, topic, text)
        self.release_held(category, topic)

    def release_held(self, category: str, topic: str) -> None:
        """Send the topic's message held back by an out-of-order fault, if there is one."""
        if self._held is not None and self._held[:2] == (category, topic):
            held, self._held = self._held, None
            self.broadcast(*held)
            self._last_trade = held

    def duplicate_last(self) -> None:
        """Send the last trade message again."""
        if self._last_trade is None:
            log.warning("fault duplicate: no trade message sent yet, nothing to repeat")
            return
        self.broadcast(*self._last_trade)

    def send_garbage(self) -> None:
        """Send every client a text frame that is not valid JSON."""
        for conn in self.connections:
            conn.send(GARBAGE)

    def drop_all(self) -> None:
        """Abort every client's connection."""
        for conn in list(self.connections):
            conn.abort()
