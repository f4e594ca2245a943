"""A live session's stop is not the end of finite data: a bar still inside its close delay
at the stop may be missing trades in flight, so it is left out (of the live ledger and of
its recording's replay alike) instead of closed short; a bar whose delay has passed closes."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pytest

from engine.cli import main
from tests.helpers.scripted_bybit import BASE_MS, trade_message

MS = 1_000_000


@pytest.mark.parametrize("stop_after_ms, bars", [(100, 2), (300, 3)])
def test_the_bar_inside_its_close_delay_at_the_stop_is_left_out(tmp_path, stop_after_ms, bars):
    """Trades every 100 ms through three 1 s bars; the session stops ``stop_after_ms`` after
    the third bar's end, with a 250 ms close delay."""
    lines = [{"papertape_recording": 1, "symbol": "BTCUSDT", "category": "linear", "mode": "trades",
              "interval": "1s", "started": BASE_MS * MS}]
    for k in range(30):
        at = BASE_MS + 100 * k + 50
        lines.append({"t": (at + 5) * MS, "k": "ws", "d": trade_message([f"t{k}"], [at], [100.0 + k])})
    lines.append({"t": (BASE_MS + 3000 + stop_after_ms) * MS, "k": "end"})
    rec, db = tmp_path / "rec.jsonl", tmp_path / "l.db"
    rec.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["backtest", "--data", str(rec), "--ledger", str(db), "--interval", "1s", "--set",
                 "bars.close_delay_ms=250", "--no-progress", "--json"]) == 0
    with sqlite3.connect(db) as con:
        rows = pd.read_sql_query("SELECT open_time, trades FROM bars ORDER BY open_time", con)
    assert len(rows) == bars and (rows.trades == 10).all(), rows
