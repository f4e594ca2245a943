"""What a newcomer meets first: one default ledger for every command, a progress bar on a
terminal (and none with --no-progress), and no pandas warning from a file with bad rows."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import warnings

import numpy as np

from engine.cli import main
from tests.helpers.archive import DERIVATIVES_HEADER
from tests.helpers.broker import write_klines

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DAY0 = 1748736000


def test_runs_and_report_read_the_ledger_backtest_wrote(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_klines(tmp_path / "k.csv", 30)
    assert main(["backtest", "--data", "k.csv", "--no-progress"]) == 0
    assert (tmp_path / "papertape.db").is_file()
    assert main(["runs"]) == 0 and "backtest finished" in capsys.readouterr().out.replace("  ", " ")
    (tmp_path / "config.toml").write_text('[ledger]\npath = "runs/mine.db"\n')
    assert main(["backtest", "--data", "k.csv", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["runs", "--json"]) == 0 and len(eval(capsys.readouterr().out.replace("null", "None"))) == 1
    assert main(["report", "--run", "1", "--out", "r.html"]) == 0 and (tmp_path / "r.html").is_file()


def on_a_terminal(*argv: str, cwd) -> str:
    """stderr of ``papertape ARGV`` run on a pseudo-terminal 120 columns wide."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", *argv], cwd=cwd, stdin=follower,
                            stdout=subprocess.DEVNULL, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_backtest_shows_a_progress_bar_on_a_terminal_only(tmp_path):
    write_klines(tmp_path / "k.csv", 3000)
    shown = on_a_terminal("backtest", "--data", "k.csv", "--ledger", "a.db", cwd=tmp_path)
    assert "replay BTCUSDT: 100%" in shown, shown[-500:]
    quiet = on_a_terminal("backtest", "--data", "k.csv", "--ledger", "b.db", "--no-progress", cwd=tmp_path)
    assert "replay" not in quiet and "%|" not in quiet
    piped = subprocess.run([sys.executable, "-m", "engine.cli", "backtest", "--data", "k.csv", "--ledger",
                            "c.db"], cwd=tmp_path, capture_output=True, text=True, env=dict(os.environ,
                            PYTHONPATH=ROOT))
    assert piped.returncode == 0 and "%|" not in piped.stderr


def test_an_archive_with_a_text_cell_deep_inside_warns_nothing(tmp_path, capsys):
    n = 300_000  # beyond pandas' internal block, where mixed types make a DtypeWarning
    ts = DAY0 + np.arange(n) * 0.2
    lines = [f"{t:.4f},BTCUSDT,Buy,0.001,{100000 + i % 7}.5,PlusTick,i{i},0,0,0,0" for i, t in enumerate(ts)]
    lines[290_000] = lines[290_000].replace("Buy,0.001,", "Buy,0.001,n/a").replace(".5,PlusTick", ",PlusTick")
    (tmp_path / "BTCUSDT2025-06-01.csv").write_text(DERIVATIVES_HEADER + "\n" + "\n".join(lines) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["bars", "--data", str(tmp_path / "BTCUSDT2025-06-01.csv"), "--out",
                     str(tmp_path / "b.csv"), "--no-progress", "--json"]) == 0
    assert '"bad_rows": 1' in capsys.readouterr().out
