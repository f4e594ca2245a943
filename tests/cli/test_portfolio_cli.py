"""``--symbols`` on the command line: the JSON a portfolio backtest gives, ``runs`` and
``report`` naming the symbols, and one clear line for every way the data and the symbols
can disagree."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from engine.cli import main
from tests.helpers.archive import write_spot
from tests.helpers.broker import (
    PORTFOLIO_PRICES,
    instruments_with_sol,
    write_portfolio_files,
    write_trade_archive,
)

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
PRICES = PORTFOLIO_PRICES


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("portfolio-cli")
    write_portfolio_files(root, trades=6_000, bars=200)
    (root / "spot").mkdir()
    write_spot(root / "spot" / "BTCUSDT_2025-06-01.csv", [1_748_736_000.5 + k for k in range(50)],
               [30_000.0 + k for k in range(50)], [0.01] * 50, [1, -1] * 25)
    (root / "later").mkdir()
    write_trade_archive(root / "later", "2025-06-02", 3_000, seed=9, price=PRICES["BTCUSDT"])
    return root


def run(capsys, *args: str) -> tuple[int, str, str]:
    rules = instruments_with_sol(Path(tempfile.mkdtemp()))
    extra = ["--set", f"broker.instruments={rules}"] if args[0] == "backtest" else []
    code = main([*args, *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_gains_symbols_and_by_symbol(tmp_path, capsys, data):
    code, out, err = run(capsys, "backtest", "--symbols", ",".join(SYMBOLS),
                         "--data", str(data / "*2025-06-01.csv"), "--ledger", str(tmp_path / "l.db"),
                         "--param", "notional=1000", "--param", "fast=5", "--param", "slow=20",
                         "--json", "--no-progress")
    assert code == 0, err
    result = json.loads(out)
    assert result["symbols"] == list(SYMBOLS)
    assert set(result["by_symbol"]) == set(SYMBOLS)
    for row in result["by_symbol"].values():
        assert {"fills", "pnl", "fees", "funding", "trades"} <= set(row)
    assert result["fills"] == sum(r["fills"] for r in result["by_symbol"].values()) > 0
    change = result["metrics"]["final_equity"] - 10_000
    assert sum(r["pnl"] for r in result["by_symbol"].values()) == pytest.approx(change, abs=1e-6)

    code, out, _ = run(capsys, "runs", "--ledger", str(tmp_path / "l.db"))
    assert code == 0 and "BTCUSDT,ETHUSDT,SOLUSDT" in out
    code, out, _ = run(capsys, "report", "--ledger", str(tmp_path / "l.db"), "--run", "1")
    assert code == 0 and all(s in out for s in SYMBOLS)


def test_kline_files_take_symbol_equals_path(tmp_path, capsys, data):
    paths = [f"{s}={data / (s.lower() + '-bars.csv')}" for s in SYMBOLS]
    code, out, err = run(capsys, "backtest", "--symbols", ",".join(SYMBOLS), "--data", *paths,
                         "--ledger", str(tmp_path / "l.db"), "--param", "notional=1000", "--json",
                         "--no-progress")
    assert code == 0, err
    assert json.loads(out)["metrics"]["bars"] == 200


@pytest.mark.parametrize("args, message", [
    (["--symbols", "BTCUSDT,ETHUSDT", "--data", "{d}/BTCUSDT2025-06-01.csv"], "no data file holds ETHUSDT"),
    (["--symbols", "BTCUSDT,ETHUSDT", "--data", "{d}/*2025-06-01.csv"], "SOLUSDT, which --symbols"),
    (["--symbols", "BTCUSDT,ETHUSDT", "--data", "{d}/btcusdt-bars.csv", "ETHUSDT={d}/ethusdt-bars.csv"],
     "names no symbol; give it as SYMBOL="),
    (["--symbols", "BTCUSDT,BTCUSDT", "--data", "{d}/BTCUSDT2025-06-01.csv"], "listed twice"),
    (["--symbols", "BTCUSDT,../x", "--data", "{d}/BTCUSDT2025-06-01.csv"], "not a Bybit symbol"),
    (["--symbols", ",", "--data", "{d}/BTCUSDT2025-06-01.csv"], "give one or more symbols"),
    (["--symbols", "spot:BTCUSDT,linear:BTCUSDT", "--data", "{d}/BTCUSDT2025-06-01.csv"],
     "no data file holds spot:BTCUSDT"),
    (["--symbols", "BTCUSDT,linear:BTCUSDT", "--data", "{d}/BTCUSDT2025-06-01.csv"], "listed twice"),
    (["--symbols", "inverse:BTCUSD,BTCUSDT", "--data", "{d}/BTCUSDT2025-06-01.csv"],
     "mixes only spot:SYMBOL and linear:SYMBOL"),
    (["--symbols", "spot:BTCUSDT,ETHUSDT", "--set", "run.category=spot", "--data", "{d}/spot/*.csv"],
     "needs run.category=linear"),
    (["--symbols", "spot:ETHUSDT,BTCUSDT", "--data", "{d}/spot/BTCUSDT_2025-06-01.csv",
      "{d}/ETHUSDT2025-06-01.csv"], "lists as linear; name it spot:BTCUSDT"),
    (["--symbols", "spot:BTCUSDT,BTCUSDT", "--data", "spot:BTCUSDT={d}/BTCUSDT2025-06-01.csv"],
     "spot:BTCUSDT= names a linear trade archive of BTCUSDT"),
    (["--symbols", "BTCUSDT,ETHUSDT", "--data", "{d}/spot/BTCUSDT_2025-06-01.csv",
      "{d}/BTCUSDT2025-06-01.csv", "{d}/ETHUSDT2025-06-01.csv"],
     "a spot one; to trade both markets, list spot:BTCUSDT"),  # was '... overlaps ... in time'
    (["--symbols", "BTCUSDT", "--symbol", "BTCUSDT", "--data", "{d}/BTCUSDT2025-06-01.csv"], "not both"),
    (["--symbols", "BTCUSDT,ETHUSDT", "--data", "ETHUSDT={d}/BTCUSDT2025-06-01.csv",
      "{d}/ETHUSDT2025-06-01.csv"], "ETHUSDT= names a linear trade archive of BTCUSDT"),
    (["--symbols", "BTCUSDT,ETHUSDT", "--data", "{d}/BTCUSDT2025-06-01.csv", "ETHUSDT={d}/ethusdt-bars.csv"],
     "mixes kinds of file"),
    (["--symbols", "BTCUSDT,ETHUSDT", "--data", "{d}/BTCUSDT2025-06-01.csv",
      "{d}/later/BTCUSDT2025-06-02.csv", "{d}/ETHUSDT2025-06-01.csv", "--start", "2025-06-02"],
     "ETHUSDT: no trades in the replay range"),
    (["--symbols", "BTCUSDT,ETHUSDT", "--data", "BTCUSDT={d}/btcusdt-bars.csv",
      "ETHUSDT={d}/ethusdt-bars.csv", "--strategy", "strategies.rotation:Rotation", "--param", "top=2",
      "--param", "side=long_short"], "holds 4 symbols but the run trades 2"),
])
def test_data_and_symbols_that_disagree_are_one_line(tmp_path, capsys, data, args, message):
    code, out, err = run(capsys, "backtest", *[a.replace("{d}", str(data)) for a in args],
                         "--ledger", str(tmp_path / "l.db"), "--no-progress")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def test_an_unknown_instrument_in_a_portfolio_is_one_line(tmp_path, capsys, data):
    fetched = tmp_path / "XYZUSDT-1m-2025-06-01-2025-06-02.csv"  # the name fetch gives
    fetched.write_text((data / "ethusdt-bars.csv").read_text())
    code, _, err = run(capsys, "backtest", "--symbols", "BTCUSDT,XYZUSDT", "--data",
                       f"BTCUSDT={data / 'btcusdt-bars.csv'}", str(fetched),
                       "--ledger", str(tmp_path / "l.db"), "--no-progress")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "XYZUSDT" in lines[0], err


def test_a_live_session_mixing_categories_is_one_line(tmp_path, capsys):
    code, _, err = run(capsys, "live", "--symbols", "spot:BTCUSDT,BTCUSDT", "--ws-url", "ws://127.0.0.1:9",
                       "--rest-url", "http://127.0.0.1:9", "--ledger", str(tmp_path / "l.db"))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "live sessions trade one category" in lines[0], err
