"""``run_live_async`` in this process against a tiny Bybit-like market (trades every 10 ms on
the wall clock, a websocket and the recent-trade endpoint on one port): bars are built from
every trade from the session's start, even when the first connection takes seconds."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time

import pandas as pd

from engine.core.config import load_config
from engine.run.live import LiveOptions, run_live_async
from tests.helpers.live import compare_bars, query
from tests.helpers.scripted_bybit import FakeBybit, rest_trade, trade_message

MS = 1_000_000


async def market(server: FakeBybit, tape: list[tuple[str, int, float]]) -> None:
    """A trade every 10 ms: REST knows it once it is served; subscribers get it on the socket."""
    rng = random.Random(5)
    price = 100_000.0
    for k in range(10**6):
        price = round(price + rng.choice((-0.5, 0.0, 0.5)), 1)
        trade = (f"m-{k:07d}", time.time_ns() // MS, price)
        tape.append(trade)
        server.rest_trades.insert(0, rest_trade(*trade, k))
        del server.rest_trades[1000:]
        for conn in server.conns:
            if conn.subscribes:
                with contextlib.suppress(Exception):
                    await conn.ws.send(trade_message(*([x] for x in trade)))
        await asyncio.sleep(0.01)


def tape_bars(tape: list[tuple[str, int, float]], interval_ms: int) -> pd.DataFrame:
    frame = pd.DataFrame(tape, columns=["id", "t", "price"])
    frame["open_time"] = frame.t // interval_ms * interval_ms * MS
    bars = frame.groupby("open_time").agg(open=("price", "first"), high=("price", "max"),
                                          low=("price", "min"), close=("price", "last"),
                                          trades=("price", "size"))
    bars["volume"] = bars.trades * 0.01
    bars["turnover"] = frame.assign(q=frame.price * 0.01).groupby("open_time").q.sum()
    return bars


async def test_bars_hold_every_trade_from_the_start_when_the_first_connection_is_slow(tmp_path):
    tape: list[tuple[str, int, float]] = []
    async with FakeBybit(slow_first=2.3) as server:
        producer = asyncio.create_task(market(server, tape))
        cfg = load_config(None, [f"ledger.path={tmp_path / 'live.db'}", "ledger.flush_seconds=0.2"])
        opts = LiveOptions("BTCUSDT", "linear", interval="1s", ws_url=server.base,
                           rest_url=f"http://127.0.0.1:{server.port}", duration_s=5.0, status_every_s=60,
                           ping_interval_s=1, pong_timeout_s=1, stale_after_s=3)
        handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
        try:
            result = await run_live_async(cfg, opts)
        finally:
            producer.cancel()
        # the session's Ctrl-C/SIGTERM handling ends with it (the loop may go on)
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    assert result.status == "finished"
    bars = query(tmp_path / "live.db", "SELECT * FROM bars ORDER BY open_time")
    run = query(tmp_path / "live.db", "SELECT * FROM runs").iloc[0]
    first_full = -(-int(run.data_start) // (1000 * MS)) * 1000 * MS
    assert bars.open_time.iloc[0] == first_full, (bars.open_time.iloc[0], first_full)
    assert len(bars) >= 3  # 5 s: the bars after the first whole second, less one still in its delay
    problems = compare_bars(bars, tape_bars(tape, 1000))
    assert not problems, "\n".join(problems)
    # the wait for the first connection was backfilled: nothing was missed, so no gap is recorded
    assert query(tmp_path / "live.db", "SELECT * FROM feed_gaps").empty
