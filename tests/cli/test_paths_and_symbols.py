"""Names that become paths: a symbol is a Bybit symbol or refused, and nothing is written
outside the folder it belongs to."""

from __future__ import annotations

import pytest

from engine.cli import main
from engine.core.paths import inside
from engine.core.symbols import check_symbol
from engine.core.typed import ConfigError


@pytest.mark.parametrize("symbol", ["../../x", "BTC/USDT", "..", "BTCUSDT.csv", "btc usdt", "", "A" * 80])
def test_a_symbol_that_is_not_bybits_is_refused(symbol):
    with pytest.raises(ConfigError, match="is not a Bybit symbol"):
        check_symbol(symbol)


@pytest.mark.parametrize("symbol", ["BTCUSDT", "1000PEPEUSDT", "BTC-27JUN25-60000-C", "BTCUSDH25"])
def test_bybit_symbols_pass(symbol):
    assert check_symbol(symbol) == symbol


@pytest.mark.parametrize("verb", [["fetch", "--trades", "--start", "2025-06-01", "--end", "2025-06-02"],
                                  ["fetch", "--klines", "1h", "--start", "2025-06-01", "--end", "2025-06-02"],
                                  ["backtest", "--no-progress"], ["live", "--duration", "1s"]])
def test_a_path_as_symbol_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, verb):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    code = main([*verb, "--symbol", "../../x", *(["--out", "out"] if verb[0] == "fetch" else []),
                 *(["--ledger", "l.db"] if verb[0] != "fetch" else [])])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not a Bybit symbol" in err[0], err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["out"]


def test_a_file_outside_its_folder_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path)
    assert inside(tmp_path / "out", tmp_path / "out" / "BTCUSDT.csv") == (tmp_path / "out" / "BTCUSDT.csv")
    for escape in (tmp_path / "out" / ".." / "x.csv", tmp_path / "out" / "link" / "x.csv"):
        with pytest.raises(ConfigError, match="outside"):
            inside(tmp_path / "out", escape)


def test_set_run_symbol_is_checked_too(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["backtest", "--set", "run.symbol=../x", "--ledger", "l.db", "--no-progress"]) == 2
    assert "not a Bybit symbol" in capsys.readouterr().err
    assert not (tmp_path / "l.db").exists()
