"""Sweeps in the ledger: the ``sweeps`` row of each sweep, the run reserved for each trial
before it is dispatched, and the ``sweep_trials`` row that marks a trial done (written in
the same transaction that completes its run row, after the run's rows are on disk)."""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa

from engine.core.errors import UserError
from engine.ledger.schema import PACKED, TABLES, Run, SweepRow, SweepTrialRow


class SweepNotFound(UserError, LookupError):
    """No sweep with that id in the ledger."""


def create_sweep(engine: sa.Engine, *, strategy: str, objective: str, sampler: str,
                 spec: dict[str, Any]) -> int:
    with engine.begin() as conn:
        return int(conn.execute(sa.insert(SweepRow).values(
            status="running", strategy=strategy, objective=objective, sampler=sampler,
            spec=json.dumps(spec, sort_keys=True, default=str), started_at=time.time(),
        )).inserted_primary_key[0])


def load_sweep(engine: sa.Engine, sweep_id: int, where: str) -> dict[str, Any]:
    """The sweep's row, its ``spec`` and ``summary`` decoded."""
    row = None
    if -2**63 <= sweep_id < 2**63:  # beyond 64 bits no row has it
        with engine.connect() as conn:
            row = conn.execute(sa.select(SweepRow).where(SweepRow.id == sweep_id)).mappings().first()
    if row is None:
        raise SweepNotFound(f"{where} has no sweep {sweep_id}")
    out = dict(row)
    out["spec"] = json.loads(out["spec"])
    out["summary"] = json.loads(out["summary"]) if out["summary"] else None
    return out


def load_trials(engine: sa.Engine, sweep_id: int) -> list[dict[str, Any]]:
    """Every recorded trial of a sweep, in phase and trial order, ``params`` and
    ``metrics`` decoded."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(SweepTrialRow).where(SweepTrialRow.sweep_id == sweep_id)
                            .order_by(SweepTrialRow.id)).mappings().all()
    out = []
    for row in rows:
        trial = dict(row)
        trial["params"] = json.loads(trial["params"])
        trial["metrics"] = json.loads(trial["metrics"]) if trial["metrics"] else None
        out.append(trial)
    return out


def finish_sweep(engine: sa.Engine, sweep_id: int, status: str, summary: dict[str, Any] | None) -> None:
    with engine.begin() as conn:
        conn.execute(sa.update(SweepRow).where(SweepRow.id == sweep_id).values(
            status=status, finished_at=time.time(),
            summary=None if summary is None else json.dumps(summary, default=str)))


def set_sweep_status(engine: sa.Engine, sweep_id: int, status: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.update(SweepRow).where(SweepRow.id == sweep_id).values(status=status))


def record_trial(engine: sa.Engine, sweep_id: int, *, phase: str, trial: int, run_id: int | None,
                 params: dict[str, Any], status: str, objective: float | None,
                 metrics: dict[str, Any] | None, error: str | None, attempts: int,
                 run_values: dict[str, Any] | None) -> None:
    """Mark a trial done: complete its run row (``run_values``) and add its trial row, in
    one transaction."""
    with engine.begin() as conn:
        if run_id is not None and run_values:
            conn.execute(sa.update(Run).where(Run.id == run_id).values(**run_values))
        conn.execute(sa.insert(SweepTrialRow).values(
            sweep_id=sweep_id, phase=phase, trial=trial, run_id=run_id,
            params=json.dumps(params, sort_keys=True, default=str), status=status,
            objective=objective, metrics=None if metrics is None else json.dumps(metrics, default=str),
            error=error, attempts=attempts, finished_at=time.time()))


def drop_reserved_runs(engine: sa.Engine, run_ids: list[int]) -> None:
    """Delete the runs reserved for trials that never finished, with any rows of theirs."""
    if run_ids:
        with engine.begin() as conn:
            for table in (*TABLES.values(), *PACKED):
                conn.execute(sa.delete(table).where(table.c.run_id.in_(run_ids)))
            conn.execute(sa.delete(Run).where(Run.id.in_(run_ids), Run.status == "running"))
