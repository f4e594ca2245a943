"""Bar sets: every symbol's time bar of one close time, published as one :class:`BarSet`
after each bar went through the bus, for strategies that look across symbols (``on_bars``).

The collector's timer at each close deadline is a ``last`` timer, so it fires after every
aggregator's timer of that deadline (even one re-armed later, as a live feed gap's release
does) and before any later event: the set holds exactly the bars of that close time. A
symbol whose bars a live feed gap holds past that deadline is left out of the set (its bars
reach ``on_bar`` when the gap is backfilled), never put into a later close time's set.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.bars.aggregator import BarSpec
from engine.core.clock import Clock
from engine.core.events import Bar, BarSet


class BarSetCollector:
    """Gathers the bars of ``spec`` per close time and publishes them as one :class:`BarSet`."""

    def __init__(self, spec: BarSpec, clock: Clock, publish: Callable[[BarSet], None],
                 close_delay_ns: int = 0) -> None:
        if not spec.is_time:
            raise ValueError(f"{spec.label} bars close on their own counts; they form no sets")
        self.spec, self.clock, self.publish = spec, clock, publish
        self.close_delay_ns = int(close_delay_ns)
        self._size = int(spec.size)
        self._bars: dict[str, Bar] = {}
        self.sets = 0

    def on_bar(self, bar: Bar) -> None:
        if bar.interval == self.spec.label:
            self._bars[bar.symbol] = bar

    def start_at(self, ts_ns: int) -> None:
        """Arm the first deadline: the close of the bar holding ``ts_ns``."""
        offset = self.spec.offset_ns
        close = ((ts_ns - offset) // self._size + 1) * self._size + offset
        self.clock.set_timer(close + self.close_delay_ns, self._on_timer, f"bar set {self.spec.label}",
                             last=True)

    def _on_timer(self, at: int) -> None:
        close_time = at - self.close_delay_ns
        self.clock.set_timer(at + self._size, self._on_timer, f"bar set {self.spec.label}", last=True)
        bars = {symbol: bar for symbol, bar in self._bars.items() if bar.close_time == close_time}
        self._bars = {symbol: bar for symbol, bar in self._bars.items() if bar.close_time > close_time}
        if not bars:
            return
        self.sets += 1
        self.publish(BarSet(self.spec.label, close_time, bars, close_time, self.clock.timestamp_ns()))
