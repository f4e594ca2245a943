"""The host that runs a strategy on the bus and turns its calls into orders, and the
batch predictions released at each bar's close.

May import: engine.core, engine.broker.
"""
