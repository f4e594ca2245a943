"""Each symbol's contribution to a run's PnL, from ledger rows only: realized PnL minus fees
minus funding, plus the position left open marked at the symbol's last close. Over every
symbol it adds up to the portfolio's equity change (up to the last bars' marks)."""

from __future__ import annotations

from typing import Any

import pandas as pd


def pnl_by_symbol(fills: pd.DataFrame, funding: pd.DataFrame, last_close: dict[str, float],
                  symbols: list[str]) -> list[dict[str, Any]]:
    """One row per symbol: ``fills``, ``realized``, ``fees``, ``funding``, ``open`` (the open
    position's PnL at ``last_close``) and ``pnl``, from fills (``symbol``, ``fee``,
    ``realized_pnl``, ``position``, ``avg_price``) and funding (``symbol``, ``payment``)."""
    rows = []
    for symbol in symbols:
        own = fills[fills["symbol"] == symbol] if len(fills) else fills
        paid = float(funding.loc[funding["symbol"] == symbol, "payment"].sum()) if len(funding) else 0.0
        fees = float(own["fee"].sum()) if len(own) else 0.0
        realized = float(own["realized_pnl"].sum()) if len(own) else 0.0
        held = 0.0
        if len(own) and own["position"].iloc[-1] != 0.0 and symbol in last_close:
            last = own.iloc[-1]
            held = float(last["position"]) * (last_close[symbol] - float(last["avg_price"]))
        rows.append({"symbol": symbol, "fills": int(len(own)), "realized": realized, "fees": fees,
                     "funding": paid, "open": held, "pnl": realized - fees - paid + held})
    return rows
