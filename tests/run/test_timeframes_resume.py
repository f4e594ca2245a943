"""``live --resume`` continues a run with the higher timeframes it ran with: a strategy that reads
1h bars gets them after the resume too, and a resume that would change them is refused."""

from __future__ import annotations

import dataclasses
import json

import pytest

from engine.core.config import Config
from engine.core.typed import ConfigError
from engine.ledger.store import Ledger
from engine.run.resume import resumed_config

WATCHER = "tests.helpers.timeframes:TimeframeWatcher"


def recorded_live_run(tmp_path, timeframes: tuple[str, ...]) -> Config:
    """A config on a ledger holding one finished live 1m run of BTCUSDT with ``timeframes``."""
    cfg = Config()
    cfg = dataclasses.replace(cfg, ledger=dataclasses.replace(cfg.ledger, path=str(tmp_path / "l.db")))
    ran = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, timeframes=timeframes))
    ledger = Ledger(cfg.ledger.path)
    run_id = ledger.start_run(kind="live", strategy=WATCHER, params="{}", symbol="BTCUSDT", category="linear",
                              interval="1m", data_start=0, data_end=0, data_files="[]", seed=0,
                              initial_cash=cfg.account.cash, config=json.dumps(dataclasses.asdict(ran)))
    ledger.finish_run(run_id, "stopped", None, {})
    ledger.close()
    return cfg


def resume(cfg: Config, timeframes: tuple[str, ...] | None) -> Config:
    return resumed_config(cfg, 1, strategy=None, params={}, market={}, timeframes=timeframes)


def test_a_resume_runs_the_timeframes_the_run_ran(tmp_path):
    cfg = recorded_live_run(tmp_path, ("5m", "1h"))
    assert resume(cfg, None).run.timeframes == ("5m", "1h")
    assert resume(cfg, ("60m", "5m")).run.timeframes == ("5m", "1h")  # the same ones, spelt otherwise


@pytest.mark.parametrize("given", [("5m",), ("5m", "1h", "1d"), ()])
def test_a_resume_that_changes_the_timeframes_is_refused(tmp_path, given):
    cfg = recorded_live_run(tmp_path, ("5m", "1h"))
    with pytest.raises(ConfigError, match="run 1 ran timeframes 5m,1h; --resume cannot change them"):
        resume(cfg, given)
