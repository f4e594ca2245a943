"""Hand-worked order scenarios on trade data: every order type, time in force, cancel,
reduce-only, partial fills, stops that gap, and latency. Prices and fees are worked out
by hand in each test (BTCUSDT linear: tick 0.1, step 0.001; maker 0.02%, taker 0.055%)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.core.clock import NS_PER_MS, NS_PER_S
from tests.helpers.broker import BTC, T0, Harness, replay_trades

S = NS_PER_S
MS = NS_PER_MS


def marked(**kw) -> Harness:
    """A harness whose market last traded at 30,000 at T0 + 1 s."""
    h = Harness(**kw)
    h.trade(T0 + S, 30_000.0)
    return h


# -- market -----------------------------------------------------------------------------------


def test_market_order_fills_at_next_trade_as_taker():
    h = marked()
    cid = h.order(+1, 0.1, ts=T0 + 2 * S)
    assert h.statuses(cid) == ["accepted"]
    assert h.fills == []  # nothing until a trade comes after it
    h.trades([T0 + 3 * S, T0 + 4 * S], [30_001.0, 30_050.0], [0.5, 0.5])
    (fill,) = h.fills
    assert fill.price == 30_001.0 and fill.qty == 0.1
    assert fill.ts_event == T0 + 3 * S and fill.liquidity == "taker"
    assert fill.fee == pytest.approx(0.1 * 30_001.0 * 0.00055)
    assert h.statuses(cid) == ["accepted", "filled"]
    pos = h.account.positions[BTC]
    assert pos.qty == 0.1 and pos.avg_price == pytest.approx(30_001.0, rel=1e-15)
    assert h.account.cash == pytest.approx(10_000.0 - fill.fee)
    # marked to the batch's last trade: 0.1 * (30050 - 30001) = 4.9 unrealized
    assert h.account.equity() == pytest.approx(10_000.0 - fill.fee + 4.9)


def test_market_sell_with_fixed_slippage_moves_price_against_the_order():
    h = marked(slippage_bps=10.0)
    h.order(-1, 0.2, ts=T0 + 2 * S)
    h.trade(T0 + 3 * S, 30_000.0)
    (fill,) = h.fills
    assert fill.price == pytest.approx(30_000.0 * (1 - 0.001))  # 29,970
    assert fill.side == -1
    assert h.position == pytest.approx(-0.2)


def test_market_order_does_not_fill_on_trades_before_it_was_sent():
    h = marked()
    h.trades([T0 + 2 * S, T0 + 3 * S], [30_010.0, 30_020.0])
    h.order(+1, 0.1, ts=T0 + 3 * S)
    assert h.fills == []
    h.trade(T0 + 5 * S, 30_030.0)
    assert [f.price for f in h.fills] == [30_030.0]


# -- limit ------------------------------------------------------------------------------------


def test_resting_limit_buy_fills_at_its_price_as_maker_when_traded_through():
    h = marked()
    cid = h.order(+1, 0.1, "limit", price=29_990.0, ts=T0 + 2 * S)
    h.trades([T0 + 3 * S, T0 + 4 * S], [29_995.0, 29_992.0])
    assert h.fills == []
    h.trades([T0 + 5 * S, T0 + 6 * S], [29_989.9, 29_980.0])
    (fill,) = h.fills
    assert fill.price == 29_990.0 and fill.liquidity == "maker"
    assert fill.ts_event == T0 + 5 * S
    assert fill.fee == pytest.approx(0.1 * 29_990.0 * 0.0002)
    assert h.statuses(cid) == ["accepted", "filled"]


def test_resting_limit_sell_touch_fills_with_probability_one_and_not_with_zero():
    h = marked(touch_probability=1.0)
    h.order(-1, 0.1, "limit", price=30_010.0, ts=T0 + 2 * S)
    h.trade(T0 + 3 * S, 30_010.0)
    assert [(f.price, f.liquidity) for f in h.fills] == [(30_010.0, "maker")]

    h = marked(touch_probability=0.0)
    h.order(-1, 0.1, "limit", price=30_010.0, ts=T0 + 2 * S)
    h.trades([T0 + 3 * S, T0 + 4 * S, T0 + 5 * S], [30_010.0, 30_010.0, 30_009.0])
    assert h.fills == []  # touches never fill; nothing went through
    h.trade(T0 + 6 * S, 30_010.1)
    assert [(f.price, f.ts_event) for f in h.fills] == [(30_010.0, T0 + 6 * S)]


def test_marketable_limit_takes_at_trade_prices_up_to_its_limit():
    h = marked()
    h.order(+1, 0.1, "limit", price=30_010.0, ts=T0 + 2 * S)
    h.trades([T0 + 3 * S, T0 + 4 * S], [30_012.0, 30_004.0])  # the first is above the limit
    (fill,) = h.fills
    assert (fill.price, fill.liquidity, fill.ts_event) == (30_004.0, "taker", T0 + 4 * S)
    assert fill.fee == pytest.approx(0.1 * 30_004.0 * 0.00055)


def test_marketable_limit_never_fills_beyond_its_limit_with_slippage():
    h = marked(slippage_bps=10.0)
    h.order(+1, 0.1, "limit", price=30_010.0, ts=T0 + 2 * S)
    h.trade(T0 + 3 * S, 30_003.0)  # 30003 * 1.001 = 30033 > limit
    assert [f.price for f in h.fills] == [30_010.0]


def test_ioc_limit_expires_when_nothing_fills_on_its_first_data():
    h = marked()
    cid = h.order(+1, 0.1, "limit", price=30_010.0, tif="IOC", ts=T0 + 2 * S)
    h.trades([T0 + 3 * S, T0 + 4 * S], [30_020.0, 30_015.0])
    assert h.fills == []
    assert h.statuses(cid) == ["accepted", "expired"]
    assert h.reasons(cid) == ["IOC remainder"]
    h.trade(T0 + 5 * S, 30_000.0)  # later trades inside the limit do not revive it
    assert h.fills == []


def test_ioc_keeps_the_part_that_fills_and_expires_the_rest():
    h = marked(max_participation=0.5, cash=100_000.0)
    cid = h.order(+1, 1.0, "limit", price=30_010.0, tif="IOC", ts=T0 + 2 * S)
    h.trades([T0 + 3 * S, T0 + 4 * S], [30_000.0, 30_002.0], [0.4, 0.6])
    (fill,) = h.fills
    assert fill.qty == pytest.approx(0.5)
    assert fill.price == pytest.approx((0.2 * 30_000.0 + 0.3 * 30_002.0) / 0.5)
    assert h.statuses(cid) == ["accepted", "expired"]
    h.trade(T0 + 5 * S, 30_000.0, 10.0)
    assert len(h.fills) == 1


def test_ioc_below_the_last_price_takes_as_taker_and_never_rests():
    """IOC/FOK cannot rest in the book: on their first data they take at trade prices
    within the limit, as taker, and expire; they never pay the maker fee."""
    h = marked()
    cid = h.order(+1, 0.1, "limit", price=29_990.0, tif="IOC", ts=T0 + 2 * S)
    h.trades([T0 + 3 * S, T0 + 4 * S], [29_995.0, 29_980.0])
    (fill,) = h.fills
    assert (fill.price, fill.liquidity) == (29_980.0, "taker")
    assert fill.fee == pytest.approx(0.1 * 29_980.0 * 0.00055)
    assert h.statuses(cid) == ["accepted", "filled"]

    h = marked()
    cid = h.order(-1, 0.1, "limit", price=30_010.0, tif="FOK", ts=T0 + 2 * S)
    h.trades([T0 + 3 * S], [30_000.0])  # nothing at or above the limit
    assert h.fills == [] and h.statuses(cid) == ["accepted", "expired"]


def test_fok_fills_all_or_nothing():
    h = marked(max_participation=0.5, cash=100_000.0)
    cid = h.order(+1, 1.0, "limit", price=30_010.0, tif="FOK", ts=T0 + 2 * S)
    h.trades([T0 + 3 * S, T0 + 4 * S], [30_000.0, 30_002.0], [0.4, 0.6])  # 0.5 available
    assert h.fills == []
    assert h.statuses(cid) == ["accepted", "expired"]
    assert h.reasons(cid) == ["FOK could not fill completely"]

    h = marked(max_participation=0.5, cash=100_000.0)
    cid = h.order(+1, 1.0, "limit", price=30_010.0, tif="FOK", ts=T0 + 2 * S)
    h.trades([T0 + 3 * S, T0 + 4 * S], [30_000.0, 30_002.0], [1.0, 3.0])  # 2.0 available
    assert h.filled_qty(cid) == pytest.approx(1.0)
    assert h.statuses(cid) == ["accepted", "filled"]


def test_post_only_rests_as_maker_and_is_rejected_when_it_would_take():
    h = marked()
    cid = h.order(+1, 0.1, "limit", price=30_000.0, tif="PostOnly", ts=T0 + 2 * S)
    assert h.statuses(cid) == ["rejected"]
    assert "post-only order would take liquidity" in h.reasons(cid)[0]

    cid = h.order(+1, 0.1, "limit", price=29_999.9, tif="PostOnly", ts=T0 + 2 * S)
    assert h.statuses(cid) == ["accepted"]
    h.trade(T0 + 3 * S, 29_999.0)
    assert [(f.price, f.liquidity) for f in h.fills] == [(29_999.9, "maker")]


# -- stop -------------------------------------------------------------------------------------


def test_sell_stop_triggers_on_trade_price_and_a_gap_fills_at_the_first_price_beyond():
    h = marked()
    h.order(+1, 0.1, ts=T0 + 2 * S)
    h.trade(T0 + 3 * S, 30_000.0)
    cid = h.order(-1, 0.1, "stop", trigger=29_900.0, ts=T0 + 4 * S)
    h.trades([T0 + 5 * S, T0 + 6 * S], [29_950.0, 29_900.1])
    assert h.statuses(cid) == ["accepted"]
    h.trades([T0 + 7 * S, T0 + 8 * S, T0 + 9 * S], [29_950.0, 29_850.0, 29_800.0])
    fill = h.fills_of(cid)[0]
    assert (fill.price, fill.ts_event, fill.liquidity) == (29_850.0, T0 + 8 * S, "taker")
    assert h.statuses(cid) == ["accepted", "triggered", "filled"]
    assert h.position == 0.0
    assert h.account.positions[BTC].realized_pnl == pytest.approx(0.1 * (29_850.0 - 30_000.0))


def test_buy_stop_fills_exactly_at_trigger_when_traded_there_and_with_slippage():
    h = marked(slippage_bps=5.0)
    cid = h.order(+1, 0.1, "stop", trigger=30_100.0, ts=T0 + 2 * S)
    h.trades([T0 + 3 * S, T0 + 4 * S], [30_050.0, 30_100.0])
    fill = h.fills_of(cid)[0]
    assert fill.price == pytest.approx(30_100.0 * 1.0005)
    assert fill.ts_event == T0 + 4 * S


# -- cancel -----------------------------------------------------------------------------------


def test_cancel_removes_a_resting_order():
    h = marked()
    cid = h.order(+1, 0.1, "limit", price=29_990.0, ts=T0 + 2 * S)
    h.cancel(cid, ts=T0 + 3 * S)
    assert h.statuses(cid) == ["accepted", "canceled"]
    assert h.broker.open_orders() == []
    h.trade(T0 + 4 * S, 29_000.0)
    assert h.fills == []


def test_cancel_of_unknown_or_finished_order_is_refused():
    h = marked()
    h.cancel("nope", ts=T0 + 2 * S)
    assert h.statuses("nope") == ["cancel_rejected"]
    assert "unknown" in h.reasons("nope")[0]
    cid = h.order(+1, 0.1, ts=T0 + 2 * S)
    h.trade(T0 + 3 * S, 30_000.0)
    h.cancel(cid, ts=T0 + 4 * S)
    assert h.statuses(cid) == ["accepted", "filled", "cancel_rejected"]
    assert h.position == pytest.approx(0.1)


def test_cancel_with_latency_loses_the_race_against_a_fill():
    h = marked(latency_ms=100.0)
    cid = h.order(+1, 0.1, "limit", price=29_990.0, ts=T0 + 2 * S)
    t = T0 + 3 * S
    h.cancel(cid, ts=t)  # reaches the venue at t + 100 ms
    ts = np.array([t + 50 * MS, t + 150 * MS], dtype=np.int64)
    replay_trades(h.bus, BTC, ts, np.array([29_980.0, 29_970.0]), np.ones(2), np.ones(2, np.int8))
    assert [f.ts_event for f in h.fills] == [t + 50 * MS]
    assert h.statuses(cid) == ["accepted", "filled", "cancel_rejected"]


# -- reduce-only ------------------------------------------------------------------------------


def test_reduce_only_reduces_and_is_refused_when_it_would_not():
    h = marked()
    h.order(+1, 0.01, ts=T0 + 2 * S)
    h.trade(T0 + 3 * S, 30_000.0)
    bad_side = h.order(+1, 0.005, reduce_only=True, ts=T0 + 4 * S)
    too_big = h.order(-1, 0.02, reduce_only=True, ts=T0 + 4 * S)
    ok = h.order(-1, 0.006, reduce_only=True, ts=T0 + 4 * S)
    over = h.order(-1, 0.005, reduce_only=True, ts=T0 + 4 * S)  # 0.006 already committed
    assert h.statuses(bad_side) == ["rejected"]
    assert "would not reduce position 0.01" in h.reasons(bad_side)[0]
    assert h.statuses(too_big) == ["rejected"]
    assert "exceeds the position" in h.reasons(too_big)[0]
    assert h.statuses(ok) == ["accepted"]
    assert h.statuses(over) == ["rejected"]
    h.trade(T0 + 5 * S, 30_100.0)
    assert h.position == pytest.approx(0.004)
    assert h.fills_of(ok)[0].price == 30_100.0


def test_reduce_only_when_flat_is_refused():
    h = marked()
    cid = h.order(-1, 0.01, reduce_only=True, ts=T0 + 2 * S)
    assert h.statuses(cid) == ["rejected"]
    assert "would not reduce position 0" in h.reasons(cid)[0]


def test_resting_reduce_only_never_opens_a_position_after_the_position_is_gone():
    h = marked()
    h.order(+1, 0.01, ts=T0 + 2 * S)
    h.trade(T0 + 3 * S, 30_000.0)
    take_profit = h.order(-1, 0.01, "limit", price=30_500.0, reduce_only=True, ts=T0 + 4 * S)
    h.order(-1, 0.01, ts=T0 + 4 * S)  # the position is closed another way
    h.trade(T0 + 5 * S, 30_000.0)
    assert h.position == 0.0
    h.trade(T0 + 6 * S, 30_600.0)  # would fill the take-profit: it must not open a short
    assert h.position == 0.0
    assert h.fills_of(take_profit) == []
    assert h.statuses(take_profit)[-1] in ("canceled", "expired")


# -- partial fills (participation cap) --------------------------------------------------------


def test_market_order_fills_in_parts_under_a_participation_cap():
    h = marked(max_participation=0.1, cash=100_000.0)
    cid = h.order(+1, 1.0, ts=T0 + 2 * S)
    h.trades([T0 + 3 * S, T0 + 4 * S], [30_000.0, 30_010.0], [2.0, 3.0])
    (first,) = h.fills
    assert first.qty == pytest.approx(0.5)
    assert first.price == pytest.approx((0.2 * 30_000.0 + 0.3 * 30_010.0) / 0.5)
    assert first.ts_event == T0 + 4 * S
    assert h.statuses(cid) == ["accepted"]
    h.trades([T0 + 5 * S], [30_020.0], [50.0])
    assert [f.qty for f in h.fills] == pytest.approx([0.5, 0.5])
    assert h.fills[1].price == 30_020.0
    assert h.statuses(cid) == ["accepted", "filled"]
    assert h.position == pytest.approx(1.0)


def test_partial_fills_are_whole_lots_and_trades_too_small_for_a_lot_fill_nothing():
    h = marked(max_participation=0.1, cash=100_000.0)
    cid = h.order(+1, 0.1, ts=T0 + 2 * S)
    h.trade(T0 + 3 * S, 30_000.0, 0.005)  # 10% of it is half a lot: no fill, no error
    assert h.fills == []
    h.trade(T0 + 4 * S, 30_000.0, 0.0456)  # 0.00456 available: one whole 0.004 lot
    assert [f.qty for f in h.fills] == pytest.approx([0.004])
    assert h.statuses(cid) == ["accepted"]
    assert all(f.qty > 0 for f in h.fills)


def test_resting_limit_partial_fill_under_a_participation_cap():
    h = marked(max_participation=0.1, cash=100_000.0)
    cid = h.order(+1, 1.0, "limit", price=29_990.0, ts=T0 + 2 * S)
    h.trades([T0 + 3 * S, T0 + 4 * S], [29_980.0, 29_995.0], [3.0, 5.0])  # 3.0 went through
    (fill,) = h.fills
    assert (fill.qty, fill.price, fill.liquidity) == (pytest.approx(0.3), 29_990.0, "maker")
    assert h.statuses(cid) == ["accepted"]


# -- latency ----------------------------------------------------------------------------------


def test_order_sent_at_t_fills_only_on_trades_at_or_after_t_plus_latency():
    h = marked(latency_ms=50.0)
    t = T0 + 2 * S
    cid = h.order(+1, 0.1, ts=t)
    assert h.statuses(cid) == []  # not at the venue yet
    ts = np.array([t + 10 * MS, t + 49 * MS, t + 50 * MS, t + 60 * MS], dtype=np.int64)
    price = np.array([30_001.0, 30_002.0, 30_003.0, 30_004.0])
    replay_trades(h.bus, BTC, ts, price, np.ones(4), np.ones(4, np.int8))
    (fill,) = h.fills
    assert (fill.price, fill.ts_event) == (30_003.0, t + 50 * MS)
    assert h.updates[0].ts_event == t + 50 * MS  # accepted on arrival


def test_rejection_happens_on_arrival_after_latency():
    h = marked(latency_ms=20.0)
    t = T0 + 2 * S
    cid = h.order(+1, 0.0005, ts=t)
    h.bus.advance_to(t + 19 * MS)
    assert h.statuses(cid) == []
    h.bus.advance_to(t + 20 * MS)
    assert h.statuses(cid) == ["rejected"]
    assert h.updates[-1].ts_event == t + 20 * MS


def test_trade_level_fills_use_each_trade_price_and_time():
    """Through a replay cut at arrivals, each order fills at the trade right after it."""
    h = marked(latency_ms=1.0)
    ts = T0 + 2 * S + np.arange(20, dtype=np.int64) * 10 * MS
    price = 30_000.0 + np.arange(20) * 0.5
    for k in (0, 5, 12):
        h.clock.set_timer(int(ts[k]) + 3 * MS,
                          lambda at: h.bus.publish(_market(f"m{at}", at)), "send")
    replay_trades(h.bus, BTC, ts, price, np.ones(20), np.ones(20, np.int8), max_batch=7)
    got = [(f.price, f.ts_event) for f in h.fills]
    assert got == [(float(price[k + 1]), int(ts[k + 1])) for k in (0, 5, 12)]


def _market(cid: str, at: int):
    from engine.core.events import OrderRequest

    return OrderRequest(cid, BTC, +1, 0.01, "market", None, None, "GTC", False, "test", at, at)


def test_resting_reduce_only_fills_at_most_what_is_left_of_the_position():
    h = marked()
    h.order(+1, 0.01, ts=T0 + 2 * S)
    h.trade(T0 + 3 * S, 30_000.0)
    take_profit = h.order(-1, 0.01, "limit", price=30_500.0, reduce_only=True, ts=T0 + 4 * S)
    h.order(-1, 0.006, ts=T0 + 4 * S)
    h.trade(T0 + 5 * S, 30_000.0)
    assert h.position == pytest.approx(0.004)
    h.trade(T0 + 6 * S, 30_600.0)
    assert [f.qty for f in h.fills_of(take_profit)] == pytest.approx([0.004])
    assert h.position == 0.0
    assert h.statuses(take_profit) == ["accepted", "canceled"]
    assert h.reasons(take_profit) == ["reduce-only: position closed"]
