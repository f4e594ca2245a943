"""The live Bybit feed for one or more symbols: one websocket connection subscribing every
symbol's topic, connection changes and REST backfills, turned into events by one
:class:`FeedDecoder` per symbol (:class:`~engine.feeds.live.symbol_feed.SymbolFeed`).

Everything the feed learns arrives as an *input* ``(kind, received_ns, payload)``:
``ws`` (a websocket data message, raw text), ``status`` (connected, disconnected, stale,
subscribe_failed), ``rest_trades`` (a recent-trade backfill) or ``rest_klines``. Each input
belongs to one symbol (a connection change reaches every symbol, in the order they were
given). Inputs are written to the recording, with their symbol, as they come, and the
same decoders turn them into events live and when a recording is replayed, so a replay
gives the live session's events.

Gaps, per symbol: a disconnect (or a feed silent for ``stale_after``, which is forced to reconnect)
opens a gap at the last trade seen; the aggregator holds its bar closes meanwhile. A shorter
silence (``silent_after``, 1 s) on a live connection may be a stall, which sends nothing
while trades go on: it opens a ``silent`` gap (bars held) and asks REST at once, and again
when the stream comes back; trades REST has that the socket never sent are backfilled and
the stall recorded, while a quiet market (REST has nothing new) leaves no record. After the reconnect the
feed backfills from REST; trades already seen are dropped by id. The gap closes as
``backfilled`` once REST and the new connection's stream overlap (REST reaches the first
trade the socket delivered since the reconnect), or when REST shows that nothing was
missed (a quiet market); until then the feed asks REST again as the stream comes back, so
trades served while a stream was silent but not yet known dead are not lost. It closes as
``unfilled`` (recorded in the ledger, shown in reports) when the REST answer cannot reach
back to the part of the gap not yet covered, or REST fails.

A subscription refused on the first connection stops the feed: the venue does not list a
symbol it was asked for (``refused_symbols`` names it). A refusal after a reconnect is
logged, and the feed goes on: with no data, the stale watch reconnects and subscribes again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from engine.bybit.endpoints import public_ws_endpoint
from engine.bybit.parse import LABEL_TO_KLINE, topic_symbol
from engine.core.events import DOWNTIME
from engine.feeds.live.decoder import FeedDecoder, utc_iso
from engine.feeds.live.symbol_feed import SymbolFeed
from engine.feeds.live.websocket import DEFAULT_BACKOFF, Backoff, BybitWebsocket

__all__ = ["FeedDecoder", "LiveFeed", "utc_iso"]

log = logging.getLogger(__name__)

Emit = Callable[[Any], None]
Record = Callable[[str, int, Any, str], None]


class LiveFeed:
    """Runs one websocket for the symbols, watches each symbol's health, backfills gaps
    over REST, and hands every input to ``record`` and every event to ``emit``."""

    def __init__(
        self,
        ws_url: str,
        rest: Any,
        category: str,
        symbols: str | Sequence[str],
        emit: Emit,
        *,
        record: Record | None = None,
        interval: str = "1m",
        mode: str = "trades",
        ping_interval: float = 20.0,
        pong_timeout: float = 10.0,
        backoff: Backoff = DEFAULT_BACKOFF,
        stale_after: float = 30.0,
        silent_after: float = 1.0,
        backfill_limit: int = 1000,
        backfill_timeout: float = 60.0,
        start_ns: int | None = None,
        downtime_of: int | None = None,
    ) -> None:
        self.symbols = tuple(symbols.split(",")) if isinstance(symbols, str) else tuple(symbols)
        self.rest, self.category = rest, category
        self.emit = emit
        self.stale_after = stale_after
        self._tasks: set[asyncio.Task] = set()
        self.feeds = {s: SymbolFeed(s, category, rest, emit, record, self._spawn, self._connected,
                                    mode=mode, interval=interval, silent_after=silent_after,
                                    backfill_limit=backfill_limit, backfill_timeout=backfill_timeout)
                      for s in self.symbols}
        self.silent_after = silent_after
        topics = [f"publicTrade.{s}" if mode == "trades" else f"kline.{LABEL_TO_KLINE[interval]}.{s}"
                  for s in self.symbols]
        self.ws = BybitWebsocket(public_ws_endpoint(ws_url, category), topics, self._on_data,
                                 self._on_state, ping_interval=ping_interval, pong_timeout=pong_timeout,
                                 backoff=backoff)
        self.state = "connecting"
        self.reconnects = 0
        self.last_data = time.monotonic()  # the connection's: any symbol's data
        self.start_ns = start_ns
        self.downtime_of = downtime_of  # the run this one resumes: its downtime is the first gap
        self.refused: str | None = None  # why the venue refused a subscription, if it did
        self.refused_symbols: list[str] = []
        self.unrouted = 0  # data messages of a topic no symbol of the feed has

    @property
    def symbol(self) -> str:
        """The symbols comma-joined (a one-symbol feed's symbol)."""
        return ",".join(self.symbols)

    @property
    def decoder(self) -> FeedDecoder:
        """The first symbol's decoder (a one-symbol feed's only one)."""
        return self.feeds[self.symbols[0]].decoder

    @property
    def decoders(self) -> list[FeedDecoder]:
        return [f.decoder for f in self.feeds.values()]

    @property
    def last_trade_wall_ns(self) -> int:
        return max(f.last_trade_wall_ns for f in self.feeds.values())

    @property
    def data_messages(self) -> int:
        return sum(f.data_messages for f in self.feeds.values())

    def received_nothing(self) -> bool:
        """True while no symbol has had market data, from the socket or from REST."""
        return all(f.received_nothing() for f in self.feeds.values())

    def input(self, kind: str, received: int, payload: Any, symbol: str | None = None) -> None:
        """Record an input and emit its events: for ``symbol``, or for every symbol."""
        for feed in self.feeds.values() if symbol is None else (self.feeds[symbol],):
            feed.input(kind, received, payload)

    async def run(self) -> None:
        """Run the websocket and the health watch until :meth:`stop` or a refused
        subscription. With ``start_ns`` (the session start), the time until the first
        connection is a gap: bars are held and the first connection backfills it. With
        ``downtime_of`` (a resumed run), ``start_ns`` is where that run's bars stopped, and the
        gap is its downtime: backfilled from REST, or recorded as unfilled."""
        if self.start_ns is not None and self.downtime_of is not None:
            self.input("status", self.start_ns, {"status": "disconnected", "downtime": True,
                                                 "detail": f"{DOWNTIME} {self.downtime_of}"})
        elif self.start_ns is not None:
            self.input("status", self.start_ns, {"status": "disconnected", "detail": "not connected yet"})
        watch = asyncio.create_task(self._watch())
        try:
            await self.ws.run()
        finally:
            watch.cancel()
            for task in list(self._tasks):
                task.cancel()

    async def stop(self) -> None:
        await self.ws.stop()

    def _connected(self) -> bool:
        return self.state == "connected"

    def _on_data(self, message: dict, text: str, received: int) -> None:
        self.last_data = time.monotonic()
        feed = self.feeds.get(topic_symbol(str(message.get("topic", ""))))
        if feed is None:
            self.unrouted += 1
            log.warning("data for a topic not subscribed skipped: %s", str(message.get("topic"))[:80])
            return
        feed.on_data(message, text, received)

    def _on_state(self, state: str, detail: str, received: int) -> None:
        if state == "connected" and self.state == "disconnected":
            self.reconnects += 1
            log.warning("%s reconnected (%s); backfilling the gap", self.symbol, detail)
        if state in ("connected", "disconnected"):
            self.state = state
        if state == "disconnected":
            log.warning("%s feed disconnected: %s; will reconnect", self.symbol, detail)
        self.last_data = time.monotonic()
        if state == "subscribe_failed":
            symbols = [topic_symbol(t) for t in self.ws.refused_topics if topic_symbol(t) in self.feeds]
            for symbol in symbols or self.symbols:
                self.feeds[symbol].input("status", received, {"status": state, "detail": detail})
            if self.refused is None and self.ws.connects <= 1:
                # the first subscription: the venue does not list these symbols' topics
                self.refused, self.refused_symbols = detail, symbols or list(self.symbols)
                self._spawn(self.ws.stop())
            return
        for feed in self.feeds.values():
            feed.last_data = time.monotonic()
            feed.input("status", received, {"status": state, "detail": detail})
            if state == "connected" and feed.decoder.gap_from is not None:
                feed.start_backfill()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self) -> None:
        """Ask REST about each symbol silent for ``silent_after`` on a live connection (a
        stall sends nothing, yet trades go on); force a reconnect when the whole connection
        has been silent for ``stale_after``."""
        while True:
            await asyncio.sleep(min(0.25, self.silent_after / 4, self.stale_after / 4))
            for feed in self.feeds.values():
                feed.check_silence()
            silent = time.monotonic() - self.last_data
            if self.state == "connected" and silent > self.stale_after:
                detail = f"no data for {silent:.1f} s"
                self.input("status", time.time_ns(), {"status": "stale", "detail": detail})
                self.last_data = time.monotonic()
                await self.ws.reconnect(f"no data for {silent:.1f} s")
