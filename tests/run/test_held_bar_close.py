"""A gap that closes just after a bar's end (inside the close delay, before that bar's timer)
still closes that held bar before the later trades it hands on: the bar is marked at its
own close, whatever the moment the backfill came back. Replayed from a hand-made recording,
so the timing is exact and the same on every machine."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pytest

from engine.cli import main
from tests.helpers.scripted_bybit import BASE_MS, rest_trade, trade_message

MS = 1_000_000
DELAY_MS = 500


def tape() -> list[tuple[str, int, float]]:
    """A trade every 100 ms over 7 s, the price one tick up each time."""
    return [(f"t{k:03d}", BASE_MS + 100 * k + 50, 100_000.0 + 0.5 * k) for k in range(70)]


def recording(path, answer_after_ms: int) -> None:
    """The socket drops at 3.05 s and is back at 3.10 s; its stream is held until REST's
    answer, received ``answer_after_ms`` after the start of the 4 s bar, covers the gap."""
    trades = tape()
    lines = [{"papertape_recording": 1, "symbol": "BTCUSDT", "category": "linear", "mode": "trades",
              "interval": "1s", "started": BASE_MS * MS}]
    answer_at = BASE_MS + 4000 + answer_after_ms

    def ws(trade, at_ms):
        lines.append({"t": at_ms * MS, "k": "ws", "d": trade_message([trade[0]], [trade[1]], [trade[2]])})

    for trade in trades:
        if trade[1] < BASE_MS + 3050:
            ws(trade, trade[1] + 5)
    for at_ms, status in ((3055, "disconnected"), (3100, "connected")):
        lines.append({"t": (BASE_MS + at_ms) * MS, "k": "status", "d": {"status": status, "detail": "test"}})
    for trade in trades:
        if BASE_MS + 3300 <= trade[1] < answer_at - 5:
            ws(trade, trade[1] + 5)
    known = [t for t in trades if t[1] < answer_at - 5]
    rest = [rest_trade(*t, k) for k, t in reversed(list(enumerate(known)))]
    lines.append({"t": answer_at * MS, "k": "rest_trades", "d": {"list": rest, "limit": 1000}})
    for trade in trades:
        if trade[1] >= answer_at - 5:
            ws(trade, trade[1] + 5)
    lines.append({"t": (BASE_MS + 7500) * MS, "k": "end"})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


@pytest.mark.parametrize("answer_after_ms", [120, 450, 700])
def test_a_held_bar_is_marked_at_its_close_when_the_gap_closes_inside_its_delay(tmp_path, answer_after_ms):
    rec, db = tmp_path / "rec.jsonl", tmp_path / "l.db"
    recording(rec, answer_after_ms)
    assert main(["backtest", "--data", str(rec), "--ledger", str(db), "--interval", "1s", "--strategy",
                 "sma_cross", "--param", "fast=2", "--param", "slow=3", "--set",
                 f"bars.close_delay_ms={DELAY_MS}", "--no-progress", "--json"]) == 0
    with sqlite3.connect(db) as con:
        equity = pd.read_sql_query("SELECT ts, mark_price, close FROM equity ORDER BY ts", con)
        bars = pd.read_sql_query("SELECT open_time, trades FROM bars ORDER BY open_time", con)
    assert (bars.trades == 10).all() and len(bars) == 7  # every trade in its bar, none lost
    held = equity[equity.ts == (BASE_MS + 4000) * MS]  # the bar [3 s, 4 s): held, ended before the answer
    assert len(held) == 1
    assert held.mark_price.iloc[0] == held.close.iloc[0], equity  # before any later trade
