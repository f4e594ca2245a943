"""A run chain's long series (a symbol's bars and plotted series, the portfolio equity curve)
read once and kept as numpy arrays while the run is finished, so a zoom on a million-bar run
does not read a million rows again; a running run's series are read afresh on every request."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from engine.analysis.plot_series import bar_of
from engine.ledger.reader import LedgerReader

NS_PER_MS = 1_000_000
BAR_DTYPE = [("t", "i8"), ("o", "f8"), ("h", "f8"), ("l", "f8"), ("c", "f8"), ("v", "f8"), ("close_ns", "i8")]
KEPT = 8


class SeriesCache:
    """The last ``KEPT`` series asked for, of finished runs only (a finished run never changes).
    Safe across threads: requests read in worker threads, and a series asked for while it is
    being read waits for that read instead of starting another."""

    def __init__(self) -> None:
        self.kept: OrderedDict[tuple, Any] = OrderedDict()
        self.lock = threading.Lock()
        self.reading: dict[tuple, threading.Lock] = {}

    def _get(self, reader: LedgerReader, run_id: int, key: tuple, read) -> Any:
        if reader.run(run_id)["status"] == "running":
            return read()
        with self.lock:
            once = self.reading.setdefault(key, threading.Lock())
        with once:
            with self.lock:
                if key in self.kept:
                    self.kept.move_to_end(key)
                    return self.kept[key]
            value = read()
            with self.lock:
                self.kept[key] = value
                self.reading.pop(key, None)
                while len(self.kept) > KEPT:
                    self.kept.popitem(last=False)
            return value

    def bars(self, reader: LedgerReader, run_id: int, symbol: str) -> dict[str, np.ndarray]:
        """``symbol``'s bars of the run chain in time order: ``t`` (open time, ms), o, h, l, c, v
        and ``close_ns`` (the bar's close, where its snapshot and plot points are stamped): the
        packed columns when the ledger has them, else the rows."""
        def read() -> dict[str, np.ndarray]:
            ids = reader.chain(run_id)
            packed = reader.bar_columns(ids, symbol)
            if packed is not None:
                names = {"open_time": "t", "open": "o", "high": "h", "low": "l", "close": "c", "volume": "v",
                         "close_ts": "close_ns"}
                out = {names[name]: column for name, column in packed.items()}
                out["t"] = out["t"] // NS_PER_MS
                return out
            marks = ", ".join(str(int(i)) for i in ids)
            quoted = symbol.replace("'", "''")
            rows = reader.numeric("SELECT open_time, open, high, low, close, volume, ts FROM equity "
                                  f"WHERE run_id IN ({marks}) AND symbol = '{quoted}' ORDER BY open_time, id",
                                  BAR_DTYPE)
            out = {name: rows[name].to_numpy() for name, _ in BAR_DTYPE}
            out["t"] = out["t"] // NS_PER_MS
            return out
        return self._get(reader, run_id, ("bars", run_id, symbol), read)

    def plots(self, reader: LedgerReader, run_id: int,
              symbol: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``symbol``'s plotted series of the run chain by name: stamps (ns) and values."""
        return self._get(reader, run_id, ("plots", run_id, symbol),
                         lambda: reader.plots(reader.chain(run_id), symbol))

    def placed_plots(self, reader: LedgerReader, run_id: int, symbol: str,
                     closes: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``symbol``'s plotted series by name as (index of the bar each point is drawn on,
        value): the newest of the bars (``closes``, from :meth:`bars`) closed at or before the
        point's stamp, -1 before the first."""
        def read() -> dict[str, tuple[np.ndarray, np.ndarray]]:
            return {name: (bar_of(closes, ts), values)
                    for name, (ts, values) in self.plots(reader, run_id, symbol).items()}
        return self._get(reader, run_id, ("placed", run_id, symbol), read)

    def curve(self, reader: LedgerReader, run_id: int) -> tuple[np.ndarray, np.ndarray]:
        """The portfolio's equity at each close time (ns) of the run chain: the last snapshot
        of each stamp, as a portfolio records one snapshot per symbol's bar."""
        def read() -> tuple[np.ndarray, np.ndarray]:
            curve = reader.equity_curve(reader.chain(run_id))
            ts, equity = curve["ts"].to_numpy(np.int64), curve["equity"].to_numpy(np.float64)
            last = np.append(ts[1:] != ts[:-1], True) if len(ts) else np.zeros(0, bool)
            return ts[last], equity[last]
        return self._get(reader, run_id, ("curve", run_id), read)
