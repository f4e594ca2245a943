"""What a server has served so far, per symbol: one-minute candles (from which every kline
interval is built) and the latest trades (for recent-trade). Times are served times."""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from dataclasses import dataclass

import numpy as np

from engine.bybit.intervals import MS_PER_MINUTE, candle_start, candle_starts, next_start
from engine.bybit.render import SIDES, num

RECENT_KEPT = 1000  # the largest recent-trade limit (BYBIT.md section 8)


@dataclass(frozen=True)
class Candle:
    """One kline: ``end`` is the next start - 1; ``timestamp`` the time of its last trade
    (its start when it had none)."""

    start: int
    end: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    turnover: float
    timestamp: int

    def row(self) -> list[str]:
        """The REST kline row: ``[startTime, open, high, low, close, volume, turnover]``."""
        return [str(self.start), num(self.open), num(self.high), num(self.low), num(self.close),
                num(self.volume, 8), num(self.turnover, 8)]


class SymbolStore:
    """Served trades of one symbol, summarised as minute candles plus the last 1000 trades.

    Volume is summed size; turnover is price * size, or size / price for inverse contracts
    (whose size is in USD), as Bybit's klines report them (BYBIT.md section 7). Recent-trade
    items carry ``seq`` as a string like the endpoint's other numbers (BYBIT.md gives no type).
    """

    def __init__(self, category: str, symbol: str) -> None:
        self.category, self.symbol = category, symbol
        self.inverse = category == "inverse"
        self.trades = 0
        self.last_time: int | None = None
        self.finished = False
        self._keys: list[int] = []
        self._open: list[float] = []
        self._high: list[float] = []
        self._low: list[float] = []
        self._close: list[float] = []
        self._volume: list[float] = []
        self._turnover: list[float] = []
        self._last: list[int] = []
        self._recent: deque[dict] = deque(maxlen=RECENT_KEPT)

    def record(self, served_ms: np.ndarray, price: np.ndarray, size: np.ndarray, side: np.ndarray,
               trade_id: np.ndarray, seq: np.ndarray) -> None:
        """Add trades whose served time has come (in time order)."""
        if len(served_ms) == 0:
            return
        minutes = served_ms // MS_PER_MINUTE * MS_PER_MINUTE
        starts = np.concatenate(([0], np.flatnonzero(np.diff(minutes)) + 1))
        ends = np.append(starts[1:], len(minutes))
        turnover = size / price if self.inverse else price * size
        for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
            self._fold(int(minutes[lo]), price[lo:hi], float(size[lo:hi].sum()),
                       float(turnover[lo:hi].sum()), int(served_ms[hi - 1]))
        tail = slice(max(0, len(served_ms) - RECENT_KEPT), len(served_ms))
        for t, p, v, s, i, q in zip(served_ms[tail].tolist(), price[tail].tolist(), size[tail].tolist(),
                                    side[tail].tolist(), trade_id[tail].tolist(), seq[tail].tolist(),
                                    strict=True):
            self._recent.append({"execId": i.decode(), "symbol": self.symbol, "price": num(p),
                                 "size": num(v), "side": SIDES[s], "time": str(t),
                                 "isBlockTrade": False, "isRPITrade": False, "seq": str(q)})
        self.trades += len(served_ms)
        self.last_time = int(served_ms[-1])

    def _fold(self, minute: int, price: np.ndarray, volume: float, turnover: float, last: int) -> None:
        high, low = float(price.max()), float(price.min())
        if self._keys and self._keys[-1] == minute:
            self._high[-1] = max(self._high[-1], high)
            self._low[-1] = min(self._low[-1], low)
            self._close[-1] = float(price[-1])
            self._volume[-1] += volume
            self._turnover[-1] += turnover
            self._last[-1] = last
            return
        self._keys.append(minute)
        self._open.append(float(price[0]))
        self._high.append(high)
        self._low.append(low)
        self._close.append(float(price[-1]))
        self._volume.append(volume)
        self._turnover.append(turnover)
        self._last.append(last)

    def served_until(self, now_ms: int) -> int | None:
        """The latest served time with candles: now, or the last trade once the tape ended."""
        if self.last_time is None:
            return None
        return self.last_time if self.finished else now_ms

    def recent(self, limit: int) -> list[dict]:
        """The latest ``limit`` trades, newest first."""
        count = min(limit, len(self._recent))
        return [self._recent[-1 - k] for k in range(count)]

    def candle(self, interval: str, start: int) -> Candle | None:
        """The candle starting at ``start`` as served so far; a candle without trades is flat
        at the previous close with zero volume; None before the first trade."""
        end = next_start(interval, start)
        lo, hi = bisect_left(self._keys, start), bisect_left(self._keys, end)
        if lo == hi:
            if lo == 0:
                return None
            close = self._close[lo - 1]
            return Candle(start, end - 1, close, close, close, close, 0.0, 0.0, start)
        return Candle(start, end - 1, self._open[lo], max(self._high[lo:hi]), min(self._low[lo:hi]),
                      self._close[hi - 1], sum(self._volume[lo:hi]), sum(self._turnover[lo:hi]),
                      self._last[hi - 1])

    def candles(self, interval: str, start: int | None, end: int, limit: int) -> list[Candle]:
        """Candles whose start lies in ``[start, end]``, at most ``limit`` of them (the newest),
        oldest first; ``end`` should not pass the served clock."""
        if not self._keys:
            return []
        first = candle_start(interval, self._keys[0])
        if start is not None and start > first:
            first = candle_start(interval, start)
            if first < start:
                first = next_start(interval, first)
        starts = candle_starts(interval, first, candle_start(interval, end), limit)
        return [c for c in (self.candle(interval, s) for s in starts) if c is not None]
