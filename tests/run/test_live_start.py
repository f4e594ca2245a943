"""A live session's data starts once its strategy is made: a model's imports and checkpoint
take seconds on a busy machine, and a start taken before them is a gap at the start that
only REST's last 1000 trades can fill."""

from __future__ import annotations

from tests.helpers.live import papertape, query

SLOW_TO_MAKE = '''
import time
from dataclasses import dataclass
from pathlib import Path

from strategies.base import Strategy, StrategyConfig


@dataclass(frozen=True)
class SlowConfig(StrategyConfig):
    made: str = ""


class SlowToMake(Strategy):
    """Takes a second to make, as a model's imports and checkpoint do, and writes when it was made."""

    config_class = SlowConfig

    def __init__(self, config=None):
        super().__init__(config)
        time.sleep(1.0)
        Path(self.config.made).write_text(str(time.time_ns()))
'''


def test_the_data_starts_after_the_strategy_is_made(tmp_path):
    plugin, made, ledger = tmp_path / "slow.py", tmp_path / "made", tmp_path / "live.db"
    plugin.write_text(SLOW_TO_MAKE)
    done = papertape("live", "--strategy", f"{plugin}:SlowToMake", "--param", f"made={made}",
                     "--ws-url", "ws://127.0.0.1:9", "--rest-url", "http://127.0.0.1:9",
                     "--duration", "1s", "--ledger", str(ledger), "--json", cwd=tmp_path)
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    run = query(ledger, "SELECT data_start FROM runs").iloc[0]
    assert int(run.data_start) > int(made.read_text()), (run.data_start, made.read_text())
