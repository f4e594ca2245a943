"""Matching on bar data (klines): market orders fill at the next bar's open, at the signal
bar's close only with ``fill_at="close"``; limits, stops, IOC and latency on bars."""

from __future__ import annotations

import pytest

from engine.core.clock import NS_PER_MS, NS_PER_S
from tests.helpers.broker import T0, Harness

S = NS_PER_S
M = 60 * S


def bars(**kw) -> Harness:
    """A bar-matching harness that has seen one bar [T0, T0+1m) closing at 30,000."""
    h = Harness(match_on="bars", **kw)
    h.bar(T0, 29_990.0, 30_020.0, 29_980.0, 30_000.0)
    return h


def test_market_order_fills_at_the_next_bar_open_not_the_signal_close():
    h = bars()
    cid = h.order(+1, 0.1, ts=T0 + M)  # sent at the first bar's close
    assert h.fills == []
    h.bar(T0 + M, 30_010.0, 30_050.0, 29_950.0, 29_970.0)
    (fill,) = h.fills
    assert (fill.price, fill.ts_event, fill.liquidity) == (30_010.0, T0 + M, "taker")
    assert h.statuses(cid) == ["accepted", "filled"]
    assert h.account.marks["BTCUSDT"] == 29_970.0  # marked to the close after matching
    assert h.account.equity() == pytest.approx(10_000.0 - fill.fee + 0.1 * (29_970.0 - 30_010.0))


def test_fill_at_close_is_an_explicit_opt_in():
    h = bars(fill_at="close")
    h.order(+1, 0.1, ts=T0 + M)
    (fill,) = h.fills
    assert (fill.price, fill.ts_event) == (30_000.0, T0 + M)
    h.bar(T0 + M, 30_010.0, 30_050.0, 29_950.0, 29_970.0)
    assert len(h.fills) == 1


def test_fill_at_close_applies_slippage_too():
    h = bars(fill_at="close", slippage_bps=10.0)
    h.order(-1, 0.1, ts=T0 + M)
    assert h.fills[0].price == pytest.approx(30_000.0 * 0.999)


def test_next_bar_open_with_slippage_and_latency():
    h = bars(slippage_bps=10.0, latency_ms=250.0)
    h.order(+1, 0.1, ts=T0 + M)
    h.bar(T0 + M, 30_010.0, 30_050.0, 29_950.0, 29_970.0)
    (fill,) = h.fills
    assert fill.price == pytest.approx(30_010.0 * 1.001)
    assert fill.ts_event == T0 + M + 250 * NS_PER_MS  # not before it reached the venue


def test_order_arriving_after_a_bar_closed_waits_for_the_following_bar():
    h = bars(latency_ms=90_000.0)  # 1.5 bars of latency
    h.order(+1, 0.1, ts=T0 + M)
    h.bar(T0 + M, 30_010.0, 30_050.0, 29_950.0, 29_970.0)
    assert h.fills == [] and h.updates == []
    h.bar(T0 + 2 * M, 29_960.0, 29_990.0, 29_900.0, 29_950.0)
    (fill,) = h.fills
    assert (fill.price, fill.ts_event) == (29_960.0, T0 + M + 90 * S)


def test_resting_limit_fills_at_its_price_when_the_bar_trades_through():
    h = bars()
    cid = h.order(+1, 0.1, "limit", price=29_900.0, ts=T0 + M)
    h.bar(T0 + M, 29_990.0, 30_000.0, 29_950.0, 29_960.0)
    assert h.fills == []
    h.bar(T0 + 2 * M, 29_960.0, 29_970.0, 29_850.0, 29_880.0)
    (fill,) = h.fills
    assert (fill.price, fill.liquidity, fill.ts_event) == (29_900.0, "maker", T0 + 2 * M)
    assert fill.fee == pytest.approx(0.1 * 29_900.0 * 0.0002)
    assert h.statuses(cid) == ["accepted", "filled"]


def test_resting_limit_gapped_through_fills_at_its_limit_as_on_trades():
    """A resting bid hit by a gap fills at the bid (the trade path does the same); the
    bar's open below it is a price the order would have stopped the market at."""
    h = bars()
    h.order(+1, 0.1, "limit", price=29_900.0, ts=T0 + M)
    h.bar(T0 + M, 29_800.0, 29_850.0, 29_700.0, 29_750.0)
    (fill,) = h.fills
    assert (fill.price, fill.liquidity) == (29_900.0, "maker")


def test_resting_limit_touch_uses_the_fill_probability():
    h = bars(touch_probability=0.0)
    h.order(-1, 0.1, "limit", price=30_100.0, ts=T0 + M)
    h.bar(T0 + M, 30_000.0, 30_100.0, 29_990.0, 30_050.0)  # high touches the limit
    assert h.fills == []
    h = bars(touch_probability=1.0)
    h.order(-1, 0.1, "limit", price=30_100.0, ts=T0 + M)
    h.bar(T0 + M, 30_000.0, 30_100.0, 29_990.0, 30_050.0)
    assert [f.price for f in h.fills] == [30_100.0]


