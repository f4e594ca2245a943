"""Bar aggregation: batching invariance, agreement with pandas, close rules and policies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.bars.aggregator import CountBarAggregator, TimeBarAggregator, make_aggregator, parse_interval
from engine.core.bus import Bus
from engine.core.clock import NS_PER_S, ReplayClock
from engine.core.events import Bar, Trades
from engine.feeds.history.archive import TradeArchive
from engine.feeds.history.replay import TradeReplay
from engine.feeds.history.sources import aggregate_bars, open_source
from tests.helpers.archive import random_trades, write_derivatives

DAY0 = 1748736000  # 2025-06-01 00:00:00 UTC
MIN = 60 * NS_PER_S


def trades_event(ts, price, size, side=None, symbol="BTCUSDT") -> Trades:
    ts = np.asarray(ts, dtype=np.int64)
    side = np.ones(len(ts), dtype=np.int8) if side is None else np.asarray(side, dtype=np.int8)
    return Trades(symbol, ts, np.asarray(price, float), np.asarray(size, float), side, None,
                  int(ts[-1]) if len(ts) else 0)


def fields(bar: Bar) -> tuple:
    return (bar.open_time, bar.close_time, bar.open, bar.high, bar.low, bar.close, bar.volume,
            bar.turnover, bar.trades)


def collect(spec_text: str, batches, end_ns: int, start_ns: int | None = None, **options) -> list[Bar]:
    """Feed batches straight into an aggregator, then close everything at ``end_ns``."""
    clock = ReplayClock(0)
    bus = Bus(clock)
    out: list[Bar] = []
    bus.subscribe(Bar, out.append)
    spec = parse_interval(spec_text)
    if spec.is_time:
        options.setdefault("start_ns", start_ns)
    agg = make_aggregator("BTCUSDT", spec, clock, bus.publish, **options)
    for batch in batches:
        agg.on_trades(batch)
        bus._drain()
    bus.advance_to(end_ns)
    return out


# -- intervals ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds, label", [
    ("1m", 60, "1m"), ("5m", 300, "5m"), ("1h", 3600, "1h"), ("1d", 86400, "1d"),
    ("90s", 90, "90s"), ("60", 3600, "1h"), ("D", 86400, "1d"), ("720", 43200, "12h"),
    ("3600s", 3600, "1h"), ("1w", 604800, "1w"), ("W", 604800, "1w"),
])
def test_time_intervals(text, seconds, label):
    spec = parse_interval(text)
    assert spec.is_time and spec.size == seconds * NS_PER_S and spec.label == label


def test_weekly_bars_start_on_monday():
    spec = parse_interval("1w")
    monday = pd.Timestamp("2025-06-02", tz="UTC").value  # a Monday
    assert (monday - spec.offset_ns) % int(spec.size) == 0


@pytest.mark.parametrize("text", ["0m", "1x", "tick:0", "tick:1.5", "volume:-1", "foo:3", ""])
def test_bad_intervals_are_refused(text):
    with pytest.raises(ValueError):
        parse_interval(text)


# -- batching invariance -------------------------------------------------------------------------

trade_lists = st.integers(min_value=1, max_value=120).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 10 * MIN), min_size=n, max_size=n).map(sorted),
    st.lists(st.integers(900_000, 1_100_000), min_size=n, max_size=n),
    st.lists(st.integers(1, 3000), min_size=n, max_size=n),
    st.lists(st.integers(1, n), max_size=12),
))


def split(arrays, cuts):
    bounds = [0, *sorted(set(cuts)), len(arrays[0])]
    return [trades_event(*(a[lo:hi] for a in arrays)) for lo, hi in zip(bounds, bounds[1:], strict=False)
            if hi > lo]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trade_lists, st.sampled_from(["1m", "90s", "tick:7", "volume:1.5", "value:100000"]))
def test_any_batching_gives_the_same_bars(data, interval):
    ts, price_ticks, size_lots, cuts = data
    arrays = (np.array(ts, np.int64) + DAY0 * NS_PER_S, np.array(price_ticks) / 10.0,
              np.array(size_lots) / 1000.0)
    end = DAY0 * NS_PER_S + 11 * MIN
    start = DAY0 * NS_PER_S
    whole = collect(interval, [trades_event(*arrays)], end, start)
    per_trade = collect(interval, split(arrays, range(1, len(ts))), end, start)
    random_split = collect(interval, split(arrays, cuts), end, start)
    assert [fields(b) for b in whole] == [fields(b) for b in per_trade] == [fields(b) for b in random_split]
    assert sum(b.trades for b in whole) <= len(ts)


def test_replay_chunk_size_does_not_change_bars(tmp_path):
    ts, p, s, side = random_trades(5000, DAY0, 3 * 3600, seed=3)
    path = write_derivatives(tmp_path / "BTCUSDT2025-06-01.csv", ts, p, s, side)
    results = []
    for chunk in (5000, 977, 13, 1):
        source = TradeReplay([TradeArchive(path)], chunk_rows=chunk)
        results.append([fields(b) for b in aggregate_bars(source, "1m")])
    assert results[0] == results[1] == results[2] == results[3]
    assert len(results[0]) == 1440  # the whole UTC day, flat bars after the last trade


# -- against pandas --------------------------------------------------------------------------------

def pandas_bars(ts_ns, price, size, freq: str, day_start_ns: int, day_end_ns: int) -> pd.DataFrame:
    """An independent aggregation: pandas resample, flat bars at the last close when empty."""
    frame = pd.DataFrame({"price": price, "size": size, "turnover": price * size},
                         index=pd.to_datetime(ts_ns, utc=True))
    rule = frame.resample(freq, label="left", closed="left", origin="epoch")
    out = rule["price"].ohlc()
    out["volume"] = rule["size"].sum()
    out["turnover"] = rule["turnover"].sum()
    out["trades"] = rule["price"].count()
    full = pd.date_range(pd.Timestamp(day_start_ns, tz="UTC"), pd.Timestamp(day_end_ns, tz="UTC"),
                         freq=freq, inclusive="left")
    out = out.reindex(full)
    close = out["close"].ffill()
    for col in ("open", "high", "low", "close"):
        out[col] = out[col].fillna(close)
    out[["volume", "turnover", "trades"]] = out[["volume", "turnover", "trades"]].fillna(0)
    return out


@pytest.mark.parametrize("interval, freq", [("1m", "1min"), ("5m", "5min"), ("1h", "1h")])
def test_bars_equal_pandas_resample(sample_files, interval, freq):
    archive = TradeArchive(sample_files[0])
    info = archive.info()
    chunk = next(archive.chunks(10**7))
    expected = pandas_bars(chunk.ts, chunk.price, chunk.size, freq, info.range_start, info.range_end)
    bars = aggregate_bars(TradeReplay([archive]), interval)
    got = pd.DataFrame([fields(b) for b in bars], columns=[
        "open_time", "close_time", "open", "high", "low", "close", "volume", "turnover", "trades"])
    assert len(got) == len(expected)
    assert (got.open_time.to_numpy() == expected.index.as_unit("ns").asi8).all()
    for col in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(got[col].to_numpy(), expected[col].to_numpy())
    np.testing.assert_allclose(got.volume, expected.volume, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(got.turnover, expected.turnover, rtol=1e-9, atol=1e-6)
    np.testing.assert_array_equal(got.trades, expected.trades.astype(int))


def test_skip_policy_emits_only_bars_with_trades():
    t0 = DAY0 * NS_PER_S
    batch = trades_event([t0 + 5 * NS_PER_S, t0 + 3 * MIN + 1, t0 + 3 * MIN + 2], [10, 11, 9], [1, 1, 1])
    flat = collect("1m", [batch], t0 + 5 * MIN, t0)
    skip = collect("1m", [batch], t0 + 5 * MIN, t0, empty="skip")
    assert [b.open_time - t0 for b in flat] == [0, MIN, 2 * MIN, 3 * MIN, 4 * MIN]
    assert [(b.open, b.close, b.volume, b.trades) for b in flat[1:3]] == [(10.0, 10.0, 0.0, 0)] * 2
    assert [b.open_time - t0 for b in skip] == [0, 3 * MIN]
    assert (skip[1].open, skip[1].high, skip[1].low, skip[1].close) == (11.0, 11.0, 9.0, 9.0)


# -- close rules -----------------------------------------------------------------------------------

def test_bar_closes_on_its_timer_in_a_quiet_market(tmp_path):
    """The bar of a trade at 00:00:10 closes at 00:01:00 (+delay), long before the next trade."""
    ts = np.array([DAY0 + 10.0, DAY0 + 330.5])
    path = write_derivatives(tmp_path / "quiet.csv", ts, np.array([100.0, 101.0]), np.array([0.5, 0.25]),
                             np.array([1, -1]))
    source = TradeReplay([TradeArchive(path)], start_ns=DAY0 * NS_PER_S)
    seen: list[tuple[int, int]] = []
    clock = ReplayClock(DAY0 * NS_PER_S)
    bus = Bus(clock)
    agg = TimeBarAggregator("BTCUSDT", parse_interval("1m"), clock, bus.publish,
                            close_delay_ns=250_000_000, start_ns=DAY0 * NS_PER_S)
    bus.subscribe(Trades, agg.on_trades)
    bus.subscribe(Trades, lambda t: seen.append(("trades", int(t.ts_event[0]))))
    bus.subscribe(Bar, lambda b: seen.append(("bar", b.open_time, b.ts_init, b.trades)))
    agg.start_at(DAY0 * NS_PER_S)
    source.run(bus)
    first_bar = next(e for e in seen if e[0] == "bar")
    assert first_bar == ("bar", DAY0 * NS_PER_S, DAY0 * NS_PER_S + MIN + 250_000_000, 1)
    second_trade_at = seen.index(("trades", int((DAY0 + 330.5) * NS_PER_S)))
    assert seen.index(first_bar) < second_trade_at
    assert sum(1 for e in seen[:second_trade_at] if e[0] == "bar") == 5  # 00:00 .. 00:04 closed


def test_trade_on_a_boundary_belongs_to_the_bar_that_starts_there():
    t0 = DAY0 * NS_PER_S
    batch = trades_event([t0 + 1, t0 + MIN - 1, t0 + MIN], [10, 11, 12], [1, 1, 1])
    bars = collect("1m", [batch], t0 + 2 * MIN, t0)
    assert [(b.open_time - t0, b.trades, b.close) for b in bars] == [(0, 2, 11.0), (MIN, 1, 12.0)]


def test_daily_archive_closes_its_last_minute(sample_files):
    source = TradeReplay([TradeArchive(sample_files[0])])
    bars = aggregate_bars(source, "1m")
    assert bars[-1].close_time == source.range.end  # the minute before midnight is not lost
    assert len(bars) == 1440


def test_first_partial_bar_is_skipped_unless_kept(sample_files):
    start = DAY0 * NS_PER_S + 30 * NS_PER_S
    source = TradeReplay([TradeArchive(sample_files[0])], start_ns=start, end_ns=start + 10 * MIN)
    skipped = aggregate_bars(source, "1m")
    kept = aggregate_bars(source, "1m", first_partial="keep")
    assert skipped[0].open_time == DAY0 * NS_PER_S + MIN
    assert kept[0].open_time == DAY0 * NS_PER_S
    assert [fields(b) for b in kept[1:]] == [fields(b) for b in skipped]


def test_late_trades_are_counted_and_left_out():
    t0 = DAY0 * NS_PER_S
    clock = ReplayClock(t0)
    bus = Bus(clock)
    out: list[Bar] = []
    bus.subscribe(Bar, out.append)
    agg = TimeBarAggregator("BTCUSDT", parse_interval("1m"), clock, bus.publish, start_ns=t0)
    bus.subscribe(Trades, agg.on_trades)
    bus.process(trades_event([t0 + 1], [10], [1]))
    bus.process(trades_event([t0 + MIN + 5], [11], [1]))  # closes the first bar
    late = trades_event([t0 + 2], [99], [1])._replace(ts_init=t0 + MIN + 6)
    bus.process(late)
    bus.advance_to(t0 + 2 * MIN)
    assert agg.late_trades == 1
    assert out[0].high == 10.0 and out[0].trades == 1


def test_count_bars_close_on_their_counters():
    t0 = DAY0 * NS_PER_S
    ts = t0 + np.arange(10) * NS_PER_S
    tick = collect("tick:4", [trades_event(ts, np.arange(10) + 100.0, np.ones(10))], t0 + MIN)
    assert [b.trades for b in tick] == [4, 4]  # the last two trades wait for the next bar
    assert tick[0].close_time == int(ts[3]) and tick[0].ts_event == int(ts[3])
    sizes = np.array([0.4, 0.4, 0.4, 2.5, 0.1, 0.1])
    vol = collect("volume:1", [trades_event(ts[:6], np.full(6, 100.0), sizes)], t0 + MIN)
    # cumulative volume before each trade: 0, .4, .8 | 1.2 -> crosses to 3.7 | 3.7, 3.8
    assert [b.trades for b in vol] == [3, 1]
    assert isinstance(make_aggregator("X", parse_interval("tick:3"), ReplayClock(0), print),
                      CountBarAggregator)


def test_kline_source_resamples_to_a_coarser_interval(tmp_path: Path):
    minutes = pd.DataFrame({
        "open_time": (DAY0 * 1000 + np.arange(120) * 60_000),
        "open": np.arange(120) + 100.0, "high": np.arange(120) + 101.0,
        "low": np.arange(120) + 99.0, "close": np.arange(120) + 100.5,
        "volume": 1.0, "turnover": 100.0, "trades": 3,
    })
    path = tmp_path / "k.csv"
    minutes.to_csv(path, index=False)
    source = open_source([str(path)], symbol="BTCUSDT", category="linear", interval="1h")
    frame = source.frame
    assert list(frame.open_time) == [DAY0 * 1000, DAY0 * 1000 + 3_600_000]
    assert frame.iloc[0].tolist() == [DAY0 * 1000, 100.0, 160.0, 99.0, 159.5, 60.0, 6000.0, 180]
    assert source.label == "1h"
