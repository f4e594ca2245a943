"""A linear account that also holds spot coins (a run naming ``spot:BTCUSDT`` beside
perpetuals): coins are bought with the wallet's USDT, count in equity at their marks and so
back the margin, are never margined and pay no funding; a liquidation sells them too.
Worked by hand, then the quick liquidation check against the folds on random accounts."""

from __future__ import annotations

import random

import pytest

from engine.broker.account import Account
from engine.core.clock import NS_PER_S
from tests.helpers.broker import BTC, T0, Harness
from tests.helpers.liquidation_check import check_every_position

SPOT = "spot:BTCUSDT"
S = NS_PER_S


def fill(h: Harness, symbol: str, side: int, qty: float, price: float, ts: int) -> str:
    """A market order sent at ``ts`` and filled by one trade of ``symbol`` at ``price`` a second later."""
    cid = h.order(side, qty, ts=ts, symbol=symbol)
    h.trades([ts + S], [price], symbol=symbol)
    return cid


def test_a_basis_trade_holds_its_equity_and_margins_only_the_perpetual():
    """50,000 USDT at 5x, no fees: buy 1 spot BTC and short 1 BTCUSDT, both at 20,000.
    Cash 30,000 plus the coin is 50,000 of equity; margin is the short's 20,000 / 5 = 4,000.
    Both at 15,000: the coin lost 5,000, the short made 5,000, equity is 50,000 still.
    The short's liquidation price solves 30,000 + 15,000 + (20,000 - p) = 0.005 p:
    p = 65,000 / 1.005."""
    h = Harness(cash=50_000.0, leverage=5.0, taker=0.0, funding_rate=0.0001)
    h.trades([T0], [20_000.0], symbol=SPOT)
    h.trade(T0, 20_000.0)
    fill(h, SPOT, +1, 1.0, 20_000.0, T0 + S)
    fill(h, BTC, -1, 1.0, 20_000.0, T0 + 3 * S)
    assert h.account.cash == 30_000.0 and h.account.equity_and_margin() == (50_000.0, 4_000.0)
    h.trades([T0 + 5 * S], [15_000.0], symbol=SPOT)
    h.trade(T0 + 5 * S, 15_000.0)
    assert h.account.equity_and_margin() == (50_000.0, 3_000.0)
    assert h.account.liquidation_price(BTC) == pytest.approx(65_000.0 / 1.005)
    assert h.account.liquidation_price(SPOT) is None  # the short's maintenance is far below equity
    assert h.account.apply_funding(SPOT, 0.0001, 15_000.0) == 0.0  # coins held pay no funding
    assert h.account.apply_funding(BTC, 0.0001, 15_000.0) == pytest.approx(-1.5)  # the short receives


def test_a_spot_buy_is_paid_from_cash_not_from_equity():
    """1,000 USDT of cash, a 2,000 USDT coin purchase: refused in the wallet's quote currency,
    though a 10x perpetual of that notional would fit."""
    h = Harness(cash=1_000.0, leverage=10.0, taker=0.0)
    h.trades([T0], [20_000.0], symbol=SPOT)
    refused = h.order(+1, 0.1, ts=T0 + S, symbol=SPOT)
    (reason,) = h.reasons(refused)
    assert reason.startswith("insufficient USDT balance: needs 2000.00, has 1000.00")
    sell = h.order(-1, 0.01, ts=T0 + 2 * S, symbol=SPOT)  # no coin held: nothing to sell
    assert h.reasons(sell)[0].startswith("insufficient BTC balance")


def test_a_falling_coin_moves_the_perpetuals_liquidation_and_is_sold_with_it():
    """1,000 USDT at 10x, no fees, 0.5% maintenance: 0.04 spot BTC at 20,000 (cash 200), then
    long 0.5 BTCUSDT at 20,000 (margin 1,000: the coin backs it). With the coin at 20,000 the
    perpetual's liquidation price solves 200 + 800 + 0.5 (p - 20,000) = 0.0025 p:
    p = 9,000 / 0.4975 = 18,090.45; the coin at 10,000 (400 less): p = 9,400 / 0.4975 =
    18,894.47 (the perpetual at 19,000 then: equity 100 over 47.5 of maintenance). A perpetual
    trade at 18,500 liquidates only after the coin fell, and the coin is sold at its mark with
    the rest of the account."""
    h = Harness(cash=1_000.0, leverage=10.0, maintenance_margin=0.005, taker=0.0)
    h.trades([T0], [20_000.0], symbol=SPOT)
    h.trade(T0, 20_000.0)
    fill(h, SPOT, +1, 0.04, 20_000.0, T0 + S)
    fill(h, BTC, +1, 0.5, 20_000.0, T0 + 3 * S)
    assert h.account.cash == pytest.approx(200.0) and h.account.margin_used() == pytest.approx(1_000.0)
    assert h.account.liquidation_price(BTC) == pytest.approx(9_000.0 / 0.4975)
    h.trade(T0 + 9 * S, 18_500.0)
    h.trade(T0 + 10 * S, 19_000.0)
    assert h.broker.position_qty(BTC) == 0.5
    h.trades([T0 + 11 * S], [10_000.0], symbol=SPOT)
    assert h.broker.position_qty(SPOT) == 0.04
    assert h.account.liquidation_price(BTC) == pytest.approx(9_400.0 / 0.4975)
    h.trade(T0 + 12 * S, 18_500.0)
    liquidations = [(f.symbol, f.side, f.qty, f.price) for f in h.fills
                    if f.client_order_id.startswith("liq")]
    assert liquidations == [(BTC, -1, 0.5, 18_500.0), (SPOT, -1, 0.04, 10_000.0)]
    assert h.account.cash == pytest.approx(200.0 - 750.0 + 400.0)


def test_the_quick_liquidation_check_answers_as_the_folds_with_coins_held():
    """Three perpetuals and two coins at 20x, marks and positions changing: the bands and the
    exact check agree with the folds near and far from every liquidation price."""
    rng = random.Random(13)
    names = ["S0USDT", "S1USDT", "S2USDT", "spot:S0USDT", "spot:S3USDT"]
    account = Account("linear", 10_000.0, leverage=20.0)
    asked = near = 0
    for _ in range(3_000):
        symbol = rng.choice(names)
        price = rng.uniform(90.0, 110.0)
        held = account.positions.get(symbol)
        if rng.random() < 0.1 or held is None:
            qty = round(rng.uniform(1.0, 40.0), 3)
            if not account.is_spot(symbol):
                account.apply_fill(symbol, rng.choice((-1, 1)), qty, price, 0.0)
            elif held is not None and held.qty > 5.0:  # sell coins held, never more (the checks' rule)
                account.apply_fill(symbol, -1, min(qty, held.qty), price, 0.0)
            else:
                account.apply_fill(symbol, 1, qty / 4, price, 0.0)
        else:
            account.set_mark(symbol, price)
        more, closer = check_every_position(account, price)
        asked, near = asked + more, near + closer
    assert asked > 10_000 and near > 1_000
