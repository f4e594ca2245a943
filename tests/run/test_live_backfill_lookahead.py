"""No look-ahead through a live gap's backfill. While a stall (or a downtime) is backfilled
the bars are held; when they close, each must be marked, and seen by the strategy, as of its
own close: a far-off trade planted late in the stall, which fills a resting limit order,
changes nothing stamped before it (two replays of the session's recording, with and without
the plant, agree on every equity row, order, fill and decision before it), and every
equity row of the live run holds its bar's close as the mark and the fills made by then as
the position."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tests.helpers.live import (
    SAMPLE_DAY,
    LiveProcess,
    aligned_start_ms,
    archive_trades,
    assert_same_rows,
    papertape,
    query,
    served_ms,
    start_exchange,
    table_has,
    wait_for,
)

SPEED = 100  # REST keeps the last 1000 trades: about 23 s of the sample at this speed
MS = 1_000_000
STRATEGY = ("--strategy", "tests.helpers.live:WatchThenRest", "--param", "depth=0.1")
STALL_AT_S, PLANT_AT_S = 8.5, 11.5  # after the stream's start: the plant is 3 s into a 5 s stall
RESTING = ("SELECT 1 FROM orders o JOIN order_updates u USING (client_order_id) "
           "WHERE o.order_type = 'limit' AND u.status = 'accepted'")


def planted_archive(tmp_path: Path, at_s: float = PLANT_AT_S) -> tuple[Path, dict]:
    """A copy of the sample day with the trade served nearest ``at_s`` after the stream's
    start priced 15% lower (a resting buy limit 10% below the market fills on it). Where a
    trade is served relative to the stream's start does not depend on that start, so the
    copy is made before the start is chosen: its minutes of work under load are no part of
    the time a session has to come up (``at_ms`` is the plant's offset; see ``served_at``)."""
    trades = archive_trades(SAMPLE_DAY)
    offsets = served_ms(trades, 0, SPEED)
    index = int(np.argmin(np.abs(offsets - at_s * 1000)))
    trade_id = trades.id.iloc[index]
    frame = pd.read_csv(SAMPLE_DAY, dtype=str)
    row = frame.index[frame.trdMatchID == trade_id][0]
    original = frame.at[row, "price"]
    planted = f"{round(float(original) * 0.85, 1):.1f}"
    assert not (frame.price == planted).any()
    frame.at[row, "price"] = planted
    out = tmp_path / "planted" / SAMPLE_DAY.name
    out.parent.mkdir()
    with gzip.open(out, "wt", newline="") as fh:
        frame.to_csv(fh, index=False)
    return out, {"id": trade_id, "price": planted, "original": original, "at_ms": int(offsets[index])}


def served_at(plant: dict, wall_start: int) -> dict:
    """``plant`` with ``served_ns``: when a stream starting at ``wall_start`` serves it."""
    return plant | {"served_ns": (wall_start + plant["at_ms"]) * MS}


def without_plant(recording: Path, plant: dict, out: Path) -> int:
    """The recording with the planted trade at its archive price; returns the lines changed."""
    changed = 0
    with open(recording) as src, open(out, "w") as dst:
        for line in src:
            if plant["id"] in line:
                assert f'\\"{plant["price"]}\\"' in line or f'"{plant["price"]}"' in line, line[:300]
                line = line.replace(f'"{plant["price"]}"', f'"{plant["original"]}"')
                line = line.replace(f'\\"{plant["price"]}\\"', f'\\"{plant["original"]}\\"')
                changed += 1
            dst.write(line)
    return changed


def replay(recording: Path, ledger: Path, cwd: Path) -> int:
    done = papertape("backtest", "--data", str(recording), "--ledger", str(ledger), *STRATEGY,
                     "--interval", "2s", "--json", "--no-progress", cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)["run_id"]


def before(db: Path, run_id: int, table: str, column: str, ts: int) -> pd.DataFrame:
    frame = query(db, f"SELECT * FROM {table} WHERE run_id = ? AND {column} < ? ORDER BY id", (run_id, ts))
    return frame.drop(columns=["id", "run_id"])


def seen_before(db: Path, run_id: int, ts: int) -> list:
    state = query(db, "SELECT state FROM strategy_state WHERE run_id = ? ORDER BY id DESC LIMIT 1", (run_id,))
    return [view for view in json.loads(state.state.iloc[0])["seen"] if view[0] < ts]


def held_windows(db: Path, run_id: int) -> list[tuple[int, int]]:
    """``(from, to)`` of each gap that held the bars: from its start to when it closed."""
    gaps = query(db, "SELECT * FROM feed_gaps WHERE run_id = ? ORDER BY id", (run_id,))
    out, start = [], None
    for gap in gaps.itertuples():
        if gap.status in ("silent", "disconnected") and start is None:
            start = gap.gap_from
        elif gap.status in ("backfilled", "unfilled") and start is not None:
            out.append((start, gap.ts))
            start = None
    return out


def check_held_bars(db: Path, run_id: int, fills_of: list[int]) -> pd.DataFrame:
    """Every equity row of a bar held by a gap is marked at its bar's close and holds the
    position of the fills stamped before its close (none later: ``fills_of`` are the runs
    whose fills count, oldest first); the strategy saw the same position at that bar.
    Returns the held bars' rows."""
    rows = query(db, "SELECT * FROM equity WHERE run_id = ? ORDER BY ts", (run_id,))
    windows = held_windows(db, run_id)
    held = rows[[any(lo < ts <= hi for lo, hi in windows) for ts in rows.ts]]
    marks = ",".join(map(str, fills_of))
    fills = query(db, f"SELECT * FROM fills WHERE run_id IN ({marks}) ORDER BY run_id, id")
    wrong = held[held.mark_price != held.close]
    assert wrong.empty, wrong[["ts", "mark_price", "close"]]
    signed, stamped = (fills.side * fills.qty).to_numpy(), fills.ts_event.to_numpy()
    seen = {int(view[0]): view[1] for view in seen_before(db, run_id, np.iinfo(np.int64).max)}
    for row in held.itertuples():
        position = signed[stamped < row.ts].sum()
        assert abs(row.position - position) < 1e-9, (row.ts, row.position, position)
        assert abs(seen[row.ts] - position) < 1e-9, (row.ts, seen[row.ts], position)
    return held


def test_a_trade_planted_late_in_a_stall_changes_nothing_stamped_before_it(tmp_path):
    archive, plant = planted_archive(tmp_path)
    live_db, recording = tmp_path / "live.db", tmp_path / "rec.jsonl"
    # the exchange and the session take 16 s to come up at load 8 on two cores (2 s idle), and
    # the session's limit order must rest (two bars after its first) before the stall
    wall_start = aligned_start_ms(lead_s=20)
    plant = served_at(plant, wall_start)
    stall_at = (wall_start + STALL_AT_S * 1000) / 1000
    exchange = start_exchange([archive], tmp_path, speed=SPEED, wall_start_ms=wall_start)
    try:
        seconds = (wall_start - time.time_ns() // MS) / 1000 + 18  # until 18 s into the stream
        live = LiveProcess(exchange, tmp_path, live_db, "--stale-after", "30", *STRATEGY,
                           "--record", str(recording), duration=f"{seconds:.1f}s")
        wait_for(lambda: table_has(live_db, RESTING), 60, "the resting limit order")
        assert time.time() < stall_at, "the session came too late to rest its order before the stall"
        time.sleep(stall_at - time.time())
        exchange.fault("stall", 5)
        done = live.wait(90)
    finally:
        exchange.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = done.result["run_id"]
    gaps = query(live_db, "SELECT * FROM feed_gaps WHERE run_id = ? ORDER BY id", (run_id,))
    assert "silent" in set(gaps.status), (gaps, done.stderr[-2000:])  # the stall held the bars
    fills = query(live_db, "SELECT * FROM fills WHERE run_id = ? ORDER BY id", (run_id,))
    assert (fills.ts_event == plant["served_ns"]).any(), (fills, plant)  # the resting limit took the plant
    held = check_held_bars(live_db, run_id, [run_id])
    assert (held.ts < plant["served_ns"]).any(), (held_windows(live_db, run_id), plant)

    with_db, without_db = tmp_path / "with.db", tmp_path / "without.db"
    assert without_plant(recording, plant, tmp_path / "without.jsonl") >= 1
    with_run = replay(recording, with_db, tmp_path)
    assert_same_rows(live_db, run_id, with_db, with_run)  # the recording replays the live session
    without_run = replay(tmp_path / "without.jsonl", without_db, tmp_path)
    cut = plant["served_ns"]
    for table, column in (("equity", "ts"), ("fills", "ts_event"), ("orders", "ts_event")):
        pd.testing.assert_frame_equal(before(with_db, with_run, table, column, cut),
                                      before(without_db, without_run, table, column, cut),
                                      check_exact=True, obj=table)
    assert seen_before(with_db, with_run, cut) == seen_before(without_db, without_run, cut)
    assert len(seen_before(with_db, with_run, cut)) >= 3


def test_an_order_resting_through_a_downtime_fills_in_time_order_on_its_backfill(tmp_path):
    # killed once its limit order rests, resumed after the plant was served: the downtime's
    # bars before the plant hold the position without the fill the plant made
    # the plant 22 s into the stream: run 1 may take until 20 s to start and rest its order on
    # a loaded machine, and REST (about 23 s of trades) still reaches back to its kill
    archive, plant = planted_archive(tmp_path, at_s=22.3)
    wall_start = aligned_start_ms(lead_s=10)
    plant = served_at(plant, wall_start)
    ledger = tmp_path / "live.db"
    exchange = start_exchange([archive], tmp_path, speed=SPEED, wall_start_ms=wall_start)
    try:
        first = LiveProcess(exchange, tmp_path, ledger, *STRATEGY, duration="60s")
        wait_for(lambda: table_has(ledger, "SELECT 1 FROM orders WHERE order_type = 'limit'"), 60,
                 "the resting limit order")
        time.sleep(max(0.0, (wall_start + 10_000) / 1000 - time.time()))
        first.kill()
        killed_ns = time.time_ns()
        run1 = int(query(ledger, "SELECT id FROM runs").id.iloc[0])
        time.sleep(max(0.0, plant["served_ns"] / 1e9 + 0.2 - time.time()))
        done = LiveProcess(exchange, tmp_path, ledger, "--resume", str(run1), duration="8s").wait(90)
    finally:
        exchange.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    assert killed_ns < plant["served_ns"] - 2000 * MS, "run 1 came too late to rest its order first"
    run2 = done.result["run_id"]
    orders = query(ledger, "SELECT * FROM orders WHERE run_id = ? AND order_type = 'limit'", (run1,))
    assert len(orders) == 1, orders  # the limit rested when run 1 was killed
    fills = query(ledger, "SELECT * FROM fills WHERE run_id = ?", (run2,))
    assert (fills.ts_event == plant["served_ns"]).any(), (fills, plant)
    held = check_held_bars(ledger, run2, [run1, run2])
    assert (held.ts < plant["served_ns"]).any(), (held_windows(ledger, run2), plant)
