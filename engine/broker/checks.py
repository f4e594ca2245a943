"""The venue's checks of an arriving order: its type and fields, the instrument's tick,
lot, minimum quantity and notional, reduce-only, and whether the account can pay for it.
An order that fails is rejected with the reason; nothing is rounded or resized."""

from __future__ import annotations

from engine.broker.account import Account
from engine.broker.instruments import Instrument, InstrumentBook, UnknownInstrument
from engine.broker.orders import ORDER_TYPES, QTY_EPS, TIME_IN_FORCE, Order


def position_qty(account: Account, symbol: str) -> float:
    """The signed position in ``symbol`` (0 when flat)."""
    pos = account.positions.get(symbol)
    return pos.qty if pos is not None else 0.0


def check_order(order: Order, instruments: InstrumentBook, account: Account, active: list[Order],
                taker_fee: float) -> str | None:
    """Why the venue refuses ``order`` now, or None when it is accepted; ``active`` are the
    orders working at the venue, ``taker_fee`` the fee a taking fill pays."""
    if order.side not in (1, -1):
        return f"side must be +1 or -1, got {order.side!r}"
    if order.type not in ORDER_TYPES:
        return f"order type must be one of {', '.join(ORDER_TYPES)}, got {order.type!r}"
    if order.tif not in TIME_IN_FORCE:
        return f"time in force must be one of {', '.join(TIME_IN_FORCE)}, got {order.tif!r}"
    try:
        inst = instruments.get(account.category, order.symbol)
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
    last = account.marks.get(order.symbol)
    if last is None:
        return f"no market price yet for {order.symbol}"
    ref = {"limit": order.price, "stop": order.trigger}.get(order.type) or last
    reason = inst.check_notional(order.qty, ref)
    if reason:
        return reason
    if order.type == "limit" and order.tif == "PostOnly" and (order.price - last) * order.side >= 0:
        return f"post-only order would take liquidity (limit {order.price:g}, last {last:g})"
    if order.reduce_only:
        return _check_reduce_only(order, account, active)
    return _check_affordable(order, inst, ref, account, active, taker_fee)

def _check_reduce_only(order: Order, account: Account, active: list[Order]) -> str | None:
    pos = position_qty(account, order.symbol)
    if pos == 0.0 or (pos > 0) == (order.side > 0):
        return f"reduce-only {'buy' if order.side > 0 else 'sell'} would not reduce position {pos:g}"
    committed = sum(o.remaining for o in active
                    if o.symbol == order.symbol and o.reduce_only and o.side == order.side)
    if order.qty + committed > abs(pos) + QTY_EPS:
        return f"reduce-only qty {order.qty:g} exceeds the position {abs(pos):g} left to reduce"
    return None

def _check_affordable(order: Order, inst: Instrument, ref: float, account: Account, active: list[Order],
                      taker: float) -> str | None:
    acct = account
    same_side = [o for o in active if o.symbol == order.symbol and o.side == order.side]
    if acct.is_spot(order.symbol):  # paid from the wallet's quote cash (a linear one's too)
        if order.side < 0:
            held = position_qty(account, order.symbol)
            committed = sum(o.remaining for o in same_side)
            if order.qty + committed > held + QTY_EPS:
                return (f"insufficient {inst.base or 'base'} balance: sell {order.qty:g} "
                        f"needs {order.qty + committed:g}, holding {held:g}")
            return None
        committed = sum(o.remaining * (o.price or ref) for o in same_side)
        need = (order.qty * ref + committed) * (1.0 + taker)
        if need > acct.cash + 1e-9:
            return f"insufficient {inst.quote or 'quote'} balance: needs {need:.2f}, has {acct.cash:.2f}"
        return None
    pos = position_qty(account, order.symbol)
    pending = sum(o.side * o.remaining for o in active if o.symbol == order.symbol)
    projected = pos + pending + order.side * order.qty
    if abs(projected) <= abs(pos + pending) + QTY_EPS:
        return None  # reduces exposure: always allowed
    equity, margin = acct.equity_and_margin()  # one fold of every position's terms, not two
    others = margin - abs(pos) * acct.marks.get(order.symbol, ref) / acct.leverage
    need = abs(projected) * ref / acct.leverage + others + order.qty * ref * taker
    if need > equity + 1e-9:
        return (f"insufficient margin: position {projected:g} at {ref:g} needs {need:.2f}, "
                f"equity is {equity:.2f} (leverage {acct.leverage:g})")
    return None
