"""Every kind of rejection, each with its reason in an OrderUpdate, and bad input that never
changes the account or the ledger's fills."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.broker import Instrument
from engine.core.clock import NS_PER_S
from engine.ledger.store import Ledger
from tests.helpers.broker import T0, Harness, attach_ledger, read_table

S = NS_PER_S


def marked(price: float = 30_000.0, **kw) -> Harness:
    h = Harness(**kw)
    h.trade(T0 + S, price)
    return h


def rejected(h: Harness, *args, **kw) -> str:
    """Send an order that must be rejected; return the reason."""
    cid = h.order(*args, ts=T0 + 2 * S, **kw)
    assert h.statuses(cid) == ["rejected"], h.updates
    (reason,) = h.reasons(cid)
    assert h.fills_of(cid) == []
    return reason


CASES = {
    "qty off the step": (dict(side=+1, qty=0.0015), "not a multiple of the qty step 0.001"),
    "market qty above the maximum": (dict(side=+1, qty=501.0), "above the market maximum 500"),
    "limit qty above the maximum": (dict(side=+1, qty=1191.0, order_type="limit", price=20_000.0),
                                    "above the maximum 1190"),
    "limit price off the tick": (dict(side=+1, qty=0.01, order_type="limit", price=29_999.95),
                                 "price 29999.95 is not a multiple of the tick size 0.1"),
    "stop trigger off the tick": (dict(side=-1, qty=0.01, order_type="stop", trigger=29_000.01),
                                  "trigger price 29000.01 is not a multiple of the tick size"),
    "below min notional": (dict(side=+1, qty=0.001, order_type="limit", price=4_000.0),
                           "order value 4.0000 is below the minimum notional 5"),
    "unknown symbol": (dict(side=+1, qty=0.01, symbol="ZZZUSDT"), "unknown symbol"),
    "insufficient margin": (dict(side=+1, qty=0.5), "insufficient margin"),
    "short beyond margin": (dict(side=-1, qty=0.4), "insufficient margin"),
    "reduce-only that would not reduce": (dict(side=-1, qty=0.01, reduce_only=True),
                                          "would not reduce position 0"),
    "post-only that would take": (dict(side=-1, qty=0.01, order_type="limit", price=29_999.0,
                                       tif="PostOnly"), "post-only order would take liquidity"),
    "zero qty": (dict(side=+1, qty=0.0), "qty must be a positive finite number, got 0.0"),
    "negative qty": (dict(side=+1, qty=-0.01), "qty must be a positive finite number, got -0.01"),
    "NaN qty": (dict(side=+1, qty=math.nan), "qty must be a positive finite number, got nan"),
    "infinite qty": (dict(side=-1, qty=math.inf), "qty must be a positive finite number, got inf"),
    "NaN limit price": (dict(side=+1, qty=0.01, order_type="limit", price=math.nan),
                        "price must be a positive finite number, got nan"),
    "negative limit price": (dict(side=+1, qty=0.01, order_type="limit", price=-100.0),
                             "price must be a positive finite number"),
    "limit without a price": (dict(side=+1, qty=0.01, order_type="limit"), "a limit order needs a price"),
    "stop without a trigger": (dict(side=+1, qty=0.01, order_type="stop"), "needs a trigger price"),
    "bad side": (dict(side=0, qty=0.01), "side must be +1 or -1, got 0"),
    "bad order type": (dict(side=+1, qty=0.01, order_type="trailing"), "order type must be one of"),
    "bad time in force": (dict(side=+1, qty=0.01, tif="GTD"), "time in force must be one of"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_rejection_reasons(name):
    kwargs, expected = CASES[name]
    h = marked()
    kwargs = dict(kwargs)
    args = (kwargs.pop("side"), kwargs.pop("qty"), kwargs.pop("order_type", "market"))
    reason = rejected(h, *args, **kwargs)
    assert expected in reason, reason
    assert h.account.cash == 10_000.0 and h.account.positions == {}
    assert dict(h.broker.rejections)  # counted for the run summary


def test_below_min_qty_on_grid():
    """Spot BTCUSDT: step 0.000001, minimum 0.000048; 0.00001 is on the grid but too small."""
    h = marked(category="spot", maker=0.001, taker=0.001)
    assert "qty 1e-05 is below the minimum 4.8e-05" in rejected(h, +1, 0.00001)


def test_no_price_yet():
    h = Harness()
    assert "no market price yet for BTCUSDT" in rejected(h, +1, 0.01)


def test_duplicate_client_order_id():
    h = marked()
    h.order(+1, 0.01, cid="dup", ts=T0 + 2 * S)
    h.order(+1, 0.01, cid="dup", ts=T0 + 2 * S)
    assert h.statuses("dup") == ["accepted", "rejected"]
    assert "duplicate client order id 'dup'" in h.reasons("dup")[0]
    h.trade(T0 + 3 * S, 30_000.0)
    assert h.filled_qty("dup") == pytest.approx(0.01)  # only the first one traded


def test_margin_counts_orders_already_working():
    h = marked()
    assert h.statuses(h.order(+1, 0.15, "limit", price=29_000.0, ts=T0 + 2 * S)) == ["accepted"]
    assert h.statuses(h.order(+1, 0.15, "limit", price=29_000.0, ts=T0 + 2 * S)) == ["accepted"]
    # alone 0.15 BTC fits; on top of the 0.3 working it is 0.45 BTC (13.5k) on 10k at 1x
    assert "insufficient margin: position 0.45 at 30000" in rejected(h, +1, 0.15)
    # an order that reduces the exposure is always allowed
    assert h.statuses(h.order(-1, 0.15, ts=T0 + 2 * S)) == ["accepted"]


def test_leverage_raises_what_the_account_can_carry():
    h = marked(leverage=5.0)
    assert h.statuses(h.order(+1, 1.5, ts=T0 + 2 * S)) == ["accepted"]  # 45k on 10k at 5x
    assert "leverage 5" in rejected(h, +1, 0.3)  # 54k needs 10.8k of margin


def test_spot_cannot_buy_more_than_cash_or_sell_more_than_held():
    h = marked(category="spot", maker=0.001, taker=0.001)
    assert "insufficient USDT balance" in rejected(h, +1, 0.4)  # 12,000 USDT needed
    assert "insufficient BTC balance: sell 0.1 needs 0.1, holding 0" in rejected(h, -1, 0.1)
    h.order(+1, 0.1, ts=T0 + 2 * S)
    h.trade(T0 + 3 * S, 30_000.0)
    assert "holding 0.1" in rejected(h, -1, 0.100001)
    assert h.statuses(h.order(-1, 0.1, ts=T0 + 4 * S)) == ["accepted"]


def test_unknown_symbol_in_another_category():
    h = marked()
    h.instruments.add(Instrument("ZZZUSDT", "spot", 0.0001, 0.01, 1.0, 1e6, 1e6, 1.0, 1.0))
    assert "unknown linear symbol 'ZZZUSDT'" in rejected(h, +1, 10.0, symbol="ZZZUSDT")


BAD_QTY = st.one_of(
    st.sampled_from([math.nan, -math.nan, math.inf, -math.inf, 0.0, -0.0]),
    st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False),
    st.floats(min_value=0.5, max_value=499.0).map(lambda q: round(q, 3)),  # cannot pay for it
)


@pytest.fixture(scope="module")
def shared_ledger(tmp_path_factory):
    """One ledger for every example below, a run each: a writer process per example
    would take most of the test's time."""
    ledger = Ledger(tmp_path_factory.mktemp("bad") / "ledger.db")
    yield ledger
    ledger.close()


