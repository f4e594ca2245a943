"""The replay itself: each symbol's trades go out when their served time comes, and the
kline topics clients subscribe to are pushed every second.

The stream runs on the server's clock whether or not anyone listens: trades due while a
client is away (or while the stream is stalled) are recorded for REST but never re-sent.
"""

from __future__ import annotations

import asyncio

import numpy as np

from engine.bybit.intervals import candle_start, next_start
from engine.bybit.render import dumps, kline_message, trade_message
from engine.loopback.hub import Hub
from engine.loopback.store import SymbolStore
from engine.loopback.tape import SymbolTape, seq_of
from engine.loopback.timemap import Now, TimeMap

MAX_TRADES_PER_MESSAGE = 1024  # BYBIT.md section 4


def message_bounds(served_ms: np.ndarray, begin: int) -> list[tuple[int, int]]:
    """Row ranges of the trade messages from row ``begin`` on: trades that share a served
    time go together, at most ``MAX_TRADES_PER_MESSAGE`` per message."""
    if begin >= len(served_ms):
        return []
    cuts = (np.flatnonzero(np.diff(served_ms[begin:])) + 1 + begin).tolist()
    bounds = []
    for lo, hi in zip([begin, *cuts], [*cuts, len(served_ms)], strict=True):
        bounds.extend((s, min(s + MAX_TRADES_PER_MESSAGE, hi)) for s in range(lo, hi, MAX_TRADES_PER_MESSAGE))
    return bounds


class TradeStream:
    """Replays one symbol's tape on the served clock into its store and its subscribers.

    Trades whose served time had already passed when the stream started (a restart, or a
    ``wall_start_ms`` in the past) are recorded at once without being sent, so REST sees the
    same history an uninterrupted server would have.
    """

    def __init__(self, tape: SymbolTape, store: SymbolStore, timemap: TimeMap, hub: Hub, now: Now) -> None:
        self.tape, self.store, self.timemap, self.hub, self.now = tape, store, timemap, hub, now
        self.topic = f"publicTrade.{tape.symbol}"

    async def run(self) -> None:
        started = self.now()
        for cols in self.tape.chunks(self.timemap.hist_start_ns):
            served = self.timemap.served_ms(cols.ts)
            seq = seq_of(cols.ts)
            past = int(np.searchsorted(served, started, side="right"))
            if past:
                self.store.record(served[:past], cols.price[:past], cols.size[:past], cols.side[:past],
                                  cols.trade_id[:past], seq[:past])
            for lo, hi in message_bounds(served, past):
                await self._sleep_until(int(served[lo]))
                rows = slice(lo, hi)
                self.store.record(served[rows], cols.price[rows], cols.size[rows], cols.side[rows],
                                  cols.trade_id[rows], seq[rows])
                message = trade_message(self.tape.category, self.tape.symbol, self.now(), served[rows],
                                        cols.price[rows], cols.size[rows], cols.side[rows],
                                        cols.trade_id[rows], cols.tick[rows], seq[rows])
                self.hub.publish_trades(self.tape.category, self.topic, dumps(message))
        self.store.finished = True
        self.hub.release_held(self.tape.category, self.topic)

    async def _sleep_until(self, served_ms: int) -> None:
        delay = (served_ms - self.now()) / 1000
        await asyncio.sleep(max(delay, 0))  # sleep(0) still lets the server answer others


class KlinePusher:
    """Once a second, for every subscribed ``kline.{interval}.{symbol}``: candles that have
    closed since the last push go out once with ``confirm: true``, then the open candle
    with ``confirm: false``. A topic's first push is its open candle."""

    PERIOD_S = 1.0

    def __init__(self, stores: dict[tuple[str, str], SymbolStore], hub: Hub, now: Now) -> None:
        self.stores, self.hub, self.now = stores, hub, now
        self._next: dict[tuple[str, str], int] = {}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.PERIOD_S - (self.now() % 1000) / 1000 + 0.005)
            self.push(self.now())

    def push(self, now_ms: int) -> None:
        """Push every subscribed kline topic as of served time ``now_ms``."""
        active = {key for key in self.hub.subscribed() if key[1].startswith("kline.")}
        for key in set(self._next) - active:
            del self._next[key]
        for category, topic in sorted(active):
            _, interval, symbol = topic.split(".")
            store = self.stores[(category, symbol)]
            if store.last_time is None:
                continue
            current = candle_start(interval, now_ms)
            last = candle_start(interval, store.last_time) if store.finished else current
            start = self._next.setdefault((category, topic), current)
            while start < current and start <= last:
                self._send(category, topic, interval, store, start, now_ms, confirm=True)
                start = next_start(interval, start)
            self._next[(category, topic)] = start
            if start == current and start <= last:
                self._send(category, topic, interval, store, start, now_ms, confirm=False)

    def _send(self, category, topic, interval, store, start, now_ms, confirm) -> None:
        candle = store.candle(interval, start)
        if candle is not None:
            message = kline_message(topic, now_ms, interval, candle, confirm)
            self.hub.broadcast(category, topic, dumps(message))
