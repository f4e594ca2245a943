"""``GET /api/runs/{id}/bars``: one symbol's bars of a run chain, within an optional window
(``start``/``end`` in ms), merged to at most ``width`` columns so a zoom asks for finer bars."""

from __future__ import annotations

import numpy as np
from aiohttp import web

from engine.dashboard.downsample import bar_columns, clamp_width, line_extremes, window
from engine.ledger.reader import LedgerQueryError, LedgerReader

NS_PER_MS = 1_000_000
DTYPE = [("t", "i8"), ("o", "f8"), ("h", "f8"), ("l", "f8"), ("c", "f8"), ("v", "f8")]


def _int(query, name: str, default: int | None) -> int | None:
    text = query.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be a whole number, not {text!r}") from None


def run_bars(reader: LedgerReader, run_id: int, symbol: str | None, width: int,
             start_ms: int | None, end_ms: int | None) -> dict:
    """The downsampled bars of ``symbol`` (the run's first symbol when None), stamps in ms."""
    run = reader.run(run_id)
    symbols = [s for s in (run["symbol"] or "").split(",") if s]
    symbol = symbol or (symbols[0] if symbols else "")
    if symbol not in symbols:
        raise LedgerQueryError(f"run {run_id} has no symbol {symbol!r}")
    marks = ", ".join(str(int(i)) for i in reader.chain(run_id))
    quoted = symbol.replace("'", "''")
    rows = reader.numeric("SELECT open_time, open, high, low, close, volume FROM bars "
                          f"WHERE run_id IN ({marks}) AND symbol = '{quoted}' ORDER BY open_time, id", DTYPE)
    t = rows["t"].to_numpy() // NS_PER_MS
    cut = window(t, start_ms, end_ms)
    cols = bar_columns(t[cut], *(rows[k].to_numpy()[cut] for k in ("o", "h", "l", "c", "v")), width)
    names = ("t", "o", "h", "l", "c", "v")
    return {"symbol": symbol, "total": int(cut.stop - cut.start),
            **{n: np.asarray(col).tolist() for n, col in zip(names, cols, strict=True)}}


async def api_bars(request: web.Request, reader: LedgerReader) -> web.Response:
    """The handler: query arguments checked, a missing run or symbol a 404."""
    query = request.query
    width = clamp_width(_int(query, "width", 1000) or 0)
    try:
        run_id = int(request.match_info["id"])
        start, end = _int(query, "start", None), _int(query, "end", None)
        body = run_bars(reader, run_id, query.get("symbol"), width, start, end)
    except ValueError:
        raise web.HTTPBadRequest(text="a run id is a whole number") from None
    except LedgerQueryError as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    return web.json_response(body)


async def api_equity(request: web.Request, reader: LedgerReader) -> web.Response:
    """``GET /api/runs/{id}/equity?width=``: a run chain's equity curve, each column's extremes kept."""
    width = clamp_width(_int(request.query, "width", 1000) or 0)
    try:
        run_id = int(request.match_info["id"])
        curve = reader.equity_curve(reader.chain(run_id))
    except ValueError:
        raise web.HTTPBadRequest(text="a run id is a whole number") from None
    except LedgerQueryError as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    t, v = line_extremes(curve["ts"].to_numpy() // NS_PER_MS, curve["equity"].to_numpy(), width)
    return web.json_response({"run": run_id, "t": t.tolist(), "equity": v.tolist()})
