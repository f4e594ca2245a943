"""The clock: the one source of "now", with timers.

Replay and live differ only here. A :class:`ReplayClock` is moved forward by the pump to
each event's ``ts_init``; a :class:`LiveClock` reads wall time. Both keep timers in a heap,
and the pump fires every timer due at or before an event's ``ts_init`` before delivering
the event, so a bar closes on its timer the same way in a quiet market and a busy one.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable

TimerCallback = Callable[[int], None]
_LAST = 1 << 62  # added to the order of a ``last`` timer: after every other of its instant

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000


class Timer:
    """A pending timer; ``cancel()`` stops it from firing."""

    __slots__ = ("at", "callback", "name", "canceled")

    def __init__(self, at: int, callback: TimerCallback, name: str) -> None:
        self.at = at
        self.callback = callback
        self.name = name
        self.canceled = False

    def cancel(self) -> None:
        self.canceled = True


class Clock:
    """Timers plus the notion of now shared by both modes."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Timer]] = []
        self._seq = itertools.count()
        self._now = 0

    def timestamp_ns(self) -> int:
        """The current time in UTC nanoseconds."""
        return self._now

    def set_timer(self, at_ns: int, callback: TimerCallback, name: str = "", *, last: bool = False) -> Timer:
        """Call ``callback(at_ns)`` once the clock reaches ``at_ns``; timers at one instant
        fire in the order they were set, those set with ``last`` after all the others (a
        timer that gathers what the others of its instant made)."""
        timer = Timer(int(at_ns), callback, name)
        heapq.heappush(self._heap, (timer.at, next(self._seq) + (_LAST if last else 0), timer))
        self._on_new_timer(timer.at)
        return timer

    def next_deadline(self) -> int | None:
        """The earliest pending timer's deadline, or None."""
        heap = self._heap
        while heap and heap[0][2].canceled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, ts_ns: int) -> Timer | None:
        """Remove and return the earliest live timer due at or before ``ts_ns``, moving the
        clock to its deadline; None when nothing is due."""
        heap = self._heap
        while heap and heap[0][0] <= ts_ns:
            timer = heapq.heappop(heap)[2]
            if not timer.canceled:
                self._now = max(self._now, timer.at)
                return timer
        return None

    def _on_new_timer(self, at_ns: int) -> None:
        """Hook for clocks that must wake themselves up for a new deadline."""


class ReplayClock(Clock):
    """Simulated time, moved only by the pump: replay runs as fast as the CPU allows."""

    def __init__(self, start_ns: int = 0) -> None:
        super().__init__()
        self._now = start_ns


class LiveClock(Clock):
    """Wall time, as the pump sees it: each event is handled at its receive time (its
    ``ts_init``), so handling is a function of the inputs alone. ``waker`` is called with
    each new earliest deadline so the live pump can queue a wake-up for quiet markets."""

    def __init__(self, waker: Callable[[int], None] | None = None, start_ns: int | None = None) -> None:
        super().__init__()
        self._now = time.time_ns() if start_ns is None else start_ns
        self.waker = waker

    def _on_new_timer(self, at_ns: int) -> None:
        if self.waker is not None and self.next_deadline() == at_ns:
            self.waker(at_ns)
