"""The model strategy paper trading against the loopback exchange: a model slower than the
bars has its late forecasts dropped and counted while the feed and the bars go on; on-time
forecasts are traded when they arrive; and the window is filled from history (files or the
venue's REST klines) before the first live bar."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from engine.feeds.history.sources import load_bars_from
from tests.helpers.live import (
    SAMPLE_DAY,
    LiveProcess,
    aligned_start_ms,
    archive_trades,
    check_ledger,
    compare_bars,
    expected_bars,
    first_bar_open,
    query,
    served_ms,
    start_exchange,
    start_gap,
)
from tests.helpers.model import ar1_bars, first_forecast_due, train_tiny, write_bars

INTERVAL_MS = 2000
CLOSE_DELAY_NS = 250_000_000  # bars.close_delay_ms in config.toml


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_slow_model_drops_late_forecasts_and_never_holds_up_the_feed(tmp_path):
    bars = ar1_bars(600, seed=3, price=105_000.0, step_ms=INTERVAL_MS)
    history = write_bars(bars, tmp_path / "history.csv")
    ckpt = train_tiny(bars, "linformer", tmp_path / "model.pt", interval="2s")
    ledger = tmp_path / "live.db"
    exchange = start_exchange([SAMPLE_DAY], tmp_path, speed=400, wall_start_ms=aligned_start_ms(lead_s=4))
    try:  # every second forecast takes 3 s, longer than a 2 s bar
        live = LiveProcess(exchange, tmp_path, ledger, "--strategy", "tests.helpers.model:SlowModel",
                           "--param", f"checkpoint={ckpt}", "--param", f"history={history}",
                           "--param", "in_sample=true", "--param", "delay_s=3", "--param", "every=2",
                           duration="20s")
        done = live.wait(90)
        state = exchange.state()
    finally:
        exchange.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    result, run_id = done.result, done.result["run_id"]
    assert result["status"] == "finished" and result["inference_errors"] == 0
    bars_live = query(ledger, "SELECT * FROM bars WHERE run_id = ? ORDER BY open_time", (run_id,))
    assert len(bars_live) >= 8 and (bars_live.open_time.diff().dropna() == INTERVAL_MS * 1_000_000).all()
    trades = archive_trades(SAMPLE_DAY)
    expected = expected_bars(trades, served_ms(trades, state["wall_start_ms"], state["speed"]), INTERVAL_MS)
    gaps = query(ledger, "SELECT * FROM feed_gaps WHERE run_id = ? ORDER BY id", (run_id,))
    unfilled = gaps[gaps.status == "unfilled"]
    step = INTERVAL_MS * 1_000_000
    # every trade aggregated while the model slept; a bar short of trades lies in a recorded gap
    # (on a loaded machine: a first connection slower than REST reaches back, or a starved
    # process noticing a silence after the bar it hid had closed, with its late trades named)
    for line in compare_bars(bars_live, expected):
        open_time = int(line.split()[1].rstrip(":"))
        assert ((unfilled.gap_from < open_time + step) & (unfilled.gap_to >= open_time)).any(), (line, gaps)

    forecasts = query(ledger, "SELECT * FROM predictions WHERE run_id = ? ORDER BY id", (run_id,))
    late, on_time = forecasts[forecasts.dropped == 1], forecasts[forecasts.dropped == 0]
    assert len(late) == result["predictions_dropped"] >= 2
    # a dropped forecast came after the next bar's close (2 s and the close delay after its own);
    # a slowed one (3 s) is never on time, whatever the machine's load makes of the fast ones
    assert (late.latency_ns > INTERVAL_MS * 1_000_000).all()
    assert (on_time.latency_ns < 3e9).all() and len(on_time) >= 2
    states = query(ledger, "SELECT state FROM strategy_state WHERE run_id = ? ORDER BY id", (run_id,))
    saved = json.loads(states.state.iloc[-1])  # saved at the stop
    # the window was full at the first live bar (history), so it got a forecast; or, when the
    # history came after it (a loaded machine), the newest bar the warm-up held did
    first_close = int(bars_live.open_time.iloc[0]) + INTERVAL_MS * 1_000_000
    assert forecasts.ts_event.iloc[0] == first_forecast_due(saved, "BTCUSDT", first_close), saved
    orders = query(ledger, "SELECT * FROM orders WHERE run_id = ?", (run_id,))
    assert len(orders) >= 1 and set(orders.ts_init) <= set(on_time.ts_init)  # traded on arrival only
    check_ledger(ledger, [run_id])
    assert saved["history_bars"] > 0 and saved["skipped"] >= 1
    assert saved["passes_on_the_event_thread"] == 0  # the model never ran where the feed does
    # bars reached the strategy before a held feed would (3 s); a bar a gap held waits for its
    # backfill by design (from the last trade before the gap to the gap's close)
    held = [(gap.gap_from, gap.ts) for gap in gaps.itertuples() if gap.status in ("backfilled", "unfilled")]
    free = [lag for close, lag in saved["bar_lag_s"]
            if not any(lo <= close + CLOSE_DELAY_NS <= hi for lo, hi in held)]
    assert len(free) >= 2 and max(free) < 2.5, (saved["bar_lag_s"], gaps)


BUSY_STRETCH_MS = 52_140_000  # into the sample day, from its first trade


def rest_warm_up_session(tmp_path, fault: str | None = None):
    """A 3 s session of a 1m model that warms up on the REST klines of an exchange which has
    served 14.5 hours of the archive already, in real time (``fault`` fired on it first, 5
    times): the result, the checkpoint, the ledger. The session runs in the sample day's
    busiest stretch (no trade more than 0.92 s after the last for 90 s from there), so a
    3 s session has market data even when it starts late: elsewhere the day's trades are
    1.8 s apart at the median and up to 29 s."""
    bars = load_bars_from([str(SAMPLE_DAY)], "1m")
    ckpt = train_tiny(bars, "full", tmp_path / "model.pt", interval="1m")
    exchange = start_exchange([SAMPLE_DAY], tmp_path, speed=1,
                              wall_start_ms=time.time_ns() // 1_000_000 - BUSY_STRETCH_MS)
    ledger = tmp_path / "live.db"
    try:
        if fault:
            exchange.fault(fault, 5)
        live = LiveProcess(exchange, tmp_path, ledger, "--strategy", "model", "--param", f"checkpoint={ckpt}",
                           "--param", "in_sample=true", duration="3s", interval="1m")
        done = live.wait(60)
    finally:
        exchange.stop()
    assert done.returncode == 0 and done.result["status"] == "finished", done.stderr[-3000:]
    return done, ckpt, ledger


def test_live_warm_up_loads_klines_from_the_venue_rest_api(tmp_path):
    done, ckpt, ledger = rest_warm_up_session(tmp_path)
    saved = json.loads(query(ledger, "SELECT state FROM strategy_state ORDER BY id").state.iloc[-1])
    from models.runner import ModelRunner

    assert saved["history_bars"] == ModelRunner.load(str(ckpt)).warmup_bars
    assert "no history" not in done.stderr


def test_a_rate_limited_warm_up_gives_up_at_once_and_the_session_runs_on(tmp_path):
    done, _, _ = rest_warm_up_session(tmp_path, fault="rest403")  # Bybit asks for ten minutes
    assert "no history to warm up from" in done.stderr and "the IP is rate-limited" in done.stderr
    # at once: while the session ran, not after Bybit's ten minutes (wait() would time out first)
    assert done.stderr.index("no history to warm up from") < done.stderr.index("stopping (duration)")


def test_the_bars_between_the_warm_up_and_the_first_live_bar_join_the_window(tmp_path):
    start_ms = aligned_start_ms(lead_s=6)  # the first live bar opens here, a few bars after the warm-up
    bars = ar1_bars(700, seed=3, price=105_000.0, step_ms=INTERVAL_MS)
    bars["open_time"] += start_ms - INTERVAL_MS * 600 - int(bars.open_time[0])  # history runs past it
    history = write_bars(bars, tmp_path / "history.csv")
    ckpt = train_tiny(bars, "full", tmp_path / "model.pt", interval="2s")
    ledger = tmp_path / "live.db"
    exchange = start_exchange([SAMPLE_DAY], tmp_path, speed=400, wall_start_ms=start_ms)
    try:
        live = LiveProcess(exchange, tmp_path, ledger, "--strategy", "tests.helpers.model:WatchedWarmUp",
                           "--param", f"checkpoint={ckpt}", "--param", f"history={history}",
                           "--param", "in_sample=true", duration="8s")
        done = live.wait(90)
    finally:
        exchange.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = done.result["run_id"]
    step_ns = INTERVAL_MS * 1_000_000
    first_ns = int(query(ledger, "SELECT min(open_time) AS t FROM bars WHERE run_id = ?",
                         (run_id,)).t.iloc[0])
    first_ms = first_ns // 1_000_000
    # the first whole bar (later than the stream's start when a loaded machine started it late)
    assert first_ns == first_bar_open(ledger, run_id, start_ms * 1_000_000, step_ns), \
        start_gap(ledger, run_id)
    forecast = query(ledger, "SELECT * FROM predictions WHERE run_id = ? ORDER BY id LIMIT 1", (run_id,))
    saved = json.loads(query(ledger, "SELECT state FROM strategy_state ORDER BY id").state.iloc[-1])
    # of the first live bar, or of the newest the warm-up held when its history came after it
    due = first_forecast_due(saved, "BTCUSDT", first_ns + step_ns)
    assert int(forecast.ts_event.iloc[0]) == due, saved
    live_bars = query(ledger, "SELECT * FROM bars WHERE run_id = ? AND open_time < ? ORDER BY open_time",
                      (run_id, due))[list(bars.columns)]
    live_bars["open_time"] //= 1_000_000
    from models.runner import ModelRunner

    runner = ModelRunner.load(str(ckpt))
    warm = saved["history_bars"]
    assert warm > runner.warmup_bars  # the warm-up's bars and the ones after it
    window = pd.concat([bars[bars.open_time < first_ms].tail(warm), live_bars], ignore_index=True)
    holed = pd.concat([bars[bars.open_time < first_ms].iloc[-warm:-(warm - runner.warmup_bars)], live_bars],
                      ignore_index=True)
    wanted = np.zeros(len(window), dtype=bool)
    wanted[-1] = True
    got = json.loads(forecast["values"].iloc[0])
    np.testing.assert_allclose(got, runner.predict_rows(window, wanted)[-1], rtol=1e-5)
    wanted = np.zeros(len(holed), dtype=bool)
    wanted[-1] = True
    assert not np.allclose(got, runner.predict_rows(holed, wanted)[-1], rtol=1e-5)  # as it was before
