"""Accounting invariants under random order flow (hypothesis).

Random trades are replayed the way ``TradeReplay`` does (batches cut at timer deadlines)
while random orders, cancels and funding settlements are sent at random times through the
real bus, with random costs, latency, touch probability and participation caps. The test
keeps its own books from the Fill and Funding events alone (cash flows, not the account's
average prices) and checks, at every batch and after every fill:

- equity equals cash plus the positions marked to the last price;
- realized + unrealized PnL - fees - funding equals the change in equity, and both equal
  what the independent cash-flow books say;
- no fill is stamped before its order arrived (nor before send time + fixed latency);
- every fill price is one the market traded while the order was live (plus slippage),
  a maker fill is at the order's limit, a limit fill never beyond the limit;
- fees are never negative and equal rate x notional; spot positions never go negative;
  reduce-only orders never increase a position; no order fills more than its qty.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.clock import NS_PER_MS
from engine.core.events import Bar, CancelRequest, Fill, Funding, OrderRequest, OrderUpdate, Trades
from tests.helpers.broker import BTC, MINUTE, T0, Harness, replay_trades

TOL = 1e-6


class Books:
    """Independent books kept from the broker's events, checked against the account."""

    def __init__(self, h: Harness, slip: float) -> None:
        self.h, self.slip = h, slip
        acct = h.account
        self.initial = acct.initial_cash
        self.flow = 0.0  # sum of side * qty * price over fills
        self.pos = 0.0
        self.fees = 0.0
        self.funding = 0.0
        self.mark: float | None = None
        self.last_fill_ts = 0
        self.accepted: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.filled: dict[str, float] = {}
        self.trades: list[tuple[np.ndarray, np.ndarray]] = []  # (ts, price) per batch
        self.bars: list[Bar] = []
        self.checks = 0
        bus = h.bus
        bus.subscribe(OrderUpdate, self.on_update)
        bus.subscribe(Fill, self.on_fill)
        bus.subscribe(Funding, self.on_funding)
        bus.subscribe(Trades, self.on_trades)
        bus.subscribe(Bar, self.on_bar)

    # -- events ------------------------------------------------------------------------------

    def on_update(self, u: OrderUpdate) -> None:
        if u.status == "accepted":
            self.accepted[u.client_order_id] = u.ts_event
        elif u.status in ("rejected", "canceled", "expired", "filled"):
            self.done.setdefault(u.client_order_id, u.ts_event)

    def on_fill(self, f: Fill) -> None:
        h = self.h
        assert f.qty > 0 and math.isfinite(f.price) and f.price > 0
        assert f.fee >= 0.0
        rate = h.broker.fees.taker if f.liquidity == "taker" else h.broker.fees.maker
        assert math.isclose(f.fee, rate * f.qty * f.price, rel_tol=1e-12, abs_tol=1e-12)
        before = self.pos
        self.pos += f.side * f.qty
        self.flow += f.side * f.qty * f.price
        self.fees += f.fee
        if f.client_order_id.startswith("liquidation-"):
            self.check_price_traded(f.price, f.ts_event, f.ts_event, 0.0)
            assert abs(self.pos) < 1e-9
            assert f.ts_event >= self.last_fill_ts  # not on a trade from before the position
            return
        self.last_fill_ts = max(self.last_fill_ts, f.ts_event)
        req = h.sent[f.client_order_id]
        assert f.side == req.side
        arrival = self.accepted[f.client_order_id]  # it was accepted, and before the fill
        assert f.ts_event >= arrival >= req.ts_init + h.broker.latency.fixed_ns
        assert f.client_order_id not in self.done or self.done[f.client_order_id] >= f.ts_event
        self.filled[f.client_order_id] = self.filled.get(f.client_order_id, 0.0) + f.qty
        assert self.filled[f.client_order_id] <= req.qty + 1e-9
        if req.reduce_only:
            assert abs(self.pos) <= abs(before) + 1e-9 and self.pos * before >= -1e-12
        if h.account.category == "spot":
            assert self.pos >= -1e-9
        if req.order_type == "limit":
            assert (req.price - f.price) * req.side >= -1e-9  # never beyond the limit
        if f.liquidity == "maker":
            # it rested at its limit, and the market traded at or through it meanwhile
            assert req.order_type == "limit" and f.price == req.price
            self.check_traded_through(f.price, req.side, arrival, f.ts_event)
        else:
            self.check_price_traded(f.price, arrival, f.ts_event, self.slip,
                                    limit=req.price if req.order_type == "limit" else None)

    def on_funding(self, f: Funding) -> None:
        if self.h.account.category == "linear":
            self.funding += self.pos * f.mark_price * f.rate
        self.check()

    def on_trades(self, tr: Trades) -> None:
        self.trades.append((tr.ts_event.copy(), tr.price.copy()))
        self.mark = float(tr.price[-1])
        assert self.h.account.marks[BTC] == self.mark

    def on_bar(self, bar: Bar) -> None:
        self.bars.append(bar)
        self.mark = bar.close
        assert self.h.account.marks[BTC] == self.mark

    # -- checks ------------------------------------------------------------------------------

    def check_traded_through(self, limit: float, side: int, start: int, end: int) -> None:
        """Some trade (bar range) in [start, end] was at ``limit`` or beyond it for a
        resting order of ``side`` (at or below a bid, at or above an ask)."""
        for ts, px in self.trades:
            live = px[(ts >= start) & (ts <= end)]
            if len(live) and ((live <= limit).any() if side > 0 else (live >= limit).any()):
                return
        for bar in self.bars:
            if bar.close_time > start and bar.open_time <= end:
                if (bar.low <= limit) if side > 0 else (bar.high >= limit):
                    return
        raise AssertionError(f"maker fill at {limit} but nothing traded through it")

    def check_price_traded(self, price: float, start: int, end: int, slip: float,
                           limit: float | None = None) -> None:
        """``price`` lies within what traded in [start, end] (bars: overlapping the span),
        widened by the slippage (which a limit order's ``limit`` caps)."""
        lo, hi = math.inf, -math.inf
        for ts, px in self.trades:
            live = px[(ts >= start) & (ts <= end)]
            if len(live):
                lo, hi = min(lo, live.min()), max(hi, live.max())
        closed = [b for b in self.bars if b.close_time <= start]
        last_closed = closed[-1] if closed and self.h.broker.fill_at == "close" else None
        for bar in self.bars:  # with fill_at="close", the last bar closed when it arrived
            if (bar.close_time > start or bar is last_closed) and bar.open_time <= end:
                lo, hi = min(lo, bar.low), max(hi, bar.high)
        assert lo <= hi, "a fill with no market data while the order was live"
        band_lo, band_hi = lo * (1 - slip) - 1e-9, hi * (1 + slip) + 1e-9
        if limit is not None:  # slippage is capped at the limit
            band_lo, band_hi = min(band_lo, limit), max(band_hi, limit)
        assert band_lo <= price <= band_hi, (price, lo, hi, slip)

    def check(self) -> None:
        """The snapshot checks, run once everything an event caused has been delivered."""
        acct = self.h.account
        mark, cash, equity = self.mark, acct.cash, acct.equity()
        self.checks += 1
        pos = acct.positions.get(BTC)
        qty = pos.qty if pos is not None else 0.0
        assert abs(qty - self.pos) < 1e-9  # positions are built only from fills
        assert abs(acct.fees_paid - self.fees) < TOL and abs(acct.funding_paid - self.funding) < TOL
        marked = 0.0 if mark is None else self.pos * mark
        scale = max(1.0, abs(self.flow), abs(marked))
        # the books from cash flows: what equity must be
        expected = self.initial - self.flow + marked - self.fees - self.funding
        assert abs(equity - expected) <= TOL * scale, (equity, expected)
        # equity = cash + positions marked to the last price
        if acct.category == "spot":
            assert abs(equity - (cash + marked)) <= TOL * scale
        elif pos is not None and qty != 0.0:
            assert abs(equity - (cash + qty * (mark - pos.avg_price))) <= TOL * scale
        else:
            assert abs(equity - cash) <= TOL * scale
        # realized + unrealized - fees - funding = change in equity
        realized = sum(p.realized_pnl for p in acct.positions.values())
        unrealized = 0.0 if pos is None or qty == 0.0 else qty * (mark - pos.avg_price)
        change = realized + unrealized - acct.fees_paid - acct.funding_paid
        assert abs(change - (equity - self.initial)) <= TOL * scale


