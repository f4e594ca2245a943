"""The funding clock of linear perpetuals: at every settlement (00:00, 08:00, 16:00 UTC by
default) it publishes a ``Funding`` event for each open position at its mark price; the
broker applies it to the account (a positive rate debits longs)."""

from __future__ import annotations

from engine.broker.account import Account
from engine.core.bus import Bus
from engine.core.clock import NS_PER_S
from engine.core.events import Funding


class FundingSchedule:
    """Timers that settle funding at a fixed ``rate`` every ``interval_hours``."""

    def __init__(self, bus: Bus, account: Account, rate: float, interval_hours: float = 8.0) -> None:
        self.bus, self.account, self.rate = bus, account, rate
        self.interval_ns = int(interval_hours * 3600 * NS_PER_S)

    def start(self, from_ns: int) -> None:
        """Settle at every interval boundary after ``from_ns``; nothing for a zero rate or spot."""
        if self.rate == 0.0 or self.account.category != "linear":
            return
        first = (from_ns // self.interval_ns + 1) * self.interval_ns
        self.bus.clock.set_timer(first, self._due, "funding")

    def _due(self, at: int) -> None:
        for symbol, pos in self.account.positions.items():
            if pos.qty != 0.0 and not self.account.is_spot(symbol):  # coins held pay no funding
                mark = self.account.marks.get(symbol, pos.avg_price)
                self.bus.publish(Funding(symbol, self.rate, mark, at, at))
        self.bus.clock.set_timer(at + self.interval_ns, self._due, "funding")
