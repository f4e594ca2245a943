"""Bars: time, tick, volume and value aggregation of trades on the clock, and the kline
CSV file format.

May import: engine.core.
"""
