"""The bus and the clocks: timer order, event order, and what a raising handler does."""

from __future__ import annotations

import pytest

from engine.core.bus import Bus, HandlerError
from engine.core.clock import LiveClock, ReplayClock
from engine.core.events import Wakeup


def test_timers_fire_in_deadline_order_before_the_event():
    clock = ReplayClock(0)
    bus = Bus(clock)
    log: list[tuple[str, int]] = []
    clock.set_timer(30, lambda at: log.append(("t30", clock.timestamp_ns())))
    clock.set_timer(10, lambda at: log.append(("t10", clock.timestamp_ns())))
    clock.set_timer(10, lambda at: log.append(("t10b", clock.timestamp_ns())))
    clock.set_timer(50, lambda at: log.append(("t50", at)))
    bus.subscribe(Wakeup, lambda ev: log.append(("event", clock.timestamp_ns())))
    bus.process(Wakeup(30, 30))
    assert log == [("t10", 10), ("t10b", 10), ("t30", 30), ("event", 30)]
    assert clock.next_deadline() == 50


def test_a_last_timer_fires_after_every_other_timer_of_its_instant_even_later_ones():
    clock = ReplayClock(0)
    log: list[str] = []
    clock.set_timer(10, lambda at: log.append("gather"), last=True)
    clock.set_timer(10, lambda at: log.append("bar a"))
    clock.set_timer(20, lambda at: log.append("next"))
    clock.set_timer(10, lambda at: log.append("bar b (re-armed)"))
    Bus(clock).advance_to(20)
    assert log == ["bar a", "bar b (re-armed)", "gather", "next"]


def test_canceled_timers_do_not_fire():
    clock = ReplayClock(0)
    fired = []
    timer = clock.set_timer(5, fired.append)
    timer.cancel()
    Bus(clock).advance_to(100)
    assert fired == [] and clock.next_deadline() is None


def test_events_published_by_handlers_come_before_the_next_outside_event():
    clock = ReplayClock(0)
    bus = Bus(clock)
    order: list[str] = []

    class Child(Wakeup):
        pass

    def first(ev):
        order.append(f"a{ev.ts_init}")
        bus.publish(Child(ev.ts_init, ev.ts_init))

    bus.subscribe(Wakeup, first)
    bus.subscribe(Wakeup, lambda ev: order.append(f"b{ev.ts_init}"))
    bus.subscribe(Child, lambda ev: order.append(f"child{ev.ts_init}"))
    clock.set_timer(2, lambda at: bus.publish(Child(at, at)))
    bus.process(Wakeup(1, 1))
    bus.process(Wakeup(3, 3))
    assert order == ["a1", "b1", "child1", "child2", "a3", "b3", "child3"]


def test_the_clock_never_goes_backwards():
    clock = ReplayClock(100)
    Bus(clock).process(Wakeup(50, 50))
    assert clock.timestamp_ns() == 100


def test_a_raising_handler_is_logged_counted_and_stops_the_run(caplog):
    bus = Bus(ReplayClock(0))
    after: list[int] = []

    def broken(ev):
        raise ZeroDivisionError("boom")

    bus.subscribe(Wakeup, broken)
    bus.subscribe(Wakeup, lambda ev: after.append(ev.ts_init))
    with pytest.raises(HandlerError, match="broken failed on Wakeup") as err:
        bus.process(Wakeup(7, 7))
    assert err.value.event == Wakeup(7, 7)
    assert bus.errors == 1 and after == []
    assert "Wakeup(ts_event=7, ts_init=7)" in caplog.text and "boom" in caplog.text


def test_live_clock_reads_wall_time_and_wakes_for_new_deadlines():
    import time

    wakes: list[int] = []
    clock = LiveClock(waker=wakes.append)
    assert abs(clock.timestamp_ns() - time.time_ns()) < 1_000_000_000
    later = clock.timestamp_ns() + 10**9
    clock.set_timer(later, lambda at: None)
    clock.set_timer(later + 5, lambda at: None)  # not the earliest: no new wake-up
    assert wakes == [later]