@settings(max_examples=60, deadline=None)
@given(qty=BAD_QTY, side=st.sampled_from([1, -1]),
       kind=st.sampled_from(["market", "limit", "stop"]), reduce_only=st.booleans())
def test_bad_orders_never_change_the_account_or_the_ledger_fills(shared_ledger, qty, side, kind,
                                                                   reduce_only):
    h = marked()
    ledger, run_id, _ = attach_ledger(h, shared_ledger)
    good = h.order(+1, 0.1, ts=T0 + 2 * S)
    h.trade(T0 + 3 * S, 30_000.0)
    before = (h.account.cash, h.account.equity(), h.position, h.account.fees_paid, len(h.fills))
    price = {"limit": 29_000.0 if side > 0 else 31_000.0}.get(kind)
    trigger = {"stop": 31_000.0 if side > 0 else 29_000.0}.get(kind)
    bad = h.order(side, qty, kind, price=price, trigger=trigger, reduce_only=reduce_only,
                  ts=T0 + 4 * S)
    h.trades([T0 + 5 * S, T0 + 6 * S], [31_500.0, 28_500.0], [100.0, 100.0])
    if reduce_only and side < 0 and 0 < qty <= 0.1:
        return  # a valid reduce-only sell: not bad input
    assert h.statuses(bad) == ["rejected"]
    assert h.reasons(bad) and h.reasons(bad)[0]
    assert h.fills_of(bad) == []
    assert (h.account.cash, h.position, h.account.fees_paid, len(h.fills)) == (
        before[0], before[2], before[3], before[4])
    ledger.finish_run(run_id, "finished")  # everything this run recorded is on disk
    path = ledger.target
    fills = read_table(path, "SELECT client_order_id FROM fills WHERE run_id = ?", [run_id])
    assert fills.client_order_id.tolist() == [good]
    updates = read_table(path, "SELECT status, reason FROM order_updates WHERE run_id = ? "
                         "AND client_order_id = ?", [run_id, bad])
    assert updates.status.tolist() == ["rejected"] and updates.reason.iloc[0]
