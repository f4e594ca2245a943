"""Runs: the session that wires one run together, backtest replay, live paper trading
and resume.

May import: engine.core, engine.bars, engine.broker, engine.bybit, engine.feeds, engine.strategy,
engine.ledger, engine.analysis, engine.dashboard (live --dashboard serves it in the session).
"""