ORDER = st.tuples(
    st.floats(0.0, 1.0),                                    # when, as a share of the run
    st.sampled_from([1, -1]),                               # side
    st.integers(1, 400),                                    # qty in lots of 0.001
    st.sampled_from(["market", "market", "limit", "stop"]),  # type
    st.integers(-40, 40),                                   # limit/trigger offset in ticks x 5
    st.sampled_from(["GTC", "GTC", "IOC", "FOK", "PostOnly"]),
    st.booleans(),                                          # reduce-only
    st.one_of(st.none(), st.floats(0.0, 1.0)),              # cancel time, if any
)

COSTS = st.fixed_dictionaries({
    "slippage_bps": st.sampled_from([0.0, 2.5, 10.0]),
    "latency_ms": st.sampled_from([0.0, 5.0, 200.0]),
    "jitter_ms": st.sampled_from([0.0, 50.0]),
    "touch_probability": st.sampled_from([0.0, 0.5, 1.0]),
    "max_participation": st.sampled_from([1.0, 0.3, 0.02]),
    "maker": st.sampled_from([0.0, 0.0002]),
    "taker": st.sampled_from([0.0, 0.00055, 0.001]),
})


def schedule(h: Harness, orders, start: int, span: int, price_of) -> None:
    """Timers that send each order (and its cancel) at its time through the bus."""
    for i, (when, side, lots, kind, offset, tif, reduce_only, cancel_at) in enumerate(orders):
        t = start + int(when * span)

        def send(at, i=i, side=side, lots=lots, kind=kind, offset=offset, tif=tif, ro=reduce_only):
            ref = price_of(at)
            level = round(ref + offset * 0.5, 1)
            req = OrderRequest(f"c{i}", BTC, side, round(lots * 0.001, 3), kind,
                               level if kind == "limit" else None, level if kind == "stop" else None,
                               tif, ro, "test", at, at)
            h.sent[req.client_order_id] = req
            h.bus.publish(req)

        h.clock.set_timer(t, send, "send")
        if cancel_at is not None:
            tc = t + int(cancel_at * span / 4)
            h.clock.set_timer(tc, lambda at, i=i: h.bus.publish(
                CancelRequest(f"c{i}", BTC, "test", at, at)), "cancel")


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(5, 150),
    category=st.sampled_from(["linear", "linear", "spot"]),
    leverage=st.sampled_from([1.0, 5.0, 25.0, 100.0]),
    costs=COSTS,
    orders=st.lists(ORDER, min_size=1, max_size=12),
    funding=st.lists(st.tuples(st.floats(0.0, 1.0), st.floats(-0.003, 0.003)), max_size=3),
    max_batch=st.integers(1, 40),
)
def test_invariants_on_trades(seed, n, category, leverage, costs, orders, funding, max_batch):
    rng = np.random.default_rng(seed)
    start = T0 + 10_000 * NS_PER_MS
    ts = start + np.cumsum(rng.integers(0, 2_000, n)) * NS_PER_MS
    ts[0] = start
    vol = rng.choice([0.0005, 0.01])
    price = np.round(30_000.0 * np.exp(np.cumsum(rng.normal(0, vol, n))), 1)
    size = np.round(rng.uniform(0.001, 2.0, n), 3)
    side = rng.choice([1, -1], n).astype(np.int8)
    if category == "spot":
        costs = costs | {"maker": 0.001, "taker": 0.001}
    h = Harness(category, 10_000.0, leverage=leverage, seed=seed, **costs)
    books = Books(h, costs["slippage_bps"] * 1e-4)
    span = int(ts[-1] - start) + 1
    schedule(h, orders, start, span,
             lambda at: float(price[max(0, int(np.searchsorted(ts, at, side="right")) - 1)]))
    for when, rate in funding:
        t = start + int(when * span)
        h.clock.set_timer(t, lambda at, r=rate: h.bus.publish(
            Funding(BTC, r, books.mark or 30_000.0, at, at)), "funding")
    replay_trades(h.bus, BTC, ts, price, size, side, max_batch, after=books.check)
    h.bus.advance_to(int(ts[-1]) + span)
    books.check()  # late timers: orders that arrive after the data
    assert books.checks >= 1
    # every order got exactly one answer on arrival, and fills only if accepted
    for cid in h.sent:
        statuses = [s for s in h.statuses(cid) if s != "cancel_rejected"]  # a cancel may win
        if statuses:
            assert statuses[0] in ("accepted", "rejected")
            if statuses[0] == "rejected":
                assert h.fills_of(cid) == [] and h.reasons(cid)
    assert sum(h.broker.rejections.values()) == sum(
        1 for u in h.updates if u.status == "rejected")


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 60),
    fill_at=st.sampled_from(["next", "close"]),
    leverage=st.sampled_from([1.0, 10.0]),
    costs=COSTS,
    orders=st.lists(ORDER, min_size=1, max_size=10),
)
def test_invariants_on_bars(seed, n, fill_at, leverage, costs, orders):
    rng = np.random.default_rng(seed)
    close = np.round(30_000.0 * np.exp(np.cumsum(rng.normal(0, 0.004, n))), 1)
    opens = np.round(np.concatenate(([30_000.0], close[:-1])) + rng.integers(-20, 21, n) * 0.5, 1)
    wiggle = np.round(rng.uniform(0, 100, (2, n)), 1)
    high = np.maximum(opens, close) + wiggle[0]
    low = np.minimum(opens, close) - wiggle[1]
    h = Harness("linear", 10_000.0, leverage=leverage, match_on="bars", fill_at=fill_at, seed=seed,
                **costs)
    books = Books(h, costs["slippage_bps"] * 1e-4)
    span = n * MINUTE
    schedule(h, orders, T0 + MINUTE, span, lambda at: float(close[min(n - 1, (at - T0) // MINUTE)]))
    for i in range(n):
        h.bar(T0 + i * MINUTE, float(opens[i]), float(high[i]), float(low[i]), float(close[i]),
              volume=float(rng.uniform(0.5, 50)))
        books.check()
    for f in h.fills:
        if f.client_order_id.startswith("liquidation-"):
            continue
        bar_of_fill = [b for b in books.bars if b.open_time <= f.ts_event < b.close_time]
        if fill_at == "next" or h.sent[f.client_order_id].order_type != "market":
            # filled inside a bar that closed after the order arrived, at a price it traded
            (bar,) = bar_of_fill
            assert bar.close_time > books.accepted[f.client_order_id]
        else:  # fill_at="close": the close of the bar just seen, at the order's arrival
            assert f.ts_event == books.accepted[f.client_order_id]
