"""The Bybit websocket client and the live feed against a tiny Bybit-like server started in the
test (``websockets.asyncio.server`` on 127.0.0.1): heartbeat, every pong shape, missed pongs,
backoff, resubscription, refused subscriptions, malformed frames, kline ``confirm`` and
trade de-duplication across reconnects (with a REST backfill served by the same server)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable

import pytest

from engine.bybit.parse import control
from engine.core.clock import NS_PER_MS
from engine.core.events import Bar, FeedStatus, Trades
from engine.feeds.live.feed import FeedDecoder, LiveFeed
from engine.feeds.live.rest import BybitRest
from engine.feeds.live.websocket import Backoff, BybitWebsocket
from tests.helpers.scripted_bybit import (
    BASE_MS,
    PONGS,
    Conn,
    FakeBybit,
    linear_ack,
    rest_trade,
    trade_message,
)

FAST = Backoff(initial=0.05, factor=2.0, cap=0.2, jitter=0.0)

class Client:
    """A :class:`BybitWebsocket` under test with everything it reports collected."""

    def __init__(self, url: str, topics: list[str], **options) -> None:
        self.data: list[dict] = []
        self.states: list[tuple[str, str]] = []
        options.setdefault("backoff", FAST)
        self.ws = BybitWebsocket(url, topics, self._on_data, self._on_state, **options)

    def _on_data(self, message: dict, text: str, received: int) -> None:
        self.data.append(message)

    def _on_state(self, state: str, detail: str, received: int) -> None:
        self.states.append((state, detail))


async def run_until(runner, stop, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Run ``runner()`` until ``predicate()`` holds, then ``stop()`` it (fail on timeout)."""
    task = asyncio.create_task(runner())
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                if task.done():
                    task.result()
                    raise AssertionError("the client stopped on its own")
                await asyncio.sleep(0.01)
    finally:
        await stop()
        await asyncio.wait_for(task, 5)


# -- heartbeat and pongs ---------------------------------------------------------------------

