"""End-to-end backtests through ``run_backtest`` and the CLI, checked from the ledger:

- with klines, zero costs and ``fill_at="next"``, sma_cross fills at the open of the bar
  after each signal (signals computed here with pandas rolling means); with
  ``fill_at="close"`` at the signal bar's close;
- on trades, every fill is the first trade at or after the order's arrival;
- a run repeated with the same seed writes identical rows (with latency jitter and a touch
  probability below one, so the seed matters);
- ``kill -9`` in the middle of a run leaves a consistent ledger and an interrupted run.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.core.clock import NS_PER_MS
from engine.feeds.history.archive import TradeArchive
from engine.ledger import store
from engine.run.backtest import run_backtest
from tests.helpers.broker import backtest_config, read_table, write_klines, write_trade_archive

ROOT = Path(__file__).resolve().parents[2]


def expected_sma_fills(frame: pd.DataFrame, fast: int, slow: int, qty: float) -> list[tuple]:
    """(signal bar index, side, qty) of each order sma_cross sends, from pandas rolling means."""
    close = frame["close"]
    f, s = close.rolling(fast).mean(), close.rolling(slow).mean()
    gap = (f - s).abs() / close
    assert gap[slow - 1:].min() > 1e-9, "a near-tie: the float order of the sums would matter"
    above = (f > s).to_numpy()
    orders, pos = [], 0.0
    for i in range(slow, len(frame)):
        if above[i] != above[i - 1]:
            target = qty if above[i] else 0.0
            delta = round(target - pos, 12)
            if delta:
                orders.append((i, 1 if delta > 0 else -1, abs(delta)))
                pos = target
    return orders


@pytest.fixture(scope="module")
def klines(tmp_path_factory):
    d = tmp_path_factory.mktemp("klines")
    path = d / "klines.csv"
    write_klines(path, 3_000, seed=21, vol=0.002)
    return path, pd.read_csv(path)  # the prices exactly as the file holds them


def sma_run(klines, tmp_path, fill_at: str, fast: int = 4, slow: int = 11, qty: float = 0.02):
    path, frame = klines
    cfg = backtest_config([path], tmp_path / "ledger.db",
                          ["broker.slippage_bps=0", "broker.latency_ms=0", f"broker.fill_at={fill_at}"],
                          fast=fast, slow=slow, qty=qty)
    result = run_backtest(cfg, progress=False)
    assert result.status == "finished" and result.bars == len(frame)
    fills = read_table(tmp_path / "ledger.db", "SELECT * FROM fills ORDER BY id")
    orders = read_table(tmp_path / "ledger.db", "SELECT * FROM orders ORDER BY id")
    expected = expected_sma_fills(frame, fast, slow, qty)
    if fill_at == "next":
        expected = [e for e in expected if e[0] + 1 < len(frame)]  # the last signal never fills
    assert len(expected) > 50
    return frame, fills, orders, expected


@pytest.mark.parametrize("fill_at", ["next", "close"])
def test_sma_cross_fills_at_the_next_bar_open_or_only_when_asked_at_the_close(klines, tmp_path, fill_at):
    frame, fills, orders, expected = sma_run(klines, tmp_path, fill_at)
    open_ns = frame["open_time"].to_numpy(dtype=np.int64) * NS_PER_MS
    step = 60_000 * NS_PER_MS
    assert len(fills) == len(expected)
    for row, (i, side, _) in zip(fills.itertuples(), expected, strict=True):
        assert row.side == side
        if fill_at == "next":
            assert row.price == frame["open"].iloc[i + 1]  # exactly: no slippage, no latency
            assert row.ts_event == open_ns[i + 1]
        else:
            assert row.price == frame["close"].iloc[i]
            assert row.ts_event == open_ns[i] + step
    # each order was sent at its signal bar's close
    sent = dict(zip(orders.client_order_id, orders.ts_init, strict=True))
    assert [sent[c] for c in fills.client_order_id] == [open_ns[i] + step for i, _, _ in expected]


@pytest.mark.parametrize("fill_at", ["next", "close"])
def test_sma_cross_holds_exactly_its_qty(klines, tmp_path, fill_at):
    _, fills, _, expected = sma_run(klines, tmp_path, fill_at)
    assert [round(q, 9) for q in fills.qty] == [round(q, 9) for _, _, q in expected]
    assert set(np.round(fills.position, 9)) <= {0.0, 0.02}


@pytest.fixture(scope="module")
def two_days(tmp_path_factory):
    d = tmp_path_factory.mktemp("trades")
    return [write_trade_archive(d, day, 20_000, seed=k, vol=0.0003)
            for k, day in enumerate(["2025-06-01", "2025-06-02"])]


def test_trade_level_fills_are_the_first_trade_after_arrival(two_days, tmp_path):
    """sma_cross on trades with 250 ms latency: each fill is at the price and time of the
    first trade at or after its order's send time + 250 ms."""
    cfg = backtest_config(two_days, tmp_path / "ledger.db", ["broker.latency_ms=250"],
                          fast=3, slow=9, qty=0.01)
    run_backtest(cfg, progress=False)
    fills = read_table(tmp_path / "ledger.db", "SELECT * FROM fills ORDER BY id")
    orders = read_table(tmp_path / "ledger.db", "SELECT client_order_id, ts_init FROM orders")
    sent = dict(zip(orders.client_order_id, orders.ts_init, strict=True))
    ts = np.concatenate([TradeArchive(p).chunks().__next__().ts for p in two_days])
    price = np.concatenate([TradeArchive(p).chunks().__next__().price for p in two_days])
    assert len(fills) > 100
    arrival = np.array([sent[c] for c in fills.client_order_id]) + 250 * NS_PER_MS
    first = np.searchsorted(ts, arrival, side="left")
    assert (fills.ts_event.to_numpy() == ts[first]).all()
    assert (fills.price.to_numpy() == price[first]).all()
    assert (fills.ts_event.to_numpy() >= arrival).all()


