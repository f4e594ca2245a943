"""Market data in: ``history`` (trade archives, kline files, recordings, data sources,
fetch) and ``live`` (the Bybit websocket, REST and the feed with its health checks).

May import: engine.core, engine.bars, engine.broker, engine.bybit, engine.ledger (recorded bars
as a data source).
"""
