"""The run page's data read from a real backtest's ledger: equity beside buy-and-hold, drawdown,
daily returns, fills per symbol, and the orders/rejections/gaps/forecasts tables."""

import sqlite3

import numpy as np
import pytest

from engine.analysis.metrics import metrics_for_run
from engine.dashboard import run_data
from engine.dashboard.series_cache import SeriesCache
from engine.ledger.reader import LedgerReader
from tests.dashboard.test_server import HOSTILE
from tests.helpers.ledgers import SECOND, as_two_symbols, sample_ledger


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    path = sample_ledger(tmp_path_factory.mktemp("ledger") / "l.db", 5, 8)
    as_two_symbols(path, 2)
    with sqlite3.connect(path) as db:  # a model run's forecasts and a refused order
        db.executemany("INSERT INTO predictions (run_id, strategy_id, ts_event, ts_init, latency_ns, "
                       "dropped, \"values\") VALUES (2, 'model', ?, ?, ?, ?, ?)",
                       [(t * 60 * 10**9, t * 60 * 10**9 + lat, lat, int(lat > 10**9), HOSTILE)
                        for t, lat in ((1, 2 * 10**6), (2, 4 * 10**6), (3, 3 * 10**9))])
        db.execute("INSERT INTO order_updates (run_id, client_order_id, status, reason, ts_event, ts_init) "
                   "VALUES (2, 'x-1', 'rejected', ?, 5, 5)", (HOSTILE,))
    reader = LedgerReader(path)
    yield reader
    reader.close()


def test_curves_start_at_the_cash_and_hold_the_metrics_extremes(reader):
    cache = SeriesCache()
    c = run_data.curves(reader, cache, 1, 5000)
    run = reader.run(1)
    metrics = metrics_for_run(reader, 1)
    assert c["equity"]["v"][0] == run["initial_cash"] == c["benchmark"]["v"][0]
    assert c["equity"]["v"][-1] == pytest.approx(metrics["final_equity"])
    assert -min(c["drawdown"]["v"]) == pytest.approx(metrics["max_drawdown"])
    bars = reader.bars([1])
    held = run["initial_cash"] * bars.close.iloc[-1] / bars.open.iloc[0]
    assert c["benchmark"]["v"][-1] == pytest.approx(held)
    assert len(c["daily"]["t"]) == len(c["daily"]["v"]) == 1  # one UTC day of data


def test_a_long_curve_is_cut_to_the_width_and_keeps_its_extremes(reader):
    whole = run_data.curves(reader, SeriesCache(), 1, 5000)
    cut = run_data.curves(reader, SeriesCache(), 1, 50)
    assert len(cut["equity"]["t"]) <= 102 < len(whole["equity"]["t"])
    assert min(cut["drawdown"]["v"]) == min(whole["drawdown"]["v"])
    assert max(cut["equity"]["v"]) == max(whole["equity"]["v"])


def test_a_portfolio_benchmark_splits_the_cash_over_its_symbols(reader):
    c = run_data.curves(reader, SeriesCache(), 2, 5000)
    ts, equity = SeriesCache().curve(reader, 2)
    assert len(np.unique(ts)) == len(ts)  # one snapshot per close time, not one per symbol's bar
    bars = reader.bars([2])
    first = bars[bars.symbol != SECOND]
    # the copy is at half the price: its return equals the first symbol's, so the mean does too
    assert c["benchmark"]["v"][-1] == pytest.approx(reader.run(2)["initial_cash"] * first.close.iloc[-1]
                                                    / first.open.iloc[0])


def test_fills_filter_by_symbol_and_window_and_thin_for_markers(reader):
    every = run_data.fills(reader, 2, None, None, None, 10_000, spread=False)
    eth = run_data.fills(reader, 2, SECOND, None, None, 10_000, spread=False)
    assert 0 < eth["total"] < every["total"] and {f["symbol"] for f in eth["rows"]} == {SECOND}
    stamps = [f["ts"] for f in every["rows"]]
    assert stamps == sorted(stamps)
    start, end = stamps[10], stamps[20]
    window = run_data.fills(reader, 2, None, start, end, 10_000, spread=False)
    assert all(start <= f["ts"] <= end for f in window["rows"]) and window["total"] >= 11
    markers = run_data.fills(reader, 2, None, None, None, 7, spread=True)
    assert len(markers["rows"]) == 7 and markers["rows"][0]["ts"] == stamps[0]
    assert markers["rows"][-1]["ts"] == stamps[-1]
    latest = run_data.fills(reader, 2, None, None, None, 5, spread=False)
    assert [f["ts"] for f in latest["rows"]] == stamps[-5:]
    for key in ("client_order_id", "side", "price", "qty", "fee", "realized_pnl"):
        assert key in latest["rows"][0]


def test_tables_give_each_order_its_last_status(reader):
    t = run_data.tables(reader, 1, 500)
    fills = reader.fills([1])
    assert t["orders"]["total"] == len(fills) and {o["status"] for o in t["orders"]["rows"]} == {"filled"}
    assert t["rejections"] == {"total": 0, "rows": []} and t["gaps"]["total"] == 0
    assert t["forecasts"]["total"] == 0
    few = run_data.tables(reader, 1, 3)
    assert len(few["orders"]["rows"]) == 3 and few["orders"]["rows"][-1] == t["orders"]["rows"][-1]


def test_forecasts_and_rejections_are_listed_with_their_latency(reader):
    t = run_data.tables(reader, 2, 500)
    assert t["rejections"]["total"] == 1 and t["rejections"]["rows"][0]["reason"] == HOSTILE
    forecasts = t["forecasts"]["rows"]
    assert t["forecasts"]["total"] == 3 and [f["latency_ms"] for f in forecasts] == [2.0, 4.0, 3000.0]
    assert [f["dropped"] for f in forecasts] == [0, 0, 1] and forecasts[0]["values"] == HOSTILE
