"""Performance metrics computed only from ledger rows (equity snapshots, fills, funding).

Returns are simple returns between consecutive equity snapshots, starting from the run's
initial cash. Two bases are reported: per bar, annualised with ``periods_per_year`` =
365 days / bar length (crypto trades every day), and daily (the last equity of each UTC
day, 365 periods a year). Sharpe and Sortino use a zero risk-free rate; Sortino's downside
deviation is the root mean square of the negative returns over all periods.

A round-trip trade runs from a flat position to the next flat position (a fill that flips
the position closes one trade and opens the next); its PnL is realized PnL minus the fees
of its fills (a flipping fill's fee is split by quantity). ``turnover`` is traded notional
divided by mean equity; ``exposure`` the share of snapshots with an open position.

A portfolio records one snapshot per symbol's bar: the portfolio's curve takes the last
snapshot of each close time (the account after every symbol's bar was handled), its
exposure the share of close times with any position open, and round trips are counted
per symbol.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from engine.bars.aggregator import parse_interval
from engine.core.clock import NS_PER_S

SECONDS_PER_YEAR = 365 * 86400
METRIC_KEYS = (
    "total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown",
    "max_drawdown_duration_s", "calmar", "win_rate", "profit_factor", "avg_win", "avg_loss",
    "exposure", "turnover", "fees", "funding", "n_trades", "n_fills", "final_equity",
)


def periods_per_year(interval: str, equity_ts: np.ndarray) -> float:
    """Bars per year: exact for time bars, observed bar rate for tick/volume/value bars."""
    spec = parse_interval(interval)
    if spec.is_time:
        return SECONDS_PER_YEAR * NS_PER_S / spec.size
    span = (equity_ts[-1] - equity_ts[0]) / NS_PER_S if len(equity_ts) > 1 else 0
    return (len(equity_ts) - 1) * SECONDS_PER_YEAR / span if span > 0 else float("nan")


def return_stats(returns: np.ndarray, per_year: float) -> dict[str, float | None]:
    """Annualised volatility, Sharpe and Sortino of a return series."""
    if len(returns) < 2 or not math.isfinite(per_year):
        return {"volatility": None, "sharpe": None, "sortino": None}
    mean = float(returns.mean())
    std = float(returns.std(ddof=1))
    losses = np.minimum(returns, 0.0)
    downside = float(np.sqrt(np.mean(np.square(losses, out=losses))))
    root = math.sqrt(per_year)
    return {
        "volatility": std * root,
        "sharpe": mean / std * root if std > 0 else None,
        "sortino": mean / downside * root if downside > 0 else None,
    }


def drawdown(equity: np.ndarray, ts: np.ndarray) -> tuple[float, float]:
    """Largest peak-to-trough fall as a positive fraction, and the longest time in seconds
    spent below a previous peak: from the peak's snapshot to the first snapshot back at or
    above it (or to the last snapshot, if it never got back). Works in place where it can:
    at most two curve-long temporaries at a time (there were seven, 65 bytes a snapshot)."""
    if len(equity) == 0:
        return 0.0, 0.0
    peaks = np.maximum.accumulate(equity)
    below = equity < peaks
    ratio = np.divide(equity, peaks, out=peaks)
    depth = 1.0 - float(np.min(ratio))  # the largest 1 - ratio: 1 - x falls as x rises
    del peaks, ratio
    if not below.any():
        return max(depth, 0.0), 0.0
    peak_at = np.arange(len(equity))
    peak_at[below] = 0
    peak_ts = ts[np.maximum.accumulate(peak_at, out=peak_at)]  # when each snapshot's peak was set
    del peak_at
    back = np.flatnonzero(below[:-1] & ~below[1:]) + 1  # the snapshots that recovered
    recovered = int((ts[back] - peak_ts[back - 1]).max()) if len(back) else 0
    under = np.subtract(ts, peak_ts, out=peak_ts)  # time under water, where still below
    first = under[np.argmax(below)]  # a value under water: the max over those starts there
    longest = max(int(np.max(under, where=below, initial=first)), recovered)
    return max(depth, 0.0), longest / NS_PER_S


def round_trips(fills: pd.DataFrame) -> np.ndarray:
    """Net PnL of each closed round trip, from fills' realized PnL, fees and positions."""
    pnls: list[float] = []
    current = 0.0
    prev_pos = 0.0
    for qty, fee, realized, pos in zip(fills.qty.tolist(), fills.fee.tolist(),
                                       fills.realized_pnl.tolist(), fills.position.tolist(),
                                       strict=True):
        flipped = prev_pos != 0.0 and pos != 0.0 and (pos > 0) != (prev_pos > 0)
        closing_share = abs(prev_pos) / qty if flipped else 1.0
        current += realized - fee * closing_share
        if pos == 0.0 or flipped:
            pnls.append(current)
            current = -fee * (1.0 - closing_share) if flipped else 0.0
        prev_pos = pos
    return np.array(pnls)