def test_marketable_limit_on_bars_takes_at_the_open_within_its_limit():
    h = bars()
    h.order(+1, 0.1, "limit", price=30_050.0, ts=T0 + M)
    h.bar(T0 + M, 30_020.0, 30_090.0, 30_000.0, 30_080.0)
    assert [(f.price, f.liquidity) for f in h.fills] == [(30_020.0, "taker")]


def test_ioc_on_bars_lives_for_one_bar():
    h = bars()
    cid = h.order(+1, 0.1, "limit", price=30_005.0, tif="IOC", ts=T0 + M)  # marketable vs 30,000
    h.bar(T0 + M, 30_010.0, 30_020.0, 29_900.0, 29_950.0)  # opens above the limit
    assert h.statuses(cid) == ["accepted", "expired"]
    h.bar(T0 + 2 * M, 29_950.0, 29_960.0, 29_900.0, 29_910.0)
    assert h.fills == []  # it never rested: not filled as maker when the bar dipped through


def test_ioc_on_bars_takes_at_the_open_when_the_open_is_within_its_limit():
    h = bars()
    cid = h.order(+1, 0.1, "limit", price=29_990.0, tif="IOC", ts=T0 + M)  # below the last close
    h.bar(T0 + M, 29_980.0, 30_020.0, 29_900.0, 29_950.0)
    assert [(f.price, f.liquidity) for f in h.fills] == [(29_980.0, "taker")]
    assert h.statuses(cid) == ["accepted", "filled"]


def test_stop_on_bars_fills_at_trigger_or_at_a_gapped_open():
    h = bars()
    h.order(+1, 0.1, ts=T0 + M)
    h.bar(T0 + M, 30_000.0, 30_010.0, 29_990.0, 30_000.0)
    stop = h.order(-1, 0.1, "stop", trigger=29_900.0, ts=T0 + 2 * M)
    h.bar(T0 + 2 * M, 30_000.0, 30_010.0, 29_901.0, 29_950.0)
    assert h.fills_of(stop) == []
    h.bar(T0 + 3 * M, 29_950.0, 29_960.0, 29_850.0, 29_870.0)  # trades through the trigger
    assert [f.price for f in h.fills_of(stop)] == [29_900.0]
    assert h.statuses(stop) == ["accepted", "triggered", "filled"]

    h = bars()
    h.order(+1, 0.1, ts=T0 + M)
    h.bar(T0 + M, 30_000.0, 30_010.0, 29_990.0, 30_000.0)
    stop = h.order(-1, 0.1, "stop", trigger=29_900.0, ts=T0 + 2 * M)
    h.bar(T0 + 2 * M, 29_700.0, 29_800.0, 29_600.0, 29_650.0)  # gaps below: first price beyond
    assert [f.price for f in h.fills_of(stop)] == [29_700.0]


def test_participation_cap_on_bars_gives_partial_fills():
    h = bars(max_participation=0.01, cash=100_000.0)
    cid = h.order(+1, 1.0, ts=T0 + M)
    h.bar(T0 + M, 30_000.0, 30_010.0, 29_990.0, 30_000.0, volume=40.0)
    assert [f.qty for f in h.fills] == pytest.approx([0.4])
    h.bar(T0 + 2 * M, 30_000.0, 30_010.0, 29_990.0, 30_000.0, volume=100.0)
    assert [f.qty for f in h.fills] == pytest.approx([0.4, 0.6])
    assert h.statuses(cid) == ["accepted", "filled"]


def test_triggered_stop_partly_filled_on_bars_fills_its_remainder_at_the_next_open():
    h = bars(max_participation=0.01, cash=100_000.0)
    h.order(+1, 1.0, ts=T0 + M)
    h.bar(T0 + M, 30_000.0, 30_010.0, 29_990.0, 30_000.0, volume=1_000.0)
    stop = h.order(-1, 1.0, "stop", trigger=29_900.0, ts=T0 + 2 * M)
    h.bar(T0 + 2 * M, 29_950.0, 29_960.0, 29_850.0, 29_870.0, volume=30.0)  # triggers, 0.3 fills
    assert [(f.price, f.qty) for f in h.fills_of(stop)] == [(29_900.0, pytest.approx(0.3))]
    h.bar(T0 + 3 * M, 29_800.0, 29_820.0, 29_700.0, 29_750.0, volume=100.0)
    assert [(f.price, f.qty) for f in h.fills_of(stop)] == [
        (29_900.0, pytest.approx(0.3)), (29_800.0, pytest.approx(0.7))]
    assert h.statuses(stop) == ["accepted", "triggered", "filled"]
    assert h.position == pytest.approx(0.0)
