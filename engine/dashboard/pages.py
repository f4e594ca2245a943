"""The dashboard's HTML pages, rendered with every ledger string escaped; the charts and the
tables of rows are drawn in the browser by the scripts in assets/ from the JSON API, which
put ledger text in the page as text (never as markup)."""

from __future__ import annotations

import asyncio
import html
import json
from typing import Any

from aiohttp import web

from engine.analysis.report import METRIC_ROWS, format_time, format_value
from engine.dashboard.live_channel import LIVE
from engine.dashboard.run_api import FACTS, RunFacts, _run
from engine.dashboard.run_data import run_symbols
from engine.ledger.reader import LedgerQueryError

LIST_COLUMNS = (("total_return", "pct"), ("sharpe", "num"), ("max_drawdown", "pct"), ("n_trades", "int"))
NAV = "<nav><a href='/'>runs</a> <a href='/sweeps'>sweeps</a></nav>"
LIBRARY = "<script src='/assets/lightweight-charts.js'></script>"


def page(title: str, body: str, *scripts: str) -> web.Response:
    """A whole page: ``title`` is escaped here, ``body`` must already be."""
    tags = "".join(f"<script src='/assets/{name}'></script>" for name in scripts)
    text = ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><link rel='stylesheet' href='/assets/dashboard.css'>"
            f"</head><body>{NAV}{body}{LIBRARY if scripts else ''}{tags}</body></html>")
    return web.Response(text=text, content_type="text/html")


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


async def runs_page(request: web.Request) -> web.Response:
    """Every run with its kind, status, strategy, symbols, dates and key metrics; the table
    sorts on a header click and filters on the text typed above it (assets/runs.js)."""
    columns = ("id", "kind", "status", "strategy", "symbols", "interval", "data from", "data to",
               "return", "sharpe", "max dd", "trades")
    rows = []
    for r in await asyncio.to_thread(request.app[FACTS].runs):
        m = r["metrics"]
        status = f"<span class='status {_esc(r['status'])}'>{_esc(r['status'])}</span>"
        cells = [f"<a href='/runs/{int(r['id'])}'>{int(r['id'])}</a>", _esc(r["kind"]), status,
                 _esc(r["strategy"]), _esc(", ".join(r["symbols"])), _esc(r["interval"]),
                 _esc(format_time(r["data_start"])), _esc(format_time(r["data_end"])),
                 *(_esc(format_value(m.get(key), kind)) for key, kind in LIST_COLUMNS)]
        rows.append(f"<tr data-id='{int(r['id'])}'>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = ("<h1>Runs</h1><p><input id='filter' placeholder='filter runs' size='30'> "
            "<button id='compare'>compare checked</button></p>"
            f"<table id='runs' class='rows'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody>"
            "</table>")
    return page("papertape runs", body, "runs.js")


def _facts(run: dict[str, Any]) -> str:
    try:
        params = json.loads(run["params"] or "{}")
        shown = ", ".join(f"{k}={v}" for k, v in params.items()) if isinstance(params, dict) else str(params)
    except ValueError:
        shown = str(run["params"])
    facts = [("Strategy", f"{run['strategy']} ({shown or 'default parameters'})"),
             ("Symbols", ", ".join(run_symbols(run))),
             ("Market", f"{run['category']}, {run['interval']} bars"),
             ("Data", f"{format_time(run['data_start'])} to {format_time(run['data_end'])} UTC"),
             ("Kind", run["kind"]), ("Initial cash", format_value(run["initial_cash"], "money")),
             ("Code version", run["code_version"])]
    if run.get("resumed_from"):
        facts.append(("Resumes", f"run {run['resumed_from']}"))
    return "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in facts)


def _table_section(name: str, title: str, extra: str = "") -> str:
    return (f"<section id='{name}-section'><h2>{title}</h2>{extra}<p class='note' id='{name}-note'></p>"
            f"<div class='scroll'><table id='{name}' class='rows'></table></div></section>")


LIVE_PANEL = ("<section id='live' hidden><h2>Live</h2><p>socket <span id='live-socket'>connecting</span> | "
              "feed <span id='live-feed'></span> | reconnects <span id='live-reconnects'></span> | equity "
              "<span id='live-equity'></span> | bars <span id='live-bars'></span> | "
              "last message <span id='live-updated'></span> UTC</p>"
              "<h3>Positions</h3><table id='live-positions' class='rows'></table>"
              "<h3>Open orders</h3><table id='live-orders' class='rows'></table></section>")


def _is_live(request: web.Request, run_id: int) -> bool:
    """Whether this process is the live session of ``run_id`` (its page then opens /api/live)."""
    channel = request.app.get(LIVE)
    return channel is not None and channel.session is not None and channel.session.run_id == run_id


