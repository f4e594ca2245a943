"""A stall shorter than ``--stale-after`` (the loopback exchange keeps the socket open and
answers pings, but sends no trade for 5 s while trading goes on) loses no trade: the feed
notices the silence, holds the bars, and backfills the stall from REST before they close,
so every bar equals the served stream's; a bar closed before the silence was noticed is
covered by an unfilled gap record that names its late trades. The stall is recorded; the
quiet moments of a market are not."""

from __future__ import annotations

import time

from engine.loopback.timemap import wall_ms
from tests.helpers.live import (
    SAMPLE_DAY,
    LiveProcess,
    archive_trades,
    check_ledger,
    compare_bars,
    expected_bars,
    query,
    served_ms,
    start_exchange,
    table_has,
    wait_for,
)

SPEED = 200  # REST keeps the last 1000 trades: about 10 s of the sample at this speed
INTERVAL_MS = 2000
MS = 1_000_000


def test_a_stall_shorter_than_stale_after_loses_no_trade_without_a_record(tmp_path):
    ledger, wall_start = tmp_path / "live.db", wall_ms()
    exchange = start_exchange([SAMPLE_DAY], tmp_path, speed=SPEED, wall_start_ms=wall_start)
    try:
        live = LiveProcess(exchange, tmp_path, ledger, "--stale-after", "30", "--strategy",
                           "tests.helpers.live:BuyThenRest", duration="16s")
        wait_for(lambda: table_has(ledger, "SELECT 1 FROM bars LIMIT 1 OFFSET 1"), 30, "two bars")
        stalled_ms = wall_ms()
        exchange.fault("stall", 5)
        time.sleep(5)
        done = live.wait(60)
        state = exchange.state()
    finally:
        exchange.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.result["reconnects"] == 0  # shorter than --stale-after: no reconnect
    assert state["faults_fired"], state
    run_id = done.result["run_id"]
    gaps = query(ledger, "SELECT * FROM feed_gaps WHERE run_id = ? ORDER BY id", (run_id,))
    stall = gaps[(gaps.status == "silent") & (gaps.ts >= stalled_ms * MS)]
    assert len(stall) >= 1, gaps  # the stall is recorded
    closed = gaps[gaps.id > stall.id.iloc[0]]
    assert closed.status.iloc[0] in ("backfilled", "unfilled"), gaps
    assert "trades from REST" in closed.detail.iloc[0] and not closed.detail.iloc[0].startswith("0 "), gaps

    bars = query(ledger, "SELECT * FROM bars WHERE run_id = ? ORDER BY open_time", (run_id,))
    assert (bars.open_time.diff().dropna() == INTERVAL_MS * MS).all()
    in_stall = bars[(bars.open_time >= stalled_ms * MS) & (bars.open_time < (stalled_ms + 5000) * MS)]
    assert len(in_stall) >= 2 and (in_stall.trades > 0).all()  # the stall's bars hold its trades
    trades = archive_trades(SAMPLE_DAY)
    expected = expected_bars(trades, served_ms(trades, wall_start, SPEED), INTERVAL_MS)
    unfilled = gaps[gaps.status == "unfilled"]
    for line in compare_bars(bars, expected):  # a bar short of trades lies in a recorded gap
        open_time = int(line.split()[1].rstrip(":"))
        assert ((unfilled.gap_from < open_time + INTERVAL_MS * MS) & (unfilled.gap_to >= open_time)).any(), (
            line, gaps)
    if done.result["late_trades"]:
        assert unfilled.detail.str.contains("came after their bars had closed").any(), gaps
    # outside the stall the market had no silence worth a record
    assert set(gaps.status[gaps.ts < stalled_ms * MS]) <= set(), gaps
    check_ledger(ledger, [run_id])