WALL_CLOCK = {"runs": ["id", "started_at", "finished_at", "heartbeat_at", "pid", "host", "code_version"]}


def ledger_rows(path: Path, run_id: int) -> dict[str, list[tuple]]:
    """Every row of a run in every table, without ids and wall-clock columns."""
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        out = {}
        for table in tables:
            cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            key = "id" if table == "runs" else "run_id"
            if key not in cols:  # sweeps: a table of sweeps, not of one run's rows
                continue
            keep = [c for c in cols if c not in WALL_CLOCK.get(table, ["id", "run_id"])]
            columns = ", ".join(f'"{c}"' for c in keep)
            out[table] = conn.execute(
                f"SELECT {columns} FROM {table} WHERE {key} = ? ORDER BY id", (run_id,)
            ).fetchall()
        return out
    finally:
        conn.close()


def test_same_seed_same_ledger_rows(two_days, tmp_path):
    ledger = tmp_path / "ledger.db"
    settings = ["broker.latency_ms=20", "broker.latency_jitter_ms=400", "broker.touch_fill_probability=0.4",
                "broker.slippage_bps=1", "broker.max_participation=0.5",
                "strategy.name=tests.helpers.broker:Quoter"]
    runs = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        cfg = backtest_config(two_days, ledger, [*settings, f"run.seed={seed}"],
                              qty=0.05, every=3, offset_ticks=0)
        with pytest.MonkeyPatch.context() as patch:
            if name == "b":  # a machine so loaded that every look at the clock finds 10 s gone
                patch.setattr(store.time, "monotonic", itertools.count(0.0, 10.0).__next__)
            runs[name] = run_backtest(cfg, progress=False).run_id
    a, b, c = (ledger_rows(ledger, runs[k]) for k in "abc")
    assert len(a["fills"]) > 100 and len(a["order_updates"]) > 300
    assert any(r[1] == "canceled" for r in a["order_updates"])
    assert a == b
    # the seed matters: another one changes when orders arrive and which touches fill
    assert a["fills"] != c["fills"]


def papertape(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, **kw)


def test_sigkill_mid_run_leaves_a_consistent_ledger_and_an_interrupted_run(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for k, day in enumerate(pd.date_range("2025-06-01", periods=60, freq="D").strftime("%Y-%m-%d")):
        write_trade_archive(data, day, 1_500, seed=100 + k)
    ledger = tmp_path / "ledger.db"
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "backtest", "--data", str(data / "BTCUSDT*.csv"),
         "--ledger", str(ledger), "--param", "fast=2", "--param", "slow=3",
         "--set", "ledger.batch_rows=500", "--no-progress"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        fills = 0
        while fills < 20:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no fills committed in 90 s"
            time.sleep(0.05)
            if ledger.exists():
                try:
                    fills = len(read_table(ledger, "SELECT id FROM fills"))
                except (sqlite3.OperationalError, pd.errors.DatabaseError):
                    fills = 0  # the schema is not there yet
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    conn = sqlite3.connect(ledger)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    runs = read_table(ledger, "SELECT * FROM runs")
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run.status == "running" and pd.isna(run.finished_at) and run.pid == proc.pid
    fills = read_table(ledger, "SELECT * FROM fills WHERE run_id = ? ORDER BY id", [int(run.id)])
    orders = read_table(ledger, "SELECT * FROM orders WHERE run_id = ?", [int(run.id)])
    assert len(fills) >= 20
    assert set(fills.client_order_id) <= set(orders.client_order_id)  # no orphan fill
    assert orders.client_order_id.is_unique
    cumulative = (fills.side * fills.qty).cumsum()
    assert np.allclose(fills.position, cumulative, atol=1e-9)
    # cash after each fill = initial + realized - fees (no funding in this run)
    cash = run.initial_cash + (fills.realized_pnl - fills.fee).cumsum()
    assert np.allclose(fills.cash, cash, rtol=0, atol=1e-6)
    equity = read_table(ledger, "SELECT ts FROM equity WHERE run_id = ? ORDER BY id", [int(run.id)])
    assert equity.ts.is_monotonic_increasing and len(equity) > 0
    packed = read_table(ledger, "SELECT sum(n) AS n FROM equity_curve WHERE run_id = ?", [int(run.id)])
    assert packed.n[0] == len(equity)  # the packed curve is committed with its rows

    listed = papertape("runs", "--ledger", str(ledger), "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert (row["id"], row["status"]) == (int(run.id), "interrupted")
    table = papertape("runs", "--ledger", str(ledger))
    assert "interrupted" in table.stdout
