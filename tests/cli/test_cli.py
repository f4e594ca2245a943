"""The command line, run as a user runs it: a subprocess of the installed `papertape`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

PAPERTAPE = str(Path(sys.executable).parent / "papertape")
METRIC_KEYS = {"total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown", "calmar",
               "win_rate", "profit_factor", "exposure", "turnover", "fees", "n_trades", "final_equity"}


def papertape(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([PAPERTAPE, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_backtest_on_the_sample_prints_one_json_object(tmp_path):
    ledger = tmp_path / "runs.db"
    done = papertape("backtest", "--json", "--ledger", str(ledger), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # exactly one object: extra output would not parse
    assert {"run_id", "ledger", "bars", "fills", "metrics"} <= set(result)
    assert METRIC_KEYS <= set(result["metrics"])
    assert result["bars"] == 3 * 1440 and result["fills"] > 0 and result["ledger"] == str(ledger)
    listed = papertape("runs", "--ledger", str(ledger), "--json", cwd=tmp_path)
    assert json.loads(listed.stdout)[0]["status"] == "finished"


def test_backtest_table_and_defaults(tmp_path):
    done = papertape("backtest", "--no-progress", "--param", "fast=5", "--param", "slow=20",
                     "--end", "2025-06-02", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Sharpe" in done.stdout and "Max drawdown" in done.stdout and "1,440 bars" in done.stdout
    assert (tmp_path / "papertape.db").is_file()


def test_rejected_orders_are_summed_by_reason_with_the_first_one_in_full(tmp_path):
    done = papertape("backtest", "--no-progress", "--param", "qty=50", "--end", "2025-06-02", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    line = next(t for t in done.stdout.splitlines() if "rejected orders:" in t)
    assert re.search(r"\d+ x insufficient margin: position N at N needs N, equity is N \(leverage N\) "
                     r"\(first: insufficient margin: position 50(\.0)? at [\d.]+ needs [\d.]+", line), line


@pytest.mark.parametrize("args, config, message", [
    ((), "[broker]\ntaker_fe = 0.1\n", "unknown key 'taker_fe'"),
    ((), "[account]\ncash = 'many'\n", "cash: expected a number"),
    (("--data", "missing/*.csv.gz"), "", "no file matches"),
    (("--strategy", "nope"), "", "unknown strategy 'nope'"),
    (("--param", "slow=x"), "", "slow: expected a whole number"),
    (("--set", "run.symbol=ZZZUSDT", "--data", "k.csv"), "", "unknown linear symbol 'ZZZUSDT'"),
])
def test_bad_input_exits_with_one_clear_line(tmp_path, args, config, message):
    (tmp_path / "config.toml").write_text(config)
    pd.DataFrame({"open_time": [1748736000000, 1748736060000], "open": 1.0, "high": 1.0, "low": 1.0,
                  "close": 1.0, "volume": 1.0, "turnover": 1.0, "trades": 1}).to_csv(
        tmp_path / "k.csv", index=False)
    done = papertape("backtest", "--no-progress", *args, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_missing_config_file(tmp_path):
    done = papertape("backtest", "--config", "nope.toml", cwd=tmp_path)
    assert done.returncode == 2 and "nope.toml not found" in done.stderr


def test_bars_command_writes_the_documented_columns(tmp_path, sample_files):
    out = tmp_path / "bars.csv"
    done = papertape("bars", "--data", str(sample_files[0]), "--interval", "5m", "--out", str(out),
                     cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    bars = pd.read_csv(out)
    assert list(bars.columns) == ["open_time", "open", "high", "low", "close", "volume", "turnover", "trades"]
    assert len(bars) == 288 and bars.open_time.is_monotonic_increasing
    assert bars.open_time.iloc[0] == 1748736000000 and (bars.open_time.diff().dropna() == 300_000).all()
    again = papertape("backtest", "--data", str(out), "--json", "--ledger", str(tmp_path / "k.db"),
                      cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["bars"] == 288


def test_help_explains_the_verbs(tmp_path):
    top = papertape("--help", cwd=tmp_path)
    for verb in ("backtest", "bars", "runs", "report"):
        assert verb in top.stdout
    sub = papertape("backtest", "--help", cwd=tmp_path)
    assert "--param" in sub.stdout and "--json" in sub.stdout and "bundled" in sub.stdout
