"""Seeded synthetic bars for the models tests."""

import numpy as np
import pandas as pd
import pytest

HOUR_MS = 3_600_000
START_MS = 1_700_006_400_000  # a UTC midnight


def synthetic_bars(n: int = 1500, seed: int = 0, phi: float = 0.5, cycle: float = 0.004,
                   noise: float = 0.002, step_ms: int = HOUR_MS) -> pd.DataFrame:
    """Bars whose log returns follow ``r_t = phi r_{t-1} + cycle sin(2 pi t / 16) + noise``:
    a learnable, causal pattern."""
    rng = np.random.default_rng(seed)
    r = np.zeros(n)
    for t in range(1, n):
        r[t] = phi * r[t - 1] + cycle * np.sin(2 * np.pi * t / 16) + noise * rng.normal()
    close = 100 * np.exp(np.cumsum(r))
    open_ = np.r_[100.0, close[:-1]]
    wick = np.abs(rng.normal(0, 0.001, (2, n)))
    volume = rng.lognormal(3, 0.5, n)
    return pd.DataFrame({
        "open_time": START_MS + step_ms * np.arange(n, dtype=np.int64),
        "open": open_,
        "high": np.maximum(open_, close) * (1 + wick[0]),
        "low": np.minimum(open_, close) * (1 - wick[1]),
        "close": close,
        "volume": volume,
        "turnover": volume * close,
        "trades": rng.poisson(50, n).astype(np.int64),
    })


@pytest.fixture
def bars() -> pd.DataFrame:
    return synthetic_bars()


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every model test runs on one torch thread (``one_torch_thread`` in tests/conftest.py)."""
