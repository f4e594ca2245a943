"""The kernel every stage shares: events, the clock and its timers, the bus, typed
config and plugin loading.

May import: nothing else in engine.
"""
