"""Training the model strategy's checkpoint inside a run: ``--train key=value`` settings as
a :class:`models.train.TrainConfig`, and the sweep's trainer (``ModelStrategy.sweep_trainer``),
which trains a trial's model on its training window only and keeps the checkpoint in a
cache shared by every trial with the same settings, window, data and seed.

A cached checkpoint is named by a hash of the training config (seed included), the window,
the data files (path, size, modification time), the run's symbols, interval and ``[bars]``
settings, and the code version; a lock per name makes a second worker wait for the first
one's training instead of repeating it, and a training refused for its data or settings
(too few bars, a model that does not fit) leaves its reason, which every trial of that name
reports without trying again. Training runs torch on one thread, so a checkpoint has the
same bits whichever process or machine trains it.
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.core.config import Config
from engine.core.typed import ConfigError, build
from engine.feeds.history.sources import bars_by_symbol, expand
from engine.run.backtest import open_run_source


def train_config(settings: dict[str, str], interval: str, progress: bool):
    """A :class:`models.train.TrainConfig` from ``--train`` settings, at the run's interval."""
    from models.train import TrainConfig

    options = {k.removeprefix("attention."): _scalar(v) for k, v in settings.items()
               if k.startswith("attention.")}
    plain = {k: v for k, v in settings.items() if not k.startswith("attention.")}
    for fixed in ("interval", "progress", "attention_options"):
        if fixed in plain:
            raise ConfigError(f"--train {fixed}: set by the run (use --interval, attention.NAME=VALUE)")
    return build(TrainConfig, {**plain, "interval": interval, "progress": progress,
                               "attention_options": options}, "--train")


def _scalar(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def run_bars(cfg: Config) -> tuple[dict[str, Any], str]:
    """The bars a backtest of ``cfg`` replays (kline format), per symbol, and their interval label."""
    source, interval = _opened(cfg)
    return bars_by_symbol(source, interval, cfg.bars), interval


def _opened(cfg: Config):
    """The run's replay source (opening it reads no bars) and its bars' interval label."""
    source = open_run_source(cfg.run)
    return source, source.label if source.kind == "bars" else cfg.run.interval or "1m"


class TrialTrainingFailed(Exception):
    """A sweep trial's model could not be trained; the message says why."""


class ModelTrainer:
    """What ``papertape sweep`` asks of a strategy that trains its own model per trial."""

    def wanted(self, params: dict[str, Any]) -> bool:
        """True when the trials must train: no ``checkpoint`` is given."""
        return not params.get("checkpoint")

    def check(self, settings: dict[str, str], cfg: Config) -> None:
        """Refuse settings that cannot train (one line, :class:`ConfigError`), before any trial."""
        train_config(settings, cfg.run.interval or "1m", progress=False)

    def prepare(self, cfg: Config, settings: dict[str, str], window: tuple[int | None, int | None],
                folder: str) -> dict[str, Any]:
        """Train (or take from the cache) the model of ``settings`` on the bars of ``window``
        (ns; None for the data's own end) and return the strategy parameters that use it."""
        start, end = window
        run = dataclasses.replace(cfg.run, start=cfg.run.start if start is None else str(start // 1_000_000),
                                  end=cfg.run.end if end is None else str(end // 1_000_000))
        source, interval = _opened(dataclasses.replace(cfg, run=run))
        tc = train_config({"seed": str(cfg.run.seed), **settings}, interval, progress=False)
        key = cache_key(tc, run, cfg)
        directory = Path(folder)
        directory.mkdir(parents=True, exist_ok=True)
        path, failed = directory / f"{key}.pt", directory / f"{key}.failed"
        with _locked(directory / f"{key}.lock"):
            if failed.exists():
                raise TrialTrainingFailed(failed.read_text())
            if not path.exists():  # bars are made only to train (from trades, that takes a while)
                by_symbol = bars_by_symbol(source, interval, cfg.bars)
                bars = next(iter(by_symbol.values())) if len(by_symbol) == 1 else by_symbol
                try:
                    _train_to(path, bars, tc)
                except ValueError as exc:  # too few bars, a model that does not fit: every time
                    reason = f"training failed: {str(exc).splitlines()[0]}"
                    failed.write_text(reason)
                    raise TrialTrainingFailed(reason) from None
                except RuntimeError as exc:  # torch ran out of memory, say: the next trial tries again
                    raise TrialTrainingFailed(f"training failed: {str(exc).splitlines()[0]}") from None
        return {"checkpoint": str(path)}


def cache_key(tc, run, cfg: Config) -> str:
    """The hash naming the checkpoint that ``tc`` trains on the bars of ``run``."""
    files = [(str(p), (s := os.stat(p)).st_size, s.st_mtime_ns) for p in expand(list(run.data))]
    what = {"train": {k: v for k, v in dataclasses.asdict(tc).items() if k != "progress"},
            "window": [run.start, run.end], "data": list(run.data), "files": files,
            "symbol": run.symbol, "symbols": run.symbols, "category": run.category,
            "interval": run.interval, "bars": dataclasses.asdict(cfg.bars),
            "code": _code_version()}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=list).encode()).hexdigest()[:24]


@functools.cache
def _code_version() -> str:
    """The source tree's version, asked of git once per process."""
    from models.checkpoint import code_version

    return code_version()


def _train_to(path: Path, bars, tc) -> None:
    """Train on one torch thread and write the checkpoint whole (a temporary file renamed)."""
    import torch

    from models.checkpoint import save_checkpoint
    from models.train import train_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train_model(bars, tc)
    finally:
        torch.set_num_threads(threads)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    save_checkpoint(partial, result.model, result.meta)
    os.replace(partial, path)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
