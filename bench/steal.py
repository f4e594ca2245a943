"""How much CPU a benchmark really had: time stolen from this virtual machine by its host,
and a reference loop that times the CPU itself.

On a shared host the hypervisor gives other guests some of "our" cores' time; the guest
sees it as ``steal`` in ``/proc/stat``, and a figure measured during heavy steal is slower
than the code. Benchmarks print the share next to their figures so a reader can tell.
"""

from __future__ import annotations

import time
from pathlib import Path

STAT = Path("/proc/stat")


def _cpu_ticks() -> tuple[int, int] | None:
    """(steal, total) jiffies over all CPUs since boot, or None where /proc/stat is absent."""
    try:
        fields = STAT.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    ticks = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return ticks[7], sum(ticks)


class StealMeter:
    """Share of CPU time stolen between ``start()`` and ``share()`` (0.0 when unknown)."""

    def __init__(self) -> None:
        self._start = _cpu_ticks()

    def start(self) -> None:
        self._start = _cpu_ticks()

    def share(self) -> float:
        end = _cpu_ticks()
        if self._start is None or end is None or end[1] == self._start[1]:
            return 0.0
        return (end[0] - self._start[0]) / (end[1] - self._start[1])


def reference_loop_s() -> float:
    """Seconds for ten million pure-Python additions (best of three): the speed of this CPU
    right now, to compare figures taken at different times on a host whose speed varies."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        total = 0
        for i in range(10_000_000):
            total += i
        best = min(best, time.perf_counter() - start)
    return best
