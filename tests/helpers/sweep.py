"""Running ``papertape`` verbs as separate processes for the sweep tests, and reading what a
sweep left in its ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from engine.ledger.schema import database_url

ROOT = Path(__file__).resolve().parents[2]


def papertape(*args: str, env: dict[str, str] | None = None, timeout: float = 600,
              cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``papertape ARGS`` in a fresh interpreter (no config.toml: run from ``cwd``)."""
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=cwd or ROOT / "tests")


def json_of(done: subprocess.CompletedProcess) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def query(ledger: str | Path, sql: str) -> list[tuple]:
    engine = sa.create_engine(database_url(ledger))
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


def fills(ledger: str | Path, run_id: int) -> list[tuple]:
    """A run's fills without their ids: what must match between two runs."""
    return query(ledger, "SELECT side, price, qty, fee, realized_pnl, position, cash, equity, ts_event "
                         f"FROM fills WHERE run_id = {int(run_id)} ORDER BY id")


def wait_for(predicate, timeout: float = 180.0, what: str = "condition") -> None:
    """Poll ``predicate`` every 0.2 s until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def trial_rows(ledger: str | Path, sweep_id: int) -> list[tuple]:
    """(phase, trial, run_id, status) of every recorded trial of a sweep."""
    try:
        return query(ledger, "SELECT phase, trial, run_id, status FROM sweep_trials "
                             f"WHERE sweep_id = {int(sweep_id)} ORDER BY id")
    except sa.exc.OperationalError:  # the sweep has not created its tables yet
        return []
