"""The dashboard's aiohttp application: JSON of the ledger's runs and a page listing them,
read-only, every ledger string HTML-escaped, a token required when one is set."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from aiohttp import web

from engine.analysis import charts_library
from engine.dashboard.bars_api import api_bars, api_equity
from engine.ledger.reader import LedgerQueryError, LedgerReader

READER = web.AppKey("reader", LedgerReader)
TOKEN = web.AppKey("token", str)


def _records(reader: LedgerReader) -> list[dict[str, Any]]:
    runs = reader.runs().drop(columns=["summary"])
    return json.loads(runs.to_json(orient="records"))


@web.middleware
async def _require_token(request: web.Request, handler):
    token = request.app[TOKEN]
    given = request.query.get("token") or request.headers.get("Authorization", "").removeprefix("Bearer ")
    if token and given != token:
        raise web.HTTPUnauthorized(text="a token is required (?token=...)")
    return await handler(request)


async def api_runs(request: web.Request) -> web.Response:
    return web.json_response(_records(request.app[READER]))


async def api_run(request: web.Request) -> web.Response:
    try:
        run_id = int(request.match_info["id"])
        run = request.app[READER].run(run_id)
    except ValueError:
        raise web.HTTPBadRequest(text="a run id is a whole number") from None
    except LedgerQueryError as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    fields = {k: v for k, v in run.items() if k != "summary"}
    return web.json_response(fields, dumps=lambda o: json.dumps(o, default=str))


async def runs_page(request: web.Request) -> web.Response:
    columns = ("id", "kind", "status", "strategy", "symbol", "interval")
    rows = "".join(f"<tr><td><a href='/runs/{int(r['id'])}'>{int(r['id'])}</a></td>"
                   + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in columns[1:]) + "</tr>"
                   for r in _records(request.app[READER]))
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = ("<!doctype html><html><head><meta charset='utf-8'><title>papertape runs</title></head><body>"
            f"<h1>Runs</h1><table id='runs'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
            "</body></html>")
    return web.Response(text=body, content_type="text/html")


async def run_page(request: web.Request) -> web.Response:
    try:
        run = request.app[READER].run(int(request.match_info["id"]))
    except ValueError:
        raise web.HTTPBadRequest(text="a run id is a whole number") from None
    except LedgerQueryError as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    title = html.escape(f"run {run['id']}: {run['strategy']} on {run['symbol']} ({run['status']})")
    body = ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{title}</title></head><body><h1>{title}</h1><p id='status'></p>"
            f"<div id='chart' data-run='{int(run['id'])}'></div>"
            "<script src='/assets/lightweight-charts.js'></script><script src='/assets/run.js'></script>"
            "</body></html>")
    return web.Response(text=body, content_type="text/html")


async def chart_library(request: web.Request) -> web.Response:
    return web.Response(text=charts_library.script(), content_type="application/javascript")


async def run_script(request: web.Request) -> web.Response:
    name = "compare.js" if request.path.endswith("compare.js") else "run.js"
    text = (Path(__file__).parent / "assets" / name).read_text(encoding="utf-8")
    return web.Response(text=text, content_type="application/javascript")


async def compare_page(request: web.Request) -> web.Response:
    try:
        ids = [int(x) for x in request.query.get("runs", "").split(",") if x]
    except ValueError:
        raise web.HTTPBadRequest(text="runs is a comma-joined list of run ids") from None
    for run_id in ids:
        try:
            request.app[READER].run(run_id)
        except LedgerQueryError as exc:
            raise web.HTTPNotFound(text=str(exc)) from None
    marks = ",".join(str(i) for i in ids)
    body = ("<!doctype html><html><head><meta charset='utf-8'><title>compare runs</title></head><body>"
            f"<h1>Runs {marks} compared</h1><p id='status'></p><div id='chart' data-runs='{marks}'></div>"
            "<script src='/assets/lightweight-charts.js'></script><script src='/assets/compare.js'></script>"
            "</body></html>")
    return web.Response(text=body, content_type="text/html")


async def no_icon(request: web.Request) -> web.Response:
    return web.Response(status=204)


def build_app(ledger: str | Path, token: str = "") -> web.Application:
    """The dashboard over one ledger (opened read-only for the app's lifetime)."""
    app = web.Application(middlewares=[_require_token])
    app[READER] = LedgerReader(ledger)
    app[TOKEN] = token

    async def close_reader(app: web.Application) -> None:
        app[READER].close()

    app.on_cleanup.append(close_reader)
    app.router.add_get("/", runs_page)
    app.router.add_get("/favicon.ico", no_icon)
    app.router.add_get("/runs/{id}", run_page)
    app.router.add_get("/assets/lightweight-charts.js", chart_library)
    app.router.add_get("/assets/run.js", run_script)
    app.router.add_get("/assets/compare.js", run_script)
    app.router.add_get("/compare", compare_page)
    app.router.add_get("/api/runs/{id}/equity", lambda request: api_equity(request, app[READER]))
    app.router.add_get("/api/runs", api_runs)
    app.router.add_get("/api/runs/{id}", api_run)
    app.router.add_get("/api/runs/{id}/bars", lambda request: api_bars(request, app[READER]))
    return app
