"""Bars: time, tick, volume and value aggregation of trades on the clock, higher timeframes
folded from a run's bars, and the kline CSV file format.

May import: engine.core.
"""
