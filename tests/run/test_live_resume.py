"""A live session killed with SIGKILL (holding a position and a resting limit order) and
resumed with ``papertape live --resume RUN_ID`` against the same exchange: the new run starts
from the same position, cash and open orders (as the ledger and the strategy itself see
them), goes on numbering orders after the old ones, and ``papertape report`` of the new run
covers both runs."""

from __future__ import annotations

import json

import numpy as np

from tests.helpers.live import (
    SAMPLE_DAY,
    LiveProcess,
    check_ledger,
    papertape,
    query,
    start_exchange,
    table_has,
    wait_for,
)

STRATEGY = "tests.helpers.live:BuyThenRest"
RESTING = ("SELECT 1 FROM orders o JOIN order_updates u USING (client_order_id) "
           "WHERE o.order_type = 'limit' AND u.status = 'accepted'")


def test_a_killed_session_resumes_with_its_position_cash_and_open_orders(tmp_path):
    ledger = tmp_path / "live.db"
    exchange = start_exchange([SAMPLE_DAY], tmp_path, speed=300)
    try:
        first = LiveProcess(exchange, tmp_path, ledger, "--strategy", STRATEGY, duration="120s",
                            interval="1s")
        wait_for(lambda: table_has(ledger, RESTING) and table_has(ledger, "SELECT 1 FROM fills"), 60,
                 "a fill and a resting limit order in the ledger")
        first.kill()
        run1 = int(query(ledger, "SELECT id FROM runs").id.iloc[0])
        listed = papertape("runs", "--ledger", str(ledger), "--json", cwd=tmp_path)
        assert json.loads(listed.stdout)[0]["status"] == "interrupted"
        second = LiveProcess(exchange, tmp_path, ledger, "--resume", str(run1), "--strategy", STRATEGY,
                             "--param", "sell=0.001", duration="5s", interval="1s")
        done = second.wait(60)
    finally:
        exchange.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    run2 = done.result["run_id"]
    assert done.result["status"] == "finished" and "resumed from run" in done.stderr
    assert f"resuming run {run1} with sell 0.001" in done.stderr  # a changed parameter is said
    assert done.result["resumed_from"] == run1

    runs = query(ledger, "SELECT * FROM runs ORDER BY id")
    assert list(runs.id) == [run1, run2] and runs.resumed_from.iloc[1] == run1
    orders1 = query(ledger, "SELECT * FROM orders WHERE run_id = ? ORDER BY id", (run1,))
    fills1 = query(ledger, "SELECT * FROM fills WHERE run_id = ? ORDER BY id", (run1,))
    assert list(orders1.order_type) == ["market", "limit"] and len(fills1) == 1
    limit_id = orders1.client_order_id.iloc[1]

    # what the strategy saw when the resumed run started
    saved = query(ledger, "SELECT state FROM strategy_state WHERE run_id = ?", (run2,))
    state = json.loads(saved.state.iloc[-1])
    at_start = state["at_start"]
    assert at_start["position"] == fills1.position.iloc[-1] == 0.002
    assert np.isclose(at_start["cash"], fills1.cash.iloc[-1], rtol=0, atol=1e-9)
    assert at_start["open_orders"] == [limit_id]
    assert state["bars"] >= 2

    # the resumed run: one new order (the sell), numbered after the old ones; the limit
    # order still rests (neither re-sent nor touched)
    orders2 = query(ledger, "SELECT * FROM orders WHERE run_id = ?", (run2,))
    assert list(orders2.order_type) == ["market"] and list(orders2.side) == [-1]
    assert orders2.client_order_id.iloc[0] == f"{STRATEGY}-3"
    updates2 = query(ledger, "SELECT * FROM order_updates WHERE run_id = ?", (run2,))
    assert limit_id not in set(updates2.client_order_id)
    fills = check_ledger(ledger, [run1, run2])
    assert list(fills.position) == [0.002, 0.001]

    # metrics of the resumed run cover both runs
    report = papertape("report", "--run", str(run2), "--ledger", str(ledger), "--json", "--out",
                       str(tmp_path / "report.html"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    metrics = json.loads(report.stdout)["metrics"]
    equity = query(ledger, "SELECT run_id, count(*) AS n FROM equity GROUP BY run_id ORDER BY run_id")
    assert list(equity.run_id) == [run1, run2] and (equity.n > 0).all()
    assert metrics["n_fills"] == 2 and metrics["bars"] == equity.n.sum()
