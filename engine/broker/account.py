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

A linear account may also hold spot coins (a run mixing ``spot:BTCUSDT`` with perpetuals, as
Bybit's unified account does): bought and sold with the wallet's USDT, counted in equity at
their marks (so they back the margin), never margined, paying no funding.

Realized PnL is gross of fees: equity change = realized + unrealized - fees - funding.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from itertools import compress
from math import inf
from operator import add, attrgetter

from engine.core.symbols import split_market


@dataclass
class Position:
    """Signed quantity, average entry price and gross realized PnL of one symbol."""

    qty: float = 0.0
    avg_price: float = 0.0
    realized_pnl: float = 0.0


_QTY = attrgetter("qty")
_BAND_SLACK = 1e-6  # of the scale, kept back from the bands' shares: far beyond the folds' rounding


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
        self._spot: set[str] = set()  # the symbols whose positions are coin balances
        self.marks: dict[str, float] = {}  # written through set_mark, which keeps the terms below
        # each position's part of equity and of notional at its mark, in the positions' order
        # (0.0 while flat): equity is a fold over them in C, not a Python loop per bar
        self._equity_terms: dict[str, float] = {}
        self._notional_terms: dict[str, float] = {}
        # since remember(): each changed symbol's terms as they were then (None: no position
        # yet) and the cash then (None: unchanged), so remembered_totals() can fold that state
        self._saved: dict[str, tuple[float, float] | None] | None = None
        self._saved_cash: float | None = None
        # each position's band of marks, (low, high), while the account is clear of liquidation
        # with every mark inside its own: worked out when first asked, dropped (None) when a
        # mark leaves its band, at fills and funding (see clear_of_liquidation)
        self._bands: dict[str, tuple[float, float]] | None = None
        self.fees_paid = 0.0
        self.funding_paid = 0.0

    def position(self, symbol: str) -> Position:
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = Position()
            if self.is_spot(symbol):
                self._spot.add(symbol)
            saved = self._saved
            if saved is not None and symbol not in saved:
                saved[symbol] = None
            self._equity_terms[symbol] = self._notional_terms[symbol] = 0.0
            self._bands = None
        return pos

    def is_spot(self, symbol: str) -> bool:
        """Whether ``symbol``'s position is a coin balance: every symbol of a spot account, and
        the ``spot:`` markets of a linear one."""
        return split_market(symbol, self.category)[0] == "spot"

    def set_mark(self, symbol: str, price: float) -> None:
        """Mark ``symbol`` at ``price`` (its last trade or bar close)."""
        self.marks[symbol] = price
        if symbol in self.positions:
            self._update_terms(symbol)

    def _update_terms(self, symbol: str) -> None:
        equity_terms, notional_terms = self._equity_terms, self._notional_terms
        old_equity, old_notional = equity_terms[symbol], notional_terms[symbol]
        saved = self._saved
        if saved is not None and symbol not in saved:
            saved[symbol] = (old_equity, old_notional)
        pos = self.positions[symbol]
        qty = pos.qty
        if qty == 0.0:
            equity = notional = 0.0
        else:
            mark = self.marks.get(symbol, pos.avg_price)
            if symbol in self._spot:  # a coin: its value (a spot account's bands stay None)
                equity, notional = qty * mark, 0.0
            else:
                equity, notional = qty * (mark - pos.avg_price), abs(qty) * mark
            bands = self._bands
            if bands is not None:
                low, high = bands[symbol]
                if not low <= mark <= high:
                    self._bands = None
        equity_terms[symbol], notional_terms[symbol] = equity, notional

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
        self._save_cash()
        if symbol in self._spot:
            self.cash -= signed * price + fee
        else:
            self.cash += realized - fee
        self.fees_paid += fee
        self.marks.setdefault(symbol, price)
        self._update_terms(symbol)
        self._bands = None
        return realized

    def apply_funding(self, symbol: str, rate: float, mark: float) -> float:
        """Settle funding on a linear position; returns the payment (positive = paid)."""
        pos = self.positions.get(symbol)
        if pos is None or pos.qty == 0.0 or symbol in self._spot:
            return 0.0
        payment = pos.qty * mark * rate
        self._save_cash()
        self.cash -= payment
        self.funding_paid += payment
        self._bands = None
        return payment

    def restored(self) -> None:
        """Drop what the account derives from its cash and positions (the liquidation bands)
        once they were written directly, as a resume from the ledger writes its cash."""
        self._bands = None

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
        """``equity()`` and ``margin_used()`` together (asked for at every bar): cash plus each
        position's term, left to right (a flat position adds 0.0, which changes no sum)."""
        equity = reduce(add, self._equity_terms.values(), self.cash)
        if self.category == "spot":
            return equity, 0.0
        return equity, reduce(add, self._notional_terms.values(), 0.0) / self.leverage

    def remember(self) -> None:
        """Keep, from now on, what :meth:`remembered_totals` needs to give the account's totals
        as they are now: the old terms of what changes, not a fold over every position now
        (a portfolio's recorder asks at each symbol's bar, and needs only the last one)."""
        saved = self._saved
        if saved is None:
            self._saved = {}
        elif saved:
            saved.clear()
        self._saved_cash = None

    def forget(self) -> None:
        """Stop keeping what :meth:`remember` asked for."""
        self._saved = self._saved_cash = None

    def remembered_totals(self) -> tuple[float, float, float]:
        """Cash, ``equity()`` and ``margin_used()`` as they were at the last :meth:`remember`
        (now, without one): the same folds, left to right, over the terms as they were then."""
        saved = self._saved
        cash = self.cash if self._saved_cash is None else self._saved_cash
        equity_terms, notional_terms = self._equity_terms, self._notional_terms
        if saved:  # copies keep the positions' order; one opened since then leaves the fold
            equity_terms, notional_terms = dict(equity_terms), dict(notional_terms)
            for symbol, old in saved.items():
                if old is None:
                    del equity_terms[symbol], notional_terms[symbol]
                else:
                    equity_terms[symbol], notional_terms[symbol] = old
        equity = reduce(add, equity_terms.values(), cash)
        if self.category == "spot":
            return cash, equity, 0.0
        return cash, equity, reduce(add, notional_terms.values(), 0.0) / self.leverage

    def _save_cash(self) -> None:
        if self._saved is not None and self._saved_cash is None:
            self._saved_cash = self.cash

    def clear_of_liquidation(self, symbol: str, price: float) -> bool:
        """Whether the account's equity stays clearly above its maintenance margin with
        ``symbol`` marked at ``price`` and every other mark as now (true for spot and for no
        position): then no liquidation price of ``symbol`` lies between its mark and
        ``price``, and :meth:`liquidation_price` need not be asked. A price inside the
        position's band answers at once (every bar of a portfolio asks); the exact folds others."""
        bands = self._bands  # only a linear account's open positions have bands that can say no
        if bands is not None:  # most asks: the band alone, before the checks it makes needless
            band = bands.get(symbol)
            if band is not None and band[0] <= price <= band[1]:
                return True
        pos = self.positions.get(symbol)
        if self.category != "linear" or pos is None or pos.qty == 0.0:
            return True
        if bands is None:
            bands = self._bands = self._bands_now()
        low, high = bands[symbol]
        if low <= price <= high:
            return True
        qty = pos.qty
        move = price - self.marks.get(symbol, pos.avg_price)
        equity = reduce(add, self._equity_terms.values(), self.cash)
        notional = reduce(add, self._notional_terms.values(), 0.0)
        equity += qty * move
        if symbol not in self._spot:  # a coin's value moves equity, not the maintenance margin
            notional += abs(qty) * move
        maintenance = self.maintenance_margin * notional
        return equity - maintenance > 1e-9 * (abs(equity) + abs(maintenance)) + 1e-9

    def _bands_now(self) -> dict[str, tuple[float, float]]:
        """Each position's band of marks: the open ones share the margin between equity and
        maintenance now (less the checks' tolerance and _BAND_SLACK of the scale) equally,
        each band ending where its position's loss from its mark now uses up its share, so
        with every mark inside its band the exact check is clear (empty bands when it is not)."""
        mmr = self.maintenance_margin
        equity = reduce(add, self._equity_terms.values(), self.cash)
        notional = reduce(add, self._notional_terms.values(), 0.0)
        maintenance = mmr * notional
        scale = abs(self.cash) + reduce(add, map(abs, self._equity_terms.values()), 0.0) + notional
        margin = equity - maintenance - 1e-9 * (abs(equity) + abs(maintenance)) - 1e-9 - _BAND_SLACK * scale
        positions = self.positions
        qtys = list(map(_QTY, positions.values()))  # in C: this runs at every fill's next check
        opened = len(qtys) - qtys.count(0.0)
        share = margin / opened if opened and 0.0 <= mmr < 1.0 else -1.0
        bands = dict.fromkeys(positions, (-inf, inf))
        if share <= 0.0:
            bands.update(dict.fromkeys(compress(positions, qtys), (inf, -inf)))
            return bands
        marks = self.marks
        spot = self._spot
        for symbol, pos in compress(positions.items(), qtys):  # the open positions only
            qty = pos.qty
            mark = marks.get(symbol, pos.avg_price)
            if symbol in spot:
                bands[symbol] = (mark - share / qty, inf)
            elif qty > 0:
                bands[symbol] = (mark - share / (qty * (1.0 - mmr)), inf)
            else:
                bands[symbol] = (-inf, mark + share / (-qty * (1.0 + mmr)))
        return bands

    def liquidation_price(self, symbol: str) -> float | None:
        """The mark of ``symbol`` at which the account's equity falls to its maintenance
        margin (linear, cross margin: every other position held at its mark now), or None
        when there is no position or it cannot be liquidated."""
        if self.category != "linear":
            return None
        pos = self.positions.get(symbol)
        if pos is None or pos.qty == 0.0:
            return None
        q, mmr, spot = pos.qty, self.maintenance_margin, self._spot
        others = self.cash  # a loop, not sum() over a generator: this runs after every fill
        for other, held in self.positions.items():
            if other != symbol and held.qty != 0.0:
                mark = self.marks.get(other, held.avg_price)
                if other in spot:
                    others += held.qty * mark
                else:
                    others += held.qty * (mark - held.avg_price) - mmr * abs(held.qty) * mark
        if symbol in spot:  # the coin's price at which equity falls to the others' maintenance
            price = -others / q
        else:
            denominator = q * (1.0 - mmr) if q > 0 else q * (1.0 + mmr)
            price = (q * pos.avg_price - others) / denominator
        return price if price > 0 else None
