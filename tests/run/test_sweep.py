"""``papertape sweep`` on local worker processes: every trial equals its stand-alone backtest,
the ledger tags each run with its sweep, a dead worker loses only its trial, SIGINT keeps
what finished and --resume runs the rest once, holdout and walk-forward keep the future
out of the search, and the sweep report draws its figures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from engine.ledger.reader import LedgerReader
from tests.helpers.broker import write_klines
from tests.helpers.sweep import ROOT, fills, json_of, papertape, query, trial_rows, wait_for

GRID = ["--grid", "fast=5,10", "--grid", "slow=20,40"]
MINUTE = 60 * 10**9


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep") / "klines.csv"
    write_klines(path, 3_000, seed=5, vol=0.002)
    return str(path)


@pytest.fixture(scope="module")
def swept(data, tmp_path_factory):
    ledger = str(tmp_path_factory.mktemp("sweep-ledger") / "ledger.db")
    out = json_of(papertape("sweep", "--data", data, "--symbol", "BTCUSDT", *GRID, "--param", "qty=0.05",
                            "--ledger", ledger, "--workers", "2", "--json", "--no-progress"))
    return ledger, out


def test_the_json_has_exactly_the_contract_keys(swept):
    _, out = swept
    assert list(out) == ["sweep_id", "trials", "best", "dsr", "pbo"]
    assert [t["params"] for t in out["trials"]] == [
        {"fast": 5, "slow": 20}, {"fast": 5, "slow": 40}, {"fast": 10, "slow": 20}, {"fast": 10, "slow": 40}]
    for trial in out["trials"]:
        assert {"run_id", "params", "metrics", "status"} <= set(trial) and trial["status"] == "finished"
    best = max(out["trials"], key=lambda t: t["metrics"]["sharpe"])
    assert out["best"]["run_id"] == best["run_id"] and out["best"]["params"] == best["params"]
    assert 0.0 <= out["dsr"]["dsr"] <= 1.0 and out["dsr"]["n_trials"] == 4
    assert 0.0 <= out["pbo"]["pbo"] <= 1.0


def test_each_trial_equals_its_standalone_backtest(swept, data, tmp_path):
    ledger, out = swept
    for trial in out["trials"]:
        alone = str(tmp_path / f"alone-{trial['run_id']}.db")
        params = [arg for k, v in trial["params"].items() for arg in ("--param", f"{k}={v}")]
        run = json_of(papertape("backtest", "--data", data, "--symbol", "BTCUSDT", *params,
                                "--param", "qty=0.05", "--ledger", alone, "--json", "--no-progress"))
        assert run["metrics"] == trial["metrics"]
        assert fills(alone, run["run_id"]) == fills(ledger, trial["run_id"])
        assert len(fills(alone, run["run_id"])) > 10


def test_the_ledger_groups_the_trials_under_the_sweep(swept):
    ledger, out = swept
    rows = trial_rows(ledger, out["sweep_id"])
    assert sorted(r[2] for r in rows) == sorted(t["run_id"] for t in out["trials"])
    runs = query(ledger, "SELECT id, status, kind, params FROM runs ORDER BY id")
    assert [r[1] for r in runs] == ["finished"] * 4 and {r[2] for r in runs} == {"backtest"}
    assert '"qty": 0.05' in runs[0][3]  # the full typed parameters, --param included
    listed = json_of(papertape("runs", "--ledger", ledger, "--json"))
    assert len(listed) == 4


def test_report_draws_the_sweep(swept, tmp_path):
    ledger, out = swept
    page = tmp_path / "sweep.html"
    done = papertape("report", "--sweep", str(out["sweep_id"]), "--ledger", ledger, "--out", str(page))
    assert done.returncode == 0, done.stderr
    text = page.read_text()
    assert text.count("<rect x=") == 4  # one heatmap cell per (fast, slow) pair
    assert "Deflated Sharpe Ratio" in text and "Probability of Backtest Overfitting" in text
    assert "no better than picking at random" in text
    bad = papertape("report", "--sweep", "99", "--ledger", ledger)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "no sweep 99" in bad.stderr


@pytest.mark.parametrize("args, message", [
    (["--grid", "fast=5:x:5"], "is not a number"),
    (["--grid", "speed=1,2"], "has no parameter 'speed'"),
    (["--grid", "fast=5,10", "--param", "fast=3"], "also fixed with --param"),
    (["--grid", "fast=5,10", "--holdout", "1.5"], "between 0 and 1"),
    (["--grid", "fast=5,10", "--objective", "luck"], "is not a metric"),
    (["--grid", "fast=5,10", "--trials", "9"], "the grid has 2 points"),
    (["--grid", "fast=5,10", "--constraint", "fast"], "NAME OP VALUE"),
    (["--resume", "7"], "no sweep 7"),
])
def test_bad_input_is_one_line_and_exit_2(data, tmp_path, args, message):
    done = papertape("sweep", "--data", data, "--symbol", "BTCUSDT", "--ledger", str(tmp_path / "l.db"),
                     "--no-progress", *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0


@pytest.fixture(scope="module")
def long_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep-long") / "klines.csv"
    write_klines(path, 30_000, seed=9, vol=0.002)
    return str(path)


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return out


def _start_sweep(long_data: str, ledger: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "sweep", "--data", long_data, "--symbol", "BTCUSDT",
         "--grid", "fast=3,5,8", "--grid", "slow=20,40", "--ledger", ledger, "--no-progress", "--json",
         *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT / "tests")


def test_sigint_keeps_finished_trials_and_resume_runs_each_once(long_data, tmp_path):
    ledger = str(tmp_path / "ledger.db")
    proc = _start_sweep(long_data, ledger, "--workers", "1")
    wait_for(lambda: len(trial_rows(ledger, 1)) >= 2, what="two finished trials")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "--resume 1" in err
    kept = trial_rows(ledger, 1)
    assert 2 <= len(kept) < 6
    assert query(ledger, "SELECT count(*) FROM runs WHERE status = 'running'") == [(0,)]
    resumed = json_of(papertape("sweep", "--resume", "1", "--ledger", ledger, "--workers", "2",
                                "--json", "--no-progress"))
    rows = trial_rows(ledger, 1)
    assert sorted((r[0], r[1]) for r in rows) == [("search", n) for n in range(6)]  # each once
    assert rows[: len(kept)] == kept  # the kept ones were not run again
    assert len({r[2] for r in rows}) == 6 and len(resumed["trials"]) == 6
    assert query(ledger, "SELECT count(*) FROM runs") == [(6,)]
    assert query(ledger, "SELECT status FROM sweeps") == [("finished",)]


def test_a_killed_worker_loses_only_its_trial(long_data, tmp_path):
    ledger = str(tmp_path / "ledger.db")
    proc = _start_sweep(long_data, ledger, "--workers", "2")
    wait_for(lambda: len(trial_rows(ledger, 1)) >= 1, what="a finished trial")
    workers = [p for p in _children(proc.pid) if "spawn_main" in open(f"/proc/{p}/cmdline").read()]
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    rows = trial_rows(ledger, 1)
    assert sorted((r[0], r[1]) for r in rows) == [("search", n) for n in range(6)]
    assert {r[3] for r in rows} == {"finished"}  # the lost trial ran again on a fresh worker
    assert query(ledger, "SELECT count(*) FROM runs") == [(6,)]


def test_holdout_keeps_the_last_part_out_of_the_search(data, tmp_path):
    ledger = str(tmp_path / "ledger.db")
    out = json_of(papertape("sweep", "--data", data, "--symbol", "BTCUSDT", *GRID, "--holdout", "0.3",
                            "--top", "2", "--ledger", ledger, "--workers", "2", "--json", "--no-progress"))
    holdout = out["best"]["holdout"]
    split = holdout["start_ns"]
    assert len(holdout["top"]) == 2 and all(t["out_of_sample"] is not None for t in holdout["top"])
    search = [t["run_id"] for t in out["trials"] if t["phase"] == "search"]
    tested = [t["run_id"] for t in out["trials"] if t["phase"] == "holdout"]
    assert len(search) == 4 and len(tested) == 2
    reader = LedgerReader(ledger)
    try:  # the trials keep their packed curve, stamped at each bar's close (ns)
        assert reader.equity_curve(search)["ts"].max() <= split  # the search's last bar closes by the split
        assert reader.equity_curve(tested)["ts"].min() >= split + MINUTE  # the holdout's first opens at it
    finally:
        reader.close()


def test_trials_keep_their_packed_curve_and_with_keep_bars_their_bars_too(data, tmp_path):
    counts = {}
    for flags in ([], ["--keep-bars"]):
        ledger = str(tmp_path / f"ledger{len(flags)}.db")
        out = json_of(papertape("sweep", "--data", data, "--symbol", "BTCUSDT", *GRID, "--ledger", ledger,
                                "--workers", "1", "--json", "--no-progress", *flags))
        run_id = out["trials"][0]["run_id"]
        rows = query(ledger, f"SELECT count(*) FROM equity WHERE run_id = {run_id}")[0][0]
        packed = query(ledger, f"SELECT sum(n) FROM equity_curve WHERE run_id = {run_id}")[0][0]
        counts[bool(flags)] = (rows, packed, out["trials"][0]["metrics"])
    rows, packed, metrics = counts[False]
    kept_rows, kept_packed, kept_metrics = counts[True]
    assert rows == 0 and packed == kept_packed == kept_rows > 0
    assert metrics == kept_metrics


def test_walk_forward_trades_each_block_with_the_previous_window_winner(data, tmp_path):
    ledger = str(tmp_path / "ledger.db")
    out = json_of(papertape("sweep", "--data", data, "--symbol", "BTCUSDT", *GRID, "--walk-forward", "2",
                            "--ledger", ledger, "--workers", "2", "--json", "--no-progress"))
    folds = out["best"]["walk_forward"]["folds"]
    assert [f["fold"] for f in folds] == [1, 2]
    for fold in folds:
        train_end, test_start = fold["train"][1], fold["test"][0]
        assert train_end == test_start
        runs = [t["run_id"] for t in out["trials"] if t["phase"] == f"fold {fold['fold']}"]
        reader = LedgerReader(ledger)
        try:  # the fold's last bar closes by the end of its training window
            assert reader.equity_curve(runs)["ts"].max() <= train_end
        finally:
            reader.close()
        best = max((t for t in out["trials"] if t["phase"] == f"fold {fold['fold']}"),
                   key=lambda t: t["metrics"]["sharpe"])
        assert fold["params"] == best["params"]
    assert out["best"]["walk_forward"]["overall"]["folds_traded"] == 2
