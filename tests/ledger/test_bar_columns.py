"""The packed ``bar_columns`` and ``plot_columns``: written with each batch of equity (plot)
rows, one chunk per run and symbol (and series), a portfolio's interleaved rows split by
symbol, equal to the rows bit for bit; the reader and the dashboard's series cache use them
only when they account for every equity (plot) row of the runs, and read the rows otherwise."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from engine.dashboard.series_cache import SeriesCache
from engine.ledger import curve_columns
from engine.ledger.reader import LedgerReader
from engine.ledger.schema import COLUMNS
from engine.run.backtest import run_backtest
from tests.helpers.broker import backtest_config, kline_frame, read_table

SYMBOLS = ("BTCUSDT", "ETHUSDT")
ROWS = ("SELECT ts AS close_ts, open_time, open, high, low, close, volume FROM equity "
        "WHERE run_id = ? AND symbol = ? ORDER BY open_time, id")


def test_the_packed_positions_are_the_equity_columns():
    names = {"close_ts": "ts"}
    assert {name: COLUMNS["equity"][at] for name, at in curve_columns.BAR_POSITIONS.items()} == {
        name: names.get(name, name) for name in curve_columns.BAR_STORED}
    assert COLUMNS["equity"][curve_columns.SYMBOL] == "symbol"


@pytest.fixture
def portfolio(tmp_path):
    """A two-symbol backtest whose batches (97 rows) end in the middle of close times."""
    paths = []
    for k, symbol in enumerate(SYMBOLS):
        path = tmp_path / f"{symbol}.csv"
        kline_frame(700, seed=k, price=30_000.0 / (k + 1)).to_csv(path, index=False, float_format="%.10g")
        paths.append(f"{symbol}={path}")
    db = tmp_path / "l.db"
    cfg = backtest_config(paths, db, ["run.symbols=BTCUSDT,ETHUSDT", "ledger.batch_rows=97"],
                          fast=3, slow=8, notional=500)
    result = run_backtest(cfg, progress=False)
    assert result.status == "finished"
    return db, result.run_id


def packed(db, run_id: int, symbol: str):
    reader = LedgerReader(db)
    try:
        return reader.bar_columns([run_id], symbol), SeriesCache().bars(reader, run_id, symbol)
    finally:
        reader.close()


def test_a_portfolio_writes_each_symbols_bars_packed_equal_to_its_rows(portfolio):
    db, run_id = portfolio
    chunks = read_table(db, "SELECT symbol, n FROM bar_columns WHERE run_id = ? ORDER BY id", (run_id,))
    assert len(chunks) > 20 and chunks.groupby("symbol").n.sum().to_dict() == dict.fromkeys(SYMBOLS, 700)
    for symbol in SYMBOLS:
        rows = read_table(db, ROWS, (run_id, symbol))
        columns, bars = packed(db, run_id, symbol)
        for name in curve_columns.BAR_STORED:
            np.testing.assert_array_equal(columns[name], rows[name].to_numpy(), err_msg=name)
        np.testing.assert_array_equal(bars["t"], rows.open_time.to_numpy() // 1_000_000)
        np.testing.assert_array_equal(bars["close_ns"], rows.close_ts.to_numpy())


@pytest.mark.parametrize("edit", [
    "DELETE FROM equity WHERE id = 3",  # a row removed by hand
    "DELETE FROM bar_columns",  # a ledger from before the packed bars
    "INSERT INTO equity (run_id, ts, cash, equity, position, mark_price, margin_used, symbol, interval, "
    "open_time, open, high, low, close, volume, turnover, trades) SELECT run_id, ts, cash, equity, "
    "position, mark_price, margin_used, 'SOLUSDT', interval, open_time, open, high, low, close, volume, "
    "turnover, trades FROM equity",  # a symbol's rows added by hand
])
def test_the_rows_are_read_when_the_packed_bars_do_not_account_for_them(portfolio, edit):
    db, run_id = portfolio
    with sqlite3.connect(db) as conn:
        conn.execute(edit)
    for symbol in SYMBOLS:
        columns, bars = packed(db, run_id, symbol)
        assert columns is None
        rows = read_table(db, ROWS, (run_id, symbol))
        np.testing.assert_array_equal(bars["c"], rows.close.to_numpy())
        np.testing.assert_array_equal(bars["close_ns"], rows.close_ts.to_numpy())


def plot_series(db, run_id: int, symbol: str) -> dict:
    reader = LedgerReader(db)
    try:
        return reader.plots([run_id], symbol)
    finally:
        reader.close()


def plot_rows(db, run_id: int, symbol: str, name: str):
    return read_table(db, "SELECT ts, value FROM plots WHERE run_id = ? AND symbol = ? AND name = ? "
                      "ORDER BY id", (run_id, symbol, name))


@pytest.mark.parametrize("edit", [
    None,  # as written: read from the packed columns
    "DELETE FROM plots WHERE id = 5",  # a row removed by hand
    "DELETE FROM plot_columns",  # a ledger from before the packed plots
])
def test_plotted_series_read_packed_or_from_their_rows_are_the_rows(portfolio, edit):
    db, run_id = portfolio
    chunks = read_table(db, "SELECT symbol, name, n FROM plot_columns WHERE run_id = ?", (run_id,))
    assert len(chunks) > 20 and chunks.n.sum() == len(read_table(db, "SELECT id FROM plots"))
    if edit:
        with sqlite3.connect(db) as conn:
            conn.execute(edit)
    for symbol in SYMBOLS:
        series = plot_series(db, run_id, symbol)
        assert set(series) == {"sma_fast", "sma_slow"}
        for name, (ts, values) in series.items():
            rows = plot_rows(db, run_id, symbol, name)
            assert ts.dtype == np.int64 and len(rows) > 600
            np.testing.assert_array_equal(ts, rows.ts.to_numpy())
            np.testing.assert_array_equal(values, rows.value.to_numpy())


def exposure_of(db, run_id: int):
    reader = LedgerReader(db)
    try:
        return reader.exposure([run_id])
    finally:
        reader.close()


@pytest.mark.parametrize("edit", [
    None,  # as written: counted from the packed chunks
    "DELETE FROM equity WHERE id = 3",  # a row removed by hand
    "UPDATE bar_columns SET opened = NULL, last_mark = NULL",  # chunks from before the counts
    # a ledger from before them: opening it adds the columns, NULL in its chunks
    "ALTER TABLE bar_columns DROP COLUMN opened; ALTER TABLE bar_columns DROP COLUMN last_mark",
])
def test_exposure_from_the_chunks_or_the_rows_is_the_rows(portfolio, edit):
    db, run_id = portfolio
    counted = read_table(db, "SELECT count(opened) AS k FROM bar_columns WHERE run_id = ?", (run_id,))
    assert counted.k[0] > 20  # every chunk has its counts
    if edit:
        with sqlite3.connect(db) as conn:
            conn.executescript(edit)
    rows = read_table(db, "SELECT symbol, position, mark_price FROM equity WHERE run_id = ? ORDER BY id",
                      (run_id,))
    exposure = exposure_of(db, run_id)
    assert list(exposure.index) == sorted(SYMBOLS) and 0.0 < exposure.exposure.min()
    for symbol in SYMBOLS:
        own = rows[rows.symbol == symbol]
        assert exposure.exposure[symbol] == (own.position != 0).sum() / len(own)
        assert exposure.last_mark[symbol] == own.mark_price.iloc[-1]
