"""The ledger on a real PostgreSQL server (a throwaway cluster on a free loopback port):
the writer's batches and the reader, then ``backtest``, ``runs``, ``report`` and ``sweep``
with ``--ledger postgresql+psycopg://...``, each matching the same run on SQLite."""

from __future__ import annotations

import json

import pytest

from engine.analysis.metrics import metrics_for_run
from engine.ledger.reader import LedgerReader
from engine.ledger.store import Ledger
from tests.helpers.broker import write_klines
from tests.helpers.postgres import PostgresServer
from tests.helpers.sweep import fills, json_of, papertape, query, trial_rows


def fill_row(run_id: int, i: int) -> tuple:
    """A fills row in COLUMNS["fills"] order."""
    return (run_id, f"o{i}", "s", "BTCUSDT", 1, 30_000.0, 0.001, 0.0165, "taker", 0.0, 0.001 * (i + 1),
            30_000.0, 10_000.0, 10_000.0, i, i)


def equity_row(run_id: int, i: int) -> tuple:
    """An equity row (with its bar) in COLUMNS["equity"] order, one a minute."""
    ts = (i + 1) * 60_000_000_000
    return (run_id, ts, 10_000.0, 10_000.0 + i, 0.001, 30_000.0, 0.0, "BTCUSDT", "1m", ts - 60_000_000_000,
            30_000.0, 30_010.0, 29_990.0, 30_005.0, 1.5, 45_000.0, 7)


@pytest.fixture(scope="module")
def server():
    with PostgresServer() as pg:
        yield pg


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("pg") / "klines.csv"
    write_klines(path, 2_000, seed=3, vol=0.002)
    return str(path)


def test_batches_and_reads_on_postgres(server):
    url = server.create_database("rows")
    ledger = Ledger(url, batch_rows=100)
    run_id = ledger.start_run(kind="backtest", strategy="s", params="{}", symbol="BTCUSDT", category="linear",
                              interval="1m", data_start=0, data_end=1, data_files="[]", seed=1,
                              initial_cash=10_000.0, config="{}")
    for i in range(250):
        ledger.add("fills", fill_row(run_id, i))
        ledger.add("equity", equity_row(run_id, i))
    ledger.finish_run(run_id, "finished", summary={"n": 250})
    ledger.close()
    reader = LedgerReader(url)
    try:
        assert len(reader.fills([run_id])) == 250
        curve = reader.equity_curve([run_id])
        assert len(curve) == 250 and curve["ts"].is_monotonic_increasing
        assert reader.run(run_id)["status"] == "finished"
        assert metrics_for_run(reader, run_id)["n_fills"] == 250
        assert len(reader.bars([run_id])) == 250  # the bars view exists on PostgreSQL too
    finally:
        reader.close()


def test_backtest_runs_and_report_on_postgres(server, data, tmp_path):
    url = server.create_database("cli")
    args = ["--data", data, "--symbol", "BTCUSDT", "--param", "fast=5", "--param", "slow=20",
            "--json", "--no-progress"]
    on_pg = json_of(papertape("backtest", *args, "--ledger", url))
    on_sqlite = json_of(papertape("backtest", *args, "--ledger", str(tmp_path / "l.db")))
    assert on_pg["metrics"] == on_sqlite["metrics"] and on_pg["ledger"] == url
    assert fills(url, on_pg["run_id"]) == fills(tmp_path / "l.db", on_sqlite["run_id"])
    runs = json_of(papertape("runs", "--ledger", url, "--json"))
    assert [r["id"] for r in runs] == [on_pg["run_id"]] and runs[0]["status"] == "finished"
    page = tmp_path / "r.html"
    report = json_of(papertape("report", "--ledger", url, "--run", str(on_pg["run_id"]), "--out", str(page),
                               "--json"))
    assert report["metrics"] == on_pg["metrics"] and page.stat().st_size > 1000


def test_sweep_and_its_report_on_postgres(server, data, tmp_path):
    url = server.create_database("sweep")
    out = json_of(papertape("sweep", "--data", data, "--symbol", "BTCUSDT", "--grid", "fast=5,10",
                            "--grid", "slow=20,40", "--ledger", url, "--workers", "2", "--json",
                            "--no-progress"))
    assert len(out["trials"]) == 4 and {t["status"] for t in out["trials"]} == {"finished"}
    rows = trial_rows(url, out["sweep_id"])
    assert sorted(r[2] for r in rows) == sorted(t["run_id"] for t in out["trials"])
    alone = json_of(papertape("backtest", "--data", data, "--symbol", "BTCUSDT", "--param", "fast=10",
                              "--param", "slow=40", "--ledger", str(tmp_path / "a.db"), "--json",
                              "--no-progress"))
    trial = next(t for t in out["trials"] if t["params"] == {"fast": 10, "slow": 40})
    assert trial["metrics"] == alone["metrics"]
    assert fills(url, trial["run_id"]) == fills(tmp_path / "a.db", alone["run_id"])
    page = tmp_path / "s.html"
    report = json_of(papertape("report", "--sweep", str(out["sweep_id"]), "--ledger", url,
                               "--out", str(page), "--json"))
    assert report["pbo"] == out["pbo"] and report["dsr"] == out["dsr"]
    assert "Probability of Backtest Overfitting" in page.read_text()
    stored = json.loads(query(url, "SELECT summary FROM sweeps")[0][0])
    assert stored["best"]["run_id"] == out["best"]["run_id"]
