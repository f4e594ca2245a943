"""Bybit v5 protocol facts in one home: topics and message parsing, message shapes,
kline intervals and the instruments-info rendering, shared by the live client and the
loopback exchange.

May import: engine.core, engine.broker.
"""
