"""The equity curve and the bars as packed columns: what the ledger writer stores beside each
batch of equity rows (the ``equity_curve`` and ``bar_columns`` tables;
``LedgerReader.equity_curve`` and ``LedgerReader.bar_columns`` read them back).

Each chunk holds one run's rows of one batch: ``ts`` as little-endian int64, ``equity``
and ``position`` as little-endian float64, in the order the rows were written. Reading a
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


def pack(values: Sequence, width: int) -> list[tuple[int, int, bytes, bytes, bytes]]:
    """``(run_id, n, ts, equity, position)`` chunks for a batch's equity rows, given as one
    flat list of ``width`` values a row: one chunk per run (consecutive rows of one run
    make one chunk)."""
    chunks = []
    start = 0
    for run_id, group in itertools.groupby(values[RUN_ID::width]):
        n = sum(1 for _ in group)
        rows = values[start * width : (start + n) * width]
        chunks.append((run_id, n, _packed("q", rows[TS::width]), _packed("d", rows[EQUITY::width]),
                       _packed("d", rows[POSITION::width])))
        start += n
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
        symbols = rows[SYMBOL::width]
        for symbol in dict.fromkeys(symbols):
            if symbols.count(symbol) == n:  # one symbol: whole columns by slicing
                own = rows
            else:  # a portfolio's rows interleave their symbols: this one's rows, in order
                own = [v for i in range(n) if symbols[i] == symbol for v in rows[i * width : (i + 1) * width]]
            chunks.append((run_id, symbol, len(own) // width,
                           *(_packed("q" if BAR_STORED[name] == "<i8" else "d", own[at::width])
                             for name, at in BAR_POSITIONS.items())))
    return chunks
