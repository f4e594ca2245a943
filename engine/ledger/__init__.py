"""The ledger: the SQLAlchemy schema, the batched writer and its process, the reader,
the recorder that turns bus events into rows, and the packed equity-curve columns.

May import: engine.core, engine.broker, engine.strategy.
"""
