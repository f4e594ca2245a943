"""From a model's outputs to a signed position size: the signal of each head, the three
sizing rules, the caps, and rounding to the contract's lot. Pure functions, so every rule
can be checked by hand."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from engine.broker import Instrument


def signal(head: str, values: Sequence[float], threshold: float) -> float:
    """The model's view in [-1, 1]: -1, 0 or +1 for regression (predicted log return over
    the horizon beyond +-``threshold``) and classification (the likeliest of down, flat,
    up when its probability is at least ``threshold``); the allocation itself for the
    allocation head (0 while ``|a| <= threshold``)."""
    if head == "regression":
        forecast = values[-1]
        return 1.0 if forecast > threshold else -1.0 if forecast < -threshold else 0.0
    if head == "classification":
        logits = np.asarray(values, dtype=np.float64)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        best = int(probs.argmax())
        return float(best - 1) if probs[best] >= threshold else 0.0
    allocation = float(values[0])
    return allocation if abs(allocation) > threshold else 0.0


def annual_volatility(closes: Sequence[float], bars_per_year: float) -> float | None:
    """Annualised standard deviation of the log returns of ``closes`` (None under 3 closes)."""
    if len(closes) < 3:
        return None
    return float(np.diff(np.log(np.asarray(closes, dtype=np.float64))).std(ddof=1) * math.sqrt(bars_per_year))


def target_notional(sizing: str, view: float, equity: float, *, notional: float, vol_target: float,
                    volatility: float | None, max_leverage: float) -> float:
    """Signed position value for ``view``: ``fixed`` is ``notional`` per unit of view;
    ``volatility`` scales equity so the position's annualised volatility is ``vol_target``;
    ``allocation`` is ``view`` times equity times ``max_leverage``. Capped at
    ``max_leverage`` times equity."""
    if view == 0.0 or equity <= 0:
        return 0.0
    if sizing == "fixed":
        value = notional * view
    elif sizing == "volatility":
        if not volatility:
            return 0.0
        value = equity * vol_target / volatility * view
    else:
        value = equity * max_leverage * view
    cap = equity * max_leverage
    return max(-cap, min(cap, value))


def to_lots(value: float, price: float, instrument: Instrument, max_position: float | None) -> float:
    """Signed quantity for a position value at ``price``: capped at ``max_position`` base
    units, rounded toward zero to the qty step, and 0 when below the minimum quantity or
    order value."""
    qty = value / price
    if max_position is not None:
        qty = max(-max_position, min(max_position, qty))
    steps = math.floor(abs(qty) / instrument.qty_step + 1e-9)
    size = float(f"{steps * instrument.qty_step:.12g}")
    if size < instrument.min_qty or size * price < instrument.min_notional:
        return 0.0
    return math.copysign(size, qty)
