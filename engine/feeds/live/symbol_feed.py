"""One symbol of the live feed: its decoder, its health (last data, silence) and its REST
backfills. The :class:`~engine.feeds.live.feed.LiveFeed` owns the one websocket and hands
each symbol its data and the connection's changes; gaps open, fill and close per symbol
as described in :mod:`engine.feeds.live.feed`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from engine.bybit.parse import LABEL_TO_KLINE
from engine.core.clock import NS_PER_MS
from engine.feeds.live.decoder import FeedDecoder

log = logging.getLogger(__name__)

Emit = Callable[[Any], None]
Record = Callable[[str, int, Any, str], None]
Spawn = Callable[[Coroutine[Any, Any, None]], None]


class SymbolFeed:
    """A symbol's inputs to events (recorded first), its silence watch and its backfills."""

    def __init__(self, symbol: str, category: str, rest: Any, emit: Emit, record: Record | None,
                 spawn: Spawn, is_connected: Callable[[], bool], *, mode: str, interval: str,
                 silent_after: float,
                 backfill_limit: int, backfill_timeout: float) -> None:
        self.symbol, self.category, self.rest = symbol, category, rest
        self.emit, self.record, self.spawn = emit, record, spawn
        self.is_connected = is_connected
        self.decoder = FeedDecoder(symbol, mode, interval)
        self.silent_after = silent_after
        self.backfill_limit = backfill_limit if category != "spot" else min(backfill_limit, 60)
        self.backfill_timeout = backfill_timeout
        self.last_data = time.monotonic()
        self.last_trade_wall_ns = 0
        self.data_messages = 0
        self.silence_checked = False  # REST was asked about the current silence
        self._backfilling = False

    def received_nothing(self) -> bool:
        """True while no market data has come, from the socket or from a REST backfill."""
        return self.data_messages == 0 and self.decoder.trades == 0 and self.decoder.last_bar_open is None

    def input(self, kind: str, received: int, payload: Any) -> None:
        """Record an input and emit its events."""
        if self.record is not None:
            self.record(kind, received, payload, self.symbol)
        for event in self.decoder.decode(kind, received, payload):
            self.emit(event)

    def on_data(self, message: dict, text: str, received: int) -> None:
        """A data message of this symbol from the socket."""
        quiet = time.monotonic() - self.last_data
        self.last_data = time.monotonic()
        self.data_messages += 1
        self.silence_checked = False
        if quiet > self.silent_after and self.watches_silence():
            # the stream is back after a silence: REST says whether it was a stall (trades
            # the socket never sent) before this message's trades join the bars
            self.input("status", received, {"status": "silent", "detail": f"no data for {quiet:.1f} s"})
        if self.record is not None:
            self.record("ws", received, text, self.symbol)
        trades = self.decoder.trades
        events = self.decoder.decode_ws(message, received)
        if self.decoder.trades > trades:  # new trades, handed on now or held by a gap
            self.last_trade_wall_ns = received
        for event in events:
            self.emit(event)
        if self.decoder.live_first is not None and self.decoder.gap_from is not None:
            self.start_backfill()  # the stream is back: REST can now be made to reach it

    def watches_silence(self) -> bool:
        return self.decoder.mode == "trades" and self.is_connected() and self.decoder.gap_from is None

    def check_silence(self) -> None:
        """Hold the bars and ask REST once this symbol has been silent for ``silent_after``
        on a live connection (a stall sends nothing, yet trades go on)."""
        silent = time.monotonic() - self.last_data
        if silent > self.silent_after and not self.silence_checked and self.watches_silence():
            self.silence_checked = True
            detail = f"no data for {silent:.1f} s"
            self.input("status", time.time_ns(), {"status": "silent", "detail": detail})
            self.start_backfill()

    def start_backfill(self) -> None:
        if self._backfilling:
            return  # the running backfill looks at the gap again when its answer is in
        self._backfilling = True
        self.spawn(self._backfill())

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
                if decoder.gap_from is None or not self.is_connected() or decoder.live_first is None:
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
