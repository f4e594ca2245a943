"""The simulated Bybit venue, the same in backtests and paper trading.

Per data point the order is fixed (DESIGN.md): the broker matches resting orders against the new
trades or bar before strategies see them (it subscribes first); orders that strategies send are
settled after that, at ``clock + latency``, by a timer; the replay cuts trade batches at that
timer, so an order can only fill on trades that come after it.

Matching:

- market (and triggered stop) orders fill at the next trades' prices plus slippage, as taker; with
  bars only, at the open of the bar the order arrives in (``fill_at="next"``), or at the signal
  bar's close when ``fill_at="close"`` is asked for explicitly;
- limit orders that are marketable on arrival take at trade prices up to the limit; resting ones
  fill at the limit when a later trade goes through it (maker), on a touch with the fill model's
  probability; IOC keeps only what fills on its first data point, FOK all or nothing, PostOnly is
  rejected when it would take;
- stop orders trigger on trade price (bar high/low) and fill at the triggering price, so a
  gap fills at the first price beyond the trigger;
- the fill model may cap each fill at a share of traded volume, giving partial fills.

Orders are checked on arrival against instrument rules, reduce-only, and what the account can pay
for, and rejected with a reason otherwise; nothing is rounded or resized.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter

import numpy as np

from engine.broker.account import Account
from engine.broker.checks import check_order, position_qty
from engine.broker.costs import FeeModel, FillModel, LatencyModel, MarketFees, SlippageModel
from engine.broker.funding import FundingSchedule
from engine.broker.instruments import InstrumentBook, UnknownInstrument
from engine.broker.liquidation import account_closeout, breach_in_bar, breach_in_trades, liquidation_price_now
from engine.broker.orders import QTY_EPS, Order, OrderBook, cap_at_limit
from engine.core.bus import Bus
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

class SimulatedBroker:
    """Matches orders against replayed or live data and keeps the account (see Account)."""

    def __init__(self, bus: Bus, account: Account, instruments: InstrumentBook, *,
                 fees: FeeModel | MarketFees, slippage: SlippageModel, latency: LatencyModel,
                 fill_model: FillModel, match_on: str = "trades", fill_at: str = "next",
                 funding_rate: float = 0.0, funding_interval_hours: float = 8.0) -> None:
        if match_on not in ("trades", "bars") or fill_at not in ("next", "close"):
            raise ValueError("match_on must be trades|bars and fill_at next|close")
        self.bus, self.clock, self.account = bus, bus.clock, account
        self.instruments = instruments
        self.fees, self.slippage, self.latency, self.fill_model = fees, slippage, latency, fill_model
        self._fees = fees.of if isinstance(fees, MarketFees) else lambda _symbol: fees  # by market
        self.match_on, self.fill_at = match_on, fill_at
        self.orders = OrderBook()
        self.active: list[Order] = []
        self._working: dict[str, list[Order]] = {}  # ``active`` by symbol, in its order: what a bar matches
        self.pending: list[Order] = []
        self.rejections: Counter[str] = Counter()  # by reason with its numbers as N
        self.first_rejections: dict[str, str] = {}  # the first reason of each, numbers and all
        self.fill_count = 0
        self._liq_price: dict[str, float | None] = {}
        self._liq_since: dict[str, int] = {}  # the last fill's time: older trades cannot liquidate
        self._liq_seq = 0
        self._last_bar: dict[str, Bar] = {}
        self.funding = FundingSchedule(bus, account, funding_rate, funding_interval_hours)
        bus.subscribe(OrderRequest, self.on_order_request)
        bus.subscribe(CancelRequest, self.on_cancel_request)
        bus.subscribe(Trades, self.on_trades)
        bus.subscribe(Bar, self.on_bar)
        bus.subscribe(Funding, self.on_funding)

    # -- what strategies and the ledger may ask ------------------------------------------
    def position_qty(self, symbol: str) -> float:
        return position_qty(self.account, symbol)

    def account_restored(self) -> None:
        """Derive again what the broker keeps from the account (each position's liquidation
        price) after the account was restored from a ledger."""
        self.account.restored()
        for symbol in self.account.positions:
            self._liq_price[symbol] = self.account.liquidation_price(symbol)

    def open_orders(self, strategy_id: str | None = None) -> list[Order]:
        """Orders on their way to the venue or working there, oldest first."""
        return [o for o in (*self.pending, *self.active)
                if strategy_id is None or o.strategy_id == strategy_id]

    def activate(self, order: Order) -> None:
        """Put ``order`` among the orders working at the venue (also a restored one)."""
        self.active.append(order)
        self._working.setdefault(order.symbol, []).append(order)

    def start_funding(self, from_ns: int) -> None:
        """Settle funding every interval (00:00, 08:00, 16:00 UTC by default) from now on."""
        self.funding.start(from_ns)

    # -- requests -------------------------------------------------------------------------
    def on_order_request(self, req: OrderRequest) -> None:
        if req.client_order_id in self.orders:
            self._update(req.client_order_id, req.symbol, req.strategy_id, "rejected",
                         f"duplicate client order id {req.client_order_id!r}")
            return
        order = Order(req.client_order_id, req.strategy_id, req.symbol, req.side, req.qty,
                      req.order_type, req.price, req.trigger_price, req.time_in_force,
                      req.reduce_only, req.ts_init)
        self.orders.add(order)
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
            self._update(req.client_order_id, req.symbol, req.strategy_id, "cancel_rejected",
                         f"order is {self.orders.status(req.client_order_id)}, not open")
            return
        self._finish(order, "canceled", "canceled by strategy")

    def _arrive(self, order: Order) -> None:
        self.pending.remove(order)
        order.arrival = self.clock.timestamp_ns()
        fees = self._fees(order.symbol)
        reason = check_order(order, self.instruments, self.account, self.active, fees.taker)
        if reason is not None:
            kind = re.sub(r"-?[\d.]+(e[-+]?\d+)?", "N", reason)
            self.rejections[kind] += 1
            self.first_rejections.setdefault(kind, reason)
            log.info("order %s rejected: %s", order.id, reason)
            self._finish(order, "rejected", reason)
            return
        order.status = "active"
        self._update(order.id, order.symbol, order.strategy_id, "accepted", "")
        if order.type == "limit":  # IOC and FOK never rest: they only ever take
            last = self.account.marks.get(order.symbol)
            order.marketable = order.tif in ("IOC", "FOK") or (
                last is not None and (order.price - last) * order.side >= 0)
        self.activate(order)
        if self.match_on == "bars" and self.fill_at == "close" and order.type == "market":
            bar = self._last_bar.get(order.symbol)
            if bar is not None:
                price = self.slippage.price(order.symbol, bar.close, order.side, order.qty)
                self._fill(order, order.qty, price, "taker", order.arrival)

    # -- market data ----------------------------------------------------------------------
    def on_trades(self, tr: Trades) -> None:
        n = len(tr.price)
        if n == 0:
            return
        symbol = tr.symbol
        self.account.set_mark(symbol, float(tr.price[-1]))
        if self.match_on == "trades" and self._working.get(symbol):
            self._match_trades(tr)
        liq = liquidation_price_now(self.account, self._liq_price, symbol,
                                    lambda long: float(tr.price.min() if long else tr.price.max()))
        if liq is not None:
            since = self._liq_since.get(symbol, 0)
            hit = breach_in_trades(self.account.positions[symbol].qty, liq, tr, since)
            if hit is not None:
                self._liquidate(symbol, *hit)

    def on_bar(self, bar: Bar) -> None:
        symbol = bar.symbol
        self.slippage.observe_bar(symbol, bar.close, bar.volume)
        self._last_bar[symbol] = bar
        if self.match_on != "bars":
            return  # trades mark and match; a bar closing after its delay must not re-mark
        if self._working.get(symbol):
            self._match_bar(bar)
        liq = liquidation_price_now(self.account, self._liq_price, symbol,
                                    lambda long: bar.low if long else bar.high)
        if liq is not None:
            hit = breach_in_bar(self.account.positions[symbol].qty, liq, bar)
            if hit is not None:
                self._liquidate(symbol, *hit)
        self.account.set_mark(symbol, bar.close)

    def _match_trades(self, tr: Trades) -> None:
        all_price, all_size, all_ts = tr.price, tr.size, tr.ts_event
        for order in tuple(self._working[tr.symbol]):
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
            taken = self.slippage.price(order.symbol, float(price[0]), order.side, qty)
            fill_price = cap_at_limit(order, taken)
            self._fill(order, qty, fill_price, "taker", int(ts[0]))
            return
        avail = np.minimum(np.cumsum(size * self.fill_model.max_participation), qty)
        take = np.diff(avail, prepend=0.0)
        used = take > 0
        if not used.any():
            return
        got = float(avail[-1])
        if order.tif == "FOK" and got < qty - QTY_EPS:
            return
        vwap = float(np.dot(price[used], take[used]) / got)
        fill_price = cap_at_limit(order, self.slippage.price(order.symbol, vwap, order.side, got))
        lot = self._lot(order, got)
        if lot > 0:  # less than one lot available: no fill yet
            self._fill(order, lot, fill_price, "taker", int(ts[used][-1]))

    def _rest_fill(self, order: Order, limit: float, size: np.ndarray, ts: np.ndarray) -> None:
        """Fill a resting limit order at its price against trades that went through it."""
        qty = order.remaining
        if not self.fill_model.capped:
            self._fill(order, qty, limit, "maker", int(ts[0]))
            return
        avail = float(min(size.sum() * self.fill_model.max_participation, qty))
        if order.tif == "FOK" and avail < qty - QTY_EPS:
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
        if qty >= order.remaining - QTY_EPS:
            return order.remaining
        return math.floor(qty / step + 1e-9) * step

    def _match_bar(self, bar: Bar) -> None:
        for order in tuple(self._working[bar.symbol]):
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
                taken = self.slippage.price(order.symbol, price, order.side, order.remaining)
                self._bar_fill(order, taken, cap, "taker", when)
            elif order.type == "market" or order.triggered:  # a stop's remainder is a market order
                price = self.slippage.price(order.symbol, bar.open, order.side, order.remaining)
                self._bar_fill(order, price, cap, "taker", when)
            else:
                limit = order.price
                if order.marketable and (bar.open - limit) * order.side <= 0:
                    price = cap_at_limit(
                        order, self.slippage.price(order.symbol, bar.open, order.side, order.remaining))
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
            if room <= QTY_EPS:
                self._finish(order, "canceled", "reduce-only: no position left to reduce")
                return
            qty = min(qty, room)
        fee = self._fees(order.symbol).fee(qty * price, liquidity)
        self._book(order.id, order.strategy_id, order.symbol, order.side, qty, price, fee,
                   liquidity, ts_event)
        order.filled += qty
        if order.remaining <= QTY_EPS:
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
        self._liq_price.pop(symbol, None)  # worked out again when a move is checked against it
        self._liq_since[symbol] = ts_event

    def _finish(self, order: Order, status: str, reason: str) -> None:
        order.status = status
        if order in self.active:
            self.active.remove(order)
            self._working[order.symbol].remove(order)
        self.orders.retire(order)
        self._update(order.id, order.symbol, order.strategy_id, status, reason)

    def _update(self, order_id: str, symbol: str, strategy_id: str, status: str, reason: str) -> None:
        now = self.clock.timestamp_ns()
        self.bus.publish(OrderUpdate(order_id, symbol, status, reason, strategy_id, now, now))

    def _liquidate(self, symbol: str, price: float, ts_event: int) -> None:
        """The account's equity fell to its maintenance margin through ``symbol`` at ``price``:
        close what :func:`account_closeout` lists (taker) and cancel those symbols' orders."""
        for sym, pos, at in account_closeout(self.account, symbol, price):
            log.warning("%s liquidated: position %g at %g", sym, pos, at)
            for order in tuple(self._working.get(sym, ())):
                self._finish(order, "canceled", "liquidation")
            self._liq_seq += 1
            self._book(f"liquidation-{self._liq_seq}", "broker", sym, -1 if pos > 0 else 1, abs(pos), at,
                       self._fees(sym).fee(abs(pos) * at, "taker"), "taker", ts_event)

    def on_funding(self, funding: Funding) -> None:
        self.account.apply_funding(funding.symbol, funding.rate, funding.mark_price)
        self._liq_price.pop(funding.symbol, None)
