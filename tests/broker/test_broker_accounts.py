"""Linear and spot accounts worked by hand: average price, realized PnL, flips, fees,
funding sign and settlement times, and liquidation below maintenance margin."""

from __future__ import annotations

import pytest

from engine.core.clock import NS_PER_S
from engine.core.events import AccountUpdate, Funding, PositionUpdate
from tests.helpers.broker import BTC, T0, Harness

S = NS_PER_S
HOUR = 3600 * S


def fill_at(h: Harness, side: int, qty: float, price: float, ts: int) -> None:
    """A market order sent at ``ts`` and filled by one trade at ``price`` a second later."""
    h.order(side, qty, ts=ts)
    h.trade(ts + S, price)


def test_linear_average_price_realized_pnl_and_flip():
    h = Harness(cash=10_000.0, taker=0.0005)
    h.trade(T0, 30_000.0)
    fill_at(h, +1, 0.1, 30_000.0, T0 + 1 * S)
    fill_at(h, +1, 0.1, 31_000.0, T0 + 10 * S)
    pos = h.account.positions[BTC]
    assert (pos.qty, pos.avg_price) == (pytest.approx(0.2), pytest.approx(30_500.0))
    fill_at(h, -1, 0.15, 32_000.0, T0 + 20 * S)
    assert pos.realized_pnl == pytest.approx(0.15 * 1_500.0)  # 225
    assert (pos.qty, pos.avg_price) == (pytest.approx(0.05), pytest.approx(30_500.0))
    fill_at(h, -1, 0.1, 29_000.0, T0 + 30 * S)  # closes 0.05 at a loss, opens 0.05 short
    assert pos.realized_pnl == pytest.approx(225.0 - 0.05 * 1_500.0)  # 150
    assert (pos.qty, pos.avg_price) == (pytest.approx(-0.05), 29_000.0)
    fees = 0.0005 * (0.1 * 30_000 + 0.1 * 31_000 + 0.15 * 32_000 + 0.1 * 29_000)
    assert h.account.fees_paid == pytest.approx(fees)
    assert h.account.cash == pytest.approx(10_000.0 + 150.0 - fees)
    h.trade(T0 + 40 * S, 28_000.0)
    assert h.account.equity() == pytest.approx(10_000.0 + 150.0 - fees + 0.05 * 1_000.0)
    assert h.account.margin_used() == pytest.approx(0.05 * 28_000.0)
    # the realized PnL of each fill is in its PositionUpdate; the last AccountUpdate is current
    realized = [e.realized_pnl for e in h.events if isinstance(e, PositionUpdate)]
    assert realized == pytest.approx([0.0, 0.0, 225.0, -75.0])
    last = [e for e in h.events if isinstance(e, AccountUpdate)][-1]
    assert last.cash == pytest.approx(h.account.cash)


def test_spot_moves_quote_into_coin_and_back():
    h = Harness("spot", cash=10_000.0, maker=0.001, taker=0.001)
    h.trade(T0, 30_000.0)
    fill_at(h, +1, 0.1, 30_000.0, T0 + S)
    assert h.account.cash == pytest.approx(10_000.0 - 3_000.0 - 3.0)
    assert h.position == pytest.approx(0.1)
    h.trade(T0 + 5 * S, 31_000.0)
    assert h.account.equity() == pytest.approx(6_997.0 + 3_100.0)
    assert h.account.margin_used() == 0.0
    fill_at(h, -1, 0.04, 31_000.0, T0 + 10 * S)
    assert h.account.cash == pytest.approx(6_997.0 + 1_240.0 - 1.24)
    assert h.position == pytest.approx(0.06)
    assert h.account.positions[BTC].realized_pnl == pytest.approx(0.04 * 1_000.0)
    # cannot sell more than held, not even with an order already working
    h.order(-1, 0.05, "limit", price=40_000.0, ts=T0 + 20 * S)
    cid = h.order(-1, 0.02, ts=T0 + 20 * S)
    assert h.statuses(cid) == ["rejected"]
    assert "insufficient BTC balance: sell 0.02 needs 0.07, holding 0.06" in h.reasons(cid)[0]


