"""Sweep benchmark: 64 trials of sma_cross (fast 2..16 by 2, slow 20..90 by 10) on one-minute
bars (100,000 by default), timed as ratios within one run:

1. the sweep on 2 local workers against 64 separate ``papertape backtest`` processes run one
   after another (target <= 0.55x) and against the same sweep on 1 worker (target <= 0.6x);
2. on 1 worker, the time outside the trials split into the fixed start-up and finish (worker
   spawn and imports, first data open, start and summary of the sweep) and the per-trial
   overhead (dispatch, result transfer, ledger write; target < 20 ms);
3. the same sweep as Ray tasks on a local cluster with 2 workers against the local pool
   (target within 15%);
4. the ledger's write rate for one trial's rows (SQLite and a throwaway PostgreSQL server),
   and from it how many workers one ledger keeps busy before it is the bottleneck. SQLite's
   rows all pass through the driver's one writer; on PostgreSQL each worker writes its own
   trial (as a sweep does), so the limit is the server's own CPU time per trial, measured
   from the postmaster and its backends.

``--separate K`` times K of the 64 stand-alone processes and scales to 64 (default: all; 0 skips them).
The data is a seeded random walk in a temporary directory; nothing is downloaded.
Usage: ``python bench/sweep.py [--bars N] [--separate K] [--no-ray] [--no-postgres] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from backtest import write_klines  # noqa: E402
from steal import reference_loop_s  # noqa: E402

GRID = ["--grid", "fast=2:16:2", "--grid", "slow=20:90:10"]
TARGETS = {"vs_separate": 0.55, "vs_one_worker": 0.6, "per_trial_ms": 20.0, "ray_vs_local": 1.15}


def sweep(data: Path, ledger: str, *, workers: int | None = None, ray: str | None = None) -> dict:
    """One sweep in this process; its wall time and the seconds spent inside trials."""
    from engine.commands import sweep as command
    from engine.commands.run_options import resolve_config
    from engine.ledger.store import Ledger
    from engine.run.sweep import StopOnSigint, SweepRun
    from engine.run.sweep_phases import run_phases, start_sweep, summarise

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    extra = ["--ray", ray] if ray else ["--workers", str(workers)]
    args = parser.parse_args(["sweep", "--data", str(data), "--symbol", "BTCUSDT", *GRID, "--ledger", ledger,
                              "--no-progress", *extra])
    cfg = resolve_config(args)
    began = time.perf_counter()
    ledger_obj = Ledger(cfg.ledger.path)
    opts = command.options_from(args, cfg)
    pool = command.make_pool(args, cfg)
    inside, arrived, recorded = [], [], []
    try:
        run = SweepRun(cfg, opts, pool, ledger_obj, start_sweep(cfg, opts, ledger_obj), [], progress=False,
                       stop=StopOnSigint())
        record = run.record

        def timed(outcome):
            arrived.append(time.perf_counter())
            inside.append(outcome.seconds)
            record(outcome)
            recorded.append(time.perf_counter())

        run.record = timed
        result = summarise(run, run_phases(run), "finished", pool.description)
    finally:
        pool.close()
        ledger_obj.close()
    ended = time.perf_counter()
    assert len(result.trials) == 64 and all(t["status"] == "finished" for t in result.trials)
    return {"wall_s": ended - began, "inside_s": sum(inside), "trials": len(inside),
            "executor": pool.description, **split(began, ended, arrived, recorded, inside)}


def split(began: float, ended: float, arrived: list[float], recorded: list[float],
          inside: list[float]) -> dict:
    """A 1-worker sweep's time outside its trials, split into what is paid once and what each
    trial adds. Between the first outcome's arrival and the last one's record the worker runs
    every later trial, so that window less their time inside is the per-trial overhead
    (dispatch, pickling, the driver recording); before it (the ledger and worker start-up with
    its imports, start_sweep, reserving the runs, the first data open: the first trial less a
    typical one) and after it (summary, DSR, PBO, closing) are fixed."""
    later = inside[1:]
    typical = sum(later) / len(later)
    steady = recorded[-1] - arrived[0]
    return {"startup_s": arrived[0] - began - typical, "finish_s": ended - recorded[-1],
            "per_trial_ms": (steady - sum(later)) / len(later) * 1000,
            "record_ms": sum(r - a for a, r in zip(arrived, recorded, strict=True)) / len(arrived) * 1000}


def separate(data: Path, ledger: str, k: int) -> float:
    """Seconds for ``k`` stand-alone ``papertape backtest`` processes, one after another."""
    pairs = [(f, s) for f in range(2, 17, 2) for s in range(20, 91, 10)][:k]
    began = time.perf_counter()
    for fast, slow in pairs:
        subprocess.run([sys.executable, "-m", "engine.cli", "backtest", "--data", str(data),
                        "--symbol", "BTCUSDT", "--param", f"fast={fast}", "--param", f"slow={slow}",
                        "--ledger", ledger, "--no-progress", "--json"],
                       check=True, capture_output=True, cwd=ROOT / "bench")
    return time.perf_counter() - began


def write_rate(target: str, data: Path, workdir: Path) -> dict:
    """Rows per second the ledger writer takes for one trial's rows, sent as a sweep sends them."""
    from engine.commands.run_options import resolve_config
    from engine.ledger.store import Ledger
    from engine.run.sweep_trial import TrialRunner, TrialTask

    ns = argparse.Namespace(config=None, overrides=[], data=[str(data)], strategy=None, param=[],
                            symbol="BTCUSDT", interval=None, start=None, end=None, seed=None, ledger=target)
    cfg = resolve_config(ns)
    ledger = Ledger(target)
    try:
        run_id = ledger.start_run(kind="backtest", strategy="sma_cross", params="{}", symbol="BTCUSDT",
                                  category="linear", interval="1m", data_start=0, data_end=0, data_files="[]",
                                  seed=0, initial_cash=10_000.0, config="{}")
        outcome = TrialRunner().run(TrialTask("bench", 0, run_id, {}, cfg))
        began = time.perf_counter()
        for _ in range(3):
            ledger.send_serialised(outcome.payload, outcome.rows)
            ledger.wait_written()
        seconds = (time.perf_counter() - began) / 3
    finally:
        ledger.close()
    return {"rows": outcome.rows, "seconds": seconds, "rows_per_s": outcome.rows / seconds}


