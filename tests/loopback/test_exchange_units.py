"""Pure pieces of the loopback exchange: tick directions, candle alignment, message grouping,
Range parsing."""

from __future__ import annotations

import numpy as np
import pytest

from engine.bybit.intervals import candle_start, candle_starts, next_start
from engine.bybit.render import TICK_NAMES
from engine.loopback.archive_files import parse_range
from engine.loopback.stream import message_bounds
from engine.loopback.tape import tick_directions

JUNE_4 = 1748995200000  # 2025-06-04, a Wednesday, 00:00 UTC, ms


def names(codes) -> list[str]:
    return [TICK_NAMES[c + 2] for c in codes]


def test_tick_directions_carry_across_chunks():
    prices = np.array([10.0, 10.0, 11.0, 11.0, 11.0, 9.0, 9.0, 10.0])
    whole, _, _ = tick_directions(prices, np.nan, 1)
    assert names(whole) == ["PlusTick", "ZeroPlusTick", "PlusTick", "ZeroPlusTick", "ZeroPlusTick",
                            "MinusTick", "ZeroMinusTick", "PlusTick"]
    first, last_price, last_dir = tick_directions(prices[:6], np.nan, 1)
    second, _, _ = tick_directions(prices[6:], last_price, last_dir)
    assert list(np.concatenate([first, second])) == list(whole)


def test_candles_align_like_bybits():
    assert candle_start("W", JUNE_4 + 5_000) == JUNE_4 - 2 * 86_400_000  # Monday 2025-06-02
    assert candle_start("M", JUNE_4) == 1748736000000  # 2025-06-01
    assert next_start("M", 1748736000000) == 1751328000000  # 2025-07-01
    assert next_start("M", 1764547200000) == 1767225600000  # 2025-12-01 -> 2026-01-01
    assert candle_start("15", JUNE_4 + 16 * 60_000) == JUNE_4 + 15 * 60_000
    assert candle_starts("5", JUNE_4, JUNE_4 + 20 * 60_000, 3) == [JUNE_4 + k * 300_000 for k in (2, 3, 4)]
    assert candle_starts("M", 1748736000000, 1767225600000, 2) == [1764547200000, 1767225600000]


def test_messages_group_trades_of_one_time_and_split_at_1024():
    served = np.array([5] * 3 + [6] + [7] * 2050, dtype=np.int64)
    assert message_bounds(served, 0) == [(0, 3), (3, 4), (4, 1028), (1028, 2052), (2052, 2054)]
    assert message_bounds(served, 2) == [(2, 3), (3, 4), (4, 1028), (1028, 2052), (2052, 2054)]
    assert message_bounds(served, len(served)) == []


@pytest.mark.parametrize("header, span", [
    (None, None), ("bytes=0-", (0, 99)), ("bytes=10-19", (10, 19)), ("bytes=90-500", (90, 99)),
    ("bytes=-10", (90, 99)), ("bytes=1-2,5-6", None), ("items=1-2", None),
])
def test_parse_range(header, span):
    assert parse_range(header, 100) == span


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=20-10"])
def test_unsatisfiable_ranges(header):
    with pytest.raises(ValueError):
        parse_range(header, 100)