def test_spot_has_no_funding_and_no_liquidation():
    h = Harness("spot", cash=10_000.0, maker=0.001, taker=0.001, funding_rate=0.01)
    h.broker.start_funding(T0)
    h.trade(T0, 30_000.0)
    fill_at(h, +1, 0.3, 30_000.0, T0 + S)
    cash = h.account.cash
    h.bus.process(Funding(BTC, 0.01, 30_000.0, T0 + 9 * HOUR, T0 + 9 * HOUR))
    h.trade(T0 + 10 * HOUR, 1_000.0)  # -97%: a spot holding just loses value
    assert h.account.cash == cash and h.position == pytest.approx(0.3)
    assert h.account.liquidation_price(BTC) is None


@pytest.mark.parametrize("side,rate,expected_cash_change", [
    (+1, 0.0001, -0.3),   # positive rate: longs pay
    (-1, 0.0001, +0.3),   # ... shorts receive
    (+1, -0.0002, +0.6),  # negative rate: longs receive
    (-1, -0.0002, -0.6),  # ... shorts pay
])
def test_funding_sign(side, rate, expected_cash_change):
    h = Harness(cash=10_000.0, taker=0.0, funding_rate=rate)
    h.broker.start_funding(T0)
    h.trade(T0, 30_000.0)
    fill_at(h, side, 0.1, 30_000.0, T0 + S)
    cash = h.account.cash
    h.trade(T0 + 8 * HOUR - S, 30_000.0)
    assert h.account.cash == cash  # nothing before 08:00 UTC
    h.trade(T0 + 8 * HOUR + S, 30_000.0)
    (funding,) = [e for e in h.events if isinstance(e, Funding)]
    assert (funding.ts_event, funding.rate, funding.mark_price) == (T0 + 8 * HOUR, rate, 30_000.0)
    assert h.account.cash - cash == pytest.approx(expected_cash_change)
    assert h.account.funding_paid == pytest.approx(-expected_cash_change)
    h.trade(T0 + 16 * HOUR + S, 30_000.0)  # next settlement at 16:00
    assert h.account.cash - cash == pytest.approx(2 * expected_cash_change)


def test_funding_event_from_the_feed_and_none_when_flat():
    h = Harness(cash=10_000.0)
    h.trade(T0, 30_000.0)
    h.bus.process(Funding(BTC, 0.001, 30_000.0, T0 + S, T0 + S))
    assert h.account.cash == 10_000.0 and h.account.funding_paid == 0.0
    fill_at(h, +1, 0.1, 30_000.0, T0 + 2 * S)
    cash = h.account.cash
    h.bus.process(Funding(BTC, 0.001, 32_000.0, T0 + 5 * S, T0 + 5 * S))
    assert h.account.cash == pytest.approx(cash - 0.1 * 32_000.0 * 0.001)  # paid on the mark


def test_long_is_liquidated_when_equity_falls_below_maintenance_margin():
    h = Harness(cash=10_000.0, leverage=10.0, maintenance_margin=0.005, taker=0.00055)
    h.trade(T0, 30_000.0)
    fill_at(h, +1, 2.0, 30_000.0, T0 + S)
    cash = 10_000.0 - 2.0 * 30_000.0 * 0.00055  # 9,967
    assert h.account.cash == pytest.approx(cash)
    liq = (2.0 * 30_000.0 - cash) / (2.0 * 0.995)  # equity = 0.5% of position value
    assert h.account.liquidation_price(BTC) == pytest.approx(liq)  # ~25,142.21
    stop_loss = h.order(-1, 2.0, "limit", price=40_000.0, ts=T0 + 3 * S)
    h.trades([T0 + 4 * S, T0 + 5 * S], [26_000.0, 25_200.0])
    assert h.position == pytest.approx(2.0)  # equity 367 > maintenance 252: still open
    h.trades([T0 + 6 * S, T0 + 7 * S, T0 + 8 * S], [25_150.0, 25_100.0, 25_000.0])
    (liq_fill,) = [f for f in h.fills if f.client_order_id.startswith("liquidation")]
    assert (liq_fill.price, liq_fill.qty, liq_fill.side) == (25_100.0, pytest.approx(2.0), -1)
    assert (liq_fill.ts_event, liq_fill.liquidity, liq_fill.strategy_id) == (T0 + 7 * S, "taker", "broker")
    assert liq_fill.fee == pytest.approx(2.0 * 25_100.0 * 0.00055)
    assert h.position == 0.0
    assert h.account.cash == pytest.approx(cash - 2.0 * 4_900.0 - liq_fill.fee)
    assert h.statuses(stop_loss) == ["accepted", "canceled"]
    assert h.reasons(stop_loss) == ["liquidation"]
    h.trade(T0 + 9 * S, 20_000.0)  # nothing more to liquidate
    assert len(h.fills) == 2


