"""The ledger's writing side: rows are buffered in memory and written by a writer process,
one transaction per batch, so the event loop never waits on disk and a crash (even
``kill -9``) loses at most the open batch: a fill is never half-written, and a run that did
not finish keeps ``status = 'running'`` (shown as ``interrupted`` once its process is gone).
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
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from engine.ledger.liveness import HEARTBEAT_S, refuse_continued
from engine.ledger.schema import (
    TABLES,
    WIDTHS,
    Run,
    code_version,
    database_url,
    open_engine,
)

log = logging.getLogger(__name__)

SYNC, STOP = b"sync", b"stop"


class Ledger:
    """Buffers one run's rows and hands them, a batch at a time, to a writer process.

    The SQLite work (binding every value of every row) then runs on another core instead of
    competing with the event loop for Python's GIL; the loop only serialises each batch. A
    writer that fails reports it on the next ``flush(wait=True)``.
    """

    def __init__(self, target: str | Path, batch_rows: int = 50_000,
                 flush_seconds: float | None = 1.0) -> None:
        self.target = str(target)
        self.engine = open_engine(target)
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self._buffers: dict[str, list] = {name: [] for name in TABLES}  # flat: a row's values in turn
        self._buffered = 0
        self._last_flush = time.monotonic()
        # Its own process group: a Ctrl-C in the terminal reaches the whole foreground group, and
        # the run, not the writer, decides what an interrupt means; the writer ends when its stdin
        # closes, with everything handed over written.
        self._writer = subprocess.Popen(
            [sys.executable, "-m", "engine.ledger.writer_process", database_url(target)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_child_env(), process_group=0,
        )
        # A feeder thread moves serialised batches into the pipe (the GIL is released while it
        # writes), so the event loop never waits for the writer to finish the batch before.
        self._outbox: queue.Queue[bytes] = queue.Queue(maxsize=4)
        self._feed_error: OSError | None = None
        self._feeder = threading.Thread(target=self._feed, name="ledger-feeder", daemon=True)
        self._feeder.start()
        self.rows_written = 0
        self._beating: set[int] = set()  # runs started here and not finished: their heartbeat
        self._heart_stop = threading.Event()
        self._heart = threading.Thread(target=self._heartbeat, name="ledger-heartbeat", daemon=True)
        self._heart.start()

    # -- runs ------------------------------------------------------------------------------

    def start_run(self, **fields: Any) -> int:
        """Insert a run row (status ``running``, heartbeat now) and return its id; its
        heartbeat is renewed every ``HEARTBEAT_S`` until :meth:`finish_run`. A run that
        continues another (``resumed_from``) takes that run's one resume lease, or is refused
        (:class:`ResumeRefused`) when another run already continues it."""
        now = time.time()
        values = {"status": "running", "started_at": now, "heartbeat_at": now, "host": socket.gethostname(),
                  "pid": os.getpid(), "code_version": code_version(), **fields}
        resumed = values.get("resumed_from")
        try:
            with self.engine.begin() as conn:
                if resumed is not None:
                    refuse_continued(conn, int(resumed))
                run_id = int(conn.execute(sa.insert(Run).values(**values)).inserted_primary_key[0])
        except sa.exc.IntegrityError:  # another resumer inserted its run first
            with self.engine.connect() as conn:
                refuse_continued(conn, int(resumed))
            raise
        self._beating.add(run_id)
        return run_id

    def finish_run(self, run_id: int, status: str, error: str | None = None,
                   summary: dict | None = None, data_end: int | None = None) -> None:
        """Flush everything, then mark the run ``finished``, ``stopped``, ``failed`` or
        ``interrupted`` (a live run also records where its data ended)."""
        self.flush(wait=True)
        self._beating.discard(run_id)
        values = {"status": status, "finished_at": time.time(), "heartbeat_at": time.time(), "error": error,
                  "summary": None if summary is None else json.dumps(summary)}
        if data_end is not None:
            values["data_end"] = data_end
        with self.engine.begin() as conn:
            conn.execute(sa.update(Run).where(Run.id == run_id).values(**values))

    # -- rows ------------------------------------------------------------------------------

    def add(self, table: str, row: tuple) -> None:
        """Buffer one row (values in ``COLUMNS[table]`` order); flushes when due: every
        ``batch_rows`` rows, and with ``flush_seconds`` also when that long has passed. A
        replay passes None, so its batches (and the equity-curve chunks cut with them) fall
        at the same rows however busy the machine is."""
        if len(row) != WIDTHS[table]:
            raise ValueError(f"a {table} row has {WIDTHS[table]} values, not {len(row)}: {row!r}")
        self._buffers[table].extend(row)
        buffered = self._buffered = self._buffered + 1
        if buffered >= self.batch_rows or (
            not buffered & 63 and self.flush_seconds is not None
            and time.monotonic() - self._last_flush >= self.flush_seconds
        ):
            self.flush()

    def add_many(self, table: str, rows: list) -> None:
        """Buffer several rows of one table (a portfolio's close time) as :meth:`add` does, all
        or none of them, in one batch: a flush, when due, comes after the last of them."""
        check_widths(table, rows)
        buffer = self._buffers[table]
        for row in rows:
            buffer.extend(row)
        before = self._buffered
        buffered = self._buffered = before + len(rows)
        if buffered >= self.batch_rows or (
            buffered >> 6 != before >> 6 and self.flush_seconds is not None
            and time.monotonic() - self._last_flush >= self.flush_seconds
        ):
            self.flush()

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

    def send_serialised(self, payload: bytes, rows: int) -> None:
        """Give the writer a batch already serialised elsewhere (a sweep worker's run)."""
        self._frame(payload)
        self.rows_written += rows

    def reader(self):
        """A reader on this ledger (the caller closes it)."""
        from engine.ledger.reader import LedgerReader

        return LedgerReader(self.target)

    def _heartbeat(self) -> None:
        """Renew the heartbeat of this process's running runs every ``HEARTBEAT_S`` (a
        thread: a backtest's pump never yields to a timer). A failed renewal is retried at
        the next beat; only a heartbeat missing for ``STALE_S`` marks a run interrupted."""
        while not self._heart_stop.wait(HEARTBEAT_S):
            beating = list(self._beating)
            if not beating:
                continue
            try:
                with self.engine.begin() as conn:
                    conn.execute(sa.update(Run).where(Run.id.in_(beating), Run.status == "running")
                                 .values(heartbeat_at=time.time()))
            except sa.exc.DBAPIError as exc:
                log.warning("ledger heartbeat not written: %s", str(exc).splitlines()[0])

    def close(self) -> None:
        """Flush, stop the writer and release the database."""
        self._heart_stop.set()
        self._heart.join()
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
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def check_widths(table: str, rows: list) -> None:
    """Refuse rows of ``table`` before any is buffered if one has the wrong width: rows travel
    as one flat list, so a short row would shift every later value into the wrong column."""
    width = WIDTHS[table]
    for row in rows:
        if len(row) != width:
            raise ValueError(f"a {table} row has {width} values, not {len(row)}: {row!r}")


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
