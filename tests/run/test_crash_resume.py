"""SIGKILL at random moments: of backtests (the ledger stays whole: every run finished or
interrupted, its fills consistent, a later backtest into the same ledger finishes) and of a
live session resumed after every kill (the runs form one chain, each continuing the one
before it and none continued twice; no order, fill or bar is doubled; the position after
every fill is the sum of the fills before it across the chain; each downtime is recorded)."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import time

import numpy as np

from tests.helpers.live import (
    PAPERTAPE,
    SAMPLE_DAY,
    LiveProcess,
    check_ledger,
    env,
    query,
    start_exchange,
    table_has,
    wait_for,
)

SAMPLE = str(SAMPLE_DAY.parent / "*.csv.gz")


def integrity(db) -> None:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


def test_backtests_killed_at_random_moments_leave_a_whole_ledger(tmp_path):
    ledger, rng = tmp_path / "bt.db", random.Random(15)
    cmd = [PAPERTAPE, "backtest", "--ledger", str(ledger), "--data", SAMPLE, "--interval", "5s", "--param",
           "fast=2", "--param", "slow=3", "--set", "ledger.batch_rows=500", "--no-progress"]
    for _ in range(3):
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.5, 4.0))  # anywhere from set-up to deep in the replay
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    done = subprocess.run(cmd, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    integrity(ledger)
    runs = query(ledger, "SELECT * FROM runs ORDER BY id")
    listed = subprocess.run([PAPERTAPE, "runs", "--ledger", str(ledger), "--json"], cwd=tmp_path, env=env(),
                            capture_output=True, text=True, timeout=60)
    statuses = {row["id"]: row["status"] for row in json.loads(listed.stdout)}
    assert statuses[int(runs.id.iloc[-1])] == "finished"
    # a kill lands anywhere in 0.5-4 s: on an idle machine a run may have finished by then
    assert all(statuses[int(i)] in ("interrupted", "finished") for i in runs.id.iloc[:-1]), statuses
    assert runs.resumed_from.isna().all()
    for run_id in runs.id:
        fills = query(ledger, "SELECT * FROM fills WHERE run_id = ? ORDER BY id", (int(run_id),))
        orders = query(ledger, "SELECT client_order_id FROM orders WHERE run_id = ?", (int(run_id),))
        assert set(fills.client_order_id) <= set(orders.client_order_id)
        assert orders.client_order_id.is_unique
        # as floats: a run killed before its first fill has no rows, read as object columns
        signed = (fills.side * fills.qty).cumsum().to_numpy(dtype=float)
        assert np.allclose(fills.position.to_numpy(dtype=float), signed, atol=1e-9)
        equity = query(ledger, "SELECT ts FROM equity WHERE run_id = ? ORDER BY id", (int(run_id),))
        assert equity.ts.is_unique and equity.ts.is_monotonic_increasing


def test_a_live_session_killed_and_resumed_again_and_again_is_one_history(tmp_path):
    ledger, rng = tmp_path / "live.db", random.Random(16)
    exchange = start_exchange([SAMPLE_DAY], tmp_path, speed=200)
    strategy = ("--strategy", "tests.helpers.live:FlipEveryBar")
    try:
        live = LiveProcess(exchange, tmp_path, ledger, *strategy, duration="120s", interval="1s")
        wait_for(lambda: table_has(ledger, "SELECT 1 FROM fills"), 60, "a fill")
        for _ in range(3):
            time.sleep(rng.uniform(0.0, 3.0))
            live.kill()
            newest = int(query(ledger, "SELECT max(id) AS id FROM runs").id[0])
            live = LiveProcess(exchange, tmp_path, ledger, "--resume", str(newest), duration="120s",
                               interval="1s")
            wait_for(lambda n=newest: table_has(ledger, "SELECT 1 FROM runs WHERE resumed_from = ?", (n,)),
                     60, "the resumed run")
        time.sleep(rng.uniform(1.0, 3.0))
        live.proc.send_signal(signal.SIGTERM)
        done = live.wait(60)
    finally:
        exchange.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    integrity(ledger)
    runs = query(ledger, "SELECT * FROM runs ORDER BY id")
    ids = [int(i) for i in runs.id]
    assert len(ids) == 4 and list(runs.resumed_from.iloc[1:].astype(int)) == ids[:-1]  # one chain, no fork
    fills = check_ledger(ledger, ids, status="stopped")  # positions sum across the chain, no orphan
    assert len(fills) >= 2 and not fills.client_order_id.duplicated().any()
    bars = query(ledger, f"SELECT * FROM bars WHERE run_id IN ({','.join(map(str, ids))}) ORDER BY open_time")
    assert bars.open_time.is_unique  # no bar recorded twice
    gaps = query(ledger, "SELECT * FROM feed_gaps ORDER BY id")
    for previous, run_id in zip(ids, ids[1:], strict=False):  # every downtime is recorded
        mine = gaps[gaps.run_id == run_id]
        downtime = mine[mine.detail.str.startswith(f"downtime since run {previous}")]
        assert len(downtime) >= 1, gaps
    holes = np.flatnonzero(np.diff(bars.open_time.to_numpy()) != 1_000_000_000)
    unfilled = gaps[gaps.status == "unfilled"]
    for i in holes:  # a missing bar lies in a recorded unfilled gap
        start = int(bars.open_time.iloc[i]) + 1_000_000_000
        assert ((unfilled.gap_from <= start) & (unfilled.gap_to >= start)).any(), (start, gaps)
