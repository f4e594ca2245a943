"""Metrics recomputed here from raw ledger rows with plain pandas, independently of
``engine.analysis.metrics``, must match what ``metrics_for_run`` reports.

The conventions are those ``engine/metrics.py`` states: simple returns between consecutive
equity snapshots starting from the initial cash; per-bar annualisation with 365 days /
bar length periods a year, daily with 365 (the last snapshot of each UTC day; one stamped
at midnight closes the day before); zero risk-free rate; Sortino's downside deviation is
the root mean square of the negative returns over all periods; round trips run from flat to
flat (a flip closes one and opens the next, its fee split by quantity) and their PnL is net
of fees; turnover is traded notional over mean equity; exposure the share of snapshots with
a position.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from engine.analysis.metrics import compute_metrics, metrics_for_run
from engine.core.clock import NS_PER_S
from engine.ledger.reader import LedgerReader
from engine.run.backtest import run_backtest
from tests.helpers.broker import T0, backtest_config, read_table, write_klines

DAY = 86_400 * NS_PER_S
YEAR_S = 365 * 86_400


def independent_metrics(path, run_id: int) -> dict:
    """Every metric from the raw rows of ``runs``, ``equity``, ``fills`` and ``funding``."""
    run = read_table(path, "SELECT * FROM runs WHERE id = ?", [run_id]).iloc[0]
    eq = read_table(path, "SELECT ts, equity, position FROM equity WHERE run_id = ? ORDER BY ts, id",
                    [run_id])
    fills = read_table(path, "SELECT * FROM fills WHERE run_id = ? ORDER BY ts_event, id", [run_id])
    funding = read_table(path, "SELECT payment FROM funding WHERE run_id = ?", [run_id])
    initial = float(run.initial_cash)
    bar_seconds = pd.Timedelta(run.interval).total_seconds()

    curve = pd.Series([initial, *eq.equity.tolist()],
                      index=pd.to_datetime([int(run.data_start), *eq.ts.tolist()], unit="ns", utc=True))
    out: dict = {"final_equity": curve.iloc[-1], "total_return": curve.iloc[-1] / initial - 1}
    years = (curve.index[-1] - curve.index[0]).total_seconds() / YEAR_S
    out["cagr"] = (curve.iloc[-1] / initial) ** (1 / years) - 1

    def stats(returns: pd.Series, per_year: float) -> dict:
        downside = math.sqrt((returns.clip(upper=0) ** 2).mean())
        return {"volatility": returns.std() * math.sqrt(per_year),
                "sharpe": returns.mean() / returns.std() * math.sqrt(per_year),
                "sortino": returns.mean() / downside * math.sqrt(per_year)}

    out |= stats(curve.pct_change().dropna(), YEAR_S / bar_seconds)
    # daily: the last snapshot of each UTC day, a snapshot at 00:00 closing the day before
    snapshots = curve.iloc[1:]
    day = (snapshots.index - pd.Timedelta(1, "ns")).floor("D")
    daily = pd.concat([curve.iloc[:1], snapshots.groupby(day).last()])
    daily_returns = daily.pct_change().dropna()
    out["daily"] = {**stats(daily_returns, 365.0), "days": len(daily_returns)}

    out["max_drawdown"] = (1 - curve / curve.cummax()).max()
    out["calmar"] = out["cagr"] / out["max_drawdown"]

    # round trips, from cash flows (not the realized column): flat -> flat, flips split
    trips, pnl, pos = [], 0.0, 0.0
    for f in fills.itertuples():
        signed = f.side * f.qty
        closing = min(f.qty, abs(pos)) if pos * signed < 0 else 0.0
        share = closing / f.qty
        pnl += -f.side * closing * f.price - f.fee * share
        opening = f.qty - closing
        new_pos = pos + signed
        if closing and (abs(new_pos) < 1e-12 or opening > 1e-12):
            trips.append(pnl)
            pnl = 0.0
        pnl += -f.side * opening * f.price - f.fee * (1 - share)
        pos = 0.0 if abs(new_pos) < 1e-12 else new_pos
    trips = np.array(trips)
    wins, losses = trips[trips > 0], trips[trips <= 0]
    out |= {
        "n_trades": len(trips),
        "win_rate": len(wins) / len(trips),
        "profit_factor": wins.sum() / -losses.sum(),
        "avg_win": wins.mean(), "avg_loss": losses.mean(),
        "exposure": (eq.position != 0).mean(),
        "turnover": (fills.qty * fills.price).abs().sum() / curve.mean(),
        "fees": fills.fee.sum(), "funding": funding.payment.sum(), "n_fills": len(fills),
    }
    return out


def trip_pnls_by_position(fills: pd.DataFrame) -> list[float]:
    """A second, simpler view of the round trips: net realized PnL between flat points."""
    out, acc = [], 0.0
    prev = 0.0
    for f in fills.itertuples():
        flipped = prev * f.position < 0
        share = abs(prev) / f.qty if flipped else 1.0
        acc += f.realized_pnl - f.fee * share
        if f.position == 0 or flipped:
            out.append(acc)
            acc = -f.fee * (1 - share)
        prev = f.position
    return out


def compare(ours: dict, theirs: dict) -> None:
    for key, value in ours.items():
        if key == "daily":
            compare(value, theirs["daily"])
            continue
        assert theirs[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


@pytest.fixture(scope="module")
def kline_run(tmp_path_factory):
    """sma_cross on 3 days of 1m klines with fees, slippage and funding."""
    d = tmp_path_factory.mktemp("metrics")
    data = d / "klines.csv"
    write_klines(data, 3 * 1440, seed=11)
    cfg = backtest_config([data], d / "ledger.db",
                          ["broker.slippage_bps=1.5", "broker.funding_rate=0.0001"],
                          fast=5, slow=20, qty=0.05)
    result = run_backtest(cfg, progress=False)
    return d / "ledger.db", result


@pytest.fixture(scope="module")
def flip_run(tmp_path_factory):
    """A long/short strategy whose round trips both flip and go flat (1x leverage, 5m bars)."""
    d = tmp_path_factory.mktemp("flip")
    data = d / "klines.csv"
    write_klines(data, 2 * 1440, seed=5, step_ms=300_000, vol=0.003)
    cfg = backtest_config([data], d / "ledger.db",
                          ["strategy.name=tests.helpers.broker:Flipper", "broker.funding_rate=-0.0002"],
                          every=5, qty=0.1, flat_every=4)
    result = run_backtest(cfg, progress=False)
    return d / "ledger.db", result


@pytest.mark.parametrize("which", ["kline_run", "flip_run"])
def test_metrics_match_an_independent_computation(which, request):
    path, result = request.getfixturevalue(which)
    ours = independent_metrics(path, result.run_id)
    reader = LedgerReader(path)
    try:
        theirs = metrics_for_run(reader, result.run_id)
    finally:
        reader.close()
    assert ours["n_trades"] >= 20 and ours["funding"] != 0.0
    compare(ours, theirs)
    assert result.metrics == theirs  # the backtest reports the ledger's metrics
    assert theirs["bars"] == len(read_table(path, "SELECT id FROM equity"))
    ann = theirs["annualisation"]
    assert ann["daily"]["periods_per_year"] == 365.0
    assert ann["bar"]["periods_per_year"] == YEAR_S / pd.Timedelta(ann["bar"]["interval"]).total_seconds()


def test_round_trips_flip_and_split_the_fee(flip_run):
    path, result = flip_run
    fills = read_table(path, "SELECT * FROM fills ORDER BY ts_event, id")
    flips = ((fills.position.shift(fill_value=0) * fills.position) < 0).sum()
    assert flips >= 5 and (fills.position == 0).sum() >= 5
    trips = trip_pnls_by_position(fills)
    assert result.metrics["n_trades"] == len(trips)
    assert result.metrics["win_rate"] == pytest.approx(np.mean(np.array(trips) > 0))
    # all trips together are the realized PnL less the fees of the closed trips
    assert sum(trips) == pytest.approx(fills.realized_pnl.sum() - _fees_of_closed(fills), abs=1e-9)


def _fees_of_closed(fills: pd.DataFrame) -> float:
    """Fees of everything but the trip still open at the end."""
    last_flat = fills.index[fills.position == 0]
    last_flip = fills.index[(fills.position.shift(fill_value=0) * fills.position) < 0]
    end = max(last_flat.max() if len(last_flat) else -1, last_flip.max() if len(last_flip) else -1)
    fees = fills.fee[: end + 1].sum()
    if end in last_flip:  # the opening part of the last flip belongs to the open trip
        prev = fills.position[end - 1]
        fees -= fills.fee[end] * (1 - abs(prev) / fills.qty[end])
    return fees


def frame(ts, equity, position=None):
    return pd.DataFrame({"ts": ts, "equity": equity,
                         "position": position if position is not None else [0.0] * len(ts)})


def test_hand_worked_curve():
    """100 -> 110 -> 99 -> 120 over three daily bars: returns +10%, -10%, +21.2121...%."""
    ts = [T0 + DAY, T0 + 2 * DAY, T0 + 3 * DAY]
    fills = pd.DataFrame({
        "qty": [1.0, 1.0, 2.0, 1.0], "price": [10.0, 12.0, 11.0, 9.0], "fee": [0.1, 0.1, 0.2, 0.1],
        "realized_pnl": [0.0, 2.0, 0.0, -2.0], "position": [1.0, 0.0, -2.0, -1.0],
    })
    m = compute_metrics(frame(ts, [110.0, 99.0, 120.0], [1.0, -2.0, 0.0]), fills,
                        pd.DataFrame({"payment": [0.5, -0.2]}),
                        initial_cash=100.0, interval="1d", start_ns=T0)
    r = np.array([0.1, -0.1, 120 / 99 - 1])
    assert m["total_return"] == pytest.approx(0.2)
    assert m["cagr"] == pytest.approx(1.2 ** (365 / 3) - 1)
    assert m["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(365))
    assert m["sortino"] == pytest.approx(r.mean() / math.sqrt(0.01 / 3) * math.sqrt(365))
    assert m["volatility"] == pytest.approx(r.std(ddof=1) * math.sqrt(365))
    assert m["daily"]["sharpe"] == pytest.approx(m["sharpe"])  # daily bars: the same series
    assert m["max_drawdown"] == pytest.approx(0.1)
    assert m["calmar"] == pytest.approx(m["cagr"] / 0.1)
    # the trip 10 -> 12 made 2 - 0.2 fees; the open short trip is not counted
    assert (m["n_trades"], m["win_rate"], m["avg_win"]) == (1, 1.0, pytest.approx(1.8))
    assert m["profit_factor"] is None and m["avg_loss"] is None
    assert m["exposure"] == pytest.approx(2 / 3)
    assert m["turnover"] == pytest.approx((10 + 12 + 22 + 9) / np.mean([100, 110, 99, 120]))
    assert (m["fees"], m["funding"], m["n_fills"], m["final_equity"]) == (
        pytest.approx(0.5), pytest.approx(0.3), 4, 120.0)


def test_drawdown_duration_runs_from_the_peak_to_the_recovery():
    """Peak 110 at day 1, below it on days 2 and 3, back above on day 4: 3 days under water;
    a one-day dip (days 5-6) lasts a day, not zero."""
    ts = [T0 + i * DAY for i in range(1, 8)]
    m = compute_metrics(frame(ts, [110.0, 100.0, 105.0, 111.0, 108.0, 112.0, 112.0]),
                        pd.DataFrame(columns=["qty", "price", "fee", "realized_pnl", "position"]),
                        pd.DataFrame(columns=["payment"]), initial_cash=100.0, interval="1d",
                        start_ns=T0)
    assert m["max_drawdown"] == pytest.approx(10 / 110)
    assert m["max_drawdown_duration_s"] == 3 * 86_400
    m = compute_metrics(frame(ts[:2], [110.0, 105.0]), pd.DataFrame(columns=["qty"]),
                        pd.DataFrame(columns=["payment"]), initial_cash=100.0, interval="1d",
                        start_ns=T0)
    assert m["max_drawdown_duration_s"] == 86_400  # still under water at the end


def test_no_trades_and_too_few_snapshots():
    empty_fills = pd.DataFrame(columns=["qty", "price", "fee", "realized_pnl", "position"])
    m = compute_metrics(frame([T0 + 60 * NS_PER_S], [100.0]), empty_fills,
                        pd.DataFrame(columns=["payment"]), initial_cash=100.0, interval="1m",
                        start_ns=T0)
    assert m["total_return"] == 0.0 and m["max_drawdown"] == 0.0
    assert m["win_rate"] is None and m["profit_factor"] is None and m["n_trades"] == 0
    assert m["sharpe"] is None and m["sortino"] is None  # one return: no deviation
    assert m["fees"] == 0.0 and m["turnover"] == 0.0 and m["exposure"] == 0.0
    flat = compute_metrics(frame([T0 + 60 * NS_PER_S * i for i in (1, 2, 3)], [100.0] * 3), empty_fills,
                           pd.DataFrame(columns=["payment"]), initial_cash=100.0, interval="1m",
                           start_ns=T0)
    assert flat["sharpe"] is None and flat["volatility"] == 0.0 and flat["sortino"] is None


def test_drawdown_duration_against_a_plain_loop():
    from engine.analysis.metrics import drawdown

    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(1, 60))
        equity = np.round(100 + np.cumsum(rng.normal(0, 1, n)), 0)  # ties with the peak happen
        ts = np.cumsum(rng.integers(1, 10, n)).astype(np.int64) * NS_PER_S
        # time from each peak to the recovery (or the end)
        durations, start = [], None
        peak = -math.inf
        for i, value in enumerate(equity):
            if value >= peak:
                if start is not None:
                    durations.append(ts[i] - ts[start])
                    start = None
                peak = value
                last_peak = i
            elif start is None:
                start = last_peak
        if start is not None:
            durations.append(ts[-1] - ts[start])
        depth, seconds = drawdown(equity, ts)
        assert seconds == (max(durations) if durations else 0) / NS_PER_S
        assert depth == pytest.approx(max(0.0, float(np.max(1 - equity / np.maximum.accumulate(equity)))))
