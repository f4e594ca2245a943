"""Bybit kline intervals (BYBIT.md section 4): the codes, and where each candle starts and
ends, in UTC milliseconds. Weeks start on Monday 00:00 UTC and months on the 1st, as
Bybit's do."""

from __future__ import annotations

from datetime import UTC, datetime

INTERVALS = ("1", "3", "5", "15", "30", "60", "120", "240", "360", "720", "D", "W", "M")

MS_PER_MINUTE = 60_000
MS_PER_DAY = 86_400_000
_WEEK_MS = 7 * MS_PER_DAY
_WEEK_OFFSET_MS = 4 * MS_PER_DAY  # 1970-01-01 was a Thursday; Monday came 4 days later
_STEP_MS = {code: int(code) * MS_PER_MINUTE for code in INTERVALS[:10]} | {"D": MS_PER_DAY, "W": _WEEK_MS}


def step_ms(code: str) -> int | None:
    """The fixed length of an interval in ms; None for ``M`` (months differ in length)."""
    return _STEP_MS.get(code)


def candle_start(code: str, ms: int) -> int:
    """The start of the candle of interval ``code`` that contains time ``ms``."""
    if code == "M":
        moment = datetime.fromtimestamp(ms / 1000, UTC)
        return int(datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp()) * 1000
    step = _STEP_MS[code]
    offset = _WEEK_OFFSET_MS if code == "W" else 0
    return (ms - offset) // step * step + offset


def next_start(code: str, start: int) -> int:
    """The start of the candle after the one starting at ``start``."""
    if code == "M":
        moment = datetime.fromtimestamp(start / 1000, UTC)
        year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
        return int(datetime(year, month, 1, tzinfo=UTC).timestamp()) * 1000
    return start + _STEP_MS[code]


def candle_starts(code: str, first: int, last: int, limit: int) -> list[int]:
    """Starts of the newest ``limit`` candles from the one starting at ``first`` to the one
    at ``last``, oldest first."""
    step = _STEP_MS.get(code)
    if step is not None:
        count = min(limit, (last - first) // step + 1)
        return list(range(last - (count - 1) * step, last + 1, step)) if count > 0 else []
    starts = []
    while first <= last:
        starts.append(first)
        first = next_start(code, first)
    return starts[-limit:]
