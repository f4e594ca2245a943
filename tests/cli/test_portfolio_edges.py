"""Portfolio inputs at their edges, each found by an outside-style probe: ``--symbols`` of one
market spelt with its category, ``--symbol`` beside a config's ``[run] symbols``, a resumed
session's symbols in another spelling, a sweep's holdout over a portfolio and a rotation
lookback no deque can hold, a strategy deciding in ``on_bars`` on bars that are not time bars, a
portfolio's recording given as ``SYMBOL=PATH``, malformed rows of a replay from the cache.
Each is the run the input names, or one line and exit 2."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path

import pytest

import engine.run.live
from engine.cli import main
from engine.ledger.store import Ledger
from strategies.base import Strategy
from tests.helpers.archive import write_spot
from tests.helpers.broker import (
    PORTFOLIO_PRICES,
    instruments_with_sol,
    start_run,
    write_portfolio_files,
)

PRICES = PORTFOLIO_PRICES


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("portfolio-edges")
    write_portfolio_files(root, trades=2_000, bars=120)
    (root / "spot").mkdir()
    write_spot(root / "spot" / "BTCUSDT_2025-06-01.csv", [1_748_736_000.5 + 60 * k for k in range(200)],
               [30_000.0 + (k % 7) * 10 for k in range(200)], [0.01] * 200, [1, -1] * 100)
    return root


def run(capsys, *args: str) -> tuple[int, str, str]:
    rules = instruments_with_sol(Path(tempfile.mkdtemp()))
    code = main([*args, "--set", f"broker.instruments={rules}", "--no-progress"])
    out = capsys.readouterr()
    return code, out.out, out.err


def backtest(capsys, tmp_path, *args: str) -> dict:
    code, out, err = run(capsys, "backtest", *args, "--ledger", str(tmp_path / "l.db"), "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize("spelt, files, name", [
    ("linear:BTCUSDT", ["{d}/BTCUSDT2025-06-01.csv"], "BTCUSDT"),
    ("linear:BTCUSDT", ["{d}/btcusdt-bars.csv"], "BTCUSDT"),
    ("spot:BTCUSDT", ["{d}/spot/BTCUSDT_2025-06-01.csv"], "spot:BTCUSDT"),
    ("spot:BTCUSDT", ["{d}/btcusdt-bars.csv"], "spot:BTCUSDT"),
    ("spot:BTCUSDT", ["spot:BTCUSDT={d}/btcusdt-bars.csv"], "spot:BTCUSDT"),
])
def test_one_market_spelt_with_its_category_is_that_market(tmp_path, capsys, data, spelt, files, name):
    """``--symbols linear:BTCUSDT`` was refused with 'the data holds BTCUSDT' on a trade archive
    and named the run ``linear:BTCUSDT`` on klines; ``spot:BTCUSDT`` alone refused its spot archive."""
    result = backtest(capsys, tmp_path, "--symbols", spelt, "--data", *[f.format(d=data) for f in files])
    assert result["symbols"] == [name] and list(result["by_symbol"]) == [name]
    assert result["data"]["symbol"] == name


def test_a_spot_market_alone_pays_spot_fees_as_beside_a_perpetual(tmp_path, capsys, data):
    klines = str(data / "btcusdt-bars.csv")
    spot = backtest(capsys, tmp_path, "--symbols", "spot:BTCUSDT", "--data", klines)
    perpetual = backtest(capsys, tmp_path, "--symbols", "linear:BTCUSDT", "--data", klines)
    assert spot["fills"] == perpetual["fills"] > 0
    assert spot["metrics"]["fees"] > perpetual["metrics"]["fees"]  # 0.1% against 0.055% taker


def test_symbol_overrides_the_configs_symbols(tmp_path, capsys, data):
    """A config listing ``[run] symbols`` and ``--symbol ETHUSDT`` ran the config's portfolio."""
    config = tmp_path / "config.toml"
    config.write_text('[run]\nsymbols = ["BTCUSDT", "ETHUSDT"]\n')
    result = backtest(capsys, tmp_path, "--config", str(config), "--symbol", "ETHUSDT",
                      "--data", str(data / "ETHUSDT2025-06-01.csv"))
    assert result["symbols"] == ["ETHUSDT"]
    both = backtest(capsys, tmp_path, "--config", str(config), "--data", str(data / "BTCUSDT2025-06-01.csv"),
                    str(data / "ETHUSDT2025-06-01.csv"))
    assert both["symbols"] == ["BTCUSDT", "ETHUSDT"]


