"""Live timing: a batch received after an order arrived can hold trades that happened at the
venue before it (network delay, a backfill); those never fill the order."""

from __future__ import annotations

import numpy as np

from engine.core.clock import NS_PER_MS, NS_PER_S
from engine.core.events import Trades
from tests.helpers.broker import BTC, T0, Harness

S, MS = NS_PER_S, NS_PER_MS


def late_batch(h: Harness, ts: list[int], price: list[float], received: int) -> None:
    """Trades stamped ``ts`` at the venue, received at ``received`` (as live)."""
    n = len(ts)
    h.bus.process(Trades(BTC, np.array(ts, dtype=np.int64), np.array(price), np.ones(n),
                         np.ones(n, dtype=np.int8), None, received))


def test_trades_older_than_the_order_do_not_fill_it():
    h = Harness(latency_ms=10.0)
    h.trade(T0 + S, 30_000.0)
    cid = h.order(+1, 0.1, ts=T0 + 2 * S)  # arrives at T0 + 2.010 s
    late_batch(h, [T0 + 2 * S, T0 + 2 * S + 5 * MS, T0 + 2 * S + 20 * MS], [29_000.0, 29_500.0, 30_100.0],
               received=T0 + 2 * S + 40 * MS)
    (fill,) = h.fills
    assert fill.price == 30_100.0 and fill.ts_event == T0 + 2 * S + 20 * MS
    assert h.statuses(cid) == ["accepted", "filled"]


def test_a_batch_entirely_before_the_arrival_leaves_ioc_working():
    h = Harness(latency_ms=10.0)
    h.trade(T0 + S, 30_000.0)
    cid = h.order(+1, 0.1, "limit", price=30_050.0, tif="IOC", ts=T0 + 2 * S)
    late_batch(h, [T0 + S + 500 * MS], [30_000.0], received=T0 + 2 * S + 30 * MS)
    assert h.fills == [] and h.statuses(cid) == ["accepted"]
    late_batch(h, [T0 + 2 * S + 50 * MS], [30_010.0], received=T0 + 2 * S + 60 * MS)
    assert [f.price for f in h.fills] == [30_010.0]
