"""The host that runs a strategy on the bus and turns its calls into orders (and hands it
its higher timeframes' bars), and the batch predictions released at each bar's close.

May import: engine.core, engine.bars, engine.broker.
"""
