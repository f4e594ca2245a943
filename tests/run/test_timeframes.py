"""Higher timeframes (``--timeframes 5m,1h``): each symbol's 5m and 1h bars, folded from its 1m
bars, equal the bars of a 5m and a 1h run of the same trades; each comes right after the run
bar that ends it, at that bar's clock, never before its close; a run that starts mid-window
gets no short first bar; a bad timeframe or a strategy that cannot take them is one line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from engine.bars.aggregator import parse_interval
from engine.bars.timeframes import TimeframeBars
from engine.cli import main
from engine.core.events import Bar
from tests.helpers.archive import write_derivatives
from tests.helpers.live import SAMPLE_DAY, papertape, query
from tests.helpers.live_portfolio import symbol_archives

SYMBOLS = ("BTCUSDT", "ETHUSDT")
WATCHER = ("--strategy", "tests.helpers.timeframes:TimeframeWatcher")
MIN_NS = 60_000_000_000
DAY_NS = pd.Timestamp("2025-06-01", tz="UTC").value
START = "2025-06-01T00:07"  # mid-window: the first 5m bar opens at 00:10, the first 1h at 01:00
COLUMNS = ["open", "high", "low", "close", "volume", "turnover", "trades"]


def backtest(work, ledger, *args) -> int:
    done = papertape("backtest", "--symbols", ",".join(SYMBOLS), "--ledger", str(ledger), "--start", START,
                     "--json", "--no-progress", *args, cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)["run_id"]


def watch(work, archives, ledger) -> tuple[pd.DataFrame, dict]:
    """The watcher's events (and saved state) in a 1m run of ``archives`` with 5m and 1h."""
    run_id = backtest(work, ledger, "--data", *map(str, archives), *WATCHER, "--timeframes", "5m,1h")
    saved = query(ledger, "SELECT state FROM strategy_state WHERE run_id = ?", (run_id,))
    state = json.loads(saved.state.iloc[-1])
    return pd.DataFrame(state["events"], columns=["kind", "symbol", "interval", "open_time", "close_time",
                                                  *COLUMNS, "clock"]), state


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    work = tmp_path_factory.mktemp("timeframes")
    archives = symbol_archives(work, SYMBOLS)
    ledger = work / "ledger.db"
    events, state = watch(work, archives, ledger)
    bars = {label: query(ledger, "SELECT * FROM bars WHERE run_id = ? ORDER BY symbol, open_time",
                         (backtest(work, ledger, "--data", *map(str, archives), "--interval", label),))
            for label in ("5m", "1h")}
    return events, bars, state, work, archives


@pytest.mark.parametrize("label", ["5m", "1h"])
def test_each_symbols_higher_bars_equal_a_run_of_that_interval(runs, label):
    events, bars, state, _, _ = runs
    assert state["timeframes"] == ["5m", "1h"]
    higher = events[(events.kind == "higher") & (events.interval == label)]
    step = parse_interval(label).size
    for symbol in SYMBOLS:
        mine = higher[higher.symbol == symbol].reset_index(drop=True)
        theirs = bars[label][bars[label].symbol == symbol]
        theirs = theirs[theirs.open_time % step == 0].reset_index(drop=True)  # whole windows only
        theirs = theirs[theirs.open_time >= mine.open_time.min()].reset_index(drop=True)
        assert len(mine) >= (20 if label == "1h" else 250), (symbol, len(mine))
        assert len(theirs) - len(mine) in (0, 1), (symbol, len(mine), len(theirs))  # the last may be open
        theirs = theirs.iloc[:len(mine)]
        assert (mine.open_time.to_numpy() == theirs.open_time.to_numpy()).all(), symbol
        assert (mine[COLUMNS].to_numpy() == theirs[COLUMNS].to_numpy()).all(), symbol  # to the bit


def test_a_run_that_starts_mid_window_gets_no_short_first_bar(runs):
    events, *_ = runs
    higher = events[events.kind == "higher"]
    first = higher.groupby(["symbol", "interval"]).open_time.min()
    day = pd.Timestamp("2025-06-01", tz="UTC").value
    for symbol in SYMBOLS:
        assert first[(symbol, "5m")] == day + 10 * MIN_NS and first[(symbol, "1h")] == day + 60 * MIN_NS


def test_a_higher_bar_follows_the_run_bar_that_ends_it_at_its_clock(runs):
    events, *_ = runs
    assert (events.clock >= events.close_time).all()  # nothing before its close
    for k in np.flatnonzero(events.kind.to_numpy() == "higher"):
        row = events.iloc[k]
        before = events.iloc[k - 1]  # the run bar that ends it (or, for the 1h, its 5m bar)
        run_bar = events.iloc[k - 1 - (row.interval == "1h" and before.kind == "higher")]
        assert run_bar.kind == "run" and run_bar.symbol == row.symbol, (row, run_bar)
        assert run_bar.close_time == row.close_time and row.clock == run_bar.clock, (row, run_bar)


