"""``papertape live --symbols`` against the loopback exchange serving three archives as three
symbols, with a drop mid-session and later a stall of one symbol alone: one websocket
connection for every symbol; every symbol's bars equal the bars of its served stream; the
stalled symbol's silence is its own gap, backfilled, while the others' bars close on time; no
decision sees a trade of any symbol stamped after it; the recording replays into the same
ledger rows, with or without ``--symbols``."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.loopback.timemap import wall_ms
from tests.helpers.broker import instruments_with_sol
from tests.helpers.live import (
    LiveProcess,
    LiveResult,
    aligned_start_ms,
    archive_trades,
    assert_same_rows,
    compare_bars,
    expected_bars,
    papertape,
    query,
    served_ms,
    start_exchange,
    wait_for,
)
from tests.helpers.live_portfolio import symbol_archives

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
SPEED = 400
INTERVAL_MS = 2000
CLOSE_DELAY_NS = 1_000_000_000
STALL_AFTER_MS = 16_000  # after the drop at 11 s and its backfill
STALL_S = 3
STRATEGY = ("--strategy", "tests.helpers.live_portfolio:WatchedSmaCross", "--param", "fast=2",
            "--param", "slow=4", "--param", "notional=500", "--interval", "2s", "--timeframes", "6s")


@dataclass
class PortfolioSession:
    work: Path
    ledger: Path
    recording: Path
    archives: list[Path]
    done: LiveResult
    state: dict
    connections_seen: set[int]
    run_id: int
    settings: tuple[str, ...]
    stalled_ms: int


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> PortfolioSession:
    work = tmp_path_factory.mktemp("portfolio")
    archives = symbol_archives(work, SYMBOLS)
    settings = ("--set", f"broker.instruments={instruments_with_sol(work)}",
                "--set", f"bars.close_delay_ms={CLOSE_DELAY_NS // 1_000_000}")
    exchange = start_exchange(archives, work, speed=SPEED, faults="drop@11",
                              wall_start_ms=aligned_start_ms(lead_s=6))
    seen: set[int] = set()
    stall_from, stalled_ms = wall_ms() + STALL_AFTER_MS, 0
    try:
        live = LiveProcess(exchange, work, work / "live.db", "--symbols", ",".join(SYMBOLS), *STRATEGY,
                           *settings, "--record", str(work / "rec.jsonl"),
                           duration="24s")
        wait_for(lambda: exchange.state()["connections"] >= 1, 20, "the client to connect")
        while live.proc.poll() is None:  # the connections the server holds, through the session
            seen.add(exchange.state()["connections"])
            if not stalled_ms and wall_ms() >= stall_from:  # just after a bar's start, ETHUSDT alone
                now = wall_ms()
                time.sleep(((now // INTERVAL_MS + 1) * INTERVAL_MS + 50 - now) / 1000)
                stalled_ms = wall_ms()
                exchange.fault("stall", STALL_S, symbol="ETHUSDT")
            time.sleep(0.3)
        done = live.wait(60)
        state = exchange.state()
    finally:
        exchange.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    return PortfolioSession(work, work / "live.db", work / "rec.jsonl", archives, done, state, seen,
                            done.result["run_id"], settings, stalled_ms)


def test_one_connection_carries_every_symbol(session):
    result = session.done.result
    assert result["status"] == "finished" and result["symbols"] == list(SYMBOLS)
    assert set(result["by_symbol"]) == set(SYMBOLS)
    assert session.connections_seen <= {0, 1}, session.connections_seen  # never two at once
    assert result["reconnects"] >= 1 and result["late_trades"] == 0
    assert "Traceback" not in session.done.stderr
    served = {s["symbol"]: s["trades_served"] for s in session.state["symbols"]}
    assert set(served) == set(SYMBOLS) and min(served.values()) > 0
    run = query(session.ledger, "SELECT symbol FROM runs WHERE id = ?", (session.run_id,)).iloc[0]
    assert run.symbol == ",".join(SYMBOLS)


def test_every_symbols_bars_equal_the_bars_of_its_served_stream(session):
    trades = {s: archive_trades(p) for s, p in zip(SYMBOLS, session.archives, strict=True)}
    hist_start = min(int(t.ts.iloc[0]) for t in trades.values())  # the server's: the first trade of all
    step = INTERVAL_MS * 1_000_000
    gaps = query(session.ledger, "SELECT * FROM feed_gaps WHERE run_id = ?", (session.run_id,))
    dropped = gaps[gaps.detail.str.contains("no close frame")]
    assert set(dropped.symbol) == set(SYMBOLS), gaps  # the drop opened a gap in every symbol
    assert not (gaps.status == "unfilled").any(), gaps  # and every gap was backfilled
    for symbol in SYMBOLS:
        served = served_ms(trades[symbol], session.state["wall_start_ms"], SPEED, hist_start)
        expected = expected_bars(trades[symbol], served, INTERVAL_MS)
        bars = query(session.ledger, "SELECT * FROM bars WHERE run_id = ? AND symbol = ? ORDER BY open_time",
                     (session.run_id, symbol))
        assert len(bars) >= 8, symbol
        assert (bars.open_time.diff().dropna() == step).all(), symbol  # none skipped
        problems = compare_bars(bars, expected)
        assert not problems, f"{symbol}: " + "\n".join(problems[:20])
        ns = served * 1_000_000
        span = (ns >= bars.open_time.min()) & (ns < bars.open_time.max() + step)
        assert bars.trades.sum() == int(span.sum()), symbol  # no trade lost, none counted twice


def test_a_stall_of_one_symbol_is_its_own_gap_and_holds_only_its_bars(session):
    assert session.stalled_ms, "the session ended before the stall"
    fired = [f for f in session.state["faults_fired"] if f["fault"] == "stall"]
    assert [f["symbol"] for f in fired] == ["ETHUSDT"], session.state["faults_fired"]
    gaps = query(session.ledger, "SELECT * FROM feed_gaps WHERE run_id = ? ORDER BY id", (session.run_id,))
    silent = gaps[gaps.status == "silent"]
    assert set(silent.symbol) == {"ETHUSDT"}, gaps  # the stall is recorded, for ETHUSDT alone
    assert (silent.ts >= session.stalled_ms * 1_000_000).any(), gaps
    after = gaps[gaps.ts >= session.stalled_ms * 1_000_000]
    assert not (after.status == "disconnected").any(), gaps  # the others' data kept the connection
    # The bar of the stall's first moments: ETHUSDT's is held until its backfill, past the close
    # delay; the other symbols' of that close time close on time.
    close = (session.stalled_ms // INTERVAL_MS + 1) * INTERVAL_MS * 1_000_000
    states = query(session.ledger, "SELECT state FROM strategy_state WHERE run_id = ? ORDER BY id",
                   (session.run_id,))
    delays = json.loads(states.state.iloc[-1])["bar_delays"][str(close)]
    assert delays["ETHUSDT"] > CLOSE_DELAY_NS, delays
    assert delays["BTCUSDT"] <= CLOSE_DELAY_NS and delays["SOLUSDT"] <= CLOSE_DELAY_NS, delays


def test_no_decision_sees_a_trade_of_any_symbol_stamped_after_it(session):
    states = query(session.ledger, "SELECT state FROM strategy_state WHERE run_id = ? ORDER BY id",
                   (session.run_id,))
    last = json.loads(states.state.iloc[-1])
    assert last["symbols_seen"] == sorted(SYMBOLS)
    assert last["decisions"] >= 3 * 8 and last["ahead"] == 0, last
    assert last["late_sets"] == 0, last  # each close time's set at its close, of that close time alone
    # A set holds exactly the bars that closed by its deadline (close + close delay); a bar a feed
    # gap held past it reaches on_bar alone, and a close time the gap held for every symbol has no set.
    prompt = {close: sorted(s for s, delay in delays.items() if delay <= CLOSE_DELAY_NS)
              for close, delays in last["bar_delays"].items()}
    assert last["set_symbols"] == {close: symbols for close, symbols in prompt.items() if symbols}, last
    assert last["sets"] == len(last["set_symbols"]) >= 4, last
    fills = query(session.ledger, "SELECT * FROM fills WHERE run_id = ? ORDER BY id", (session.run_id,))
    assert set(fills.symbol) == set(SYMBOLS), fills.symbol.value_counts()
    signed = (fills.side * fills.qty).groupby(fills.symbol).cumsum()  # each symbol's own position
    assert np.allclose(fills.position, signed, atol=1e-9), fills[["symbol", "position"]]
    orders = query(session.ledger, "SELECT o.symbol, o.ts_init, max(b.open_time) AS bar_open FROM orders o "
                   "JOIN bars b ON b.run_id = o.run_id AND b.symbol = o.symbol "
                   "AND b.open_time + 2000000000 <= o.ts_init "
                   "WHERE o.run_id = ? GROUP BY o.id", (session.run_id,))
    assert len(orders) == query(session.ledger, "SELECT count(*) AS n FROM orders WHERE run_id = ?",
                                (session.run_id,)).n.iloc[0]  # every order follows a closed bar


def test_each_symbols_6s_bars_fold_its_2s_bars_and_come_at_their_close(session):
    """The higher timeframe live: each symbol's 6s bars are its three 2s bars of the ledger,
    folded, each delivered at or after its close (the stalled symbol's later, with its bars)."""
    states = query(session.ledger, "SELECT state FROM strategy_state WHERE run_id = ? ORDER BY id",
                   (session.run_id,))
    columns = ["symbol", "open_time", "close_time", "open", "high", "low", "close", "trades", "clock"]
    higher = pd.DataFrame(json.loads(states.state.iloc[-1])["higher"], columns=columns)
    assert set(higher.symbol) == set(SYMBOLS) and (higher.clock >= higher.close_time).all(), higher
    bars = query(session.ledger, "SELECT * FROM bars WHERE run_id = ? ORDER BY open_time", (session.run_id,))
    for symbol, mine in higher.groupby("symbol"):
        assert len(mine) >= 2, symbol
        first = bars[bars.symbol == symbol].open_time.min()
        for row in mine.itertuples():
            run_bars = bars[(bars.symbol == symbol) & (bars.open_time >= row.open_time)
                            & (bars.open_time < row.close_time)]
            # three, but for a first window the session joined before its first trade: the bars
            # of a stream that had not begun are none, not flat (a 6s bar of those trades holds no more)
            assert len(run_bars) == 3 or (row.open_time <= first and len(run_bars) >= 1), (symbol, row)
            real = run_bars[run_bars.trades > 0]
            assert row.trades == run_bars.trades.sum() and row.close == run_bars.close.iloc[-1], (symbol, row)
            if len(real):
                assert (row.open, row.high, row.low) == (real.open.iloc[0], real.high.max(), real.low.min())


@pytest.mark.parametrize("named", [False, True], ids=["recording-names-its-symbols", "with---symbols"])
def test_the_recording_replays_into_the_same_rows(session, named):
    replay_db = session.work / f"replay-{named}.db"
    symbols = ("--symbols", ",".join(SYMBOLS)) if named else ()
    done = papertape("backtest", "--data", str(session.recording), *symbols, "--ledger", str(replay_db),
                     *STRATEGY, *session.settings, "--json", "--no-progress", cwd=session.work)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    counts = assert_same_rows(session.ledger, session.run_id, replay_db, result["run_id"])
    assert counts["bars"] >= 3 * 8 and counts["fills"] >= 3 and counts["feed_gaps"] >= 3, counts
    assert result["symbols"] == list(SYMBOLS) and result["by_symbol"] == session.done.result["by_symbol"]
    header = json.loads(session.recording.read_text().split("\n", 1)[0])
    assert header["symbols"] == list(SYMBOLS)
    assert pd.Series([json.loads(line).get("s") for line in session.recording.read_text().splitlines()[1:-1]]
                     ).isin(SYMBOLS).all()


def test_a_symbol_the_exchange_does_not_serve_is_named_in_one_line(tmp_path):
    exchange = start_exchange([symbol_archives(tmp_path, ("BTCUSDT",))[0]], tmp_path, speed=SPEED)
    try:
        live = LiveProcess(exchange, tmp_path, tmp_path / "live.db", "--symbols", "BTCUSDT,ETHUSDT",
                           duration="20s")
        done = live.wait(60)
    finally:
        exchange.stop()
    assert done.returncode == 2, done.stderr[-2000:]
    assert "ETHUSDT" in done.stderr and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "publicTrade.ETHUSDT" in last and "publicTrade.BTCUSDT" not in last, last
