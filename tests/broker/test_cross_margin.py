"""A portfolio's linear positions share one USDT wallet (cross margin): an order is refused
when the account's margin is used up by other symbols, a loss on one symbol moves the
liquidation price of another, and a liquidation closes the whole account. Worked by hand."""

from __future__ import annotations

import pytest

from engine.core.clock import NS_PER_S
from tests.helpers.broker import BTC, T0, Harness

ETH = "ETHUSDT"
S = NS_PER_S


def buy(h: Harness, symbol: str, qty: float, price: float, ts: int) -> str:
    """A market buy sent at ``ts`` and filled by one trade of ``symbol`` at ``price`` a second later."""
    cid = h.order(+1, qty, ts=ts, symbol=symbol)
    h.trades([ts + S], [price], symbol=symbol)
    return cid


def test_margin_used_by_one_symbol_refuses_an_order_of_another():
    """10,000 USDT at 5x: 40,000 of BTC leaves room for 10,000 more notional, not 12,000."""
    h = Harness(cash=10_000.0, leverage=5.0, taker=0.0)
    h.trade(T0, 20_000.0)
    h.trades([T0], [2_000.0], symbol=ETH)
    buy(h, BTC, 2.0, 20_000.0, T0 + S)  # 40,000 notional: 8,000 margin of 10,000
    refused = h.order(+1, 6.0, ts=T0 + 5 * S, symbol=ETH)  # 12,000 more needs 2,400
    assert h.statuses(refused) == ["rejected"]
    (reason,) = h.reasons(refused)
    assert reason.startswith("insufficient margin") and "needs 10400.00, equity is 10000.00" in reason
    fits = buy(h, ETH, 5.0, 2_000.0, T0 + 6 * S)  # 10,000 more needs 2,000: exactly the rest
    assert h.statuses(fits) == ["accepted", "filled"]
    assert h.account.margin_used() == pytest.approx(10_000.0)


def test_a_loss_on_one_symbol_liquidates_the_account():
    """Long 1 BTC at 20,000 and 10 ETH at 2,000 on 5,000 USDT, no fees, 0.5% maintenance.

    With ETH at 2,000 the BTC liquidation price solves
    5,000 + (p - 20,000) = 0.005 * (p + 20,000), so p = (15,000 + 100) / 0.995 = 15,175.88.
    ETH falling to 1,800 costs 2,000 and lowers ETH's maintenance by 10:
    3,000 + (p - 20,000) = 0.005 * (p + 18,000), so p = (17,000 + 90) / 0.995 = 17,175.88.
    BTC at 17,000 is then below it; at 17,200 it is not.
    """
    h = Harness(cash=5_000.0, leverage=10.0, maintenance_margin=0.005, taker=0.0)
    h.trade(T0, 20_000.0)
    h.trades([T0], [2_000.0], symbol=ETH)
    buy(h, BTC, 1.0, 20_000.0, T0 + S)
    buy(h, ETH, 10.0, 2_000.0, T0 + 3 * S)
    assert h.account.liquidation_price(BTC) == pytest.approx(15_100.0 / 0.995)
    h.trades([T0 + 10 * S], [1_800.0], symbol=ETH)
    assert h.account.liquidation_price(BTC) == pytest.approx(17_090.0 / 0.995)
    h.trades([T0 + 11 * S], [17_200.0])
    assert h.broker.position_qty(BTC) == 1.0 and h.broker.position_qty(ETH) == 10.0
    h.trades([T0 + 12 * S, T0 + 13 * S], [17_150.0, 17_000.0])
    liquidations = [f for f in h.fills if f.client_order_id.startswith("liquidation")]
    assert [(f.symbol, f.side, f.qty, f.price, f.ts_event) for f in liquidations] == [
        (BTC, -1, 1.0, 17_150.0, T0 + 12 * S),  # the breach, at the first trade through it
        (ETH, -1, 10.0, 1_800.0, T0 + 12 * S),  # the rest of the account, at its mark
    ]
    assert h.broker.position_qty(BTC) == 0.0 and h.broker.position_qty(ETH) == 0.0
    assert h.account.cash == pytest.approx(5_000.0 - 2_850.0 - 2_000.0)
    h.trades([T0 + 20 * S], [1_000.0], symbol=ETH)  # nothing left to liquidate
    assert len(h.fills) == 4


def test_a_gain_on_one_symbol_keeps_another_open():
    """The same account, ETH rising to 2,300 instead: BTC may fall to 15,175.88 - 3,000/0.995
    (and a little more for ETH's higher maintenance) before the account is liquidated."""
    h = Harness(cash=5_000.0, leverage=10.0, maintenance_margin=0.005, taker=0.0)
    h.trade(T0, 20_000.0)
    h.trades([T0], [2_000.0], symbol=ETH)
    buy(h, BTC, 1.0, 20_000.0, T0 + S)
    buy(h, ETH, 10.0, 2_000.0, T0 + 3 * S)
    h.trades([T0 + 10 * S], [2_300.0], symbol=ETH)
    # 8,000 + (p - 20,000) = 0.005 * (p + 23,000): p = (12,000 + 115) / 0.995
    assert h.account.liquidation_price(BTC) == pytest.approx(12_115.0 / 0.995)
    h.trades([T0 + 11 * S], [15_000.0])
    assert h.broker.position_qty(BTC) == 1.0 and not [f for f in h.fills if f.strategy_id == "broker"]
