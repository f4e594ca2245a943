"""A sweep from start to end: the search on all of the data, or on the part before a
``--holdout`` with the best trials then traded on the rest, or ``--walk-forward K``
(search each fold's growing training window, trade the next block with its winner), and
the summary (best trial, DSR, PBO) stored with the sweep."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from engine.analysis.sweep_stats import best_trial, overfitting
from engine.bars.aggregator import parse_interval
from engine.core.config import Config
from engine.core.typed import ConfigError, build
from engine.ledger.reader import LedgerReader
from engine.ledger.store import Ledger
from engine.ledger.sweeps import create_sweep, finish_sweep, load_sweep, load_trials, set_sweep_status
from engine.run.backtest import open_run_source
from engine.run.sweep import SweepOptions, SweepRun

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    """What ``papertape sweep`` reports; ``to_json`` is the ``--json`` object."""

    sweep_id: int
    ledger: str
    status: str
    objective: str
    trials: list[dict[str, Any]]
    best: dict[str, Any] | None
    dsr: dict[str, Any] | None
    pbo: dict[str, Any] | None
    executor: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"sweep_id": self.sweep_id, "trials": [public(t) for t in self.trials],
                "best": self.best, "dsr": self.dsr, "pbo": self.pbo}


def public(trial: dict[str, Any]) -> dict[str, Any]:
    """A trial as ``--json`` shows it."""
    return {"run_id": trial["run_id"], "params": trial["params"], "metrics": trial["metrics"],
            "status": trial["status"], "trial": trial["trial"], "phase": trial["phase"],
            "objective": trial.get("value"), "error": trial.get("error")}


def start_sweep(cfg: Config, opts: SweepOptions, ledger: Ledger) -> int:
    spec = {"options": opts.spec(), "config": _config_json(cfg)}
    return create_sweep(ledger.engine, strategy=cfg.strategy.name, objective=opts.objective,
                        sampler=opts.sampler, spec=spec)


def resumed(ledger: Ledger, sweep_id: int) -> tuple[Config, SweepOptions, list[dict[str, Any]]]:
    """The config, options and recorded trials of a sweep to resume."""
    row = load_sweep(ledger.engine, sweep_id, ledger.target)
    if row["status"] == "finished":
        raise ConfigError(f"sweep {sweep_id} is finished; nothing to resume")
    cfg = build(Config, row["spec"]["config"], f"sweep {sweep_id}'s config")
    opts = SweepOptions.from_spec(row["spec"]["options"])
    done = [{**t, "score": t["objective"]} for t in load_trials(ledger.engine, sweep_id)]
    set_sweep_status(ledger.engine, sweep_id, "running")
    return cfg, opts, done


def _config_json(cfg: Config) -> dict[str, Any]:
    import dataclasses

    return json.loads(json.dumps(dataclasses.asdict(cfg), default=list))


def data_window(cfg: Config) -> tuple[int, int, int]:
    """The replay's first and end time (ns) and the bar length to cut it at (1 ms for bars
    that are not time bars), of the source the trials replay (one symbol's or a portfolio's)."""
    run = cfg.run
    source = open_run_source(run)
    label = source.label if source.kind == "bars" else (run.interval or "1m")
    spec = parse_interval(label)
    return source.range.start, source.range.end, int(spec.size) if spec.is_time else 1_000_000


def _cut(start: int, end: int, share: float, step: int) -> int:
    point = start + int((end - start) * share)
    return start + (point - start) // step * step


def run_phases(sweep: SweepRun) -> dict[str, Any]:
    """Every phase of the sweep; returns the best trial with its out-of-sample figures."""
    opts = sweep.opts
    if opts.walk_forward:
        return _walk_forward(sweep, opts.walk_forward)
    if not opts.holdout:
        best = best_trial(sweep.search("search", (None, None), opts.seed))
        return {"search": "search", "best": _best(best)}
    start, end, step = data_window(sweep.cfg)
    split = _cut(start, end, 1.0 - opts.holdout, step)
    if not start < split < end:
        raise ConfigError(f"--holdout {opts.holdout} leaves no bars on one side of the split")
    trials = sweep.search("search", (start, split), opts.seed)
    ranked = sorted((t for t in trials if t["status"] == "finished" and t["score"] is not None),
                    key=lambda t: -t["score"])[: opts.top]
    tested = {t["trial"]: t for t in sweep.rerun("holdout", ranked, (split, end), (start, split))}
    best = _best(ranked[0] if ranked else None)
    if best is not None:
        best["holdout"] = {"start_ns": split, "end_ns": end, "top": [
            {"trial": t["trial"], "params": t["params"], "in_sample": sweep.shown(t["score"]),
             "out_of_sample": sweep.shown(tested[t["trial"]]["score"]),
             "run_id": tested[t["trial"]]["run_id"], "metrics": tested[t["trial"]]["metrics"]}
            for t in ranked]}
    return {"search": "search", "best": best}


def _walk_forward(sweep: SweepRun, folds: int) -> dict[str, Any]:
    start, end, step = data_window(sweep.cfg)
    edges = [start] + [_cut(start, end, k / (folds + 1), step) for k in range(1, folds + 1)] + [end]
    if len(set(edges)) != len(edges):
        raise ConfigError(f"--walk-forward {folds}: too few bars for {folds + 1} blocks")
    report, best = [], None
    for k in range(1, folds + 1):
        best = best_trial(sweep.search(f"fold {k}", (start, edges[k]), sweep.opts.seed + k - 1))
        entry: dict[str, Any] = {"fold": k, "train": [start, edges[k]], "test": [edges[k], edges[k + 1]],
                                 "params": None, "in_sample": None, "out_of_sample": None, "run_id": None}
        if best is not None:
            test = sweep.rerun(f"fold {k} test", [best], (edges[k], edges[k + 1]), (start, edges[k]))[0]
            entry |= {"params": best["params"], "in_sample": sweep.shown(best["score"]),
                      "out_of_sample": sweep.shown(test["score"]), "run_id": test["run_id"],
                      "metrics": test["metrics"]}
        report.append(entry)
    tested = [f for f in report if f["metrics"]]
    growth = 1.0
    for fold in tested:
        growth *= 1.0 + fold["metrics"]["total_return"]
    scores = [f["out_of_sample"] for f in tested if f["out_of_sample"] is not None]
    overall = {"folds_traded": len(tested), "total_return": growth - 1.0 if tested else None,
               "mean_out_of_sample": sum(scores) / len(scores) if scores else None}
    out = _best(best)
    if out is not None:
        out["walk_forward"] = {"folds": report, "overall": overall}
    return {"search": f"fold {folds}", "best": out}


def _best(trial: dict[str, Any] | None) -> dict[str, Any] | None:
    if trial is None:
        return None
    return {"trial": trial["trial"], "phase": trial["phase"], "run_id": trial["run_id"],
            "params": trial["params"], "metrics": trial["metrics"], "objective": trial["score"]}


def summarise(sweep: SweepRun, outcome: dict[str, Any], status: str, executor: str) -> SweepResult:
    """The result of a sweep from its records, with DSR and PBO over its (last) search."""
    records = sorted(sweep.records.values(), key=lambda t: (t["phase"], t["trial"]))
    for t in records:
        t["value"] = sweep.shown(t["score"])
    search = [t for t in records if t["phase"] == outcome.get("search", "search")]
    reader = LedgerReader(sweep.ledger.target)
    try:
        dsr, pbo = overfitting(reader, search)
    finally:
        reader.close()
    best = outcome.get("best")
    if best is not None:
        best["objective"] = sweep.shown(best["objective"])
    summary = {"best": best, "dsr": dsr, "pbo": pbo, "executor": executor}
    finish_sweep(sweep.ledger.engine, sweep.sweep_id, status, summary)
    return SweepResult(sweep.sweep_id, sweep.ledger.target, status, sweep.opts.objective, records,
                       best, dsr, pbo, executor)
