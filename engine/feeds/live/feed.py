"""The live Bybit feed for one symbol: websocket data, connection changes and REST backfills,
turned into events by one :class:`FeedDecoder`.

Everything the feed learns arrives as an *input* ``(kind, received_ns, payload)``:
``ws`` (a websocket data message, raw text), ``status`` (connected, disconnected, stale,
subscribe_failed), ``rest_trades`` (a recent-trade backfill) or ``rest_klines``. Inputs
are written to the recording as they come, and the same decoder turns them into events
live and when a recording is replayed, so a replay gives the live session's events.

Gaps: a disconnect (or a feed silent for ``stale_after``, which is forced to reconnect)
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

A subscription refused on the first connection stops the feed: its one topic is all it has
to deliver, and the venue does not list it. A refusal after a reconnect is logged, and the
feed goes on: with no data, the silence watch reconnects and subscribes again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from engine.bybit.endpoints import public_ws_endpoint
from engine.bybit.parse import LABEL_TO_KLINE
from engine.core.clock import NS_PER_MS
from engine.core.events import DOWNTIME
from engine.feeds.live.decoder import FeedDecoder, utc_iso
from engine.feeds.live.websocket import DEFAULT_BACKOFF, Backoff, BybitWebsocket

__all__ = ["FeedDecoder", "LiveFeed", "utc_iso"]

log = logging.getLogger(__name__)

Emit = Callable[[Any], None]


class LiveFeed:
    """Runs the websocket for one symbol, watches its health, backfills gaps over REST, and
    hands every input to ``record`` and every event to ``emit``."""

    def __init__(
        self,
        ws_url: str,
        rest: Any,
        category: str,
        symbol: str,
        emit: Emit,
        *,
        record: Callable[[str, int, Any], None] | None = None,
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
        self.rest, self.category, self.symbol = rest, category, symbol
        self.emit, self.record = emit, record
        self.decoder = FeedDecoder(symbol, mode, interval)
        self.stale_after, self.silent_after = stale_after, silent_after
        self._silence_checked = False  # REST was asked about the current silence
        self.backfill_timeout = backfill_timeout
        self.backfill_limit = backfill_limit if category != "spot" else min(backfill_limit, 60)
        topic = f"publicTrade.{symbol}" if mode == "trades" else f"kline.{LABEL_TO_KLINE[interval]}.{symbol}"
        self.ws = BybitWebsocket(public_ws_endpoint(ws_url, category), [topic], self._on_data,
                                 self._on_state, ping_interval=ping_interval, pong_timeout=pong_timeout,
                                 backoff=backoff)
        self.state = "connecting"
        self.reconnects = 0
        self.last_data = time.monotonic()
        self.last_trade_wall_ns = 0
        self.start_ns = start_ns
        self.downtime_of = downtime_of  # the run this one resumes: its downtime is the first gap
        self.refused: str | None = None  # why the venue refused the subscription, if it did
        self.data_messages = 0
        self._backfilling = False
        self._tasks: set[asyncio.Task] = set()

    def received_nothing(self) -> bool:
        """True while no market data has come, from the socket or from a REST backfill."""
        return self.data_messages == 0 and self.decoder.trades == 0 and self.decoder.last_bar_open is None

    def input(self, kind: str, received: int, payload: Any) -> None:
        """Record an input and emit its events."""
        if self.record is not None:
            self.record(kind, received, payload)
        for event in self.decoder.decode(kind, received, payload):
            self.emit(event)

    async def run(self) -> None:
        """Run the websocket and the silence watch until :meth:`stop` or a refused
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

    def _on_data(self, message: dict, text: str, received: int) -> None:
        quiet = time.monotonic() - self.last_data
        self.last_data = time.monotonic()
        self.data_messages += 1
        self._silence_checked = False
        if quiet > self.silent_after and self._watches_silence():
            # the stream is back after a silence: REST says whether it was a stall (trades
            # the socket never sent) before this message's trades join the bars
            self.input("status", received, {"status": "silent", "detail": f"no data for {quiet:.1f} s"})
        if self.record is not None:
            self.record("ws", received, text)
        events = self.decoder.decode_ws(message, received)
        if events:
            self.last_trade_wall_ns = received
        for event in events:
            self.emit(event)
        if self.decoder.live_first is not None and self.decoder.gap_from is not None:
            self._start_backfill()  # the stream is back: REST can now be made to reach it

    def _on_state(self, state: str, detail: str, received: int) -> None:
        if state == "connected" and self.state == "disconnected":
            self.reconnects += 1
            log.warning("%s reconnected (%s); backfilling the gap", self.symbol, detail)
        if state in ("connected", "disconnected"):
            self.state = state
        if state == "disconnected":
            log.warning("%s feed disconnected: %s; will reconnect", self.symbol, detail)
        self.last_data = time.monotonic()
        self.input("status", received, {"status": state, "detail": detail})
        if state == "connected" and self.decoder.gap_from is not None:
            self._start_backfill()
        if state == "subscribe_failed" and self.refused is None and self.ws.connects <= 1:
            self.refused = detail  # the first subscription: the venue does not list the topic
            self._spawn(self.ws.stop())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start_backfill(self) -> None:
        if self._backfilling:
            return  # the running backfill looks at the gap again when its answer is in
        self._backfilling = True
        self._spawn(self._backfill())

    async def _backfill(self) -> None:
        """Backfill until the gap closes or the feed must wait: for the new connection's
        stream (its first trade starts another backfill) or for a reconnect. Asked after
        the stream is back, REST reaches it unless REST lags; after three such answers the
        gap is given up as unfilled."""
        kind = "rest_trades" if self.decoder.mode == "trades" else "rest_klines"
        after_stream = 0
        try:
            while True:
                asked_after_stream = self.decoder.live_first is not None
                self.input(kind, *await self._fetch(kind))
                decoder = self.decoder
                if decoder.gap_from is None or self.state != "connected" or decoder.live_first is None:
                    return
                if asked_after_stream:
                    after_stream += 1
                    if after_stream >= 3:
                        self.input(kind, time.time_ns(), {"list": [], "error": "REST does not reach "
                                                          "the trades of the new connection"})
                        return
                    await asyncio.sleep(0.5)
        finally:
            self._backfilling = False

    async def _fetch(self, kind: str) -> tuple[int, dict]:
        """One REST answer (raw rows, so a recording keeps them) and when it came; a REST
        that fails or takes longer than ``backfill_timeout`` gives an error payload, which
        leaves the gap unfilled."""
        try:
            if kind == "rest_trades":
                body = await asyncio.wait_for(self.rest.get("/v5/market/recent-trade", {
                    "category": self.category, "symbol": self.symbol, "limit": self.backfill_limit,
                }), self.backfill_timeout)
                payload = {"list": body["result"]["list"], "limit": self.backfill_limit}
            else:
                body = await asyncio.wait_for(self.rest.get("/v5/market/kline", {
                    "category": self.category, "symbol": self.symbol,
                    "interval": LABEL_TO_KLINE[self.decoder.interval],
                    "start": (self.decoder.gap_from or time.time_ns()) // NS_PER_MS, "limit": 1000,
                }), self.backfill_timeout)
                payload = {"list": body["result"]["list"]}
        except Exception as exc:  # any REST failure: the gap is recorded as unfilled
            log.error("%s backfill failed: %r", self.symbol, exc)
            payload = {"list": [], "error": repr(exc)}
        return time.time_ns(), payload

    def _watches_silence(self) -> bool:
        return self.decoder.mode == "trades" and self.state == "connected" and self.decoder.gap_from is None

    async def _watch(self) -> None:
        """Hold the bars and ask REST once a connected feed has been silent for
        ``silent_after`` (a stall sends nothing, yet trades go on); force a reconnect when it
        has been silent for ``stale_after``."""
        while True:
            await asyncio.sleep(min(0.25, self.silent_after / 4, self.stale_after / 4))
            silent = time.monotonic() - self.last_data
            if silent > self.silent_after and not self._silence_checked and self._watches_silence():
                self._silence_checked = True
                self.input("status", time.time_ns(), {"status": "silent",
                                                      "detail": f"no data for {silent:.1f} s"})
                self._start_backfill()
            if self.state == "connected" and silent > self.stale_after:
                self.input("status", time.time_ns(), {"status": "stale",
                                                      "detail": f"no data for {silent:.1f} s"})
                self.last_data = time.monotonic()
                await self.ws.reconnect(f"no data for {silent:.1f} s")
