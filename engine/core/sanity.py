"""The bounds a market number must lie in to be data rather than a typo or corruption: every
reader (trade archives, kline files, recordings, websocket messages) refuses values outside
them as malformed, the way it refuses NaN, so no ``inf`` price or 1970 stamp reaches a bar."""

from __future__ import annotations

import time

import numpy as np

NS_PER_DAY = 86_400 * 10**9
# Bitcoin's genesis block (2009-01-03 UTC): no crypto trade is older.
MIN_TS_NS = 1_230_940_800 * 10**9
# Prices and sizes far beyond any listed market; their product must also fit the bars'
# exact integer sums (turnover in 1e-6 quote units is an int64).
MAX_PRICE = 1e9
MAX_SIZE = 1e11
MAX_NOTIONAL = 1e12
# A bar's volume, turnover or trade count beyond any market's (a kline file's own sums).
MAX_BAR_AMOUNT = 1e15


def max_ts_ns() -> int:
    """The latest plausible stamp: a day past this machine's clock (data cannot come from the future)."""
    return time.time_ns() + NS_PER_DAY


def bad_time(ts_ns: np.ndarray) -> np.ndarray:
    """Mask of nanosecond stamps outside [2009-01-03, now + 1 day] (NaN counts as outside)."""
    ts = np.asarray(ts_ns, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return ~((ts >= MIN_TS_NS) & (ts <= max_ts_ns()))


def bad_price(price: np.ndarray) -> np.ndarray:
    """Mask of prices that are not finite, not positive, or absurdly large."""
    p = np.asarray(price, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return ~((p > 0) & (p <= MAX_PRICE))


def bad_size(size: np.ndarray, *, allow_zero: bool = False) -> np.ndarray:
    """Mask of sizes (volumes) that are not finite, negative (or zero), or absurdly large."""
    s = np.asarray(size, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        low = (s >= 0) if allow_zero else (s > 0)
        return ~(low & (s <= MAX_SIZE))


def bad_notional(price: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Mask of trades whose value (price x size) is beyond any real trade."""
    with np.errstate(invalid="ignore", over="ignore"):
        value = np.asarray(price, dtype=np.float64) * np.asarray(size, dtype=np.float64)
        return ~(value <= MAX_NOTIONAL)
