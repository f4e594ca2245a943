"""The simulated Bybit venue, the same in backtests and paper trading.

Per data point the order is fixed (DESIGN.md): the broker matches resting orders against
the new trades or bar before strategies see them (it subscribes first); orders that
strategies send are settled after that, at ``clock + latency``, by a timer; the replay cuts
trade batches at that timer, so an order can only fill on trades that come after it.

Matching:

- market (and triggered stop) orders fill at the next trades' prices plus slippage, as
  taker; with bars only, at the open of the bar the order arrives in (``fill_at="next"``),
  or at the signal bar's close when ``fill_at="close"`` is asked for explicitly;
- limit orders that are marketable on arrival take at trade prices up to the limit; resting
  ones fill at the limit when a later trade goes through it (maker), on a touch with the
  fill model's probability; IOC keeps only what fills on its first data point, FOK all or
  nothing, PostOnly is rejected when it would take;
- stop orders trigger on trade price (bar high/low) and fill at the triggering price, so a
  gap fills at the first price beyond the trigger;
- the fill model may cap each fill at a share of traded volume, giving partial fills.

Orders are checked on arrival against instrument rules, reduce-only, and what the account
can pay for, and rejected with a reason otherwise; nothing is rounded or resized.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from engine.broker.account import Account
from engine.broker.costs import FeeModel, FillModel, LatencyModel, SlippageModel
from engine.broker.instruments import Instrument, InstrumentBook, UnknownInstrument
from engine.core.bus import Bus
from engine.core.clock import NS_PER_S
from engine.core.events import (
    AccountUpdate,
    Bar,
    CancelRequest,
    Fill,
    Funding,
    OrderRequest,
    OrderUpdate,
    PositionUpdate,
    Trades,
)

log = logging.getLogger(__name__)

ORDER_TYPES = ("market", "limit", "stop")
TIME_IN_FORCE = ("GTC", "IOC", "FOK", "PostOnly")
FINAL = ("rejected", "canceled", "expired", "filled")
_EPS = 1e-12


@dataclass(eq=False)
class Order:
    """The broker's copy of an order and how far it got."""

    id: str
    strategy_id: str
    symbol: str
    side: int
    qty: float
    type: str
    price: float | None
    trigger: float | None
    tif: str
    reduce_only: bool
    ts_sent: int
    arrival: int = 0
    filled: float = 0.0
    status: str = "pending"
    marketable: bool = False
    triggered: bool = False
    seen_data: bool = False

    @property
    def remaining(self) -> float:
        return self.qty - self.filled

    @property
    def takes(self) -> bool:
        """True when the order executes as taker (market, triggered stop, marketable limit)."""
        return self.type == "market" or self.triggered or self.marketable


