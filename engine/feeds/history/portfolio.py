"""Portfolio replays: the sources of several symbols merged into one stream in time order.

:class:`MergedTradeReplay` is a k-way merge of each symbol's trade chunks, streamed from
the columnar cache, cut at the clock's timer deadlines as a one-symbol replay is. While an
order works or the strategy reads trades (``fine()``), it interleaves exactly: a batch of
one symbol never passes the next trade of another, so a trade of B stamped between two
trades of A is seen between them. Otherwise every symbol's trades up to the next deadline
go in batches ordered by their last trade, so the clock never runs backwards and no event
is handled before the trades it holds happened. :class:`MergedKlineReplay` sends the bars
of each close time, symbol by symbol, then (when asked) their :class:`BarSet`.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np

from engine.bars.aggregator import BarSpec
from engine.bars.chunk_runs import cut, forget_cut
from engine.core.bus import Bus
from engine.core.clock import NS_PER_MS
from engine.core.events import Bar, BarSet, Trades
from engine.feeds.history.archive import ArchiveError
from engine.feeds.history.replay import KlineReplay, Progress, ReplayRange, TradeReplay


def portfolio_range(ranges: list[ReplayRange]) -> ReplayRange:
    """The span of every symbol's range; ``symbol`` is the comma-joined list, ``category`` the
    one of the symbols named without a ``spot:`` prefix (linear when every one has it)."""
    categories = {r.category for r in ranges if ":" not in r.symbol}
    if len(categories) > 1:
        raise ArchiveError(f"the data mixes categories ({', '.join(sorted(categories))}); to trade "
                           "spot and linear in one run, name the spot markets spot:SYMBOL in --symbols")
    return ReplayRange(",".join(r.symbol for r in ranges), categories.pop() if categories else "linear",
                       min(r.start for r in ranges), max(r.end for r in ranges))


class _Stream:
    """One symbol's trades: the current chunk, how far it has been sent and the time of its
    next trade and the chunk's last (``head``, ``last``: ints, as the merge compares every
    stream's at every batch)."""

    __slots__ = ("symbol", "rank", "chunks", "ts", "price", "size", "side", "ids", "lo", "n", "head", "last")

    def __init__(self, symbol: str, rank: int, chunks: Iterator) -> None:
        self.symbol, self.rank, self.chunks = symbol, rank, chunks
        self.lo = self.n = self.head = self.last = 0
        self.ts = np.empty(0, np.int64)
        self.refill()

    def refill(self) -> bool:
        """Load the next non-empty chunk when this one is used up; False at the end."""
        while self.lo >= self.n:
            chunk = next(self.chunks, None)
            if chunk is None:
                return False
            self.ts, self.price, self.size, self.side = chunk.ts, chunk.price, chunk.size, chunk.side
            self.ids, self.lo, self.n = chunk.trade_id, 0, len(chunk.ts)
            if self.n:
                self.head, self.last = int(self.ts[0]), int(self.ts[-1])
        return True

    def batch(self, hi: int) -> Trades:
        lo = self.lo
        self.lo = hi
        if hi < self.n:
            self.head = self.ts.item(hi)
        return cut(self.symbol, self.ts, self.price, self.size, self.side, self.ids, lo, hi)


