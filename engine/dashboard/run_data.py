"""One run's data for its page, from the ledger rows of the run chain: equity beside a
buy-and-hold benchmark, drawdown and daily returns (downsampled to the chart's width), fills
for the price chart's markers, and the orders, rejections, feed gaps and forecasts tables."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from engine.analysis.metrics import daily_equity
from engine.dashboard.downsample import line_extremes
from engine.dashboard.series_cache import NS_PER_MS, SeriesCache
from engine.ledger.reader import LedgerReader

DAY_NS = 86400 * 1_000_000_000
FILL_COLUMNS = ("id, client_order_id, symbol, side, price, qty, fee, realized_pnl, liquidity, position, "
                "ts_event")


def run_symbols(run: dict[str, Any]) -> list[str]:
    """The symbols a run traded (``runs.symbol`` holds them comma-joined)."""
    return [s for s in (run.get("symbol") or "").split(",") if s]


def _floats(values: np.ndarray) -> list[float | None]:
    values = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(values), values, None).tolist()


def benchmark(reader: LedgerReader, cache: SeriesCache, run_id: int, ts_ns: np.ndarray,
              initial_cash: float) -> np.ndarray:
    """Buy and hold: the initial cash split equally over the run's symbols at their first
    bar's open, marked at each stamp to the close of the bar that closed by then."""
    symbols = run_symbols(reader.run(run_id))
    total = np.zeros(len(ts_ns))
    for symbol in symbols:
        bars = cache.bars(reader, run_id, symbol)
        if len(bars["t"]) == 0:
            total += 1.0
            continue
        done = np.searchsorted(bars["t"] * NS_PER_MS, ts_ns, side="left") - 1
        price = np.where(done >= 0, bars["c"][np.maximum(done, 0)], bars["o"][0])
        total += price / bars["o"][0]
    return initial_cash * total / max(len(symbols), 1)


