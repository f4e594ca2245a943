"""A strategy that notes every run bar and higher-timeframe bar it gets, in order, with the
clock at delivery, into its saved state (so the ledger holds them for a test to read)."""

from __future__ import annotations

from typing import Any

from strategies.base import Strategy


class TimeframeWatcher(Strategy):
    """Trades nothing; ``events`` is ``[kind, symbol, interval, open, close, o, h, l, c, volume,
    turnover, trades, clock]`` for each ``on_bar`` ("run") and ``on_timeframe_bar`` ("higher")."""

    def __init__(self, config=None) -> None:
        super().__init__(config)
        self.events: list[list] = []

    def _note(self, kind: str, bar) -> None:
        self.events.append([kind, bar.symbol, bar.interval, bar.open_time, bar.close_time, bar.open, bar.high,
                            bar.low, bar.close, bar.volume, bar.turnover, bar.trades,
                            self.clock.timestamp_ns()])

    def on_bar(self, bar) -> None:
        self._note("run", bar)

    def on_timeframe_bar(self, bar) -> None:
        self._note("higher", bar)

    def on_save(self) -> dict[str, Any]:
        return {"events": self.events, "timeframes": list(self.timeframes)}