class MergedTradeReplay:
    """Trade archives of several symbols (one :class:`TradeReplay` each) in time order."""

    kind = "trades"

    def __init__(self, replays: list[TradeReplay]) -> None:
        self.replays = replays
        self.symbols = tuple(r.range.symbol for r in replays)
        self.range = portfolio_range([r.range for r in replays])
        cuts = {r.cut_start for r in replays}
        self.cut_start = cuts.pop() if len(cuts) == 1 else self.range.start
        self.max_batch_ns = min(r.max_batch_ns for r in replays)

    def cover_last_bar(self, spec: BarSpec) -> None:
        for r in self.replays:
            r.cover_last_bar(spec)
        self.range = replace(self.range, end=max(r.range.end for r in self.replays))

    @property
    def total_rows(self) -> int:
        return sum(r.total_rows for r in self.replays)

    @property
    def bad_rows(self) -> int:
        return sum(r.bad_rows for r in self.replays)

    def _chunks(self, replay: TradeReplay) -> Iterator:
        start, end = self.range.start, self.range.end
        for archive in replay.archives:
            yield from archive.chunks(replay.chunk_rows, start, end, replay.with_ids)

    def run(self, bus: Bus, progress: Progress | None = None,
            fine: Callable[[], bool] | None = None) -> None:
        """Send every symbol's trades through ``bus`` in time order (see the module doc)."""
        streams = [s for rank, r in enumerate(self.replays)
                   if (s := _Stream(r.range.symbol, rank, self._chunks(r))).refill()]
        try:
            self._merge(bus, streams, progress, fine)
        finally:
            forget_cut()

    def _merge(self, bus: Bus, streams: list[_Stream], progress: Progress | None,
               fine: Callable[[], bool] | None) -> None:
        clock = bus.clock
        self._spent, self._floor, self._order = False, None, None
        while streams:
            deadline = clock.next_deadline()
            floor = self._floor
            if floor is not None and deadline is not None and deadline <= floor:
                bus.advance_to(deadline)  # what either send would find: no trade before the deadline
                continue
            if fine is not None and fine():
                sent = self._send_exact(bus, streams, deadline)
            else:
                sent = self._send_window(bus, streams, deadline, fine)
            if sent is None:
                bus.advance_to(deadline)
            elif progress is not None and sent:
                progress(sent)
            if self._spent:  # refill() only the streams whose chunk is used up
                self._spent = False
                streams = [s for s in streams if s.refill()]

    def _send_exact(self, bus: Bus, streams: list[_Stream], deadline: int | None) -> int | None:
        """One batch of the stream whose next trade is first, up to the next trade of any
        other stream (ties go in symbol order), the deadline and ``max_batch_ns``; None when
        the deadline comes first."""
        order = self._order
        if order is None:  # (next trade, rank, stream), kept sorted while exact batches go on
            order = self._order = sorted((s.head, s.rank, s) for s in streams)
        head, rank, first = order[0]
        if deadline is not None and deadline <= head:
            return None
        limit, inclusive = head + self.max_batch_ns, False
        if deadline is not None and deadline < limit:
            limit = deadline
        if len(order) > 1 and order[1][0] < limit:  # the other streams' first next trade
            limit, inclusive = order[1][0], order[1][1] > rank
        lo = first.lo
        hi = max(lo, int(first.ts.searchsorted(limit, "right" if inclusive else "left")))
        self._floor = None
        trades = first.batch(hi)
        if hi >= first.n:
            self._spent, self._order = True, None
        else:
            del order[0]
            insort(order, (first.head, rank, first))
        bus.process(trades)
        return hi - lo

    def _send_window(self, bus: Bus, streams: list[_Stream], deadline: int | None,
                     fine: Callable[[], bool] | None) -> int | None:
        """Every stream's trades before ``deadline`` and within the chunks loaded now, in
        batches ordered by their last trade; stops early when a handler set an earlier timer
        or made fine batches necessary. None when the deadline comes before any trade."""
        limit = min(s.last for s in streams)  # no stream may pass another's unloaded trades
        until = deadline if deadline is not None and deadline <= limit else None
        plans = []
        if until is not None:
            for s in streams:  # searched over the whole chunk: its sent part is sorted before lo
                if s.head < until:
                    hi = int(s.ts.searchsorted(until, "left"))
                    plans.append((s.ts.item(hi - 1), s.rank, s, hi))
        else:
            for s in streams:
                if s.head <= limit:
                    hi = int(s.ts.searchsorted(limit, "right"))
                    plans.append((s.ts.item(hi - 1), s.rank, s, hi))
        if not plans:
            return None
        plans.sort()  # by last trade, ties in symbol order (ranks differ: the streams never compare)
        clock = bus.clock
        self._floor = self._order = None
        sent = 0
        for last, _rank, s, hi in plans:
            if sent:
                now_deadline = clock.next_deadline()
                if (now_deadline is not None and now_deadline <= last) or (fine is not None and fine()):
                    return sent
            n = hi - s.lo
            if hi >= s.n:
                self._spent = True
            bus.process(s.batch(hi))
            sent += n
        self._floor = until  # each stream's next trade is at or after the deadline, if cut at it
        return sent


