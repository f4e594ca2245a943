"""The simulated account: cash and positions, changed only by fills and funding.

Two kinds, as on Bybit:

- ``linear`` (USDT-margined perpetuals): ``cash`` is the wallet balance; a position is a
  signed quantity with an average entry price; realized PnL goes to cash on every reducing
  fill; equity is cash plus unrealized PnL at the mark; margin is position value over
  leverage; the positions share the wallet (cross margin), and the account is liquidated
  when its equity falls below the maintenance margin of all of them.
- ``spot``: ``cash`` is the quote balance and the position is the coin balance (never
  negative); buying moves quote into coin at the fill price. Fees are charged in quote
  currency (Bybit charges spot buy fees in the coin; the value is the same).

Realized PnL is gross of fees: equity change = realized + unrealized - fees - funding.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Position:
    """Signed quantity, average entry price and gross realized PnL of one symbol."""

    qty: float = 0.0
    avg_price: float = 0.0
    realized_pnl: float = 0.0


class Account:
    """Cash, positions and marks of one simulated account."""

    def __init__(self, category: str, cash: float, leverage: float = 1.0,
                 maintenance_margin: float = 0.005) -> None:
        if category not in ("linear", "spot"):
            raise ValueError(f"{category} accounts are not simulated (linear and spot are)")
        self.category = category
        self.initial_cash = cash
        self.cash = cash
        self.leverage = leverage if category == "linear" else 1.0
        self.maintenance_margin = maintenance_margin
        self.positions: dict[str, Position] = {}
        self.marks: dict[str, float] = {}
        self.fees_paid = 0.0
        self.funding_paid = 0.0

    def position(self, symbol: str) -> Position:
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = Position()
        return pos

    def apply_fill(self, symbol: str, side: int, qty: float, price: float, fee: float) -> float:
        """Book a fill; returns the gross realized PnL it produced."""
        pos = self.position(symbol)
        signed = side * qty
        realized = 0.0
        if pos.qty == 0.0 or (pos.qty > 0) == (signed > 0):
            total = abs(pos.qty) + qty
            pos.avg_price = (abs(pos.qty) * pos.avg_price + qty * price) / total
            pos.qty += signed
        else:
            closing = min(qty, abs(pos.qty))
            realized = (price - pos.avg_price) * closing * (1.0 if pos.qty > 0 else -1.0)
            new_qty = pos.qty + signed
            if abs(new_qty) < 1e-12:
                new_qty = 0.0
            if new_qty != 0.0 and (new_qty > 0) != (pos.qty > 0):
                pos.avg_price = price  # flipped: the remainder opens at this price
            elif new_qty == 0.0:
                pos.avg_price = 0.0
            pos.qty = new_qty
            pos.realized_pnl += realized
        if self.category == "spot":
            self.cash -= signed * price + fee
        else:
            self.cash += realized - fee
        self.fees_paid += fee
        self.marks.setdefault(symbol, price)
        return realized

    def apply_funding(self, symbol: str, rate: float, mark: float) -> float:
        """Settle funding on a linear position; returns the payment (positive = paid)."""
        pos = self.positions.get(symbol)
        if pos is None or pos.qty == 0.0 or self.category != "linear":
            return 0.0
        payment = pos.qty * mark * rate
        self.cash -= payment
        self.funding_paid += payment
        return payment

    def unrealized(self, symbol: str) -> float:
        pos = self.positions.get(symbol)
        if pos is None or pos.qty == 0.0:
            return 0.0
        return pos.qty * (self.marks.get(symbol, pos.avg_price) - pos.avg_price)

    def equity(self) -> float:
        """Cash plus positions marked to their last prices."""
        return self.equity_and_margin()[0]

    def margin_used(self) -> float:
        """Initial margin of open positions at their marks (linear); 0 for spot."""
        return self.equity_and_margin()[1]

    def equity_and_margin(self) -> tuple[float, float]:
        """``equity()`` and ``margin_used()`` in one pass (asked for at every bar)."""
        marks = self.marks
        equity = self.cash
        notional = 0.0
        spot = self.category == "spot"
        for symbol, pos in self.positions.items():
            qty = pos.qty
            if qty == 0.0:
                continue
            mark = marks.get(symbol, pos.avg_price)
            if spot:
                equity += qty * mark
            else:
                equity += qty * (mark - pos.avg_price)
                notional += abs(qty) * mark
        return equity, (0.0 if spot else notional / self.leverage)

    def liquidation_price(self, symbol: str) -> float | None:
        """The mark of ``symbol`` at which the account's equity falls to its maintenance
        margin (linear, cross margin: every other position held at its mark now), or None
        when there is no position or it cannot be liquidated."""
        if self.category != "linear":
            return None
        pos = self.positions.get(symbol)
        if pos is None or pos.qty == 0.0:
            return None
        q, mmr = pos.qty, self.maintenance_margin
        others = self.cash  # a loop, not sum() over a generator: this runs after every fill
        for other, held in self.positions.items():
            if other != symbol and held.qty != 0.0:
                mark = self.marks.get(other, held.avg_price)
                others += held.qty * (mark - held.avg_price) - mmr * abs(held.qty) * mark
        denominator = q * (1.0 - mmr) if q > 0 else q * (1.0 + mmr)
        price = (q * pos.avg_price - others) / denominator
        return price if price > 0 else None
