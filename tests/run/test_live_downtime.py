"""The time between a crash (SIGKILL) and ``--resume`` is no silent hole: the resumed run
starts where the killed run's last bar closed, backfills the downtime from REST and replays
it through the bars and the strategy before going on live, so the two runs' bars are one
series equal to the served stream's; when REST cannot give it, the downtime is an unfilled
gap in ``feed_gaps`` ("downtime since run N") that ``report`` shows."""

from __future__ import annotations

import json
import time

from engine.loopback.timemap import wall_ms
from tests.helpers.live import (
    SAMPLE_DAY,
    LiveProcess,
    archive_trades,
    check_ledger,
    compare_bars,
    expected_bars,
    papertape,
    query,
    served_ms,
    start_exchange,
    table_has,
    wait_for,
)

# REST keeps the last 1000 trades: about 20 s of the sample at this speed. At 200x (10 s) a
# downtime of 10.7 s at load 8-10 (the 2.5 s below, then the resumed process's start) took 970
# of them: a little more load and the backfill could not reach back.
SPEED = 100
INTERVAL_MS = 2000
STRATEGY = "tests.helpers.live:BuyThenRest"


def kill_after_bars(exchange, tmp_path, ledger, bars: int) -> int:
    first = LiveProcess(exchange, tmp_path, ledger, "--strategy", STRATEGY, duration="120s")
    wait_for(lambda: table_has(ledger, f"SELECT 1 FROM bars LIMIT 1 OFFSET {bars - 1}"), 60, f"{bars} bars")
    first.kill()
    return int(query(ledger, "SELECT id FROM runs").id.iloc[0])


def test_the_downtime_is_backfilled_and_replayed_before_the_run_goes_on(tmp_path):
    ledger, wall_start = tmp_path / "live.db", wall_ms()
    exchange = start_exchange([SAMPLE_DAY], tmp_path, speed=SPEED, wall_start_ms=wall_start)
    try:
        run1 = kill_after_bars(exchange, tmp_path, ledger, 3)
        killed_ms = wall_ms()
        time.sleep(2.5)  # more than a bar of downtime
        done = LiveProcess(exchange, tmp_path, ledger, "--resume", str(run1), duration="6s").wait(60)
    finally:
        exchange.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    run2 = done.result["run_id"]
    bars = query(ledger, "SELECT * FROM bars WHERE run_id IN (?, ?) ORDER BY open_time", (run1, run2))
    last1 = bars[bars.run_id == run1].open_time.max()
    run2_bars = bars[bars.run_id == run2]
    assert run2_bars.open_time.min() == last1 + INTERVAL_MS * 1_000_000  # the next bar, none skipped
    downtime = run2_bars[run2_bars.open_time < killed_ms * 1_000_000 + 2 * INTERVAL_MS * 1_000_000]
    assert len(downtime) >= 1 and (downtime.trades > 0).all()
    assert (bars.open_time.diff().dropna() == INTERVAL_MS * 1_000_000).all()  # one series, no hole
    trades = archive_trades(SAMPLE_DAY)
    problems = compare_bars(bars, expected_bars(trades, served_ms(trades, wall_start, SPEED), INTERVAL_MS))
    assert not problems, "\n".join(problems[:20])  # downtime bars hold every trade, none twice

    gaps = query(ledger, "SELECT * FROM feed_gaps WHERE run_id = ? ORDER BY id", (run2,))
    assert list(gaps.status[:1]) == ["disconnected"] and gaps.detail.iloc[0] == f"downtime since run {run1}"
    closed = gaps[gaps.status != "disconnected"].iloc[0]
    assert closed.status == "backfilled" and closed.detail.startswith(f"downtime since run {run1}: ")
    assert closed.gap_from == last1 + INTERVAL_MS * 1_000_000  # from the last recorded bar's close
    states = query(ledger, "SELECT state FROM strategy_state WHERE run_id = ? ORDER BY id", (run2,))
    assert json.loads(states.state.iloc[-1])["bars"] == len(run2_bars)  # on_bar saw the downtime's too
    fills = check_ledger(ledger, [run1, run2])
    assert not fills.client_order_id.duplicated().any()


def test_a_downtime_rest_cannot_give_is_an_unfilled_gap_the_report_shows(tmp_path):
    ledger = tmp_path / "live.db"
    exchange = start_exchange([SAMPLE_DAY], tmp_path, speed=SPEED)
    try:
        run1 = kill_after_bars(exchange, tmp_path, ledger, 2)
        exchange.fault("rest403", 1000)  # REST refuses every request for the rest of the test
        done = LiveProcess(exchange, tmp_path, ledger, "--resume", str(run1), duration="6s").wait(90)
    finally:
        exchange.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    run2 = done.result["run_id"]
    gaps = query(ledger, "SELECT * FROM feed_gaps WHERE run_id = ? ORDER BY id", (run2,))
    unfilled = gaps[gaps.status == "unfilled"]
    assert len(unfilled) >= 1, gaps
    first = unfilled.iloc[0]
    assert first.detail.startswith(f"downtime since run {run1}: backfill failed"), first.detail
    last1 = query(ledger, "SELECT max(ts) AS ts FROM equity WHERE run_id = ?", (run1,)).ts[0]
    assert first.gap_from == last1

    report = papertape("report", "--run", str(run2), "--ledger", str(ledger), "--json", "--out",
                       str(tmp_path / "report.html"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    shown = json.loads(report.stdout)["feed_gaps"]
    assert any(g["status"] == "unfilled" and g["detail"].startswith(f"downtime since run {run1}")
               and g["run_id"] == run2 for g in shown), shown
    text = papertape("report", "--run", str(run2), "--ledger", str(ledger), "--out",
                     str(tmp_path / "report.html"), cwd=tmp_path)
    assert f"unfilled: downtime since run {run1}" in text.stdout, text.stdout
    assert f"downtime since run {run1}" in (tmp_path / "report.html").read_text()
