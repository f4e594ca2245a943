"""A feed gap holds its trades (socket and REST alike) and hands them on when it closes: in
time order, stamped when the gap closed, cut at bar boundaries with a ``CatchUp`` before each
later bar's trades, so a session closes each held bar before any later trade is seen."""

from __future__ import annotations

from engine.core.events import CatchUp, FeedStatus, Trades
from engine.feeds.live.decoder import FeedDecoder
from tests.helpers.scripted_bybit import BASE_MS, rest_trade, trade_message

S = 1000  # ms: one bar of 1s


def test_a_closing_gap_hands_on_its_trades_in_time_order_a_bar_at_a_time():
    decoder = FeedDecoder("BTCUSDT", interval="1s")
    assert decoder.decode("ws", 1, trade_message(["a"], [BASE_MS + 10], [100.0]))  # live: at once
    decoder.decode("status", 2, {"status": "disconnected", "detail": "test"})
    decoder.decode("status", 3, {"status": "connected", "detail": "test"})
    # the new connection's stream comes first (bar 3), REST's older trades after it
    assert decoder.decode("ws", 4, trade_message(["e", "f"], [BASE_MS + 3 * S + 5] * 2, [104.0, 105.0])) == []
    venue = [("a", BASE_MS + 10, 100.0), ("b", BASE_MS + 400, 101.0), ("c", BASE_MS + S + 7, 102.0),
             ("d", BASE_MS + 3 * S + 1, 103.0), ("e", BASE_MS + 3 * S + 5, 104.0)]
    newest_first = [rest_trade(i, t, p, k) for k, (i, t, p) in reversed(list(enumerate(venue)))]
    events = decoder.decode("rest_trades", 5, {"list": newest_first, "limit": 1000})

    assert [type(e) for e in events] == [Trades, CatchUp, Trades, CatchUp, Trades, FeedStatus]
    assert all(e.ts_init == 5 for e in events)
    batches = [e for e in events if isinstance(e, Trades)]
    assert [[i.decode() for i in t.trade_id] for t in batches] == [["b"], ["c"], ["d", "e", "f"]]
    assert [int(t.ts_event[0]) // 1_000_000 for t in batches] == [BASE_MS + 400, BASE_MS + S + 7,
                                                                  BASE_MS + 3 * S + 1]
    catch_ups = [e.ts_event for e in events if isinstance(e, CatchUp)]
    assert catch_ups == [int(batches[1].ts_event[0]), int(batches[2].ts_event[0])]
    assert events[-1].status == "backfilled" and decoder.gap_from is None
    after = decoder.decode("ws", 6, trade_message(["g"], [BASE_MS + 3 * S + 9], [106.0]))
    assert [type(e) for e in after] == [Trades]  # the gap closed: trades go on at once
