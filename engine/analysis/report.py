"""Human-readable output: the metrics table printed after a backtest and by ``report``,
and the list of runs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd

from engine.core.clock import NS_PER_S

METRIC_ROWS = (
    ("total_return", "Total return", "pct"),
    ("cagr", "CAGR", "pct"),
    ("volatility", "Volatility (ann.)", "pct"),
    ("sharpe", "Sharpe", "num"),
    ("sortino", "Sortino", "num"),
    ("max_drawdown", "Max drawdown", "pct"),
    ("max_drawdown_duration_s", "Max drawdown duration", "dur"),
    ("calmar", "Calmar", "num"),
    ("win_rate", "Win rate", "pct"),
    ("profit_factor", "Profit factor", "num"),
    ("avg_win", "Average win", "money"),
    ("avg_loss", "Average loss", "money"),
    ("exposure", "Exposure", "pct"),
    ("turnover", "Turnover (x mean equity)", "num"),
    ("fees", "Fees paid", "money"),
    ("funding", "Funding paid", "money"),
    ("n_trades", "Round trips", "int"),
    ("n_fills", "Fills", "int"),
    ("final_equity", "Final equity", "money"),
)


def format_value(value: Any, kind: str) -> str:
    if value is None:
        return "n/a"
    if kind == "pct":
        return f"{value * 100:.2f}%"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "dur":
        return format_duration(value)
    return f"{value:.3f}"


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    return f"{days}d {hours:02d}h{minutes:02d}m" if days else f"{hours:02d}h{minutes:02d}m"


def format_metrics(metrics: dict[str, Any], title: str = "") -> str:
    """The metrics as an aligned two-column table, with the annualisation stated."""
    lines = [title] if title else []
    width = max(len(label) for _, label, _ in METRIC_ROWS)
    for key, label, kind in METRIC_ROWS:
        lines.append(f"  {label:<{width}}  {format_value(metrics.get(key), kind):>16}")
    daily = metrics.get("daily") or {}
    sharpe, sortino = format_value(daily.get("sharpe"), "num"), format_value(daily.get("sortino"), "num")
    days = daily.get("days")
    few = f"   (from {days} daily returns: too few to mean much)" if days is not None and days < 30 else ""
    lines.append(f"  {'Sharpe / Sortino (daily)':<{width}}  {sharpe:>7} / {sortino:>6}{few}")
    ann = (metrics.get("annualisation") or {}).get("bar", {})
    per_year = ann.get("periods_per_year")
    if per_year:
        lines.append(f"  Annualised per {ann.get('interval')} bar: {per_year:,.0f} periods a year "
                     "(365-day calendar); daily basis: 365.")
    return "\n".join(lines)


def format_by_symbol(by_symbol: dict[str, dict[str, Any]]) -> str:
    """A portfolio's per-symbol table: fills, round trips, win rate, PnL, fees, funding, exposure."""
    width = max(8, *map(len, by_symbol))
    lines = [f"  {'symbol':<{width}} {'fills':>7} {'trades':>7} {'win rate':>9} {'pnl':>12} {'fees':>10} "
             f"{'funding':>10} {'exposure':>9}"]
    for symbol, m in by_symbol.items():
        lines.append(f"  {symbol:<{width}} {m['fills']:>7,} {m['trades']:>7,} "
                     f"{format_value(m.get('win_rate'), 'pct'):>9} {format_value(m['pnl'], 'money'):>12} "
                     f"{format_value(m['fees'], 'money'):>10} {format_value(m['funding'], 'money'):>10} "
                     f"{format_value(m.get('exposure'), 'pct'):>9}")
    return "\n".join(lines)


def format_time(ns: int | None) -> str:
    if ns is None or pd.isna(ns):
        return "-"
    return datetime.fromtimestamp(int(ns) / NS_PER_S, tz=UTC).strftime("%Y-%m-%d %H:%M")


def format_runs(runs: pd.DataFrame) -> str:
    """One line per run: id, kind, status, strategy, market, data range, start time."""
    if runs.empty:
        return "no runs in this ledger"
    markets = [f"{r.symbol} {r.interval}" for r in runs.itertuples()]
    width = max(16, *map(len, markets))  # a portfolio lists all its symbols
    header = (f"{'id':>4}  {'kind':<8} {'status':<11} {'strategy':<16} {'market':<{width}} {'data':<33} "
              "started")
    lines = [header]
    for r, market in zip(runs.itertuples(), markets, strict=True):
        started = datetime.fromtimestamp(r.started_at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        data = f"{format_time(r.data_start)} .. {format_time(r.data_end)}"
        lines.append(f"{r.id:>4}  {r.kind:<8} {r.status:<11} {r.strategy[:16]:<16} "
                     f"{market:<{width}} {data:<33} {started}")
    return "\n".join(lines)
