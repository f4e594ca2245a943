"""The loopback exchange's REST endpoints and archive downloads, with plain HTTP requests."""

from __future__ import annotations

import gzip

import aiohttp
import numpy as np
import pytest

from engine.loopback.server import run_exchange
from engine.loopback.timemap import TimeMap, wall_ms
from tests.helpers.loopback import (
    DAY0,
    expected_klines,
    hist_ns,
    make_trades,
    write_derivatives,
    write_spot,
)

SPEED = 0.5  # 30 min of history becomes an hour of one-minute candles


@pytest.fixture
def trades():
    return {"linear": make_trades(3000, DAY0, 1800, seed=4), "spot": make_trades(300, DAY0, 1800, seed=5)}


@pytest.fixture
def archives(tmp_path, trades):
    gz = tmp_path / "archive"
    gz.mkdir()
    linear = write_derivatives(tmp_path / "BTCUSDT2025-06-01.csv", trades["linear"])
    (gz / "BTCUSDT2025-06-01.csv.gz").write_bytes(gzip.compress(linear.read_bytes(), mtime=0))
    return [linear, write_spot(tmp_path / "BTCUSDT_2025-06-01.csv", trades["spot"])]


@pytest.fixture
async def history(archives, tmp_path):
    """A server whose whole tape was served in the past two hours."""
    async with run_exchange(archives, speed=SPEED, wall_start_ms=wall_ms() - 7_200_000,
                            archive_dir=tmp_path / "archive") as srv:
        yield srv


async def get(srv, path: str, **params) -> dict:
    async with aiohttp.ClientSession() as session:
        async with session.get(srv.url + path, params=params) as resp:
            assert resp.status == 200
            return await resp.json()


def served(srv, trades, spot=False) -> np.ndarray:
    state = srv.state()
    timemap = TimeMap(min(hist_ns(trades["linear"])[0], hist_ns(trades["spot"], True)[0]),
                      state["wall_start_ms"], SPEED)
    return timemap.served_ms(hist_ns(trades["spot" if spot else "linear"], spot))


async def test_kline_rows_newest_first_and_match_the_trades(history, trades):
    body = await get(history, "/v5/market/kline", category="linear", symbol="BTCUSDT", interval="1",
                     limit="1000")
    assert set(body) == {"retCode", "retMsg", "result", "retExtInfo", "time"}
    assert body["retCode"] == 0 and body["retMsg"] == "OK" and body["retExtInfo"] == {}
    assert body["result"]["category"] == "linear" and body["result"]["symbol"] == "BTCUSDT"
    rows = body["result"]["list"]
    assert all(len(r) == 7 and all(isinstance(x, str) for x in r) for r in rows)
    starts = [int(r[0]) for r in rows]
    assert starts == sorted(starts, reverse=True) and len(set(starts)) == len(starts)
    expected = expected_klines(trades["linear"], served(history, trades), 60_000)
    got = np.array([[float(x) for x in r] for r in reversed(rows)])
    assert got[:, 0].astype(np.int64).tolist() == expected["open_time"].tolist()
    columns = ["open", "high", "low", "close", "volume", "turnover"]
    np.testing.assert_allclose(got[:, 1:], expected[columns].to_numpy(), rtol=1e-9)


async def klines(srv, **params) -> list[list[str]]:
    return (await get(srv, "/v5/market/kline", symbol="BTCUSDT", **params))["result"]["list"]


async def test_kline_limit_start_end_and_intervals(history):
    full = await klines(history, interval="1", limit="1000")
    assert await klines(history, interval="1") == full[:200]  # category defaults to linear, limit to 200
    assert await klines(history, interval="1", limit="5") == full[:5]
    start, end = full[30][0], full[10][0]
    ranged = await klines(history, interval="1", start=start, end=end, limit="7")
    assert ranged == full[10:17]  # the newest 7 inside [start, end]
    hourly = await klines(history, interval="60")
    assert all(int(r[0]) % 3_600_000 == 0 for r in hourly) and 1 <= len(hourly) <= 3
    assert sum(float(r[5]) for r in hourly) == pytest.approx(sum(float(r[5]) for r in full))


@pytest.mark.parametrize("params, message", [
    ({"symbol": "BTCUSDT", "interval": "7"}, "interval"),
    ({"symbol": "ETHUSDT", "interval": "1"}, "Not supported symbols"),
    ({"interval": "1"}, "symbol"),
    ({"symbol": "BTCUSDT", "interval": "1", "limit": "0"}, "limit"),
    ({"symbol": "BTCUSDT", "interval": "1", "limit": "1001"}, "limit"),
    ({"symbol": "BTCUSDT", "interval": "1", "start": "soon"}, "start"),
    ({"category": "option", "symbol": "BTCUSDT", "interval": "1"}, "category"),
])
async def test_kline_bad_params(history, params, message):
    body = await get(history, "/v5/market/kline", **params)
    assert body["retCode"] == 10001 and message in body["retMsg"] and body["result"] == {}