def curves(reader: LedgerReader, cache: SeriesCache, run_id: int, width: int) -> dict[str, Any]:
    """Equity (from the initial cash at the data start, as the metrics count it), its
    buy-and-hold benchmark and drawdown, each cut to ``width`` columns, and daily returns."""
    first = reader.run(reader.chain(run_id)[0])
    ts, equity = cache.curve(reader, run_id)
    ts = np.concatenate(([first["data_start"]], ts))
    curve = np.concatenate(([first["initial_cash"]], equity))
    peaks = np.maximum.accumulate(curve)
    underwater = curve / np.where(peaks > 0, peaks, np.nan) - 1.0
    bench = benchmark(reader, cache, run_id, ts, first["initial_cash"])
    ms = ts // NS_PER_MS
    out: dict[str, Any] = {"run": run_id}
    for name, values in (("equity", curve), ("benchmark", bench), ("drawdown", underwater)):
        t, v = line_extremes(ms, values, width)
        out[name] = {"t": t.tolist(), "v": _floats(v)}
    daily = daily_equity(curve, ts)
    days = np.unique((ts[1:] - 1) // DAY_NS) * DAY_NS // NS_PER_MS
    out["daily"] = {"t": days.tolist(), "v": _floats(daily[1:] / daily[:-1] - 1.0)}
    return out


def equity_pairs(cache: SeriesCache, reader: LedgerReader, run_id: int, width: int) -> list[list]:
    """The equity curve as ``[[ts_ms, value], ...]``, each column's extremes kept."""
    ts, equity = cache.curve(reader, run_id)
    t, v = line_extremes(ts // NS_PER_MS, equity, width)
    return [[int(a), b] for a, b in zip(t.tolist(), _floats(v), strict=True)]


def plot_pairs(cache: SeriesCache, reader: LedgerReader, run_id: int, width: int) -> dict[str, dict]:
    """Each symbol's plotted series as ``{symbol: {name: [[ts_ms, value], ...]}}``, stamped
    when plotted, each column's extremes kept."""
    out: dict[str, dict] = {}
    for symbol in run_symbols(reader.run(run_id)):
        series = {}
        for name, (ts, values) in cache.plots(reader, run_id, symbol).items():
            t, v = line_extremes(ts // NS_PER_MS, values, width)
            series[name] = [[int(a), b] for a, b in zip(t.tolist(), _floats(v), strict=True)]
        if series:
            out[symbol] = series
    return out


def _where(ids: list[int], symbol: str | None, start_ms: int | None, end_ms: int | None,
           stamp: str = "ts_event") -> tuple[str, dict[str, Any]]:
    marks = ", ".join(str(int(i)) for i in ids)
    clauses, params = [f"run_id IN ({marks})"], {}
    if symbol:
        clauses.append("symbol = :symbol")
        params["symbol"] = symbol
    if start_ms is not None:
        clauses.append(f"{stamp} >= :start")
        params["start"] = start_ms * NS_PER_MS
    if end_ms is not None:
        clauses.append(f"{stamp} <= :end")
        params["end"] = end_ms * NS_PER_MS
    return " AND ".join(clauses), params


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}
            for row in frame.to_dict(orient="records")]


def fills(reader: LedgerReader, run_id: int, symbol: str | None, start_ms: int | None,
          end_ms: int | None, limit: int, spread: bool) -> dict[str, Any]:
    """Fills of the run chain (one symbol's when given) within a window (ms), at most ``limit``:
    spread evenly over the window for chart markers, else the latest ones for a table."""
    where, params = _where(reader.chain(run_id), symbol, start_ms, end_ms)
    total = int(reader.frame(f"SELECT count(*) AS n FROM fills WHERE {where}", params)["n"].iloc[0])
    if spread and total > limit:
        frame = reader.frame(f"SELECT {FILL_COLUMNS} FROM fills WHERE {where} ORDER BY ts_event, id", params)
        frame = frame.iloc[np.unique(np.linspace(0, total - 1, limit).astype(np.int64))]
    else:
        frame = reader.frame(f"SELECT {FILL_COLUMNS} FROM fills WHERE {where} "
                             f"ORDER BY ts_event DESC, id DESC LIMIT {int(limit)}", params).iloc[::-1]
    frame = frame.assign(ts=frame.pop("ts_event") // NS_PER_MS)
    return {"total": total, "rows": _records(frame)}


def tables(reader: LedgerReader, run_id: int, limit: int) -> dict[str, Any]:
    """The latest ``limit`` orders (with their last status), rejections, feed gaps and
    forecasts of the run chain, each with its full count."""
    ids = reader.chain(run_id)
    where, _ = _where(ids, None, None, None)

    def latest(table: str, columns: str, cond: str = "") -> dict[str, Any]:
        full = f"{where}{cond}"
        total = int(reader.frame(f"SELECT count(*) AS n FROM {table} WHERE {full}")["n"].iloc[0])
        frame = reader.frame(f"SELECT {columns} FROM {table} WHERE {full} "
                             f"ORDER BY id DESC LIMIT {int(limit)}")
        return {"total": total, "rows": frame.iloc[::-1].reset_index(drop=True)}

    orders = latest("orders", "client_order_id, symbol, side, qty, order_type, price, trigger_price, "
                              "time_in_force, ts_init")
    frame = orders["rows"]
    if len(frame):
        names = ", ".join("'" + str(c).replace("'", "''") + "'" for c in frame.client_order_id)
        updates = reader.frame(f"SELECT client_order_id, status FROM order_updates WHERE {where} "
                               f"AND client_order_id IN ({names}) ORDER BY id")
        last = updates.drop_duplicates("client_order_id", keep="last").set_index("client_order_id")["status"]
        frame["status"] = frame.client_order_id.map(last).fillna("sent")
    frame["ts"] = frame.pop("ts_init") // NS_PER_MS
    rejections = latest("order_updates", "client_order_id, reason, ts_event", " AND status = 'rejected'")
    rejections["rows"]["ts"] = rejections["rows"].pop("ts_event") // NS_PER_MS
    gaps = latest("feed_gaps", "symbol, status, gap_from, gap_to, detail")
    for column in ("gap_from", "gap_to"):
        gaps["rows"][column] = gaps["rows"][column] // NS_PER_MS
    forecasts = latest("predictions", "strategy_id, symbol, ts_event, latency_ns, dropped, \"values\"")
    rows = forecasts["rows"]
    rows["ts"] = rows.pop("ts_event") // NS_PER_MS
    rows["latency_ms"] = rows.pop("latency_ns") / 1e6
    return {name: {"total": part["total"], "rows": _records(part["rows"])}
            for name, part in (("orders", orders), ("rejections", rejections), ("gaps", gaps),
                               ("forecasts", forecasts))}
