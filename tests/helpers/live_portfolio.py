"""Helpers for the live portfolio tests: one trade archive per symbol cut from the sample
day (each symbol its own trades, prices and times), and a strategy that notes, at every
decision, whether any symbol's trade it has seen is stamped after the decision's clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from strategies.base import Strategy
from strategies.model_sizing import to_lots
from strategies.sma_cross import SmaCross
from tests.helpers.archive import write_derivatives
from tests.helpers.live import SAMPLE_DAY

# symbol -> (price divisor, time shift in s, which rows of the sample day)
SHAPES = {"BTCUSDT": (1.0, 0.0, slice(None)), "ETHUSDT": (40.0, 0.37, slice(0, None, 2)),
          "SOLUSDT": (700.0, 0.71, slice(1, None, 2))}


def symbol_archives(directory: Path, symbols: tuple[str, ...]) -> list[Path]:
    """One derivatives archive per symbol: the sample day's BTCUSDT as is, the others
    alternate rows of it, scaled in price and shifted in time, so the streams interleave."""
    day = pd.read_csv(SAMPLE_DAY)
    paths = []
    for symbol in symbols:
        divisor, shift, rows = SHAPES[symbol]
        part = day.iloc[rows]
        if symbol == "BTCUSDT":
            paths.append(SAMPLE_DAY)
            continue
        prices = np.maximum(np.round(part.price.to_numpy() / divisor, 1), 0.1)
        path = Path(directory) / f"{symbol}2025-06-01.csv.gz"
        write_derivatives(path, part.timestamp.to_numpy() + shift, prices, part["size"].to_numpy(),
                          np.where(part.side == "Buy", 1, -1), symbol=symbol)
        paths.append(path)
    return paths


class WatchedSmaCross(SmaCross):
    """``sma_cross`` that counts, at each bar it decides on, the symbols whose latest trade
    seen so far is stamped (exchange time or receive time) after the clock: look-ahead
    across symbols; and the bar sets (``on_bars``) that came a close time late or mixed
    close times. It notes each set's symbols and how long after its close each bar reached
    ``on_bar``, so a test can tell the close times a feed gap held past their set from the
    rest, and every higher-timeframe bar it gets. All of it goes into the saved state, so the
    ledger holds it."""

    def __init__(self, config=None) -> None:
        super().__init__(config)
        self.latest: dict[str, int] = {}
        self.decisions = 0
        self.ahead = 0
        self.sets = 0
        self.late_sets = 0  # bar sets delivered after their own close time's deadline had passed
        self.set_symbols: dict[str, list[str]] = {}  # close time -> the symbols of its set
        self.bar_delays: dict[str, dict[str, int]] = {}  # close time -> symbol -> ns from close to on_bar
        self.higher: list[list] = []  # higher-timeframe bars: symbol, open, close, o, h, l, c, trades, clock

    def on_trades(self, trades) -> None:
        self.latest[trades.symbol] = max(self.latest.get(trades.symbol, 0), int(trades.ts_event.max()),
                                         int(trades.ts_init))

    def on_bar(self, bar) -> None:
        now = self.clock.timestamp_ns()
        self.decisions += 1
        self.bar_delays.setdefault(str(bar.close_time), {})[bar.symbol] = now - bar.close_time
        self.ahead += sum(ts > now for ts in self.latest.values()) + (bar.close_time > now)
        super().on_bar(bar)

    def on_timeframe_bar(self, bar) -> None:
        now = self.clock.timestamp_ns()
        self.ahead += bar.close_time > now
        self.higher.append([bar.symbol, bar.open_time, bar.close_time, bar.open, bar.high, bar.low, bar.close,
                            bar.trades, now])

    def on_bars(self, bars) -> None:
        now = self.clock.timestamp_ns()
        closes = {bar.close_time for bar in bars.values()}
        self.sets += 1
        self.set_symbols[str(max(closes))] = sorted(bars)
        self.ahead += max(closes) > now
        self.late_sets += len(closes) > 1 or now - max(closes) >= max(b.close_time - b.open_time
                                                                        for b in bars.values())

    def on_save(self) -> dict[str, Any]:
        return super().on_save() | {"decisions": self.decisions, "ahead": self.ahead, "sets": self.sets,
                                    "late_sets": self.late_sets, "symbols_seen": sorted(self.latest),
                                    "set_symbols": self.set_symbols, "bar_delays": self.bar_delays,
                                    "higher": self.higher}


class BuyThenRestEach(Strategy):
    """For every symbol: buys about 200 USDT at market on its first bar, then leaves a buy
    limit half the price below resting. Saves what it saw at ``on_start`` (each symbol's
    position and open orders, the cash), so a test reads the view a resumed run began from."""

    def __init__(self, config=None) -> None:
        super().__init__(config)
        self.at_start: dict[str, Any] = {}

    def on_start(self) -> None:
        self.at_start = {"positions": dict(self.positions), "cash": self.cash,
                         "open_orders": {s: self.open_orders(s) for s in self.symbols}}

    def on_bar(self, bar) -> None:
        symbol = bar.symbol
        if self.position_of(symbol) == 0 and not self.open_orders(symbol):
            qty = to_lots(200.0, bar.close, self.instrument_of(symbol), None)
            self.submit_order("buy", qty, symbol=symbol)
        elif self.position_of(symbol) > 0 and not self.open_orders(symbol):
            tick = self.instrument_of(symbol).tick_size
            price = round(round(bar.close * 0.5 / tick) * tick, 8)
            self.submit_order("buy", self.position_of(symbol), "limit", price=price, symbol=symbol)

    def on_save(self) -> dict[str, Any]:
        return {"at_start": self.at_start}
