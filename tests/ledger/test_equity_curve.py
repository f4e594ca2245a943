"""The packed ``equity_curve`` columns: written with each batch of equity rows, in the same
transaction, equal to the rows bit for bit; the reader uses them only when they account for
every row, and reads the rows otherwise."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import numpy as np
import pytest

from engine.analysis.metrics import curve_metrics, fill_metrics, metrics_for_run
from engine.ledger import curve_columns
from engine.ledger.reader import LedgerReader
from engine.ledger.schema import COLUMNS
from engine.ledger.store import Ledger
from engine.run.backtest import run_backtest
from tests.helpers.broker import (
    BTC,
    MINUTE,
    T0,
    backtest_config,
    instruments_with_sol,
    read_table,
    start_run,
    write_klines,
)

ROW_SQL = "SELECT ts, equity, position FROM equity WHERE run_id IN ({}) ORDER BY ts, id"


def equity_row(run_id: int, ts: int, equity: float, position: float) -> tuple:
    """An equity row in COLUMNS["equity"] order."""
    return (run_id, ts, equity - 1.0, equity, position, 30_000.0, 0.0, BTC, "1m", ts - MINUTE,
            30_000.0, 30_010.0, 29_990.0, 30_005.0, 1.5, 45_000.0, 12)


def curve(path, run_ids: list[int]):
    reader = LedgerReader(path)
    try:
        return reader.equity_curve(run_ids)
    finally:
        reader.close()


def assert_same(frame, rows) -> None:
    """Equal values in the same order (SQLite's rows store -0.0 as 0, the columns keep it)."""
    assert frame.ts.to_numpy().dtype == np.int64 and len(frame) == len(rows)
    for name in ("ts", "equity", "position"):
        np.testing.assert_array_equal(frame[name].to_numpy(), rows[name].to_numpy(), err_msg=name)


def test_rows_match_columns():
    assert len(equity_row(1, T0, 1.0, 0.0)) == len(COLUMNS["equity"])
    packed = {curve_columns.RUN_ID: "run_id", curve_columns.TS: "ts", curve_columns.EQUITY: "equity",
              curve_columns.POSITION: "position"}
    assert {i: COLUMNS["equity"][i] for i in packed} == packed


def test_a_backtest_writes_a_curve_equal_to_its_rows(tmp_path):
    data = tmp_path / "klines.csv"
    write_klines(data, 3_000, seed=3)
    cfg = backtest_config([data], tmp_path / "ledger.db", ["ledger.batch_rows=700"],
                          fast=5, slow=20, qty=0.05)
    result = run_backtest(cfg, progress=False)
    chunks = read_table(tmp_path / "ledger.db", "SELECT run_id, n FROM equity_curve ORDER BY id")
    assert len(chunks) >= 5 and chunks.n.sum() == result.bars == 3_000  # several batches
    assert set(chunks.run_id) == {result.run_id}
    rows = read_table(tmp_path / "ledger.db", ROW_SQL.format(result.run_id))
    assert_same(curve(tmp_path / "ledger.db", [result.run_id]), rows)
    assert np.unique(rows.position).size > 1  # the strategy traded


def test_runs_in_one_batch_get_a_chunk_each_and_late_rows_sort_stably(tmp_path):
    path = tmp_path / "ledger.db"
    ledger = Ledger(path, batch_rows=1_000_000, flush_seconds=3600)
    a, b = start_run(ledger), start_run(ledger)
    for i in range(5):
        ledger.add("equity", equity_row(a, T0 + i * MINUTE, 100.0 + i, 0.1 * i))
        ledger.add("equity", equity_row(b, T0 + i * MINUTE, 200.0 - i, -0.1 * i))
    ledger.flush(wait=True)
    # a later batch of run a holds a row older than its first batch's newest, and a tie
    ledger.add("equity", equity_row(a, T0 + 2 * MINUTE, 150.0, 0.0))
    ledger.add("equity", equity_row(a, T0 - MINUTE, 99.0, 0.0))
    ledger.close()
    chunks = read_table(path, "SELECT run_id, n FROM equity_curve ORDER BY id")
    assert chunks.values.tolist() == [[a, 1], [b, 1]] * 5 + [[a, 2]]  # interleaved rows
    got = curve(path, [a])
    assert_same(got, read_table(path, ROW_SQL.format(a)))
    assert got.equity.tolist() == [99.0, 100.0, 101.0, 102.0, 150.0, 103.0, 104.0]
    assert_same(curve(path, [a, b]), read_table(path, ROW_SQL.format(f"{a}, {b}")))
    reader = LedgerReader(path)
    try:  # chunks out of time order: the metrics fold the sorted curve, not the chunks as written
        run = reader.run(a)
        expected = curve_metrics(got, initial_cash=run["initial_cash"], interval=run["interval"],
                                 start_ns=run["data_start"])
        assert metrics_for_run(reader, a) == fill_metrics(expected, reader.fills([a]), reader.funding([a]))
    finally:
        reader.close()


def test_a_failed_batch_writes_neither_rows_nor_columns(tmp_path):
    path = tmp_path / "ledger.db"
    ledger = Ledger(path, batch_rows=1_000_000, flush_seconds=3600)
    run_id = start_run(ledger)
    ledger.add("equity", equity_row(run_id, T0, 100.0, 0.0))
    bad = list(equity_row(run_id, T0 + MINUTE, 100.0, 0.0))
    bad[COLUMNS["equity"].index("symbol")] = None  # NOT NULL fails in the writer
    ledger.add("equity", tuple(bad))
    ledger.flush()
    with pytest.raises(RuntimeError, match="ledger write failed"):
        ledger.wait_written()
    assert len(read_table(path, "SELECT id FROM equity")) == 0
    assert len(read_table(path, "SELECT id FROM equity_curve")) == 0


@pytest.mark.parametrize("edit", [
    "DELETE FROM equity WHERE id = 3",  # a row removed by hand
    "DELETE FROM equity_curve",  # a ledger from before the packed columns
])
def test_the_rows_are_read_when_the_columns_do_not_account_for_them(tmp_path, edit):
    path = tmp_path / "ledger.db"
    ledger = Ledger(path, batch_rows=4, flush_seconds=3600)
    run_id = start_run(ledger, initial_cash=100.0)
    for i in range(10):
        ledger.add("equity", equity_row(run_id, T0 + (i + 1) * MINUTE, 100.0 + i % 3, 0.5 * (i % 2)))
    ledger.close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(edit)
    conn.close()
    rows = read_table(path, ROW_SQL.format(run_id))
    assert_same(curve(path, [run_id]), rows)
    reader = LedgerReader(path)
    try:
        assert metrics_for_run(reader, run_id)["bars"] == len(rows)
    finally:
        reader.close()


def test_a_portfolio_packs_one_point_per_close_time(tmp_path):
    """Three symbols' rows of a close time become one point of the packed curve (the account
    snapshot, and whether any symbol holds a position); metrics read from it equal metrics
    read from the rows, and the chunks still account for every row."""
    rules = instruments_with_sol(tmp_path)
    data = []
    for k, symbol in enumerate(("BTCUSDT", "ETHUSDT", "SOLUSDT")):
        path = tmp_path / f"{symbol}.csv"
        write_klines(path, 2_000, seed=11 + k)
        data.append(f"{symbol}={path}")
    settings = ["ledger.batch_rows=900", f"broker.instruments={rules}", "account.cash=100000000"]
    cfg = backtest_config(data, tmp_path / "ledger.db", settings, fast=5, slow=20, qty=0.05)
    cfg = replace(cfg, run=replace(cfg.run, symbols=("BTCUSDT", "ETHUSDT", "SOLUSDT")))
    result = run_backtest(cfg, progress=False)
    path = tmp_path / "ledger.db"
    chunks = read_table(path, "SELECT n, bar_rows FROM equity_curve ORDER BY id")
    assert len(chunks) >= 5 and chunks.bar_rows.sum() == result.bars == 6_000
    assert 2_000 <= chunks.n.sum() < 2_000 + len(chunks)  # a close time cut by a batch: two points
    reader = LedgerReader(path)
    try:
        packed = metrics_for_run(reader, result.run_id)
        points = reader.equity_curve([result.run_id])
    finally:
        reader.close()
    whole = points.position.isin([0.0, 1.0])  # a point of one row (a cut close time) keeps its qty
    assert whole.sum() >= len(points) - 2 * len(chunks) and (points.position == 1.0).any()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("DELETE FROM equity_curve")  # metrics now read the rows themselves
    conn.close()
    reader = LedgerReader(path)
    try:
        assert metrics_for_run(reader, result.run_id) == packed
    finally:
        reader.close()
