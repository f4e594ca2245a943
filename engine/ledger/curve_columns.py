"""The equity curve and the bars as packed columns: what the ledger writer stores beside each
batch of equity rows (the ``equity_curve`` and ``bar_columns`` tables;
``LedgerReader.equity_curve`` and ``LedgerReader.bar_columns`` read them back).

Each chunk holds one run's rows of one batch as one point per close time: ``ts`` as
little-endian int64, ``equity`` and ``position`` as little-endian float64, in the order the
rows were written. A portfolio writes one row per symbol's bar, all with the one account
snapshot of that close time; its point keeps that snapshot once, with ``position`` 1.0 when
any symbol holds a position and 0.0 when none does (a one-symbol point keeps the position
itself), so the curve grows with the close times, not with the symbols. ``bar_rows`` is how
many rows a chunk stands for. Reading a
few dozen blobs instead of a million rows is what keeps metrics fast on long runs. Only the
standard library here: the writer process imports this.
"""

from __future__ import annotations

import itertools
import sys
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from operator import itemgetter

# positions in an equity row (engine.ledger.store.COLUMNS["equity"]: run_id, ts, cash, equity, position, ...)
RUN_ID, TS, EQUITY, POSITION = 0, 1, 3, 4
# each column's numpy dtype as stored
STORED = {"ts": "<i8", "equity": "<f8", "position": "<f8"}


def _packed(typecode: str, values: Iterable) -> bytes:
    column = array(typecode, values)
    if sys.byteorder == "big":
        column.byteswap()
    return column.tobytes()


def _points(ts: list, equity: list, position: list) -> tuple[list, list, list]:
    """One point per run of equal consecutive stamps: the last equity, and whether any
    position is open where a stamp has several rows. The runs are found by ``groupby`` on
    the stamps alone (a portfolio's rows come a close time's symbols at a time), so Python
    steps once a stamp, not once a row."""
    if len(set(ts)) == len(ts):
        return ts, equity, position
    out_ts = []
    ends = []
    end = 0
    for t, group in itertools.groupby(ts):
        end += len(list(group))
        out_ts.append(t)
        ends.append(end)
    out_equity = [equity[e - 1] for e in ends]
    out_position = []
    start = 0
    for e in ends:
        out_position.append(position[start] if e - start == 1 else float(any(position[start:e])))
        start = e
    return out_ts, out_equity, out_position


def pack(values: Sequence, width: int) -> list[tuple[int, int, bytes, bytes, bytes, int]]:
    """``(run_id, n, ts, equity, position, bar_rows)`` chunks for a batch's equity rows, given as
    one flat list of ``width`` values a row: one chunk per run (consecutive rows of one run
    make one chunk) of ``n`` points standing for ``bar_rows`` rows."""
    chunks = []
    start = 0
    for run_id, group in itertools.groupby(values[RUN_ID::width]):
        count = len(list(group))
        rows = values[start * width : (start + count) * width]
        ts, equity, position = _points(rows[TS::width], rows[EQUITY::width], rows[POSITION::width])
        chunks.append((run_id, len(ts), _packed("q", ts), _packed("d", equity), _packed("d", position),
                       count))
        start += count
    return chunks

# positions of a bar's columns in an equity row, and each packed bar column's numpy dtype
MARK, SYMBOL = 5, 7
BAR_POSITIONS = {"close_ts": TS, "open_time": 9, "open": 10, "high": 11, "low": 12, "close": 13, "volume": 14}
BAR_STORED = {"close_ts": "<i8", "open_time": "<i8", "open": "<f8", "high": "<f8", "low": "<f8",
              "close": "<f8", "volume": "<f8"}


def pack_bars(values: Sequence, width: int) -> list[tuple]:
    """``(run_id, symbol, n, close_ts, open_time, open, high, low, close, volume, opened,
    last_mark)`` chunks of a batch's equity rows (a flat list of ``width`` values a row): one
    chunk per run and symbol, each symbol's rows in the order written; ``opened`` counts its
    rows with a position open, ``last_mark`` is its last row's mark price."""
    chunks = []
    start = 0
    codes = [_typecode(name) for name in BAR_POSITIONS]
    for run_id, group in itertools.groupby(values[RUN_ID::width]):
        n = len(list(group))
        rows = values[start * width : (start + n) * width]
        start += n
        columns = [rows[at::width] for at in (*BAR_POSITIONS.values(), POSITION, MARK)]
        symbols = rows[SYMBOL::width]
        # one symbol: the whole columns
        parts = [(symbols[0], columns)] if symbols.count(symbols[0]) == n else _split(symbols, columns)
        for symbol, (*bars, position, mark) in parts:
            chunks.append((run_id, symbol, len(position),
                           *(_packed(code, part) for code, part in zip(codes, bars, strict=True)),
                           len(position) - position.count(0.0), mark[-1]))
    return chunks


def _typecode(name: str) -> str:
    """The ``array`` typecode of a packed bar column."""
    return "q" if BAR_STORED[name] == "<i8" else "d"


def _split(keys: list, columns: list[list]) -> list[tuple]:
    """Each key's part of every column, in row order, the keys in the order they first come.
    Rows that cycle through the keys in one order (a portfolio's close times, each with every
    symbol's bar) are strided slices; any other order is sorted by key, stably, and cut.
    Both in C: a Python step per row had made 50-symbol batches the writer's slowest."""
    distinct = list(dict.fromkeys(keys))
    n = len(distinct)
    if keys[:n] == distinct and all((own := keys[k::n]).count(own[0]) == len(own) for k in range(n)):
        return [(key, [column[k::n] for column in columns]) for k, key in enumerate(distinct)]
    rank = {key: k for k, key in enumerate(distinct)}
    ranks = list(map(rank.__getitem__, keys))
    order = sorted(range(len(keys)), key=ranks.__getitem__)
    counts = Counter(ranks)
    ordered = [itemgetter(*order)(column) for column in columns]  # irregular rows: at least two
    parts = []
    start = 0
    for k, key in enumerate(distinct):
        stop = start + counts[k]
        parts.append((key, [column[start:stop] for column in ordered]))
        start = stop
    return parts


# a plot row (run_id, symbol, name, ts, value) and its packed columns' numpy dtypes
PLOT_STORED = {"ts": "<i8", "value": "<f8"}


def pack_plots(values: Sequence, width: int) -> list[tuple]:
    """``(run_id, symbol, name, n, ts, value)`` chunks of a batch's plot rows (a flat list of
    ``width`` values a row): one chunk per run, symbol and series, points in the order written."""
    keys = list(zip(values[0::width], values[1::width], values[2::width], strict=True))
    return [(*key, len(stamps), _packed("q", stamps), _packed("d", points))
            for key, (stamps, points) in _split(keys, [values[3::width], values[4::width]])]
