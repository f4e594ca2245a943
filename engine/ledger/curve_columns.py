"""The equity curve as packed columns: what the ledger writer stores beside each batch of
equity rows (the ``equity_curve`` table; ``LedgerReader.equity_curve`` reads it back).

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