class Started(Exception):
    """Raised in place of the live session, carrying the config it was given."""


def test_a_resumed_session_takes_its_symbols_in_any_spelling(tmp_path, capsys, monkeypatch):
    """``--resume`` with ``--symbols linear:BTCUSDT,ETHUSDT`` of a run of BTCUSDT,ETHUSDT was
    refused as a change of symbols; a real change still is."""
    ledger = Ledger(tmp_path / "live.db")
    run_id = start_run(ledger, kind="live", symbol="BTCUSDT,ETHUSDT", strategy="sma_cross",
                       params='{"fast": 5, "slow": 20}', status="stopped")
    ledger.close()

    def started(cfg, opts):
        raise Started(cfg.run.portfolio)

    monkeypatch.setattr(engine.run.live, "run_live", started)
    live = ["live", "--ws-url", "ws://127.0.0.1:9", "--rest-url", "http://127.0.0.1:9",
            "--ledger", str(tmp_path / "live.db"), "--resume", str(run_id), "--symbols"]
    for spelt in ("linear:BTCUSDT,ETHUSDT", " BTCUSDT, ETHUSDT"):
        with pytest.raises(Started) as session:
            main([*live, spelt])
        assert session.value.args[0] == ("BTCUSDT", "ETHUSDT")
    assert main([*live, "BTCUSDT,SOLUSDT"]) == 2
    assert "cannot change them" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["trades", "klines"])
@pytest.mark.parametrize("split", [["--holdout", "0.3"], ["--walk-forward", "2"]])
def test_a_sweeps_split_of_a_portfolio_is_cut_from_every_symbols_data(tmp_path, capsys, data, kind, split):
    """The holdout and walk-forward cut was found from the data opened as one symbol's: 'kline
    files overlap' for klines, 'archives hold several symbols' for trade archives (exit 2)."""
    files = ([str(data / f"{s}2025-06-01.csv") for s in ("BTCUSDT", "ETHUSDT")] if kind == "trades" else
             [f"{s}={data / (s.lower() + '-bars.csv')}" for s in ("BTCUSDT", "ETHUSDT")])
    code, out, err = run(capsys, "sweep", "--symbols", "BTCUSDT,ETHUSDT", "--data", *files, "--grid",
                         "fast=3,5", "--param", "slow=10", "--workers", "1", *split,
                         "--ledger", str(tmp_path / "s.db"), "--json")
    assert code == 0, err
    trials = json.loads(out)["trials"]
    assert trials and all(t["status"] == "finished" for t in trials)


def test_a_rotation_lookback_no_deque_holds_is_one_line(tmp_path, capsys, data):
    """lookback=2**63-1 started the run and failed it on the first bar set (OverflowError, exit 1)."""
    files = [f"{s}={data / (s.lower() + '-bars.csv')}" for s in PRICES]
    code, _, err = run(capsys, "backtest", "--symbols", ",".join(PRICES), "--data", *files, "--strategy",
                       "rotation", "--param", f"lookback={2**63 - 1}", "--ledger", str(tmp_path / "l.db"))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "lookback must be below" in lines[0], err
    assert "Traceback" not in err


class EveryBar(Strategy):
    """Reads ``on_bar`` and ``on_bars`` and counts what reaches each; trades nothing."""

    def __init__(self, config=None) -> None:
        super().__init__(config)
        self.bars = self.sets = 0

    def on_bar(self, bar) -> None:
        self.bars += 1

    def on_bars(self, bars) -> None:
        self.sets += 1

    def on_save(self) -> dict:
        return {"bars": self.bars, "sets": self.sets}


