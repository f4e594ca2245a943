"""The ledger: an append-only record of runs on SQLAlchemy 2 (SQLite in WAL mode by default,
any SQLAlchemy URL accepted).

Tables: runs, orders, order_updates, fills, funding, equity (one snapshot per bar, with the
bar; the ``bars`` view shows just the bars; ``equity_curve`` packs their ts, equity and
position per batch for fast reads), strategy_state, predictions and feed_gaps. Rows
are buffered in memory and written by a writer process, one transaction per batch, so
the event loop never waits on disk and a
crash (even ``kill -9``) loses at most the open batch: a fill is never half-written, and a
run that did not finish keeps ``status = 'running'`` (shown as ``interrupted`` once its
process is gone).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from engine import curve_columns

log = logging.getLogger(__name__)


class Base(DeclarativeBase):
    pass


class Run(Base):
    """One backtest or live session: what ran, on what, and how it ended."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    strategy: Mapped[str] = mapped_column(String(200))
    params: Mapped[str] = mapped_column(Text)
    symbol: Mapped[str] = mapped_column(String(40))
    category: Mapped[str] = mapped_column(String(16))
    interval: Mapped[str] = mapped_column(String(32))
    data_start: Mapped[int] = mapped_column(BigInteger)
    data_end: Mapped[int] = mapped_column(BigInteger)
    data_files: Mapped[str] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(Integer)
    initial_cash: Mapped[float] = mapped_column(Float)
    config: Mapped[str] = mapped_column(Text)
    code_version: Mapped[str] = mapped_column(String(80))
    started_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    resumed_from: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    summary: Mapped[str | None] = mapped_column(Text, nullable=True)


def _run_fk(index: bool = True) -> Mapped[int]:
    """The run a row belongs to; ``index=False`` where a (run_id, ts) index covers it."""
    return mapped_column(ForeignKey("runs.id"), index=index)


class OrderRow(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = _run_fk()
    client_order_id: Mapped[str] = mapped_column(String(80))
    strategy_id: Mapped[str] = mapped_column(String(80))
    symbol: Mapped[str] = mapped_column(String(40))
    side: Mapped[int] = mapped_column(Integer)
    # NULL when the request's qty was NaN (SQLite stores NaN as NULL); such orders are
    # rejected, but their request is still recorded.
    qty: Mapped[float | None] = mapped_column(Float, nullable=True)
    order_type: Mapped[str] = mapped_column(String(16))
    price: Mapped[float | None] = mapped_column(Float, nullable=True)
    trigger_price: Mapped[float | None] = mapped_column(Float, nullable=True)
    time_in_force: Mapped[str] = mapped_column(String(16))
    reduce_only: Mapped[int] = mapped_column(Integer)
    ts_event: Mapped[int] = mapped_column(BigInteger)
    ts_init: Mapped[int] = mapped_column(BigInteger)


class OrderUpdateRow(Base):
    __tablename__ = "order_updates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = _run_fk()
    client_order_id: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text)
    ts_event: Mapped[int] = mapped_column(BigInteger)
    ts_init: Mapped[int] = mapped_column(BigInteger)


class FillRow(Base):
    """A fill with the position, realized PnL, cash and equity right after it."""

    __tablename__ = "fills"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = _run_fk(index=False)  # ix_*_run_ts covers run_id
    client_order_id: Mapped[str] = mapped_column(String(80))
    strategy_id: Mapped[str] = mapped_column(String(80))
    symbol: Mapped[str] = mapped_column(String(40))
    side: Mapped[int] = mapped_column(Integer)
    price: Mapped[float] = mapped_column(Float)
    qty: Mapped[float] = mapped_column(Float)
    fee: Mapped[float] = mapped_column(Float)
    liquidity: Mapped[str] = mapped_column(String(8))
    realized_pnl: Mapped[float] = mapped_column(Float)
    position: Mapped[float] = mapped_column(Float)
    avg_price: Mapped[float] = mapped_column(Float)
    cash: Mapped[float] = mapped_column(Float)
    equity: Mapped[float] = mapped_column(Float)
    ts_event: Mapped[int] = mapped_column(BigInteger)
    ts_init: Mapped[int] = mapped_column(BigInteger)


