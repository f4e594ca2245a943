"""Trade archive replay: both Bybit layouts, gzip, bad rows, ordering, caching, ranges."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from engine.core.bus import Bus
from engine.core.clock import NS_PER_MS, NS_PER_S, ReplayClock
from engine.core.events import Trades
from engine.feeds.history import archive as archive_module
from engine.feeds.history.archive import ArchiveError, TradeArchive
from engine.feeds.history.replay import TradeReplay
from engine.feeds.history.sources import DataError, aggregate_bars, open_source
from tests.helpers.archive import DERIVATIVES_HEADER, random_trades, write_derivatives, write_spot

DAY0 = 1748736000  # 2025-06-01


def replayed(source: TradeReplay) -> Trades:
    """Every trade a replay sends, concatenated."""
    bus = Bus(ReplayClock(source.range.start))
    got: list[Trades] = []
    bus.subscribe(Trades, got.append)
    source.run(bus)
    return Trades("x", *(np.concatenate([getattr(t, f) for t in got]) for f in
                         ("ts_event", "price", "size", "side")), None, 0)


def test_gzipped_derivatives_archive(tmp_path):
    ts, p, s, side = random_trades(2000, DAY0, 86000, seed=1)
    path = write_derivatives(tmp_path / "BTCUSDT2025-06-01.csv.gz", ts, p, s, side)
    archive = TradeArchive(path)
    info = archive.info()
    assert (info.layout, info.symbol, info.category, info.rows, info.bad_rows) == \
        ("derivatives", "BTCUSDT", "linear", 2000, 0)
    assert (info.range_start, info.range_end) == (DAY0 * NS_PER_S, (DAY0 + 86400) * NS_PER_S)
    got = replayed(TradeReplay([archive]))
    np.testing.assert_array_equal(got.ts_event, np.rint(ts * 1e6).astype(np.int64) * 1000)
    np.testing.assert_array_equal(got.price, p)
    np.testing.assert_array_equal(got.size, s)
    np.testing.assert_array_equal(got.side, side)


def test_decimal_second_timestamps_keep_their_100us_digits(tmp_path):
    path = tmp_path / "BTCUSDT2025-06-01.csv"
    path.write_text(DERIVATIVES_HEADER + "\n1748736000.0974,BTCUSDT,Buy,0.001,100.1,PlusTick,"
                    "a-b,1e5,0.001,0.1001,0\n")
    ts = next(TradeArchive(path).chunks()).ts
    assert ts.tolist() == [1748736000_097_400_000]


def test_spot_archive_with_ms_timestamps_and_lowercase_sides(tmp_path):
    ts, p, s, side = random_trades(500, DAY0, 3600, seed=2)
    path = write_spot(tmp_path / "BTCUSDT_2025-06-01.csv.gz", ts, p, s, side)
    info = TradeArchive(path).info()
    assert (info.layout, info.symbol, info.category, info.rows) == ("spot", "BTCUSDT", "spot", 500)
    got = replayed(TradeReplay([TradeArchive(path)]))
    np.testing.assert_array_equal(got.ts_event, np.rint(ts * 1000).astype(np.int64) * NS_PER_MS)
    np.testing.assert_array_equal(got.side, side)


def test_archive_without_rpi_column_and_with_reordered_columns(tmp_path):
    path = tmp_path / "ETHUSDT2025-06-01.csv"
    path.write_text("symbol,timestamp,price,size,side,trdMatchID\n"
                    "ETHUSDT,1748736001.5,2500.5,0.2,Sell,x1\nETHUSDT,1748736002.5,2501.0,0.1,Buy,x2\n")
    got = replayed(TradeReplay([TradeArchive(path)]))
    assert got.price.tolist() == [2500.5, 2501.0] and got.side.tolist() == [-1, 1]


def test_malformed_rows_are_counted_reported_and_skipped(tmp_path, caplog):
    good = "1748736001.0000,BTCUSDT,Buy,0.010,100000.0,PlusTick,id1,1e9,0.01,1000,0"
    lines = [
        DERIVATIVES_HEADER,
        good,                                                                # line 2
        "1748736002.0000,BTCUSDT,Buy,abc,100000.0,PlusTick,id2,1e9,0.01,1000,0",   # 3 bad number
        "1748736003.0000,BTCUSDT,Buy,0.010,nan,PlusTick,id3,1e9,0.01,1000,0",      # 4 NaN price
        "1748736004.0000,BTCUSDT,Buy,-0.5,100000.0,PlusTick,id4,1e9,0.01,1000,0",  # 5 negative
        "1748736005.0000,BTCUSDT,Hold,0.010,100000.0,PlusTick,id5,1e9,0.01,1000,0",  # 6 side
        "1748736006.0000,BTCUSDT",                                           # 7 truncated
        "",                                                                  # 8 blank
        "1748736007.0000,BTCUSDT,Sell,0.020,100001.0,MinusTick,id8,1e9,0.02,2000,0",  # 9 good
    ]
    path = tmp_path / "BTCUSDT2025-06-01.csv"
    path.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING):
        info = TradeArchive(path).info()
    assert info.rows == 2
    assert info.bad_rows == 6
    assert info.bad_by_reason == {"bad size": 2, "bad price": 2, "unknown side": 1, "bad timestamp": 1}
    assert f"{path}:3: bad size" in info.bad_examples
    assert f"{path}:4: bad price" in info.bad_examples
    assert f"{path}:6: unknown side" in info.bad_examples
    assert f"{path}:7: bad price" in info.bad_examples  # truncated: the price is missing
    assert f"{path}:8: bad timestamp" in info.bad_examples  # blank line
    assert "6 malformed row(s)" in caplog.text
    got = replayed(TradeReplay([TradeArchive(path)]))
    assert got.price.tolist() == [100000.0, 100001.0]


def test_out_of_order_rows_are_sorted_stably(tmp_path):
    ts = np.array([DAY0 + 5.0, DAY0 + 1.0, DAY0 + 3.0, DAY0 + 3.0, DAY0 + 2.0])
    p = np.array([5.0, 1.0, 3.0, 3.5, 2.0])
    path = write_derivatives(tmp_path / "BTCUSDT2025-06-01.csv", ts, p, np.full(5, 0.001), np.ones(5))
    info = TradeArchive(path).info()
    assert info.sorted_rows == 2
    got = replayed(TradeReplay([TradeArchive(path)]))
    assert got.price.tolist() == [1.0, 2.0, 3.0, 3.5, 5.0]  # equal times keep file order


def test_second_replay_reads_the_cache_not_the_csv(tmp_path, monkeypatch):
    ts, p, s, side = random_trades(300, DAY0, 600, seed=4)
    path = write_derivatives(tmp_path / "BTCUSDT2025-06-01.csv.gz", ts, p, s, side)
    first = replayed(TradeReplay([TradeArchive(path)]))

    def refuse(*_args, **_kwargs):
        raise AssertionError("CSV parsed again")

    monkeypatch.setattr(archive_module, "parse_trade_csv", refuse)
    second = replayed(TradeReplay([TradeArchive(path)]))
    np.testing.assert_array_equal(first.ts_event, second.ts_event)
    path.touch()  # a changed file is parsed afresh
    with pytest.raises(AssertionError, match="parsed again"):
        TradeArchive(path).info()


def test_several_daily_files_replay_in_order_with_bounded_chunks(tmp_path):
    paths = []
    for day in range(3):
        ts, p, s, side = random_trades(400, DAY0 + day * 86400, 86000, seed=day)
        paths.append(write_derivatives(tmp_path / f"BTCUSDT2025-06-0{day + 1}.csv", ts, p, s, side))
    archives = [TradeArchive(p) for p in reversed(paths)]
    source = TradeReplay(archives, chunk_rows=50)
    sizes = []
    bus = Bus(ReplayClock(source.range.start))
    bus.subscribe(Trades, lambda t: sizes.append(len(t.price)))
    source.run(bus)
    assert sum(sizes) == 1200 and max(sizes) <= 50
    assert source.range.end - source.range.start == 3 * 86400 * NS_PER_S
    assert len(aggregate_bars(TradeReplay([TradeArchive(p) for p in paths]), "1h")) == 72


def test_start_and_end_cut_the_replay(tmp_path):
    ts, p, s, side = random_trades(1000, DAY0, 86000, seed=5)
    path = write_derivatives(tmp_path / "BTCUSDT2025-06-01.csv", ts, p, s, side)
    start, end = (DAY0 + 3600) * NS_PER_S, (DAY0 + 7200) * NS_PER_S
    got = replayed(TradeReplay([TradeArchive(path)], start_ns=start, end_ns=end))
    assert got.ts_event.min() >= start and got.ts_event.max() < end
    expected = ((ts >= DAY0 + 3600) & (ts < DAY0 + 7200)).sum()
    assert len(got.ts_event) == expected


def test_overlapping_or_mixed_files_are_refused(tmp_path):
    ts, p, s, side = random_trades(50, DAY0, 600, seed=6)
    a = write_derivatives(tmp_path / "BTCUSDT2025-06-01.csv", ts, p, s, side)
    b = write_derivatives(tmp_path / "BTCUSDT2025-06-01.csv.gz", ts, p, s, side)
    with pytest.raises(ArchiveError, match="overlaps"):
        TradeReplay([TradeArchive(a), TradeArchive(b)])
    other = write_derivatives(tmp_path / "ETHUSDT2025-06-02.csv", ts + 86400, p, s, side, symbol="ETHUSDT")
    with pytest.raises(ArchiveError, match="several symbols"):
        TradeReplay([TradeArchive(a), TradeArchive(other)])


def test_data_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="no file matches"):
        open_source([str(tmp_path / "none*.csv")], symbol="X", category="linear", interval=None)
    junk = tmp_path / "junk.csv"
    junk.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DataError, match="unknown data format"):
        open_source([str(junk)], symbol="X", category="linear", interval=None)
    binary = tmp_path / "bad.csv.gz"
    binary.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(DataError, match="cannot read"):
        open_source([str(binary)], symbol="X", category="linear", interval=None)
