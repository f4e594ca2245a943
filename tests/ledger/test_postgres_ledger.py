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


def test_a_sweep_worker_writes_its_trial_into_postgres_itself(server, data, tmp_path):
    """On PostgreSQL the worker's runner writes the trial's rows (and sends none back to the
    driver); the trial equals its stand-alone backtest, and running it again (a worker that
    died after writing) replaces its rows instead of doubling them."""
    import dataclasses

    from engine.core.config import load_config
    from engine.run.sweep_trial import TrialRunner, TrialTask

    url = server.create_database("direct")
    params = {"fast": 10, "slow": 40}
    cfg = load_config(None, [f"ledger.path={url}", "strategy.name=sma_cross",
                             *(f"strategy.params.{k}={v}" for k, v in params.items())])
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, data=(data,)))
    driver = Ledger(url)
    try:
        run_id = driver.start_run(kind="backtest", strategy="sma_cross", params="{}", symbol="BTCUSDT",
                                  category="linear", interval="", data_start=0, data_end=0,
                                  data_files="[]", seed=0, initial_cash=cfg.account.cash, config="{}")
    finally:
        driver.close()
    runner = TrialRunner()
    task = TrialTask("search", 0, run_id, params, cfg)
    first = runner.run(task)
    assert first.status == "finished", first.error
    assert first.payload == b"" and first.rows > 0  # nothing for the driver to write
    written = fills(url, run_id)
    alone = json_of(papertape("backtest", "--data", data, "--symbol", "BTCUSDT", "--param", "fast=10",
                              "--param", "slow=40", "--ledger", str(tmp_path / "a.db"), "--json",
                              "--no-progress"))
    assert written == fills(tmp_path / "a.db", alone["run_id"]) and written
    assert first.metrics == alone["metrics"]
    chunks = query(url, f"SELECT count(*) FROM equity_curve WHERE run_id = {run_id}")
    again = runner.run(task)
    assert again.status == "finished" and again.metrics == first.metrics
    assert fills(url, run_id) == written
    assert query(url, f"SELECT count(*) FROM equity_curve WHERE run_id = {run_id}") == chunks != [(0,)]


def curve(ledger, run_id: int) -> list[tuple]:
    """A run's packed equity curve: the per-bar equity a sweep trial keeps."""
    return query(ledger, f"SELECT n, ts, equity, position FROM equity_curve WHERE run_id = {int(run_id)} "
                         "ORDER BY n")


def without_run_ids(value):
    """A sweep's JSON with every ``run_id`` left out (ids are the ledger's own)."""
    if isinstance(value, dict):
        return {k: without_run_ids(v) for k, v in value.items() if k != "run_id"}
    if isinstance(value, list):
        return [without_run_ids(v) for v in value]
    return value


def test_sweeps_on_postgres_equal_the_sqlite_sweep_on_workers_and_ray(server, data, tmp_path):
    """The same sweep on SQLite (the driver writes), and on PostgreSQL written by 2 local
    workers and by a real Ray cluster's workers: the same trials, fills and curves."""
    from tests.helpers.ray_cluster import RAY_ENV, RayCluster

    args = ["sweep", "--data", data, "--symbol", "BTCUSDT", "--grid", "fast=5,10", "--grid", "slow=20,40",
            "--holdout", "0.3", "--json", "--no-progress"]
    lite = tmp_path / "sweep.db"
    on_sqlite = json_of(papertape(*args, "--workers", "2", "--ledger", str(lite)))
    local_url = server.create_database("workers")
    with RayCluster(num_cpus=2) as cluster:
        ray_url = server.create_database("ray")
        on_ray = json_of(papertape(*args, "--ray", cluster.address, "--ledger", ray_url, env=RAY_ENV))
    on_local = json_of(papertape(*args, "--workers", "2", "--ledger", local_url))
    for url, out in ((local_url, on_local), (ray_url, on_ray)):
        assert [t["metrics"] for t in out["trials"]] == [t["metrics"] for t in on_sqlite["trials"]]
        assert without_run_ids(out["best"]) == without_run_ids(on_sqlite["best"])  # its holdout too
        assert (out["dsr"], out["pbo"]) == (on_sqlite["dsr"], on_sqlite["pbo"])
        for a, b in zip(out["trials"], on_sqlite["trials"], strict=True):
            assert fills(url, a["run_id"]) == fills(lite, b["run_id"])
            assert curve(url, a["run_id"]) == curve(lite, b["run_id"]) != []
        statuses = query(url, "SELECT status, count(*) FROM runs GROUP BY status")
        assert statuses == [("finished", len(query(url, "SELECT id FROM runs")))]
