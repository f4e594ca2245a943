"""The writer's side of the ledger: batches of rows written into one database, each batch in
one transaction (the ledger's writer process runs one; a sweep's trial runs one per target)."""

from __future__ import annotations

import logging
import threading

import sqlalchemy as sa
from sqlalchemy import event

from engine.ledger import curve_columns
from engine.ledger.schema import (
    BAR_CHUNK_COLUMNS,
    COLUMNS,
    CURVE_COLUMNS,
    PACKED,
    PLOT_CHUNK_COLUMNS,
    TABLES,
    WIDTHS,
    BarColumnsChunk,
    EquityCurveChunk,
    PlotColumnsChunk,
    _no_autocheckpoint,
    _sqlite_pragmas,
)

log = logging.getLogger(__name__)

# a batch key whose values are packed equity-curve chunks, not flat rows (MemoryLedger.payload)
CURVE_TABLE = EquityCurveChunk.__tablename__


class BatchWriter:
    """Writes batches of rows into one database, each batch in one transaction.

    On SQLite a thread copies the WAL into the database file after each batch (a passive
    checkpoint, which SQLite runs beside the next batch's inserts with the GIL released):
    about 10% more rows per second than checkpointing inline, and the WAL stays small.
    """

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url)
        self._checkpoint_due = threading.Event()
        self._closing = False
        self._checkpointer: threading.Thread | None = None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "connect", _no_autocheckpoint)
            self._checkpointer = threading.Thread(target=self._checkpoint, name="ledger-checkpoint",
                                                  daemon=True)
            self._checkpointer.start()
        self.statements = {name: _compile(self.engine, name) for name in TABLES}
        self.copy = self.engine.dialect.driver == "psycopg"  # PostgreSQL: COPY, not INSERTs
        self.curve_insert = (*_compile_one(self.engine, EquityCurveChunk.__table__, CURVE_COLUMNS),
                             CURVE_COLUMNS)
        self.bars_insert = (*_compile_one(self.engine, BarColumnsChunk.__table__, BAR_CHUNK_COLUMNS),
                            BAR_CHUNK_COLUMNS)
        self.plots_insert = (*_compile_one(self.engine, PlotColumnsChunk.__table__, PLOT_CHUNK_COLUMNS),
                             PLOT_CHUNK_COLUMNS)

    def write(self, batch: dict[str, list]) -> None:
        """One batch in one transaction."""
        raw = self.engine.raw_connection()
        try:
            self._write_rows(raw.cursor(), batch)
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
        finally:
            raw.close()
        self._checkpoint_due.set()

    def write_run(self, run_id: int, batch: dict[str, list]) -> None:
        """One run's whole batch in one transaction that first deletes whatever rows the run
        has: a sweep trial run again after its worker died mid-way is not written twice."""
        with self.engine.begin() as conn:
            for table in (*TABLES.values(), *PACKED):
                conn.execute(sa.delete(table).where(table.c.run_id == run_id))
            self._write_rows(conn.connection.cursor(), batch)
        self._checkpoint_due.set()

    def _write_rows(self, cursor, batch: dict[str, list]) -> None:
        """Straight through the database driver's ``executemany`` (``COPY`` on PostgreSQL).
        Each table's rows come as one flat list of values (``WIDTHS[table]`` a row); where the
        driver takes positional parameters, a slice of ``ROWS_PER_INSERT`` rows is one
        statement's parameters."""
        for name, values in batch.items():
            if name == CURVE_TABLE:  # chunks packed where the run ran (a sweep trial's curve)
                self._insert(cursor, self.curve_insert, values)
                continue
            width = WIDTHS[name]
            if len(values) % width:
                raise ValueError(f"{name}: {len(values)} values are not whole rows of {width}")
            if self.copy:
                _copy_rows(cursor, name, values, width)
                continue
            one, many, positional = self.statements[name]
            if not positional:
                keys = COLUMNS[name]
                cursor.executemany(one, [dict(zip(keys, values[i : i + width], strict=True))
                                         for i in range(0, len(values), width)])
                continue
            step = width * ROWS_PER_INSERT
            whole = len(values) - len(values) % step
            if whole:
                cursor.executemany(many, (values[i : i + step] for i in range(0, whole, step)))
            if whole < len(values):
                cursor.executemany(one, (values[i : i + width] for i in range(whole, len(values), width)))
        if batch.get("equity"):  # the equity curve and the bars packed beside their rows
            self._insert(cursor, self.curve_insert, curve_columns.pack(batch["equity"], WIDTHS["equity"]))
            self._insert(cursor, self.bars_insert, curve_columns.pack_bars(batch["equity"], WIDTHS["equity"]))
        if batch.get("plots"):
            self._insert(cursor, self.plots_insert, curve_columns.pack_plots(batch["plots"], WIDTHS["plots"]))

    def _insert(self, cursor, insert: tuple[str, bool, list[str]], chunks: list) -> None:
        statement, positional, columns = insert
        cursor.executemany(statement, chunks if positional else
                           [dict(zip(columns, chunk, strict=True)) for chunk in chunks])

    def close(self) -> None:
        """Finish the last checkpoint and release the database."""
        if self._checkpointer is not None:
            self._closing = True
            self._checkpoint_due.set()
            self._checkpointer.join()
        self.engine.dispose()

    def _checkpoint(self) -> None:
        with self.engine.connect() as conn:
            while not self._closing:
                self._checkpoint_due.wait()
                self._checkpoint_due.clear()
                try:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
                except sa.exc.DBAPIError as exc:  # a later checkpoint copies what this one missed
                    log.warning("ledger checkpoint failed: %s", exc)


def _copy_rows(cursor, name: str, values: list, width: int) -> None:
    """A table's rows through PostgreSQL's COPY (psycopg), several times faster than INSERTs."""
    columns = ", ".join(f'"{c}"' for c in COLUMNS[name])
    with cursor.copy(f'COPY "{name}" ({columns}) FROM STDIN') as copy:
        for i in range(0, len(values), width):
            copy.write_row(values[i : i + width])


# Rows per INSERT statement: SQLite steps one statement of 50 rows about 1.5x faster than
# 50 statements of one row. 50 x 17 columns stays under SQLite's oldest limit of 999 parameters.
ROWS_PER_INSERT = 50


def _compile_one(engine: sa.Engine, table: sa.Table, columns: list[str]) -> tuple[str, bool]:
    """The table's one-row INSERT of ``columns``, and whether its parameters are positional."""
    compiled = table.insert().compile(dialect=engine.dialect, column_keys=columns)
    return str(compiled), bool(compiled.positional)


def _compile(engine: sa.Engine, name: str) -> tuple[str, str, bool]:
    """The table's one-row INSERT, its ``ROWS_PER_INSERT``-row form, and whether the
    driver's parameters are positional (only then is the many-row form used)."""
    one, positional = _compile_one(engine, TABLES[name], COLUMNS[name])
    head, values = one.split(" VALUES ")
    return one, f"{head} VALUES {', '.join([values] * ROWS_PER_INSERT)}", positional
