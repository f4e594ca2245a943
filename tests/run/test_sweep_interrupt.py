"""Ctrl-C in a terminal sends SIGINT to the sweep's whole process group: the driver, its
ledger writer and its workers. At any moment, from the sweep's first row on, the sweep ends
``interrupted`` in one line (exit 130, no traceback), every finished trial kept, no run left
``running``, and ``--resume`` runs each missing trial once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.helpers.broker import write_klines
from tests.helpers.sweep import ROOT, json_of, papertape, query, trial_rows, wait_for

TRIALS = [("search", n) for n in range(6)]


@pytest.fixture(scope="module")
def long_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep-interrupt") / "klines.csv"
    write_klines(path, 30_000, seed=9, vol=0.002)
    return str(path)


def _start_in_own_group(data: str, ledger: str) -> subprocess.Popen:
    """The sweep as a terminal runs it: the leader of its own process group."""
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "sweep", "--data", data, "--symbol", "BTCUSDT",
         "--grid", "fast=3,5,8", "--grid", "slow=20,40", "--ledger", ledger, "--no-progress", "--json",
         "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT / "tests", process_group=0)


def _sweep_status(ledger: str) -> list[tuple]:
    try:
        return query(ledger, "SELECT status FROM sweeps")
    except Exception:  # the ledger or its tables do not exist yet
        return []


def _ctrl_c(proc: subprocess.Popen) -> str:
    """SIGINT to the whole group, as the terminal sends it; the sweep's stderr."""
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Warning" not in err, err
    return err


def _resume_runs_the_rest_once(ledger: str, kept: list[tuple]) -> None:
    resumed = json_of(papertape("sweep", "--resume", "1", "--ledger", ledger, "--workers", "2",
                                "--json", "--no-progress"))
    rows = trial_rows(ledger, 1)
    assert sorted((r[0], r[1]) for r in rows) == TRIALS
    assert rows[: len(kept)] == kept
    assert len(resumed["trials"]) == 6 and {r[3] for r in rows} == {"finished"}
    assert query(ledger, "SELECT count(*) FROM runs WHERE status = 'finished'") == [(6,)]
    assert query(ledger, "SELECT status FROM sweeps") == [("finished",)]


def test_ctrl_c_as_the_sweep_starts_ends_it_interrupted(long_data, tmp_path):
    ledger = str(tmp_path / "ledger.db")
    proc = _start_in_own_group(long_data, ledger)
    wait_for(lambda: _sweep_status(ledger) == [("running",)], what="the sweep's row")
    err = _ctrl_c(proc)  # the workers are still starting: no trial can have finished
    assert "--resume 1" in err
    assert _sweep_status(ledger) == [("interrupted",)]
    assert query(ledger, "SELECT count(*) FROM runs WHERE status = 'running'") == [(0,)]
    kept = trial_rows(ledger, 1)
    assert len(kept) < 6
    _resume_runs_the_rest_once(ledger, kept)


def test_ctrl_c_mid_sweep_keeps_every_finished_trial(long_data, tmp_path):
    ledger = str(tmp_path / "ledger.db")
    proc = _start_in_own_group(long_data, ledger)
    wait_for(lambda: len(trial_rows(ledger, 1)) >= 2, what="two finished trials")
    _ctrl_c(proc)
    kept = trial_rows(ledger, 1)
    assert 2 <= len(kept) < 6 and {r[3] for r in kept} == {"finished"}
    assert _sweep_status(ledger) == [("interrupted",)]
    assert query(ledger, "SELECT count(*) FROM runs WHERE status = 'running'") == [(0,)]
    for _, _, run_id, _ in kept:  # each kept trial's rows reached the ledger before it was marked done
        assert query(ledger, f"SELECT count(*) > 0 FROM fills WHERE run_id = {run_id}") == [(1,)]
    _resume_runs_the_rest_once(ledger, kept)
