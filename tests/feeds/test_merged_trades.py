"""The merged trade replay's rules, on random archives with tied trade times and handlers that
set timers and switch fine batches on and off: every trade is sent once, in its symbol's
order; every trade before a timer's deadline is sent before it fires and none after it; while
fine batches are asked for, a batch never passes another symbol's next trade (ties in symbol
order) nor ``max_batch_ns``. Handlers set timers after the clock's now, as an order's does."""

from __future__ import annotations

import random

import numpy as np
import pytest

from engine.core.bus import Bus
from engine.core.clock import NS_PER_S, ReplayClock
from engine.core.events import Trades
from engine.feeds.history.archive import TradeArchive
from engine.feeds.history.portfolio import MergedTradeReplay
from engine.feeds.history.replay import TradeReplay
from tests.helpers.archive import random_trades, write_derivatives

DAY0 = 1748736000  # 2025-06-01


def merged(tmp_path, rng: random.Random, seed: int) -> tuple[MergedTradeReplay, dict[str, np.ndarray]]:
    replays, wanted = [], {}
    max_batch_ns = rng.choice([NS_PER_S // 1000, NS_PER_S // 10, NS_PER_S])
    for k in range(rng.randint(1, 5)):
        symbol = f"S{k}USDT"
        ts, p, s, side = random_trades(rng.randint(1, 300), DAY0, rng.choice([2, 30, 600]), seed * 10 + k)
        path = write_derivatives(tmp_path / f"{symbol}2025-06-01.csv", np.round(ts, 2), p, s, side, symbol)
        archive = TradeArchive(path)
        rows = rng.choice([7, 50, 1000])
        replays.append(TradeReplay([archive], chunk_rows=rows, max_batch_ns=max_batch_ns))
        wanted[symbol] = np.fromfile(archive.cache_dir / "ts.bin", dtype=np.int64)
    return MergedTradeReplay(replays), wanted


@pytest.mark.parametrize("seed", range(12))
def test_merged_trades_keep_time_order_deadlines_and_fine_batches(tmp_path, seed):
    rng = random.Random(seed)
    replay, wanted = merged(tmp_path, rng, seed)
    ranks = {symbol: k for k, symbol in enumerate(wanted)}
    sent = dict.fromkeys(wanted, 0)
    clock = ReplayClock(replay.range.start)
    bus = Bus(clock)
    state = {"fine": rng.random() < 0.5}
    fired: list[int] = []

    def on_timer(at: int) -> None:
        # every trade before the deadline is sent, and none at or after it
        assert sent == {s: int(np.searchsorted(ts, at)) for s, ts in wanted.items()}
        fired.append(at)
        if rng.random() < 0.3:
            state["fine"] = not state["fine"]
        if rng.random() < 0.8:
            clock.set_timer(at + rng.choice([1, 10**6, 10**8, 2 * NS_PER_S]), on_timer)

    def on_trades(trades: Trades) -> None:
        ts = wanted[trades.symbol]
        lo = sent[trades.symbol]
        assert trades.ts_event.tolist() == ts[lo:lo + len(trades.ts_event)].tolist()
        sent[trades.symbol] = lo + len(trades.ts_event)
        if state["fine"]:
            assert trades.ts_event[-1] < trades.ts_event[0] + replay.max_batch_ns
            for other, other_ts in wanted.items():
                if other != trades.symbol and sent[other] < len(other_ts):
                    nxt = int(other_ts[sent[other]])
                    after = ranks[other] > ranks[trades.symbol]
                    assert trades.ts_event[-1] < nxt or (after and trades.ts_event[-1] == nxt)
        if rng.random() < 0.1:
            state["fine"] = not state["fine"]
        if rng.random() < 0.2:
            clock.set_timer(clock.timestamp_ns() + rng.choice([1, 10**6, 10**8]), on_timer)

    bus.subscribe(Trades, on_trades)
    for _ in range(rng.randint(0, 4)):
        clock.set_timer(replay.range.start + rng.randint(1, 600) * NS_PER_S // 10, on_timer)
    replay.run(bus, None, lambda: state["fine"])
    assert sent == {s: len(ts) for s, ts in wanted.items()}
