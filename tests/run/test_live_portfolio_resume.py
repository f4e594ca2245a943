"""A live portfolio session (three symbols, each holding a position and a resting limit
order) killed with SIGKILL and resumed with ``papertape live --resume RUN_ID``: every symbol's
position and open order come back, as the strategy sees them, and the downtime is a gap of
every symbol, backfilled from REST."""

from __future__ import annotations

import json

import numpy as np

from engine.core.events import DOWNTIME
from tests.helpers.broker import instruments_with_sol
from tests.helpers.live import LiveProcess, papertape, query, start_exchange, table_has, wait_for
from tests.helpers.live_portfolio import symbol_archives

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
STRATEGY = "tests.helpers.live_portfolio:BuyThenRestEach"
RESTING = ("SELECT count(DISTINCT o.symbol) AS n FROM orders o JOIN order_updates u USING (client_order_id) "
           "WHERE o.order_type = 'limit' AND u.status = 'accepted' HAVING n = 3")


def test_a_killed_portfolio_session_resumes_every_symbols_position_and_open_order(tmp_path):
    ledger = tmp_path / "live.db"
    rules = ("--set", f"broker.instruments={instruments_with_sol(tmp_path)}")
    # at 100x REST's last 1000 trades of BTCUSDT reach back about 30 s; at 300x an 8.7 s downtime
    # (load 8-10: the resumed process's start) took 649 of them, and every gap must be filled
    exchange = start_exchange(symbol_archives(tmp_path, SYMBOLS), tmp_path, speed=100)
    try:
        first = LiveProcess(exchange, tmp_path, ledger, "--symbols", ",".join(SYMBOLS), "--strategy",
                            STRATEGY, *rules, duration="120s", interval="1s")
        wait_for(lambda: table_has(ledger, RESTING), 60, "a resting limit order of every symbol")
        first.kill()
        run1 = int(query(ledger, "SELECT id FROM runs").id.iloc[0])
        second = LiveProcess(exchange, tmp_path, ledger, "--resume", str(run1), *rules, duration="5s",
                             interval="1s")
        done = second.wait(60)
        changed = papertape("live", "--resume", str(done.result["run_id"]), "--symbols", "BTCUSDT,ETHUSDT",
                            "--ledger", str(ledger), "--ws-url", exchange.ws, "--rest-url", exchange.url,
                            *rules, cwd=tmp_path)
    finally:
        exchange.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    run2 = done.result["run_id"]
    assert done.result["status"] == "finished" and done.result["resumed_from"] == run1
    assert done.result["symbols"] == list(SYMBOLS)
    assert query(ledger, "SELECT symbol FROM runs WHERE id = ?", (run2,)).symbol.iloc[0] == ",".join(SYMBOLS)

    fills1 = query(ledger, "SELECT * FROM fills WHERE run_id = ? ORDER BY id", (run1,))
    orders1 = query(ledger, "SELECT * FROM orders WHERE run_id = ? AND order_type = 'limit' ORDER BY id",
                    (run1,))
    state = json.loads(query(ledger, "SELECT state FROM strategy_state WHERE run_id = ? ORDER BY id",
                             (run2,)).state.iloc[-1])["at_start"]
    held = fills1.groupby("symbol").position.last().to_dict()
    assert set(held) == set(SYMBOLS) and all(q > 0 for q in held.values())
    assert {s: state["positions"].get(s, 0.0) for s in SYMBOLS} == held
    assert np.isclose(state["cash"], fills1.cash.iloc[-1], rtol=0, atol=1e-9)
    resting = orders1.groupby("symbol").client_order_id.apply(list).to_dict()
    assert state["open_orders"] == resting and all(len(ids) == 1 for ids in resting.values())
    # the resumed run neither re-sent nor touched the resting orders
    updates2 = query(ledger, "SELECT * FROM order_updates WHERE run_id = ?", (run2,))
    assert not set(updates2.client_order_id) & set(orders1.client_order_id)

    gaps = query(ledger, "SELECT * FROM feed_gaps WHERE run_id = ? AND detail LIKE ?",
                 (run2, f"%{DOWNTIME}%"))
    filled = gaps[gaps.status == "backfilled"]
    assert sorted(filled.symbol) == sorted(SYMBOLS), gaps  # the downtime is every symbol's gap, filled
    assert not (gaps.status == "unfilled").any(), gaps

    # a resume cannot change the symbols a run trades (one line, exit 2)
    assert changed.returncode == 2 and "cannot change them" in changed.stderr, changed.stderr
    assert "Traceback" not in changed.stderr
