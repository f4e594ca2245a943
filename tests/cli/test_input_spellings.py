"""Inputs that are right but spelled otherwise give the run they mean: an interval as a Bybit
code or in capitals ("60", "1H") is 1h (it gave a run of 0 bars: bars carry the label "1h"
and the recorder and strategy picked bars by the spelling), and a kline file without a
turnover column backtests (its equity rows failed the ledger's NOT NULL)."""

from __future__ import annotations

import json

from engine.cli import main
from tests.helpers.broker import write_klines, write_trade_archive
from tests.helpers.live import query


def backtest(capsys, *argv: str) -> dict:
    assert main(["backtest", "--no-progress", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_an_interval_spelled_as_a_bybit_code_or_in_capitals_is_the_same_run(tmp_path, capsys):
    archive = write_trade_archive(tmp_path, "2025-06-01", 4000, seed=3)
    ledger = tmp_path / "l.db"
    runs = {iv: backtest(capsys, "--data", str(archive), "--interval", iv, "--ledger", str(ledger))
            for iv in ("1h", "60", "1H")}
    assert {r["data"]["interval"] for r in runs.values()} == {"1h"}
    assert {r["bars"] for r in runs.values()} == {24}
    rows = [query(ledger, "SELECT ts, equity, close FROM equity WHERE run_id = ? ORDER BY ts", (r["run_id"],))
            for r in runs.values()]
    assert len(rows[0]) == 24 and all(rows[0].equals(other) for other in rows[1:])


def test_a_kline_file_without_turnover_backtests(tmp_path, capsys):
    frame = write_klines(tmp_path / "k.csv", 50)
    frame.drop(columns=["turnover"]).to_csv(tmp_path / "no-turnover.csv", index=False)
    result = backtest(capsys, "--data", str(tmp_path / "no-turnover.csv"), "--ledger", str(tmp_path / "l.db"))
    assert result["status"] == "finished" and result["bars"] == 50
    turnover = query(tmp_path / "l.db", "SELECT turnover FROM equity").turnover
    assert (turnover == 0).all()
