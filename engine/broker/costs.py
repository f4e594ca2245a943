"""The broker's pluggable, seeded models: fees, slippage, latency and fill probability.

Each is a small class; the broker only calls the methods shown, so a user can pass their
own object with the same methods. Randomness comes from one ``numpy`` generator seeded
from the run's seed, so a run repeats exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.core.symbols import split_market

# Bybit's published non-VIP rates (BYBIT.md section 10): (maker, taker).
DEFAULT_FEES = {"spot": (0.001, 0.001), "linear": (0.0002, 0.00055), "inverse": (0.0002, 0.00055)}


@dataclass(frozen=True)
class FeeModel:
    """A fee as a fraction of notional, by liquidity side. Fees are never negative here:
    rebates are not modelled, so a negative rate is refused."""

    maker: float
    taker: float

    def __post_init__(self) -> None:
        if self.maker < 0 or self.taker < 0:
            raise ValueError("fee rates must be >= 0")

    @classmethod
    def for_category(cls, category: str, maker: float | None = None,
                     taker: float | None = None) -> FeeModel:
        default_maker, default_taker = DEFAULT_FEES[category]
        return cls(default_maker if maker is None else maker,
                   default_taker if taker is None else taker)

    def fee(self, notional: float, liquidity: str) -> float:
        return abs(notional) * (self.taker if liquidity == "taker" else self.maker)


@dataclass(frozen=True)
class MarketFees:
    """The fee models of a linear account that also trades ``spot:`` markets, by symbol."""

    linear: FeeModel
    spot: FeeModel

    def of(self, symbol: str) -> FeeModel:
        return self.spot if split_market(symbol, "linear")[0] == "spot" else self.linear


class SlippageModel:
    """Taker fills move against the order: a fixed ``bps`` plus square-root market impact
    ``impact * sigma * sqrt(qty / volume)``, with ``sigma`` the per-bar return volatility
    and ``volume`` the per-bar traded volume of the order's symbol, both exponentially
    averaged over its recent bars (each symbol of a portfolio has its own).
    """

    def __init__(self, bps: float = 0.0, impact: float = 0.0, halflife_bars: float = 60.0) -> None:
        self.bps = bps
        self.impact = impact
        self._alpha = 1.0 - 0.5 ** (1.0 / halflife_bars)
        self._estimates: dict[str, list[float]] = {}  # symbol -> [variance, volume, last close]

    def observe_bar(self, symbol: str, close: float, volume: float) -> None:
        """Update the symbol's volatility and volume estimates with a finished bar (only
        needed, and only done, when impact is modelled)."""
        if not self.impact:
            return
        est = self._estimates.get(symbol)
        if est is None:
            self._estimates[symbol] = [0.0, volume, close]
            return
        last = est[2]
        if last > 0 and close > 0:
            ret = math.log(close / last)
            est[0] += self._alpha * (ret * ret - est[0])
            est[1] += self._alpha * (volume - est[1])
        else:
            est[1] = volume
        est[2] = close

    def fraction(self, symbol: str, qty: float) -> float:
        """The adverse price move for a taker order of ``qty``, as a fraction of price."""
        move = self.bps * 1e-4
        est = self._estimates.get(symbol)
        if self.impact > 0 and est is not None and est[1] > 0:
            move += self.impact * math.sqrt(est[0]) * math.sqrt(qty / est[1])
        return move

    def price(self, symbol: str, price: float, side: int, qty: float) -> float:
        """The fill price of a taker order of ``side`` and ``qty`` in ``symbol`` at market ``price``."""
        return price * (1.0 + side * self.fraction(symbol, qty))


class LatencyModel:
    """Delay from a strategy's request to the venue: ``fixed_ms`` plus an exponential
    random part with mean ``jitter_ms``; cancels have their own fixed part."""

    def __init__(self, rng: np.random.Generator, fixed_ms: float = 0.0, jitter_ms: float = 0.0,
                 cancel_ms: float | None = None) -> None:
        self.rng = rng
        self.fixed_ns = int(fixed_ms * 1e6)
        self.cancel_fixed_ns = self.fixed_ns if cancel_ms is None else int(cancel_ms * 1e6)
        self.jitter_ms = jitter_ms

    def _jitter(self) -> int:
        return int(self.rng.exponential(self.jitter_ms) * 1e6) if self.jitter_ms > 0 else 0

    def submit_delay_ns(self) -> int:
        return self.fixed_ns + self._jitter()

    def cancel_delay_ns(self) -> int:
        return self.cancel_fixed_ns + self._jitter()


class FillModel:
    """How resting orders fill: a trade exactly at the limit price fills it with
    ``touch_probability``; each fill may take at most ``max_participation`` of the volume
    traded (1.0 = no cap, the whole order fills on the first eligible trade)."""

    def __init__(self, rng: np.random.Generator, touch_probability: float = 1.0,
                 max_participation: float = 1.0) -> None:
        self.rng = rng
        self.touch_probability = touch_probability
        self.max_participation = max_participation

    @property
    def capped(self) -> bool:
        return self.max_participation < 1.0

    def touches_fill(self, n: int) -> np.ndarray:
        """For ``n`` touching trades, which ones fill a resting order."""
        if self.touch_probability >= 1.0:
            return np.ones(n, dtype=bool)
        if self.touch_probability <= 0.0:
            return np.zeros(n, dtype=bool)
        return self.rng.random(n) < self.touch_probability
