"""The account's totals as remembered at a point (what a portfolio's recorder writes for a
close time whose last symbol's bar may not come) equal, bit for bit, the totals read then,
whatever changed since: marks, fills, a new position, funding."""

from __future__ import annotations

import random

from engine.broker.account import Account
from tests.helpers.liquidation_check import check_every_position


def totals(account: Account) -> tuple[float, float, float]:
    equity, margin = account.equity_and_margin()
    return account.cash, equity, margin


def test_remembered_totals_are_the_totals_then():
    rng = random.Random(7)
    names = [f"S{k}USDT" for k in range(6)]
    for category in ("linear", "spot"):
        account = Account(category, 100_000.0, leverage=3.0)
        for step in range(2_000):
            account.remember()
            then = totals(account)
            for _ in range(rng.randrange(4)):
                symbol = rng.choice(names)
                price = rng.uniform(10.0, 1_000.0)
                kind = rng.random()
                if kind < 0.6:
                    account.set_mark(symbol, price)
                elif kind < 0.9:
                    held = account.positions.get(symbol)
                    side = -1 if category == "spot" and held is not None and held.qty > 0.5 else 1
                    account.apply_fill(symbol, side, round(rng.uniform(0.01, 0.5), 3), price, 0.01)
                else:
                    account.apply_funding(symbol, 0.0001, price)
            assert account.remembered_totals() == then, (category, step)
            account.forget()
            assert account.remembered_totals() == totals(account)


def test_the_quick_liquidation_check_answers_as_the_folds():
    """Prices near and far from each position's liquidation price, on a cross-margin account
    of four symbols at 20x whose marks and positions keep changing."""
    rng = random.Random(11)
    names = [f"S{k}USDT" for k in range(4)]
    account = Account("linear", 10_000.0, leverage=20.0)
    asked = near = 0
    for _ in range(3_000):
        symbol = rng.choice(names)
        price = rng.uniform(90.0, 110.0)
        if rng.random() < 0.1 or symbol not in account.positions:
            account.apply_fill(symbol, rng.choice((-1, 1)), round(rng.uniform(1.0, 40.0), 3), price, 0.0)
        else:
            account.set_mark(symbol, price)
        more, closer = check_every_position(account, price)
        asked, near = asked + more, near + closer
    assert asked > 10_000 and near > 1_000
