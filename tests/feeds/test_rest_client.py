"""The aiohttp Bybit REST client against the loopback exchange: kline paging, recent trades,
instruments paging, rate limiting, 403 backoff and error reporting."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import pandas as pd
import pytest

from engine.bars.kline_files import KLINE_COLUMNS
from engine.broker.instruments import InstrumentBook
from engine.feeds.live.rest import BybitAPIError, BybitError, BybitRest, RateLimiter, bybit_interval
from engine.loopback.faults import make_fault
from engine.loopback.server import run_exchange
from engine.loopback.timemap import TimeMap, wall_ms
from tests.helpers.loopback import DAY0, expected_klines, free_port, hist_ns, make_trades, write_derivatives

SPEED = 0.5


@pytest.fixture
def trades():
    return make_trades(3000, DAY0, 1800, seed=6)


@pytest.fixture
async def history(tmp_path, trades):
    """A server whose whole tape (an hour of served time) lies in the past two hours."""
    archive = write_derivatives(tmp_path / "BTCUSDT2025-06-01.csv", trades)
    async with run_exchange([archive], speed=SPEED, wall_start_ms=wall_ms() - 7_200_000) as srv:
        yield srv


def served_ms(srv, trades) -> np.ndarray:
    ts = hist_ns(trades)
    return TimeMap(int(ts[0]), srv.state()["wall_start_ms"], SPEED).served_ms(ts)


def test_bybit_interval_codes():
    assert [bybit_interval(i) for i in ("1m", "5m", "1h", "4h", "1d", "1w", "60", "D", "M")] == \
        ["1", "5", "60", "240", "D", "W", "60", "D", "M"]
    with pytest.raises(ValueError):
        bybit_interval("7m")


async def test_klines_over_many_pages_equal_one_page(history, trades):
    served = served_ms(history, trades)
    start, end = int(served[0]) - 3_600_000, int(served[-1]) + 3_600_000
    async with BybitRest(history.url) as rest:
        paged = await rest.klines("linear", "BTCUSDT", "1m", start, end, page_limit=7)
        whole = await rest.klines("linear", "BTCUSDT", "1", start, end)
    assert list(paged.columns) == list(KLINE_COLUMNS)
    assert paged["open_time"].is_monotonic_increasing and paged["open_time"].is_unique
    assert len(paged) > 7 * 5  # it took several pages
    pd.testing.assert_frame_equal(paged, whole)
    expected = expected_klines(trades, served, 60_000)
    assert paged["open_time"].tolist() == expected["open_time"].tolist()
    columns = ["open", "high", "low", "close", "volume", "turnover"]
    np.testing.assert_allclose(paged[columns].to_numpy(), expected[columns].to_numpy(), rtol=1e-9)
    assert (paged["trades"] == 0).all() and paged.attrs["gaps"] == []


async def test_klines_range_is_half_open_and_open_candles_left_out(tmp_path, trades):
    archive = write_derivatives(tmp_path / "BTCUSDT2025-06-01.csv", trades)
    async with run_exchange([archive], speed=SPEED, wall_start_ms=wall_ms() - 600_000) as srv:
        async with BybitRest(srv.url) as rest:
            now = wall_ms()
            closed = await rest.klines("linear", "BTCUSDT", "1m", now - 3_600_000, now + 60_000)
            every = await rest.klines("linear", "BTCUSDT", "1m", now - 3_600_000, now + 60_000,
                                      closed_only=False)
            first = int(closed["open_time"].iloc[0])
            cut = await rest.klines("linear", "BTCUSDT", "1m", first, first + 180_000)
    assert len(every) == len(closed) + 1  # the candle still open now
    assert int(closed["open_time"].iloc[-1]) + 60_000 <= now + 1000
    assert cut["open_time"].tolist() == [first, first + 60_000, first + 120_000]


async def test_recent_trades_oldest_first(history, trades):
    async with BybitRest(history.url) as rest:
        batch = await rest.recent_trades("linear", "BTCUSDT", limit=50)
        default = await rest.recent_trades("linear", "BTCUSDT")
    assert batch.symbol == "BTCUSDT" and len(batch.ts_event) == 50 and len(default.ts_event) == 500
    assert [i.decode() for i in batch.trade_id] == trades["id"][-50:]
    assert np.all(np.diff(batch.ts_event) >= 0)
    np.testing.assert_array_equal(batch.price, trades["price"][-50:])
    np.testing.assert_array_equal(batch.side, trades["side"][-50:])
    assert batch.ts_event[-1] == served_ms(history, trades)[-1] * 1_000_000


async def test_instruments_follow_the_cursor_and_match_the_bundled_rules(history):
    bundled = InstrumentBook.load()
    async with BybitRest(history.url) as rest:
        items = await rest.instruments_info("linear", page_limit=1)
        assert [i["symbol"] for i in items] == ["BTCUSDT", "ETHUSDT"]
        book = InstrumentBook([])
        for category in ("linear", "spot", "inverse"):
            for instrument in await rest.instruments(category):
                book.add(instrument)
        one = await rest.instruments("linear", "ETHUSDT")
    assert sorted(book.all(), key=repr) == sorted(bundled.all(), key=repr)
    assert one == [bundled.get("linear", "ETHUSDT")]


async def test_403_backs_off_then_recovers(history, caplog):
    history.fire(make_fault("rest403", 3))
    caplog.set_level(logging.WARNING, logger="engine.feeds.live.rest")
    async with BybitRest(history.url, forbidden_backoff=0.3) as rest:
        started = time.monotonic()
        trades = await rest.recent_trades("linear", "BTCUSDT", limit=5)
        waited = time.monotonic() - started
    assert len(trades.ts_event) == 5
    assert 0.9 <= waited < 3
    assert sum("HTTP 403" in r.getMessage() for r in caplog.records) == 3
    assert history.state()["rest403_left"] == 0


async def test_403_gives_up_after_the_retries(history):
    history.fire(make_fault("rest403", 5))
    async with BybitRest(history.url, forbidden_backoff=0.01, max_retries=2) as rest:
        with pytest.raises(BybitError, match="giving up after 3 attempts: HTTP 403"):
            await rest.recent_trades("linear", "BTCUSDT")


async def test_403_gives_up_at_once_without_a_backoff(history):
    history.fire(make_fault("rest403", 5))
    async with BybitRest(history.url, forbidden_backoff=None) as rest:
        started = time.monotonic()
        with pytest.raises(BybitError, match="HTTP 403 .*: the IP is rate-limited"):
            await rest.recent_trades("linear", "BTCUSDT")
    assert time.monotonic() - started < 1
    assert history.state()["rest403_left"] == 4


async def test_api_errors_carry_bybits_message(history):
    async with BybitRest(history.url) as rest:
        with pytest.raises(BybitAPIError) as error:
            await rest.klines("linear", "NOPEUSDT", "1m", 0, 10**13)
    assert error.value.ret_code == 10001 and error.value.ret_msg == "Not supported symbols"
    assert "Not supported symbols" in str(error.value)


async def test_network_errors_are_retried_then_reported():
    async with BybitRest(f"http://127.0.0.1:{free_port()}", backoff_s=0.01, max_retries=2) as rest:
        with pytest.raises(BybitError, match="giving up after 3 attempts"):
            await rest.recent_trades("linear", "BTCUSDT")


async def test_rate_limiter_spaces_requests():
    limiter = RateLimiter(10, 0.5)
    started = time.monotonic()
    await asyncio.gather(*(limiter.acquire() for _ in range(6)))
    assert time.monotonic() - started >= 0.24  # 6 requests at 20 per second