def _process_tree_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid`` (with its reaped children) and of its live children."""
    def times(stat: Path, with_children: bool) -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        ticks = sum(int(f) for f in fields[11:15 if with_children else 13])
        return ticks / os.sysconf("SC_CLK_TCK")

    total = times(Path(f"/proc/{pid}/stat"), True)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                total += times(stat, False)
        except (OSError, ValueError):
            continue  # a process that ended while it was read
    return total


def worker_write_rate(target: str, server_pid: int, data: Path) -> dict:
    """One trial's rows written by the worker itself, as a sweep on PostgreSQL does: the
    worker's wall time for it and the server's CPU time for it (its ingest capacity)."""
    from engine.commands.run_options import resolve_config
    from engine.ledger.batch_writer import BatchWriter
    from engine.ledger.memory import MemoryLedger
    from engine.ledger.store import Ledger
    from engine.run.backtest import run_backtest
    from engine.run.sweep_trial import TrialRunner

    ns = argparse.Namespace(config=None, overrides=[], data=[str(data)], strategy=None, param=[],
                            symbol="BTCUSDT", interval=None, start=None, end=None, seed=None, ledger=target)
    cfg = resolve_config(ns)
    ledger = Ledger(target)
    try:
        run_id = ledger.start_run(kind="backtest", strategy="sma_cross", params="{}", symbol="BTCUSDT",
                                  category="linear", interval="1m", data_start=0, data_end=0, data_files="[]",
                                  seed=0, initial_cash=10_000.0, config="{}")
    finally:
        ledger.close()
    rows = MemoryLedger(target, run_id)
    run_backtest(cfg, progress=False, source=TrialRunner().source(cfg), ledger=rows)
    batch = rows.batch(False)
    writer = BatchWriter(target)
    try:
        writer.write_run(run_id, batch)  # connects, warms the statements
        cpu0, began = _process_tree_cpu_s(server_pid), time.perf_counter()
        for _ in range(3):
            writer.write_run(run_id, batch)
        seconds = (time.perf_counter() - began) / 3
        server_s = (_process_tree_cpu_s(server_pid) - cpu0) / 3
    finally:
        writer.close()
    return {"rows": rows.rows_written, "seconds": seconds, "rows_per_s": rows.rows_written / seconds,
            "server_cpu_s": server_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=100_000)
    parser.add_argument("--separate", type=int, default=64, metavar="K")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    out: dict = {"python": sys.version.split()[0], "reference_loop_s": reference_loop_s(), "bars": args.bars}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "klines.csv"
        write_klines(data, args.bars)
        separate(data, str(work / "warm.db"), 1)  # builds nothing, but warms the page cache
        if args.separate:
            out["separate_s"] = separate(data, str(work / "separate.db"), args.separate) * 64 / args.separate
            out["separate_measured"] = args.separate
        one = sweep(data, str(work / "one.db"), workers=1)
        two = sweep(data, str(work / "two.db"), workers=2)
        out |= {"one_worker_s": one["wall_s"], "two_workers_s": two["wall_s"],
                "vs_one_worker": two["wall_s"] / one["wall_s"],
                "trial_s": one["inside_s"] / 64,
                "overhead_ms": (one["wall_s"] - one["inside_s"]) / 64 * 1000,
                "startup_s": one["startup_s"], "finish_s": one["finish_s"],
                "per_trial_ms": one["per_trial_ms"], "record_ms": one["record_ms"]}
        if args.separate:
            out["vs_separate"] = two["wall_s"] / out["separate_s"]
        if not args.no_ray:
            from tests.helpers.ray_cluster import RayCluster

            with RayCluster(num_cpus=2) as cluster:
                ray = sweep(data, str(work / "ray.db"), ray=cluster.address)
            out |= {"ray_s": ray["wall_s"], "ray_vs_local": ray["wall_s"] / two["wall_s"]}
        out["sqlite_write"] = write_rate(str(work / "rate.db"), data, work)
        if not args.no_postgres:
            from tests.helpers.postgres import PostgresServer

            with PostgresServer() as pg:
                out["postgres_write"] = worker_write_rate(pg.create_database("bench"), pg.pid, data)
    if "sqlite_write" in out:
        w = out["sqlite_write"]
        w["trial_s"] = out["trial_s"]  # a trial's time inside the 1-worker sweep (its own run was cold)
        w["workers_served"] = w["trial_s"] / w["seconds"]
    if "postgres_write" in out:
        w = out["postgres_write"]
        w["trial_s"] = out["trial_s"]  # a trial's time inside the 1-worker sweep
        w["workers_served_per_server_core"] = (w["trial_s"] + w["seconds"]) / max(w["server_cpu_s"], 1e-6)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"python {out['python']}, reference loop {out['reference_loop_s']:.2f} s, {args.bars:,} bars, "
          "64 trials")
    if "separate_s" in out:
        print(f"  64 separate backtests     {out['separate_s']:8.1f} s  "
              f"(measured {args.separate}, scaled to 64)")
    print(f"  sweep, 1 worker           {out['one_worker_s']:8.1f} s")
    against = (f"{out['vs_separate']:.2f}x separate (target <= {TARGETS['vs_separate']}), "
               if "vs_separate" in out else "")
    print(f"  sweep, 2 workers          {out['two_workers_s']:8.1f} s  {against}"
          f"{out['vs_one_worker']:.2f}x 1 worker (target <= {TARGETS['vs_one_worker']})")
    print(f"  1 worker, outside the trials: {out['overhead_ms']:.1f} ms a trial in all, of which "
          f"fixed {out['startup_s']:.2f} s start-up (ledger, worker spawn and imports, start_sweep, run "
          f"reservations, first data open) and {out['finish_s']:.2f} s finish (summary, DSR, PBO, closing)")
    print(f"  per trial: {out['trial_s'] * 1000:.0f} ms inside the worker, overhead "
          f"{out['per_trial_ms']:.1f} ms (target < {TARGETS['per_trial_ms']:.0f}; dispatch, pickling, "
          f"the driver recording it: {out['record_ms']:.1f} ms in the driver, beside the next trial)")
    if "ray_s" in out:
        print(f"  sweep, Ray 2 workers      {out['ray_s']:8.1f} s  {out['ray_vs_local']:.2f}x the local pool "
              f"(target <= {TARGETS['ray_vs_local']})")
    if "sqlite_write" in out:
        w = out["sqlite_write"]
        print(f"  sqlite ledger: {w['rows']:,} rows of one trial in {w['seconds'] * 1000:.0f} ms "
              f"({w['rows_per_s']:,.0f} rows/s) by the driver's one writer; a trial computes in "
              f"{w['trial_s']:.2f} s, so one ledger keeps up with about {w['workers_served']:.0f} workers")
    if "postgres_write" in out:
        w = out["postgres_write"]
        print(f"  postgres ledger: each worker writes its own trial's {w['rows']:,} rows in "
              f"{w['seconds'] * 1000:.0f} ms ({w['rows_per_s']:,.0f} rows/s, beside its {w['trial_s']:.2f} s "
              f"trial), costing the server {w['server_cpu_s'] * 1000:.0f} ms of CPU: one server core keeps "
              f"up with about {w['workers_served_per_server_core']:.0f} workers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
