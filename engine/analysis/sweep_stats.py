"""A sweep's figures from its trials: the objective of each, the best trial, and the
overfitting guard (Deflated Sharpe of the best trial, PBO over all of them) computed from
the trials' per-bar returns as the ledger holds them."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from engine.analysis.metrics import METRIC_KEYS, portfolio_curve
from engine.analysis.overfitting import deflated_sharpe, probability_of_overfitting, sharpe
from engine.core.typed import ConfigError

# metrics where less is better: a sweep on them minimises
LOWER_IS_BETTER = frozenset({"max_drawdown", "max_drawdown_duration_s", "volatility", "fees", "funding",
                             "turnover", "daily.volatility"})
DAILY_KEYS = ("volatility", "sharpe", "sortino")
SIGNIFICANT = 0.95


def check_objective(name: str) -> str:
    """``name`` if it is a metric a sweep can optimise (``sharpe``, ``daily.sharpe``, ...)."""
    known = [k for k in METRIC_KEYS] + [f"daily.{k}" for k in DAILY_KEYS]
    if name not in known:
        raise ConfigError(f"--objective {name!r} is not a metric (one of: {', '.join(known)})")
    return name


def metric(metrics: dict[str, Any] | None, name: str) -> float | None:
    """A metric by name (``daily.sharpe`` reaches into the daily table); None when absent."""
    value: Any = metrics
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def score(metrics: dict[str, Any] | None, objective: str) -> float | None:
    """The objective oriented so that larger is better (a minimised metric negated)."""
    value = metric(metrics, objective)
    if value is None:
        return None
    return -value if objective in LOWER_IS_BETTER else value


def best_trial(trials: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The finished trial with the highest score (the first of equals), or None."""
    scored = [t for t in trials if t["status"] == "finished" and t.get("score") is not None]
    return max(scored, key=lambda t: t["score"]) if scored else None


def trial_returns(reader, run_ids: list[int]) -> pd.DataFrame:
    """Per-bar simple returns of each run (columns: run ids), aligned on the bars every run
    has; the first return is from the run's initial cash."""
    columns = {}
    for run_id in run_ids:
        curve = portfolio_curve(reader.equity_curve([run_id]))
        cash = float(reader.run(run_id)["initial_cash"])
        equity = np.concatenate(([cash], curve["equity"].to_numpy(np.float64)))
        with np.errstate(divide="ignore", invalid="ignore"):
            returns = equity[1:] / equity[:-1] - 1.0
        columns[run_id] = pd.Series(np.nan_to_num(returns, nan=0.0, posinf=0.0, neginf=0.0),
                                    index=curve["ts"].to_numpy())
    frame = pd.DataFrame(columns)
    return frame.dropna()


def overfitting(reader, trials: list[dict[str, Any]]) -> tuple[dict | None, dict | None]:
    """The DSR of the best finished trial (against the Sharpe ratios of every finished
    trial) and the PBO of the finished trials; None where there are too few trials or bars."""
    finished = [t for t in trials if t["status"] in ("finished", "discarded") and t.get("run_id")]
    best = best_trial(trials)
    if best is None or len(finished) < 2:
        return None, None
    returns = trial_returns(reader, [t["run_id"] for t in finished])
    if len(returns) < 4:
        return None, None
    sharpes = [sharpe(returns[t["run_id"]].to_numpy()) for t in finished]
    dsr = deflated_sharpe(returns[best["run_id"]].to_numpy(), sharpes).to_json()
    significant = dsr["dsr"] is not None and dsr["dsr"] > SIGNIFICANT
    dsr |= {"run_id": best["run_id"], "significant": bool(significant)}
    blocks = min(16, (len(returns) // 2) // 2 * 2)
    pbo = None
    if blocks >= 2:
        out = probability_of_overfitting(returns.to_numpy(), n_blocks=blocks).to_json()
        logits = out.pop("logits")
        pbo = out | {"median_logit": float(np.median(logits)), "ranked_by": "per-bar Sharpe"}
    return _finite(dsr), pbo


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()}


def reading(dsr: dict | None, pbo: dict | None) -> str:
    """A sentence on how to read the DSR and PBO of a sweep."""
    parts = []
    if dsr is not None and dsr.get("dsr") is not None:
        parts.append(
            f"The Deflated Sharpe Ratio of {dsr['dsr']:.2f} is the probability that the best trial's "
            f"true Sharpe ratio is above zero after allowing for {dsr['n_trials']} trials and the skew "
            f"and fat tails of its returns; below {SIGNIFICANT} its edge is "
            + ("not distinguishable from luck." if not dsr["significant"] else "unlikely to be luck alone."))
    if pbo is not None:
        parts.append(
            f"The Probability of Backtest Overfitting of {pbo['pbo']:.2f} is how often the best trial of "
            f"one half of the bars ranked at or below the median on the other half ({pbo['n_splits']} "
            "splits): near 0.5 or above, picking the best trial is no better than picking at random.")
    return " ".join(parts) or "Too few finished trials or bars for the DSR and PBO."


def valued(trials: list[dict[str, Any]], objective: str) -> list[dict[str, Any]]:
    """Trials as the ledger holds them (``objective`` oriented larger-is-better) with
    ``score`` (that) and ``value`` (the metric itself) for reports."""
    out = []
    for t in trials:
        s = t.get("objective")
        value = None if s is None else (-s if objective in LOWER_IS_BETTER else s)
        out.append({**t, "score": s, "value": value})
    return out
