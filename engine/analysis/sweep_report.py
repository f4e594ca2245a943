"""A sweep as text (the table of best trials, the DSR and PBO with how to read them) and as
a self-contained HTML page: the trials table, a heatmap of the objective over two
parameters, in-sample against out-of-sample, and the overfitting guard. The page is
static HTML with inline SVG: no script, nothing fetched."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from engine.analysis.sweep_stats import reading


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e5 else f"{value:,.0f}"
    return str(value)


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={_num(v)}" for k, v in params.items())


def ranked(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Finished trials of the search phases, best first."""
    done = [t for t in trials if t["status"] == "finished" and t.get("value") is not None
            and not t["phase"].endswith("test") and t["phase"] != "holdout"]
    return sorted(done, key=lambda t: -(t.get("score") if t.get("score") is not None else -math.inf))


def format_sweep(result, top: int = 5) -> str:
    """The summary printed by ``papertape sweep``."""
    trials = result.trials
    counts: dict[str, int] = {}
    for t in trials:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    lines = [f"sweep {result.sweep_id} ({result.status}) in {result.ledger} on {result.executor}: "
             + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))]
    phase = (result.best or {}).get("phase")  # walk-forward: the last fold's search
    best = [t for t in ranked(trials) if phase is None or t["phase"] == phase][: max(top, 1)]
    if best:
        lines.append(f"  {'trial':>5} {'run':>5}  {result.objective:>12} {'return':>9} {'max dd':>8} "
                     f"{'trades':>6}  params")
        for t in best:
            m = t["metrics"] or {}
            lines.append(f"  {t['trial']:>5} {t['run_id']:>5}  {_num(t['value']):>12} "
                         f"{_num(m.get('total_return')):>9} {_num(m.get('max_drawdown')):>8} "
                         f"{m.get('n_trades', '-'):>6}  {_params(t['params'])}")
    else:
        lines.append("  no trial finished")
    holdout = (result.best or {}).get("holdout")
    if holdout:
        lines.append("  holdout (the last part of the data, kept out of the search):")
        for t in holdout["top"]:
            lines.append(f"    trial {t['trial']:>4}: in sample {_num(t['in_sample'])}, out of sample "
                         f"{_num(t['out_of_sample'])}  {_params(t['params'])}")
    walk = (result.best or {}).get("walk_forward")
    if walk:
        lines.append("  walk-forward (each fold's winner on the next block):")
        for f in walk["folds"]:
            lines.append(f"    fold {f['fold']}: in sample {_num(f['in_sample'])}, out of sample "
                         f"{_num(f['out_of_sample'])}  {_params(f['params'] or {})}")
        lines.append(f"    overall return of the traded blocks: {_num(walk['overall']['total_return'])}")
    if result.dsr:
        lines.append(f"  Deflated Sharpe Ratio {_num(result.dsr['dsr'], 3)} (best trial's per-bar Sharpe "
                     f"{_num(result.dsr['sharpe'], 3)} against {_num(result.dsr['benchmark'], 3)} expected "
                     f"from {result.dsr['n_trials']} trials without skill)")
    if result.pbo:
        lines.append(f"  Probability of Backtest Overfitting {_num(result.pbo['pbo'], 3)} "
                     f"({result.pbo['n_splits']} splits of {result.pbo['n_blocks']} blocks)")
    lines.append("  " + reading(result.dsr, result.pbo))
    return "\n".join(lines)


def heatmap_svg(trials: list[dict[str, Any]], x: str, y: str, label: str) -> str:
    """An SVG grid of the best objective at each (x, y) pair of parameter values."""
    cells: dict[tuple[Any, Any], float] = {}
    for t in trials:
        if x in t["params"] and y in t["params"] and t.get("value") is not None:
            key = (t["params"][x], t["params"][y])
            cells[key] = max(cells.get(key, -math.inf), t["value"])
    if not cells:
        return "<p>No finished trials to draw.</p>"
    xs = sorted({k[0] for k in cells}, key=_order)
    ys = sorted({k[1] for k in cells}, key=_order)
    lo, hi = min(cells.values()), max(cells.values())
    size, left, top = 44, 70, 20
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + size * len(xs) + 20}" '
             f'height="{top + size * len(ys) + 50}" role="img" aria-label="{html.escape(label)} heatmap">']
    for j, yv in enumerate(ys):
        parts.append(f'<text x="{left - 6}" y="{top + j * size + size / 2 + 4}" text-anchor="end">'
                     f'{html.escape(_num(yv))}</text>')
        for i, xv in enumerate(xs):
            value = cells.get((xv, yv))
            share = 0.5 if value is None or hi == lo else (value - lo) / (hi - lo)
            colour = "#eee" if value is None else f"hsl({int(share * 120)}, 65%, 55%)"
            tip = html.escape(f"{x}={xv} {y}={yv}: {_num(value)}")
            parts.append(f'<rect x="{left + i * size}" y="{top + j * size}" width="{size - 2}" '
                         f'height="{size - 2}" fill="{colour}"><title>{tip}</title></rect>')
    for i, xv in enumerate(xs):
        parts.append(f'<text x="{left + i * size + size / 2}" y="{top + len(ys) * size + 16}" '
                     f'text-anchor="middle">{html.escape(_num(xv))}</text>')
    parts.append(f'<text x="{left}" y="{top + len(ys) * size + 40}">{html.escape(x)} across, '
                 f'{html.escape(y)} down; red low, green high {html.escape(label)}</text></svg>')
    return "".join(parts)