class MergedKlineReplay:
    """Kline bars of several symbols (one :class:`KlineReplay` each), each close time's bars
    in symbol order; with ``bar_sets`` their :class:`BarSet` follows them."""

    kind = "bars"
    cut_start = None
    bad_rows = 0

    def __init__(self, replays: list[KlineReplay]) -> None:
        labels = {r.label for r in replays}
        if len(labels) > 1:
            raise ArchiveError(f"the kline files are of different intervals ({', '.join(sorted(labels))}); "
                               "pass --interval to combine them into one")
        self.replays = replays
        self.symbols = tuple(r.range.symbol for r in replays)
        self.range = portfolio_range([r.range for r in replays])
        self.label = replays[0].label
        self.interval_ns = replays[0].interval_ns
        self.bar_sets = False

    @property
    def total_rows(self) -> int:
        return sum(r.total_rows for r in self.replays)

    def run(self, bus: Bus, progress: Progress | None = None,
            fine: Callable[[], bool] | None = None) -> None:
        """Send every bar at its close, close time by close time (``fine`` is unused). The
        symbols are merged a window of time at a time (about ``block_rows`` bars in all), each
        window's rows read from the symbols' columns, so memory does not grow with the data."""
        step = self.interval_ns
        label, process = self.label, bus.process
        make = tuple.__new__  # Bar(...) would run namedtuple's Python-level __new__ per bar
        sets = self.bar_sets
        group: dict[str, Bar] = {}
        group_close = -1
        rows_ahead = max(1, KlineReplay.block_rows // len(self.replays))
        window_ms = rows_ahead * (step // NS_PER_MS)
        cursors = [r.lo for r in self.replays]
        names = np.array(self.symbols, dtype=object)  # the symbols' own str objects, taken per row
        while True:  # each symbol's next open times read as a block: no page of a long file stays mapped
            ahead = [r.columns.open_block(c, min(r.hi, c + rows_ahead)) for c, r in
                     zip(cursors, self.replays, strict=True)]
            heads = [int(a[0]) for a in ahead if len(a)]
            if not heads:
                break
            start = min(heads)
            parts, owners = [], []
            for k, r in enumerate(self.replays):
                # a symbol's bars are on its interval's grid: a window holds at most rows_ahead of them
                stop = cursors[k] + int(np.searchsorted(ahead[k], start + window_ms, side="left"))
                if stop > cursors[k]:
                    parts.append(r.blocks(cursors[k], stop))
                    owners.append(np.full(stop - cursors[k], k))
                cursors[k] = stop
            rows = self._merged(parts, owners, names)
            if sets:
                group, group_close = self._send_with_sets(process, rows, group, group_close)
            else:  # the one-symbol replay's loop: a portfolio's bars cost what one symbol's do
                for symbol, open_time, o, h, lo, c, v, t, n in rows:
                    close_time = open_time + step
                    process(make(Bar, (symbol, label, open_time, close_time, o, h, lo, c, v, t, n,
                                       close_time, close_time)))
            if progress is not None:
                progress(sum(len(part[0]) for part in parts))
        if sets and group:
            process(BarSet(label, group_close, group, group_close, group_close))

    def _merged(self, parts: list[list[np.ndarray]], owners: list[np.ndarray], names: np.ndarray) -> Iterator:
        """A window's rows ``(symbol, open_ns, open, .. trades)`` in time order, a close time's
        in symbol order. When every symbol has a bar at each of the window's open times (the
        usual portfolio) that is each close time's bars in turn, put in place by strided
        copies; else a stable sort of the window by open time."""
        first = parts[0]
        if len(parts) == len(self.replays) and all(
                np.array_equal(part[0], first[0])
                and all(a.dtype == b.dtype for a, b in zip(part, first, strict=True)) for part in parts[1:]):
            width = len(parts)
            columns = [np.empty(width * len(column), column.dtype) for column in first]
            for k, part in enumerate(parts):
                for merged, column in zip(columns, part, strict=True):
                    merged[k::width] = column
            return zip(list(self.symbols) * len(first[0]), *(c.tolist() for c in columns), strict=True)
        columns = [np.concatenate(column) for column in zip(*parts, strict=True)]
        order = columns[0].argsort(kind="stable")  # stable: symbol order within a close time
        return zip(names[np.concatenate(owners)[order]].tolist(), *(c[order].tolist() for c in columns),
                   strict=True)

    def _send_with_sets(self, process: Callable, rows: Iterator, group: dict[str, Bar],
                        group_close: int) -> tuple[dict[str, Bar], int]:
        """Send a window's bars, each close time's :class:`BarSet` after its bars once the
        next close time's first bar comes; returns the close time still open and its bars."""
        step, label, make = self.interval_ns, self.label, tuple.__new__
        for symbol, open_time, o, h, lo, c, v, t, n in rows:
            close_time = open_time + step
            if group and close_time != group_close:
                process(BarSet(label, group_close, group, group_close, group_close))
                group = {}
            bar = make(Bar, (symbol, label, open_time, close_time, o, h, lo, c, v, t, n,
                             close_time, close_time))
            process(bar)
            group[symbol] = bar
            group_close = close_time
        return group, group_close