def test_short_is_liquidated_on_a_rise_and_not_before():
    h = Harness(cash=1_000.0, leverage=20.0, maintenance_margin=0.005, taker=0.0)
    h.trade(T0, 30_000.0)
    fill_at(h, -1, 0.5, 30_000.0, T0 + S)  # 15k short on 1k: liquidated near +6.6%
    liq = (-0.5 * 30_000.0 - 1_000.0) / (-0.5 * 1.005)
    assert h.account.liquidation_price(BTC) == pytest.approx(liq)  # 31,840.80
    h.trade(T0 + 3 * S, 31_840.0)
    assert h.position == pytest.approx(-0.5)
    h.trade(T0 + 4 * S, 31_900.0)
    assert h.position == 0.0
    assert h.fills[-1].price == 31_900.0 and h.fills[-1].side == +1
    # equity at the fill is below maintenance: 1000 - 0.5 * 1900 = 50 < 0.5% of 15,950
    assert h.account.equity() == pytest.approx(1_000.0 - 0.5 * 1_900.0)


def test_liquidation_on_bars_fills_at_the_liquidation_price_or_a_worse_open():
    h = Harness(cash=10_000.0, leverage=10.0, taker=0.0, match_on="bars")
    m = 60 * S
    h.bar(T0, 30_000.0, 30_010.0, 29_990.0, 30_000.0)
    h.order(+1, 2.0, ts=T0 + m)
    h.bar(T0 + m, 30_000.0, 30_000.0, 29_900.0, 29_950.0)
    liq = h.account.liquidation_price(BTC)
    assert liq == pytest.approx((60_000.0 - 10_000.0) / 1.99)
    h.bar(T0 + 2 * m, 29_950.0, 29_960.0, 24_000.0, 24_500.0)  # opens above, trades through
    assert h.fills[-1].price == pytest.approx(liq) and h.position == 0.0
    assert h.fills[-1].ts_event == T0 + 2 * m


def test_liquidation_never_uses_a_trade_from_before_the_position_was_opened():
    """A buy stop triggered late in a batch opens a 100x long; an earlier trade of the
    same batch lay below the new position's liquidation price, but it happened before the
    position existed and must not liquidate it."""
    h = Harness(cash=1_000.0, leverage=100.0)
    h.trade(T0 + S, 30_000.0)
    stop = h.order(+1, 1.0, "stop", trigger=30_050.0, ts=T0 + 2 * S)
    h.trades([T0 + 3 * S, T0 + 4 * S, T0 + 5 * S], [29_000.0, 30_100.0, 30_100.0])
    assert [(f.client_order_id, f.price) for f in h.fills] == [(stop, 30_100.0)]
    assert h.position == pytest.approx(1.0)
    liq = h.account.liquidation_price(BTC)
    h.trades([T0 + 6 * S, T0 + 7 * S], [liq + 1.0, liq - 1.0])  # a later breach does
    assert h.position == 0.0 and h.fills[-1].ts_event == T0 + 7 * S
