"""Kline files replay from a columnar cache parsed once, in chunks, with the same checks as
reading them whole; a portfolio of them merges window by window into the same bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.bars.kline_files import BarFileError, read_kline_csv, write_kline_csv
from engine.core.bus import Bus
from engine.core.clock import ReplayClock
from engine.core.events import Bar
from engine.feeds.history import kline_cache
from engine.feeds.history.portfolio import MergedKlineReplay
from engine.feeds.history.replay import KlineReplay
from engine.feeds.history.sources import _kline_source

T0 = 1_704_067_200_000  # 2024-01-01 UTC


def klines(n: int, seed: int, t0: int = T0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    return pd.DataFrame({"open_time": t0 + 60_000 * np.arange(n, dtype=np.int64), "open": close,
                         "high": close * 1.001, "low": close * 0.999, "close": close,
                         "volume": rng.uniform(1, 5, n), "turnover": rng.uniform(1, 5, n),
                         "trades": rng.integers(1, 50, n)})


def sent_bars(replay) -> list[Bar]:
    bus, bars = Bus(ReplayClock(0)), []
    bus.subscribe(Bar, bars.append)
    replay.run(bus)
    return bars


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(kline_cache, "CHUNK_ROWS", 7)  # many chunks, boundaries everywhere


def test_cached_columns_equal_the_file_read_whole(tmp_path, small_chunks):
    path = tmp_path / "k.csv"
    write_kline_csv(klines(100, 1), path)
    columns = kline_cache.cached_klines(path, tmp_path / "cache")
    whole = read_kline_csv(path)
    assert np.array_equal(columns.open_ms, whole["open_time"].to_numpy())
    for name, got in zip(kline_cache.VALUES, columns.block(0, 100), strict=True):
        assert np.array_equal(got, whole[name].to_numpy()), name
    assert [b.open for b in sent_bars(_kline_source([path], "BTCUSDT", "linear", None, None, None,
                                                     tmp_path / "cache"))] == whole["open"].tolist()


def test_the_cache_is_parsed_once_and_again_when_the_file_changes(tmp_path):
    path, root = tmp_path / "k.csv", tmp_path / "cache"
    write_kline_csv(klines(50, 2), path)
    first = kline_cache.cached_klines(path, root).directory
    assert kline_cache.cached_klines(path, root).directory == first
    write_kline_csv(klines(60, 3), path)
    second = kline_cache.cached_klines(path, root)
    assert second.directory != first and len(second.open_ms) == 60


def test_a_malformed_row_in_a_later_chunk_names_its_line(tmp_path, small_chunks):
    frame = klines(40, 4).astype({"high": object})
    frame.loc[30, "high"] = "inf"
    path = tmp_path / "k.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(BarFileError, match=r"k\.csv:32: malformed bar"):
        kline_cache.cached_klines(path, tmp_path / "cache")
    assert not list((tmp_path / "cache" / "klines").glob("k.csv-*"))  # nothing half-written


def test_a_bar_repeated_across_a_chunk_boundary_is_refused(tmp_path, small_chunks):
    frame = klines(20, 5)
    frame.loc[7, "open_time"] = frame.loc[6, "open_time"]  # rows 6 and 7 sit in two chunks
    frame.loc[8:, "open_time"] += 60_000
    path = tmp_path / "k.csv"
    write_kline_csv(frame, path)
    with pytest.raises(BarFileError, match="duplicate open_time"):
        kline_cache.cached_klines(path, tmp_path / "cache")


def test_a_file_out_of_order_is_cached_sorted(tmp_path, small_chunks):
    frame = klines(30, 6)
    path = tmp_path / "k.csv"
    write_kline_csv(frame.iloc[::-1], path)
    columns = kline_cache.cached_klines(path, tmp_path / "cache")
    assert np.array_equal(columns.open_ms, frame["open_time"].to_numpy())


def test_windowed_merge_sends_every_bar_in_time_then_symbol_order(tmp_path, monkeypatch):
    monkeypatch.setattr(KlineReplay, "block_rows", 5)  # windows of 2 bars of time for 3 symbols
    replays, frames = [], []
    for k, (n, offset) in enumerate(((40, 0), (25, 7), (33, 3))):
        frame = klines(n, 10 + k, T0 + offset * 60_000)
        frame = frame.drop(index=[5, 6, 11]).reset_index(drop=True)  # holes: windows without a bar
        path = tmp_path / f"s{k}.csv"
        write_kline_csv(frame, path)
        frames.append(read_kline_csv(path))
        replays.append(_kline_source([path], f"S{k}USDT", "linear", None, None, None, tmp_path / "cache"))
    got = [(b.open_time, b.symbol, b.close) for b in sent_bars(MergedKlineReplay(replays))]
    expected = sorted(((t * 1_000_000, f"S{k}USDT", c) for k, f in enumerate(frames)
                       for t, c in zip(f["open_time"], f["close"], strict=True)), key=lambda r: (r[0], r[1]))
    assert got == expected


@pytest.mark.parametrize("holes", [
    ((5, 6, 11), (5, 6, 11), (5, 6, 11)),  # one grid: every window's bars interleaved in place
    ((5, 6, 11), (5, 6, 11), (5, 6, 12)),  # one symbol off the others' grid in a window: sorted there
])
def test_a_merged_window_on_one_grid_is_the_sorted_merge(tmp_path, monkeypatch, holes):
    monkeypatch.setattr(KlineReplay, "block_rows", 6)  # windows of 2 bars of time for 3 symbols
    replays, frames = [], []
    for k, dropped in enumerate(holes):
        frame = klines(30, 20 + k).drop(index=list(dropped)).reset_index(drop=True)
        path = tmp_path / f"s{k}.csv"
        write_kline_csv(frame, path)
        frames.append(read_kline_csv(path))
        replays.append(_kline_source([path], f"S{k}USDT", "linear", None, None, None, tmp_path / "cache"))
    sent: list[int] = []
    bus, bars = Bus(ReplayClock(0)), []
    bus.subscribe(Bar, bars.append)
    MergedKlineReplay(replays).run(bus, sent.append)
    names = ["open", "high", "low", "close", "volume", "turnover", "trades"]
    expected = sorted(((t * 1_000_000, f"S{k}USDT", *values) for k, f in enumerate(frames)
                       for t, *values in zip(f["open_time"], *(f[n] for n in names), strict=True)),
                      key=lambda r: (r[0], r[1]))
    assert [(b.open_time, b.symbol, b.open, b.high, b.low, b.close, b.volume, b.turnover, b.trades)
            for b in bars] == expected
    assert all(b.close_time == b.open_time + 60_000_000_000 for b in bars) and sum(sent) == len(expected)
