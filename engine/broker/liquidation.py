"""Where a position's liquidation price is breached: on the first trade through it (not
before the position's last fill), or at a bar that reaches it (filled at the open when the
bar gaps through it). Cross margin liquidates the whole account, not one position."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine.broker.account import Account
from engine.core.events import Bar, Trades


def breach_in_trades(position: float, liq: float, trades: Trades, since_ns: int) -> tuple[float, int] | None:
    """The price and time of the first trade at or beyond ``liq`` against ``position``."""
    breached = trades.price <= liq if position > 0 else trades.price >= liq
    breached &= trades.ts_event >= since_ns
    if not breached.any():
        return None
    i = int(np.argmax(breached))
    return float(trades.price[i]), int(trades.ts_event[i])


def breach_in_bar(position: float, liq: float, bar: Bar) -> tuple[float, int] | None:
    """The liquidation price and time when ``bar`` reaches ``liq`` against ``position``."""
    if position > 0 and bar.low <= liq:
        return min(bar.open, liq), bar.open_time
    if position < 0 and bar.high >= liq:
        return max(bar.open, liq), bar.open_time
    return None


def account_closeout(account: Account, symbol: str, price: float) -> list[tuple[str, float, float]]:
    """``(symbol, signed position, price)`` of every position an account liquidation closes:
    the breaching ``symbol`` at ``price`` first, then every other open one at its mark."""
    closing = [(symbol, account.positions[symbol].qty, price)]
    for other, held in account.positions.items():
        if other != symbol and held.qty != 0.0:
            closing.append((other, held.qty, account.marks.get(other, held.avg_price)))
    return closing


def liquidation_price_now(account: Account, cached: dict[str, float | None], symbol: str,
                          reach: Callable[[bool], float]) -> float | None:
    """``symbol``'s liquidation price as a move against its position must be checked against:
    with one position, ``cached`` (worked out when first asked after its last fill or funding,
    which drop it: nothing else moves it); with several (cross margin: the other marks move
    it) the price now, or None when the account stays clear of it all the way to
    ``reach(long)``, the furthest price the move goes against a long (True) or a short, which
    is asked for only then, so the exact price is worked out only when it may be reached."""
    if len(account.positions) < 2:
        if symbol not in cached:
            cached[symbol] = account.liquidation_price(symbol)
        return cached[symbol]
    pos = account.positions.get(symbol)
    if pos is None or pos.qty == 0.0:
        return None
    if account.clear_of_liquidation(symbol, reach(pos.qty > 0)):
        return None
    return account.liquidation_price(symbol)
