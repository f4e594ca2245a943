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
from collections.abc import Iterable, Sequence

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
    position is open where a stamp has several rows."""
    if len(set(ts)) == len(ts):
        return ts, equity, position
    out_ts, out_equity, out_position = [], [], []
    for t, group in itertools.groupby(zip(ts, equity, position, strict=True), key=lambda row: row[0]):
        rows = list(group)
        out_ts.append(t)
        out_equity.append(rows[-1][1])
        out_position.append(rows[0][2] if len(rows) == 1 else float(any(r[2] for r in rows)))
    return out_ts, out_equity, out_position


def pack(values: Sequence, width: int) -> list[tuple[int, int, bytes, bytes, bytes, int]]:
    """``(run_id, n, ts, equity, position, bar_rows)`` chunks for a batch's equity rows, given as
    one flat list of ``width`` values a row: one chunk per run (consecutive rows of one run
    make one chunk) of ``n`` points standing for ``bar_rows`` rows."""
    chunks = []
    start = 0
    for run_id, group in itertools.groupby(values[RUN_ID::width]):
        count = sum(1 for _ in group)
        rows = values[start * width : (start + count) * width]
        ts, equity, position = _points(rows[TS::width], rows[EQUITY::width], rows[POSITION::width])
        chunks.append((run_id, len(ts), _packed("q", ts), _packed("d", equity), _packed("d", position),
                       count))
        start += count
    return chunks

# positions of a bar's columns in an equity row, and each packed bar column's numpy dtype
SYMBOL = 7
BAR_POSITIONS = {"close_ts": TS, "open_time": 9, "open": 10, "high": 11, "low": 12, "close": 13, "volume": 14}
BAR_STORED = {"close_ts": "<i8", "open_time": "<i8", "open": "<f8", "high": "<f8", "low": "<f8",
              "close": "<f8", "volume": "<f8"}


def pack_bars(values: Sequence, width: int) -> list[tuple]:
    """``(run_id, symbol, n, close_ts, open_time, open, high, low, close, volume)`` chunks of a
    batch's equity rows (a flat list of ``width`` values a row): one chunk per run and symbol,
    each symbol's rows in the order written."""
    chunks = []
    start = 0
    for run_id, group in itertools.groupby(values[RUN_ID::width]):
        n = sum(1 for _ in group)
        rows = values[start * width : (start + n) * width]
        start += n
        columns = [(_typecode(name), rows[at::width]) for name, at in BAR_POSITIONS.items()]
        symbols = rows[SYMBOL::width]
        if symbols.count(symbols[0]) == n:  # one symbol: the whole columns
            chunks.append((run_id, symbols[0], n, *(_packed(code, column) for code, column in columns)))
            continue
        for symbol, own in _rows_by_symbol(symbols).items():  # a portfolio's rows interleave
            chunks.append((run_id, symbol, len(own),
                           *(_packed(code, [column[i] for i in own]) for code, column in columns)))
    return chunks


def _typecode(name: str) -> str:
    """The ``array`` typecode of a packed bar column."""
    return "q" if BAR_STORED[name] == "<i8" else "d"


def _rows_by_symbol(symbols: list) -> dict[str, list[int]]:
    """Each symbol's row numbers in order, the symbols in the order they first come: one pass,
    not one over every row per symbol (50 symbols' batches took 50 passes)."""
    rows: dict[str, list[int]] = {}
    for i, symbol in enumerate(symbols):
        rows.setdefault(symbol, []).append(i)
    return rows


# a plot row (run_id, symbol, name, ts, value) and its packed columns' numpy dtypes
PLOT_STORED = {"ts": "<i8", "value": "<f8"}


def pack_plots(values: Sequence, width: int) -> list[tuple]:
    """``(run_id, symbol, name, n, ts, value)`` chunks of a batch's plot rows (a flat list of
    ``width`` values a row): one chunk per run, symbol and series, points in the order written."""
    series: dict[tuple, tuple[list, list]] = {}
    for i in range(0, len(values), width):
        stamps, points = series.setdefault((values[i], values[i + 1], values[i + 2]), ([], []))
        stamps.append(values[i + 3])
        points.append(values[i + 4])
    return [(*key, len(stamps), _packed("q", stamps), _packed("d", points))
            for key, (stamps, points) in series.items()]
