"""Parameter sweeps: many backtests of one strategy over a search space, every trial an
ordinary run in the ledger grouped under a sweep id, with the overfitting guard at the end.

The driver asks the sampler for trials in rounds, reserves a run for each, hands them to
the workers (local processes or Ray tasks, :mod:`engine.run.sweep_pool`,
:mod:`engine.run.sweep_ray`), and records each outcome as it arrives: the run's rows go to
the driver's one ledger writer, then the run row and the trial row are completed in one
transaction (on PostgreSQL each worker writes its trials' rows itself, so many machines
write to one ledger at once, and the driver completes the two rows). So a finished trial
is never lost to a Ctrl-C or a dead worker, and ``--resume`` runs only trials that have no
trial row. ``--holdout`` and ``--walk-forward``
are phases of the same sweep (:mod:`engine.run.sweep_phases`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import signal
import typing
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from engine.analysis.sweep_stats import best_trial, score
from engine.core import plugins
from engine.core.config import Config
from engine.core.typed import ConfigError, convert, parse_assignments
from engine.ledger.store import Ledger
from engine.ledger.sweeps import drop_reserved_runs, record_trial
from engine.run.sweep_samplers import make_sampler
from engine.run.sweep_space import Constraint, Space, parse_constraint, parse_space
from engine.run.sweep_training import TRAIN, plan_training, strategy_params
from engine.run.sweep_trial import TrialOutcome, TrialTask

log = logging.getLogger(__name__)


class SweepInterrupted(Exception):
    """The sweep was asked to stop; every trial that finished is recorded."""


class StopOnSigint:
    """Ctrl-C for the whole of a sweep, from before its ledger opens: the first SIGINT asks
    the sweep to stop once what has arrived is recorded; a second one aborts
    (``KeyboardInterrupt``)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> StopOnSigint:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *_: Any) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _handle(self, *_: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)


@dataclass(frozen=True)
class SweepOptions:
    """What to search and how; ``spec()`` is stored with the sweep so ``--resume`` can
    rebuild it."""

    space: Space
    grid: tuple[str, ...] = ()
    table: dict[str, Any] = field(default_factory=dict)
    sampler: str = "grid"
    trials: int | None = None
    seed: int = 0
    batch: int = 8
    objective: str = "sharpe"
    min_trades: int = 0
    constraints: tuple[Constraint, ...] = ()
    holdout: float | None = None
    walk_forward: int | None = None
    top: int = 5
    keep_bars: bool = False
    train: tuple[str, ...] = ()  # fixed training settings, KEY=VALUE (a model strategy's)
    checkpoints: str | None = None  # where trained checkpoints are cached (None: beside the ledger)

    def spec(self) -> dict[str, Any]:
        return {"grid": list(self.grid), "table": self.table, "sampler": self.sampler, "trials": self.trials,
                "seed": self.seed, "batch": self.batch, "objective": self.objective,
                "min_trades": self.min_trades, "constraints": [c.text for c in self.constraints],
                "holdout": self.holdout, "walk_forward": self.walk_forward, "top": self.top,
                "keep_bars": self.keep_bars, "train": list(self.train), "checkpoints": self.checkpoints}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> SweepOptions:
        return cls(space=parse_space(spec["grid"], spec["table"]), grid=tuple(spec["grid"]),
                   table=spec["table"], sampler=spec["sampler"], trials=spec["trials"], seed=spec["seed"],
                   batch=spec["batch"], objective=spec["objective"], min_trades=spec["min_trades"],
                   constraints=tuple(parse_constraint(c) for c in spec["constraints"]),
                   holdout=spec["holdout"], walk_forward=spec["walk_forward"], top=spec["top"],
                   keep_bars=spec.get("keep_bars", False), train=tuple(spec.get("train", ())),
                   checkpoints=spec.get("checkpoints"))


def typed_params(strategy: str, space: Space, fixed: tuple[str, ...] = ()) -> dict[str, Any]:
    """The hint of every swept parameter in the strategy's config class; a key it does not
    have, or one that ``--param`` also fixes (``fixed``), is a one-line error. The config
    file's parameters are defaults the space overrides."""
    cls = plugins.load("papertape.strategies", strategy, "strategy")
    config_class = getattr(cls, "config_class", None)
    if config_class is None:
        raise ConfigError(f"{strategy!r} is not a papertape Strategy class")
    hints = typing.get_type_hints(config_class)
    known = {f.name for f in dataclasses.fields(config_class) if f.init}
    names = [n for n in space.names if not n.startswith(TRAIN)]  # training settings: sweep_training
    for name in names:
        if name not in known:
            raise ConfigError(f"--grid {name}: {strategy} has no parameter {name!r} "
                              f"(its parameters: {', '.join(sorted(known))})")
        if name in fixed:
            raise ConfigError(f"--grid {name}: also fixed with --param; give it in one place")
    return {name: hints[name] for name in names}


