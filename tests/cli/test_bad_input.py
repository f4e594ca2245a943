"""Every class of bad input (kline CSV, trade archive, gzip, recording, config, CLI flag,
ledger path, checkpoint, symbol, strategy path) ends the command with exit 2 and one line on
stderr, no traceback, and leaves an existing ledger byte for byte as it was. In-process
``engine.cli.main`` calls keep it fast; one subprocess checks the installed command."""

from __future__ import annotations

import gzip
import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from tests.conftest import SAMPLE_DIR
from tests.helpers.archive import DERIVATIVES_HEADER, random_trades, write_derivatives
from tests.helpers.broker import write_klines

DAY0 = 1748736000


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder with one good ledger (a small kline backtest) and one file of each bad kind."""
    d = tmp_path_factory.mktemp("bad")
    write_klines(d / "good.csv", 60)
    write_klines(d / "minutes.csv", 300)
    write_klines(d / "hours.csv", 300, seed=2, step_ms=3_600_000)
    assert main(["backtest", "--data", str(d / "good.csv"), "--ledger", str(d / "ledger.db"),
                 "--no-progress", "--json"]) == 0
    frame = write_klines(d / "k.csv", 20).astype({"close": object})
    frame.loc[5, "close"] = "inf"
    frame.to_csv(d / "inf-close.csv", index=False)
    (d / "empty.csv").write_text("")
    (d / "header-only.csv").write_text("open_time,open,high,low,close,volume,turnover,trades\n")
    (d / "header-only-trades.csv").write_text(DERIVATIVES_HEADER + "\n")
    stray = write_klines(d / "k.csv", 20)
    stray.loc[5, "open_time"] = stray.loc[4, "open_time"] + 1000  # one bar a second after the one before
    stray.to_csv(d / "stray-bar.csv", index=False)
    for name, column, value in (("huge-volume", "volume", 1e200), ("fractional-trades", "trades", 2.5)):
        odd = write_klines(d / "k.csv", 20).astype({column: float})
        odd.loc[5, column] = value
        odd.to_csv(d / f"{name}.csv", index=False)
    (d / "all-bad.csv").write_text(DERIVATIVES_HEADER + "\n" + "x,BTCUSDT,Buy,1,1,a,b,0,0,0,0\n")
    ts, p, s, side = random_trades(3000, DAY0, 3600, seed=9)
    write_derivatives(d / "day.csv.gz", ts, p, s, side)
    blob = (d / "day.csv.gz").read_bytes()
    (d / "truncated.csv.gz").write_bytes(blob[: len(blob) // 2])
    (d / "garbage.csv.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"not really gzip" * 50)
    with gzip.open(d / "binary.csv.gz", "wb") as fh:
        fh.write(b"\xff\xfe\x00" * 100)
    (d / "rec-version.jsonl").write_text(json.dumps({"papertape_recording": 7}) + "\n")
    (d / "rec-symbol.jsonl").write_text(json.dumps({"papertape_recording": 1, "symbol": "../x",
                                                   "category": "linear", "interval": "1m",
                                                   "started": DAY0 * 10**9}) + "\n")
    (d / "rec-interval.jsonl").write_text(json.dumps({"papertape_recording": 1, "symbol": "BTCUSDT",
                                                     "category": "linear", "interval": "7x",
                                                     "started": DAY0 * 10**9}) + "\n")
    (d / "rec-future.jsonl").write_text(json.dumps({"papertape_recording": 1, "symbol": "BTCUSDT",
                                                   "category": "linear", "interval": "1m",
                                                   "started": 10**30}) + "\n")
    (d / "notdb.db").write_text("this is not a database\n")
    with sqlite3.connect(d / "other.db") as con:
        con.execute("CREATE TABLE foo (x)")
    con.close()
    (d / "junk.pt").write_bytes(b"junk" * 10)
    (d / "bad-key.toml").write_text("[broker]\ntaker_fe = 0.1\n")
    (d / "bad-toml.toml").write_text("[broker\n")
    (d / "bad-type.toml").write_text("[account]\ncash = 'lots'\n")
    (d / "binary.toml").write_bytes(b"\xff\xfe[run]\n")
    (d / "inf-cash.toml").write_text("[account]\ncash = inf\n")
    (d / "negative-fee.toml").write_text("[broker]\ntaker_fee = -0.001\n")
    (d / "raises.py").write_text("raise RuntimeError('boom at import')\n")
    (d / "ctor.py").write_text("from strategies.base import Strategy\n\n\nclass A(Strategy):\n"
                               "    def __init__(self, config=None):\n        raise TypeError('no')\n")
    return d


BACKTEST = ["backtest", "--no-progress"]
SWEEP = ["sweep", "--no-progress", "--data", "{d}/good.csv", "--ledger", "{d}/new.db"]
TRAIN = ["train", "--no-progress", "--data", "{d}/good.csv", "--interval", "1m", "--seq-len", "8",
         "--epochs", "1", "--out", "{d}/m.pt"]
CASES = {
    # kline CSV
    "kline inf close": (BACKTEST + ["--data", "{d}/inf-close.csv"], "inf-close.csv:7: malformed bar"),
    "empty file": (BACKTEST + ["--data", "{d}/empty.csv"], "empty.csv"),
    "kline header only": (BACKTEST + ["--data", "{d}/header-only.csv"], "header-only.csv: cannot infer"),
    "kline stray bar": (BACKTEST + ["--data", "{d}/stray-bar.csv"], "one interval per file"),
    "kline absurd volume": (BACKTEST + ["--data", "{d}/huge-volume.csv"], "huge-volume.csv:7: malformed bar"),
    "kline fractional trades": (BACKTEST + ["--data", "{d}/fractional-trades.csv"], ".csv:7: malformed bar"),
    "archive header only": (BACKTEST + ["--data", "{d}/header-only-trades.csv"], "no well-formed trades"),
    "bars of a header only": (["bars", "--data", "{d}/header-only-trades.csv", "--out", "{d}/o.csv"],
                              "no well-formed trades"),
    # trade archive and gzip
    "archive without a good row": (BACKTEST + ["--data", "{d}/all-bad.csv"], "no well-formed trades"),
    "truncated gzip": (BACKTEST + ["--data", "{d}/truncated.csv.gz"], "truncated.csv.gz: cannot"),
    "damaged gzip": (BACKTEST + ["--data", "{d}/garbage.csv.gz"], "garbage.csv.gz: cannot read"),
    "binary in gzip": (BACKTEST + ["--data", "{d}/binary.csv.gz"], "binary.csv.gz"),
    "bars from a truncated gzip": (["bars", "--data", "{d}/truncated.csv.gz", "--out", "{d}/o.csv"],
                                   "truncated.csv.gz: cannot"),
    # recording
    "recording version": (BACKTEST + ["--data", "{d}/rec-version.jsonl"], "not a papertape recording"),
    "recording symbol": (BACKTEST + ["--data", "{d}/rec-symbol.jsonl"], "not a Bybit symbol"),
    "recording interval": (BACKTEST + ["--data", "{d}/rec-interval.jsonl"], "unknown interval '7x'"),
    "recording start": (BACKTEST + ["--data", "{d}/rec-future.jsonl"], "start time"),
    # config
    "config key": (BACKTEST + ["--config", "{d}/bad-key.toml"], "unknown key 'taker_fe'"),
    "config syntax": (BACKTEST + ["--config", "{d}/bad-toml.toml"], "bad-toml.toml"),
    "config type": (BACKTEST + ["--config", "{d}/bad-type.toml"], "cash"),
    "set value": (BACKTEST + ["--set", "bars.empty=maybe"], "empty"),
    "config not UTF-8": (BACKTEST + ["--config", "{d}/binary.toml"], "binary.toml: not a TOML file"),
    "config is a folder": (BACKTEST + ["--config", "{d}"], "cannot read"),
    "config inf": (BACKTEST + ["--config", "{d}/inf-cash.toml"], "cash: expected a finite number"),
    "set huge": (BACKTEST + ["--set", "account.cash=1e400"], "cash: expected a finite number"),
    "config negative fee": (BACKTEST + ["--config", "{d}/negative-fee.toml"], "taker_fee must be >= 0"),
    "set negative seed": (BACKTEST + ["--set", "run.seed=-1"], "seed must be >= 0"),
    "set batch rows": (BACKTEST + ["--set", "ledger.batch_rows=0"], "batch_rows must be >= 1"),
    # CLI flags
    **{f"interval {iv}": (BACKTEST + ["--interval", iv], repr(iv))
       for iv in ("7x", "0s", "0m", "tick:abc", "tick:-5", "tick:1.5", "99999d")},
    **{f"bars interval {iv}": (["bars", "--data", "{d}/day.csv.gz", "--interval", iv, "--out", "{d}/o.csv"],
                               repr(iv)) for iv in ("7x", "0s", "tick:abc", "tick:-5")},
    "interval in months": (BACKTEST + ["--interval", "1M"], "months"),
    "start after end": (BACKTEST + ["--start", "2025-06-02", "--end", "2025-06-01"], "--end"),
    "bad start": (BACKTEST + ["--start", "yesterday"], "--start"),
    # ledger paths
    "ledger in /proc": (BACKTEST + ["--ledger", "/proc/x.db"], "/proc/x.db"),
    "ledger not a database": (BACKTEST + ["--ledger", "{d}/notdb.db"], "not a papertape ledger"),
    "ledger is a folder": (BACKTEST + ["--ledger", "{d}"], "is a folder"),
    "ledger of another program": (BACKTEST + ["--ledger", "{d}/other.db"], "other tables: foo"),
    "runs on another program's database": (["runs", "--ledger", "{d}/other.db"], "other tables: foo"),
    "runs on a non-database": (["runs", "--ledger", "{d}/notdb.db"], "not a papertape ledger"),
    "report on a non-database": (["report", "--ledger", "{d}/notdb.db", "--run", "1"],
                                 "not a papertape ledger"),
    "report of a missing run": (["report", "--ledger", "{d}/ledger.db", "--run", "99"], "no run 99"),
    "report to /proc": (["report", "--ledger", "{d}/ledger.db", "--run", "1", "--out", "/proc/r.html"],
                        "--out /proc/r.html cannot be written"),
    "bars to /proc": (["bars", "--data", "{d}/day.csv.gz", "--out", "/proc/o.csv"], "cannot be written"),
    "live record to /proc": (["live", "--record", "/proc/x.jsonl", "--duration", "1s"],
                             "--record /proc/x.jsonl cannot be written"),
    # checkpoint
    "checkpoint junk": (BACKTEST + ["--strategy", "model", "--param", "checkpoint={d}/junk.pt"],
                        "not a papertape model checkpoint"),
    "checkpoint missing": (BACKTEST + ["--strategy", "model", "--param", "checkpoint={d}/none.pt"],
                           "no such checkpoint"),
    # symbol
    "symbol not in the data": (BACKTEST + ["--symbol", "FOOUSDT"], "the data holds BTCUSDT"),
    "symbol as a path": (BACKTEST + ["--symbol", "../../x"], "not a Bybit symbol"),
    "bars symbol not in the data": (["bars", "--data", "{d}/day.csv.gz", "--symbol", "ETHUSDT", "--out",
                                     "{d}/o.csv"], "the data holds BTCUSDT"),
    "fetch symbol as a path": (["fetch", "--symbol", "../../x", "--trades", "--start", "2025-06-01", "--end",
                                "2025-06-02", "--out", "{d}/fetched"], "not a Bybit symbol"),
    # strategy
    "strategy file missing": (BACKTEST + ["--strategy", "./nope.py:BuyDips"], "no file"),
    "strategy unknown": (BACKTEST + ["--strategy", "nope"], "unknown strategy 'nope'"),
    "strategy raises at import": (BACKTEST + ["--strategy", "./raises.py:A"],
                                  "RuntimeError('boom at import')"),
    "strategy constructor fails": (BACKTEST + ["--strategy", "./ctor.py:A"], "could not be made: TypeError"),
    "strategy without a module": (BACKTEST + ["--strategy", ":A"], "give module:Class"),
    # repeated keys and whole numbers beyond 64 bits
    "param twice": (BACKTEST + ["--param", "fast=5", "--param", "fast=6"], "--param fast: given twice"),
    "param beyond 64 bits": (BACKTEST + ["--param", "fast=1" + "0" * 21],
                             "fast: '1" + "0" * 21 + "' is out of range"),
    "report of a run beyond 64 bits": (["report", "--ledger", "{d}/ledger.db", "--run", "9" * 25],
                                       "no run " + "9" * 25),
    "report of a sweep beyond 64 bits": (["report", "--ledger", "{d}/ledger.db", "--sweep", "9" * 25],
                                         "no sweep " + "9" * 25),
    # --data names
    "data key not a symbol": (BACKTEST + ["--data", "btcusdt={d}/good.csv"],
                              "'btcusdt' is not a Bybit symbol"),
    "data a device": (BACKTEST + ["--data", "/dev/null"], "no data file"),
    "data that cannot be read": (BACKTEST + ["--data", "/proc/self/mem"], "mem: cannot read"),  # EIO
    "portfolio data that cannot be read": (BACKTEST + ["--symbols", "BTCUSDT,ETHUSDT", "--data",
                                                       "BTCUSDT={d}/good.csv", "ETHUSDT=/proc/self/mem"],
                                           "mem: cannot read"),
    # sweep: refused before the ledger is touched (new.db is never made)
    "sweep workers beyond the machine": (SWEEP + ["--grid", "fast=5,10", "--workers", "100000"],
                                         "--workers 100000: give 1 to"),
    "sweep grid key twice": (SWEEP + ["--grid", "fast=5,10", "--grid", "fast=6"], "--grid fast: given twice"),
    "sweep constraint naming nothing": (SWEEP + ["--grid", "fast=5,10", "--constraint", "fast<<slow"],
                                        "'<slow' is neither a swept parameter (fast) nor a metric"),
    "sweep constraint on a fixed parameter": (SWEEP + ["--grid", "fast=5,10", "--param", "slow=40",
                                                       "--constraint", "fast<slow"], "'slow' is neither"),
    "sweep negative min trades": (SWEEP + ["--grid", "fast=5,10", "--min-trades", "-1"], "--min-trades -1"),
    "sweep train twice": (SWEEP + ["--strategy", "model", "--grid", "threshold=0,0.001", "--train",
                                   "epochs=1", "--train", "epochs=2"], "--train epochs: given twice"),
    "sweep checkpoints in /proc": (SWEEP + ["--strategy", "model", "--grid", "threshold=0,0.001", "--train",
                                            "seq_len=8", "--checkpoints", "/proc/ck"],
                                   "--checkpoints /proc/ck cannot be written"),
    "sweep checkpoints under a file": (SWEEP + ["--strategy", "model", "--grid", "threshold=0,0.001",
                                                "--train", "seq_len=8", "--checkpoints", "{d}/good.csv/ck"],
                                       "good.csv is a file"),
    "sweep ray where nothing answers": (SWEEP + ["--grid", "fast=5,10", "--ray", "127.0.0.1:1"],
                                        "--ray 127.0.0.1:1: nothing answers there"),
    "sweep ray with workers": (SWEEP + ["--grid", "fast=5,10", "--ray", "auto", "--workers", "2"],
                               "leave out --workers"),
    "sweep grid beyond the trial cap": (SWEEP + ["--grid", "fast=1:1000:1", "--grid", "slow=1:1000:1"],
                                        "the grid has 1,000,000 points, more than the 100,000"),
    "sweep random over a vast grid": (SWEEP + ["--grid", "fast=1:10000:1", "--grid", "slow=1:1000:1",
                                               "--sampler", "random", "--trials", "3"], "10,000,000 points"),
    "sweep trials beyond the cap": (SWEEP + ["--grid", "fast=2~30", "--sampler", "random", "--trials",
                                             "1000000000000"], "a sweep runs at most 100,000"),
    "sweep float span of a whole number": (SWEEP + ["--grid", "fast=2.2~2.8", "--sampler", "random",
                                                    "--trials", "3"], "fast is a whole number"),
    "walk-forward checkpoints in /proc": (["backtest", "--no-progress", "--data", "{d}/hours.csv",
                                           "--strategy", "model", "--walk-forward", "2", "--train",
                                           "seq_len=8", "--checkpoints", "/proc/wf"],
                                          "--checkpoints /proc/wf cannot be written"),
    "walk-forward checkpoints under a file": (["backtest", "--no-progress", "--data", "{d}/hours.csv",
                                               "--strategy", "model", "--walk-forward", "2", "--train",
                                               "seq_len=8", "--checkpoints", "{d}/good.csv/wf"],
                                              "good.csv is a file"),
    "sweep resume without a ledger": (["sweep", "--resume", "1", "--ledger", "{d}/new.db"], "no ledger at"),
    # train
    "train checkpoint to /proc": (TRAIN + ["--out", "/proc/m.pt"], "/proc/m.pt: not writable"),
    "train nan learning rate": (TRAIN + ["--lr", "nan"], "lr must be a positive number"),
    "train dropout of 1": (TRAIN + ["--dropout", "1"], "dropout must be at least 0 and below 1"),
    "train window beyond memory": (TRAIN + ["--seq-len", "1000000000"],
                                   "1,000,000,000 tokens needs about"),
    "train minute bars beside hourly ones": (["train", "--no-progress", "--data", "BTCUSDT={d}/minutes.csv",
                                              "ETHUSDT={d}/hours.csv", "--interval", "1h", "--seq-len", "8",
                                              "--out", "{d}/m.pt"],
                                             "BTCUSDT: its 5 bars of 1h give no usable window"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_leaves_the_ledger_alone(workdir, capsys, monkeypatch, name):
    argv, message = CASES[name]
    monkeypatch.chdir(workdir)
    ledger = workdir / "ledger.db"
    before, other_before = digest(ledger), digest(workdir / "other.db")
    argv = [a.format(d=workdir) for a in argv]
    if argv[0] in ("backtest", "live") and "--ledger" not in argv:
        argv += ["--ledger", str(ledger)]
    assert main(argv) == 2, name
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert "Traceback" not in err[0]
    assert digest(ledger) == before
    assert digest(workdir / "other.db") == other_before  # nothing written into another program's database
    assert not (workdir / "fetched").exists() and not (workdir / "o.csv").exists()
    assert not (workdir / "new.db").exists() and not (workdir / "m.pt").exists()


def test_the_installed_command_prints_one_line_too(workdir):
    done = subprocess.run([sys.executable, "-m", "engine.cli", "backtest", "--interval", "7x", "--ledger",
                           str(workdir / "ledger.db")], capture_output=True, text=True, cwd=workdir)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_a_strategy_file_and_a_module_in_the_working_directory_load(tmp_path, monkeypatch, capsys):
    """The README's BuyDips, as ./mystrat.py:BuyDips and as mystrat:BuyDips (no PYTHONPATH)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    (tmp_path / "mystrat.py").write_text(
        "from dataclasses import dataclass\n"
        "from strategies import Strategy, StrategyConfig\n\n"
        "@dataclass(frozen=True)\nclass BuyDipsConfig(StrategyConfig):\n    drop: float = 0.01\n"
        "    qty: float = 0.001\n\n"
        "class BuyDips(Strategy):\n    config_class = BuyDipsConfig\n\n    def on_bar(self, bar):\n"
        "        if bar.close < bar.open * (1 - self.config.drop):\n"
        "            self.target_position(self.config.qty)\n")
    sample = str(SAMPLE_DIR / "BTCUSDT2025-06-01.csv.gz")
    for spec in ("./mystrat.py:BuyDips", "mystrat:BuyDips", f"{tmp_path}/mystrat.py:BuyDips"):
        assert main(["backtest", "--data", sample, "--strategy", spec, "--param", "drop=0.001", "--ledger",
                     "l.db", "--no-progress", "--json"]) == 0, spec
        assert json.loads(capsys.readouterr().out)["fills"] > 0