class FundingRow(Base):
    __tablename__ = "funding"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = _run_fk()
    symbol: Mapped[str] = mapped_column(String(40))
    rate: Mapped[float] = mapped_column(Float)
    mark_price: Mapped[float] = mapped_column(Float)
    position: Mapped[float] = mapped_column(Float)
    payment: Mapped[float] = mapped_column(Float)
    ts_event: Mapped[int] = mapped_column(BigInteger)


class EquityRow(Base):
    """One row per closed bar: the account at the bar's close (the basis of every return
    metric) and the bar itself. One row instead of two halves the ledger's write cost; the
    ``bars`` view shows the bar columns as a table of their own."""

    __tablename__ = "equity"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = _run_fk(index=False)  # ix_*_run_ts covers run_id
    ts: Mapped[int] = mapped_column(BigInteger)
    cash: Mapped[float] = mapped_column(Float)
    equity: Mapped[float] = mapped_column(Float)
    position: Mapped[float] = mapped_column(Float)
    mark_price: Mapped[float] = mapped_column(Float)
    margin_used: Mapped[float] = mapped_column(Float)
    symbol: Mapped[str] = mapped_column(String(40))
    interval: Mapped[str] = mapped_column(String(32))
    open_time: Mapped[int] = mapped_column(BigInteger)
    open: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)
    low: Mapped[float] = mapped_column(Float)
    close: Mapped[float] = mapped_column(Float)
    volume: Mapped[float] = mapped_column(Float)
    turnover: Mapped[float] = mapped_column(Float)
    trades: Mapped[int] = mapped_column(Integer)


class EquityCurveChunk(Base):
    """The ``ts``, ``equity`` and ``position`` of one batch's equity rows as packed columns
    (engine/curve_columns.py), written by the writer in the same transaction as the rows.
    The rows are the record; this copy lets metrics read a million-bar curve in
    milliseconds instead of making a Python tuple per row."""

    __tablename__ = "equity_curve"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = _run_fk()
    n: Mapped[int] = mapped_column(Integer)
    ts: Mapped[bytes] = mapped_column(LargeBinary)
    equity: Mapped[bytes] = mapped_column(LargeBinary)
    position: Mapped[bytes] = mapped_column(LargeBinary)


BARS_VIEW = ("CREATE VIEW IF NOT EXISTS bars AS SELECT id, run_id, symbol, interval, open_time, open, "
             "high, low, close, volume, turnover, trades FROM equity")


class StrategyStateRow(Base):
    __tablename__ = "strategy_state"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = _run_fk()
    strategy_id: Mapped[str] = mapped_column(String(80))
    ts: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(Text)


class PredictionRow(Base):
    """A model forecast: ``ts_event`` is the close of the bar it is for, ``ts_init`` when it
    was ready to act on, and ``latency_ns`` the difference: the bar's close delay
    (``[bars] close_delay_ms``, on bars made from trades) and, live, the wait for a free
    model and the forward pass; in a backtest, the inference latency charged, if any."""

    __tablename__ = "predictions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = _run_fk()
    strategy_id: Mapped[str] = mapped_column(String(80))
    ts_event: Mapped[int] = mapped_column(BigInteger)
    ts_init: Mapped[int] = mapped_column(BigInteger)
    latency_ns: Mapped[int] = mapped_column(BigInteger)
    dropped: Mapped[int] = mapped_column(Integer)
    values: Mapped[str] = mapped_column(Text)


class FeedGapRow(Base):
    __tablename__ = "feed_gaps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = _run_fk()
    symbol: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16))
    gap_from: Mapped[int] = mapped_column(BigInteger)
    gap_to: Mapped[int] = mapped_column(BigInteger)
    detail: Mapped[str] = mapped_column(Text)
    ts: Mapped[int] = mapped_column(BigInteger)


# covers the metrics' read of a run's equity curve: an index-only scan, no row lookups
Index("ix_equity_run_ts", EquityRow.run_id, EquityRow.ts, EquityRow.equity, EquityRow.position)
Index("ix_fills_run_ts", FillRow.run_id, FillRow.ts_event)

TABLES = {cls.__tablename__: cls.__table__ for cls in
          (OrderRow, OrderUpdateRow, FillRow, FundingRow, EquityRow,
           StrategyStateRow, PredictionRow, FeedGapRow)}
