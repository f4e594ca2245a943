"""The model strategy's checkpoints: loaded, put in hand-over order (each trades from the
end of its own training data), checked to agree on head, outputs and bar interval; and the
warning when a backtest's first forecast comes later than the checkpoints allow."""

from __future__ import annotations

import logging

import numpy as np

from engine.analysis.report import format_time
from engine.core.clock import NS_PER_MS
from engine.core.typed import ConfigError
from models.checkpoint import CheckpointError
from models.runner import ModelRunner

EARLIEST = np.iinfo(np.int64).min  # "from the first bar"


def load_runners(spec: str, in_sample: bool) -> tuple[list[ModelRunner], np.ndarray]:
    """The checkpoints of ``spec`` (comma-separated) in hand-over order, and the open time
    (ms) from which each trades: its out-of-sample start (the first from the beginning with
    ``in_sample``)."""
    paths = [path.strip() for path in spec.split(",") if path.strip()]
    if not paths:
        raise ConfigError(f"strategy model: checkpoint {spec!r} names no file")
    try:
        runners = [ModelRunner.load(path) for path in paths]
    except CheckpointError as exc:
        raise ConfigError(f"strategy model: {exc}") from None
    starts = [EARLIEST if r.trade_from_ms is None else r.trade_from_ms for r in runners]
    order = np.argsort(starts, kind="stable")
    runners, starts = [runners[i] for i in order], np.array(starts, dtype=np.int64)[order]
    for i in range(1, len(runners)):
        if starts[i] == starts[i - 1]:
            when = "the first bar" if starts[i] == EARLIEST else utc(starts[i])
            raise ConfigError(f"strategy model: {runners[i - 1].path} and {runners[i].path} both trade "
                              f"from {when}, so one would never trade: checkpoints take turns, each "
                              "from the end of its training data (the folds of a walk-forward)")
    first = runners[0]
    for other in runners[1:]:
        if (other.head, other.out_dim, other.interval_ms) != (first.head, first.out_dim, first.interval_ms):
            raise ConfigError(f"strategy model: {other.path} and {first.path} differ in head, "
                              "outputs or bar interval")
    if in_sample:
        starts[0] = EARLIEST
    return runners, starts


def warn_of_late_forecasts(log: logging.Logger, starts: np.ndarray, warmup: int, open_ms: np.ndarray,
                           active: np.ndarray, out: np.ndarray, who: str = "") -> None:
    """Say so when a backtest makes no forecast, or makes its first later than the first bar
    a checkpoint may trade because the window is still filling (a ``--start`` after the
    data's beginning, for example); ``who`` names the symbol in a portfolio."""
    if not len(open_ms):
        return
    tradable = np.flatnonzero(active >= 0)
    made = np.flatnonzero(~np.isnan(out).all(axis=1))
    if not len(tradable):
        log.warning("%sno bar of this run comes after the data the checkpoint was trained and "
                    "validated on (it trades from %s): no forecast, no trade; in_sample=true "
                    "trades them anyway", who, utc(starts[0]))
    elif not len(made):
        log.warning("%sthe model needs %d bars before its first forecast, and the run has %d "
                    "from %s: no forecast, no trade", who, warmup, len(open_ms) - tradable[0],
                    utc(open_ms[tradable[0]]))
    elif made[0] > tradable[0]:  # a warning when the model's data shows there are earlier bars
        seen = starts[active[tradable[0]]] != EARLIEST
        log.log(logging.WARNING if seen else logging.INFO,
                "%sforecasts start at %s: the first %d bars the model may trade (from %s) fill its "
                "window of %d bars first; start the run earlier to trade them", who,
                utc(open_ms[made[0]]), made[0] - tradable[0], utc(open_ms[tradable[0]]), warmup)


def utc(open_ms: int) -> str:
    return f"{format_time(int(open_ms) * NS_PER_MS)} UTC"
