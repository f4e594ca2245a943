"""The live Bybit feed for one symbol: websocket data, connection changes and REST backfills,
turned into events by one :class:`FeedDecoder`.

Everything the feed learns arrives as an *input* ``(kind, received_ns, payload)``:
``ws`` (a websocket data message, raw text), ``status`` (connected, disconnected, stale,
subscribe_failed), ``rest_trades`` (a recent-trade backfill) or ``rest_klines``. Inputs
are written to the recording as they come, and the same decoder turns them into events
live and when a recording is replayed, so a replay gives the live session's events.

Gaps: a disconnect (or a silent feed, which is forced to reconnect) opens a gap at the
last trade seen; the aggregator holds its bar closes meanwhile. After the reconnect the
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
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from engine.bars.aggregator import parse_interval
from engine.bybit.endpoints import public_ws_endpoint
from engine.bybit.parse import (
    LABEL_TO_KLINE,
    MessageError,
    TradeDeduplicator,
    decode_confirmed_klines,
    decode_trades,
    parse,
)
from engine.core.clock import NS_PER_MS
from engine.core.events import DOWNTIME, Bar, FeedStatus, Trades
from engine.feeds.live.websocket import DEFAULT_BACKOFF, Backoff, BybitWebsocket

log = logging.getLogger(__name__)

Emit = Callable[[Any], None]
_SIDES = {"Buy": 1, "Sell": -1}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_iso(ns: int) -> str:
    """An int ns UTC time as ISO 8601 to the millisecond, for log lines people read."""
    return (_EPOCH + timedelta(microseconds=ns // 1000)).isoformat(timespec="milliseconds")


class FeedDecoder:
    """Inputs to events for one symbol, with trade de-duplication and gap bookkeeping."""

    def __init__(self, symbol: str, mode: str = "trades", interval: str = "1m") -> None:
        if mode not in ("trades", "klines"):
            raise ValueError("mode must be trades or klines")
        self.symbol, self.mode, self.interval = symbol, mode, interval
        self.interval_ns = int(parse_interval(interval).size)
        self.dedup = TradeDeduplicator()
        self.last_trade_ns: int | None = None
        self.last_bar_open: int | None = None
        self.gap_from: int | None = None
        self.need_from: int | None = None  # REST must reach back to here (gap not yet covered)
        self.live_first: int | None = None  # first trade on the socket since the reconnect
        self.gap_trades = 0
        self.gap_note: str | None = None  # what the open gap is, when more than a dropped feed
        self.malformed = 0
        self.trades = 0

    def decode(self, kind: str, received: int, payload: Any) -> list[Any]:
        """The events an input produces (possibly none)."""
        if kind == "ws":
            try:
                return self.decode_ws(parse(payload), received)
            except MessageError as exc:
                self.malformed += 1
                log.warning("%s: message skipped: %s", self.symbol, exc)
                return []
        if kind == "status":
            events = self._status(payload["status"], payload.get("detail", ""), received)
            if payload.get("downtime") and self.gap_from is not None:
                self.gap_note = payload["detail"]  # said again when the gap closes
            return events
        if kind == "rest_trades":
            if "error" in payload:
                return self._close_gap(received, False, received, f"backfill failed: {payload['error']}")
            return self._backfill_trades(payload["list"], int(payload["limit"]), received)
        if kind == "rest_klines":
            if "error" in payload:
                return self._close_gap(received, False, received, f"backfill failed: {payload['error']}")
            return self._backfill_klines(payload["list"], received)
        raise ValueError(f"unknown feed input {kind!r}")

    def decode_ws(self, message: dict[str, Any], received: int) -> list[Any]:
        topic = str(message.get("topic", ""))
        try:
            if topic.startswith("publicTrade.") and self.mode == "trades":
                trades, ids = decode_trades(message, received)
                if self.gap_from is not None and self.live_first is None:
                    self.live_first = int(trades.ts_event[0])
                return self._fresh(trades, ids)
            if topic.startswith("kline.") and self.mode == "klines":
                return self._new_bars(decode_confirmed_klines(message, received))
        except MessageError as exc:
            self.malformed += 1
            log.warning("%s: message skipped: %s", self.symbol, exc)
        return []

    def _fresh(self, trades: Trades, ids: list[str]) -> list[Any]:
        fresh = self.dedup.fresh(trades, ids)
        if fresh is None:
            return []
        self.trades += len(fresh.price)
        last = int(fresh.ts_event[-1])
        self.last_trade_ns = last if self.last_trade_ns is None else max(self.last_trade_ns, last)
        return [fresh]

    def _new_bars(self, bars: list[Bar]) -> list[Any]:
        out = [b for b in bars if self.last_bar_open is None or b.open_time > self.last_bar_open]
        if out:
            self.last_bar_open = out[-1].open_time
        return out

    def _status(self, status: str, detail: str, received: int) -> list[Any]:
        gap_from = 0
        if status in ("disconnected", "stale"):
            if self.gap_from is None:
                anchor = self.last_trade_ns if self.mode == "trades" else self.last_bar_open
                self.gap_from = self.need_from = anchor if anchor is not None else received
                self.gap_trades = 0
            gap_from = self.gap_from
            status = "disconnected"
            self.live_first = None
        elif status == "connected":
            self.live_first = None
        return [FeedStatus(self.symbol, status, gap_from, 0, detail, received, received)]

    def _close_gap(self, reached: int, complete: bool, received: int, detail: str) -> list[Any]:
        gap_from, self.gap_from = self.gap_from, None
        self.need_from = self.live_first = None
        if self.gap_note is not None:
            detail, self.gap_note = f"{self.gap_note}: {detail}", None
        status = "backfilled" if complete else "unfilled"
        if not complete:
            log.warning("%s: gap %s .. %s could not be fully backfilled (%s)", self.symbol,
                        "?" if gap_from is None else utc_iso(gap_from), utc_iso(reached), detail)
        return [FeedStatus(self.symbol, status, gap_from or 0, reached, detail, received, received)]

    def _backfill_trades(self, rows: list[dict], limit: int, received: int) -> list[Any]:
        """Trades newer than the gap's start from a recent-trade answer, oldest first. Trades
        that share a millisecond keep the exchange's order (a list that runs newest first,
        as Bybit's does, is read backwards), so a bar's open and close are the venue's."""
        if self.gap_from is None:
            return []
        try:
            parsed = [(int(r["time"]) * NS_PER_MS, float(r["price"]), float(r["size"]),
                       _SIDES[r["side"]], str(r["execId"])) for r in rows]
        except (KeyError, TypeError, ValueError) as exc:
            self.malformed += 1
            return self._close_gap(received, False, received, f"bad REST answer: {exc!r}")
        if any(a[0] < b[0] for a, b in zip(parsed, parsed[1:], strict=False)):
            parsed.sort(key=lambda row: row[0])  # oldest first already; stable for ties
        else:
            parsed.reverse()  # newest first
        need = self.need_from if self.need_from is not None else self.gap_from
        oldest = parsed[0][0] if parsed else None
        newest = parsed[-1][0] if parsed else None
        reaches_back = len(parsed) < limit or (oldest is not None and oldest <= need)
        newer = [row for row in parsed if row[0] >= need]
        events: list[Any] = []
        if newer:
            ts, price, size, side, ids = (list(col) for col in zip(*newer, strict=True))
            batch = Trades(self.symbol, np.array(ts, dtype=np.int64), np.array(price),
                           np.array(size), np.array(side, dtype=np.int8), np.array(ids, dtype="S36"),
                           received)
            events += self._fresh(batch, ids)
        fresh = sum(len(e.price) for e in events)
        self.gap_trades += fresh
        if not reaches_back:
            return events + self._close_gap(oldest, False, received,
                                            f"REST gave {len(parsed)} trades, oldest after the gap start")
        if self.live_first is not None and newest is not None and newest >= self.live_first:
            return events + self._close_gap(received, True, received, f"{self.gap_trades} trades from REST")
        if self.live_first is None and fresh == 0:  # nothing was missed: a quiet market
            return events + self._close_gap(received, True, received, f"{self.gap_trades} trades from REST")
        # REST has not reached the stream of the new connection yet: keep holding the bars,
        # and ask again from what this answer covered once the stream delivers
        if newest is not None and newest > need:
            self.need_from = newest
        return events

    def _backfill_klines(self, rows: list[list[str]], received: int) -> list[Any]:
        """Closed klines after the last bar from a kline answer (newest first, as Bybit sends;
        the newest row is the still-open candle and is left out)."""
        if self.gap_from is None:
            return []
        bars = []
        for row in sorted(rows, key=lambda r: int(r[0])):
            start = int(row[0]) * NS_PER_MS
            end = start + self.interval_ns
            if end > received:
                continue
            o, h, lo, c, v, t = (float(x) for x in row[1:7])
            bars.append(Bar(self.symbol, self.interval, start, end, o, h, lo, c, v, t, 0, end, received))
        bars = self._new_bars(bars)
        return bars + self._close_gap(received, True, received, f"{len(bars)} klines from REST")


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
        backfill_limit: int = 1000,
        backfill_timeout: float = 60.0,
        start_ns: int | None = None,
        downtime_of: int | None = None,
    ) -> None:
        self.rest, self.category, self.symbol = rest, category, symbol
        self.emit, self.record = emit, record
        self.decoder = FeedDecoder(symbol, mode, interval)
        self.stale_after = stale_after
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
        self.last_data = time.monotonic()
        self.data_messages += 1
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

    async def _watch(self) -> None:
        """Force a reconnect when a connected feed has been silent for ``stale_after``."""
        while True:
            await asyncio.sleep(min(1.0, self.stale_after / 4))
            silent = time.monotonic() - self.last_data
            if self.state == "connected" and silent > self.stale_after:
                self.input("status", time.time_ns(), {"status": "stale",
                                                      "detail": f"no data for {silent:.1f} s"})
                self.last_data = time.monotonic()
                await self.ws.reconnect(f"no data for {silent:.1f} s")
