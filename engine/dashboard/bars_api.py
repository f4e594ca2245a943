"""``GET /api/runs/{id}/bars``: one symbol's bars of a run chain, within an optional window
(``start``/``end`` in ms), merged to at most ``width`` columns so a zoom asks for finer bars;
``GET /api/runs/{id}/equity``: the equity curve cut the same way, for the compare page."""

from __future__ import annotations

import asyncio

import numpy as np
from aiohttp import web

from engine.analysis.plot_series import on_columns
from engine.dashboard.downsample import bar_columns, clamp_width, column_starts, window
from engine.dashboard.run_api import FACTS, _int, _run, _symbol
from engine.dashboard.run_data import equity_pairs, run_symbols
from engine.dashboard.series_cache import SeriesCache
from engine.ledger.reader import LedgerReader


def run_bars(reader: LedgerReader, cache: SeriesCache, run: dict, symbol: str | None, width: int,
             start_ms: int | None, end_ms: int | None) -> dict:
    """The downsampled bars of ``symbol`` (the run's first symbol when None), stamps in ms, and
    ``plots``: each plotted series' value on each drawn bar (null where it has none)."""
    symbols = run_symbols(run)
    symbol = symbol or (symbols[0] if symbols else "")
    bars = cache.bars(reader, run["id"], symbol)
    cut = window(bars["t"], start_ms, end_ms)
    names = ("t", "o", "h", "l", "c", "v")
    cols = bar_columns(*(bars[n][cut] for n in names), width)
    count = cut.stop - cut.start
    starts = column_starts(count, width) if count > width else np.arange(count)
    plots = {}
    for name, (at, values) in cache.placed_plots(reader, run["id"], symbol, bars["close_ns"]).items():
        drawn = on_columns(at - cut.start, values, starts, count)
        plots[name] = np.where(np.isfinite(drawn), drawn, None).tolist()
    return {"symbol": symbol, "total": int(count), "plots": plots,
            **{n: np.asarray(col).tolist() for n, col in zip(names, cols, strict=True)}}


async def api_bars(request: web.Request) -> web.Response:
    """The handler: query arguments checked, a missing run or symbol a 404, a bad number a 400."""
    facts, run = request.app[FACTS], _run(request)
    query = request.query
    width = clamp_width(_int(query, "width", 1000) or 0)
    start, end = _int(query, "start", None), _int(query, "end", None)
    body = await asyncio.to_thread(run_bars, facts.reader, facts.series, run, _symbol(request, run), width,
                                   start, end)
    return web.json_response(body)


async def api_equity(request: web.Request) -> web.Response:
    """``GET /api/runs/{id}/equity?width=``: a run chain's equity curve, each column's extremes
    kept, with the initial cash it started from (the compare page divides by it)."""
    facts, run = request.app[FACTS], _run(request)
    width = clamp_width(_int(request.query, "width", 1000) or 0)
    pairs = await asyncio.to_thread(equity_pairs, facts.series, facts.reader, run["id"], width)
    first = facts.reader.run(facts.reader.chain(run["id"])[0])
    return web.json_response({"run": run["id"], "initial_cash": first["initial_cash"],
                              "t": [p[0] for p in pairs], "equity": [p[1] for p in pairs]})
