"""A ledger for one run held in memory, for sweep workers: the session records into it
exactly as into :class:`~engine.ledger.store.Ledger`, its metrics are read back from it
through the same reader calls, and the finished run travels to the process that owns the
real ledger as one serialised batch (with its run row) instead of being written here.

The run id is the one the sweep's driver reserved in the real ledger, so the rows need no
rewriting on the way.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from engine.ledger import curve_columns
from engine.ledger.batch_writer import CURVE_TABLE
from engine.ledger.reader import FILL_NUMBERS, frame_fill_blocks, frame_passes, unpack_curve
from engine.ledger.schema import COLUMNS, TABLES, WIDTHS, database_url
from engine.ledger.store import check_widths, serialise


def written_by_workers(target: str) -> bool:
    """Whether sweep workers write their trials' rows into the ledger themselves: a database
    server (PostgreSQL) takes many writers at once; SQLite keeps one, the sweep's driver."""
    return database_url(target).startswith("postgresql")


class MemoryLedger:
    """Collects one run's rows (flat value lists per table, as the writer takes them)."""

    def __init__(self, target: str, run_id: int) -> None:
        self.target = target  # the real ledger the rows are bound for
        self.run_id = run_id
        self.batch_rows = 0
        self.flush_seconds = 0.0
        self.buffers: dict[str, list] = {name: [] for name in TABLES}
        self.run_fields: dict[str, Any] = {}
        self.final: dict[str, Any] = {}
        self.rows_written = 0
        self._curve: tuple[int, list] = (0, [])  # how many equity values were packed, and the chunks

    def start_run(self, **fields: Any) -> int:
        self.run_fields = {"started_at": time.time(), **fields}
        return self.run_id

    def finish_run(self, run_id: int, status: str, error: str | None = None,
                   summary: dict | None = None, data_end: int | None = None) -> None:
        import json

        self.final = {"status": status, "finished_at": time.time(), "error": error,
                      "summary": None if summary is None else json.dumps(summary)}
        if data_end is not None:
            self.final["data_end"] = data_end

    def add(self, table: str, row: tuple) -> None:
        if len(row) != WIDTHS[table]:
            raise ValueError(f"a {table} row has {WIDTHS[table]} values, not {len(row)}: {row!r}")
        self.buffers[table].extend(row)

    def add_many(self, table: str, rows: list) -> None:
        """Several rows of one table, all or none of them (as :meth:`Ledger.add_many`)."""
        check_widths(table, rows)
        buffer = self.buffers[table]
        for row in rows:
            buffer.extend(row)

    def flush(self, wait: bool = False) -> None:
        """Nothing to hand over until the run is done."""

    def wait_written(self) -> None:
        """Everything is already here."""

    def close(self) -> None:
        self.rows_written = sum(len(v) // WIDTHS[name] for name, v in self.buffers.items())

    def release(self) -> None:
        """Drop the rows and their packed curve once the run has been sent."""
        self.buffers.clear()
        self._curve = (0, [])

    def reader(self) -> MemoryReader:
        return MemoryReader(self)

    def batch(self, keep_bars: bool = True) -> dict[str, list]:
        """The run's rows as one writer batch (tables without rows left out). Without
        ``keep_bars`` the per-bar equity rows travel only as their packed curve (what metrics
        read) and plot points not at all: a sweep's trials share their bars, and writing
        100,000 rows a trial made the one ledger writer the bottleneck of every sweep.
        ``rows_written`` counts what is sent."""
        batch = {name: values for name, values in self.buffers.items() if values}
        if not keep_bars:  # no bars, so nothing to draw plot points over
            batch.pop("plots", None)
        if not keep_bars and "equity" in batch:
            batch.pop("equity")
            batch[CURVE_TABLE] = self.packed_curve()
            self.rows_written = sum(len(v) // WIDTHS[name] for name, v in batch.items()
                                    if name != CURVE_TABLE)
        return batch

    def packed_curve(self) -> list:
        """The equity rows as packed curve chunks, packed once for the metrics and the batch
        alike (again only if rows were added since)."""
        values = self.buffers["equity"]
        if self._curve[0] != len(values) or not self._curve[1]:
            self._curve = (len(values), curve_columns.pack(values, WIDTHS["equity"]))
        return self._curve[1]

    def payload(self, keep_bars: bool = True) -> bytes:
        """:meth:`batch` as the writer's batch bytes, for the driver to write."""
        return serialise(self.batch(keep_bars))


class MemoryReader:
    """The :class:`~engine.ledger.reader.LedgerReader` calls that metrics make, answered
    from a :class:`MemoryLedger` with the frames the database would give back."""

    def __init__(self, ledger: MemoryLedger) -> None:
        self.ledger = ledger

    def close(self) -> None:
        """Nothing to release."""

    def run(self, run_id: int | None = None) -> dict[str, Any]:
        return {"id": self.ledger.run_id, "resumed_from": None, **self.ledger.run_fields, **self.ledger.final}

    def chain(self, run_id: int) -> list[int]:
        return [self.ledger.run_id]

    def _rows(self, name: str) -> pd.DataFrame:
        values = self.ledger.buffers[name]
        width = WIDTHS[name]
        return pd.DataFrame.from_records([tuple(values[i : i + width]) for i in range(0, len(values), width)],
                                         columns=COLUMNS[name], coerce_float=False)

    def table(self, name: str, run_ids: list[int], order: str, columns: str = "*") -> pd.DataFrame:
        frame = self._rows(name)
        frame.insert(0, "id", np.arange(1, len(frame) + 1))
        keys = [k.strip() for k in order.split(",")]
        frame = frame.sort_values(keys, kind="stable").reset_index(drop=True)
        if columns.strip() != "*":
            frame = frame[[c.strip() for c in columns.split(",")]]
        return frame

    def equity_curve(self, run_ids: list[int]) -> pd.DataFrame:
        return unpack_curve(chunk[1:5] for chunk in self.ledger.packed_curve())

    def curve_passes(self, run_ids: list[int]):
        """:meth:`LedgerReader.curve_passes` of the rows held in memory (one chunk)."""
        return frame_passes(self.equity_curve(run_ids))

    def exposure(self, run_ids: list[int]) -> pd.DataFrame:
        """:meth:`LedgerReader.exposure` of the rows held in memory."""
        values, width, names = self.ledger.buffers["equity"], WIDTHS["equity"], COLUMNS["equity"]
        # three columns sliced from the flat rows (in the order written, as ``id`` orders them):
        # a frame of every column built row by row took a fifth of a sweep trial
        rows = pd.DataFrame({name: values[names.index(name)::width]
                             for name in ("symbol", "position", "mark_price")})
        groups = rows.groupby("symbol", sort=False)
        return pd.DataFrame({"exposure": groups["position"].agg(lambda p: float((p != 0).mean())),
                             "last_mark": groups["mark_price"].last()})

    def fills(self, run_ids: list[int], columns: str = "*") -> pd.DataFrame:
        return self.table("fills", run_ids, "ts_event, id", columns)

    def fill_blocks(self, run_ids: list[int]) -> tuple[list[Any], list[int], list[dict[str, np.ndarray]]]:
        """:meth:`LedgerReader.fill_blocks` of the rows held in memory (one block)."""
        names = ", ".join(["symbol", *(name for name, _ in FILL_NUMBERS)])
        return frame_fill_blocks(self.fills(run_ids, names))

    def funding(self, run_ids: list[int], columns: str = "*") -> pd.DataFrame:
        return self.table("funding", run_ids, "ts_event, id", columns)
