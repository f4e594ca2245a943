"""Reading a ledger back: runs, and one run's equity, fills, bars and other rows as pandas
frames (SQL straight into pandas, through the database driver for speed)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from engine.core.errors import UserError
from engine.ledger import curve_columns
from engine.ledger.liveness import effective_status
from engine.ledger.schema import Run, open_engine

CurveChunk = tuple[np.ndarray, np.ndarray, np.ndarray]  # ts, equity, position != 0


class LedgerQueryError(UserError, LookupError):
    """A ledger or run that is not there."""


class LedgerReader:
    """Read-only access to the runs in one ledger."""

    def __init__(self, target: str | Path) -> None:
        if "://" not in str(target) and not Path(target).is_file():
            raise LedgerQueryError(f"no ledger at {target}")
        self.target = str(target)
        self.engine = open_engine(target)

    def close(self) -> None:
        self.engine.dispose()

    def frame(self, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
        with self.engine.connect() as conn:
            result = conn.execute(sa.text(sql), params or {})
            # plain tuples: pandas probes SQLAlchemy Row objects attribute by attribute, which
            # made a million-row frame take seconds; SQLite's rows come straight off its cursor
            if conn.dialect.name == "sqlite" and result.cursor is not None:
                rows = result.cursor.fetchall()
            else:
                rows = [tuple(row) for row in result]
            return pd.DataFrame.from_records(rows, columns=list(result.keys()), coerce_float=False)

    def numeric(self, sql: str, dtype: list[tuple[str, str]],
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        """A query of numeric columns straight into a numpy structured array, row by row off
        the cursor: several times faster than a generic frame, and no list of a million
        tuples in memory."""
        with self.engine.connect() as conn:
            result = conn.execute(sa.text(sql), params or {})
            rows = result.cursor if result.cursor is not None else (tuple(r) for r in result)
            return pd.DataFrame(np.fromiter(rows, dtype=dtype))

    def runs(self) -> pd.DataFrame:
        """Every run, newest first, with ``status`` showing ``interrupted`` for a run whose
        process on this host is gone."""
        runs = self.frame(
            "SELECT id, kind, status, strategy, symbol, interval, data_start, data_end, "
            "started_at, finished_at, host, pid, resumed_from, summary, heartbeat_at FROM runs "
            "ORDER BY id DESC"
        )
        if not runs.empty:
            runs["status"] = [effective_status(s, h, p, None if pd.isna(b) else b) for s, h, p, b in
                              zip(runs.status, runs.host, runs.pid, runs.heartbeat_at, strict=True)]
        return runs

    def run(self, run_id: int | None = None) -> dict[str, Any]:
        """One run's row as a dict (the newest run when ``run_id`` is None)."""
        row = None
        with self.engine.connect() as conn:
            query = sa.select(Run)
            query = query.where(Run.id == run_id) if run_id is not None else query.order_by(Run.id.desc())
            if run_id is None or -2**63 <= run_id < 2**63:  # beyond 64 bits no row has it
                row = conn.execute(query.limit(1)).mappings().first()
        if row is None:
            what = f"run {run_id}" if run_id is not None else "any run"
            raise LedgerQueryError(f"{self.target} has no {what}")
        run = dict(row)
        run["status"] = effective_status(run["status"], run["host"], run["pid"], run["heartbeat_at"])
        return run

    def chain(self, run_id: int) -> list[int]:
        """The run and the runs it resumed, oldest first (a resumed live session is one
        account history across several runs)."""
        ids = []
        current: int | None = run_id
        while current is not None:
            ids.append(current)
            current = self.run(current)["resumed_from"]
        return ids[::-1]

    def table(self, name: str, run_ids: list[int], order: str, columns: str = "*") -> pd.DataFrame:
        marks = ", ".join(str(int(i)) for i in run_ids)
        return self.frame(f"SELECT {columns} FROM {name} WHERE run_id IN ({marks}) ORDER BY {order}")

    def equity(self, run_ids: list[int], columns: str = "*") -> pd.DataFrame:
        return self.table("equity", run_ids, "ts, id", columns)

    def equity_curve(self, run_ids: list[int]) -> pd.DataFrame:
        """``ts``, ``equity`` and ``position`` of the snapshots in time order (for metrics;
        one a close time, or one a symbol's bar where the curve is read from the rows):
        from the packed ``equity_curve`` columns when they stand for exactly as many rows as the
        equity table, which is always unless rows were added or removed by hand (or the
        ledger predates that table), or when the run has no equity rows at all (a sweep
        trial keeps only its packed curve); else from the rows themselves."""
        marks = ", ".join(str(int(i)) for i in run_ids)
        runs = f"WHERE run_id IN ({marks})"
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT count(*) FROM equity {runs}")).scalar_one()
            chunks, points, stands_for = conn.execute(sa.text(
                f"SELECT count(*), coalesce(sum(n), 0), coalesce(sum(coalesce(bar_rows, n)), 0) "
                f"FROM equity_curve {runs}")).one()
            if stands_for == rows or (rows == 0 and chunks):
                # a chunk at a time off the cursor into columns of the curve's size: the
                # blobs of every chunk and their join were twice the curve at once
                packed = conn.execute(sa.text(f"SELECT n, ts, equity, position FROM equity_curve {runs} "
                                              "ORDER BY id"))
                columns = _unpack_into(packed, curve_columns.STORED, points)
                if columns is not None:
                    return sorted_curve(pd.DataFrame(columns, copy=False))
        return self.numeric(f"SELECT ts, equity, position FROM equity WHERE run_id IN ({marks}) "
                            "ORDER BY ts", [("ts", "i8"), ("equity", "f8"), ("position", "f8")])

    def curve_passes(self, run_ids: list[int]) -> Callable[[], Iterator[CurveChunk]]:
        """The snapshots as chunks ``(ts, equity, position != 0)`` in time order, afresh at each
        call, for metrics folded a chunk at a time: the packed ``equity_curve`` chunks off the
        cursor when :meth:`equity_curve` would read them and they are in time order (as a run
        writes them), else the whole of :meth:`equity_curve` as one chunk."""
        marks = ", ".join(str(int(i)) for i in run_ids)
        runs = f"WHERE run_id IN ({marks})"
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT count(*) FROM equity {runs}")).scalar_one()
            chunks, stands_for, last = conn.execute(sa.text(
                "SELECT count(*), coalesce(sum(coalesce(bar_rows, n)), 0), max(id) "
                f"FROM equity_curve {runs}")).one()
            packed = f"FROM equity_curve {runs} AND id <= {int(last or 0)} ORDER BY id"
            if (stands_for == rows or (rows == 0 and chunks)) and _in_time_order(conn, packed):
                return lambda: self._packed_chunks(packed)
        return frame_passes(self.equity_curve(run_ids))

    def _packed_chunks(self, packed: str) -> Iterator[CurveChunk]:
        stored = curve_columns.STORED.items()
        with self.engine.connect() as conn:
            for n, *blobs in conn.execute(sa.text(f"SELECT n, ts, equity, position {packed}")):
                ts, equity, position = (_column(blob, dtype, n, name)
                                        for (name, dtype), blob in zip(stored, blobs, strict=True))
                yield ts, equity, position != 0

    def bar_columns(self, run_ids: list[int], symbol: str) -> dict[str, np.ndarray] | None:
        """``symbol``'s bars of the runs as numpy columns (``curve_columns.BAR_STORED``) in
        open-time order, from the packed ``bar_columns``; None when the chunks do not hold
        exactly the runs' equity rows (a ledger from before them, rows changed by hand): the
        caller reads the rows then."""
        marks = ", ".join(str(int(i)) for i in run_ids)
        names = ", ".join(curve_columns.BAR_STORED)
        runs = f"WHERE run_id IN ({marks})"
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT count(*) FROM equity {runs}")).scalar_one()
            if (conn.execute(sa.text(f"SELECT sum(n) FROM bar_columns {runs}")).scalar() or 0) != rows:
                return None
            chunks = conn.execute(sa.text(f"SELECT n, {names} FROM bar_columns {runs} "
                                          f"AND symbol = {_quoted(symbol)} ORDER BY id")).all()
        columns = _unpack(chunks, curve_columns.BAR_STORED)
        if not pd.Index(columns["open_time"]).is_monotonic_increasing:
            order = np.argsort(columns["open_time"], kind="stable")
            columns = {name: column[order] for name, column in columns.items()}
        return columns

    def fills(self, run_ids: list[int], columns: str = "*") -> pd.DataFrame:
        return self.table("fills", run_ids, "ts_event, id", columns)

    def fill_blocks(self, run_ids: list[int]) -> tuple[list[str], list[int], Iterator[dict[str, np.ndarray]]]:
        """The fills' symbols (sorted), each one's count, and the fills in time order as blocks
        of :data:`NUMERIC_BLOCK` rows: ``symbol`` (codes into those symbols) and the
        :data:`FILL_NUMBERS` as numpy columns off the cursor. A 10-symbol run's 390,000 fills,
        read whole for the metrics, were 20 MB at the end of the run."""
        marks = ", ".join(str(int(i)) for i in run_ids)
        with self.engine.connect() as conn:
            counted = conn.execute(sa.text(f"SELECT symbol, count(*), max(id) FROM fills WHERE run_id IN "
                                           f"({marks}) GROUP BY symbol ORDER BY symbol")).all()
        symbols = [symbol for symbol, _, _ in counted]
        codes = " ".join(f"WHEN :s{k} THEN {k}" for k in range(len(symbols)))
        numbers = ", ".join(name for name, _ in FILL_NUMBERS)
        sql = (f"SELECT CASE symbol {codes} END, {numbers} FROM fills WHERE run_id IN ({marks}) "
               f"AND id <= {max((last for _, _, last in counted), default=0)} ORDER BY ts_event, id")
        params = {f"s{k}": symbol for k, symbol in enumerate(symbols)}
        return symbols, [count for _, count, _ in counted], self._blocks(sql, params) if symbols else iter(())

    def _blocks(self, sql: str, params: dict[str, Any]) -> Iterator[dict[str, np.ndarray]]:
        dtype = [("symbol", "i4"), *FILL_NUMBERS]
        with self.engine.connect() as conn:
            result = conn.execute(sa.text(sql), params)
            rows = result.cursor if result.cursor is not None else (tuple(r) for r in result)
            while len(block := np.fromiter(itertools.islice(rows, NUMERIC_BLOCK), dtype=dtype)):
                yield {name: np.ascontiguousarray(block[name]) for name, _ in dtype}

    def exposure(self, run_ids: list[int]) -> pd.DataFrame:
        """Per symbol (the index): ``exposure``, the share of its snapshots with a position
        open, and ``last_mark``, its last snapshot's mark price; from the ``bar_columns``
        chunks' counts when they account for every equity row, else summed over the rows
        in the database (a GROUP BY over every row: 0.8 s for a million, the chunks' 0.05 s)."""
        marks = ", ".join(str(int(i)) for i in run_ids)
        runs = f"WHERE run_id IN ({marks})"
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT count(*) FROM equity {runs}")).scalar_one()
            chunks = conn.execute(sa.text(f"SELECT symbol, n, opened, last_mark FROM bar_columns {runs} "
                                          "ORDER BY id")).all()
        if rows and sum(n for _, n, _, _ in chunks) == rows and all(c[2] is not None for c in chunks):
            counted: dict[str, list] = {}  # symbol: [rows, rows with a position, last mark]
            for symbol, n, opened, last_mark in chunks:
                count = counted.setdefault(symbol, [0, 0, None])
                count[0] += n
                count[1] += opened
                count[2] = last_mark
            names = sorted(counted)
            return pd.DataFrame({"symbol": names, "exposure": [counted[s][1] / counted[s][0] for s in names],
                                 "last_mark": [counted[s][2] for s in names]}).set_index("symbol")
        return self.frame(
            "SELECT e.symbol, s.exposure, e.mark_price AS last_mark FROM equity e JOIN "
            "(SELECT symbol, MAX(id) AS last_id, "
            "AVG(CASE WHEN position <> 0 THEN 1.0 ELSE 0.0 END) AS exposure FROM equity "
            f"WHERE run_id IN ({marks}) GROUP BY symbol) s ON e.id = s.last_id").set_index("symbol")

    def bars(self, run_ids: list[int]) -> pd.DataFrame:
        return self.table("bars", run_ids, "open_time, id")

    def funding(self, run_ids: list[int], columns: str = "*") -> pd.DataFrame:
        return self.table("funding", run_ids, "ts_event, id", columns)

    def gaps(self, run_ids: list[int]) -> pd.DataFrame:
        return self.table("feed_gaps", run_ids, "gap_from, id")

    def plots(self, run_ids: list[int], symbol: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``symbol``'s plotted series of the runs, by name: stamps (ns) and values in the
        order they were made (time order); from the packed ``plot_columns`` when they account
        for every plot row of the runs, else numeric reads of the rows straight into numpy."""
        marks = ", ".join(str(int(i)) for i in run_ids)
        runs = f"WHERE run_id IN ({marks})"
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT count(*) FROM plots {runs}")).scalar_one()
            if (conn.execute(sa.text(f"SELECT sum(n) FROM plot_columns {runs}")).scalar() or 0) == rows:
                chunks = conn.execute(sa.text(f"SELECT name, n, ts, value FROM plot_columns {runs} AND "
                                              f"symbol = {_quoted(symbol)} ORDER BY name, id")).all()
                names = dict.fromkeys(chunk[0] for chunk in chunks)
                series = {name: _unpack([c[1:] for c in chunks if c[0] == name], curve_columns.PLOT_STORED)
                          for name in names}
                return {name: (s["ts"], s["value"]) for name, s in series.items()}
        where = f"run_id IN ({marks}) AND symbol = {_quoted(symbol)}"
        names = self.frame(f"SELECT DISTINCT name FROM plots WHERE {where} ORDER BY name")["name"]
        out = {}
        for name in names:
            rows = self.numeric(f"SELECT ts, value FROM plots WHERE {where} AND name = {_quoted(name)} "
                                "ORDER BY run_id, id", [("ts", "i8"), ("value", "f8")])
            out[name] = (rows["ts"].to_numpy(), rows["value"].to_numpy())
        return out

    def params(self, run_id: int) -> dict[str, Any]:
        return json.loads(self.run(run_id)["params"])


NUMERIC_BLOCK = 16_384  # fills read off the cursor at a time


def frame_passes(frame: pd.DataFrame) -> Callable[[], Iterator[CurveChunk]]:
    """:meth:`LedgerReader.curve_passes` of a curve held whole (``ts``, ``equity``, ``position``)."""
    chunk = (frame["ts"].to_numpy(np.int64), frame["equity"].to_numpy(np.float64),
             frame["position"].to_numpy() != 0)
    return lambda: iter([chunk])


def _in_time_order(conn, packed: str) -> bool:
    """Whether the packed chunks' stamps never go back (read one blob at a time)."""
    before = None
    for n, blob in conn.execute(sa.text(f"SELECT n, ts {packed}")):
        ts = _column(blob, curve_columns.STORED["ts"], n, "ts")
        if len(ts) and ((before is not None and ts[0] < before) or bool((ts[1:] < ts[:-1]).any())):
            return False
        before = ts[-1] if len(ts) else before
    return True


def _column(blob: bytes, dtype: str, n: int, name: str) -> np.ndarray:
    """One packed column of ``n`` values, in the machine's byte order."""
    column = np.frombuffer(blob, dtype=dtype)
    if len(column) != n:
        raise LedgerQueryError(f"a packed chunk says {n} rows, its {name} has {len(column)}")
    return column.astype(np.dtype(dtype).newbyteorder("="), copy=False)


def _quoted(text: str) -> str:
    """``text`` as an SQL string literal."""
    return "'" + str(text).replace("'", "''") + "'"


FILL_NUMBERS = [("qty", "f8"), ("price", "f8"), ("fee", "f8"), ("realized_pnl", "f8"), ("position", "f8"),
                ("avg_price", "f8")]


def frame_fill_blocks(fills: pd.DataFrame) -> tuple[list[Any], list[int], list[dict[str, np.ndarray]]]:
    """:meth:`LedgerReader.fill_blocks` of fills held whole (without a ``symbol`` column, the
    fills of one unnamed symbol)."""
    if "symbol" in fills.columns:
        codes, symbols = pd.factorize(fills["symbol"].to_numpy(), sort=True)
    else:
        codes, symbols = np.zeros(len(fills), np.intp), np.array([None])
    block = {"symbol": codes, **{name: fills[name].to_numpy(np.float64) for name, _ in FILL_NUMBERS
                                 if name in fills.columns}}
    return list(symbols), np.bincount(codes, minlength=len(symbols)).tolist(), [block] if len(fills) else []


def unpack_curve(chunks: Iterable[tuple[int, bytes, bytes, bytes]]) -> pd.DataFrame:
    """``ts``, ``equity`` and ``position`` from packed ``(n, ts, equity, position)`` chunks
    in the order they were written, sorted by ``ts`` (stably: ties keep their written order)."""
    return sorted_curve(pd.DataFrame(_unpack(chunks, curve_columns.STORED), copy=False))


def sorted_curve(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` sorted by ``ts``, stably: ties keep their written order."""
    if not frame["ts"].is_monotonic_increasing:
        frame = frame.iloc[np.argsort(frame["ts"].to_numpy(), kind="stable")].reset_index(drop=True)
    return frame


def _unpack(chunks: Iterable[tuple], stored: dict[str, str]) -> dict[str, np.ndarray]:
    """Packed ``(n, column, ...)`` chunks (``stored``: each column's dtype) joined in order,
    in the machine's byte order."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in stored}
    for n, *blobs in chunks:
        for (name, dtype), blob in zip(stored.items(), blobs, strict=True):
            parts[name].append(_column(blob, dtype, n, name))
    return {name: _joined(parts[name], dtype)
            for name, dtype in stored.items()}


def _unpack_into(chunks: Iterable[tuple], stored: dict[str, str], total: int) -> dict[str, np.ndarray] | None:
    """:func:`_unpack` of chunks said to hold ``total`` rows in all, each copied into columns
    made at that size as it comes; None when they hold another number (chunks were added or
    removed since they were counted)."""
    columns = {name: np.empty(total, np.dtype(dtype).newbyteorder("=")) for name, dtype in stored.items()}
    at = 0
    for n, *blobs in chunks:
        if at + n > total:
            return None
        for (name, dtype), blob in zip(stored.items(), blobs, strict=True):
            columns[name][at : at + n] = _column(blob, dtype, n, name)
        at += n
    return columns if at == total else None


def _joined(parts: list[np.ndarray], dtype: str) -> np.ndarray:
    return np.concatenate(parts or [np.empty(0, dtype)]).astype(np.dtype(dtype).newbyteorder("="), copy=False)


def ledger_bars(path: str | Path) -> pd.DataFrame:
    """The bars recorded by every run in a ledger, in the kline format plus their ``symbol``
    and ``interval`` label, de-duplicated per symbol and interval."""
    reader = LedgerReader(path)
    try:
        frame = reader.frame(
            "SELECT symbol, interval, open_time, open, high, low, close, volume, turnover, trades "
            "FROM bars ORDER BY open_time, id"
        )
    finally:
        reader.close()
    if frame.empty:
        raise LedgerQueryError(f"{path} holds no bars")
    frame["open_time"] = frame["open_time"] // 1_000_000
    return frame.drop_duplicates(["symbol", "interval", "open_time"]).reset_index(drop=True)
