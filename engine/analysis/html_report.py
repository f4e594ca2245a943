"""The HTML report of a run (``papertape report``): one self-contained file.

The file opens offline and years later: nothing is fetched (no CDN, fonts or images). The
header, metrics, PnL by symbol, fills and feed gaps are rendered here as escaped HTML; the
figures (portfolio equity, drawdown, each symbol's candles with its fills and the strategy's
plotted series, daily returns) are
drawn by the vendored TradingView Lightweight Charts, inlined whole
(``charts_library.inline_script()``), from data embedded as JSON in a
``<script type="application/json">`` block, escaped so no text from the ledger can close the
block or inject markup.

Large runs stay small and quick to open: every series is cut to at most ``MAX_POINTS``
points, keeping each bucket's minimum and maximum so the deepest drawdown and the price
extremes survive; each symbol's bars are merged into at most ``MAX_POINTS`` candles (each
plotted series keeps one value a candle), its fill markers thinned to ``MAX_POINTS``, and
the fills table keeps the last ``MAX_FILL_ROWS`` fills, saying how many it leaves out. Feed
gaps are listed in full and marked on the equity figure: they are never hidden.

The page marks each figure ``data-drawn="true"`` once drawn and counts script errors (and
``console.error`` calls) in ``body[data-errors]`` and ``<pre id="errors">``, so a headless
browser can check it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.analysis import charts_library
from engine.analysis.by_symbol import symbol_metrics
from engine.analysis.metrics import daily_equity
from engine.analysis.plot_series import bar_of, on_columns
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
    funding = reader.funding(ids)
    symbols = [s for s in (run["symbol"] or "").split(",") if s]
    by_symbol = {s: bars[bars.symbol == s] for s in symbols}
    marked = 0
    markers = {}
    for symbol in symbols:
        own = fills[fills.symbol == symbol]
        markers[symbol] = _markers(own)
        marked += len(markers[symbol]["t"])
    data = {
        "run": {"id": run_id, "strategy": run["strategy"], "params": run["params"],
                "symbol": run["symbol"], "interval": run["interval"]},
        "symbols": symbols,
        **_curves(equity, first["initial_cash"], first["data_start"]),
        "price": {s: _price(b) for s, b in by_symbol.items()},
        "plots": {s: _plots(reader.plots(ids, s), equity.ts[equity.symbol == s].to_numpy(np.int64))
                  for s in symbols},
        "fills": markers,
        "gaps": [[_ms(g.gap_from), _ms(g.gap_to)] for g in gaps.itertuples()],
    }
    marker_note = f" (markers for {marked:,} of {len(fills):,} fills)" if marked < len(fills) else ""
    body = "\n".join([
        _header(run, ids, gaps),
        "<section><h2>Metrics</h2>", _metrics(metrics), "</section>",
        _symbol_table(symbol_metrics(fills, funding, reader.exposure(ids), symbols)),
        _figure("equity", "Equity", "portfolio equity at each close time, quote currency; feed gaps marked"),
        _figure("drawdown", "Drawdown", "fall below the running equity peak"),
        _figure("price", "Price and fills", f"candles, ▲ buy, ▼ sell{marker_note}; lines: the "
                "strategy's plotted series", tall=True,
                choose=_symbol_select("price-symbol", symbols, everything=False)),
        _figure("daily", "Daily returns", "change of end-of-day equity, UTC days"),
        _fills(fills, symbols),
        _gaps(gaps),
        f"<footer class='note'>{escape(charts_library.notice())}</footer>",
    ])
    path = Path(out)
    assets = resources.files("engine.analysis") / "assets"
    page = _PAGE.format(title=escape(f"papertape run {run_id}"), style=(assets / "report.css").read_text(),
                        body=body, data=_json_for_script(data), library=charts_library.inline_script(),
                        script=(assets / "report.js").read_text())
    path.write_text(page, encoding="utf-8")
    return path


# -- data for the figures ---------------------------------------------------------------------

def _curves(equity: pd.DataFrame, initial_cash: float, start_ns: int) -> dict[str, Any]:
    """Equity and drawdown (from the initial cash at the data start, as the metrics do; a
    portfolio's last snapshot of each close time) and the returns of each UTC day."""
    equity = equity.drop_duplicates("ts", keep="last") if len(equity) else equity
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
    """One symbol's bars merged into at most ``MAX_POINTS`` candles: the first open time and
    open, the highest high, the lowest low, the last close."""
    n = len(bars)
    if n == 0:
        return {"t": [], "o": [], "h": [], "l": [], "c": []}
    starts = _candle_starts(n)
    return {
        "t": _ms(bars.open_time.to_numpy(np.int64)[starts]),
        "o": _floats(bars.open.to_numpy(np.float64)[starts]),
        "h": _floats(np.maximum.reduceat(bars.high.to_numpy(np.float64), starts)),
        "l": _floats(np.minimum.reduceat(bars.low.to_numpy(np.float64), starts)),
        "c": _floats(bars.close.to_numpy(np.float64)[np.append(starts[1:], n) - 1]),
    }


def _candle_starts(n: int) -> np.ndarray:
    """The first bar of each of the at most ``MAX_POINTS`` candles ``n`` bars are merged into."""
    return np.unique(np.linspace(0, n, min(n, MAX_POINTS), endpoint=False).astype(np.int64))


def _plots(series: dict[str, tuple[np.ndarray, np.ndarray]], close_ns: np.ndarray) -> dict[str, list]:
    """Each plotted series' value on each candle of the symbol (``close_ns``: its bars' closes),
    null where it has none."""
    starts = _candle_starts(len(close_ns))
    return {name: _floats(on_columns(bar_of(close_ns, ts), values, starts, len(close_ns)))
            for name, (ts, values) in series.items()}


def _markers(fills: pd.DataFrame) -> dict[str, list]:
    """One symbol's fills, at most ``MAX_POINTS`` evenly spread: time, price, side."""
    picked = fills.iloc[_thin(len(fills))]
    return {"t": _ms(picked.ts_event.to_numpy()), "p": _floats(picked.price.to_numpy()),
            "s": picked.side.to_numpy().tolist()}


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


def _figure(name: str, title: str, caption: str, tall: bool = False, choose: str = "") -> str:
    return (f"<section><h2>{escape(title)}</h2><p class='note'>{escape(caption)}</p>{choose}"
            f"<div data-figure='{name}' class='figure{' tall' if tall else ''}'></div></section>")


def _symbol_select(name: str, symbols: list[str], everything: bool) -> str:
    """A symbol selector (the script shows the chosen symbol's price, or filters the fills)."""
    options = "".join(f"<option value='{escape(s, quote=True)}'>{escape(s)}</option>" for s in symbols)
    every = "<option value=''>all symbols</option>" if everything else ""
    return f"<label class='note'>Symbol <select id='{name}'>{every}{options}</select></label>"


def _symbol_table(by_symbol: dict[str, dict[str, Any]]) -> str:
    """Each symbol's metrics (engine.analysis.by_symbol) and the sum of its PnL, fees and funding."""
    head = "<section id='by-symbol'><h2>PnL by symbol</h2>"
    if not by_symbol:
        return head + "<p class='note'>No symbols recorded for this run.</p></section>"
    money = ("fees", "funding", "pnl")
    shown = [("", [symbol, f"{m['fills']:,}", f"{m['trades']:,}",
                   "-" if m["win_rate"] is None else f"{m['win_rate']:.1%}", f"{m['exposure']:.1%}",
                   *(f"{m[k]:,.4f}" for k in money)]) for symbol, m in by_symbol.items()]
    rows = by_symbol.values()
    shown.append(("total", ["all", f"{sum(m['fills'] for m in rows):,}",
                            f"{sum(m['trades'] for m in rows):,}", "", "",
                            *(f"{sum(m[k] for m in rows):,.4f}" for k in money)]))
    columns = [("Symbol", "text"), ("Fills", ""), ("Round trips", ""), ("Win rate", ""), ("Exposure", ""),
               ("Fees", ""), ("Funding paid", ""), ("Net PnL", "")]
    note = ("<p class='note'>Net PnL = realized PnL - fees - funding + the open position marked at the "
            "symbol's last snapshot; the symbols' net PnL adds up to the equity change.</p>")
    return head + note + _table(columns, shown) + "</section>"


def _times(ns: pd.Series) -> list[str]:
    return pd.to_datetime(ns, unit="ns", utc=True).dt.strftime("%Y-%m-%d %H:%M:%S.%f").str[:-3].tolist()


def _fills(fills: pd.DataFrame, symbols: list[str]) -> str:
    head = "<section><h2>Fills</h2>"
    if fills.empty:
        return head + "<p class='note'>No fills in this run.</p></section>"
    shown = fills.tail(MAX_FILL_ROWS)
    note = (f"<p class='note'>Showing the last {len(shown):,} of {len(fills):,} fills; the first "
            f"{len(fills) - len(shown):,} are left out here (all are in the ledger).</p>"
            if len(shown) < len(fills) else "")
    rows = [("buy" if f.side > 0 else "sell",
             [t, f.symbol, "buy" if f.side > 0 else "sell", f"{f.qty:,.8g}", f"{f.price:,.10g}",
              f"{f.fee:,.4f}", f.liquidity, f"{f.realized_pnl:,.4f}", f"{f.position:,.8g}"])
            for t, f in zip(_times(shown.ts_event), shown.itertuples(), strict=True)]
    columns = [("Time (UTC)", "text"), ("Symbol", "text"), ("Side", "side"), ("Qty", ""), ("Price", ""),
               ("Fee", ""), ("Liquidity", ""), ("Realized PnL", ""), ("Position after", "")]
    choose = _symbol_select("fills-symbol", symbols, everything=True) if len(symbols) > 1 else ""
    return head + note + choose + _table(columns, rows, symbol_column=1, table_id="fills") + "</section>"


def _gaps(gaps: pd.DataFrame) -> str:
    head = "<section id='gaps'><h2>Feed gaps</h2>"
    if gaps.empty:
        return head + "<p class='note'>No feed gaps recorded.</p></section>"
    rows = [("", [g.status, a, b, g.detail])
            for a, b, g in zip(_times(gaps.gap_from), _times(gaps.gap_to), gaps.itertuples(), strict=True)]
    columns = [("Status", "text"), ("From (UTC)", ""), ("To (UTC)", ""), ("Detail", "text")]
    return head + _table(columns, rows) + "</section>"


def _table(columns: list[tuple[str, str]], rows: list[tuple[str, list[Any]]],
           symbol_column: int | None = None, table_id: str = "") -> str:
    """A scrolling table: ``columns`` are (title, cell class), ``rows`` (row class, cells);
    with ``symbol_column`` each row carries its symbol (``data-symbol``) for the filter."""
    head = "".join(f"<th class='{kind}'>{escape(title)}</th>" for title, kind in columns)

    def opening(kind: str, cells: list[Any]) -> str:
        if symbol_column is None:
            return f"<tr class='{kind}'>"
        return f"<tr class='{kind}' data-symbol='{escape(str(cells[symbol_column]), quote=True)}'>"

    body = "".join(
        opening(kind, cells) + "".join(f"<td class='{c}'>{escape(str(v))}</td>"
                                       for (_, c), v in zip(columns, cells, strict=True)) + "</tr>"
        for kind, cells in rows)
    ident = f" id='{table_id}'" if table_id else ""
    return (f"<div class='scroll'><table class='rows'{ident}><thead><tr>{head}</tr></thead>"
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
(function (original) {{
  console.error = function () {{
    window.papertapeError(Array.prototype.join.call(arguments, " "));
    original.apply(console, arguments);
  }};
}})(console.error);
</script>
<script type="application/json" id="report-data">{data}</script>
{library}
<script>{script}</script>
</body></html>
"""
