"""Replay sources: history pushed through the bus as fast as the CPU allows.

:class:`TradeReplay` streams trade archives in chunks and cuts each chunk at the clock's
next timer deadline, so every timer (a bar close, an order's arrival) fires exactly between
the trades before and after it, as it would live. A batch's ``ts_init`` is its last trade's
time. :class:`KlineReplay` sends bars from kline files, each at its close, a block of
rows read from the columnar cache at a time. The caller
then moves the clock to the end of the data range (plus any bar-close delay) so the bars
up to that end close.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from engine.bars.aggregator import BarSpec
from engine.bars.chunk_runs import cut, forget_cut
from engine.bars.kline_files import KLINE_COLUMNS
from engine.core.bus import Bus
from engine.core.clock import NS_PER_MS, NS_PER_S
from engine.core.events import Bar
from engine.feeds.history.archive import ArchiveError, ArchiveInfo, TradeArchive
from engine.feeds.history.kline_cache import CachedColumns, FrameColumns

log = logging.getLogger(__name__)

Progress = Callable[[int], None]


@dataclass(frozen=True)
class ReplayRange:
    """What a replay covers: ``[start, end)`` in ns, the symbol and its category."""

    symbol: str
    category: str
    start: int
    end: int


class TradeReplay:
    """Trade archives of one symbol replayed in time order as :class:`Trades` batches."""

    kind = "trades"

    def __init__(
        self,
        archives: list[TradeArchive],
        start_ns: int | None = None,
        end_ns: int | None = None,
        chunk_rows: int = 1_000_000,
        with_ids: bool = False,
        max_batch_ns: int = NS_PER_S,
    ) -> None:
        if not archives:
            raise ArchiveError("no trade archives given")
        infos = [(a.info(), a) for a in archives]
        infos.sort(key=lambda pair: (pair[0].first_ts, pair[0].path))
        symbols = {info.symbol for info, _ in infos}
        if len(symbols) > 1:
            raise ArchiveError(f"archives hold several symbols {sorted(symbols)}; one per run")
        for (prev, _), (info, _) in zip(infos, infos[1:], strict=False):
            if prev.rows and info.rows and info.first_ts < prev.last_ts:
                raise ArchiveError(
                    f"{info.path} overlaps {prev.path} in time; give each day once"
                )
        self.infos: list[ArchiveInfo] = [info for info, _ in infos]
        self.archives = [archive for _, archive in infos]
        first = self.infos[0]
        start = first.range_start if start_ns is None else start_ns
        end = max(i.range_end for i in self.infos) if end_ns is None else end_ns
        if end <= start:
            raise ArchiveError("the replay range is empty: --end must be after --start")
        self.range = ReplayRange(first.symbol, first.category, start, end)
        # Files replayed from their own beginning start no bar part-way; a --start can.
        self.cut_start = start_ns
        self._open_end = end_ns is None
        self.chunk_rows = chunk_rows
        self.with_ids = with_ids
        self.max_batch_ns = max_batch_ns
        self.trades_sent = 0

    def cover_last_bar(self, spec: BarSpec) -> None:
        """Without ``--end`` the data simply ends, so no later trade can join its last time
        bar: move the range end to that bar's close so the bar is emitted (a daily archive
        already ends on a bar boundary for intervals that divide a day)."""
        if not (self._open_end and spec.is_time):
            return
        size, offset = int(spec.size), spec.offset_ns
        end = -(-(self.range.end - offset) // size) * size + offset
        self.range = replace(self.range, end=end)

    @property
    def total_rows(self) -> int:
        return sum(info.rows for info in self.infos)

    @property
    def bad_rows(self) -> int:
        return sum(info.bad_rows for info in self.infos)

    def run(self, bus: Bus, progress: Progress | None = None,
            fine: Callable[[], bool] | None = None) -> None:
        """Send every trade in range through ``bus``. While ``fine()`` is true (an order is
        working, or a strategy reads trades) no batch spans more than ``max_batch_ns``, so a
        fill or a trade is seen about as soon as it would be live; otherwise batches run to
        the next timer."""
        start, end = self.range.start, self.range.end
        try:
            for archive in self.archives:
                for chunk in archive.chunks(self.chunk_rows, start, end, self.with_ids):
                    self._send(bus, chunk.ts, chunk.price, chunk.size, chunk.side, chunk.trade_id, fine)
                    if progress is not None:
                        progress(len(chunk.ts))
        finally:
            forget_cut()

    def _send(self, bus: Bus, ts, price, size, side, ids, fine) -> None:
        symbol = self.range.symbol
        clock = bus.clock
        n = len(ts)
        lo = 0
        last_ts = int(ts[-1]) if n else 0
        while lo < n:
            deadline = clock.next_deadline()
            head = int(ts[lo])
            if deadline is not None and deadline <= head:  # a timer is due before the next trade
                bus.advance_to(deadline)
                continue
            if fine is not None and fine():
                cap = head + self.max_batch_ns
                deadline = cap if deadline is None else min(deadline, cap)
            if deadline is not None and deadline <= last_ts:
                # the sent part of the chunk is sorted before ts[lo] < deadline: search it all
                hi = int(ts.searchsorted(deadline, "left"))
            else:
                hi = n
            bus.process(cut(symbol, ts, price, size, side, ids, lo, hi))
            lo = hi
        self.trades_sent += n


class KlineReplay:
    """Bars of one symbol's kline series (:mod:`engine.feeds.history.kline_cache` columns)
    replayed in time order, each sent at its close, a block of rows read at a time."""

    kind = "bars"
    bad_rows = 0
    cut_start = None
    block_rows = 65536  # rows read and turned into Python values at a time: memory stays flat

    def __init__(
        self,
        columns: FrameColumns | CachedColumns,
        symbol: str,
        category: str,
        interval_label: str,
        interval_ms: int,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> None:
        self.columns = columns
        open_ms = columns.open_ms
        self.lo, self.hi = 0, len(open_ms)
        if start_ns is not None:  # open_time * 1e6 >= start_ns
            self.lo = int(np.searchsorted(open_ms, -(-start_ns // NS_PER_MS), side="left"))
        if end_ns is not None:  # open_time * 1e6 + interval <= end_ns
            last_open = (end_ns - interval_ms * NS_PER_MS) // NS_PER_MS
            self.hi = max(self.lo, int(np.searchsorted(open_ms, last_open, side="right")))
        if self.hi <= self.lo:
            raise ArchiveError("no bars in the replay range")
        interval_ns = interval_ms * NS_PER_MS
        first_open = int(open_ms[self.lo]) * NS_PER_MS
        last_close = int(open_ms[self.hi - 1]) * NS_PER_MS + interval_ns
        self.range = ReplayRange(
            symbol, category,
            first_open if start_ns is None else start_ns,
            last_close if end_ns is None else end_ns,
        )
        self.label = interval_label
        self.interval_ns = interval_ns

    @property
    def total_rows(self) -> int:
        return self.hi - self.lo

    @property
    def frame(self) -> pd.DataFrame:
        """Every bar of the range at once, in the kline format (for training, not replay)."""
        values = self.columns.block(self.lo, self.hi)
        return pd.DataFrame({"open_time": self.columns.open_block(self.lo, self.hi),
                             **dict(zip(KLINE_COLUMNS[1:], values, strict=True))})

    def blocks(self, lo: int, hi: int):
        """Rows ``lo`` to ``hi`` as ``(open_ns, open, high, low, close, volume, turnover, trades)`` arrays."""
        open_ns = np.asarray(self.columns.open_block(lo, hi), dtype=np.int64) * NS_PER_MS
        return [open_ns, *self.columns.block(lo, hi)]

    def run(self, bus: Bus, progress: Progress | None = None,
            fine: Callable[[], bool] | None = None) -> None:
        """Send every bar through ``bus`` at its close (``fine`` is unused: bars are atomic)."""
        symbol, label, step = self.range.symbol, self.label, self.interval_ns
        process = bus.process
        make = tuple.__new__  # Bar(...) would run namedtuple's Python-level __new__ per bar
        for lo in range(self.lo, self.hi, self.block_rows):
            hi = min(lo + self.block_rows, self.hi)
            rows = zip(*(column.tolist() for column in self.blocks(lo, hi)), strict=True)
            for open_time, o, h, low, c, v, t, n in rows:
                close_time = open_time + step
                process(make(Bar, (symbol, label, open_time, close_time, o, h, low, c, v, t, n,
                                   close_time, close_time)))
            if progress is not None:
                progress(hi - lo)
