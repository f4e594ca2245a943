"""Analysis of recorded runs: metrics from ledger rows only, text and HTML reports.

May import: engine.core, engine.bars, engine.ledger.
"""
