"""Record then replay: ``papertape live --record rec.jsonl`` against the loopback exchange,
then ``papertape backtest --data rec.jsonl``: the same bars, orders, order updates, fills,
equity rows, feed gaps, plot points and saved strategy state (every column but ids and run ids)."""

from __future__ import annotations

import json

from tests.helpers.live import (
    SAMPLE_DAY,
    LiveProcess,
    aligned_start_ms,
    assert_same_rows,
    first_bar_open,
    papertape,
    query,
    start_exchange,
)

SMA = ("--strategy", "sma_cross", "--param", "fast=2", "--param", "slow=4", "--interval", "2s")


def test_a_recorded_session_replays_into_the_same_ledger_rows(tmp_path):
    # the stream starts on a bar boundary, so the bars are the same in every run: at 400x
    # sma_cross(2, 4) buys after bar 5, sells after bar 9 and buys after bar 10
    wall_start = aligned_start_ms(lead_s=5.5)
    exchange = start_exchange([SAMPLE_DAY], tmp_path, speed=400, wall_start_ms=wall_start)
    try:
        live = LiveProcess(exchange, tmp_path, tmp_path / "live.db", *SMA, "--record",
                           str(tmp_path / "rec.jsonl"), duration="29s")
        done = live.wait(90)
    finally:
        exchange.stop()
    assert done.returncode == 0 and done.result["status"] == "finished", done.stderr[-3000:]
    replay = papertape("backtest", "--data", str(tmp_path / "rec.jsonl"), "--ledger",
                       str(tmp_path / "replay.db"), *SMA, "--json", "--no-progress", cwd=tmp_path)
    assert replay.returncode == 0, replay.stderr
    result = json.loads(replay.stdout)
    counts = assert_same_rows(tmp_path / "live.db", done.result["run_id"], tmp_path / "replay.db",
                              result["run_id"])
    first_bar = query(tmp_path / "live.db", "SELECT min(open_time) AS t FROM bars").t.iloc[0]
    assert first_bar == first_bar_open(tmp_path / "live.db", done.result["run_id"], wall_start * 1_000_000,
                                       2_000_000_000)
    assert counts["bars"] >= 10 and counts["orders"] >= 2 and counts["fills"] >= 2, counts
    assert counts["plots"] == 2 * (counts["bars"] - 3), counts  # sma_fast and sma_slow from bar 4
    assert result["bars"] == done.result["bars"] and result["fills"] == done.result["fills"]
    assert result["metrics"] == done.result["metrics"]
    live_run = query(tmp_path / "live.db", "SELECT * FROM runs").iloc[0]
    replay_run = query(tmp_path / "replay.db", "SELECT * FROM runs").iloc[0]
    for column in ("symbol", "category", "interval", "strategy", "params", "data_start", "data_end", "seed"):
        assert live_run[column] == replay_run[column], column
