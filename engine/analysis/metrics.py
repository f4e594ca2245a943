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
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd

from engine.analysis.curve_fold import Chunk, Drawdown, fold_curve
from engine.analysis.fill_fold import FillFold, RoundTrips, fold_fills
from engine.bars.aggregator import parse_interval
from engine.core.clock import NS_PER_S
from engine.ledger.reader import frame_fill_blocks, frame_passes

SECONDS_PER_YEAR = 365 * 86400
METRIC_KEYS = (
    "total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown",
    "max_drawdown_duration_s", "calmar", "win_rate", "profit_factor", "avg_win", "avg_loss",
    "exposure", "turnover", "fees", "funding", "n_trades", "n_fills", "final_equity",
)


def periods_per_year(interval: str, count: int, first_ns: np.int64, last_ns: np.int64) -> float:
    """Bars per year: exact for time bars, observed bar rate for tick/volume/value bars (of
    ``count`` snapshots from ``first_ns`` to ``last_ns``)."""
    spec = parse_interval(interval)
    if spec.is_time:
        return SECONDS_PER_YEAR * NS_PER_S / spec.size
    span = (last_ns - first_ns) / NS_PER_S if count > 1 else 0
    return (count - 1) * SECONDS_PER_YEAR / span if span > 0 else float("nan")


def return_stats(returns: np.ndarray, per_year: float) -> dict[str, float | None]:
    """Annualised volatility, Sharpe and Sortino of a return series."""
    if len(returns) < 2 or not math.isfinite(per_year):
        return annualised(len(returns), 0.0, 0.0, 0.0, per_year)
    mean = float(returns.mean())
    std = float(returns.std(ddof=1))
    losses = np.minimum(returns, 0.0)
    downside = float(np.sqrt(np.mean(np.square(losses, out=losses))))
    return annualised(len(returns), mean, std, downside, per_year)


def annualised(n: int, mean: float, std: float, downside: float, per_year: float) -> dict[str, float | None]:
    """:func:`return_stats` from ``n`` returns' mean, standard deviation and downside deviation."""
    if n < 2 or not math.isfinite(per_year):
        return {"volatility": None, "sharpe": None, "sortino": None}
    root = math.sqrt(per_year)
    return {
        "volatility": std * root,
        "sharpe": mean / std * root if std > 0 else None,
        "sortino": mean / downside * root if downside > 0 else None,
    }


def drawdown(equity: np.ndarray, ts: np.ndarray) -> tuple[float, float]:
    """Largest peak-to-trough fall as a positive fraction, and the longest time in seconds
    spent below a previous peak: from the peak's snapshot to the first snapshot back at or
    above it (or to the last snapshot, if it never got back)."""
    if len(equity) == 0:
        return 0.0, 0.0
    fold = Drawdown()
    fold.add(equity, ts)
    return fold.result()


def round_trips(fills: pd.DataFrame) -> np.ndarray:
    """Net PnL of each closed round trip, from fills' realized PnL, fees and positions."""
    trips = RoundTrips()
    trips.add(fills.qty.to_numpy(), fills.fee.to_numpy(), fills.realized_pnl.to_numpy(),
              fills.position.to_numpy())
    return trips.result()


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


def curve_metrics(equity: pd.DataFrame, *, initial_cash: float, interval: str,
                  start_ns: int) -> dict[str, Any]:
    """What :func:`compute_metrics` takes from the equity snapshots alone, for
    :func:`fill_metrics` to finish: a run's curve and its fills need not be held at once."""
    return folded_curve_metrics(frame_passes(equity), initial_cash=initial_cash, interval=interval,
                                start_ns=start_ns)


def folded_curve_metrics(passes: Callable[[], Iterable[Chunk]], *, initial_cash: float, interval: str,
                         start_ns: int) -> dict[str, Any]:
    """:func:`curve_metrics` of the snapshots' chunks ``(ts, equity, position != 0)`` in time
    order, which ``passes()`` gives afresh at each call (see :func:`fold_curve`)."""
    folded = fold_curve(passes, initial_cash=initial_cash, start_ns=start_ns)
    n, final = folded["n"], folded["final"]
    first_ns, last_ns = np.int64(start_ns), np.int64(folded["last_ts"] if n else start_ns)
    total = final / initial_cash - 1.0
    years = (last_ns - first_ns) / NS_PER_S / SECONDS_PER_YEAR
    cagr = float((final / initial_cash) ** (1.0 / years) - 1.0) if years > 0 and final > 0 else None
    per_year = periods_per_year(interval, n, np.int64(folded["first_ts"]), last_ns) if n else float("nan")
    mean = float(folded["returns"] / n) if n else math.nan
    downside = float(np.sqrt(folded["losses"] / n)) if n else math.nan
    stats = annualised(n, mean, folded["std"], downside, per_year)
    daily = folded["daily"]
    max_dd, dd_seconds = folded["drawdown"]
    return {"total": total, "cagr": cagr, "stats": stats, "max_dd": max_dd, "dd_seconds": dd_seconds,
            "exposure": folded["opened"] / n if n else 0.0, "mean_equity": folded["mean_equity"],
            "final": final, "interval": interval, "per_year": per_year,
            "daily_stats": return_stats(daily[1:] / daily[:-1] - 1.0, 365.0),
            "days": int(max(len(daily) - 1, 0)), "snapshots": n}


def fill_metrics(curve: dict[str, Any], fills: pd.DataFrame, funding: pd.DataFrame) -> dict[str, Any]:
    """The metrics table from :func:`curve_metrics` of the snapshots, the fills and funding."""
    return folded_metrics(curve, fold_fills(*frame_fill_blocks(fills)), funding)


def folded_metrics(curve: dict[str, Any], fills: FillFold, funding: pd.DataFrame) -> dict[str, Any]:
    """:func:`fill_metrics` of the fills folded (:func:`~engine.analysis.fill_fold.fold_fills`)."""
    trips = fills.all_trips()
    wins, losses = trips[trips > 0], trips[trips <= 0]
    traded = float(fills.traded.total()) if fills.n else 0.0
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
        "fees": float(fills.fees.total()) if fills.n else 0.0,
        "funding": float(funding.payment.sum()) if len(funding) else 0.0,
        "n_trades": int(len(trips)),
        "n_fills": int(fills.n),
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
    # the curve folded a chunk at a time (a run can have 10^6 snapshots), then the fills
    curve = folded_curve_metrics(reader.curve_passes(ids), initial_cash=first["initial_cash"],
                                 interval=first["interval"], start_ns=first["data_start"])
    return folded_metrics(curve, fold_fills(*reader.fill_blocks(ids)), reader.funding(ids, "payment"))


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
