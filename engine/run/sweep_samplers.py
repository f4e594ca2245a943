"""Samplers that choose a sweep's trials: the full grid, seeded random draws, and Optuna's
TPE (seeded). Each hands out trials in rounds (``ask``) and learns their objective values
(``tell``); a round is told in trial order, so the trials chosen depend on the seed and on
the results alone, never on which worker finished first.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from engine.core.typed import ConfigError
from engine.run.sweep_space import Dimension, Space, Value

SAMPLERS = ("grid", "random", "tpe")


class Sampler(ABC):
    """Hands out parameter sets; ``ask`` returns at most ``n`` (fewer when the space or the
    budget runs out) and ``tell`` takes each one's objective (None for a failed trial)."""

    def __init__(self, space: Space, trials: int | None) -> None:
        self.space = space
        self.budget = trials
        self.asked = 0

    @abstractmethod
    def ask(self, n: int) -> list[dict[str, Value]]:
        """The next (at most) ``n`` parameter sets."""

    def tell(self, number: int, params: dict[str, Value], value: float | None) -> None:  # noqa: B027
        """Record trial ``number``'s objective (larger is better); grid and random ignore it."""

    def remaining(self) -> int:
        return max(self.budget - self.asked, 0)


class GridSampler(Sampler):
    """Every point of the grid in order; ``trials`` (when given) must not cut it short."""

    def __init__(self, space: Space, trials: int | None = None) -> None:
        points = space.grid()
        if trials is not None and trials != len(points):
            raise ConfigError(f"the grid has {len(points)} points; --trials {trials} applies to "
                              "--sampler random or tpe")
        super().__init__(space, len(points))
        self.points = points

    def ask(self, n: int) -> list[dict[str, Value]]:
        out = self.points[self.asked : self.asked + n]
        self.asked += len(out)
        return out


class RandomSampler(Sampler):
    """Independent draws, seeded. On a space with a full grid the draws are distinct points
    (without replacement), so no trial repeats another."""

    def __init__(self, space: Space, trials: int, seed: int) -> None:
        super().__init__(space, trials)
        self.rng = np.random.default_rng(seed)
        self.order: list[dict[str, Value]] | None = None
        if space.discrete:
            points = space.grid()
            if trials > len(points):
                raise ConfigError(f"--trials {trials} is more than the {len(points)} points of the space")
            self.order = [points[i] for i in self.rng.permutation(len(points))[:trials]]

    def ask(self, n: int) -> list[dict[str, Value]]:
        n = min(n, self.remaining())
        if self.order is not None:
            out = self.order[self.asked : self.asked + n]
        else:
            out = [{d.name: _draw(d, self.rng) for d in self.space.dimensions} for _ in range(n)]
        self.asked += len(out)
        return out


def _draw(dim: Dimension, rng: np.random.Generator) -> Value:
    if dim.values is not None:
        return dim.values[int(rng.integers(len(dim.values)))]
    if dim.log:
        value = math.exp(rng.uniform(math.log(dim.low), math.log(dim.high)))
    else:
        value = float(rng.uniform(dim.low, dim.high))
    if dim.integer:
        return int(min(max(round(value), dim.low), dim.high))
    return value


class TpeSampler(Sampler):
    """Optuna's tree-structured Parzen estimator, seeded; ranges are ordered numbers to it,
    listed values categories. The first ``startup`` trials are random draws, as in Optuna."""

    def __init__(self, space: Space, trials: int, seed: int, startup: int = 10) -> None:
        import optuna

        super().__init__(space, trials)
        optuna.logging.set_verbosity(logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
        self.study = optuna.create_study(direction="maximize", sampler=sampler)
        self.distributions = {d.name: _distribution(d) for d in space.dimensions}
        self.pending: dict[int, Any] = {}

    def ask(self, n: int) -> list[dict[str, Value]]:
        out = []
        for _ in range(min(n, self.remaining())):
            trial = self.study.ask(self.distributions)
            self.pending[self.asked] = trial
            out.append({name: _plain(trial.params[name]) for name in self.space.names})
            self.asked += 1
        return out

    def tell(self, number: int, params: dict[str, Value], value: float | None) -> None:
        import optuna

        trial = self.pending.pop(number, None)
        if trial is None:  # a trial run before (a resumed sweep): teach the study its result
            trial = optuna.trial.create_trial(
                params=params, distributions=self.distributions,
                value=value if value is not None and math.isfinite(value) else None,
                state=optuna.trial.TrialState.COMPLETE if value is not None and math.isfinite(value)
                else optuna.trial.TrialState.FAIL)
            self.study.add_trial(trial)
            return
        if value is None or not math.isfinite(value):
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(trial, value)


def _distribution(dim: Dimension):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if dim.values is not None:
        if dim.step is not None and len(dim.values) > 1:
            if dim.integer:
                return IntDistribution(int(dim.values[0]), int(dim.values[-1]), step=int(dim.step))
            return FloatDistribution(float(dim.values[0]), float(dim.values[-1]), step=float(dim.step))
        return CategoricalDistribution(dim.values)
    if dim.integer:
        return IntDistribution(int(dim.low), int(dim.high), log=dim.log)
    return FloatDistribution(dim.low, dim.high, log=dim.log)


def _plain(value: Any) -> Value:
    """Optuna's float range values rounded like the range's own (0.1 * 3 is 0.3, not
    0.30000000000000004), numpy scalars as Python ones."""
    if isinstance(value, float):
        return round(value, 12)
    return value.item() if hasattr(value, "item") else value


def make_sampler(name: str, space: Space, trials: int | None, seed: int) -> Sampler:
    """The sampler called ``name`` over ``space``; ``trials`` is the budget (the grid's own
    size for ``grid``)."""
    if name == "grid":
        return GridSampler(space, trials)
    if name not in SAMPLERS:
        raise ConfigError(f"--sampler {name!r}: use one of {', '.join(SAMPLERS)}")
    if trials is None or trials < 1:
        raise ConfigError(f"--sampler {name} needs --trials N (a positive number of trials)")
    if name == "random":
        return RandomSampler(space, trials, seed)
    return TpeSampler(space, trials, seed)
