"""The aggregator's chunk path (batches that are slices of one chunk's columns) gives the same
bars, to the bit, as the same trades summed batch by batch (copies of the slices)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.bars import chunk_runs
from engine.bars.aggregator import make_aggregator, parse_interval
from engine.core.bus import Bus
from engine.core.clock import NS_PER_S, ReplayClock
from engine.core.events import Bar, Trades

T0 = 1748736000 * NS_PER_S


def chunk(n: int, seed: int, gap_s: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` trades about ``gap_s`` apart, a tenth of them sharing the time of the one before."""
    rng = np.random.default_rng(seed)
    steps = rng.integers(1, int(2 * gap_s * NS_PER_S), n)
    steps[rng.random(n) < 0.1] = 0
    ts = T0 + np.cumsum(steps).astype(np.int64)
    price = np.round(30_000 * np.exp(np.cumsum(rng.normal(0, 3e-4, n))), 1)
    return ts, price, np.round(rng.uniform(0.001, 2.0, n), 3)


def cuts(n: int, seed: int, most: int) -> list[int]:
    rng = np.random.default_rng(seed)
    return sorted({0, n, *rng.integers(0, n, n // max(1, most // 2)).tolist()})


def bars(columns, bounds, *, copy: bool, spec: str = "1m", copies=(), **options) -> tuple[list[tuple], int]:
    """Bars from the trades of ``columns`` sent as batches ``bounds`` (pairs of rows), each
    a copy of its rows or (``copy`` false, but for the batches numbered in ``copies``) a slice."""
    ts, price, size = columns
    clock = ReplayClock(0)
    bus = Bus(clock)
    out: list[Bar] = []
    bus.subscribe(Bar, out.append)
    agg = make_aggregator("BTCUSDT", parse_interval(spec), clock, bus.publish, **options)
    for k, (lo, hi) in enumerate(bounds):
        cols = [c[lo:hi].copy() if copy or k in copies else c[lo:hi] for c in (ts, price, size)]
        agg.on_trades(Trades("BTCUSDT", *cols, np.ones(hi - lo, np.int8), None, int(ts[hi - 1])))
        bus._drain()
    assert (agg._runs is None) == copy  # the slices did take the chunk path
    bus.advance_to(int(ts[-1]) + 10 * 86400 * NS_PER_S)
    return [tuple(b) for b in out], agg.late_trades


@pytest.mark.parametrize("seed, gap_s, most", [(1, 0.5, 200), (2, 0.05, 5000), (3, 20.0, 3), (4, 2.0, 40)])
@pytest.mark.parametrize("window", [16384, 1000])
def test_chunk_slices_give_the_bars_of_copies(monkeypatch, seed, gap_s, most, window):
    monkeypatch.setattr(chunk_runs, "WINDOW_ROWS", window)
    columns = chunk(20_000, seed, gap_s)
    edges = cuts(20_000, seed, most)
    bounds = list(zip(edges, edges[1:], strict=False))
    for options in ({}, {"inverse": True}, {"empty": "skip"}):
        want = bars(columns, bounds, copy=True, **options)
        assert bars(columns, bounds, copy=False, **options) == want
        assert len(want[0]) > 10
    week = bars(columns, bounds, copy=False, spec="1w")
    assert week == bars(columns, bounds, copy=True, spec="1w")


def test_batches_out_of_order_and_repeated_are_summed_as_sent():
    """A batch that does not go on from the last (a gap, a repeat, a copy between slices)
    leaves the chunk path's unfinished run to be summed from its rows, as sent."""
    columns = chunk(20_000, 5)
    bounds = [(0, 5000), (5100, 9000), (9000, 9001), (8990, 9500), (9500, 20_000)]
    assert bars(columns, bounds, copy=False) == bars(columns, bounds, copy=True)
    mixed = [(0, 7000), (7000, 7003), (7003, 20_000)]
    assert bars(columns, mixed, copy=False, copies={1}) == bars(columns, mixed, copy=True)


def test_late_slices_are_counted_as_batches_are():
    """Slices sent after their bars closed are late, counted as the same trades in copies."""
    columns = chunk(20_000, 6)
    ts = columns[0]
    results = []
    for copy in (False, True):
        clock = ReplayClock(0)
        bus = Bus(clock)
        out: list[Bar] = []
        bus.subscribe(Bar, out.append)
        agg = make_aggregator("BTCUSDT", parse_interval("1m"), clock, bus.publish)
        for lo, hi in [(0, 10_000), (12_000, 20_000), (9_000, 11_000), (11_000, 12_000)]:
            cols = [c[lo:hi].copy() if copy else c[lo:hi] for c in columns]
            agg.on_trades(Trades("BTCUSDT", *cols, np.ones(hi - lo, np.int8), None, int(ts[hi - 1])))
            bus.advance_to(int(ts[hi - 1]))
            bus._drain()
        bus.advance_to(int(ts[-1]) + 86400 * NS_PER_S)
        results.append(([tuple(b) for b in out], agg.late_trades))
    assert results[0] == results[1] and results[0][1] > 0


def test_columns_not_of_one_chunk_are_summed_batch_by_batch():
    """Price cut at other rows than ts, or a strided slice, never takes the chunk path."""
    ts, price, size = chunk(20_000, 7)
    clock = ReplayClock(0)
    agg = make_aggregator("BTCUSDT", parse_interval("1m"), clock, lambda bar: None)
    agg.on_trades(Trades("BTCUSDT", ts[:100], price[:100], size[:100], np.ones(100, np.int8), None, 0))
    runs = agg._runs

    def row(ts_cut, price_cut, size_cut):
        return runs.row_of(Trades("BTCUSDT", ts_cut, price_cut, size_cut, None, None, 0))

    assert runs is not None and row(ts[100:200], price[100:200], size[100:200]) == 100
    assert row(ts[100:200], price[101:201], size[100:200]) is None
    assert row(ts[100:300:2], price[100:300:2], size[100:300:2]) is None
    assert row(ts[100:200], price[100:200].copy(), size[100:200]) is None


def test_a_replays_cut_is_placed_by_identity_and_nothing_else_is():
    """The batch cut() made last is placed at its row without reading addresses; a batch made
    from it with other columns, or cut from columns that are views, is placed by addresses."""
    ts, price, size = chunk(20_000, 9)
    side = np.ones(20_000, np.int8)
    clock = ReplayClock(0)
    agg = make_aggregator("BTCUSDT", parse_interval("1m"), clock, lambda bar: None)
    agg.on_trades(chunk_runs.cut("BTCUSDT", ts, price, size, side, None, 0, 100))
    runs = agg._runs
    batch = chunk_runs.cut("BTCUSDT", ts, price, size, side, None, 100, 200)
    assert batch.ts_init == int(ts[199]) and runs.row_of(batch) == 100
    assert runs.row_of(batch._replace(price=price[101:201])) is None
    assert runs.row_of(batch._replace(size=size[100:200].copy())) is None
    chunk_runs.forget_cut()
    assert chunk_runs._last_cut is None and runs.row_of(batch) == 100  # by addresses
    inner = chunk_runs.cut("BTCUSDT", ts[50:], price[50:], size[50:], side[50:], None, 10, 20)
    assert runs.row_of(inner) == 60


def test_cut_batches_give_the_bars_of_copies():
    columns = chunk(20_000, 10)
    side = np.ones(20_000, np.int8)
    edges = cuts(20_000, 10, 200)
    clock = ReplayClock(0)
    bus = Bus(clock)
    out: list[Bar] = []
    bus.subscribe(Bar, out.append)
    agg = make_aggregator("BTCUSDT", parse_interval("1m"), clock, bus.publish)
    for lo, hi in zip(edges, edges[1:], strict=False):
        agg.on_trades(chunk_runs.cut("BTCUSDT", *columns, side, None, lo, hi))
        bus._drain()
    chunk_runs.forget_cut()
    bus.advance_to(int(columns[0][-1]) + 10 * 86400 * NS_PER_S)
    bounds = list(zip(edges, edges[1:], strict=False))
    assert [tuple(b) for b in out] == bars(columns, bounds, copy=True)[0]