def test_a_planted_future_trade_changes_no_bar_delivered_before_it(runs):
    """ETHUSDT gets one trade at 1.5x the price at 12:34:30.5: every bar of either kind and
    symbol delivered before it is the same, and the 5m and 1h bars that hold it show it."""
    events, _, _, work, archives = runs
    eth = pd.read_csv(archives[1])
    planted_s = pd.Timestamp("2025-06-01T12:34:30.5", tz="UTC").value / 1e9
    at = int(np.searchsorted(eth.timestamp.to_numpy(), planted_s))
    price = round(float(eth.price.iloc[at]) * 1.5, 1)  # the archive's tick
    eth = pd.concat([eth.iloc[:at], pd.DataFrame({"timestamp": [planted_s], "price": [price], "size": [0.1],
                                                  "side": ["Buy"]}), eth.iloc[at:]], ignore_index=True)
    (work / "planted").mkdir()
    path = write_derivatives(work / "planted" / archives[1].name, eth.timestamp.to_numpy(),
                             eth.price.to_numpy(), eth["size"].to_numpy(), np.where(eth.side == "Buy", 1, -1),
                             symbol="ETHUSDT")
    planted, _ = watch(work, [archives[0], path], work / "planted.db")
    cut = int(round(planted_s * 1e9))
    before = [e[e.clock < cut].reset_index(drop=True) for e in (events, planted)]
    assert len(before[0]) > 1000
    pd.testing.assert_frame_equal(*before)
    holding = planted[(planted.kind == "higher") & (planted.symbol == "ETHUSDT") & (planted.open_time <= cut)
                      & (planted.close_time > cut)]
    assert sorted(holding.interval) == ["1h", "5m"] and (holding.high == price).all(), holding


