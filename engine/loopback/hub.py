"""The websocket clients of a server and what goes out to them.

Every client has one outgoing queue drained by one writer task, so a slow client never holds
up the stream or the others (one that falls ``MAX_QUEUED`` messages behind is cut off).
Data pushes pass the fault state here: nothing goes out during a stall (of every symbol,
or of the topic's symbol), and the duplicate/out-of-order faults act on trade messages.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from aiohttp import web

from engine.bybit.parse import topic_symbol
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

    def symbols(self) -> set[str]:
        """The symbols of the topics this client is subscribed to."""
        return {topic_symbol(t) for t in self.topics}

    def follows(self, symbol: str | None) -> bool:
        """Whether a fault aimed at ``symbol`` (None: every symbol) reaches this client."""
        return symbol is None or any(topic_symbol(t) == symbol for t in self.topics)

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
        self._last_trade: dict[str | None, tuple[str, str, str]] = {}  # per symbol; None: of all
        self._held: tuple[str, str, str] | None = None

    def subscribed(self) -> set[tuple[str, str]]:
        """Every (category, topic) at least one client is subscribed to."""
        return {(c.category, t) for c in self.connections for t in c.topics}

    def broadcast(self, category: str, topic: str, text: str) -> None:
        """Send a data message to the topic's subscribers (if any), unless the stream or the
        topic's symbol is stalled; counted in ``messages_published``."""
        if self.faults.stalled(topic_symbol(topic)):
            return
        for conn in self.connections:
            if conn.category == category and topic in conn.topics:
                conn.send(text)
        self.messages_published += 1

    def publish_trades(self, category: str, topic: str, text: str) -> None:
        """Broadcast a trade message, holding one back if an out-of-order fault (of every
        symbol or of this one) is pending and sending it after the topic's next message."""
        symbol = topic_symbol(topic)
        if self.faults.stalled(symbol):
            return
        if self._held is None and self.faults.take_outoforder(symbol):
            self._held = (category, topic, text)
            return
        self.broadcast(category, topic, text)
        self._last_trade[None] = self._last_trade[symbol] = (category, topic, text)
        self.release_held(category, topic)

    def release_held(self, category: str, topic: str) -> None:
        """Send the topic's message held back by an out-of-order fault, if there is one."""
        if self._held is not None and self._held[:2] == (category, topic):
            held, self._held = self._held, None
            self.broadcast(*held)
            self._last_trade[None] = self._last_trade[topic_symbol(topic)] = held

    def duplicate_last(self, symbol: str | None = None) -> None:
        """Send the last trade message (of ``symbol``, or of any) again."""
        last = self._last_trade.get(symbol)
        if last is None:
            log.warning("fault duplicate: no trade message%s sent yet, nothing to repeat",
                        "" if symbol is None else f" of {symbol}")
            return
        self.broadcast(*last)

    def send_garbage(self, symbol: str | None = None) -> None:
        """Send every client (subscribed to ``symbol``) a text frame that is not valid JSON."""
        for conn in self.connections:
            if conn.follows(symbol):
                conn.send(GARBAGE)

    def drop(self, symbol: str | None = None) -> None:
        """Abort every client's connection (each subscribed to ``symbol``)."""
        for conn in list(self.connections):
            if conn.follows(symbol):
                conn.abort()
