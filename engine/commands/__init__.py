"""One module per ``papertape`` verb: its arguments and what it runs. A verb imports
only what it uses, when it runs.

May import: engine.core, engine.bars, engine.broker, engine.bybit, engine.feeds, engine.strategy,
engine.ledger, engine.analysis, engine.dashboard, engine.run.
"""
