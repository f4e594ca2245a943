"""The first and the last bar of replayed data: a file replayed from its beginning starts no
bar part-way, and when finite data ends its last bar is emitted; only a --start inside a bar
(or a live start) skips the partial first bar."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from engine.cli import main
from engine.core.clock import NS_PER_S
from tests.helpers.archive import write_derivatives

DAY0 = 1748736000  # 2025-06-01 00:00:00 UTC


def day_of_trades(tmp_path, name: str):
    """Trades every 30 s from 0.1 ms after midnight to 30 s before the next midnight."""
    ts = DAY0 + 0.0001 + 30.0 * np.arange(2880)
    prices = 100.0 + (np.arange(2880) % 50)
    return write_derivatives(tmp_path / name, ts, prices, np.full(2880, 0.01), np.ones(2880))


@pytest.mark.parametrize("name", ["BTCUSDT2025-06-01.csv.gz", "day-one.csv", "trades.csv.gz"])
@pytest.mark.parametrize("interval, bars", [("1h", 24), ("1d", 1), ("7m", 206)])
def test_a_day_of_trades_gives_its_first_and_last_bar(tmp_path, name, interval, bars):
    path = day_of_trades(tmp_path, name)
    out = tmp_path / "bars.csv"
    assert main(["bars", "--data", str(path), "--interval", interval, "--out", str(out),
                 "--no-progress"]) == 0
    frame = pd.read_csv(out)
    step_ms = {"1h": 3_600_000, "1d": 86_400_000, "7m": 420_000}[interval]
    first_ms = DAY0 * 1000 // step_ms * step_ms
    assert len(frame) == bars
    assert frame.open_time.iloc[0] == first_ms
    assert frame.trades.sum() == 2880  # no trade lost, at either end
    assert frame.open.iloc[0] == 100.0 and frame.close.iloc[-1] == 100.0 + 2879 % 50


def test_a_start_inside_a_bar_still_skips_that_bar(tmp_path):
    path = day_of_trades(tmp_path, "day-one.csv")
    out = tmp_path / "bars.csv"
    assert main(["bars", "--data", str(path), "--interval", "1h", "--out", str(out), "--no-progress",
                 "--start", "2025-06-01T00:30"]) == 0
    frame = pd.read_csv(out)
    assert frame.open_time.iloc[0] == (DAY0 + 3600) * 1000 and len(frame) == 23


def test_a_backtest_records_the_first_and_last_bar(tmp_path, capsys):
    path = day_of_trades(tmp_path, "trades.csv")
    ledger = tmp_path / "l.db"
    assert main(["backtest", "--data", str(path), "--interval", "1h", "--ledger", str(ledger),
                 "--no-progress", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["bars"] == 24
    assert result["data"]["start_ns"] <= DAY0 * NS_PER_S + 100_000
