"""The exchange is killed (SIGKILL) and started again on the same port in the middle of a
live session, with the same ``--wall-start-ms`` so its time mapping continues: the client
logs the reconnect, subscribes again, backfills what it missed, and the session goes on to
an end (SIGTERM, once it is back) with every served trade in its bars and a consistent ledger."""

from __future__ import annotations

import signal
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
from tests.helpers.loopback import free_port

# REST keeps 1000 trades: at 100x enough for an outage of up to 20 s (a restart takes 7 s at
# load 8 on two cores, and the client's next attempt may come up to 8 s after that)
SPEED = 100
INTERVAL_MS = 2000


def test_session_survives_the_exchange_being_killed_and_restarted(tmp_path):
    port, wall_start = free_port(), wall_ms()
    ledger = tmp_path / "live.db"
    first = start_exchange([SAMPLE_DAY], tmp_path, port=port, speed=SPEED, wall_start_ms=wall_start)
    second = None
    try:
        live = LiveProcess(first, tmp_path, ledger, "--param", "fast=2", "--param", "slow=4", duration=None)
        wait_for(lambda: table_has(ledger, "SELECT 1 FROM bars LIMIT 2 OFFSET 1"), 30, "two bars")
        killed_ms = wall_ms()
        first.kill()
        time.sleep(1.0)
        second = start_exchange([SAMPLE_DAY], tmp_path, port=port, speed=SPEED, wall_start_ms=wall_start)
        restarted_ms = wall_ms()
        # stopped once it is back: two bars built after the restart (a fixed duration ended
        # before the reconnect at load 8)
        wait_for(lambda: table_has(ledger, "SELECT 1 FROM bars WHERE open_time >= ? LIMIT 1 OFFSET 1",
                                   (restarted_ms * 1_000_000,)), 60, "two bars after the restart")
        live.proc.send_signal(signal.SIGTERM)
        done = live.wait(60)
        state = second.state()
    finally:
        first.kill()
        if second is not None:
            second.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    result, stderr = done.result, done.stderr
    assert result["status"] == "stopped" and result["reconnects"] >= 1
    assert "reconnect" in stderr and "Traceback" not in stderr
    assert state["trades_served"] > 0

    run_id = result["run_id"]
    gaps = query(ledger, "SELECT * FROM feed_gaps WHERE run_id = ? ORDER BY id", (run_id,))
    drop = gaps[(gaps.status == "disconnected") & (gaps.ts >= killed_ms * 1_000_000)]
    assert len(drop) >= 1, gaps  # the kill was seen as a disconnect ...
    later = gaps[gaps.id > drop.id.iloc[0]]  # failed reconnects while it was down, then the backfill
    assert set(later.status[:-1]) <= {"disconnected"} and later.status.iloc[-1] == "backfilled", gaps
    assert (later.gap_from == drop.gap_from.iloc[0]).all()  # one gap, from the last trade seen
    assert later.gap_to.iloc[-1] >= restarted_ms * 1_000_000

    bars = query(ledger, "SELECT * FROM bars WHERE run_id = ? ORDER BY open_time", (run_id,))
    after = bars[bars.open_time >= restarted_ms * 1_000_000]
    assert len(after) >= 2 and (after.trades > 0).all()  # trades kept coming after the restart
    trades = archive_trades(SAMPLE_DAY)
    expected = expected_bars(trades, served_ms(trades, wall_start, SPEED), INTERVAL_MS)
    problems = compare_bars(bars, expected)  # the bars across the outage hold every trade
    assert not problems, "\n".join(problems[:20])
    assert (bars.open_time.diff().dropna() == INTERVAL_MS * 1_000_000).all()
    check_ledger(ledger, [run_id], status="stopped")