def _read_plots(facts: RunFacts, run_id: int, symbol: str) -> None:
    """The price chart's plotted series read into the cache (beside the bars, which another
    thread reads), then placed on the bars."""
    series = facts.series
    series.plots(facts.reader, run_id, symbol)
    series.placed_plots(facts.reader, run_id, symbol, series.bars(facts.reader, run_id, symbol)["close_ns"])


async def run_page(request: web.Request) -> web.Response:
    """One run: header and metrics here; price with fill markers per symbol, equity against
    buy-and-hold, drawdown, daily returns and the row tables drawn by run.js and panels.js."""
    run = _run(request)
    facts = request.app[FACTS]
    symbols = run_symbols(run)
    if symbols:  # start reading what the page's scripts will ask for while the browser loads them
        loop = asyncio.get_running_loop()
        loop.run_in_executor(None, facts.series.bars, facts.reader, run["id"], symbols[0])
        loop.run_in_executor(None, _read_plots, facts, run["id"], symbols[0])
    options = "".join(f"<option value='{_esc(s)}'>{_esc(s)}</option>" for s in symbols)
    error = f"<pre class='alert'>{_esc(run['error'])}</pre>" if run.get("error") else ""
    live = "true" if _is_live(request, int(run["id"])) else "false"
    body = (f"<header><h1>Run {int(run['id'])} <span class='status {_esc(run['status'])}'>"
            f"{_esc(run['status'])}</span></h1><dl>{_facts(run)}</dl>{error}</header>"
            + (LIVE_PANEL if live == "true" else "") +
            "<section><h2>Metrics</h2><table id='metrics' class='metrics'></table></section>"
            "<section><h2>Price and fills</h2><p class='note'>candles, fills (▲ buy, ▼ sell) and the "
            "strategy's plotted series</p><label>Symbol <select id='symbol'>"
            f"{options}</select></label> <span id='status'></span>"
            f"<div id='chart' class='chart tall' data-run='{int(run['id'])}' data-live='{live}'></div>"
            "<div id='tooltip' class='tooltip' hidden></div></section>"
            "<section><h2>Equity and buy-and-hold</h2><p class='note'>the run's equity (blue) and the "
            "initial cash held equally in each symbol from its first bar (grey)</p>"
            "<div id='equity' class='chart'></div></section>"
            "<section><h2>Drawdown</h2><div id='drawdown' class='chart short'></div></section>"
            "<section><h2>Daily returns</h2><div id='daily' class='chart short'></div></section>"
            + _table_section("fills", "Fills", "<label>Symbol <select id='fill-symbol'><option value=''>all"
                             f"</option>{options}</select></label>")
            + _table_section("orders", "Orders") + _table_section("rejections", "Rejections")
            + _table_section("gaps", "Feed gaps") + _table_section("forecasts", "Forecasts"))
    return page(f"run {run['id']}: {run['strategy']} on {run['symbol']} ({run['status']})", body,
                "run.js", "panels.js", "live.js")


async def compare_page(request: web.Request) -> web.Response:
    """Two or more runs: their metrics side by side and equity curves on one chart, normalised."""
    try:
        ids = [int(x) for x in request.query.get("runs", "").split(",") if x]
    except ValueError:
        raise web.HTTPBadRequest(text="runs is a comma-joined list of run ids") from None
    facts = request.app[FACTS]
    runs = []
    for run_id in ids:
        try:
            runs.append(facts.reader.run(run_id))
        except LedgerQueryError as exc:
            raise web.HTTPNotFound(text=str(exc)) from None
    metrics = await asyncio.to_thread(lambda: [facts.metrics(r["id"], r["status"]) for r in runs])
    head = "<tr><th></th>" + "".join(f"<th>run {int(r['id'])}<br>{_esc(r['strategy'])} "
                                     f"{_esc(r['params'])}</th>" for r in runs) + "</tr>"
    rows = "".join(f"<tr><th>{_esc(label)}</th>" + "".join(f"<td>{_esc(format_value(m.get(key), kind))}</td>"
                                                           for m in metrics) + "</tr>"
                   for key, label, kind in METRIC_ROWS)
    marks = ",".join(str(i) for i in ids)
    body = (f"<h1>Runs {marks} compared</h1><p class='note'>equity divided by each run's initial cash</p>"
            f"<p id='status'></p><div id='chart' class='chart tall' data-runs='{marks}'></div>"
            f"<table id='compare-metrics' class='metrics'>{head}{rows}</table>")
    return page(f"compare runs {marks}", body, "compare.js")
