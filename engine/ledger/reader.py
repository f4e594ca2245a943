"""Reading a ledger back: runs, and one run's equity, fills, bars and other rows as pandas
frames (SQL straight into pandas, through the database driver for speed)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from engine.core.errors import UserError
from engine.ledger import curve_columns
from engine.ledger.liveness import effective_status
from engine.ledger.schema import Run, open_engine


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
                params: dict[str, Any] | None = None, count_sql: str | None = None) -> pd.DataFrame:
        """A query of numeric columns straight into a numpy structured array, row by row off
        the cursor: several times faster than a generic frame, and no list of a million
        tuples in memory. With ``count_sql`` (the query's row count) the rows go a block at a
        time into columns made at that size: 390,000 fills peaked at three times their 52
        bytes a row (a grown array, then the frame's copy), now once."""
        with self.engine.connect() as conn:
            count = conn.execute(sa.text(count_sql), params or {}).scalar_one() if count_sql else None
            result = conn.execute(sa.text(sql), params or {})
            rows = result.cursor if result.cursor is not None else (tuple(r) for r in result)
            if count is None:
                return pd.DataFrame(np.fromiter(rows, dtype=dtype))
            columns = {name: np.empty(count, kind) for name, kind in dtype}
            at = 0
            while len(block := np.fromiter(itertools.islice(rows, NUMERIC_BLOCK), dtype=dtype)):
                if at + len(block) > count:  # rows added since the count
                    columns = {name: np.concatenate((column[:at], block[name])) for name, column in columns.items()}
                    count = at + len(block)
                else:
                    for name, column in columns.items():
                        column[at : at + len(block)] = block[name]
                at += len(block)
        # contiguous columns, as a frame's own: a sum over a strided view can round differently
        return pd.DataFrame({name: column[:at] for name, column in columns.items()}, copy=False)

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

    def fill_numbers(self, run_ids: list[int]) -> pd.DataFrame:
        """The fills' :data:`FILL_NUMBERS` in time order and their ``symbol`` as a category,
        read off the cursor into numpy: a run's 390,000 fills read as a generic frame peaked
        at 170 MB, four times the frame, at the end of a 10-symbol run."""
        marks = ", ".join(str(int(i)) for i in run_ids)
        with self.engine.connect() as conn:
            distinct = f"SELECT DISTINCT symbol FROM fills WHERE run_id IN ({marks}) ORDER BY symbol"
            symbols = list(conn.execute(sa.text(distinct)).scalars())
        if not symbols:
            return empty_fill_numbers()
        codes = " ".join(f"WHEN :s{k} THEN {k}" for k in range(len(symbols)))
        numbers = ", ".join(name for name, _ in FILL_NUMBERS)
        sql = (f"SELECT CASE symbol {codes} END, {numbers} FROM fills WHERE run_id IN ({marks}) "
               "ORDER BY ts_event, id")
        frame = self.numeric(sql, [("symbol", "i4"), *FILL_NUMBERS],
                             {f"s{k}": symbol for k, symbol in enumerate(symbols)},
                             f"SELECT count(*) FROM fills WHERE run_id IN ({marks})")
        frame["symbol"] = pd.Categorical.from_codes(frame["symbol"].to_numpy(), symbols)
        return frame

    def exposure(self, run_ids: list[int]) -> pd.DataFrame:
        """Per symbol (the index): ``exposure``, the share of its snapshots with a position
        open, and ``last_mark``, its last snapshot's mark price; summed in the database."""
        marks = ", ".join(str(int(i)) for i in run_ids)
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


NUMERIC_BLOCK = 16_384  # rows read off the cursor at a time into counted columns


def _quoted(text: str) -> str:
    """``text`` as an SQL string literal."""
    return "'" + str(text).replace("'", "''") + "'"


FILL_NUMBERS = [("qty", "f8"), ("price", "f8"), ("fee", "f8"), ("realized_pnl", "f8"), ("position", "f8"),
                ("avg_price", "f8")]


def empty_fill_numbers() -> pd.DataFrame:
    """:meth:`LedgerReader.fill_numbers` of a run without fills."""
    frame = pd.DataFrame({name: np.empty(0, dtype) for name, dtype in FILL_NUMBERS})
    frame.insert(0, "symbol", pd.Categorical([]))
    return frame


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
            column = np.frombuffer(blob, dtype=dtype)
            if len(column) != n:
                raise LedgerQueryError(f"a packed chunk says {n} rows, its {name} has {len(column)}")
            parts[name].append(column)
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
            column = np.frombuffer(blob, dtype=dtype)
            if len(column) != n:
                raise LedgerQueryError(f"a packed chunk says {n} rows, its {name} has {len(column)}")
            columns[name][at : at + n] = column
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
