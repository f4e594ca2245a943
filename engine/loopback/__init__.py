"""A Bybit-compatible exchange on loopback, replaying trade archives as if they were live.

Demo: serve the bundled sample at 60x and point a live session (or any Bybit client) at it::

    papertape serve-exchange --data 'engine/data/sample/*.csv.gz' --port 8765 --speed 60
    # websockets: ws://127.0.0.1:8765/v5/public/linear   (publicTrade.BTCUSDT, kline.1.BTCUSDT)
    # REST:       http://127.0.0.1:8765/v5/market/kline?category=linear&symbol=BTCUSDT&interval=1

Trades are re-stamped into the present (``T = wall_start_ms + (T_hist - hist_start) / speed``),
so a client's wall clock agrees with them. Add ``--faults drop@30s,stall@60s+5s`` (see
``--help``) or ``POST /_control/fault`` to watch a client survive disconnects, stalls, missed
pongs, garbage frames, duplicates, out-of-order trades and REST bans; ``GET /_control/state``
shows what was served and fired. In tests, ``async with run_exchange(paths, speed=600) as
server:`` (:mod:`engine.loopback.server`) runs one in the test's event loop (``server.url``,
``server.ws_url("linear")``).

May import: engine.core, engine.bars, engine.broker, engine.bybit, engine.feeds.
Nothing in the runtime imports it; ``serve-exchange`` registers through ``papertape.commands``.
"""