class SimulatedBroker:
    """Matches one category's orders against replayed or live data and keeps the account."""

    def __init__(
        self,
        bus: Bus,
        account: Account,
        instruments: InstrumentBook,
        *,
        fees: FeeModel,
        slippage: SlippageModel,
        latency: LatencyModel,
        fill_model: FillModel,
        match_on: str = "trades",
        fill_at: str = "next",
        funding_rate: float = 0.0,
        funding_interval_hours: float = 8.0,
    ) -> None:
        if match_on not in ("trades", "bars") or fill_at not in ("next", "close"):
            raise ValueError("match_on must be trades|bars and fill_at next|close")
        self.bus, self.clock, self.account = bus, bus.clock, account
        self.instruments = instruments
        self.fees, self.slippage, self.latency, self.fill_model = fees, slippage, latency, fill_model
        self.match_on, self.fill_at = match_on, fill_at
        self.orders: dict[str, Order] = {}
        self.active: list[Order] = []
        self.pending: list[Order] = []
        self.rejections: Counter[str] = Counter()  # by reason with its numbers as N
        self.first_rejections: dict[str, str] = {}  # the first reason of each, numbers and all
        self.fill_count = 0
        self._liq_price: dict[str, float | None] = {}
        self._liq_since: dict[str, int] = {}  # the last fill's time: older trades cannot liquidate
        self._liq_seq = 0
        self._last_bar: dict[str, Bar] = {}
        self.funding_rate = funding_rate
        self._funding_ns = int(funding_interval_hours * 3600 * NS_PER_S)
        bus.subscribe(OrderRequest, self.on_order_request)
        bus.subscribe(CancelRequest, self.on_cancel_request)
        bus.subscribe(Trades, self.on_trades)
        bus.subscribe(Bar, self.on_bar)
        bus.subscribe(Funding, self.on_funding)

    # -- what strategies and the ledger may ask ------------------------------------------

    def position_qty(self, symbol: str) -> float:
        pos = self.account.positions.get(symbol)
        return pos.qty if pos is not None else 0.0

    def open_orders(self, strategy_id: str | None = None) -> list[Order]:
        """Orders on their way to the venue or working there, oldest first."""
        return [o for o in (*self.pending, *self.active)
                if strategy_id is None or o.strategy_id == strategy_id]

    def start_funding(self, from_ns: int) -> None:
        """Settle funding every interval (00:00, 08:00, 16:00 UTC by default) from now on."""
        if self.funding_rate == 0.0 or self.account.category != "linear":
            return
        first = (from_ns // self._funding_ns + 1) * self._funding_ns
        self.clock.set_timer(first, self._funding_due, "funding")

    # -- requests -------------------------------------------------------------------------

    def on_order_request(self, req: OrderRequest) -> None:
        if req.client_order_id in self.orders:
            self._update(req.client_order_id, req.symbol, req.strategy_id, "rejected",
                         f"duplicate client order id {req.client_order_id!r}")
            return
        order = Order(req.client_order_id, req.strategy_id, req.symbol, req.side, req.qty,
                      req.order_type, req.price, req.trigger_price, req.time_in_force,
                      req.reduce_only, req.ts_init)
        self.orders[order.id] = order
        delay = self.latency.submit_delay_ns()
        self.pending.append(order)
        if delay <= 0:
            self._arrive(order)
        else:
            self.clock.set_timer(req.ts_init + delay, lambda _at, o=order: self._arrive(o),
                                 "order arrival")

    def on_cancel_request(self, req: CancelRequest) -> None:
        delay = self.latency.cancel_delay_ns()
        if delay <= 0:
            self._cancel_arrive(req)
        else:
            self.clock.set_timer(req.ts_init + delay, lambda _at, r=req: self._cancel_arrive(r),
                                 "cancel arrival")

    def _cancel_arrive(self, req: CancelRequest) -> None:
        order = self.orders.get(req.client_order_id)
        if order is None or order.status != "active":
            state = "unknown" if order is None else order.status
            self._update(req.client_order_id, req.symbol, req.strategy_id, "cancel_rejected",
                         f"order is {state}, not open")
            return
        self._finish(order, "canceled", "canceled by strategy")

    def _arrive(self, order: Order) -> None:
        self.pending.remove(order)
        order.arrival = self.clock.timestamp_ns()
        reason = self._check(order)
        if reason is not None:
            order.status = "rejected"
            kind = re.sub(r"-?[\d.]+(e[-+]?\d+)?", "N", reason)
            self.rejections[kind] += 1
            self.first_rejections.setdefault(kind, reason)
            log.info("order %s rejected: %s", order.id, reason)
            self._update(order.id, order.symbol, order.strategy_id, "rejected", reason)
            return
        order.status = "active"
        self._update(order.id, order.symbol, order.strategy_id, "accepted", "")
        if order.type == "limit":  # IOC and FOK never rest: they only ever take
            last = self.account.marks.get(order.symbol)
            order.marketable = order.tif in ("IOC", "FOK") or (
                last is not None and (order.price - last) * order.side >= 0)
        self.active.append(order)
        if self.match_on == "bars" and self.fill_at == "close" and order.type == "market":
            bar = self._last_bar.get(order.symbol)
            if bar is not None:
                price = self.slippage.price(bar.close, order.side, order.qty)
                self._fill(order, order.qty, price, "taker", order.arrival)

    def _check(self, order: Order) -> str | None:
        """Why the venue refuses ``order`` now, or None when it is accepted."""
        if order.side not in (1, -1):
            return f"side must be +1 or -1, got {order.side!r}"
        if order.type not in ORDER_TYPES:
            return f"order type must be one of {', '.join(ORDER_TYPES)}, got {order.type!r}"
        if order.tif not in TIME_IN_FORCE:
            return f"time in force must be one of {', '.join(TIME_IN_FORCE)}, got {order.tif!r}"
        try:
            inst = self.instruments.get(self.account.category, order.symbol)
        except UnknownInstrument as exc:
            return f"unknown symbol: {exc}"
        reason = inst.check_qty(order.qty, order.type != "limit")
        if reason:
            return reason
        if order.type == "limit":
            if order.price is None:
                return "a limit order needs a price"
            reason = inst.check_price(order.price, "price")
        elif order.type == "stop":
            if order.trigger is None:
                return "a stop order needs a trigger price"
            reason = inst.check_price(order.trigger, "trigger price")
        if reason:
            return reason
        last = self.account.marks.get(order.symbol)
        if last is None:
            return f"no market price yet for {order.symbol}"
        ref = {"limit": order.price, "stop": order.trigger}.get(order.type) or last
        reason = inst.check_notional(order.qty, ref)
        if reason:
            return reason
        if order.type == "limit" and order.tif == "PostOnly" and (order.price - last) * order.side >= 0:
            return f"post-only order would take liquidity (limit {order.price:g}, last {last:g})"
        if order.reduce_only:
            return self._check_reduce_only(order)
        return self._check_affordable(order, inst, ref)

    def _check_reduce_only(self, order: Order) -> str | None:
        pos = self.position_qty(order.symbol)
        if pos == 0.0 or (pos > 0) == (order.side > 0):
            return f"reduce-only {'buy' if order.side > 0 else 'sell'} would not reduce position {pos:g}"
        committed = sum(o.remaining for o in self.active
                        if o.symbol == order.symbol and o.reduce_only and o.side == order.side)
        if order.qty + committed > abs(pos) + _EPS:
            return f"reduce-only qty {order.qty:g} exceeds the position {abs(pos):g} left to reduce"
        return None

    def _check_affordable(self, order: Order, inst: Instrument, ref: float) -> str | None:
        acct = self.account
        taker = self.fees.taker
        same_side = [o for o in self.active if o.symbol == order.symbol and o.side == order.side]
        if acct.category == "spot":
            if order.side < 0:
                held = self.position_qty(order.symbol)
                committed = sum(o.remaining for o in same_side)
                if order.qty + committed > held + _EPS:
                    return (f"insufficient {inst.base or 'base'} balance: sell {order.qty:g} "
                            f"needs {order.qty + committed:g}, holding {held:g}")
                return None
            committed = sum(o.remaining * (o.price or ref) for o in same_side)
            need = (order.qty * ref + committed) * (1.0 + taker)
            if need > acct.cash + 1e-9:
                return f"insufficient {inst.quote or 'quote'} balance: needs {need:.2f}, has {acct.cash:.2f}"
            return None
        pos = self.position_qty(order.symbol)
        pending = sum(o.side * o.remaining for o in self.active if o.symbol == order.symbol)
        projected = pos + pending + order.side * order.qty
        if abs(projected) <= abs(pos + pending) + _EPS:
            return None  # reduces exposure: always allowed
        others = acct.margin_used() - abs(pos) * acct.marks.get(order.symbol, ref) / acct.leverage
        need = abs(projected) * ref / acct.leverage + others + order.qty * ref * taker
        equity = acct.equity()
        if need > equity + 1e-9:
            return (f"insufficient margin: position {projected:g} at {ref:g} needs {need:.2f}, "
                    f"equity is {equity:.2f} (leverage {acct.leverage:g})")
        return None

    # -- market data ----------------------------------------------------------------------

    def on_trades(self, tr: Trades) -> None:
        n = len(tr.price)
        if n == 0:
            return
        symbol = tr.symbol
        self.account.marks[symbol] = float(tr.price[-1])
        if self.match_on == "trades" and self.active:
            self._match_trades(tr)
        liq = self._liq_price.get(symbol)
        if liq is not None:
            self._liquidate_on_trades(tr, liq)

    def on_bar(self, bar: Bar) -> None:
        symbol = bar.symbol
        self.slippage.observe_bar(bar.close, bar.volume)
        self._last_bar[symbol] = bar
        if self.match_on != "bars":
            return  # trades mark and match; a bar closing after its delay must not re-mark
        if self.active:
            self._match_bar(bar)
        liq = self._liq_price.get(symbol)
        if liq is not None:
            self._liquidate_on_bar(bar, liq)
        self.account.marks[symbol] = bar.close

    def _match_trades(self, tr: Trades) -> None:
        all_price, all_size, all_ts = tr.price, tr.size, tr.ts_event
        for order in [o for o in self.active if o.symbol == tr.symbol]:
            if order.status != "active":
                continue
            # Only trades that happened at the venue after the order got there may fill it. A
            # replay cuts batches at arrivals; live, a late or backfilled trade can be older.
            first = 0 if all_ts[0] >= order.arrival else int(np.searchsorted(all_ts, order.arrival))
            if first == len(all_ts):
                continue
            price, size, ts = all_price[first:], all_size[first:], all_ts[first:]
            start = 0
            if order.type == "stop" and not order.triggered:
                crossed = price >= order.trigger if order.side > 0 else price <= order.trigger
                if not crossed.any():
                    continue
                start = int(np.argmax(crossed))
                self._trigger(order)
            if order.takes:
                if order.type == "limit":
                    ok = price[start:] <= order.price if order.side > 0 else price[start:] >= order.price
                    self._take(order, price[start:][ok], size[start:][ok], ts[start:][ok])
                else:
                    self._take(order, price[start:], size[start:], ts[start:])
                order.marketable = False
            else:
                limit = order.price
                through = price < limit if order.side > 0 else price > limit
                touch = price == limit
                if touch.any():
                    hits = np.flatnonzero(touch)
                    through[hits[self.fill_model.touches_fill(len(hits))]] = True
                if through.any():
                    self._rest_fill(order, limit, size[through], ts[through])
            self._after_data(order)

    def _take(self, order: Order, price: np.ndarray, size: np.ndarray, ts: np.ndarray) -> None:
        """Fill a taker order against trades (already filtered to those it may take)."""
        if len(price) == 0:
            return
        qty = order.remaining
        if not self.fill_model.capped:
            fill_price = self._cap_at_limit(order, self.slippage.price(float(price[0]), order.side, qty))
            self._fill(order, qty, fill_price, "taker", int(ts[0]))
            return
        avail = np.minimum(np.cumsum(size * self.fill_model.max_participation), qty)
        take = np.diff(avail, prepend=0.0)
        used = take > 0
        if not used.any():
            return
        got = float(avail[-1])
        if order.tif == "FOK" and got < qty - _EPS:
            return
        vwap = float(np.dot(price[used], take[used]) / got)
        fill_price = self._cap_at_limit(order, self.slippage.price(vwap, order.side, got))
        lot = self._lot(order, got)
        if lot > 0:  # less than one lot available: no fill yet
            self._fill(order, lot, fill_price, "taker", int(ts[used][-1]))

    @staticmethod
    def _cap_at_limit(order: Order, price: float) -> float:
        """A taker limit order never fills beyond its limit, slippage included."""
        if order.type != "limit":
            return price
        return min(price, order.price) if order.side > 0 else max(price, order.price)

    def _rest_fill(self, order: Order, limit: float, size: np.ndarray, ts: np.ndarray) -> None:
        """Fill a resting limit order at its price against trades that went through it."""
        qty = order.remaining
        if not self.fill_model.capped:
            self._fill(order, qty, limit, "maker", int(ts[0]))
            return
        avail = float(min(size.sum() * self.fill_model.max_participation, qty))
        if order.tif == "FOK" and avail < qty - _EPS:
            return
        got = self._lot(order, avail)
        if got > 0:
            self._fill(order, got, limit, "maker", int(ts[-1]))

    def _lot(self, order: Order, qty: float) -> float:
        """A partial-fill quantity rounded down to the lot step (the venue's granularity)."""
        try:
            step = self.instruments.get(self.account.category, order.symbol).qty_step
        except UnknownInstrument:
            return qty
        if qty >= order.remaining - _EPS:
            return order.remaining
        return math.floor(qty / step + 1e-9) * step

    def _match_bar(self, bar: Bar) -> None:
        for order in [o for o in self.active if o.symbol == bar.symbol]:
            if order.status != "active" or order.arrival >= bar.close_time:
                continue
            when = max(order.arrival, bar.open_time)
            cap = bar.volume * self.fill_model.max_participation if self.fill_model.capped else math.inf
            if order.type == "stop" and not order.triggered:
                hit = bar.high >= order.trigger if order.side > 0 else bar.low <= order.trigger
                if not hit:
                    self._after_data(order)
                    continue
                self._trigger(order)
                price = max(bar.open, order.trigger) if order.side > 0 else min(bar.open, order.trigger)
                self._bar_fill(order, self.slippage.price(price, order.side, order.remaining), cap,
                               "taker", when)
            elif order.type == "market" or order.triggered:  # a stop's remainder is a market order
                price = self.slippage.price(bar.open, order.side, order.remaining)
                self._bar_fill(order, price, cap, "taker", when)
            else:
                limit = order.price
                if order.marketable and (bar.open - limit) * order.side <= 0:
                    price = self._cap_at_limit(
                        order, self.slippage.price(bar.open, order.side, order.remaining))
                    self._bar_fill(order, price, cap, "taker", when)
                elif (bar.open - limit) * order.side < 0:  # gapped through a resting order:
                    self._bar_fill(order, limit, cap, "maker", when)  # it fills at its limit
                elif order.tif not in ("IOC", "FOK"):
                    far = bar.low if order.side > 0 else bar.high
                    through = far < limit if order.side > 0 else far > limit
                    if through or (far == limit and self.fill_model.touches_fill(1)[0]):
                        self._bar_fill(order, limit, cap, "maker", when)
                order.marketable = False
            self._after_data(order)

    def _bar_fill(self, order: Order, price: float, cap: float, liquidity: str, ts: int) -> None:
        qty = order.remaining
        if cap < qty:
            if order.tif == "FOK":
                return
            qty = self._lot(order, cap)
        if qty > 0:
            self._fill(order, qty, price, liquidity, ts)

    def _trigger(self, order: Order) -> None:
        order.triggered = True
        self._update(order.id, order.symbol, order.strategy_id, "triggered", "")

    def _after_data(self, order: Order) -> None:
        """IOC and FOK orders live for one data point after they arrive."""
        if order.status == "active" and order.tif in ("IOC", "FOK") and order.type != "stop":
            why = "IOC remainder" if order.tif == "IOC" else "FOK could not fill completely"
            self._finish(order, "expired", why)

    # -- fills, funding, liquidation ---------------------------------------------------------

    def _fill(self, order: Order, qty: float, price: float, liquidity: str, ts_event: int) -> None:
        if order.reduce_only:  # as on Bybit: never more than the position left, else canceled
            pos = self.position_qty(order.symbol)
            room = abs(pos) if pos * order.side < 0 else 0.0
            if room <= _EPS:
                self._finish(order, "canceled", "reduce-only: no position left to reduce")
                return
            qty = min(qty, room)
        fee = self.fees.fee(qty * price, liquidity)
        self._book(order.id, order.strategy_id, order.symbol, order.side, qty, price, fee,
                   liquidity, ts_event)
        order.filled += qty
        if order.remaining <= _EPS:
            self._finish(order, "filled", "")
        elif order.reduce_only and self.position_qty(order.symbol) == 0.0:
            self._finish(order, "canceled", "reduce-only: position closed")

    def _book(self, order_id, strategy_id, symbol, side, qty, price, fee, liquidity, ts_event) -> None:
        acct = self.account
        realized = acct.apply_fill(symbol, side, qty, price, fee)
        now = self.clock.timestamp_ns()
        self.fill_count += 1
        pos = acct.positions[symbol]
        publish = self.bus.publish
        publish(Fill(order_id, symbol, side, price, qty, fee, liquidity, strategy_id, ts_event, now))
        publish(PositionUpdate(symbol, pos.qty, pos.avg_price, realized, ts_event, now))
        equity, margin = acct.equity_and_margin()
        publish(AccountUpdate(acct.cash, equity, margin, ts_event, now))
        self._liq_price[symbol] = acct.liquidation_price(symbol)
        self._liq_since[symbol] = ts_event

    def _finish(self, order: Order, status: str, reason: str) -> None:
        order.status = status
        if order in self.active:
            self.active.remove(order)
        self._update(order.id, order.symbol, order.strategy_id, status, reason)

    def _update(self, order_id: str, symbol: str, strategy_id: str, status: str, reason: str) -> None:
        now = self.clock.timestamp_ns()
        self.bus.publish(OrderUpdate(order_id, symbol, status, reason, strategy_id, now, now))

    def _liquidate_on_trades(self, tr: Trades, liq: float) -> None:
        pos = self.account.positions[tr.symbol].qty
        breached = tr.price <= liq if pos > 0 else tr.price >= liq
        breached &= tr.ts_event >= self._liq_since.get(tr.symbol, 0)  # not before its last fill
        if breached.any():
            i = int(np.argmax(breached))
            self._liquidate(tr.symbol, float(tr.price[i]), int(tr.ts_event[i]))

    def _liquidate_on_bar(self, bar: Bar, liq: float) -> None:
        pos = self.account.positions[bar.symbol].qty
        if pos > 0 and bar.low <= liq:
            self._liquidate(bar.symbol, min(bar.open, liq), bar.open_time)
        elif pos < 0 and bar.high >= liq:
            self._liquidate(bar.symbol, max(bar.open, liq), bar.open_time)

    def _liquidate(self, symbol: str, price: float, ts_event: int) -> None:
        """Close the whole position at ``price`` (taker) and cancel the symbol's orders."""
        pos = self.account.positions[symbol].qty
        log.warning("%s liquidated: position %g at %g", symbol, pos, price)
        for order in [o for o in self.active if o.symbol == symbol]:
            self._finish(order, "canceled", "liquidation")
        self._liq_seq += 1
        qty = abs(pos)
        fee = self.fees.fee(qty * price, "taker")
        self._book(f"liquidation-{self._liq_seq}", "broker", symbol, -1 if pos > 0 else 1,
                   qty, price, fee, "taker", ts_event)

    def _funding_due(self, at: int) -> None:
        for symbol, pos in self.account.positions.items():
            if pos.qty != 0.0:
                mark = self.account.marks.get(symbol, pos.avg_price)
                self.bus.publish(Funding(symbol, self.funding_rate, mark, at, at))
        self.clock.set_timer(at + self._funding_ns, self._funding_due, "funding")

    def on_funding(self, funding: Funding) -> None:
        self.account.apply_funding(funding.symbol, funding.rate, funding.mark_price)
        self._liq_price[funding.symbol] = self.account.liquidation_price(funding.symbol)