def test_a_replay_of_files_from_their_beginning_keeps_its_first_window(tmp_path):
    """Data that starts at 00:07:20 without --start: a 5m or 1h run keeps its first bar (no trade
    is missing from it), so the 5m and 1h bars folded from the 1m run keep it too, equal."""
    day = pd.read_csv(SAMPLE_DAY)
    day = day[day.timestamp >= pd.Timestamp("2025-06-01T00:07:20", tz="UTC").value / 1e9]
    path = write_derivatives(tmp_path / "BTCUSDT2025-06-01.csv.gz", day.timestamp.to_numpy(),
                             day.price.to_numpy(), day["size"].to_numpy(), np.where(day.side == "Buy", 1, -1))
    ledger = tmp_path / "l.db"
    common = ("backtest", "--data", str(path), "--ledger", str(ledger), "--json", "--no-progress")
    done = papertape(*common, *WATCHER, "--timeframes", "5m,1h", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = json.loads(done.stdout)["run_id"]
    saved = query(ledger, "SELECT state FROM strategy_state WHERE run_id = ?", (run_id,))
    events = pd.DataFrame(json.loads(saved.state.iloc[-1])["events"], columns=[
        "kind", "symbol", "interval", "open_time", "close_time", *COLUMNS, "clock"])
    for label in ("5m", "1h"):
        done = papertape(*common, "--interval", label, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        theirs = query(ledger, "SELECT * FROM bars WHERE run_id = ? ORDER BY open_time LIMIT 1",
                       (json.loads(done.stdout)["run_id"],)).iloc[0]
        mine = events[(events.kind == "higher") & (events.interval == label)].iloc[0]
        assert mine.open_time == theirs.open_time == DAY_NS + (5 if label == "5m" else 0) * MIN_NS, label
        assert mine[COLUMNS].tolist() == theirs[COLUMNS].tolist(), label


def test_a_window_that_opens_before_the_cut_is_partial():
    """``partial_before`` (a --start, a live start or a resume at minute 2): the 0-5 window is
    left out, the next kept; without it (files from their beginning) the first is kept."""
    def bar(minute: int) -> Bar:
        return Bar("BTCUSDT", "1m", minute * MIN_NS, (minute + 1) * MIN_NS, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1,
                   (minute + 1) * MIN_NS, (minute + 1) * MIN_NS)

    for partial_before, kept in ((2 * MIN_NS, [5 * MIN_NS]), (None, [0, 5 * MIN_NS])):
        folding = TimeframeBars([parse_interval("5m")], partial_before)
        closed = [b.open_time for minute in range(2, 10) for b in folding.on_bar(bar(minute))]
        assert closed == kept, partial_before


def test_a_window_missing_its_last_run_bar_closes_with_the_next_one():
    folding = TimeframeBars([parse_interval("5m")])

    def bar(minute: int, close: float, ts: int | None = None) -> Bar:
        ts = (minute + 1) * MIN_NS if ts is None else ts
        return Bar("BTCUSDT", "1m", minute * MIN_NS, (minute + 1) * MIN_NS, close, close + 1, close - 1,
                   close, 1.0, close, 2, ts, ts)

    assert folding.on_bar(bar(0, 10.0)) == [] and folding.on_bar(bar(3, 12.0)) == []  # 1, 2, 4 empty
    closed = folding.on_bar(bar(6, 20.0))
    assert [(b.open_time, b.close_time, b.open, b.high, b.low, b.close, b.volume, b.trades, b.ts_init)
            for b in closed] == [(0, 5 * MIN_NS, 10.0, 13.0, 9.0, 12.0, 2.0, 4, 7 * MIN_NS)]
    flat = Bar("BTCUSDT", "1m", 10 * MIN_NS, 11 * MIN_NS, 20.0, 20.0, 20.0, 20.0, 0.0, 0.0, 0, 0, 0)
    (late,) = folding.on_bar(flat)  # closes the 5-10 window, whose last minute never came
    assert (late.open_time, late.open, late.trades) == (5 * MIN_NS, 20.0, 2)
    folding.on_bar(bar(11, 30.0))
    (window,) = folding.on_bar(bar(14, 25.0))
    assert (window.open, window.high, window.low, window.close, window.trades) == (30.0, 31.0, 24.0, 25.0, 4)


@pytest.mark.parametrize("timeframes, message", [
    ("7m", "not a whole multiple of the run's interval 5m"),
    ("5m", "not a whole multiple of the run's interval 5m longer than it"),
    ("15m,15m", "15m is listed twice"),
    ("tick:50", "tick, volume and value bars have no higher timeframe"),
    ("3x", "unknown interval"),
])
def test_a_bad_timeframe_is_one_line(tmp_path, capsys, timeframes, message):
    code = main(["backtest", "--interval", "5m", "--timeframes", timeframes, *WATCHER,
                 "--ledger", str(tmp_path / "l.db"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "l.db").exists() or query(tmp_path / "l.db", "SELECT * FROM runs").empty


def test_a_strategy_without_on_timeframe_bar_is_refused_in_one_line(tmp_path, capsys):
    code = main(["backtest", "--timeframes", "5m", "--ledger", str(tmp_path / "l.db"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "sma_cross has no on_timeframe_bar" in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("timeframes, message", [
    ("7m", "7m is not a whole multiple of the run's interval 5m"),
    ("15m", "strategy sma_cross has no on_timeframe_bar"),
])
def test_a_sweep_refuses_timeframes_its_trials_cannot_run_before_any_trial(tmp_path, capsys, timeframes,
                                                                             message):
    code = main(["sweep", "--interval", "5m", "--timeframes", timeframes, "--grid", "fast=2,3",
                 "--param", "slow=10", "--workers", "1", "--ledger", str(tmp_path / "l.db"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "l.db").exists() or query(tmp_path / "l.db", "SELECT * FROM runs").empty


@pytest.mark.parametrize("given", ["", ",", "5m,,1h", "5m,"])
def test_timeframes_given_empty_are_one_line(tmp_path, capsys, given):
    """``--timeframes ""`` ran without them (a strategy reading them got none, silently)."""
    code = main(["backtest", "--timeframes", given, *WATCHER, "--ledger", str(tmp_path / "l.db"),
                 "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "give one or more intervals" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "l.db").exists()


def test_with_empty_skip_each_symbols_bars_come_in_the_order_of_their_close(tmp_path):
    """``[bars] empty = "skip"``: a 5m window whose last minute had no trades closes at the next
    run bar, and reaches the strategy before that bar (which closes after it), not after it."""
    day = pd.read_csv(SAMPLE_DAY)
    day = day[(day.timestamp // 60).astype(int) % 5 != 4]  # no trades in any window's last minute
    path = write_derivatives(tmp_path / "BTCUSDT2025-06-01.csv.gz", day.timestamp.to_numpy(),
                             day.price.to_numpy(), day["size"].to_numpy(), np.where(day.side == "Buy", 1, -1))
    ledger = tmp_path / "l.db"
    done = papertape("backtest", "--data", str(path), "--ledger", str(ledger), "--json", "--no-progress",
                     "--set", "bars.empty=skip", *WATCHER, "--timeframes", "5m,1h", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = json.loads(done.stdout)["run_id"]
    saved = query(ledger, "SELECT state FROM strategy_state WHERE run_id = ?", (run_id,))
    events = pd.DataFrame(json.loads(saved.state.iloc[-1])["events"], columns=[
        "kind", "symbol", "interval", "open_time", "close_time", *COLUMNS, "clock"])
    higher = events[events.kind == "higher"]
    assert len(higher) > 250 and (higher.clock > higher.close_time + MIN_NS).all()  # each at a later bar
    assert (np.diff(events.close_time.to_numpy()) >= 0).all()
