"""The run page's data read from a real backtest's ledger: equity beside buy-and-hold, drawdown,
daily returns, fills per symbol, and the orders/rejections/gaps/forecasts tables."""

import sqlite3

import numpy as np
import pytest

from engine.analysis.metrics import metrics_for_run
from engine.dashboard import run_data
from engine.dashboard.bars_api import run_bars
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
                       "dropped, \"values\", symbol) VALUES (2, 'model', ?, ?, ?, ?, ?, ?)",
                       [(t * 60 * 10**9, t * 60 * 10**9 + lat, lat, int(lat > 10**9), HOSTILE, symbol)
                        for t, lat, symbol in ((1, 2 * 10**6, "BTCUSDT"), (2, 4 * 10**6, "ETHUSDT"),
                                               (3, 3 * 10**9, None))])
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
    assert [f["symbol"] for f in forecasts] == ["BTCUSDT", "ETHUSDT", None]  # None: an older ledger


def test_plots_sit_on_the_bar_they_were_made_at_and_merge_with_the_bars(reader):
    """Each plotted value is drawn on the bar that had closed when it was plotted (never an
    earlier one, whose close came before the data it used); merged bars show their last."""
    rows = reader.frame("SELECT name, ts, value FROM plots WHERE run_id = 1 ORDER BY id")
    closes = reader.frame("SELECT ts FROM equity WHERE run_id = 1 ORDER BY ts").ts.to_numpy()
    run = reader.run(1)
    whole = run_bars(reader, SeriesCache(), run, None, 5000, None, None)
    assert set(whole["plots"]) == {"sma_fast", "sma_slow"} == set(rows.name)
    for name, values in whole["plots"].items():
        own = rows[rows.name == name]
        stamps = own.ts.to_numpy()
        bar = np.searchsorted(closes, stamps, side="right") - 1
        assert (closes[bar] <= stamps).all() and (stamps - closes[bar] < 60 * 10**9).all()
        drawn = np.array([np.nan if v is None else v for v in values])
        np.testing.assert_array_equal(drawn[bar], own.value.to_numpy())
        assert np.isnan(np.delete(drawn, bar)).all()
    cut = run_bars(reader, SeriesCache(), run, None, 50, None, None)
    assert len(cut["plots"]["sma_slow"]) == len(cut["t"]) <= 50
    last_of_column = np.searchsorted(np.array(whole["t"]), np.array(cut["t"][1:])) - 1
    expected = np.array(whole["plots"]["sma_slow"], dtype=float)[last_of_column]
    np.testing.assert_array_equal(np.array(cut["plots"]["sma_slow"][:-1], dtype=float), expected)
    start, end = whole["t"][100], whole["t"][200]
    zoomed = run_bars(reader, SeriesCache(), run, None, 5000, start, end)
    assert zoomed["plots"]["sma_fast"] == whole["plots"]["sma_fast"][100:201]


def test_the_run_api_lists_each_symbols_plots_cut_to_the_width(reader):
    pairs = run_data.plot_pairs(SeriesCache(), reader, 1, 20)
    assert set(pairs) == {reader.run(1)["symbol"]}
    series = pairs[reader.run(1)["symbol"]]
    assert set(series) == {"sma_fast", "sma_slow"} and 2 < len(series["sma_fast"]) <= 42
    assert run_data.plot_pairs(SeriesCache(), reader, 2, 20).keys() == {reader.run(2)["symbol"].split(",")[0]}
