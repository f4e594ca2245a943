"""The SQLite ledger: what the recorder writes for each event, batching and atomic batches,
writer errors, run status (finished / failed / interrupted), reading runs back."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from engine.core.clock import NS_PER_MS, NS_PER_S
from engine.core.events import Funding
from engine.feeds.history.sources import DataError, load_bars_from
from engine.ledger import store
from engine.ledger.batch_writer import ROWS_PER_INSERT
from engine.ledger.liveness import ResumeRefused
from engine.ledger.memory import MemoryLedger
from engine.ledger.reader import LedgerQueryError, LedgerReader, ledger_bars
from engine.ledger.schema import COLUMNS, database_url
from engine.ledger.store import Ledger
from tests.helpers.broker import BTC, MINUTE, T0, Harness, attach_ledger, read_table, start_run
from tests.helpers.live import wait_for

S = NS_PER_S


def fill_row(run_id: int, i: int) -> tuple:
    """A fills row in COLUMNS["fills"] order."""
    return (run_id, f"o{i}", "s", BTC, 1, 30_000.0, 0.001, 0.0165, "taker", 0.0, 0.001 * (i + 1),
            30_000.0, 10_000.0, 10_000.0, T0 + i, T0 + i)


def test_fill_rows_match_columns():
    assert len(fill_row(1, 0)) == len(COLUMNS["fills"])


def test_recorder_writes_orders_updates_fills_funding_bars_and_equity(tmp_path):
    path = tmp_path / "ledger.db"
    h = Harness(cash=10_000.0, taker=0.0005, maker=0.0002)
    ledger, run_id, recorder = attach_ledger(h, path)
    h.trade(T0 + S, 30_000.0)
    buy = h.order(+1, 0.1, ts=T0 + 2 * S)
    h.trade(T0 + 3 * S, 30_010.0)
    rest = h.order(-1, 0.05, "limit", price=30_500.0, ts=T0 + 4 * S)
    bad = h.order(+1, 0.0015, ts=T0 + 5 * S)
    h.trade(T0 + 50 * S, 30_020.0)
    h.bar(T0, 30_000.0, 30_020.0, 30_000.0, 30_020.0)  # closes at T0 + 60 s
    h.bus.process(Funding(BTC, 0.0001, 30_020.0, T0 + 61 * S, T0 + 61 * S))
    h.trade(T0 + 70 * S, 30_600.0)  # fills the resting sell at 30,500 as maker
    h.bar(T0 + MINUTE, 30_020.0, 30_600.0, 30_020.0, 30_600.0)
    recorder.save_state("s", T0 + 2 * MINUTE, {"k": 1})
    ledger.finish_run(run_id, "finished", summary={"fills": 2})
    ledger.close()

    orders = read_table(path, "SELECT * FROM orders ORDER BY id")
    assert orders.client_order_id.tolist() == [buy, rest, bad]
    assert orders[["side", "qty", "order_type", "time_in_force", "reduce_only"]].values.tolist() == [
        [1, 0.1, "market", "GTC", 0], [-1, 0.05, "limit", "GTC", 0], [1, 0.0015, "market", "GTC", 0]]
    assert orders.price.isna().tolist() == [True, False, True] and orders.price[1] == 30_500.0

    updates = read_table(path, "SELECT client_order_id, status, reason FROM order_updates ORDER BY id")
    assert list(zip(updates.client_order_id, updates.status, strict=True)) == [
        (buy, "accepted"), (buy, "filled"), (rest, "accepted"), (bad, "rejected"), (rest, "filled")]
    assert "qty step" in updates.reason[3]

    fills = read_table(path, "SELECT * FROM fills ORDER BY id")
    assert fills.client_order_id.tolist() == [buy, rest]
    first, second = fills.iloc[0], fills.iloc[1]
    assert (first.price, first.qty, first.liquidity, first.position) == (30_010.0, 0.1, "taker", 0.1)
    assert first.fee == pytest.approx(0.1 * 30_010.0 * 0.0005)
    assert first.cash == pytest.approx(10_000.0 - first.fee)
    assert first.avg_price == pytest.approx(30_010.0)
    assert (second.price, second.liquidity, second.position) == (30_500.0, "maker", pytest.approx(0.05))
    assert second.realized_pnl == pytest.approx(0.05 * 490.0)  # per fill, gross of fees
    funding_paid = 0.1 * 30_020.0 * 0.0001
    assert second.cash == pytest.approx(first.cash - funding_paid + 0.05 * 490.0 - second.fee)
    assert second.equity == pytest.approx(second.cash + 0.05 * (30_600.0 - 30_010.0))
    assert (first.ts_event, second.ts_event) == (T0 + 3 * S, T0 + 70 * S)

    funding = read_table(path, "SELECT * FROM funding")
    assert funding[["rate", "mark_price", "position"]].values.tolist() == [[0.0001, 30_020.0, 0.1]]
    assert funding.payment[0] == pytest.approx(funding_paid)

    equity = read_table(path, "SELECT * FROM equity ORDER BY id")
    assert equity.ts.tolist() == [T0 + MINUTE, T0 + 2 * MINUTE]
    assert equity.position.tolist() == pytest.approx([0.1, 0.05])
    assert equity.mark_price.tolist() == [30_020.0, 30_600.0]
    assert equity.equity[0] == pytest.approx(first.cash + 0.1 * 10.0)
    assert equity.equity[1] == pytest.approx(second.equity)
    assert equity.cash.tolist() == pytest.approx([first.cash, second.cash])
    assert equity.margin_used.tolist() == pytest.approx([0.1 * 30_020.0, 0.05 * 30_600.0])

    bars = read_table(path, "SELECT open_time, open, close, interval FROM bars ORDER BY id")
    assert bars.values.tolist() == [[T0, 30_000.0, 30_020.0, "1m"], [T0 + MINUTE, 30_020.0, 30_600.0, "1m"]]
    state = read_table(path, "SELECT strategy_id, ts, state FROM strategy_state")
    assert state.values.tolist() == [["s", T0 + 2 * MINUTE, '{"k": 1}']]

    run = read_table(path, "SELECT * FROM runs").iloc[0]
    assert (run.status, run.pid, run.host, run.summary) == ("finished", os.getpid(), socket.gethostname(),
                                                            '{"fills": 2}')
    assert run.finished_at >= run.started_at


def test_every_fill_has_its_order_even_a_liquidation(tmp_path):
    path = tmp_path / "ledger.db"
    h = Harness(cash=1_000.0, leverage=20.0, taker=0.0)
    ledger, run_id, _ = attach_ledger(h, path)
    h.trade(T0, 30_000.0)
    h.order(-1, 0.5, ts=T0 + S)
    h.trade(T0 + 2 * S, 30_000.0)
    h.trade(T0 + 3 * S, 32_000.0)  # liquidates the short
    assert h.position == 0.0 and len(h.fills) == 2
    ledger.finish_run(run_id, "finished")
    ledger.close()
    orphans = read_table(path, "SELECT f.client_order_id FROM fills f LEFT JOIN orders o "
                               "ON o.run_id = f.run_id AND o.client_order_id = f.client_order_id "
                               "WHERE o.id IS NULL")
    assert orphans.empty, orphans
    liq = read_table(path, "SELECT * FROM orders WHERE client_order_id LIKE 'liquidation-%'").iloc[0]
    assert (liq.side, liq.qty, liq.order_type, liq.reduce_only, liq.strategy_id) == (1, 0.5, "market", 1,
                                                                                      "broker")


def test_rows_are_batched_and_each_batch_is_one_transaction(tmp_path):
    path = tmp_path / "ledger.db"
    ledger = Ledger(path, batch_rows=10, flush_seconds=3600)
    run_id = start_run(ledger)
    for i in range(25):
        ledger.add("fills", fill_row(run_id, i))
    ledger.wait_written()  # the writer is idle: what is on disk is what it committed
    assert len(read_table(path, "SELECT id FROM fills")) == 20  # two full batches, 5 buffered
    ledger.flush(wait=True)
    assert len(read_table(path, "SELECT id FROM fills")) == 25
    # a batch that fails is rolled back whole: none of its good rows are written
    for i in range(25, 28):
        ledger.add("fills", fill_row(run_id, i))
    ledger.add("fills", (run_id, None, *fill_row(run_id, 28)[2:]))  # NULL order id: NOT NULL fails
    ledger.flush()
    with pytest.raises(RuntimeError, match="ledger write failed"):
        ledger.wait_written()
    assert len(read_table(path, "SELECT id FROM fills")) == 25
    ledger.add("fills", fill_row(run_id, 29))  # later batches are refused too, loudly
    with pytest.raises(RuntimeError, match="ledger write failed"):
        ledger.flush(wait=True)
    assert len(read_table(path, "SELECT id FROM fills")) == 25


def test_many_row_inserts_keep_every_row_its_values_and_order(tmp_path):
    """Batches go in ROWS_PER_INSERT-row statements plus one-row statements for the rest:
    every row arrives once, in order, with its values; a bad row inside a group fails the
    whole batch."""
    path = tmp_path / "ledger.db"
    ledger = Ledger(path, batch_rows=1_000_000, flush_seconds=3600)
    run_id = start_run(ledger)
    n = 2 * ROWS_PER_INSERT + 23
    rows = [fill_row(run_id, i) for i in range(n)]
    for row in rows:
        ledger.add("fills", row)
    ledger.flush(wait=True)
    columns = ", ".join(COLUMNS["fills"])
    stored = read_table(path, f"SELECT {columns} FROM fills ORDER BY id")
    assert list(stored.itertuples(index=False, name=None)) == rows
    bad = [fill_row(run_id, n + i) for i in range(ROWS_PER_INSERT)]
    bad[7] = (run_id, None, *bad[7][2:])
    for row in bad:
        ledger.add("fills", row)
    ledger.flush()
    with pytest.raises(RuntimeError, match="ledger write failed"):
        ledger.wait_written()
    assert len(read_table(path, "SELECT id FROM fills")) == n


def test_a_row_of_the_wrong_width_is_refused_before_it_is_buffered(tmp_path):
    """Rows travel to the writer as one flat list, so a short row would shift every later
    value into the wrong column: ``add`` refuses it, and the rows around it are written."""
    path = tmp_path / "ledger.db"
    ledger = Ledger(path, batch_rows=1_000_000, flush_seconds=3600)
    run_id = start_run(ledger)
    ledger.add("fills", fill_row(run_id, 0))
    for bad in (fill_row(run_id, 1)[:-1], (*fill_row(run_id, 1), 0)):
        with pytest.raises(ValueError, match="a fills row has 16 values"):
            ledger.add("fills", bad)
    ledger.add("fills", fill_row(run_id, 2))
    ledger.flush(wait=True)
    columns = ", ".join(COLUMNS["fills"])
    stored = read_table(path, f"SELECT {columns} FROM fills ORDER BY id")
    assert list(stored.itertuples(index=False, name=None)) == [fill_row(run_id, 0), fill_row(run_id, 2)]
    assert ledger.rows_written == 2
    ledger.close()


def test_rows_added_together_are_written_as_added_one_by_one_in_one_batch(tmp_path):
    """``add_many`` (a portfolio's close time): the rows ``add`` would write, all in one batch
    (the flush waits for the group's last row), and a group holding a row of the wrong width
    is refused whole, before any of it is buffered."""
    path = tmp_path / "ledger.db"
    ledger = Ledger(path, batch_rows=10, flush_seconds=3600)
    run_id = start_run(ledger)
    rows = [fill_row(run_id, i) for i in range(14)]
    ledger.add_many("fills", rows[:8])
    with pytest.raises(ValueError, match="a fills row has 16 values, not 15"):
        ledger.add_many("fills", [fill_row(run_id, 90), fill_row(run_id, 91)[:-1]])
    ledger.add_many("fills", rows[8:12])  # the 12th row passes batch_rows: the batch holds all 12
    ledger.wait_written()
    columns = ", ".join(COLUMNS["fills"])
    stored = read_table(path, f"SELECT {columns} FROM fills ORDER BY id")
    assert list(stored.itertuples(index=False, name=None)) == rows[:12]
    ledger.add_many("fills", rows[12:])
    ledger.flush(wait=True)
    assert len(read_table(path, "SELECT id FROM fills")) == 14
    assert ledger.rows_written == 14
    ledger.close()


def test_a_sweep_trials_memory_ledger_takes_rows_added_together_all_or_none(tmp_path):
    ledger = MemoryLedger(str(tmp_path / "ledger.db"), run_id=7)
    rows = [fill_row(7, i) for i in range(3)]
    ledger.add_many("fills", rows[:2])
    with pytest.raises(ValueError, match="a fills row has 16 values, not 15"):
        ledger.add_many("fills", [fill_row(7, 90), fill_row(7, 91)[:-1]])
    ledger.add_many("fills", rows[2:])
    assert ledger.buffers["fills"] == [value for row in rows for value in row]


def test_time_based_flush(tmp_path):
    path = tmp_path / "ledger.db"
    ledger = Ledger(path, batch_rows=1_000_000, flush_seconds=0.0)
    run_id = start_run(ledger)
    for i in range(64):  # the clock is looked at every 64 rows
        ledger.add("fills", fill_row(run_id, i))
    ledger.wait_written()
    assert len(read_table(path, "SELECT id FROM fills")) == 64
    ledger.close()


def test_readers_see_committed_rows_while_the_writer_runs(tmp_path):
    path = tmp_path / "ledger.db"
    ledger = Ledger(path, batch_rows=5)
    run_id = start_run(ledger)
    for i in range(5):
        ledger.add("fills", fill_row(run_id, i))
    ledger.wait_written()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*) FROM fills").fetchone()[0] == 5
    finally:
        conn.close()
    ledger.close()


def test_any_sqlalchemy_url_works(tmp_path):
    url = database_url(tmp_path / "a.db")
    assert url == f"sqlite:///{tmp_path / 'a.db'}"
    assert database_url("postgresql://u@h/db") == "postgresql://u@h/db"
    ledger = Ledger(url)
    run_id = start_run(ledger)
    ledger.add("fills", fill_row(run_id, 0))
    ledger.finish_run(run_id, "finished")
    ledger.close()
    reader = LedgerReader(url)
    try:
        assert reader.fills([run_id]).client_order_id.tolist() == ["o0"]
    finally:
        reader.close()


def test_run_status_running_finished_failed_and_interrupted(tmp_path):
    path = tmp_path / "ledger.db"
    ledger = Ledger(path)
    finished = start_run(ledger)
    ledger.finish_run(finished, "finished")
    failed = start_run(ledger)
    ledger.finish_run(failed, "failed", error="boom")
    alive = start_run(ledger)  # this process: still running
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a pid that is gone
    dead = start_run(ledger, pid=child.pid)
    elsewhere = start_run(ledger, pid=child.pid, host="another-host")  # its heartbeat is fresh
    silent_elsewhere = start_run(ledger, pid=child.pid, host="another-host")
    reused_pid = start_run(ledger, pid=os.getpid())  # a live pid, but not this run's process
    before_heartbeats = start_run(ledger, pid=child.pid, host="another-host")
    ledger.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE runs SET heartbeat_at = heartbeat_at - 60 WHERE id IN (?, ?)",
                     (silent_elsewhere, reused_pid))
        conn.execute("UPDATE runs SET heartbeat_at = NULL WHERE id = ?", (before_heartbeats,))
    reader = LedgerReader(path)
    try:
        runs = reader.runs().set_index("id")
        assert runs.status.to_dict() == {finished: "finished", failed: "failed", alive: "running",
                                         dead: "interrupted", elsewhere: "running",
                                         silent_elsewhere: "interrupted", reused_pid: "interrupted",
                                         before_heartbeats: "running"}
        assert reader.run()["id"] == before_heartbeats  # the newest
        assert reader.run(failed)["error"] == "boom"
        assert reader.run(dead)["status"] == "interrupted"
        assert reader.run(reused_pid)["status"] == "interrupted"
        with pytest.raises(LedgerQueryError, match="no run 99"):
            reader.run(99)
    finally:
        reader.close()
    raw = read_table(path, "SELECT id, status FROM runs ORDER BY id")
    assert raw.status.tolist() == ["finished", "failed"] + ["running"] * 6


def test_a_running_runs_heartbeat_is_renewed_until_it_finishes(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "HEARTBEAT_S", 0.05)
    path = tmp_path / "ledger.db"
    ledger = Ledger(path)
    run_id = start_run(ledger)

    def heartbeat() -> float:
        return float(read_table(path, "SELECT heartbeat_at FROM runs WHERE id = ?", [run_id]).heartbeat_at[0])

    first = heartbeat()
    wait_for(lambda: heartbeat() > first, 30, "a renewed heartbeat")
    ledger.finish_run(run_id, "finished")
    last = heartbeat()
    time.sleep(0.5)  # ten beats: none renews a finished run
    assert heartbeat() == last
    ledger.close()


def test_an_older_ledger_gains_the_heartbeat_column_and_the_resume_lease(tmp_path):
    path = tmp_path / "old.db"
    Ledger(path).close()
    with sqlite3.connect(path) as conn:  # as papertape made it before heartbeats and leases
        conn.execute("DROP INDEX ux_runs_resumed_from")
        conn.execute("ALTER TABLE runs DROP COLUMN heartbeat_at")
    ledger = Ledger(path)
    first = start_run(ledger, kind="live")
    start_run(ledger, kind="live", resumed_from=first)
    ledger.close()
    with sqlite3.connect(path) as conn:
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(runs)")}
    assert "ux_runs_resumed_from" in indexes
    assert read_table(path, "SELECT heartbeat_at FROM runs").heartbeat_at.notna().all()


def test_an_older_ledger_gains_the_plots_table_and_its_runs_read_without_plots(tmp_path):
    path = tmp_path / "old.db"
    ledger = Ledger(path)
    old = start_run(ledger)
    ledger.close()
    with sqlite3.connect(path) as conn:  # as papertape made it before strategy plots
        conn.execute("DROP TABLE plots")
    ledger = Ledger(path)
    new = start_run(ledger)
    ledger.add("plots", (new, BTC, "sma_fast", T0, 1.5))
    ledger.add("plots", (new, BTC, "sma_fast", T0 + MINUTE, 2.5))
    ledger.close()
    reader = LedgerReader(path)
    try:
        assert reader.plots([old], BTC) == {}
        ts, values = reader.plots([new], BTC)["sma_fast"]
    finally:
        reader.close()
    assert ts.tolist() == [T0, T0 + MINUTE] and values.tolist() == [1.5, 2.5]
    with sqlite3.connect(path) as conn:
        assert "ix_plots_run_id" in {row[1] for row in conn.execute("PRAGMA index_list(plots)")}


def test_a_run_is_continued_by_one_run_only(tmp_path):
    path = tmp_path / "ledger.db"
    ledger = Ledger(path)
    first = start_run(ledger, kind="live")
    second = start_run(ledger, kind="live", resumed_from=first)  # running: this process
    with pytest.raises(ResumeRefused, match=f"run {first} is being resumed by run {second} "):
        start_run(ledger, kind="live", resumed_from=first)
    ledger.finish_run(second, "stopped")
    with pytest.raises(ResumeRefused, match=f"run {first} was already resumed: run {second} continues it "
                       rf"\(stopped\); resume run {second} instead"):
        start_run(ledger, kind="live", resumed_from=first)
    third = start_run(ledger, kind="live", resumed_from=second)
    ledger.close()
    assert read_table(path, "SELECT id FROM runs ORDER BY id").id.tolist() == [first, second, third]


def test_resumed_runs_chain_and_missing_ledger(tmp_path):
    path = tmp_path / "ledger.db"
    ledger = Ledger(path)
    first = start_run(ledger, kind="live")
    second = start_run(ledger, kind="live", resumed_from=first)
    third = start_run(ledger, kind="live", resumed_from=second)
    ledger.close()
    reader = LedgerReader(path)
    try:
        assert reader.chain(third) == [first, second, third]
        assert reader.chain(first) == [first]
    finally:
        reader.close()
    with pytest.raises(LedgerQueryError, match="no ledger at"):
        LedgerReader(tmp_path / "missing.db")


def test_ledger_bars_in_kline_format_without_duplicates(tmp_path):
    path = tmp_path / "ledger.db"
    for _ in range(2):  # two runs over the same bars
        h = Harness()
        ledger, run_id, _ = attach_ledger(h, path)
        for i in range(3):
            h.bar(T0 + i * MINUTE, 100.0 + i, 101.0 + i, 99.0 + i, 100.5 + i, volume=2.0)
        ledger.finish_run(run_id, "finished")
        ledger.close()
    frame = ledger_bars(path)
    assert frame.open_time.tolist() == [(T0 + i * MINUTE) // NS_PER_MS for i in range(3)]
    assert frame.close.tolist() == [100.5, 101.5, 102.5]
    assert list(frame.columns) == ["symbol", "interval", "open_time", "open", "high", "low", "close",
                                   "volume", "turnover", "trades"]


def record_bars(path, symbol: str, label: str, step: int, count: int, close: float = 100.5) -> None:
    """One finished run in the ledger at ``path`` holding ``count`` bars of ``label``."""
    h = Harness()
    ledger, run_id, _ = attach_ledger(h, path, symbol=symbol, interval=label)
    for i in range(count):
        h.bar(T0 + i * step, 100.0, 101.0 + i, 99.0 - i, close + i, interval_ns=step, symbol=symbol,
              label=label)
    ledger.finish_run(run_id, "finished")
    ledger.close()


def test_training_bars_from_a_ledger_keep_to_its_interval(tmp_path):
    path = tmp_path / "ledger.db"
    record_bars(path, BTC, "5m", 5 * MINUTE, 4)
    with pytest.raises(DataError, match="holds 5m bars of BTCUSDT; 1m bars cannot be made from them"):
        load_bars_from([str(path)], "1m")
    with pytest.raises(DataError, match="7m bars cannot be made"):
        load_bars_from([str(path)], "7m")
    ten = load_bars_from([str(path)], "10m")
    assert ten.open_time.tolist() == [T0 // NS_PER_MS, (T0 + 10 * MINUTE) // NS_PER_MS]
    assert ten.high.tolist() == [102.0, 104.0] and ten.low.tolist() == [98.0, 96.0]
    assert ten.close.tolist() == [101.5, 103.5] and ten.volume.tolist() == [20.0, 20.0]


def test_training_bars_from_a_ledger_prefer_the_recorded_interval(tmp_path):
    path = tmp_path / "ledger.db"
    record_bars(path, BTC, "1m", MINUTE, 10, close=100.5)
    record_bars(path, BTC, "5m", 5 * MINUTE, 2, close=200.5)  # differs from the 1m bars combined
    assert load_bars_from([str(path)], "5m").close.tolist() == [200.5, 201.5]
    assert load_bars_from([str(path)], "1m").close.tolist() == [100.5 + i for i in range(10)]
    assert len(load_bars_from([str(path)], "10m")) == 1  # from the 5m bars, the coarsest that divide it


def test_training_bars_from_a_ledger_of_several_symbols_are_refused(tmp_path):
    path = tmp_path / "ledger.db"
    record_bars(path, BTC, "1m", MINUTE, 3)
    record_bars(path, "ETHUSDT", "1m", MINUTE, 3)
    with pytest.raises(DataError, match=r"several symbols \(BTCUSDT, ETHUSDT\)"):
        load_bars_from([str(path)], "1m")


def test_summary_is_json(tmp_path):
    path = tmp_path / "ledger.db"
    ledger = Ledger(path)
    run_id = start_run(ledger)
    ledger.finish_run(run_id, "finished", summary={"rejections": {"x": 2}})
    ledger.close()
    assert json.loads(read_table(path, "SELECT summary FROM runs").summary[0]) == {"rejections": {"x": 2}}


def test_funding_rows_record_what_the_account_paid(tmp_path):
    """A spot account pays no funding; its ledger row says so (metrics sum these rows)."""
    for category, expected in (("linear", 0.1 * 30_000.0 * 0.001), ("spot", 0.0)):
        path = tmp_path / f"{category}.db"
        h = Harness(category, maker=0.001, taker=0.001)
        ledger, run_id, _ = attach_ledger(h, path)
        h.trade(T0, 30_000.0)
        h.order(+1, 0.1, ts=T0 + S)
        h.trade(T0 + 2 * S, 30_000.0)
        cash = h.account.cash
        h.bus.process(Funding(BTC, 0.001, 30_000.0, T0 + 3 * S, T0 + 3 * S))
        ledger.finish_run(run_id, "finished")
        ledger.close()
        payment = read_table(path, "SELECT payment FROM funding").payment.tolist()
        assert payment == [pytest.approx(expected)]
        assert cash - h.account.cash == pytest.approx(expected)
