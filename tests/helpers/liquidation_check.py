"""The account's quick liquidation check (bands, then the exact folds) against the folds over
every position written out plainly, for the random-account tests of tests/broker."""

from __future__ import annotations

from engine.broker.account import Account


def exact_clear(account: Account, symbol: str, price: float) -> bool:
    """The liquidation check as the folds over every position answer it, left to right as the
    account folds them (coins held: their value in equity, nothing in maintenance)."""
    pos = account.positions[symbol]
    move = price - account.marks.get(symbol, pos.avg_price)
    equity, notional = account.cash, 0.0
    for name, held in account.positions.items():
        mark = account.marks.get(name, held.avg_price)
        if account.is_spot(name):
            equity += held.qty * mark
        else:
            equity += account.unrealized(name)
            notional += abs(held.qty) * mark
    equity += pos.qty * move
    if not account.is_spot(symbol):
        notional += abs(pos.qty) * move
    maintenance = account.maintenance_margin * notional
    return equity - maintenance > 1e-9 * (abs(equity) + abs(maintenance)) + 1e-9


def check_every_position(account: Account, price: float) -> tuple[int, int]:
    """Ask the quick check of every open position at prices far off (half and twice ``price``)
    and just either side of its liquidation price; returns (asked, asked near a liquidation)."""
    asked = near = 0
    for name, pos in account.positions.items():
        if pos.qty == 0.0:
            continue
        liq = account.liquidation_price(name)
        for at in (price * 0.5, price * 2.0, *(() if liq is None else (liq * 0.999, liq * 1.001))):
            asked += 1
            near += liq is not None
            assert account.clear_of_liquidation(name, at) == exact_clear(account, name, at), (name, at)
    return asked, near