def _order(value: Any) -> tuple:
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def scatter_svg(pairs: list[tuple[float, float, str]], label: str) -> str:
    """In-sample (across) against out-of-sample (up) objective, one dot per trial."""
    if not pairs:
        return "<p>This sweep kept no data out of its search (use --holdout or --walk-forward).</p>"
    xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    w, h, pad = 420, 300, 40
    dots = "".join(
        f'<circle cx="{pad + (a - x0) / (x1 - x0) * (w - 2 * pad):.1f}" '
        f'cy="{h - pad - (b - y0) / (y1 - y0) * (h - 2 * pad):.1f}" r="4" fill="#3366aa">'
        f'<title>{html.escape(name)}: in {_num(a)}, out {_num(b)}</title></circle>' for a, b, name in pairs)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" '
            f'aria-label="in-sample against out-of-sample">'
            f'<rect x="{pad}" y="{pad}" width="{w - 2 * pad}" height="{h - 2 * pad}" fill="none" '
            f'stroke="#999"/>'
            f'{dots}<text x="{w / 2}" y="{h - 8}" text-anchor="middle">in-sample {html.escape(label)} '
            f'({_num(x0)} to {_num(x1)})</text><text x="12" y="{h / 2}" transform="rotate(-90 12 {h / 2})" '
            f'text-anchor="middle">out-of-sample ({_num(y0)} to {_num(y1)})</text></svg>')


def out_of_sample_pairs(trials: list[dict[str, Any]]) -> list[tuple[float, float, str]]:
    by_key = {(t["phase"], t["trial"]): t for t in trials}
    pairs = []
    for t in trials:
        if t["phase"] == "holdout" or t["phase"].endswith(" test"):
            source = "search" if t["phase"] == "holdout" else t["phase"].removesuffix(" test")
            found = by_key.get((source, t["trial"]))
            if found and found.get("value") is not None and t.get("value") is not None:
                pairs.append((found["value"], t["value"], f"{t['phase']} trial {t['trial']}"))
    return pairs


def write_sweep_html(sweep: dict[str, Any], trials: list[dict[str, Any]], x: str | None, y: str | None,
                     out: str | Path) -> Path:
    """The sweep's page: trials table, heatmap over ``x`` and ``y``, IS vs OOS, DSR and PBO."""
    summary = sweep.get("summary") or {}
    objective = sweep["objective"]
    names = list(dict.fromkeys(k for t in trials for k in t["params"]))
    x = x or (names[0] if names else None)
    y = y or (names[1] if len(names) > 1 else x)
    searched = [t for t in trials if t["phase"] != "holdout" and not t["phase"].endswith(" test")]
    rows = "".join(
        f"<tr><td>{html.escape(t['phase'])}</td><td>{t['trial']}</td><td>{t['run_id'] or '-'}</td>"
        f"<td>{html.escape(t['status'])}</td><td>{html.escape(_params(t['params']))}</td>"
        f"<td>{_num(t.get('value'))}</td><td>{_num((t['metrics'] or {}).get('total_return'))}</td>"
        f"<td>{_num((t['metrics'] or {}).get('max_drawdown'))}</td>"
        f"<td>{(t['metrics'] or {}).get('n_trades', '-')}</td></tr>" for t in trials)
    dsr, pbo = summary.get("dsr"), summary.get("pbo")
    guard = []
    if dsr:
        guard.append(f"<li>Deflated Sharpe Ratio: <b>{_num(dsr['dsr'], 3)}</b> (best trial's per-bar Sharpe "
                     f"{_num(dsr['sharpe'], 3)}, expected best of {dsr['n_trials']} skill-less trials "
                     f"{_num(dsr['benchmark'], 3)}, skew {_num(dsr['skew'], 3)}, "
                     f"kurtosis {_num(dsr['kurtosis'], 3)})</li>")
    if pbo:
        guard.append(f"<li>Probability of Backtest Overfitting: <b>{_num(pbo['pbo'], 3)}</b> "
                     f"({pbo['n_splits']} splits of {pbo['n_blocks']} blocks)</li>")
    heat = heatmap_svg(searched, x, y, objective) if x else "<p>No parameters.</p>"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>papertape sweep {sweep['id']}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}svg text{{font-size:11px}}</style></head>
<body><h1>Sweep {sweep['id']}: {html.escape(sweep['strategy'])}, {html.escape(sweep['sampler'])} search on
{html.escape(objective)} ({html.escape(sweep['status'])})</h1>
<h2>Overfitting guard</h2><ul>{''.join(guard) or '<li>Too few finished trials.</li>'}</ul>
<p id="reading">{html.escape(reading(dsr, pbo))}</p>
<h2>{html.escape(objective)} over {html.escape(str(x))} and {html.escape(str(y))}</h2>{heat}
<h2>In sample against out of sample</h2>{scatter_svg(out_of_sample_pairs(trials), objective)}
<h2>Trials</h2><table id="trials"><tr><th>phase</th><th>trial</th><th>run</th><th>status</th><th>params</th>
<th>{html.escape(objective)}</th><th>return</th><th>max dd</th><th>trades</th></tr>{rows}</table>
</body></html>
"""
    path = Path(out)
    path.write_text(page)
    return path
