"""The model strategy's checkpoints: loaded, put in hand-over order (each trades from the
end of its own training data), and checked to agree on head, outputs and bar interval."""

from __future__ import annotations

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


def utc(open_ms: int) -> str:
    return f"{format_time(int(open_ms) * NS_PER_MS)} UTC"
