"""The HTML report of a run (``papertape report``): one self-contained file.

The file opens offline and years later: nothing is fetched (no CDN, fonts, scripts or
images). The header, metrics, fills and feed gaps are rendered here as escaped HTML; the
figures (equity, drawdown, price with fills, daily returns) are drawn on ``<canvas>`` by a
small inline script from data embedded as JSON in a ``<script type="application/json">``
block, escaped so no text from the ledger can close the block or inject markup.

Large runs stay small and quick to open: every series is cut to at most ``MAX_POINTS``
points, keeping each bucket's minimum and maximum so the deepest drawdown and the price
extremes survive; fill markers are thinned to ``MAX_POINTS`` and the fills table keeps
the last ``MAX_FILL_ROWS`` fills, saying how many it leaves out. Feed gaps are listed in
full and shaded on the figures: they are never hidden.

The page marks each figure ``data-drawn="true"`` once drawn and counts script errors in
``body[data-errors]`` and ``<pre id="errors">``, so a headless browser can check it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.analysis.metrics import daily_equity
from engine.analysis.report import METRIC_ROWS, format_time, format_value
from engine.core.clock import NS_PER_MS, NS_PER_S
from engine.ledger.reader import LedgerReader

MAX_POINTS = 4000
MAX_FILL_ROWS = 2000
DAY_NS = 86400 * NS_PER_S


def write_html_report(reader: LedgerReader, run_id: int, metrics: dict[str, Any], out: str | Path) -> Path:
    """Write the report of ``run_id`` (with the runs it resumed) to ``out``; return its path."""
    ids = reader.chain(run_id)
    run, first = reader.run(run_id), reader.run(ids[0])
    equity, fills, bars, gaps = reader.equity(ids), reader.fills(ids), reader.bars(ids), reader.gaps(ids)
    markers = _thin(len(fills))
    data = {
        "run": {"id": run_id, "strategy": run["strategy"], "params": run["params"],
                "symbol": run["symbol"], "interval": run["interval"]},
        **_curves(equity, first["initial_cash"], first["data_start"]),
        "price": _price(bars),
        "fills": {"t": _ms(fills.ts_event.to_numpy()[markers]), "p": _floats(fills.price.to_numpy()[markers]),
                  "s": fills.side.to_numpy()[markers].tolist()},
        "gaps": [[_ms(g.gap_from), _ms(g.gap_to)] for g in gaps.itertuples()],
    }
    thinned = len(markers) < len(fills)
    marker_note = f" (markers for {len(markers):,} of {len(fills):,} fills)" if thinned else ""
    body = "\n".join([
        _header(run, ids, gaps),
        "<section><h2>Metrics</h2>", _metrics(metrics), "</section>",
        _figure("equity", "Equity", "account equity at each bar close, quote currency"),
        _figure("drawdown", "Drawdown", "fall below the running equity peak"),
        _figure("price", "Price and fills",
                f"close (line), high-low range (band), ▲ buy, ▼ sell{marker_note}", tall=True),
        _figure("daily", "Daily returns", "change of end-of-day equity, UTC days"),
        _fills(fills),
        _gaps(gaps),
    ])
    path = Path(out)
    path.write_text(_PAGE.format(title=escape(f"papertape run {run_id}"), style=_STYLE, body=body,
                                 data=_json_for_script(data), script=_SCRIPT), encoding="utf-8")
    return path


# -- data for the figures ---------------------------------------------------------------------

def _curves(equity: pd.DataFrame, initial_cash: float, start_ns: int) -> dict[str, Any]:
    """Equity and drawdown (from the initial cash at the data start, as the metrics do) and
    the returns of each UTC day."""
    ts = np.concatenate(([start_ns], equity.ts.to_numpy(np.int64)))
    curve = np.concatenate(([initial_cash], equity.equity.to_numpy(np.float64)))
    underwater = curve / np.maximum.accumulate(curve) - 1.0
    daily = daily_equity(curve, ts)
    days = np.unique((ts[1:] - 1) // DAY_NS) * DAY_NS
    return {
        "equity": _extremes(ts, curve),
        "drawdown": _extremes(ts, underwater),
        "daily": {"t": _ms(days), "v": _floats(daily[1:] / daily[:-1] - 1.0)},
    }


def _extremes(ts: np.ndarray, values: np.ndarray) -> dict[str, list]:
    """The series, or for long ones the first and last points with the minimum and maximum
    of each of ``MAX_POINTS / 2 - 1`` equal buckets, in time order."""
    n = len(values)
    if n <= MAX_POINTS:
        keep = np.arange(n)
    else:
        edges = np.linspace(0, n, MAX_POINTS // 2).astype(np.int64)
        picks = [0, n - 1]
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            segment = values[lo:hi]
            picks += [lo + int(segment.argmin()), lo + int(segment.argmax())]
        keep = np.unique(picks)
    return {"t": _ms(ts[keep]), "v": _floats(values[keep])}


def _price(bars: pd.DataFrame) -> dict[str, list]:
    """Bars merged into at most ``MAX_POINTS`` buckets: open time, low, high, last close."""
    n = len(bars)
    if n == 0:
        return {"t": [], "lo": [], "hi": [], "c": []}
    starts = np.unique(np.linspace(0, n, min(n, MAX_POINTS), endpoint=False).astype(np.int64))
    return {
        "t": _ms(bars.open_time.to_numpy(np.int64)[starts]),
        "lo": _floats(np.minimum.reduceat(bars.low.to_numpy(np.float64), starts)),
        "hi": _floats(np.maximum.reduceat(bars.high.to_numpy(np.float64), starts)),
        "c": _floats(bars.close.to_numpy(np.float64)[np.append(starts[1:], n) - 1]),
    }


def _thin(n: int) -> np.ndarray:
    """At most ``MAX_POINTS`` evenly spread indices of ``n`` rows."""
    return np.unique(np.linspace(0, n - 1, min(n, MAX_POINTS)).astype(np.int64))


def _ms(ns: Any) -> Any:
    """Nanoseconds (a number or an array) as JSON-safe integer milliseconds."""
    if np.ndim(ns):
        return (np.asarray(ns, dtype=np.int64) // NS_PER_MS).tolist()
    return int(ns) // NS_PER_MS


def _floats(values: np.ndarray) -> list[float | None]:
    """Values as a JSON list, NaN and infinities (not JSON) as null."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(values), values, None).tolist()