@pytest.mark.parametrize("interval", ["tick:100", "volume:50"])
def test_a_strategy_deciding_in_on_bars_alone_is_refused_bars_that_are_not_time_bars(tmp_path, capsys, caplog,
                                                                                      data, interval):
    """Rotation on tick or volume bars ran and traded nothing without a word (exit 0): those bars
    close one symbol at a time, so no set ever reaches on_bars. A strategy that also reads on_bar
    runs, warned."""
    files = [str(data / f"{s}2025-06-01.csv") for s in ("BTCUSDT", "ETHUSDT")]
    common = ["--symbols", "BTCUSDT,ETHUSDT", "--data", *files, "--interval", interval,
              "--ledger", str(tmp_path / "l.db")]
    code, _, err = run(capsys, "backtest", *common, "--strategy", "rotation")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "reads on_bars" in lines[0] and interval in lines[0], err
    assert not (tmp_path / "l.db").exists()  # refused before the run is recorded
    code, _, err = run(capsys, "backtest", *common, "--strategy", f"{__name__}:EveryBar")
    assert code == 0 and "its on_bars is never called" in caplog.text, err
    saved = sqlite3.connect(tmp_path / "l.db").execute("SELECT state FROM strategy_state").fetchall()
    assert json.loads(saved[-1][0])["bars"] > 0 and json.loads(saved[-1][0])["sets"] == 0, saved


def write_recording(path: Path, symbols: tuple[str, ...]) -> Path:
    """A two-minute recording of a portfolio session: one trade a second of each symbol."""
    day0, started = 1_748_736_000, 1_748_736_000 * 10**9
    header = {"papertape_recording": 1, "symbol": ",".join(symbols), "category": "linear", "mode": "trades",
              "interval": "1m", "started": started}
    lines = [json.dumps(header)]
    for k in range(1, 120):
        for symbol in symbols:
            trade = {"T": (day0 + k) * 1000, "s": symbol, "S": "Buy", "v": "0.01",
                     "p": str(PRICES[symbol] + k), "i": f"{symbol}{k}"}
            message = {"topic": f"publicTrade.{symbol}", "type": "snapshot", "ts": 1, "data": [trade]}
            lines.append(json.dumps({"t": started + k * 10**9, "k": "ws", "d": json.dumps(message)}))
    lines.append(json.dumps({"t": started + 121 * 10**9, "k": "end"}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_recording_given_as_symbol_equals_path_is_one_line(tmp_path, capsys):
    """``--data ETHUSDT=rec.jsonl`` of a BTCUSDT,ETHUSDT session replayed both symbols, the name
    ignored; the recording alone still replays as its portfolio."""
    recording = write_recording(tmp_path / "rec.jsonl", ("BTCUSDT", "ETHUSDT"))
    assert backtest(capsys, tmp_path, "--data", str(recording))["symbols"] == ["BTCUSDT", "ETHUSDT"]
    code, _, err = run(capsys, "backtest", "--data", f"ETHUSDT={recording}",
                       "--ledger", str(tmp_path / "l.db"))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "a recording names its own symbols" in lines[0], err


def test_malformed_rows_are_reported_on_every_replay_not_only_the_first(tmp_path, capsys, monkeypatch, data):
    """The warning naming them comes when a file is parsed; a replay from the cache said nothing
    in its text output (the JSON's bad_rows had the count)."""
    monkeypatch.setenv("PAPERTAPE_CACHE", str(tmp_path / "cache"))
    lines = (data / "ETHUSDT2025-06-01.csv").read_text().splitlines()
    bad = tmp_path / "ETHUSDT2025-06-01.csv"
    bad.write_text("\n".join([*lines[:50], "1748736100.0,ETHUSDT,Buy,abc,2000,ZeroPlusTick,x,0,0,0,0",
                              *lines[50:]]) + "\n")
    args = ["backtest", "--symbols", "BTCUSDT,ETHUSDT", "--data", str(data / "BTCUSDT2025-06-01.csv"),
            str(bad), "--ledger", str(tmp_path / "l.db")]
    for _ in range(2):  # parsed into the cache, then read from it
        code, out, err = run(capsys, *args)
        assert code == 0 and "malformed rows left out: 1 of 4,001" in out, err
