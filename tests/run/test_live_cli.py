"""``papertape live`` as a user runs it: the help, mistakes that end with exit code 2 and one
line naming the problem (before any connection is made), and SIGTERM stopping a session
cleanly."""

from __future__ import annotations

import re
import signal
import sqlite3

import pytest

from tests.helpers.live import (
    SAMPLE_DAY,
    LiveProcess,
    papertape,
    query,
    start_exchange,
    table_has,
    wait_for,
)

NOWHERE = ("--ws-url", "ws://127.0.0.1:9", "--rest-url", "http://127.0.0.1:9", "--duration", "5s")


def test_live_help_lists_its_options(tmp_path):
    done = papertape("live", "--help", cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == ""
    for option in ("--ws-url", "--rest-url", "--duration", "--record", "--resume", "--strategy", "--param",
                   "--interval", "--ping-interval", "--pong-timeout", "--stale-after", "--rest-ban-backoff",
                   "--json"):
        assert option in done.stdout, option


@pytest.mark.parametrize("args, message", [
    (("--strategy", "nope"), "unknown strategy 'nope'"),
    (("--strategy", "tests.helpers.live:NoSuchClass"), "has no 'NoSuchClass'"),
    (("--interval", "tick:10"), "live sessions use time bars"),
    (("--interval", "bogus"), "unknown interval 'bogus'"),
    (("--param", "fast=x"), "fast: expected a whole number"),
])
def test_bad_options_exit_2_with_one_line(tmp_path, args, message):
    done = papertape("live", "--ledger", str(tmp_path / "live.db"), *NOWHERE, *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert done.stdout == ""


def test_a_model_of_another_interval_exits_2_and_records_nothing(tmp_path):
    from tests.helpers.model import ar1_bars, train_tiny

    ckpt = train_tiny(ar1_bars(500, seed=9), "full", tmp_path / "model.pt")  # 1h bars
    ledger = tmp_path / "live.db"
    done = papertape("live", "--ledger", str(ledger), *NOWHERE, "--interval", "1m", "--strategy", "model",
                     "--param", f"checkpoint={tmp_path / 'model.pt'}", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "trained on 1h bars, the run has 1m bars" in lines[0], done.stderr
    assert ckpt.exists() and not ledger.exists()


def test_resuming_a_run_that_does_not_exist_exits_2_and_records_nothing(tmp_path):
    ledger = tmp_path / "live.db"
    done = papertape("live", "--resume", "7", "--ledger", str(ledger), *NOWHERE, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"no ledger at {ledger}" in lines[0], done.stderr
    assert not ledger.exists()  # no ledger made up for a typo
    done = papertape("backtest", "--ledger", str(ledger), "--end", "2025-06-01T01:00", "--no-progress",
                     cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = papertape("live", "--resume", "7", "--ledger", str(ledger), *NOWHERE, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "has no run 7" in lines[0], done.stderr
    assert list(query(ledger, "SELECT kind FROM runs").kind) == ["backtest"]  # no failed live run left



def test_resuming_keeps_the_runs_strategy_and_market_and_records_nothing_else(tmp_path):
    ledger = tmp_path / "live.db"
    done = papertape("backtest", "--ledger", str(ledger), "--end", "2025-06-01T01:00", "--no-progress",
                     cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = papertape("live", "--resume", "1", "--ledger", str(ledger), *NOWHERE, cwd=tmp_path)
    assert done.returncode == 2 and "run 1 is a backtest; --resume continues live runs" in done.stderr
    nowhere = [a if a != "5s" else "1s" for a in NOWHERE]
    done = papertape("live", "--ledger", str(ledger), *nowhere, "--param", "fast=3", cwd=tmp_path)
    assert done.returncode == 1 and "no market data from ws://127.0.0.1:9" in done.stderr, done.stderr
    for args, message in [
        (("--strategy", "tests.helpers.live:BuyThenRest"), "run 2 ran strategy 'sma_cross'; --resume"),
        (("--symbol", "ETHUSDT"), "run 2 traded symbol BTCUSDT; --resume cannot change it to ETHUSDT"),
        (("--interval", "5m"), "run 2 traded interval 1m"),
    ]:
        done = papertape("live", "--resume", "2", "--ledger", str(ledger), *NOWHERE, *args, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], done.stderr
    assert len(query(ledger, "SELECT id FROM runs")) == 2  # no failed run left


def test_a_resumed_session_that_gets_no_data_counts_its_own_time(tmp_path):
    """The "no market data ... in N s" of a resumed session is its own time, not the time since
    the run it resumes began (a day here: the line said 86400-odd seconds)."""
    ledger = tmp_path / "live.db"
    nowhere = [a if a != "5s" else "1s" for a in NOWHERE]
    done = papertape("live", "--ledger", str(ledger), *nowhere, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    con = sqlite3.connect(ledger)
    with con:  # as if that run had started a day ago
        con.execute("UPDATE runs SET data_start = data_start - 86400000000000 WHERE id = 1")
    con.close()
    done = papertape("live", "--resume", "1", "--ledger", str(ledger), *nowhere, cwd=tmp_path)
    last = done.stderr.strip().splitlines()[-1]
    match = re.search(r"no market data from \S+ in (\d+) s", last)
    assert done.returncode == 1 and match and int(match.group(1)) < 600, last


def test_sigterm_stops_a_session_cleanly(tmp_path):
    ledger = tmp_path / "live.db"
    exchange = start_exchange([SAMPLE_DAY], tmp_path, speed=400)
    try:
        live = LiveProcess(exchange, tmp_path, ledger, duration=None, interval="1s")
        wait_for(lambda: table_has(ledger, "SELECT 1 FROM bars LIMIT 1 OFFSET 1"), 30, "two bars")
        live.proc.send_signal(signal.SIGTERM)
        done = live.wait(30)
    finally:
        exchange.stop()
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.result["status"] == "stopped" and "stopping (SIGTERM)" in done.stderr
    run = query(ledger, "SELECT * FROM runs").iloc[0]
    assert run.status == "stopped" and run.data_end > run.data_start
    assert len(query(ledger, "SELECT * FROM bars")) == done.result["bars"] >= 2


@pytest.mark.parametrize("duration", ["1e400s", "inf", "0s"])
def test_a_duration_that_is_not_positive_and_finite_is_refused(tmp_path, duration):
    # 1e400s was inf seconds: a session that never ends on its own
    done = papertape("live", "--ledger", str(tmp_path / "live.db"), *NOWHERE, "--duration", duration,
                     cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "duration must be positive and finite" in done.stderr.strip().splitlines()[-1], done.stderr
    assert not (tmp_path / "live.db").exists()
