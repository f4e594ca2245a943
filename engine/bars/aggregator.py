"""Bar aggregation from trades: time bars closed by clock timers, and tick/volume/value bars
closed by their own counters.

Work per :class:`~engine.core.events.Trades` batch is vectorised (no Python loop per trade).
Volume and turnover are summed as integers (volume in 1e-8 base units, turnover in 1e-6
quote units, inverse turnover in 1e-10 base units) so the same trades in any batching give
exactly the same bars, not bars that differ in the last bit of a float sum.

Time bars cover ``[open_time, open_time + interval)`` aligned to the Unix epoch (weekly bars
to Monday 00:00 UTC, as Bybit's), and close on a timer at ``close_time + close_delay``.
Policies, with their defaults:

- ``empty = "flat"``: an interval without trades gives a flat bar at the last close with
  zero volume (as Bybit's klines do); ``"skip"`` emits nothing for it.
- ``first_partial = "skip"``: when the data starts inside a bar (``start_ns``: a live start,
  or a ``--start`` inside a bar) that first bar is not emitted (it would summarise only part
  of its interval); ``"keep"`` emits it. Without ``start_ns`` (a replay of files from their
  own beginning, such as a Bybit daily archive covering its UTC day) nothing is skipped.

A trade that arrives for a bar already closed is late: it is counted in ``late_trades``,
logged, and left out. Count bars (tick, volume, value) use the global running count: bar
``b`` holds the trades that start while the count is in ``[b*N, (b+1)*N)`` and closes with
the trade that takes the count to ``(b+1)*N`` or beyond, so trades are never split. Their
``close_time`` is the closing trade's time (inclusive).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.bars.bar_sums import (
    INVERSE_TURNOVER_SCALE,
    TURNOVER_SCALE,
    VOLUME_SCALE,
    Partial,
    group_stats,
    scaled,
    slice_stats,
)
from engine.bars.chunk_runs import MIN_ROWS, ChunkRuns
from engine.core.clock import NS_PER_S, Clock, Timer
from engine.core.events import Bar, Trades
from engine.core.typed import ConfigError

log = logging.getLogger(__name__)

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Bybit's kline interval codes (minutes, or D/W), BYBIT.md section 4.
_BYBIT_CODES = {str(m): m * 60 for m in (1, 3, 5, 15, 30, 60, 120, 240, 360, 720)}
_BYBIT_CODES |= {"D": 86400, "W": 7 * 86400}
# 1970-01-01 was a Thursday: Monday-aligned weeks start 4 days later.
_WEEK_OFFSET_NS = 4 * 86400 * NS_PER_S
_COUNT_KINDS = ("tick", "volume", "value")
_MAX_SECONDS = 366 * 86400
_make = tuple.__new__


@dataclass(frozen=True)
class BarSpec:
    """What closes a bar: ``kind`` is time/tick/volume/value; ``size`` is nanoseconds for
    time bars, a trade count for tick bars, and a base-volume or quote-value threshold."""

    kind: str
    size: float
    label: str
    offset_ns: int = 0

    @property
    def is_time(self) -> bool:
        return self.kind == "time"


def parse_interval(text: str) -> BarSpec:
    """Parse ``1m``, ``5m``, ``1h``, ``1d``, ``1w``, ``90s``, a Bybit code (``1``, ``60``,
    ``D``, ``W``), ``tick:N``, ``volume:X`` or ``value:X`` into a :class:`BarSpec`; anything
    else (``7x``, ``0s``, ``tick:-5``, longer than a year) is a :class:`ConfigError`."""
    raw = text.strip()
    if ":" in raw:
        kind, _, amount = raw.partition(":")
        kind = kind.lower()
        if kind not in _COUNT_KINDS:
            raise ConfigError(f"unknown bar kind {kind!r} in {text!r}: use tick:, volume: or value:")
        try:
            size = float(amount)
        except ValueError:
            raise ConfigError(f"bar size {amount!r} in {text!r} is not a number") from None
        if not 0 < size < 1e15 or (kind == "tick" and size != int(size)):
            raise ConfigError(f"bar size in {text!r} must be positive (whole for tick bars)")
        return BarSpec(kind, int(size) if kind == "tick" else size, f"{kind}:{amount}")
    seconds = _BYBIT_CODES.get(raw.upper() if raw.upper() in ("D", "W") else raw)
    if re.fullmatch(r"\d*M", raw):
        raise ConfigError(f"interval {text!r}: months (Bybit's M) have no fixed length; 1m is a minute")
    if seconds is None:
        match = re.fullmatch(r"(\d+)([smhdw])", raw.lower())
        if not match or int(match.group(1)) == 0:
            raise ConfigError(
                f"unknown interval {text!r}: use e.g. 1m, 5m, 1h, 1d, 1w, 90s, or tick:N, "
                "volume:X, value:X"
            )
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        if seconds > _MAX_SECONDS:
            raise ConfigError(f"interval {text!r} is longer than a year")
    offset = _WEEK_OFFSET_NS if seconds % (7 * 86400) == 0 else 0
    return BarSpec("time", seconds * NS_PER_S, _time_label(seconds), offset)


def _time_label(seconds: int) -> str:
    for unit, unit_seconds in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % unit_seconds == 0:
            return f"{seconds // unit_seconds}{unit}"
    return f"{seconds}s"


class TimeBarAggregator:
    """Builds time bars for one symbol and closes each on a timer at its end plus a delay."""

    def __init__(
        self,
        symbol: str,
        spec: BarSpec,
        clock: Clock,
        publish: Callable[[Bar], None],
        *,
        close_delay_ns: int = 0,
        empty: str = "flat",
        first_partial: str = "skip",
        start_ns: int | None = None,
        inverse: bool = False,
    ) -> None:
        if not spec.is_time:
            raise ValueError(f"{spec.label} is not a time interval")
        if empty not in ("flat", "skip") or first_partial not in ("skip", "keep"):
            raise ValueError("empty must be flat|skip and first_partial skip|keep")
        self.symbol, self.spec, self.clock, self.publish = symbol, spec, clock, publish
        self.close_delay_ns = int(close_delay_ns)
        self.empty, self.first_partial = empty, first_partial
        self.start_ns, self.inverse = start_ns, inverse
        self._size = int(spec.size)
        self._open: dict[int, Partial] = {}
        self._next_key: int | None = None
        self._skip_key: int | None = None
        self._last_close: float | None = None
        self._timer: Timer | None = None
        self._held = False
        self._runs: ChunkRuns | None = None  # the chunk the last batches were cut from
        self._pending: tuple[int, int, int] | None = None  # (first row, end row, key) of a run being filled
        self.late_trades = 0
        self.bars_emitted = 0

    def open_time(self, key: int) -> int:
        return key * self._size + self.spec.offset_ns

    def on_trades(self, trades: Trades) -> None:
        """Fold a batch (sorted by ``ts_event``) into the open bars."""
        ts = trades.ts_event
        if len(ts) == 0:
            return
        runs = self._runs
        if runs is None or ts.base is not runs.ts:
            runs = self._runs_of(trades)
        row = None if runs is None else runs.row_of(trades)
        if row is not None and self._fold_rows(runs, row, row + len(ts)):
            return
        self._flush()
        size, offset = self._size, self.spec.offset_ns
        first_key = (int(ts[0]) - offset) // size
        last_key = (int(ts[-1]) - offset) // size
        if self._next_key is None:
            self._begin(first_key)
        vol, turn = scaled(trades, self.inverse)
        price = trades.price
        if last_key - first_key <= 1:  # the usual batch, cut at a bar's close (plus its delay)
            n = len(ts)
            cut = n if first_key == last_key else int(ts.searchsorted(self.open_time(last_key)))
            self._fold(first_key, *slice_stats(price, ts, vol, turn, 0, cut))
            if cut < n:
                self._fold(last_key, *slice_stats(price, ts, vol, turn, cut, n))
            return
        keys = (ts - offset) // size
        starts = np.concatenate(([0], np.flatnonzero(np.diff(keys)) + 1))
        stats = group_stats(price, ts, vol, turn, starts)
        for i, key in enumerate(keys[starts].tolist()):
            self._fold(key, *(float(c[i]) for c in stats[:4]), *(int(c[i]) for c in stats[4:]))

    def _runs_of(self, trades: Trades) -> ChunkRuns | None:
        base = trades.ts_event.base
        if base is None or len(base) < MIN_ROWS:
            return None
        self._flush()
        self._runs = runs = ChunkRuns.of(trades, self._size, self.spec.offset_ns, self.inverse)
        return runs

    def _fold_rows(self, runs: ChunkRuns, lo: int, hi: int) -> bool:
        """Fold chunk rows ``lo:hi``, each run they finish whole from its sums; False, folding
        nothing, when they hold late trades (those go batch by batch, logged as ever)."""
        g = runs.run_at(lo)
        if self._next_key is None:
            self._begin(runs.keys[g])
        elif runs.keys[g] < self._next_key:
            return False
        if self._pending is not None and self._pending[1] != lo:
            self._flush()
        start = lo if self._pending is None else self._pending[0]
        while True:
            key, run_end = runs.keys[g], runs.starts[g + 1]
            if run_end > hi:
                self._pending = (start, hi, key)
                return True
            if start == runs.starts[g]:
                self._fold(key, *runs.stats[g])
            else:
                self._fold(key, *runs.range_stats(start, run_end))
            if run_end == hi:
                self._pending = None
                return True
            start = run_end
            g = runs.run_at(start)

    def _flush(self) -> None:
        """Fold the rows of the run being filled (a batch does not go on from them, or their bar closes)."""
        pending = self._pending
        if pending is not None:
            self._pending = None
            self._fold(pending[2], *self._runs.range_stats(pending[0], pending[1]))

    def _fold(self, key, o, h, lo, c, vol, turn, n, first, last) -> None:
        if key < self._next_key:
            self.late_trades += n
            log.warning(
                "%s %s: %d late trade(s) for the bar at %d, already closed; left out",
                self.symbol, self.spec.label, n, self.open_time(key),
            )
            return
        partial = self._open.get(key)
        if partial is None:
            self._open[key] = Partial(o, h, lo, c, vol, turn, n, first, last)
        else:
            partial.merge(o, h, lo, c, vol, turn, n, first, last)

    def _begin(self, key: int) -> None:
        self._next_key = key
        if self.first_partial == "skip" and self.start_ns is not None and self.open_time(key) < self.start_ns:
            self._skip_key = key
        self._arm()

    def start_at(self, ts_ns: int) -> None:
        """Start the timer chain at the bar containing ``ts_ns`` without waiting for a trade
        (so empty bars at the start of a range follow the empty policy)."""
        if self._next_key is None:
            self._begin((ts_ns - self.spec.offset_ns) // self._size)

    def _arm(self) -> None:
        at = self.open_time(self._next_key + 1) + self.close_delay_ns
        self._timer = self.clock.set_timer(at, self._on_timer, f"close {self.spec.label}")

    @property
    def held(self) -> bool:
        return self._held

    def hold(self) -> None:
        """Stop closing bars (a feed gap is being backfilled); timers keep their place."""
        self._held = True

    def release(self) -> None:
        """Close every bar whose timer passed while held, then go on as usual."""
        self._held = False
        if self._next_key is None:
            return
        self._timer.cancel()
        now = self.clock.timestamp_ns()
        while self.open_time(self._next_key + 1) + self.close_delay_ns <= now:
            self._close_next()
        self._arm()

    def close_through(self, ts_ns: int) -> None:
        """While held, close the bars that end by ``ts_ns``: a closing gap has handed on every
        trade before it and is about to hand on later ones, so those bars are complete and
        close now, before a later trade can reach the broker, even when their timer (end
        plus the close delay) has not passed yet; the rest wait for the release."""
        if self._next_key is None:
            return
        while self.open_time(self._next_key + 1) <= ts_ns:
            self._close_next()

    def _on_timer(self, _at: int) -> None:
        if self._held:
            return
        self._close_next()
        self._arm()

    def _close_next(self) -> None:
        key = self._next_key
        if self._pending is not None and self._pending[2] == key:
            self._flush()
        self._next_key = key + 1
        partial = self._open.pop(key, None)
        skip = key == self._skip_key
        if partial is not None:
            self._last_close = partial.close
            if not skip:
                self._emit(key, partial.open, partial.high, partial.low, partial.close,
                           partial.volume, partial.turnover, partial.trades)
        elif self.empty == "flat" and self._last_close is not None and not skip:
            c = self._last_close
            self._emit(key, c, c, c, c, 0, 0, 0)

    def _emit(self, key, o, h, lo, c, vol, turn, n) -> None:
        open_time = self.open_time(key)
        close_time = open_time + self._size
        turnover_scale = INVERSE_TURNOVER_SCALE if self.inverse else TURNOVER_SCALE
        self.bars_emitted += 1
        self.publish(_make(Bar, (  # tuple.__new__: Bar(...) runs namedtuple's Python-level __new__
            self.symbol, self.spec.label, open_time, close_time, o, h, lo, c,
            vol / VOLUME_SCALE, turn / turnover_scale, n, close_time,
            self.clock.timestamp_ns(),
        )))


class CountBarAggregator:
    """Builds tick, volume or value bars for one symbol; a bar closes with the trade that
    completes its count, at that trade's time."""

    def __init__(
        self,
        symbol: str,
        spec: BarSpec,
        clock: Clock,
        publish: Callable[[Bar], None],
        *,
        inverse: bool = False,
    ) -> None:
        if spec.kind not in _COUNT_KINDS:
            raise ValueError(f"{spec.label} is not a tick/volume/value interval")
        self.symbol, self.spec, self.clock, self.publish = symbol, spec, clock, publish
        self.inverse = inverse
        if spec.kind == "tick":
            self._threshold = int(spec.size)
        elif spec.kind == "volume":
            self._threshold = int(round(spec.size * VOLUME_SCALE))
        else:
            scale = INVERSE_TURNOVER_SCALE if inverse else TURNOVER_SCALE
            self._threshold = int(round(spec.size * scale))
        self._count = 0
        self._partial: Partial | None = None
        self._partial_index = -1
        self.bars_emitted = 0

    def on_trades(self, trades: Trades) -> None:
        ts = trades.ts_event
        if len(ts) == 0:
            return
        vol, turn = scaled(trades, self.inverse)
        if self.spec.kind == "tick":
            metric = np.ones(len(ts), dtype=np.int64)
        else:
            metric = vol if self.spec.kind == "volume" else turn
        after = self._count + np.cumsum(metric)
        index = (after - metric) // self._threshold
        starts = np.concatenate(([0], np.flatnonzero(np.diff(index)) + 1))
        stats = group_stats(trades.price, ts, vol, turn, starts)
        ends_after = after[np.append(starts[1:], len(ts)) - 1]
        for i, bar_index in enumerate(index[starts].tolist()):
            values = (*(float(c[i]) for c in stats[:4]), *(int(c[i]) for c in stats[4:]))
            if bar_index == self._partial_index:
                self._partial.merge(*values)
            else:
                self._partial = Partial(*values)
                self._partial_index = bar_index
            if int(ends_after[i]) >= (bar_index + 1) * self._threshold:
                self._emit(self._partial)
                self._partial, self._partial_index = None, -1
        self._count = int(after[-1])

    def _emit(self, p: Partial) -> None:
        turnover_scale = INVERSE_TURNOVER_SCALE if self.inverse else TURNOVER_SCALE
        self.bars_emitted += 1
        self.publish(Bar(
            self.symbol, self.spec.label, p.first, p.last, p.open, p.high, p.low, p.close,
            p.volume / VOLUME_SCALE, p.turnover / turnover_scale, p.trades, p.last,
            self.clock.timestamp_ns(),
        ))


def make_aggregator(
    symbol: str,
    spec: BarSpec,
    clock: Clock,
    publish: Callable[[Bar], None],
    **options,
) -> TimeBarAggregator | CountBarAggregator:
    """The aggregator for ``spec``: options for time bars are ``close_delay_ns``, ``empty``,
    ``first_partial``, ``start_ns`` (where the data was cut, if inside a bar); both take ``inverse``."""
    if spec.is_time:
        return TimeBarAggregator(symbol, spec, clock, publish, **options)
    return CountBarAggregator(symbol, spec, clock, publish, inverse=options.get("inverse", False))
