"""Per-symbol metrics of a run, from ledger rows only: each symbol's fills, PnL (realized
minus fees minus funding, plus the open position marked at its last snapshot), fees,
funding, round trips, win rate and exposure. The symbols' PnL sums to the portfolio's
equity change."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from engine.analysis.metrics import round_trips, symbol_rows


def symbol_metrics(fills: pd.DataFrame, funding: pd.DataFrame, snapshots: pd.DataFrame,
                   symbols: list[str]) -> dict[str, dict[str, Any]]:
    """``{symbol: {"fills", "pnl", "fees", "funding", "trades", "win_rate", "exposure"}}``
    from fills (``symbol``, ``qty``, ``price``, ``fee``, ``realized_pnl``, ``position``,
    ``avg_price``), funding (``symbol``, ``payment``) and a summary of each symbol's
    snapshots (indexed by symbol: ``exposure``, the share with a position open, and
    ``last_mark``, the last one's mark price)."""
    out: dict[str, dict[str, Any]] = {}
    # each symbol's rows in their order, found once (a mask per symbol compared every fill's
    # symbol), taken one symbol at a time (a groupby's groups are a copy of every fill at once)
    rows_of = dict(symbol_rows(fills["symbol"])) if len(fills) else {}
    payments = funding.groupby("symbol", sort=False)["payment"] if len(funding) else None
    paid_by = dict(tuple(payments)) if payments is not None else {}
    for symbol in symbols:
        own = fills.take(rows_of[symbol]) if symbol in rows_of else fills.iloc[:0]
        paid = float(paid_by[symbol].sum()) if symbol in paid_by else 0.0
        snap = snapshots.loc[symbol] if symbol in snapshots.index else None
        fees = float(own["fee"].sum())
        pnl = float(own["realized_pnl"].sum()) - fees - paid
        if len(own) and own["position"].iloc[-1] != 0.0 and snap is not None:
            last = own.iloc[-1]
            pnl += float(last["position"]) * (float(snap["last_mark"]) - float(last["avg_price"]))
        trips = round_trips(own) if len(own) else np.empty(0)
        out[symbol] = {
            "fills": int(len(own)),
            "pnl": pnl,
            "fees": fees,
            "funding": paid,
            "trades": int(len(trips)),
            "win_rate": float((trips > 0).mean()) if len(trips) else None,
            "exposure": float(snap["exposure"]) if snap is not None else 0.0,
        }
    return out


def by_symbol_for_run(reader, run_id: int) -> dict[str, dict[str, Any]]:
    """:func:`symbol_metrics` of a run (and the runs it resumed) read from its ledger."""
    ids = reader.chain(run_id)
    symbols = reader.run(ids[-1])["symbol"].split(",")
    fills = reader.fill_numbers(ids)
    funding = reader.funding(ids, "symbol, payment")
    snapshots = reader.exposure(ids)
    return symbol_metrics(fills, funding, snapshots, symbols)