def _json_for_script(data: dict[str, Any]) -> str:
    """JSON that cannot end its ``<script>`` block: ``<``, ``>`` and ``&`` become escapes."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# -- HTML ---------------------------------------------------------------------------------------

def _header(run: dict[str, Any], ids: list[int], gaps: pd.DataFrame) -> str:
    try:
        params = json.loads(run["params"])
        shown = ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in params.items())
    except (TypeError, ValueError, AttributeError):
        shown = str(run["params"])
    status = run["status"]
    facts = [
        ("Strategy", f"{run['strategy']} ({shown or 'default parameters'})"),
        ("Market", f"{run['symbol']} {run['category']}, {run['interval']} bars"),
        ("Data", f"{format_time(run['data_start'])} to {format_time(run['data_end'])} UTC"),
        ("Kind", run["kind"]),
        ("Code version", run["code_version"]),
        ("Initial cash", format_value(run["initial_cash"], "money")),
    ]
    if len(ids) > 1:
        facts.append(("Resumes", "runs " + ", ".join(str(i) for i in ids[:-1])))
    facts.append(("Generated", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")))
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in facts)
    badge = "ok" if status == "finished" else "bad"
    html = [f"<header><h1>Run {int(run['id'])} <span class='status {badge}'>{escape(status)}</span></h1>"
            f"<dl>{rows}</dl></header>"]
    if run.get("error"):
        html.append(f"<pre class='alert'>{escape(run['error'])}</pre>")
    if len(gaps):
        html.append(f"<p class='alert'>The feed had {len(gaps):,} gap record(s) in this run: they are "
                    "shaded on the figures and listed under <a href='#gaps'>Feed gaps</a>.</p>")
    return "\n".join(html)


def _metrics(metrics: dict[str, Any]) -> str:
    daily = metrics.get("daily") or {}
    rows = [(label, format_value(metrics.get(key), kind)) for key, label, kind in METRIC_ROWS]
    rows += [("Volatility (ann., daily)", format_value(daily.get("volatility"), "pct")),
             ("Sharpe (daily)", format_value(daily.get("sharpe"), "num")),
             ("Sortino (daily)", format_value(daily.get("sortino"), "num"))]
    half = (len(rows) + 1) // 2
    tables = "".join(
        "<table class='metrics'>"
        + "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in part)
        + "</table>" for part in (rows[:half], rows[half:]))
    ann = metrics.get("annualisation") or {}
    bar = ann.get("bar") or {}
    per_year = bar.get("periods_per_year")
    bar_basis = (f"per-bar returns ({escape(str(bar.get('interval')))} bars) with {per_year:,.0f} periods "
                 "a year" if per_year else "per-bar returns: not annualisable (too few bars)")
    daily_basis = (ann.get("daily") or {}).get("periods_per_year", 365)
    note = (f"Annualisation: {bar_basis}; daily returns with {daily_basis:,.0f} periods a year; "
            f"{escape(str(ann.get('calendar', '365-day year')))}. Risk-free rate 0. "
            f"{metrics.get('bars') or 0:,} equity snapshots.")
    return f"<div class='tables'>{tables}</div><p class='note'>{note}</p>"


def _figure(name: str, title: str, caption: str, tall: bool = False) -> str:
    return (f"<section><h2>{escape(title)}</h2><p class='note'>{escape(caption)}</p>"
            f"<canvas data-figure='{name}' class='{'tall' if tall else ''}'></canvas></section>")


def _times(ns: pd.Series) -> list[str]:
    return pd.to_datetime(ns, unit="ns", utc=True).dt.strftime("%Y-%m-%d %H:%M:%S.%f").str[:-3].tolist()


def _fills(fills: pd.DataFrame) -> str:
    head = "<section><h2>Fills</h2>"
    if fills.empty:
        return head + "<p class='note'>No fills in this run.</p></section>"
    shown = fills.tail(MAX_FILL_ROWS)
    note = (f"<p class='note'>Showing the last {len(shown):,} of {len(fills):,} fills; the first "
            f"{len(fills) - len(shown):,} are left out here (all are in the ledger).</p>"
            if len(shown) < len(fills) else "")
    rows = [("buy" if f.side > 0 else "sell",
             [t, "buy" if f.side > 0 else "sell", f"{f.qty:,.8g}", f"{f.price:,.10g}", f"{f.fee:,.4f}",
              f.liquidity, f"{f.realized_pnl:,.4f}", f"{f.position:,.8g}"])
            for t, f in zip(_times(shown.ts_event), shown.itertuples(), strict=True)]
    columns = [("Time (UTC)", "text"), ("Side", "side"), ("Qty", ""), ("Price", ""), ("Fee", ""),
               ("Liquidity", ""), ("Realized PnL", ""), ("Position after", "")]
    return head + note + _table(columns, rows) + "</section>"


def _gaps(gaps: pd.DataFrame) -> str:
    head = "<section id='gaps'><h2>Feed gaps</h2>"
    if gaps.empty:
        return head + "<p class='note'>No feed gaps recorded.</p></section>"
    rows = [("", [g.status, a, b, g.detail])
            for a, b, g in zip(_times(gaps.gap_from), _times(gaps.gap_to), gaps.itertuples(), strict=True)]
    columns = [("Status", "text"), ("From (UTC)", ""), ("To (UTC)", ""), ("Detail", "text")]
    return head + _table(columns, rows) + "</section>"


def _table(columns: list[tuple[str, str]], rows: list[tuple[str, list[Any]]]) -> str:
    """A scrolling table: ``columns`` are (title, cell class), ``rows`` (row class, cells)."""
    head = "".join(f"<th class='{kind}'>{escape(title)}</th>" for title, kind in columns)
    body = "".join(
        f"<tr class='{kind}'>" + "".join(f"<td class='{c}'>{escape(str(v))}</td>"
                                         for (_, c), v in zip(columns, cells, strict=True)) + "</tr>"
        for kind, cells in rows)
    return (f"<div class='scroll'><table class='rows'><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>")


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style></head>
<body data-errors="0">
<pre id="errors" hidden></pre>
{body}
<script>
window.papertapeError = function (message) {{
  var box = document.getElementById("errors");
  box.hidden = false;
  box.textContent += message + "\\n";
  document.body.dataset.errors = String(Number(document.body.dataset.errors) + 1);
}};
window.onerror = function (message, source, line, column, error) {{
  window.papertapeError((error && error.stack) || (message + " at line " + line + ":" + column));
}};
</script>
<script type="application/json" id="report-data">{data}</script>
<script>{script}</script>
</body></html>
"""

