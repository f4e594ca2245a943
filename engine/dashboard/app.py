"""The dashboard's aiohttp application: read-only over one ledger, a token required when one
is set; the pages live in pages.py, the JSON in run_api.py and bars_api.py."""

from __future__ import annotations

import secrets
from pathlib import Path

from aiohttp import web

from engine.analysis import charts_library
from engine.dashboard import pages, run_api, sweeps_page
from engine.dashboard.bars_api import api_bars, api_equity
from engine.dashboard.live_channel import LIVE, LiveChannel
from engine.dashboard.run_api import FACTS, RunFacts
from engine.ledger.reader import LedgerReader

TOKEN = web.AppKey("token", str)
ASSETS = Path(__file__).parent / "assets"
ASSET_TYPES = {".js": "application/javascript", ".css": "text/css"}


COOKIE = "papertape_token"


@web.middleware
async def _require_token(request: web.Request, handler):
    """With a token set, every page and API call needs it (``?token=``, a Bearer header or the
    cookie a page answered with ``?token=`` sets, so the page's links and fetches carry it);
    the static scripts and style sheet hold no ledger data and are served to anyone."""
    token = request.app[TOKEN]
    if not token or request.path.startswith("/assets/") or request.path == "/favicon.ico":
        return await handler(request)
    given = (request.query.get("token") or request.headers.get("Authorization", "").removeprefix("Bearer ")
             or request.cookies.get(COOKIE, ""))
    if not secrets.compare_digest(given.encode(), token.encode()):
        raise web.HTTPUnauthorized(text="a token is required (?token=...)")
    response = await handler(request)
    if request.query.get("token"):
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
    return response


async def chart_library(request: web.Request) -> web.Response:
    return web.Response(text=charts_library.script(), content_type="application/javascript")


async def asset(request: web.Request) -> web.Response:
    """A script or style sheet of assets/ (only names listed there, nothing beside them)."""
    name = request.match_info["name"]
    path = ASSETS / name
    if path.suffix not in ASSET_TYPES or path.name != name or not path.is_file():
        raise web.HTTPNotFound(text=f"no asset {name!r}")
    return web.Response(text=path.read_text(encoding="utf-8"), content_type=ASSET_TYPES[path.suffix])


async def no_icon(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def no_live(request: web.Request) -> web.Response:
    raise web.HTTPNotFound(text="no live session here: /api/live is served by `papertape live --dashboard`")


def build_app(ledger: str | Path, token: str = "", live: LiveChannel | None = None) -> web.Application:
    """The dashboard over one ledger (opened read-only for the app's lifetime); ``live`` is the
    live session's channel when the app is served inside ``papertape live``."""
    app = web.Application(middlewares=[_require_token])
    app[FACTS] = RunFacts(LedgerReader(ledger))
    app[TOKEN] = token
    if live is not None:
        app[LIVE] = live

    async def close_reader(app: web.Application) -> None:
        app[FACTS].reader.close()

    app.on_cleanup.append(close_reader)
    add = app.router.add_get
    add("/", pages.runs_page)
    add("/favicon.ico", no_icon)
    add("/runs/{id}", pages.run_page)
    add("/compare", pages.compare_page)
    add("/assets/lightweight-charts.js", chart_library)
    add("/assets/{name}", asset)
    add("/api/runs", run_api.api_runs)
    add("/api/runs/{id}", run_api.api_run)
    add("/api/runs/{id}/bars", api_bars)
    add("/api/runs/{id}/equity", api_equity)
    add("/api/runs/{id}/curves", run_api.api_curves)
    add("/api/runs/{id}/fills", run_api.api_fills)
    add("/api/runs/{id}/tables", run_api.api_tables)
    add("/api/runs/{id}/metrics", run_api.api_metrics)
    add("/api/live", live.serve if live is not None else no_live)
    add("/sweeps", sweeps_page.sweeps_page)
    add("/sweeps/{id}", sweeps_page.sweep_page)
    add("/api/sweeps", sweeps_page.api_sweeps)
    add("/api/sweeps/{id}", sweeps_page.api_sweep)
    return app