def compute_metrics(
    equity: pd.DataFrame,
    fills: pd.DataFrame,
    funding: pd.DataFrame,
    *,
    initial_cash: float,
    interval: str,
    start_ns: int,
) -> dict[str, Any]:
    """The metrics table for equity snapshots (``ts``, ``equity``, ``position``), fills
    (``qty``, ``price``, ``fee``, ``realized_pnl``, ``position``, and ``symbol`` in a
    portfolio) and funding (``payment``)."""
    curve = curve_metrics(equity, initial_cash=initial_cash, interval=interval, start_ns=start_ns)
    return fill_metrics(curve, fills, funding)


def curve_metrics(equity: pd.DataFrame, *, initial_cash: float, interval: str, start_ns: int) -> dict[str, Any]:
    """What :func:`compute_metrics` takes from the equity snapshots alone, for
    :func:`fill_metrics` to finish: a run's curve and its fills need not be held at once."""
    equity = portfolio_curve(equity)
    eq = equity["equity"].to_numpy(dtype=np.float64)
    ts = equity["ts"].to_numpy(dtype=np.int64)
    curve = np.concatenate(([initial_cash], eq))
    curve_ts = np.concatenate(([start_ns], ts))
    final = float(curve[-1])
    total = final / initial_cash - 1.0
    years = (curve_ts[-1] - curve_ts[0]) / NS_PER_S / SECONDS_PER_YEAR
    cagr = float((final / initial_cash) ** (1.0 / years) - 1.0) if years > 0 and final > 0 else None
    per_year = periods_per_year(interval, ts) if len(ts) else float("nan")
    exposure = float((equity["position"] != 0).mean()) if len(equity) else 0.0
    snapshots = len(eq)
    del equity, eq, ts  # the curve is copied out: the frame goes, unless the caller keeps it
    with np.errstate(divide="ignore", invalid="ignore"):
        bar_returns = curve[1:] / curve[:-1]
        bar_returns -= 1.0
    stats = return_stats(bar_returns, per_year)
    del bar_returns
    daily = daily_equity(curve, curve_ts)
    daily_stats = return_stats(daily[1:] / daily[:-1] - 1.0, 365.0)
    max_dd, dd_seconds = drawdown(curve, curve_ts)
    return {"total": total, "cagr": cagr, "stats": stats, "max_dd": max_dd, "dd_seconds": dd_seconds,
            "exposure": exposure, "mean_equity": float(curve.mean()), "final": final, "interval": interval,
            "per_year": per_year, "daily_stats": daily_stats, "days": int(max(len(daily) - 1, 0)),
            "snapshots": snapshots}


def fill_metrics(curve: dict[str, Any], fills: pd.DataFrame, funding: pd.DataFrame) -> dict[str, Any]:
    """The metrics table from :func:`curve_metrics` of the snapshots, the fills and funding."""
    trips = trips_of(fills)
    wins, losses = trips[trips > 0], trips[trips <= 0]
    traded = float(np.abs(fills.qty * fills.price).sum()) if len(fills) else 0.0
    cagr, max_dd = curve["cagr"], curve["max_dd"]
    metrics = {
        "total_return": curve["total"],
        "cagr": cagr,
        **curve["stats"],
        "max_drawdown": max_dd,
        "max_drawdown_duration_s": curve["dd_seconds"],
        "calmar": cagr / max_dd if cagr is not None and max_dd > 0 else None,
        "win_rate": len(wins) / len(trips) if len(trips) else None,
        "profit_factor": float(wins.sum() / -losses.sum()) if losses.sum() < 0 else None,
        "avg_win": float(wins.mean()) if len(wins) else None,
        "avg_loss": float(losses.mean()) if len(losses) else None,
        "exposure": curve["exposure"],
        "turnover": traded / curve["mean_equity"],
        "fees": float(fills.fee.sum()) if len(fills) else 0.0,
        "funding": float(funding.payment.sum()) if len(funding) else 0.0,
        "n_trades": int(len(trips)),
        "n_fills": int(len(fills)),
        "final_equity": curve["final"],
        "annualisation": {
            "bar": {"interval": curve["interval"], "periods_per_year": curve["per_year"]},
            "daily": {"periods_per_year": 365.0},
            "calendar": "365-day year, returns from equity snapshots at bar closes",
        },
        "daily": {**curve["daily_stats"], "days": curve["days"]},
        "bars": int(curve["snapshots"]),
    }
    return {k: _clean(v) for k, v in metrics.items()}


