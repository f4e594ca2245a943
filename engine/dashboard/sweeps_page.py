"""Sweeps in the dashboard, from the ``sweeps`` and ``sweep_trials`` tables: the list of sweeps,
and one sweep's heatmap of its objective over two swept parameters (chosen in the page) with
its overfitting guard and the table of trials, each linked to its run. JSON beside each."""

from __future__ import annotations

import asyncio
import html
import math
from typing import Any

from aiohttp import web

from engine.analysis.sweep_report import heatmap_svg
from engine.analysis.sweep_stats import reading, valued
from engine.dashboard.pages import page
from engine.dashboard.run_api import FACTS, _json
from engine.ledger.sweeps import SweepNotFound, load_sweep, load_trials


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def sweep_list(request: web.Request) -> list[dict[str, Any]]:
    """Every sweep, newest first, with how many of its trials ended in each status."""
    reader = request.app[FACTS].reader
    sweeps = reader.frame("SELECT id, status, strategy, objective, sampler, started_at, finished_at "
                          "FROM sweeps ORDER BY id DESC")
    counts = reader.frame("SELECT sweep_id, status, count(*) AS n FROM sweep_trials "
                          "GROUP BY sweep_id, status")
    out = []
    for s in sweeps.to_dict(orient="records"):
        own = counts[counts.sweep_id == s["id"]]
        s["trials"] = {str(r.status): int(r.n) for r in own.itertuples()}
        out.append(s)
    return out


def sweep_detail(request: web.Request) -> dict[str, Any]:
    """One sweep: its row (spec and summary decoded) and its trials with their objective value."""
    reader = request.app[FACTS].reader
    try:
        sweep_id = int(request.match_info["id"])
    except ValueError:
        raise web.HTTPBadRequest(text="a sweep id is a whole number") from None
    try:
        sweep = load_sweep(reader.engine, sweep_id, reader.target)
    except SweepNotFound as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    return {**sweep, "trials": valued(load_trials(reader.engine, sweep_id), sweep["objective"])}


async def api_sweeps(request: web.Request) -> web.Response:
    return _json(await asyncio.to_thread(sweep_list, request))


async def api_sweep(request: web.Request) -> web.Response:
    return _json(await asyncio.to_thread(sweep_detail, request))


async def sweeps_page(request: web.Request) -> web.Response:
    rows = "".join(
        f"<tr><td><a href='/sweeps/{int(s['id'])}'>{int(s['id'])}</a></td><td>{_esc(s['status'])}</td>"
        f"<td>{_esc(s['strategy'])}</td><td>{_esc(s['objective'])}</td><td>{_esc(s['sampler'])}</td>"
        f"<td>{_esc(', '.join(f'{n} {k}' for k, n in sorted(s['trials'].items())))}</td></tr>"
        for s in await asyncio.to_thread(sweep_list, request))
    body = ("<h1>Sweeps</h1><table id='sweeps' class='rows'><thead><tr><th>id</th><th>status</th>"
            "<th>strategy</th><th>objective</th><th>sampler</th><th>trials</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")
    if not rows:
        body += "<p class='note'>No sweeps in this ledger.</p>"
    return page("papertape sweeps", body)


def _axis(name: str, chosen: str | None, params: list[str]) -> str:
    options = "".join(f"<option value='{_esc(p)}'{' selected' if p == chosen else ''}>{_esc(p)}</option>"
                      for p in params)
    return f"<label>{name} <select name='{name}'>{options}</select></label> "


async def sweep_page(request: web.Request) -> web.Response:
    """The heatmap of the objective over ``?x=&y=`` (the first two swept parameters by
    default), the overfitting guard and the trials."""
    sweep = await asyncio.to_thread(sweep_detail, request)
    trials = sweep["trials"]
    params = list(dict.fromkeys(k for t in trials for k in t["params"]))
    x = request.query.get("x") or (params[0] if params else None)
    y = request.query.get("y") or (params[1] if len(params) > 1 else x)
    for name in (x, y):
        if params and name not in params:
            raise web.HTTPBadRequest(text=f"{name!r} is not a swept parameter ({', '.join(params)})")
    searched = [t for t in trials if t["phase"] != "holdout" and not t["phase"].endswith(" test")]
    objective = sweep["objective"]
    heat = heatmap_svg(searched, x, y, objective) if x else "<p class='note'>No parameters.</p>"
    summary = sweep.get("summary") or {}
    rows = "".join(
        f"<tr><td>{_esc(t['phase'])}</td><td>{int(t['trial'])}</td><td>"
        + (f"<a href='/runs/{int(t['run_id'])}'>{int(t['run_id'])}</a>" if t["run_id"] else "-")
        + f"</td><td>{_esc(t['status'])}</td>"
        + "".join(f"<td>{_esc(_num(t['params'].get(p)))}</td>" for p in params)
        + f"<td>{_esc(_num(t.get('value')))}</td>"
        f"<td>{_esc(_num((t['metrics'] or {}).get('total_return')))}</td>"
        f"<td>{_esc(_num((t['metrics'] or {}).get('max_drawdown')))}</td>"
        f"<td>{_esc((t['metrics'] or {}).get('n_trades', '-'))}</td></tr>" for t in trials)
    head = "".join(f"<th>{_esc(c)}</th>" for c in ("phase", "trial", "run", "status", *params, objective,
                                                   "return", "max dd", "trades"))
    choose = (f"<form method='get'>{_axis('x', x, params)}{_axis('y', y, params)}<button>draw</button></form>"
              if len(params) > 1 else "")
    body = (f"<h1>Sweep {int(sweep['id'])}: {_esc(sweep['strategy'])}, {_esc(sweep['sampler'])} search on "
            f"{_esc(objective)} <span class='status {_esc(sweep['status'])}'>{_esc(sweep['status'])}</span>"
            "</h1>"
            f"<p id='reading'>{_esc(reading(summary.get('dsr'), summary.get('pbo')))}</p>"
            f"<section><h2>{_esc(objective)} over {_esc(x)} and {_esc(y)}</h2>{choose}"
            f"<div id='heatmap'>{heat}</div></section>"
            f"<section><h2>Trials</h2><div class='scroll'><table id='trials' class='rows'><thead><tr>{head}"
            f"</tr></thead><tbody>{rows}</tbody></table></div></section>")
    return page(f"sweep {sweep['id']}", body)
