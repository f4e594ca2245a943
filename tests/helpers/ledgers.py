"""Ledgers for the dashboard's tests, made by real backtests of the bundled sample."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from engine.core.config import load_config
from engine.run.backtest import run_backtest

SECOND = "ETHUSDT"
SAMPLE_DAY = Path(__file__).resolve().parents[2] / "engine" / "data" / "sample" / "BTCUSDT2025-06-01.csv.gz"


def sample_ledger(path: Path, *fasts: int) -> Path:
    """One sma_cross backtest of the sample's first day per ``fast`` average."""
    for fast in fasts:
        run_backtest(load_config(None, [f"ledger.path={path}", "run.end=2025-06-02",
                                        f"strategy.params.fast={fast}"]), progress=False)
    return path


def as_two_symbols(path: Path, run_id: int) -> None:
    """Make run ``run_id`` a portfolio of two symbols: its bars and fills copied as ``SECOND``'s
    at half the price (the reader, not the engine, is under test here)."""
    with sqlite3.connect(path) as db:
        symbol = db.execute("SELECT symbol FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
        db.execute("UPDATE runs SET symbol = ? WHERE id = ?", (f"{symbol},{SECOND}", run_id))
        columns = [r[1] for r in db.execute("PRAGMA table_info(equity)") if r[1] != "id"]
        prices = ("open", "high", "low", "close")
        picked = ", ".join(f"'{SECOND}'" if c == "symbol" else f"{c} / 2" if c in prices else c
                           for c in columns)
        db.execute(f"INSERT INTO equity ({', '.join(columns)}) SELECT {picked} FROM equity "
                   "WHERE run_id = ? ORDER BY id", (run_id,))
        columns = [r[1] for r in db.execute("PRAGMA table_info(fills)") if r[1] != "id"]
        picked = ", ".join(f"'{SECOND}'" if c == "symbol" else "price / 2" if c == "price"
                           else "client_order_id || '-eth'" if c == "client_order_id" else c for c in columns)
        db.execute(f"INSERT INTO fills ({', '.join(columns)}) SELECT {picked} FROM fills "
                   "WHERE run_id = ? AND rowid % 3 = 0 ORDER BY id", (run_id,))