_STYLE = """
*{box-sizing:border-box}
body{margin:0 auto;max-width:1180px;padding:24px 28px 48px;color:#1f2937;background:#f8fafc;
 font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
h1{font-size:22px;margin:0 0 10px}h2{font-size:16px;margin:0 0 2px}
header,section{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:16px 18px;margin:0 0 16px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:3px 16px;margin:0}
dt{color:#6b7280}dd{margin:0;overflow-wrap:anywhere}
.status{font-size:12px;vertical-align:middle;padding:2px 8px;border-radius:10px;font-weight:600}
.ok{background:#dcfce7;color:#166534}.bad{background:#fee2e2;color:#991b1b}
.alert{background:#fef3c7;border:1px solid #f59e0b;border-radius:6px;padding:8px 12px;white-space:pre-wrap}
#errors{background:#fee2e2;border:1px solid #dc2626;padding:8px;white-space:pre-wrap}
.note{color:#6b7280;font-size:12.5px;margin:2px 0 10px}
.tables{display:flex;gap:32px;flex-wrap:wrap}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
.metrics{flex:1;min-width:300px}
.metrics th{text-align:left;font-weight:normal;color:#4b5563;padding:3px 12px 3px 0}
.metrics td{text-align:right;padding:3px 0}
.metrics tr+tr{border-top:1px solid #f1f5f9}
.scroll{max-height:480px;overflow:auto;border:1px solid #e5e7eb;border-radius:6px}
.rows{width:100%;font-size:12.5px}
.rows th{position:sticky;top:0;background:#f1f5f9;text-align:right;padding:5px 10px;white-space:nowrap}
.rows td{text-align:right;padding:3px 10px;border-top:1px solid #f1f5f9;white-space:nowrap}
.rows .text{text-align:left}
.buy .side{color:#15803d}.sell .side{color:#b91c1c}
canvas{display:block;width:100%;height:220px}canvas.tall{height:340px}
"""