# The columns each buffered row fills, in order (everything but the autoincrement id).
COLUMNS = {name: [c.name for c in table.columns if c.name != "id"] for name, table in TABLES.items()}
WIDTHS = {name: len(columns) for name, columns in COLUMNS.items()}
CURVE_COLUMNS = [c.name for c in EquityCurveChunk.__table__.columns if c.name != "id"]


def database_url(target: str | Path) -> str:
    """A SQLAlchemy URL for ``target``: URLs pass through, paths become SQLite files."""
    text = str(target)
    return text if "://" in text else f"sqlite:///{Path(text).expanduser()}"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA page_size=16384")  # a new file only: ~20% faster bulk inserts
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _no_autocheckpoint(dbapi_conn, _record) -> None:
    """The writer leaves checkpoints to its checkpoint thread instead of doing them inline."""
    dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")


def open_engine(target: str | Path) -> sa.Engine:
    """An engine on the ledger with the schema created; SQLite gets WAL and NORMAL sync."""
    url = database_url(target)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text(BARS_VIEW))
    return engine


def code_version() -> str:
    """The package version plus the git commit when run from a checkout."""
    from engine import __version__

    head = Path(__file__).resolve().parent.parent / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            ref = (head.parent / ref.removeprefix("ref: ")).read_text().strip()
        return f"{__version__}+{ref[:12]}"
    except OSError:
        return __version__


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
        self.curve_insert = _compile_one(self.engine, EquityCurveChunk.__table__, CURVE_COLUMNS)

    def write(self, batch: dict[str, list]) -> None:
        """One transaction, straight through the database driver's ``executemany``. Each
        table's rows come as one flat list of values (``WIDTHS[table]`` a row); where the
        driver takes positional parameters, a slice of ``ROWS_PER_INSERT`` rows is one
        statement's parameters."""
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            for name, values in batch.items():
                width = WIDTHS[name]
                if len(values) % width:
                    raise ValueError(f"{name}: {len(values)} values are not whole rows of {width}")
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
            if batch.get("equity"):
                self._write_curve(cursor, batch["equity"])
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
        finally:
            raw.close()
        self._checkpoint_due.set()

    def _write_curve(self, cursor, values: list) -> None:
        statement, positional = self.curve_insert
        chunks = curve_columns.pack(values, WIDTHS["equity"])
        cursor.executemany(statement, chunks if positional else
                           [dict(zip(CURVE_COLUMNS, chunk, strict=True)) for chunk in chunks])

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


SYNC, STOP = b"sync", b"stop"