async def test_heartbeat_sends_a_json_ping_every_interval():
    interval = 0.2
    async with FakeBybit() as server:
        client = Client(server.url, ["publicTrade.BTCUSDT"], ping_interval=interval, pong_timeout=0.15)
        await run_until(client.ws.run, client.ws.stop,
                        lambda: server.conns and len(server.conns[0].pings()) >= 7)
    conn = server.conns[0]
    pings = conn.pings()
    assert all(set(m) <= {"op", "req_id"} for _, m in pings)  # the application-level JSON ping
    subscribed_at = next(t for t, m in conn.received if isinstance(m, dict) and m.get("op") == "subscribe")
    assert pings[0][0] - subscribed_at < interval / 2  # the first ping goes out at once
    gaps = [b[0] - a[0] for a, b in zip(pings, pings[1:], strict=False)]
    assert min(gaps) > interval * 0.75, gaps
    assert sorted(gaps)[len(gaps) // 2] < interval * 1.5, gaps
    assert len(server.conns) == 1 and client.ws.connects == 1  # answered pings: no reconnect


@pytest.mark.parametrize("shape", sorted(PONGS))
async def test_every_pong_shape_keeps_the_connection_alive(shape):
    assert control(PONGS[shape]({"op": "ping", "req_id": "7"})).kind == "pong"
    async with FakeBybit(pong=PONGS[shape]) as server:
        client = Client(server.url, ["publicTrade.BTCUSDT"], ping_interval=0.1, pong_timeout=0.5)
        await run_until(client.ws.run, client.ws.stop,
                        lambda: server.conns and len(server.conns[0].pings()) >= 8)
    assert len(server.conns) == 1 and client.ws.connects == 1, client.states
    assert "disconnected" not in [s for s, _ in client.states]
    assert client.data == []  # a pong is never data


async def test_a_missed_pong_is_a_dead_connection_even_while_data_flows():
    async def stream(server: FakeBybit, conn: Conn) -> None:
        for k in range(1000):
            await conn.ws.send(trade_message([f"t{k}"], [BASE_MS + k], [100.0]))
            await asyncio.sleep(0.01)

    pong_timeout = 0.15
    async with FakeBybit(pong=None, script=stream) as server:
        client = Client(server.url, ["publicTrade.BTCUSDT"], ping_interval=0.1, pong_timeout=pong_timeout)
        await run_until(client.ws.run, client.ws.stop,
                        lambda: len(server.conns) >= 2 and server.conns[1].subscribes)
        await server.conns[0].ws.wait_closed()
    first = server.conns[0]
    assert first.ws.close_code == 4001 and first.ws.close_reason == "no pong"  # the client hung up
    first_ping = first.pings()[0][0]
    assert server.conns[1].opened - first_ping >= pong_timeout * 0.9  # not before the timeout
    assert len(client.data) > 0  # data was flowing all along
    states = [s for s, _ in client.states]
    assert states[:3] == ["connected", "disconnected", "connected"], client.states
    assert server.conns[1].topics == ["publicTrade.BTCUSDT"]


async def test_a_clean_close_by_the_server_is_followed_by_a_reconnect():
    """Bybit may close with a close frame (1000/1001, e.g. maintenance): that is a drop too."""
    async def going_away(server: FakeBybit, conn: Conn) -> None:
        if len(server.conns) == 1:
            await conn.ws.close(1001, "going away")

    async with FakeBybit(script=going_away) as server:
        client = Client(server.url, ["publicTrade.BTCUSDT"], ping_interval=5, pong_timeout=5)
        await run_until(client.ws.run, client.ws.stop,
                        lambda: len(server.conns) >= 2 and server.conns[1].subscribes)
    assert [s for s, _ in client.states][:3] == ["connected", "disconnected", "connected"]
    assert "1001" in client.states[1][1]


# -- backoff ---------------------------------------------------------------------------------

def test_backoff_grows_exponentially_up_to_the_cap_with_bounded_jitter():
    plain = Backoff(initial=0.5, factor=2.0, cap=4.0, jitter=0.0)
    delays = plain.delays(random.Random(1))
    assert [next(delays) for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    jittered = Backoff(initial=0.5, factor=2.0, cap=4.0, jitter=0.2)
    delays = jittered.delays(random.Random(7))
    got = [next(delays) for _ in range(300)]
    base = [min(4.0, 0.5 * 2.0**n) for n in range(300)]
    assert all(b * 0.8 <= d <= b * 1.2 for d, b in zip(got, base, strict=True))
    capped = [d / 4.0 for d in got[3:]]
    assert min(capped) < 0.85 and max(capped) > 1.15  # the jitter spans both sides
    assert len(set(got)) == len(got)  # and really varies


async def test_reconnects_follow_the_backoff_and_it_resets_after_a_connection():
    backoff = Backoff(initial=0.1, factor=3.0, cap=0.9, jitter=0.0)

    async def drop_once(server: FakeBybit, conn: Conn) -> None:
        if len(server.conns) == 1:
            conn.ws.transport.abort()

    async with FakeBybit(refuse=4, script=drop_once) as server:
        client = Client(server.url, ["publicTrade.BTCUSDT"], ping_interval=5, pong_timeout=5, backoff=backoff)
        await run_until(client.ws.run, client.ws.stop,
                        lambda: len(server.conns) >= 2 and server.conns[1].subscribes)
    attempts = server.attempts
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    expected = [0.1, 0.3, 0.9, 0.9]  # four refused handshakes, each followed by a longer wait
    for gap, want in zip(gaps[:4], expected, strict=True):
        assert want * 0.9 <= gap < want + 0.5, (gaps, expected)
    assert gaps[4] < 0.5, gaps  # after a good connection the next wait starts again at 0.1
    assert [s for s, _ in client.states].count("disconnected") == 5


# -- subscriptions --------------------------------------------------------------------------

async def test_every_topic_is_subscribed_again_after_a_reconnect():
    topics = ["publicTrade.BTCUSDT", "publicTrade.ETHUSDT"] + [
        f"kline.{code}.BTCUSDT" for code in ("1", "3", "5", "15", "30", "60", "120", "240", "360", "720")]

    async def drop_when_subscribed(server: FakeBybit, conn: Conn) -> None:
        async with asyncio.timeout(5):
            while len(conn.subscribes) < 2:
                await asyncio.sleep(0.01)
        if len(server.conns) == 1:
            conn.ws.transport.abort()

    async with FakeBybit(script=drop_when_subscribed) as server:
        client = Client(server.url, topics, ping_interval=5, pong_timeout=5, args_per_subscribe=10)
        await run_until(client.ws.run, client.ws.stop,
                        lambda: len(server.conns) >= 2 and len(server.conns[1].topics) == len(topics))
    for conn in server.conns[:2]:
        assert sorted(conn.topics) == sorted(topics)  # every topic, once
        assert [len(args) for args in conn.subscribes] == [10, 2]
    assert client.ws.connects == 2


def option_refusal(request: dict) -> dict:
    return {"success": True, "conn_id": "c1", "type": "COMMAND_RESP",
            "data": {"failTopics": ["publicTrade.NOPE"], "successTopics": []}}


@pytest.mark.parametrize("ack", [
    lambda req: linear_ack(req, False, "error:handler not found,topic:publicTrade.NOPE"),
    option_refusal,
], ids=["linear", "option"])
async def test_a_refused_subscription_is_reported_and_never_data(ack):
    async with FakeBybit(ack=ack) as server:
        client = Client(server.url, ["publicTrade.NOPE"], ping_interval=5, pong_timeout=5)
        await run_until(client.ws.run, client.ws.stop,
                        lambda: any(s == "subscribe_failed" for s, _ in client.states))
        events: list = []
        feed = LiveFeed(server.base, None, "linear", "NOPE", events.append, ping_interval=5, pong_timeout=5)
        await run_until(feed.run, feed.stop, lambda: any(
            isinstance(e, FeedStatus) and e.status == "subscribe_failed" for e in events))
    failed = [d for s, d in client.states if s == "subscribe_failed"]
    assert len(failed) == 1 and "NOPE" in failed[0]
    assert client.data == [] and client.ws.failed_topics == failed
    assert client.ws.malformed == 0
    assert not any(isinstance(e, Trades | Bar) for e in events)


async def test_a_refused_ping_is_no_refused_subscription_and_the_feed_goes_on():
    def refuse_ping(request: dict) -> dict:
        return {"success": False, "ret_msg": "Params Error", "conn_id": "c1", "op": "ping"}

    async with FakeBybit(pong=refuse_ping) as server:
        events: list = []
        feed = LiveFeed(server.base, None, "linear", "BTCUSDT", events.append, ping_interval=0.05,
                        pong_timeout=5)
        task = asyncio.create_task(feed.run())
        await asyncio.sleep(0.5)  # several pings refused
        assert not task.done() and feed.refused is None
        await feed.stop()
        await asyncio.wait_for(task, 5)
    assert not any(isinstance(e, FeedStatus) and e.status == "subscribe_failed" for e in events)


# -- malformed frames, klines, de-duplication ---------------------------------------------------

async def test_malformed_frames_are_skipped_and_counted():
    async def garbage(server: FakeBybit, conn: Conn) -> None:
        await conn.ws.send(trade_message(["a"], [BASE_MS], [100.0]))
        for frame in ("not json {", "[1, 2, 3]", '{"hello": "world"}', '"just a string"'):
            await conn.ws.send(frame)
        bad = json.loads(trade_message(["b"], [BASE_MS + 1], [100.0]))
        del bad["data"][0]["p"]  # a trade without a price
        await conn.ws.send(json.dumps(bad))
        await conn.ws.send(trade_message(["c", "d"], [BASE_MS + 2, BASE_MS + 3], [101.0, 102.0]))

    async with FakeBybit(script=garbage) as server:
        events: list = []
        feed = LiveFeed(server.base, None, "linear", "BTCUSDT", events.append, ping_interval=5,
                        pong_timeout=5)
        await run_until(feed.run, feed.stop,
                        lambda: sum(len(e.price) for e in events if isinstance(e, Trades)) >= 3)
    trades = [e for e in events if isinstance(e, Trades)]
    assert [i.decode() for t in trades for i in t.trade_id] == ["a", "c", "d"]
    assert feed.ws.malformed == 4  # not JSON, not an object, neither data nor control
    assert feed.decoder.malformed == 1  # a publicTrade push with a broken trade
    assert feed.ws.connects == 1 and feed.reconnects == 0  # garbage does not cost the connection


def kline(start_ms: int, confirm: bool, close: float, volume: float) -> str:
    return json.dumps({"topic": "kline.1.BTCUSDT", "type": "snapshot", "ts": start_ms + 30_000, "data": [{
        "start": start_ms, "end": start_ms + 59_999, "interval": "1", "open": "100", "close": f"{close}",
        "high": "110", "low": "90", "volume": f"{volume}", "turnover": f"{volume * 100}",
        "confirm": confirm, "timestamp": start_ms + 30_000}]})


async def test_only_confirmed_klines_become_bars():
    m0, m1 = BASE_MS, BASE_MS + 60_000

    async def candles(server: FakeBybit, conn: Conn) -> None:
        for frame in (kline(m0, False, 101, 1.0), kline(m0, False, 102, 2.0), kline(m0, True, 103, 3.0),
                      kline(m1, False, 104, 0.5), kline(m0, True, 103, 3.0), kline(m1, False, 105, 0.7),
                      kline(m1, True, 106, 0.9)):
            await conn.ws.send(frame)

    async with FakeBybit(script=candles) as server:
        events: list = []
        feed = LiveFeed(server.base, None, "linear", "BTCUSDT", events.append, mode="klines", interval="1m",
                        ping_interval=5, pong_timeout=5)
        await run_until(feed.run, feed.stop, lambda: sum(isinstance(e, Bar) for e in events) >= 2)
        await asyncio.sleep(0.1)  # nothing else may follow
    assert server.conns[0].topics == ["kline.1.BTCUSDT"]
    bars = [e for e in events if isinstance(e, Bar)]
    assert [(b.open_time, b.close_time, b.close, b.volume) for b in bars] == [
        (m0 * NS_PER_MS, m1 * NS_PER_MS, 103.0, 3.0), (m1 * NS_PER_MS, (m1 + 60_000) * NS_PER_MS, 106.0, 0.9)]
    assert all((b.open, b.high, b.low, b.interval) == (100.0, 110.0, 90.0, "1m") for b in bars)
    assert not any(isinstance(e, Trades) for e in events)


async def test_trades_are_deduplicated_by_id_across_reconnects():
    ids = [f"trade-{k}" for k in range(8)]
    times = [BASE_MS + 10 * k for k in range(8)]
    prices = [100.0 + k for k in range(8)]

    async def stream(server: FakeBybit, conn: Conn) -> None:
        if len(server.conns) == 1:
            await conn.ws.send(trade_message(ids[0:2], times[0:2], prices[0:2]))
            await conn.ws.send(trade_message(ids[2:4], times[2:4], prices[2:4]))
            await asyncio.sleep(0.05)
            conn.ws.transport.abort()
        else:  # the new connection re-sends trades the first one delivered
            await conn.ws.send(trade_message(ids[3:6], times[3:6], prices[3:6]))
            await conn.ws.send(trade_message(ids[5:8], times[5:8], prices[5:8]))

    # what REST holds when the feed backfills: everything up to trade 6, newest first
    rest = [rest_trade(ids[k], times[k], prices[k], k) for k in range(6, -1, -1)]
    async with FakeBybit(script=stream, rest_trades=rest) as server:
        events: list = []
        rest_client = BybitRest(f"http://127.0.0.1:{server.port}")
        feed = LiveFeed(server.base, rest_client, "linear", "BTCUSDT", events.append, ping_interval=5,
                        pong_timeout=5, backoff=FAST)
        try:
            await run_until(feed.run, feed.stop, lambda: any(
                isinstance(e, FeedStatus) and e.status in ("backfilled", "unfilled") for e in events)
                and sum(len(e.price) for e in events if isinstance(e, Trades)) >= 8)
        finally:
            await rest_client.close()
    got = [i.decode() for e in events if isinstance(e, Trades) for i in e.trade_id]
    assert sorted(got) == ids and len(got) == len(set(got))  # every trade once
    # trade 3 came three times (both sockets, REST), 5 three times (twice on the socket, REST),
    # 4 and 6 twice (socket and REST)
    assert feed.decoder.dedup.duplicates >= 6
    statuses = [e.status for e in events if isinstance(e, FeedStatus)]
    assert statuses[:3] == ["connected", "disconnected", "connected"] and "backfilled" in statuses
    assert feed.reconnects == 1 and server.rest_calls
    gap = next(e for e in events if isinstance(e, FeedStatus) and e.status == "disconnected")
    assert gap.gap_from == times[3] * NS_PER_MS  # the gap opens at the last trade seen


def test_backfilled_trades_in_one_millisecond_keep_the_exchanges_order():
    """Bybit lists recent trades newest first; trades of one millisecond must come out in
    the venue's order (else a bar's open or close can be the wrong one of them)."""
    decoder = FeedDecoder("BTCUSDT")
    decoder.decode("ws", 1, trade_message(["a"], [BASE_MS], [100.0]))
    decoder.decode("status", 2, {"status": "disconnected", "detail": "test"})
    venue = [("b", BASE_MS + 5, 101.0), ("c", BASE_MS + 5, 99.0), ("d", BASE_MS + 5, 100.5),
             ("e", BASE_MS + 9, 98.0)]
    newest_first = [rest_trade(i, t, p, k) for k, (i, t, p) in reversed(list(enumerate(venue)))]
    assert not any(isinstance(e, Trades) for e in decoder.decode(
        "rest_trades", 3, {"list": newest_first, "limit": 1000}))  # held: the gap is open
    events = decoder.decode("rest_trades", 4, {"list": [], "error": "given up"})
    trades = next(e for e in events if isinstance(e, Trades))
    assert [i.decode() for i in trades.trade_id] == ["b", "c", "d", "e"]
    assert list(trades.price) == [101.0, 99.0, 100.5, 98.0]


async def test_trades_a_silent_stream_skipped_are_backfilled_once_the_stream_is_back():
    """A stream that goes silent but stays open (its trades are served, but not sent) is
    found stale and reconnected; still silent after the reconnect, then sending again. The
    trades it skipped after the first backfill must not be lost: the gap stays open until
    REST reaches the new connection's stream."""
    n = 16
    ids = [f"trade-{k:02d}" for k in range(n)]
    times = [BASE_MS + 10 * k for k in range(n)]
    prices = [100.0 + k for k in range(n)]

    def serve_rest(server: FakeBybit, k: int) -> None:  # REST knows a trade once it is served
        server.rest_trades.insert(0, rest_trade(ids[k], times[k], prices[k], k))

    async def tape(server: FakeBybit, conn: Conn) -> None:
        if len(server.conns) > 1:
            return
        for k in range(5):  # sent as usual
            serve_rest(server, k)
            await conn.ws.send(trade_message([ids[k]], [times[k]], [prices[k]]))
            await asyncio.sleep(0.02)
        k = 5
        while len(server.conns) < 2 or not server.rest_calls:  # silent: served, not sent
            if k < 8:
                serve_rest(server, k)
                k += 1
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.05)  # the reconnect's backfill has been answered: still silent
        for skipped in range(k, 12):
            serve_rest(server, skipped)
        for k in range(12, n):  # the stream is back on the new connection
            serve_rest(server, k)
            await server.conns[-1].ws.send(trade_message([ids[k]], [times[k]], [prices[k]]))
            await asyncio.sleep(0.02)

    async with FakeBybit(script=tape) as server:
        events: list = []
        rest_client = BybitRest(f"http://127.0.0.1:{server.port}")
        feed = LiveFeed(server.base, rest_client, "linear", "BTCUSDT", events.append, ping_interval=5,
                        pong_timeout=5, backoff=FAST, stale_after=0.3)
        try:
            await run_until(feed.run, feed.stop, lambda: any(
                isinstance(e, FeedStatus) and e.status in ("backfilled", "unfilled") for e in events)
                and sum(len(e.price) for e in events if isinstance(e, Trades)) >= n)
            await asyncio.sleep(0.1)
        finally:
            await rest_client.close()
    got = [i.decode() for e in events if isinstance(e, Trades) for i in e.trade_id]
    assert sorted(got) == ids and len(got) == n, got  # trades 8-11 were never sent on a socket
    closed = [e for e in events if isinstance(e, FeedStatus) and e.status in ("backfilled", "unfilled")]
    assert [e.status for e in closed] == ["backfilled"]
    assert closed[0].gap_from == times[4] * NS_PER_MS
    assert len(server.rest_calls) >= 2 and feed.reconnects >= 1


async def test_a_quiet_market_closes_its_gap_without_waiting_for_a_trade():
    """Silence with nothing missed (REST has no newer trade) is a quiet market: the gap
    closes after the reconnect's backfill, so bars are not held until the next trade."""
    async def three(server: FakeBybit, conn: Conn) -> None:
        if len(server.conns) == 1:
            await conn.ws.send(trade_message(["a", "b", "c"], [BASE_MS, BASE_MS + 1, BASE_MS + 2],
                                             [1.0, 2.0, 3.0]))

    rest = [rest_trade(i, BASE_MS + k, 1.0 + k, k) for k, i in reversed(list(enumerate("abc")))]
    async with FakeBybit(script=three, rest_trades=rest) as server:
        events: list = []
        rest_client = BybitRest(f"http://127.0.0.1:{server.port}")
        feed = LiveFeed(server.base, rest_client, "linear", "BTCUSDT", events.append, ping_interval=5,
                        pong_timeout=5, backoff=FAST, stale_after=0.2)
        try:
            await run_until(feed.run, feed.stop, lambda: any(
                isinstance(e, FeedStatus) and e.status in ("backfilled", "unfilled") for e in events))
        finally:
            await rest_client.close()
    statuses = [e.status for e in events if isinstance(e, FeedStatus)]
    # stale, then the forced close: two disconnected statuses for one gap
    assert statuses == ["connected", "disconnected", "disconnected", "connected", "backfilled"], statuses
    assert sum(len(e.price) for e in events if isinstance(e, Trades)) == 3
