"""Sweeps of a strategy that trains its own model (a strategy class with a ``sweep_trainer``,
as the model strategy has): the ``train.KEY`` dimensions of the space and the fixed
``--train KEY=VALUE`` settings, checked before any trial, and each trial's settings. The
worker has the trainer train (or take from its cache) the model of the trial's training
window, then backtests with it; the driver picks the window, so held-out bars never reach
training."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core import plugins
from engine.core.config import Config
from engine.core.errors import UserError
from engine.core.paths import check_folder
from engine.core.typed import ConfigError
from engine.run.sweep_space import Space

TRAIN = "train."  # the prefix of a training setting among a sweep's keys
CHECKED_COMBINATIONS = 256  # more than this many combinations: each value is checked alone


class TrainingFailed(UserError):
    """A trial's model could not be trained; the trial is recorded failed with this reason."""


@dataclass(frozen=True)
class Training:
    """The fixed training settings of a sweep and the folder its checkpoints are cached in."""

    fixed: dict[str, str]
    folder: str

    def settings(self, params: dict[str, Any]) -> dict[str, str]:
        """A trial's training settings: the fixed ones and its own ``train.KEY`` values."""
        return {**self.fixed, **{k.removeprefix(TRAIN): setting(v) for k, v in params.items()
                                 if k.startswith(TRAIN)}}


def setting(value: Any) -> str:
    """A value as ``--train`` would spell it (true, 0.001, linformer)."""
    return value if isinstance(value, str) else json.dumps(value)


def strategy_params(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameters without its training settings."""
    return {k: v for k, v in params.items() if not k.startswith(TRAIN)}


def default_folder(ledger: str) -> Path:
    """Beside a SQLite ledger (``L.db`` -> ``L.db.checkpoints``); ``./sweep-checkpoints`` for a URL."""
    if "://" in ledger:
        return Path("sweep-checkpoints")
    path = Path(ledger).expanduser()
    return path.with_name(path.name + ".checkpoints")


def plan_training(cfg: Config, space: Space, fixed: dict[str, str], folder: str | None) -> Training | None:
    """The sweep's training, or None when its trials do not train. Settings the strategy's
    trainer refuses, training keys for a strategy that trains nothing, or beside a given
    ``checkpoint``, are one-line errors here, before any trial."""
    swept = [n for n in space.names if n.startswith(TRAIN)]
    asked = [f"--grid {n}" for n in swept] + [f"--train {k}" for k in fixed]
    for name in swept:
        if name.removeprefix(TRAIN) in fixed:
            raise ConfigError(f"--grid {name}: also fixed with --train; give it in one place")
    cls = plugins.load("papertape.strategies", cfg.strategy.name, "strategy")
    trainer = getattr(cls, "sweep_trainer", None)
    if trainer is None:
        if asked:
            raise ConfigError(f"{asked[0]}: strategy {cfg.strategy.name} trains no model "
                              "(training settings are for --strategy model)")
        return None
    if "checkpoint" in space.names or not trainer.wanted(cfg.strategy.params):
        if asked:
            raise ConfigError(f"{asked[0]}: each trial trains its own checkpoint; leave out checkpoint")
        return None
    for combination in _combinations(space, swept):
        try:
            trainer.check({**fixed, **{k.removeprefix(TRAIN): setting(v) for k, v in combination.items()}},
                          cfg)
        except ConfigError as exc:
            where = " ".join(f"{k}={v}" for k, v in combination.items())
            raise ConfigError(f"--grid {where}: {exc}" if where else str(exc)) from None
    where = check_folder(Path(folder) if folder else default_folder(cfg.ledger.path), "--checkpoints")
    return Training(dict(fixed), str(where.resolve()))


def _combinations(space: Space, names: list[str]) -> list[dict[str, Any]]:
    """Every combination of the swept training values (a span's two ends), or each value
    alone when there are too many combinations."""
    choices = []
    for name in names:
        d = space.dimension(name)
        ends = (d.low, d.high) if not d.integer else (math.ceil(d.low), math.floor(d.high))
        choices.append(list(d.values) if d.values is not None else list(ends))
    if math.prod(len(c) for c in choices) <= CHECKED_COMBINATIONS:
        return [dict(zip(names, point, strict=True)) for point in itertools.product(*choices)]
    return [{name: value} for name, values in zip(names, choices, strict=True) for value in values]


def trained_config(config: Config, settings: dict[str, str], window: tuple[int | None, int | None],
                   folder: str) -> Config:
    """``config`` with the checkpoint its strategy's trainer trained on ``window`` (or found
    in ``folder``); any failure is :class:`TrainingFailed` with its reason."""
    cls = plugins.load("papertape.strategies", config.strategy.name, "strategy")
    try:
        params = cls.sweep_trainer.prepare(config, settings, window, folder)
    except Exception as exc:  # noqa: BLE001 - any reason is the trial's, the sweep goes on
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise TrainingFailed(reason if reason.startswith("training failed") else
                             f"training failed: {reason}") from None
    strategy = dataclasses.replace(config.strategy, params={**config.strategy.params, **params})
    return dataclasses.replace(config, strategy=strategy)
