"""Bar sets hold the bars of their own close time only: a symbol whose bars a live feed gap
held past a deadline is left out of that set and never lands in a later close time's set."""

from __future__ import annotations

from engine.bars.aggregator import parse_interval
from engine.bars.bar_sets import BarSetCollector
from engine.core.bus import Bus
from engine.core.clock import NS_PER_S, ReplayClock
from engine.core.events import Bar, BarSet


def bar(symbol: str, close_s: int) -> Bar:
    close = close_s * NS_PER_S
    return Bar(symbol, "1s", close - NS_PER_S, close, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1, close, close - 1)


def test_a_held_symbols_late_bar_joins_no_later_set():
    clock = ReplayClock(0)
    bus = Bus(clock)
    sets: list[BarSet] = []
    bus.subscribe(BarSet, sets.append)
    collector = BarSetCollector(parse_interval("1s"), clock, bus.publish)
    bus.subscribe(Bar, collector.on_bar)
    collector.start_at(0)
    bus.process(bar("A", 1))
    bus.process(bar("B", 1))
    bus.advance_to(1 * NS_PER_S)
    bus.process(bar("A", 2))  # B is held by a gap at 2 s
    bus.advance_to(2 * NS_PER_S)
    bus.process(bar("B", 2)._replace(ts_init=3 * NS_PER_S - 2))  # released by the gap, a close time late
    bus.process(bar("A", 3))
    bus.advance_to(3 * NS_PER_S)  # B's bar of 3 s is still held
    bus.process(bar("B", 3)._replace(ts_init=4 * NS_PER_S - 2))
    bus.process(bar("A", 4))
    bus.process(bar("B", 4))
    bus.advance_to(4 * NS_PER_S)
    assert [(s.close_time // NS_PER_S, sorted(s.bars)) for s in sets] == [
        (1, ["A", "B"]), (2, ["A"]), (3, ["A"]), (4, ["A", "B"])]
    assert all(b.close_time == s.close_time for s in sets for b in s.bars.values())
