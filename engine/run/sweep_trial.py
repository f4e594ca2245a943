"""One sweep trial, run where a worker runs it: an ordinary backtest of the trial's config
into a :class:`~engine.ledger.memory.MemoryLedger`, on data the worker opened once.

The result goes back to the driver as a :class:`TrialOutcome`: the run row's fields, its
rows as the ledger writer's batch bytes, and the metrics computed from those rows the way
``papertape backtest`` computes them. On a PostgreSQL ledger the worker writes the rows
itself, in one transaction, and sends back only the rest. Local worker processes and Ray
tasks run the same code.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from engine.core.config import Config
from engine.core.errors import UserError
from engine.ledger.batch_writer import BatchWriter
from engine.ledger.memory import MemoryLedger, written_by_workers
from engine.ledger.schema import database_url
from engine.run.backtest import RunFailed, open_run_source, run_backtest
from engine.run.sweep_training import trained_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialTask:
    """A trial to run: its place in the sweep, the run id reserved for it, and its config."""

    phase: str
    trial: int
    run_id: int
    params: dict[str, Any]
    config: Config
    keep_bars: bool = False  # send the per-bar equity rows, not only the packed curve
    train: dict[str, str] | None = None  # training settings when the trial trains its model
    train_window: tuple[int | None, int | None] = (None, None)  # ns, the bars it trains on
    checkpoints: str = ""  # the folder trained checkpoints are cached in

    @property
    def key(self) -> tuple[str, int]:
        return self.phase, self.trial


@dataclass
class TrialOutcome:
    """What a worker sends back for one trial."""

    phase: str
    trial: int
    run_id: int
    status: str                       # finished or failed
    error: str | None = None
    metrics: dict[str, Any] | None = None
    fills: int = 0
    run_fields: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)
    payload: bytes = b""
    rows: int = 0
    seconds: float = 0.0
    worker: str = ""

    @property
    def key(self) -> tuple[str, int]:
        return self.phase, self.trial


class TrialRunner:
    """Runs trials in one worker process, keeping each data source it opened (the parsed
    bars or the columnar trade cache) for every later trial on the same data."""

    def __init__(self) -> None:
        self.sources: dict[tuple, Any] = {}
        self.writers: dict[str, BatchWriter] = {}
        self.worker = f"{os.uname().nodename}:{os.getpid()}"

    def writer(self, target: str) -> BatchWriter:
        """This worker's connection to a ledger it writes its trials into, kept open."""
        if target not in self.writers:
            self.writers[target] = BatchWriter(database_url(target))
        return self.writers[target]

    def source(self, cfg: Config):
        run = cfg.run
        key = (tuple(run.data), run.symbol, run.symbols, run.category, run.interval, run.start, run.end)
        if key not in self.sources:
            self.sources[key] = open_run_source(run)
        return self.sources[key]

    def run(self, task: TrialTask) -> TrialOutcome:
        began = time.perf_counter()
        ledger = MemoryLedger(task.config.ledger.path, task.run_id)
        out = TrialOutcome(task.phase, task.trial, task.run_id, "finished", worker=self.worker)
        try:
            cfg = task.config if task.train is None else trained_config(
                task.config, task.train, task.train_window, task.checkpoints)
            result = run_backtest(cfg, progress=False, source=self.source(cfg), ledger=ledger)
        except RunFailed as exc:
            result, out.status, out.error = exc.result, "failed", str(exc)
        except UserError as exc:  # refused before the run began: a bad parameter, an untrainable model
            out.status, out.error = "failed", str(exc)
            result = None
        if result is not None:
            out.metrics, out.fills = result.metrics, result.fills
        out.run_fields, out.final = ledger.run_fields, ledger.final
        if written_by_workers(task.config.ledger.path):
            writer = self.writer(task.config.ledger.path)
            try:
                writer.write_run(task.run_id, ledger.batch(task.keep_bars))
            except (sa.exc.SQLAlchemyError, writer.engine.dialect.loaded_dbapi.Error) as exc:
                out.status, out.error = "failed", f"ledger write failed: {str(exc).splitlines()[0]}"
                out.run_fields = {}
        else:
            out.payload = ledger.payload(task.keep_bars)
        out.rows = ledger.rows_written
        # the session's parts refer to each other, so only a full collection would free them and
        # the rows they hold: a worker would grow by every trial's rows until one ran
        ledger.release()
        out.seconds = time.perf_counter() - began
        return out


_RUNNER: TrialRunner | None = None


def run_in_this_process(task: TrialTask) -> TrialOutcome:
    """Run ``task`` on this process's runner (made on first use, then kept)."""
    global _RUNNER
    if _RUNNER is None:
        _RUNNER = TrialRunner()
    return _RUNNER.run(task)
