"""A trade archive that holds its trades twice (two downloads of a day joined into one file)
gives the bars of one copy: a row with the time and trade id of an earlier row is a
repeated trade, left out and reported like other malformed rows (it was counted twice)."""

from __future__ import annotations

import logging

import pandas as pd

from engine.cli import main
from tests.helpers.archive import DERIVATIVES_HEADER, derivatives_lines, random_trades

DAY0 = 1748736000


def test_a_trade_given_twice_in_one_archive_counts_once(tmp_path, caplog):
    lines = derivatives_lines(*random_trades(3000, DAY0, 3600, seed=4), "BTCUSDT")
    (tmp_path / "BTCUSDT2025-06-01.csv").write_text("\n".join([DERIVATIVES_HEADER, *lines]) + "\n")
    (tmp_path / "twice" / "BTCUSDT2025-06-01.csv").parent.mkdir()
    (tmp_path / "twice" / "BTCUSDT2025-06-01.csv").write_text(
        "\n".join([DERIVATIVES_HEADER, *lines, *lines[:1000]]) + "\n")
    for name in ("BTCUSDT2025-06-01.csv", "twice/BTCUSDT2025-06-01.csv"):
        out = tmp_path / f"{name.replace('/', '-')}.bars.csv"
        assert main(["bars", "--data", str(tmp_path / name), "--interval", "1m", "--out", str(out),
                     "--no-progress"]) == 0
    once = pd.read_csv(tmp_path / "BTCUSDT2025-06-01.csv.bars.csv")
    twice = pd.read_csv(tmp_path / "twice-BTCUSDT2025-06-01.csv.bars.csv")
    pd.testing.assert_frame_equal(once, twice)
    assert once.trades.sum() == 3000
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'repeated trade': 1000" in message for message in warned), warned
