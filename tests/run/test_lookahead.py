"""No look-ahead: on every callback, nothing a strategy can see is stamped after its clock.

A spy strategy trades (market, limit and stop orders, with latency) and records, at each
callback, the clock and the newest timestamp in what it was handed. It runs through the
real backtest path on trade archives and on klines.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pytest

from engine.core.config import load_config
from engine.run.backtest import run_backtest
from strategies.base import Strategy, StrategyConfig

SEEN: list[tuple[str, int, int]] = []


@dataclass(frozen=True)
class SpyConfig(StrategyConfig):
    qty: float = 0.001


class Spy(Strategy):
    """Trades every few bars and records (callback, clock, newest visible timestamp)."""

    config_class = SpyConfig

    def __init__(self, config=None) -> None:
        super().__init__(config)
        self.bars = 0

    def _saw(self, what: str, newest: int) -> None:
        SEEN.append((what, self.clock.timestamp_ns(), int(newest)))

    def on_bar(self, bar) -> None:
        self._saw("bar", max(bar.ts_event, bar.close_time))
        self.bars += 1
        step = self.bars % 6
        if step == 1:
            self.target_position(self.config.qty)
        elif step == 3:
            self.submit_order("sell", self.config.qty, "limit", price=round(bar.close * 1.0005, 1))
        elif step == 5:
            self.submit_order("buy", self.config.qty, "stop", trigger_price=round(bar.close * 1.0003, 1))
            self.target_position(0)

    def on_trades(self, trades) -> None:
        self._saw("trades", trades.ts_event.max())

    def on_fill(self, fill) -> None:
        self._saw("fill", fill.ts_event)

    def on_order_update(self, update) -> None:
        self._saw("update", update.ts_event)


@pytest.fixture
def spy_config(tmp_path):
    """A config factory: the spy strategy with latency, jitter and leverage, on ``data``."""
    SEEN.clear()

    def make(data: list[str], *extra: str):
        cfg = load_config(None, [
            f"ledger.path={tmp_path / 'l.db'}", "strategy.name=tests.run.test_lookahead:Spy",
            "broker.latency_ms=250", "broker.latency_jitter_ms=100", "account.leverage=5", *extra,
        ])
        return replace(cfg, run=replace(cfg.run, data=tuple(data)))

    return make


def check_seen(kinds: set[str]) -> None:
    assert {k for k, _, _ in SEEN} >= kinds, f"callbacks seen: {sorted({k for k, _, _ in SEEN})}"
    late = [(k, clock, newest) for k, clock, newest in SEEN if newest > clock]
    assert not late, f"{len(late)} callbacks saw the future, e.g. {late[:3]}"


def test_trade_replay_never_shows_the_future(spy_config, sample_files):
    result = run_backtest(spy_config([str(sample_files[0])], "run.end=2025-06-01T06:00"), progress=False)
    assert result.fills > 20
    check_seen({"bar", "trades", "fill", "update"})


def test_kline_replay_never_shows_the_future(spy_config, tmp_path):
    rng = np.random.default_rng(0)
    n = 600
    close = 100_000 + np.cumsum(rng.normal(0, 50, n))
    frame = pd.DataFrame({
        "open_time": 1748736000000 + np.arange(n) * 60_000, "open": np.round(close + rng.normal(0, 5, n), 1),
        "close": np.round(close, 1), "volume": 5.0, "turnover": 5e5, "trades": 10,
    })
    frame["high"] = frame[["open", "close"]].max(axis=1) + 20
    frame["low"] = frame[["open", "close"]].min(axis=1) - 20
    path = tmp_path / "klines.csv"
    frame.to_csv(path, index=False)
    result = run_backtest(spy_config([str(path)]), progress=False)
    assert result.fills > 20
    check_seen({"bar", "fill", "update"})