async def test_recent_trade_limits_and_order(history, trades):
    linear = await get(history, "/v5/market/recent-trade", category="linear", symbol="BTCUSDT")
    items = linear["result"]["list"]
    assert linear["result"]["category"] == "linear" and len(items) == 500
    assert set(items[0]) == {"execId", "symbol", "price", "size", "side", "time", "isBlockTrade",
                             "isRPITrade", "seq"}
    assert [i["execId"] for i in items] == trades["linear"]["id"][::-1][:500]  # newest first
    assert int(items[0]["time"]) == int(served(history, trades)[-1])
    most = await get(history, "/v5/market/recent-trade", category="linear", symbol="BTCUSDT", limit="1000")
    assert len(most["result"]["list"]) == 1000
    spot = await get(history, "/v5/market/recent-trade", category="spot", symbol="BTCUSDT")
    assert len(spot["result"]["list"]) == 60
    assert spot["result"]["list"][0]["execId"] == str(1000 + 299)
    for category, limit in (("spot", "61"), ("spot", "0"), ("linear", "1001")):
        body = await get(history, "/v5/market/recent-trade", category=category, symbol="BTCUSDT", limit=limit)
        assert body["retCode"] == 10001 and "limit" in body["retMsg"]
    body = await get(history, "/v5/market/recent-trade", symbol="BTCUSDT")
    assert body["retCode"] == 10001 and "category" in body["retMsg"]


async def test_instruments_info_pages_linear_but_not_spot(history):
    first = await get(history, "/v5/market/instruments-info", category="linear", limit="1")
    cursor = first["result"]["nextPageCursor"]
    assert [i["symbol"] for i in first["result"]["list"]] == ["BTCUSDT"] and cursor
    second = await get(history, "/v5/market/instruments-info", category="linear", limit="1", cursor=cursor)
    assert [i["symbol"] for i in second["result"]["list"]] == ["ETHUSDT"]
    assert second["result"]["nextPageCursor"] == ""
    item = first["result"]["list"][0]
    assert item["priceFilter"]["tickSize"] == "0.1" and item["lotSizeFilter"]["qtyStep"] == "0.001"
    assert item["lotSizeFilter"]["minNotionalValue"] == "5"
    assert item["leverageFilter"]["maxLeverage"] == "100.00"
    assert item["contractType"] == "LinearPerpetual" and item["status"] == "Trading"
    spot = await get(history, "/v5/market/instruments-info", category="spot", limit="1", cursor="x")
    assert "nextPageCursor" not in spot["result"]
    assert [i["symbol"] for i in spot["result"]["list"]] == ["BTCUSDT"]
    assert spot["result"]["list"][0]["lotSizeFilter"]["basePrecision"] == "0.000001"
    one = await get(history, "/v5/market/instruments-info", category="inverse", symbol="BTCUSD")
    assert one["result"]["list"][0]["contractType"] == "InversePerpetual"
    bad = await get(history, "/v5/market/instruments-info", category="linear", cursor="garbage")
    assert bad["retCode"] == 10001


async def test_archive_downloads_support_ranges(history, tmp_path):
    data = (tmp_path / "archive" / "BTCUSDT2025-06-01.csv.gz").read_bytes()
    url = history.url + "/trading/BTCUSDT/BTCUSDT2025-06-01.csv.gz"
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as resp:
            assert resp.status == 200 and await resp.read() == data
            assert resp.headers["Accept-Ranges"] == "bytes"
        async with session.get(url, headers={"Range": "bytes=100-"}) as resp:
            assert resp.status == 206 and await resp.read() == data[100:]
            assert resp.headers["Content-Range"] == f"bytes 100-{len(data) - 1}/{len(data)}"
        async with session.get(url, headers={"Range": "bytes=10-19"}) as resp:
            assert resp.status == 206 and await resp.read() == data[10:20]
        async with session.get(url, headers={"Range": f"bytes={len(data)}-"}) as resp:
            assert resp.status == 416 and resp.headers["Content-Range"] == f"bytes */{len(data)}"
        for missing in ("/trading/BTCUSDT/BTCUSDT2025-06-02.csv.gz",
                        "/spot/BTCUSDT/BTCUSDT_2025-06-01.csv.gz",
                        "/trading/BTCUSDT/..%2Fsecret.csv.gz"):
            async with session.get(history.url + missing) as resp:
                assert resp.status == 404