_SCRIPT = r"""
"use strict";
(function () {
  var D = JSON.parse(document.getElementById("report-data").textContent);
  var COLOR = {line: "#2563eb", band: "rgba(37,99,235,0.14)", up: "#16a34a", down: "#dc2626",
               under: "rgba(220,38,38,0.18)", grid: "#eef2f7", text: "#6b7280", gap: "rgba(245,158,11,0.22)"};
  var PAD = {l: 78, r: 14, t: 10, b: 24};
  var DAY = 86400000;

  function money(v) {
    if (Math.abs(v) < 1e-9) return "0";
    return v.toLocaleString("en-US", {maximumFractionDigits: Math.abs(v) < 10 ? 4 : 2});
  }
  function pct(v) { return Math.abs(v) < 1e-12 ? "0%" : (v * 100).toFixed(Math.abs(v) < 0.01 ? 3 : 2) + "%"; }

  function setup(el) {
    var w = el.clientWidth, h = el.clientHeight, r = window.devicePixelRatio || 1;
    el.width = Math.round(w * r); el.height = Math.round(h * r);
    var g = el.getContext("2d");
    g.setTransform(r, 0, 0, r, 0, 0);
    g.font = "11px system-ui, sans-serif";
    return {g: g, w: w, h: h};
  }

  function empty(c, message) {
    c.g.fillStyle = COLOR.text; c.g.textAlign = "center"; c.g.font = "14px system-ui, sans-serif";
    c.g.fillText(message, c.w / 2, c.h / 2);
  }

  function extent(arrays) {
    var lo = Infinity, hi = -Infinity;
    arrays.forEach(function (a) { for (var i = 0; i < a.length; i++) {
      if (a[i] === null) continue;
      if (a[i] < lo) lo = a[i];
      if (a[i] > hi) hi = a[i];
    } });
    return [lo, hi];
  }

  function niceTicks(lo, hi) {
    var raw = (hi - lo) / 5, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 2.5, 5, 10].map(function (m) { return m * mag; })
      .find(function (s) { return s >= raw; });
    var out = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(v);
    return out;
  }

  function timeLabel(t, span) {
    var s = new Date(t).toISOString();
    return span > 4 * DAY ? s.slice(0, 10) : s.slice(5, 16).replace("T", " ");
  }

  // Axes and grid for times [x0, x1] and values [y0, y1]; returns the scales. Time labels go
  // at six even steps, or at the given days (labelled at their middle).
  function frame(c, x0, x1, y0, y1, format, days) {
    if (y1 - y0 < 1e-12) { var d = Math.abs(y0) * 0.001 || 0.001; y0 -= d; y1 += d; }
    else { var p = (y1 - y0) * 0.05; y0 -= p; y1 += p; }
    var w = c.w - PAD.l - PAD.r, h = c.h - PAD.t - PAD.b, g = c.g;
    var X = function (t) { return PAD.l + (t - x0) / ((x1 - x0) || 1) * w; };
    var Y = function (v) { return PAD.t + (y1 - v) / (y1 - y0) * h; };
    g.lineWidth = 1; g.strokeStyle = COLOR.grid; g.fillStyle = COLOR.text;
    g.textAlign = "right"; g.textBaseline = "middle";
    niceTicks(y0, y1).forEach(function (v) {
      var y = Math.round(Y(v)) + 0.5;
      g.beginPath(); g.moveTo(PAD.l, y); g.lineTo(c.w - PAD.r, y); g.stroke();
      g.fillText(format(v), PAD.l - 6, y);
    });
    g.textBaseline = "top";
    if (days) {
      g.textAlign = "center";
      var every = Math.ceil(days.length / 8);
      for (var k = 0; k < days.length; k += every) {
        g.fillText(new Date(days[k]).toISOString().slice(0, 10), X(days[k] + DAY / 2), c.h - PAD.b + 6);
      }
    } else {
      for (var i = 0; i <= 5; i++) {
        var t = x0 + (x1 - x0) * i / 5;
        g.textAlign = i === 0 ? "left" : i === 5 ? "right" : "center";
        g.fillText(timeLabel(t, x1 - x0), X(t), c.h - PAD.b + 6);
      }
    }
    D.gaps.forEach(function (gap) {
      var a = Math.max(X(gap[0]), PAD.l), b = Math.min(X(gap[1]), c.w - PAD.r);
      if (b >= a) { g.fillStyle = COLOR.gap; g.fillRect(a, PAD.t, Math.max(b - a, 2), h); }
    });
    return {X: X, Y: Y};
  }

  function path(g, t, v, s) {
    g.beginPath();
    var pen = false;  // null values (NaN in the ledger) break the line
    for (var i = 0; i < t.length; i++) {
      if (v[i] === null) { pen = false; continue; }
      if (pen) g.lineTo(s.X(t[i]), s.Y(v[i])); else g.moveTo(s.X(t[i]), s.Y(v[i]));
      pen = true;
    }
  }

  // A line over time; ``underwater`` fills the area up to zero (the drawdown figure).
  function curve(c, series, format, underwater) {
    var t = series.t, e = extent([series.v, underwater ? [0] : []]), g = c.g;
    var s = frame(c, t[0], t[t.length - 1], e[0], e[1], format);
    if (underwater) {
      path(g, t, series.v, s);
      g.lineTo(s.X(t[t.length - 1]), s.Y(0)); g.lineTo(s.X(t[0]), s.Y(0));
      g.fillStyle = COLOR.under; g.fill();
    }
    path(g, t, series.v, s);
    g.strokeStyle = underwater ? COLOR.down : COLOR.line; g.lineWidth = 1.25; g.stroke();
  }

  function triangle(g, x, y, up) {
    var k = up ? 1 : -1;
    g.beginPath(); g.moveTo(x, y - 5 * k); g.lineTo(x - 4.5, y + 3 * k); g.lineTo(x + 4.5, y + 3 * k);
    g.closePath(); g.fill(); g.stroke();
  }

  var DRAW = {
    equity: function (c) {
      if (D.equity.t.length < 2) return empty(c, "No equity snapshots recorded");
      curve(c, D.equity, money);
    },
    drawdown: function (c) {
      if (D.drawdown.t.length < 2) return empty(c, "No equity snapshots recorded");
      curve(c, D.drawdown, pct, true);
    },
    price: function (c) {
      var p = D.price, f = D.fills, g = c.g;
      if (p.t.length === 0 && f.t.length === 0) return empty(c, "No bars or fills recorded");
      var times = p.t.concat(f.t), e = extent([p.lo, p.hi, f.p]), tx = extent([times]);
      var s = frame(c, tx[0], tx[1], e[0], e[1], money);
      if (p.t.length) {
        path(g, p.t, p.hi, s);
        for (var i = p.t.length - 1; i >= 0; i--) g.lineTo(s.X(p.t[i]), s.Y(p.lo[i]));
        g.closePath(); g.fillStyle = COLOR.band; g.fill();
        path(g, p.t, p.c, s); g.strokeStyle = COLOR.line; g.lineWidth = 1; g.stroke();
      }
      g.strokeStyle = "#fff"; g.lineWidth = 0.75;
      for (var j = 0; j < f.t.length; j++) {
        g.fillStyle = f.s[j] > 0 ? COLOR.up : COLOR.down;
        triangle(g, s.X(f.t[j]), s.Y(f.p[j]), f.s[j] > 0);
      }
      if (f.t.length === 0) {
        g.fillStyle = COLOR.text; g.textAlign = "right"; g.textBaseline = "top";
        g.fillText("no fills in this run", c.w - PAD.r - 4, PAD.t + 4);
      }
    },
    daily: function (c) {
      var d = D.daily;
      if (d.t.length === 0) return empty(c, "No complete day of equity recorded");
      var e = extent([d.v, [0]]);
      var s = frame(c, d.t[0], d.t[d.t.length - 1] + DAY, e[0], e[1], pct, d.t);
      for (var i = 0; i < d.t.length; i++) {
        var x0 = s.X(d.t[i]), x1 = s.X(d.t[i] + DAY), gap = Math.min((x1 - x0) * 0.15, 4);
        var y0 = s.Y(0), y1 = s.Y(d.v[i] || 0);
        c.g.fillStyle = d.v[i] >= 0 ? COLOR.up : COLOR.down;
        c.g.fillRect(x0 + gap, Math.min(y0, y1), Math.max(x1 - x0 - 2 * gap, 1),
                     Math.max(Math.abs(y1 - y0), 1));
      }
    }
  };

  function drawAll() {
    document.querySelectorAll("[data-figure]").forEach(function (el) {
      try {
        DRAW[el.dataset.figure](setup(el));
        el.dataset.drawn = "true";
      } catch (error) {
        window.papertapeError("figure " + el.dataset.figure + ": " + ((error && error.stack) || error));
      }
    });
  }

  var timer;
  window.addEventListener("resize", function () { clearTimeout(timer); timer = setTimeout(drawAll, 150); });
  drawAll();
})();
"""
