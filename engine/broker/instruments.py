"""Instrument rules (tick size, quantity step, minimum quantity and notional) and the checks
an order must pass; the broker rejects an order that breaks them and never rounds it."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from engine.core.symbols import split_market

BUNDLED = Path(__file__).resolve().parent.parent / "data" / "instruments.json"


class UnknownInstrument(LookupError):
    """No rules are known for a symbol in a category."""


@dataclass(frozen=True)
class Instrument:
    """One tradable contract's rules, as Bybit's instruments-info endpoint gives them."""

    symbol: str
    category: str
    tick_size: float
    qty_step: float
    min_qty: float
    max_qty: float
    max_market_qty: float
    min_notional: float
    max_leverage: float
    base: str = ""
    quote: str = ""

    def check_qty(self, qty: float, market: bool) -> str | None:
        """Why ``qty`` is not allowed, or None when it is."""
        if not (math.isfinite(qty) and qty > 0):
            return f"qty must be a positive finite number, got {qty}"
        if not on_grid(qty, self.qty_step):
            return f"qty {qty:.12g} is not a multiple of the qty step {self.qty_step:g}"
        if qty < self.min_qty - 1e-12:
            return f"qty {qty:.12g} is below the minimum {self.min_qty:g}"
        limit = self.max_market_qty if market else self.max_qty
        if qty > limit + 1e-12:
            return f"qty {qty:.12g} is above the {'market ' if market else ''}maximum {limit:g}"
        return None

    def check_price(self, price: float, what: str) -> str | None:
        """Why ``price`` is not allowed (non-positive, off the tick grid), or None."""
        if not (math.isfinite(price) and price > 0):
            return f"{what} must be a positive finite number, got {price}"
        if not on_grid(price, self.tick_size):
            return f"{what} {price:.12g} is not a multiple of the tick size {self.tick_size:g}"
        return None

    def notional(self, qty: float, price: float) -> float:
        """Order value in the margin currency (quote; base coin for inverse contracts)."""
        return qty / price if self.category == "inverse" else qty * price

    def check_notional(self, qty: float, price: float) -> str | None:
        if self.category != "inverse" and qty * price < self.min_notional - 1e-9:
            return (f"order value {qty * price:.4f} is below the minimum notional "
                    f"{self.min_notional:g}")
        return None


def on_grid(value: float, step: float) -> bool:
    """True when ``value`` is a whole multiple of ``step`` (to 1e-9 of a step)."""
    ratio = value / step
    return abs(ratio - round(ratio)) < 1e-9 * max(1.0, abs(ratio))


class InstrumentBook:
    """Instruments by (category, symbol), from the bundled file, a user file, or REST."""

    def __init__(self, instruments: list[Instrument]) -> None:
        self._by_key = {(i.category, i.symbol): i for i in instruments}

    @classmethod
    def load(cls, path: str | Path | None = None) -> InstrumentBook:
        """Read a JSON file with an ``instruments`` list (the bundled one by default)."""
        source = Path(path) if path is not None else BUNDLED
        try:
            rows = json.loads(source.read_text())["instruments"]
            return cls([Instrument(**row) for row in rows])
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"instruments file {source}: {exc}") from exc

    def get(self, category: str, symbol: str) -> Instrument:
        """The rules of ``symbol`` in ``category``; a run's ``spot:SYMBOL`` names its spot market."""
        try:
            return self._by_key[(category, symbol)]
        except KeyError:
            if ":" in symbol:
                return self.get(*split_market(symbol, category))
            known = ", ".join(sorted(s for c, s in self._by_key if c == category)) or "none"
            raise UnknownInstrument(
                f"unknown {category} symbol {symbol!r} (known: {known}); give "
                "--set broker.instruments=FILE or fetch them with `papertape fetch --instruments`"
            ) from None

    def add(self, instrument: Instrument) -> None:
        self._by_key[(instrument.category, instrument.symbol)] = instrument

    def all(self) -> list[Instrument]:
        return list(self._by_key.values())