class SweepRun:
    """One sweep in progress: the sampler rounds, the workers and the records."""

    def __init__(self, cfg: Config, opts: SweepOptions, pool, ledger: Ledger, sweep_id: int,
                 done: list[dict[str, Any]], progress: bool, stop: StopOnSigint) -> None:
        self.cfg, self.opts, self.pool, self.ledger, self.sweep_id = cfg, opts, pool, ledger, sweep_id
        self.hints = typed_params(cfg.strategy.name, opts.space)
        self.training = plan_training(cfg, opts.space, parse_assignments(list(opts.train), "--train"),
                                      opts.checkpoints)
        self.records: dict[tuple[str, int], dict[str, Any]] = {(t["phase"], t["trial"]): t for t in done}
        self.reserved: dict[int, TrialTask] = {}
        self.stop = stop
        self.bar = tqdm(total=0, unit="trial", desc=f"sweep {sweep_id}", leave=False,
                        disable=None if progress else True)

    # -- configs -----------------------------------------------------------------------------

    def typed(self, params: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for name, value in params.items():
            if name.startswith(TRAIN):  # the trainer converts it (checked by plan_training)
                out[name] = value
                continue
            hint = self.hints[name]
            out[name] = convert(str(value) if hint is str else value, hint, f"--grid {name}")
        return out

    def config_for(self, params: dict[str, Any], window: tuple[int | None, int | None]) -> Config:
        strategy = dataclasses.replace(self.cfg.strategy,
                                       params={**self.cfg.strategy.params, **strategy_params(params)})
        run = self.cfg.run
        start, end = window
        if start is not None or end is not None:
            run = dataclasses.replace(run, start=None if start is None else str(start // 1_000_000),
                                      end=None if end is None else str(end // 1_000_000))
        return dataclasses.replace(self.cfg, strategy=strategy, run=run)

    # -- trials ------------------------------------------------------------------------------

    def search(self, phase: str, window: tuple[int | None, int | None], seed: int) -> list[dict[str, Any]]:
        """Run the sampler's trials on ``window`` (ns, None for the data's own ends)."""
        opts = self.opts
        sampler = make_sampler(opts.sampler, opts.space, opts.trials, seed)
        self.bar.total += sampler.budget
        self.bar.refresh()
        out: list[dict[str, Any]] = []
        batch = opts.batch if opts.sampler == "tpe" else sampler.budget
        while sampler.remaining():
            asked = sampler.ask(batch)
            first = len(out)
            tasks = []
            for n, params in enumerate(asked, start=first):
                params = self.typed(params)
                key = (phase, n)
                if key in self.records:
                    self.bar.update()
                    continue
                if any(c.holds(params) is False for c in opts.constraints if c.names() <= set(params)):
                    self.record_discarded(phase, n, params)
                    continue
                tasks.append(self.task(phase, n, params, window))
            self.dispatch(tasks)
            for n, params in enumerate(asked, start=first):
                record = self.records[(phase, n)]
                sampler.tell(n, params, record.get("score") if record["status"] == "finished" else None)
                out.append(record)
        return out

    def rerun(self, phase: str, picks: list[dict[str, Any]], window: tuple[int | None, int | None],
              train_window: tuple[int | None, int | None]) -> list[dict[str, Any]]:
        """Run the given trials' parameters again on another window (holdout, fold tests),
        each with the model of its search's window ``train_window`` when trials train; each
        keeps its trial number."""
        self.bar.total += len(picks)
        self.bar.refresh()
        tasks = [self.task(phase, t["trial"], t["params"], window, train_window) for t in picks
                 if (phase, t["trial"]) not in self.records]
        self.bar.update(len(picks) - len(tasks))
        self.dispatch(tasks)
        return [self.records[(phase, t["trial"])] for t in picks]

    def task(self, phase: str, n: int, params: dict[str, Any], window, train_window=None) -> TrialTask:
        """Reserve a run for a trial on ``window``; a trial that trains does so on
        ``train_window`` (its own window when not given)."""
        cfg = self.config_for(params, window)
        run_id = self.ledger.start_run(
            kind="backtest", strategy=cfg.strategy.name, params=json.dumps(params, sort_keys=True),
            symbol=cfg.run.symbol, category=cfg.run.category, interval=cfg.run.interval or "",
            data_start=0, data_end=0, data_files=json.dumps(list(cfg.run.data)), seed=cfg.run.seed,
            initial_cash=cfg.account.cash, config="{}")
        task = TrialTask(phase, n, run_id, params, cfg, self.opts.keep_bars)
        if self.training is not None:
            task = dataclasses.replace(task, train=self.training.settings(params),
                                       train_window=window if train_window is None else train_window,
                                       checkpoints=self.training.folder)
        self.reserved[run_id] = task
        return task

    def dispatch(self, tasks: list[TrialTask]) -> None:
        if tasks and not self.stop.requested:
            self.pool.run(tasks, self.record, lambda: self.stop.requested)
        if self.stop.requested:
            raise SweepInterrupted(f"sweep {self.sweep_id} interrupted")

    def status_of(self, outcome: TrialOutcome, params: dict[str, Any]) -> tuple[str, str | None]:
        if outcome.status != "finished":
            return outcome.status, outcome.error
        metrics = outcome.metrics or {}
        if metrics.get("n_trades", 0) < self.opts.min_trades:
            trades = metrics.get("n_trades", 0)
            return "discarded", f"{trades} trades, fewer than --min-trades {self.opts.min_trades}"
        values = {**metrics, **params}
        for c in self.opts.constraints:
            if c.holds(values) is False:
                return "discarded", f"breaks {c.text}"
        return "finished", None

    def record(self, outcome: TrialOutcome) -> None:
        """Write a finished (or failed) trial: its rows (on PostgreSQL the worker wrote them
        already), then its run and trial rows."""
        task = self.reserved.pop(outcome.run_id)
        if outcome.payload:
            self.ledger.send_serialised(outcome.payload, outcome.rows)
            self.ledger.wait_written()
        status, note = self.status_of(outcome, task.params)
        run_values = {**outcome.run_fields, **outcome.final} if outcome.run_fields else {
            "status": "failed", "error": outcome.error, "finished_at": outcome.final.get("finished_at")}
        value = score(outcome.metrics, self.opts.objective) if status == "finished" else None
        record_trial(self.ledger.engine, self.sweep_id, phase=task.phase, trial=task.trial,
                     run_id=task.run_id, params=task.params, status=status,
                     objective=value, metrics=outcome.metrics, error=note,
                     attempts=1, run_values=run_values)
        self.records[task.key] = {"phase": task.phase, "trial": task.trial, "run_id": task.run_id,
                                  "params": task.params, "metrics": outcome.metrics, "status": status,
                                  "score": value, "error": note}
        if status == "failed":
            log.warning("trial %d (%s) failed: %s", task.trial, task.phase, note)
        self.bar.update()
        best = best_trial(list(self.records.values()))
        if best is not None:
            self.bar.set_postfix_str(f"best {self.opts.objective} {self.shown(best['score'])}", refresh=False)

    def record_discarded(self, phase: str, n: int, params: dict[str, Any]) -> None:
        broken = next(c.text for c in self.opts.constraints if c.holds(params) is False)
        record_trial(self.ledger.engine, self.sweep_id, phase=phase, trial=n, run_id=None, params=params,
                     status="discarded", objective=None, metrics=None, error=f"breaks {broken}",
                     attempts=0, run_values=None)
        self.records[(phase, n)] = {"phase": phase, "trial": n, "run_id": None, "params": params,
                                    "metrics": None, "status": "discarded", "score": None,
                                    "error": f"breaks {broken}"}
        self.bar.update()

    def shown(self, value: float | None) -> float | None:
        """A score as the objective's own value (a minimised metric is stored negated)."""
        from engine.analysis.sweep_stats import LOWER_IS_BETTER

        if value is None or not math.isfinite(value):
            return None
        return -value if self.opts.objective in LOWER_IS_BETTER else value

    def abandon(self) -> None:
        """After a stop: drop the runs reserved for trials that did not finish."""
        drop_reserved_runs(self.ledger.engine, list(self.reserved))
        self.reserved.clear()
        self.bar.close()
