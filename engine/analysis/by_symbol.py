"""Per-symbol metrics of a run, from ledger rows only: each symbol's fills, PnL (realized
minus fees minus funding, plus the open position marked at its last snapshot), fees,
funding, round trips, win rate and exposure. The symbols' PnL sums to the portfolio's
equity change."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from engine.analysis.fill_fold import FillFold, fold_fills
from engine.ledger.reader import frame_fill_blocks


def symbol_metrics(fills: pd.DataFrame, funding: pd.DataFrame, snapshots: pd.DataFrame,
                   symbols: list[str]) -> dict[str, dict[str, Any]]:
    """``{symbol: {"fills", "pnl", "fees", "funding", "trades", "win_rate", "exposure"}}``
    from fills (``symbol``, ``qty``, ``price``, ``fee``, ``realized_pnl``, ``position``,
    ``avg_price``), funding (``symbol``, ``payment``) and a summary of each symbol's
    snapshots (indexed by symbol: ``exposure``, the share with a position open, and
    ``last_mark``, the last one's mark price)."""
    return folded_symbol_metrics(fold_fills(*frame_fill_blocks(fills)), funding, snapshots, symbols)


def folded_symbol_metrics(fills: FillFold, funding: pd.DataFrame, snapshots: pd.DataFrame,
                          symbols: list[str]) -> dict[str, dict[str, Any]]:
    """:func:`symbol_metrics` of the fills folded (:func:`~engine.analysis.fill_fold.fold_fills`)."""
    out: dict[str, dict[str, Any]] = {}
    code_of = {symbol: k for k, symbol in enumerate(fills.symbols) if fills.counts[k]}
    payments = funding.groupby("symbol", sort=False)["payment"] if len(funding) else None
    paid_by = dict(tuple(payments)) if payments is not None else {}
    for symbol in symbols:
        k = code_of.get(symbol)
        paid = float(paid_by[symbol].sum()) if symbol in paid_by else 0.0
        snap = snapshots.loc[symbol] if symbol in snapshots.index else None
        fees = float(fills.own_fees[k].total()) if k is not None else 0.0
        pnl = (float(fills.own_realized[k].total()) if k is not None else 0.0) - fees - paid
        last = fills.last[k] if k is not None else None
        if last is not None and last[0] != 0.0 and snap is not None:
            pnl += last[0] * (float(snap["last_mark"]) - last[1])
        trips = fills.trips[k].result() if k is not None else np.empty(0)
        out[symbol] = {
            "fills": fills.counts[k] if k is not None else 0,
            "pnl": pnl,
            "fees": fees,
            "funding": paid,
            "trades": int(len(trips)),
            "win_rate": float((trips > 0).mean()) if len(trips) else None,
            "exposure": float(snap["exposure"]) if snap is not None else 0.0,
        }
    return out


def by_symbol_for_run(reader, run_id: int) -> dict[str, dict[str, Any]]:
    """:func:`symbol_metrics` of a run (and the runs it resumed) read from its ledger, its
    fills folded a block at a time."""
    ids = reader.chain(run_id)
    symbols = reader.run(ids[-1])["symbol"].split(",")
    fills = fold_fills(*reader.fill_blocks(ids))
    return folded_symbol_metrics(fills, reader.funding(ids, "symbol, payment"), reader.exposure(ids), symbols)
