"""The bar interval of a kline series read in blocks is the one read whole: the same step,
the same refusal of a stray bar, wherever the blocks are cut."""

from __future__ import annotations

import numpy as np
import pytest

from engine.bars.kline_files import BarFileError, infer_interval_ms, infer_interval_ms_of

MINUTE = 60_000


def in_blocks(times: np.ndarray, size: int):
    return lambda: (times[lo : lo + size] for lo in range(0, len(times), size))


def outcome(infer, *args) -> int | str:
    try:
        return infer(*args)
    except BarFileError as exc:
        return str(exc)


SERIES = {
    "regular": np.arange(50, dtype=np.int64) * MINUTE,
    "skipped bars": np.array([0, 1, 2, 5, 6, 9, 10, 11], dtype=np.int64) * MINUTE,
    "mostly hourly": np.array([0, 60, 120, 180, 240, 241, 300], dtype=np.int64) * MINUTE,
    "stray at a cut": np.array([0, 60, 120, 180, 181, 240, 300, 360], dtype=np.int64) * MINUTE,
    "a tie of steps": np.array([0, 2, 4, 5, 6, 7], dtype=np.int64) * MINUTE,
    "one bar": np.array([0], dtype=np.int64),
}


@pytest.mark.parametrize("name", SERIES)
@pytest.mark.parametrize("size", [1, 2, 3, 4, 1000])
def test_blocks_give_what_the_whole_series_gives(name, size):
    times = SERIES[name]
    whole = outcome(infer_interval_ms, times, "f.csv")
    assert outcome(infer_interval_ms_of, in_blocks(times, size), "f.csv") == whole


def test_what_the_whole_series_gives():
    assert infer_interval_ms(SERIES["skipped bars"]) == MINUTE
    assert infer_interval_ms(SERIES["a tie of steps"]) == MINUTE
    with pytest.raises(BarFileError, match="most bars are 3600000 ms apart, but the bar at open_time "
                                           "14460000 is 60000 ms after"):
        infer_interval_ms(SERIES["mostly hourly"])
    with pytest.raises(BarFileError, match="fewer than two bars"):
        infer_interval_ms(SERIES["one bar"])
