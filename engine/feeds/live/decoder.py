"""Feed inputs to events for one symbol: the :class:`FeedDecoder` that the live feed and a
recording's replay share, so a replay gives the live session's events.

Inputs are ``(kind, received_ns, payload)``: ``ws`` (a websocket data message, raw text),
``status`` (connected, disconnected, stale, silent, subscribe_failed), ``rest_trades`` (a
recent-trade backfill) or ``rest_klines``. The decoder de-duplicates trades by id and keeps
the gap bookkeeping described in :mod:`engine.feeds.live.feed`. While a gap is open its trades
(from the socket and from REST) are held; when it closes they are handed on in time order,
one bar at a time with a :class:`~engine.core.events.CatchUp` between bars, so each held bar
closes, and is marked, before any later trade reaches the broker. A ``silent`` status opens a
gap on a live connection (FeedStatus ``silent``: bars are held); when REST shows that
nothing was missed it closes as ``backfilled`` with the detail ``NOTHING_MISSED``, which the
ledger does not record (a quiet market); else it is a stall, recorded like any gap.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from engine.bars.aggregator import parse_interval
from engine.bybit.parse import (
    MessageError,
    TradeDeduplicator,
    decode_confirmed_klines,
    decode_trades,
    parse,
)
from engine.core.clock import NS_PER_MS
from engine.core.events import NOTHING_MISSED, Bar, CatchUp, FeedStatus, Trades

log = logging.getLogger(__name__)

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
        self.spec = parse_interval(interval)
        self.interval_ns = int(self.spec.size)
        self.dedup = TradeDeduplicator()
        self.last_trade_ns: int | None = None
        self.last_bar_open: int | None = None
        self.gap_from: int | None = None
        self.need_from: int | None = None  # REST must reach back to here (gap not yet covered)
        self.live_first: int | None = None  # first trade on the socket since the reconnect
        self.gap_trades = 0
        self.gap_note: str | None = None  # what the open gap is, when more than a dropped feed
        self.gap_silent = False  # the open gap is a silence on a live connection (a stall?)
        self.malformed = 0
        self.trades = 0
        self._held: list[Trades] = []  # the open gap's trades, handed on when it closes

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
        if self.gap_from is not None:
            self._held.append(fresh)
            return []
        return [fresh]

    def _release_held(self, received: int) -> list[Any]:
        """The trades held while the gap was open, sorted by time (stable: the venue's
        order within a millisecond) and stamped ``received``, cut at bar boundaries with a
        :class:`CatchUp` before each later bar's trades."""
        held, self._held = self._held, []
        if not held:
            return []
        ts = np.concatenate([t.ts_event for t in held])
        order = np.argsort(ts, kind="stable")
        ts = ts[order]
        price, size, side, ids = (np.concatenate([getattr(t, name) for t in held])[order]
                                  for name in ("price", "size", "side", "trade_id"))
        cuts: list[int] = []
        if self.spec.is_time:
            keys = (ts - self.spec.offset_ns) // self.interval_ns
            cuts = (np.flatnonzero(np.diff(keys)) + 1).tolist()
        out: list[Any] = []
        for lo, hi in zip([0, *cuts], [*cuts, len(ts)], strict=True):
            if lo:
                out.append(CatchUp(self.symbol, int(ts[lo]), received))
            out.append(Trades(self.symbol, ts[lo:hi], price[lo:hi], size[lo:hi], side[lo:hi], ids[lo:hi],
                              received))
        return out

    def _new_bars(self, bars: list[Bar]) -> list[Any]:
        out = [b for b in bars if self.last_bar_open is None or b.open_time > self.last_bar_open]
        if out:
            self.last_bar_open = out[-1].open_time
        return out

    def _status(self, status: str, detail: str, received: int) -> list[Any]:
        gap_from = 0
        if status == "silent" and self.gap_from is not None:
            return []  # a gap is open already: it covers the silence
        if status in ("disconnected", "stale", "silent"):
            if self.gap_from is None:
                anchor = self.last_trade_ns if self.mode == "trades" else self.last_bar_open
                self.gap_from = self.need_from = anchor if anchor is not None else received
                self.gap_trades = 0
                self.gap_silent = status == "silent"
            gap_from = self.gap_from
            if status != "silent":  # the connection is gone: a real gap, its stream starts anew
                status, self.gap_silent, self.live_first = "disconnected", False, None
        elif status == "connected":
            self.live_first = None
        return [FeedStatus(self.symbol, status, gap_from, 0, detail, received, received)]

    def _close_gap(self, reached: int, complete: bool, received: int, detail: str) -> list[Any]:
        gap_from, self.gap_from = self.gap_from, None
        self.need_from = self.live_first = None
        if self.gap_note is not None:
            detail, self.gap_note = f"{self.gap_note}: {detail}", None
        if complete and self.gap_silent and self.gap_trades == 0:
            detail = NOTHING_MISSED  # a quiet market, not a stall: no gap to record
        self.gap_silent = False
        status = "backfilled" if complete else "unfilled"
        if not complete:
            log.warning("%s: gap %s .. %s could not be fully backfilled (%s)", self.symbol,
                        "?" if gap_from is None else utc_iso(gap_from), utc_iso(reached), detail)
        return [*self._release_held(received),
                FeedStatus(self.symbol, status, gap_from or 0, reached, detail, received, received)]

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
        before = self.trades
        if newer:
            ts, price, size, side, ids = (list(col) for col in zip(*newer, strict=True))
            batch = Trades(self.symbol, np.array(ts, dtype=np.int64), np.array(price),
                           np.array(size), np.array(side, dtype=np.int8), np.array(ids, dtype="S36"),
                           received)
            events += self._fresh(batch, ids)
        fresh = self.trades - before
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
