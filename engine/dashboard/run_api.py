"""The JSON of runs: the list with key metrics, one run with its metrics, downsampled equity and
fills, and the run page's curves, fill markers and tables. Finished runs' metrics are kept."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from engine.analysis.metrics import forecasts_for_run, metrics_for_run
from engine.analysis.report import METRIC_ROWS, format_value
from engine.dashboard import run_data
from engine.dashboard.downsample import clamp_width
from engine.dashboard.series_cache import SeriesCache
from engine.ledger.reader import LedgerQueryError, LedgerReader

LIST_METRICS = ("total_return", "sharpe", "max_drawdown", "n_trades", "n_fills", "fees", "final_equity")
MAX_FILLS = 10_000
MARKERS = 1_000
TABLE_ROWS = 500


class RunFacts:
    """The ledger with what the pages ask of it: series (kept for finished runs) and metrics."""

    def __init__(self, reader: LedgerReader) -> None:
        self.reader = reader
        self.series = SeriesCache()
        self.kept_metrics: dict[int, dict[str, Any]] = {}

    def metrics(self, run_id: int, status: str) -> dict[str, Any]:
        if run_id in self.kept_metrics:
            return self.kept_metrics[run_id]
        metrics = metrics_for_run(self.reader, run_id)
        if status != "running":
            self.kept_metrics[run_id] = metrics
        return metrics

    def trial_metrics(self) -> dict[int, dict[str, Any]]:
        """Metrics a sweep stored with its trials (no need to recompute them from the rows)."""
        frame = self.reader.frame("SELECT run_id, metrics FROM sweep_trials "
                                  "WHERE run_id IS NOT NULL AND metrics IS NOT NULL")
        return {int(r.run_id): json.loads(r.metrics) for r in frame.itertuples()}

    def runs(self) -> list[dict[str, Any]]:
        runs = self.reader.runs().drop(columns=["summary"])
        records = json.loads(runs.to_json(orient="records"))
        stored = self.trial_metrics()
        for record in records:
            record["symbols"] = run_data.run_symbols(record)
            full = stored.get(record["id"]) or self.metrics(record["id"], record["status"])
            record["metrics"] = {k: full.get(k) for k in LIST_METRICS}
        return records


FACTS = web.AppKey("facts", RunFacts)


def _int(query, name: str, default: int | None) -> int | None:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be a whole number, not {text!r}") from None


def _run(request: web.Request) -> dict[str, Any]:
    """The run the path names; a bad id is a 400, a missing run a 404."""
    try:
        return request.app[FACTS].reader.run(int(request.match_info["id"]))
    except ValueError:
        raise web.HTTPBadRequest(text="a run id is a whole number") from None
    except LedgerQueryError as exc:
        raise web.HTTPNotFound(text=str(exc)) from None


def _symbol(request: web.Request, run: dict[str, Any]) -> str | None:
    symbol = request.query.get("symbol") or None
    if symbol is not None and symbol not in run_data.run_symbols(run):
        raise web.HTTPNotFound(text=f"run {run['id']} has no symbol {symbol!r}")
    return symbol


def _json(body: Any) -> web.Response:
    return web.json_response(body, dumps=lambda o: json.dumps(o, default=str, allow_nan=False))


async def api_runs(request: web.Request) -> web.Response:
    return _json(await asyncio.to_thread(request.app[FACTS].runs))


async def api_run(request: web.Request) -> web.Response:
    """``GET /api/runs/{id}``: the run's row, ``symbols``, ``metrics``, ``forecasts``, ``equity``
    as ``[[ts_ms, value], ...]`` cut to ``width`` columns, ``plots`` (each symbol's plotted
    series by name, cut the same way) and its latest ``MAX_FILLS`` fills."""
    facts, run = request.app[FACTS], _run(request)
    width = clamp_width(_int(request.query, "width", 1000) or 0)

    def read() -> dict[str, Any]:
        body = {k: v for k, v in run.items() if k != "summary"}
        body["symbols"] = run_data.run_symbols(run)
        body["metrics"] = facts.metrics(run["id"], run["status"])
        body["forecasts"] = forecasts_for_run(facts.reader, run["id"])
        body["equity"] = run_data.equity_pairs(facts.series, facts.reader, run["id"], width)
        body["plots"] = run_data.plot_pairs(facts.series, facts.reader, run["id"], width)
        fills = run_data.fills(facts.reader, run["id"], None, None, None, MAX_FILLS, spread=False)
        body["fills"], body["fills_total"] = fills["rows"], fills["total"]
        return body

    return _json(await asyncio.to_thread(read))


async def api_metrics(request: web.Request) -> web.Response:
    """``GET /api/runs/{id}/metrics``: the metrics and the run page's table of them as text."""
    facts, run = request.app[FACTS], _run(request)
    metrics = await asyncio.to_thread(facts.metrics, run["id"], run["status"])
    daily = metrics.get("daily") or {}
    rows = [[label, format_value(metrics.get(key), kind)] for key, label, kind in METRIC_ROWS]
    rows += [["Sharpe (daily)", format_value(daily.get("sharpe"), "num")],
             ["Sortino (daily)", format_value(daily.get("sortino"), "num")]]
    return _json({"metrics": metrics, "rows": rows})


async def api_curves(request: web.Request) -> web.Response:
    """``GET /api/runs/{id}/curves?width=``: equity, buy-and-hold, drawdown, daily returns."""
    facts, run = request.app[FACTS], _run(request)
    width = clamp_width(_int(request.query, "width", 1000) or 0)
    return _json(await asyncio.to_thread(run_data.curves, facts.reader, facts.series, run["id"], width))


async def api_fills(request: web.Request) -> web.Response:
    """``GET /api/runs/{id}/fills?symbol=&start=&end=&markers=1``: fills in a window (ms), spread
    over it for markers, else the latest for a table."""
    facts, run = request.app[FACTS], _run(request)
    query = request.query
    markers = query.get("markers") == "1"
    body = await asyncio.to_thread(run_data.fills, facts.reader, run["id"], _symbol(request, run),
                                   _int(query, "start", None), _int(query, "end", None),
                                   MARKERS if markers else TABLE_ROWS, markers)
    return _json(body)


async def api_tables(request: web.Request) -> web.Response:
    """``GET /api/runs/{id}/tables``: the latest orders, rejections, feed gaps and forecasts."""
    facts, run = request.app[FACTS], _run(request)

    def read() -> dict[str, Any]:
        body = run_data.tables(facts.reader, run["id"], TABLE_ROWS)
        body["forecast_summary"] = forecasts_for_run(facts.reader, run["id"])
        return body

    return _json(await asyncio.to_thread(read))
