"""``FastAboveSlow`` decides every bar exactly as comparing ``math.fsum`` window means does:
on random data, on prices on a tick grid (where the means tie exactly and often), on wild
magnitudes, across a NaN, after restoring saved state, and over a long run."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies.indicators import FastAboveSlow


def fsum_decisions(values: list[float], fast: int, slow: int) -> list[bool | None]:
    """The definition: fsum of each window over its length, compared, at every value."""
    out: list[bool | None] = []
    for i in range(len(values)):
        window = values[max(0, i + 1 - slow) : i + 1]
        if len(window) < slow:
            out.append(None)
            continue
        out.append(math.fsum(window[-fast:]) / fast > math.fsum(window) / slow)
    return out


def pushed(values: list[float], fast: int, slow: int) -> list[bool | None]:
    averages = FastAboveSlow(fast, slow)
    return [averages.push(v) for v in values]


windows = st.integers(1, 12).flatmap(lambda fast: st.tuples(st.just(fast), st.integers(fast + 1, 40)))


@settings(max_examples=300, deadline=None)
@given(windows, st.lists(st.floats(1e-3, 1e6), min_size=1, max_size=300))
def test_random_values(sizes, values):
    assert pushed(values, *sizes) == fsum_decisions(values, *sizes)


@settings(max_examples=300, deadline=None)
@given(windows, st.lists(st.integers(-2, 2), min_size=1, max_size=400), st.sampled_from([0.1, 0.5, 0.01]))
def test_tick_grid_prices_with_exact_ties(sizes, steps, tick):
    values = [round(30_000.0 + tick * s, 8) for s in np.cumsum(steps).tolist()]
    assert pushed(values, *sizes) == fsum_decisions(values, *sizes)


@settings(max_examples=200, deadline=None)
@given(windows, st.lists(st.floats(1e-8, 1e8) | st.sampled_from([1e-8, 1.0, 1e8]), min_size=1, max_size=200))
def test_wild_magnitudes(sizes, values):
    assert pushed(values, *sizes) == fsum_decisions(values, *sizes)


def test_a_nan_decides_false_until_it_leaves_both_windows():
    values = [100.0 + (i % 7) for i in range(60)]
    values[35] = math.nan
    got, expected = pushed(values, 3, 10), fsum_decisions(values, 3, 10)
    assert got == expected
    assert got[35:45] == [False] * 10 and got[45:] == expected[45:]


def test_constant_values_tie_and_are_never_above():
    assert pushed([42.1] * 50, 5, 20)[19:] == [False] * 31


def test_restored_state_decides_as_if_never_stopped():
    rng = np.random.default_rng(3)
    values = np.round(30_000 + np.cumsum(rng.integers(-3, 4, 500)) * 0.1, 1).tolist()
    whole = FastAboveSlow(10, 30)
    before = [whole.push(v) for v in values]
    restored = FastAboveSlow(10, 30)
    restored.extend(values[200:230])  # what a save at value 229 holds: the slow window
    assert [restored.push(v) for v in values[230:]] == before[230:]


def test_a_long_random_walk():
    rng = np.random.default_rng(7)
    values = np.round(30_000 * np.exp(np.cumsum(rng.normal(0, 0.0008, 100_000))), 1).tolist()
    assert pushed(values, 10, 30) == fsum_decisions(values, 10, 30)


def test_windows_are_checked():
    with pytest.raises(ValueError, match="fast < slow"):
        FastAboveSlow(5, 5)
