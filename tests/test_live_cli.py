"""``papertape live`` as a user runs it: the help, and mistakes that end with exit code 2
and one line naming the problem (before any connection is made)."""

from __future__ import annotations

import pytest

from tests.live_helpers import papertape, query

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
    (("--strategy", "tests.live_helpers:NoSuchClass"), "has no 'NoSuchClass'"),
    (("--interval", "tick:10"), "live sessions use time bars"),
    (("--param", "fast=x"), "fast: expected a whole number"),
])
def test_bad_options_exit_2_with_one_line(tmp_path, args, message):
    done = papertape("live", "--ledger", str(tmp_path / "live.db"), *NOWHERE, *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert done.stdout == ""


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