@pytest.mark.parametrize("argv", [["report", "--run", "abc"], ["sweep", "--resume", "x"],
                                  ["backtest", "--nope"], ["bogus"], []])
def test_usage_errors_are_one_line_too(capsys, argv):
    """argparse's own refusals (a flag's type, an unknown flag or verb) print no usage block."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and "error:" in err[0] and "see papertape" in err[0], err


@pytest.mark.parametrize("name", ["good.csv", "day.csv.gz"])
def test_a_file_with_a_byte_order_mark_replays_as_without(workdir, tmp_path, capsys, name):
    """Spreadsheet exports start with a UTF-8 byte order mark; the header is still recognised."""
    raw = (workdir / name).read_bytes()
    marked = b"\xef\xbb\xbf" + (gzip.decompress(raw) if name.endswith(".gz") else raw)
    (tmp_path / name).write_bytes(gzip.compress(marked) if name.endswith(".gz") else marked)
    metrics = []
    for path in (workdir / name, tmp_path / name):
        assert main(["backtest", "--data", str(path), "--ledger", str(tmp_path / "l.db"), "--no-progress",
                     "--json"]) == 0
        metrics.append(json.loads(capsys.readouterr().out)["metrics"])
    assert metrics[0] == metrics[1] and metrics[0]["bars"] > 0


def test_a_sweep_stopped_by_an_error_is_marked_failed(workdir, tmp_path, capsys):
    """An error after the sweep is recorded (too few bars for the folds, found once the data's
    window is known) leaves it failed, not running, with no reserved run behind."""
    ledger = tmp_path / "l.db"
    assert main(["sweep", "--no-progress", "--data", str(workdir / "good.csv"), "--ledger", str(ledger),
                 "--grid", "fast=5,10", "--walk-forward", "1000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "too few bars" in err[0], err
    with sqlite3.connect(ledger) as con:
        assert con.execute("SELECT status FROM sweeps").fetchall() == [("failed",)]
        assert con.execute("SELECT count(*) FROM runs").fetchall() == [(0,)]
    con.close()


@pytest.mark.parametrize("args, message", [
    (["--data", "{d}/inf-close.csv"], "inf-close.csv:7: malformed bar"),
    (["--data", "{d}/good.csv", "--symbols", "BTCUSDT,ETHUSDT"], "a kline file names no symbol"),
    (["--data", "{d}/good.csv", "--start", "2030-01-01"], "no bars in the replay range"),
])
def test_sweep_data_the_trials_cannot_replay_is_one_line(workdir, capsys, args, message):
    """Bad data fails the command before the ledger is made (it had failed every trial, exit 0)."""
    argv = ["sweep", "--no-progress", "--ledger", str(workdir / "new.db"), "--grid", "fast=5,10",
            *[a.format(d=workdir) for a in args]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (workdir / "new.db").exists()