class Ledger:
    """Buffers one run's rows and hands them, a batch at a time, to a writer process.

    The SQLite work (binding every value of every row) then runs on another core instead of
    competing with the event loop for Python's GIL; the loop only serialises each batch. A
    writer that fails reports it on the next ``flush(wait=True)``.
    """

    def __init__(self, target: str | Path, batch_rows: int = 50_000, flush_seconds: float = 1.0) -> None:
        self.target = str(target)
        self.engine = open_engine(target)
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self._buffers: dict[str, list] = {name: [] for name in TABLES}  # flat: a row's values in turn
        self._buffered = 0
        self._last_flush = time.monotonic()
        self._writer = subprocess.Popen(
            [sys.executable, "-m", "engine.ledger_writer", database_url(target)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_child_env(),
        )
        # A feeder thread moves serialised batches into the pipe (the GIL is released while it
        # writes), so the event loop never waits for the writer to finish the batch before.
        self._outbox: queue.Queue[bytes] = queue.Queue(maxsize=4)
        self._feed_error: OSError | None = None
        self._feeder = threading.Thread(target=self._feed, name="ledger-feeder", daemon=True)
        self._feeder.start()
        self.rows_written = 0

    # -- runs ------------------------------------------------------------------------------

    def start_run(self, **fields: Any) -> int:
        """Insert a run row (status ``running``) and return its id."""
        values = {"status": "running", "started_at": time.time(), "host": socket.gethostname(),
                  "pid": os.getpid(), "code_version": code_version(), **fields}
        with self.engine.begin() as conn:
            return int(conn.execute(sa.insert(Run).values(**values)).inserted_primary_key[0])

    def finish_run(self, run_id: int, status: str, error: str | None = None,
                   summary: dict | None = None, data_end: int | None = None) -> None:
        """Flush everything, then mark the run ``finished``, ``stopped``, ``failed`` or
        ``interrupted`` (a live run also records where its data ended)."""
        self.flush(wait=True)
        values = {"status": status, "finished_at": time.time(), "error": error,
                  "summary": None if summary is None else json.dumps(summary)}
        if data_end is not None:
            values["data_end"] = data_end
        with self.engine.begin() as conn:
            conn.execute(sa.update(Run).where(Run.id == run_id).values(**values))

    # -- rows ------------------------------------------------------------------------------

    def add(self, table: str, row: tuple) -> None:
        """Buffer one row (values in ``COLUMNS[table]`` order); flushes when due."""
        if len(row) != WIDTHS[table]:
            raise ValueError(f"a {table} row has {WIDTHS[table]} values, not {len(row)}: {row!r}")
        self._buffers[table].extend(row)
        buffered = self._buffered = self._buffered + 1
        if buffered >= self.batch_rows or (
            not buffered & 63 and time.monotonic() - self._last_flush >= self.flush_seconds
        ):
            self.flush()

    def add_many(self, table: str, rows: Iterable[tuple]) -> None:
        for row in rows:
            self.add(table, row)

    def flush(self, wait: bool = False) -> None:
        """Hand the buffered rows to the writer as one transaction; ``wait`` blocks until
        everything handed over is on disk."""
        if self._buffered:
            batch = {name: values for name, values in self._buffers.items() if values}
            self._buffers = {name: [] for name in TABLES}
            self._buffered = 0
            self.send(batch)
        self._last_flush = time.monotonic()
        if wait:
            self.wait_written()

    def wait_written(self) -> None:
        """Block until every batch handed to the writer is on disk (rows still buffered stay
        buffered); raise if a write failed."""
        self._ask(SYNC)

    def send(self, batch: dict[str, list]) -> None:
        """Give the writer one batch (one transaction): each table's rows as one flat list."""
        self._frame(serialise(batch))
        self.rows_written += sum(len(values) // WIDTHS[name] for name, values in batch.items())

    def close(self) -> None:
        """Flush, stop the writer and release the database."""
        self.flush()
        self._ask(STOP)
        self._writer.wait(timeout=60)
        self.engine.dispose()

    def _frame(self, payload: bytes) -> None:
        if self._feed_error is not None:
            raise RuntimeError(f"ledger write failed: the writer process is gone ({self._feed_error})")
        self._outbox.put(payload)

    def _feed(self) -> None:
        while True:
            payload = self._outbox.get()
            try:
                if self._feed_error is None:
                    write_frame(self._writer.stdin, payload)
            except OSError as exc:
                self._feed_error = exc
            finally:
                self._outbox.task_done()

    def _ask(self, command: bytes) -> None:
        self._frame(command)
        self._outbox.join()
        if self._feed_error is not None:
            raise RuntimeError(f"ledger write failed: the writer process is gone ({self._feed_error})")
        try:
            error = read_frame(self._writer.stdout).decode()
        except EOFError:
            raise RuntimeError("ledger write failed: the writer process is gone") from None
        if error:
            raise RuntimeError(f"ledger write failed: {error}")


def _child_env() -> dict[str, str]:
    """The environment for the writer, with this package importable even uninstalled."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def serialise(batch: dict[str, list]) -> bytes:
    """A batch as pickle bytes. Its lists are flat, so the memo holds only strings, and a
    symbol repeated on every row is sent, and rebuilt by the writer, once a batch. (Pickle,
    not marshal: marshal would turn a stray numpy scalar into raw bytes, silently.)"""
    return pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)


def write_frame(stream, payload: bytes) -> None:
    """A length-prefixed message on a pipe."""
    stream.write(len(payload).to_bytes(8, "big"))
    stream.write(payload)
    stream.flush()


def read_frame(stream) -> bytes:
    """The next length-prefixed message; EOFError when the pipe is closed."""
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError
    payload = stream.read(int.from_bytes(head, "big"))
    if len(payload) < int.from_bytes(head, "big"):
        raise EOFError
    return payload
