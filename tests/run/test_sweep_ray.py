"""``papertape sweep --ray`` on a real local Ray cluster (``ray start --head`` on loopback,
two worker processes): the same trials bit for bit as local workers and as stand-alone
backtests, and a worker killed mid-sweep loses only its trial (run again, or recorded
failed), with no trial recorded twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.broker import write_klines
from tests.helpers.ray_cluster import RAY_ENV, RayCluster
from tests.helpers.sweep import ROOT, fills, json_of, papertape, query, trial_rows, wait_for


@pytest.fixture(scope="module")
def cluster():
    with RayCluster(num_cpus=2) as ray_cluster:
        yield ray_cluster


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ray")
    short, long = directory / "short.csv", directory / "long.csv"
    write_klines(short, 3_000, seed=11, vol=0.002)
    write_klines(long, 30_000, seed=12, vol=0.002)
    return str(short), str(long)


def test_ray_trials_equal_local_workers_and_backtests(cluster, data, tmp_path):
    short, _ = data
    args = ["sweep", "--data", short, "--symbol", "BTCUSDT", "--grid", "fast=5,10", "--grid", "slow=20,40",
            "--json", "--no-progress"]
    on_ray = json_of(papertape(*args, "--ray", cluster.address, "--ledger", str(tmp_path / "ray.db"),
                               env=RAY_ENV))
    local = json_of(papertape(*args, "--workers", "2", "--ledger", str(tmp_path / "local.db")))
    assert [t["metrics"] for t in on_ray["trials"]] == [t["metrics"] for t in local["trials"]]
    for a, b in zip(on_ray["trials"], local["trials"], strict=True):
        assert fills(tmp_path / "ray.db", a["run_id"]) == fills(tmp_path / "local.db", b["run_id"])
    alone = json_of(papertape("backtest", "--data", short, "--symbol", "BTCUSDT", "--param", "fast=5",
                              "--param", "slow=40", "--ledger", str(tmp_path / "a.db"), "--json",
                              "--no-progress"))
    assert on_ray["trials"][1]["metrics"] == alone["metrics"]
    assert on_ray["pbo"] == local["pbo"] and on_ray["dsr"] == local["dsr"]


def _task_processes() -> list[int]:
    """Ray workers running a trial right now (Ray titles them after the task's function)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(b"ray::run_in_this_process"):
                out.append(int(entry.name))
    return out


def test_a_killed_ray_worker_loses_only_its_trial(cluster, data, tmp_path):
    _, long = data
    ledger = str(tmp_path / "ledger.db")
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "sweep", "--data", long, "--symbol", "BTCUSDT",
         "--grid", "fast=3,5,8", "--grid", "slow=20,40", "--ledger", ledger, "--ray", cluster.address,
         "--json", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT / "tests",
        env={**os.environ, **RAY_ENV})
    wait_for(lambda: len(trial_rows(ledger, 1)) >= 1 and _task_processes(), what="a trial running on Ray")
    victim = _task_processes()[0]
    os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    rows = trial_rows(ledger, 1)
    assert sorted((r[0], r[1]) for r in rows) == [("search", n) for n in range(6)]  # none lost, none twice
    assert {r[3] for r in rows} <= {"finished", "failed"}
    assert len({r[2] for r in rows}) == 6
    assert query(ledger, "SELECT count(*) FROM runs WHERE status = 'running'") == [(0,)]
    assert victim not in _task_processes()


def test_ray_trains_the_same_models_as_local_workers(cluster, tmp_path):
    from models.checkpoint import load_checkpoint, weights_digest
    from tests.helpers.model import ar1_bars, write_bars

    data = write_bars(ar1_bars(800, phi=0.1, seed=4), tmp_path / "bars.csv")
    train = {"seq_len": 16, "epochs": 1, "d_model": 16, "layers": 1, "heads": 2, "batch_size": 32,
             "dropout": 0, "features": "log_return"}
    args = ["sweep", "--strategy", "model", "--data", str(data), "--symbol", "BTCUSDT", "--grid",
            "train.lr=0.001,0.003", "--grid", "threshold=0", "--json", "--no-progress",
            *(arg for k, v in train.items() for arg in ("--train", f"{k}={v}"))]
    outs = {}
    for name, extra in (("ray", ["--ray", cluster.address]), ("local", ["--workers", "2"])):
        where = tmp_path / name  # not tests/: there `strategies` would be the tests' package
        where.mkdir()
        outs[name] = json_of(papertape(*args, *extra, "--ledger", str(where / "l.db"), env=RAY_ENV,
                                       cwd=where))
    assert [t["status"] for t in outs["ray"]["trials"]] == ["finished", "finished"]
    assert [t["metrics"] for t in outs["ray"]["trials"]] == [t["metrics"] for t in outs["local"]["trials"]]
    digests = [[weights_digest(load_checkpoint(p)[0].state_dict())
                for p in sorted((tmp_path / name / "l.db.checkpoints").glob("*.pt"))] for name in outs]
    assert len(digests[0]) == 2 and digests[0] == digests[1]