def portfolio_curve(equity: pd.DataFrame) -> pd.DataFrame:
    """One snapshot per time: the last equity of each ``ts`` and whether any position was
    open then (a one-symbol curve, with one snapshot a time, comes back as it is)."""
    ts = equity["ts"].to_numpy(dtype=np.int64)
    if len(ts) < 2 or bool((ts[1:] != ts[:-1]).all()):
        return equity
    last = np.append(ts[1:] != ts[:-1], True)
    starts = np.flatnonzero(np.concatenate(([True], last[:-1])))
    open_any = np.logical_or.reduceat(equity["position"].to_numpy() != 0, starts)
    del starts
    return pd.DataFrame({"ts": ts[last], "equity": equity["equity"].to_numpy()[last],  # new arrays: no copy
                         "position": open_any.astype(np.float64)}, copy=False)


def trips_of(fills: pd.DataFrame) -> np.ndarray:
    """Round-trip PnLs of every symbol's fills (each symbol's position is its own)."""
    if not len(fills):
        return np.empty(0)
    if "symbol" not in fills.columns or fills["symbol"].nunique() < 2:
        return round_trips(fills)
    return np.concatenate([round_trips(fills.take(rows)) for _, rows in symbol_rows(fills["symbol"])])


def symbol_rows(symbols: pd.Series) -> Iterator[tuple[Any, np.ndarray]]:
    """Each symbol and the positions of its rows, in order, symbols in the order they first
    appear (as ``groupby(sort=False)`` has them), one at a time: a groupby's groups of 390,000
    fills took 100 bytes a fill at once."""
    codes, uniques = pd.factorize(symbols, sort=False)
    for k, symbol in enumerate(uniques):
        yield symbol, np.flatnonzero(codes == k)


def daily_equity(curve: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """The starting equity, then the last snapshot of each UTC day (``curve[0]`` is the
    start; a snapshot stamped exactly at midnight closes the day before)."""
    if len(curve) < 2:
        return curve[:1]
    days = ts[1:] - 1
    days //= 86400 * NS_PER_S
    last = np.append(np.flatnonzero(np.diff(days)), len(days) - 1) + 1
    return np.concatenate((curve[:1], curve[last]))


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def metrics_for_run(reader, run_id: int) -> dict[str, Any]:
    """Metrics of a run (and the runs it resumed) read from its ledger."""
    ids = reader.chain(run_id)
    first = reader.run(ids[0])
    # only the columns the metrics use (a run can have 10^6 snapshots), the curve first and
    # then the fills, never both at once; the curve reduced here, so the one read is not kept
    curve = curve_metrics(portfolio_curve(reader.equity_curve(ids)), initial_cash=first["initial_cash"],
                          interval=first["interval"], start_ns=first["data_start"])
    return fill_metrics(curve, reader.fill_numbers(ids), reader.funding(ids, "payment"))


def forecasts_for_run(reader, run_id: int) -> dict[str, Any] | None:
    """A model run's forecasts (and the runs it resumed): how many, how many dropped as late,
    and the median and p99 latency from bar close to forecast in ms; None without any."""
    frame = reader.table("predictions", reader.chain(run_id), "id", "latency_ns, dropped")
    if frame.empty:
        return None
    latency_ms = frame["latency_ns"].to_numpy(np.float64) / 1e6
    return {"forecasts": len(frame), "dropped": int(frame["dropped"].sum()),
            "latency_ms_median": float(np.median(latency_ms)),
            "latency_ms_p99": float(np.percentile(latency_ms, 99))}
