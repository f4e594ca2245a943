"""How a live session ends when its feed does not work out: a stop (SIGTERM, the duration)
cuts a reconnect delay, a connect attempt or the close of a frozen exchange's socket short
instead of waiting it out; a symbol the venue refuses ends the session at once with exit 2
and one line; and the wait for the first connection is recorded as a gap only when that
connection never comes."""

from __future__ import annotations

import re
import signal
import time

from tests.helpers.live import SAMPLE_DAY, LiveProcess, papertape, query, start_exchange, table_has, wait_for
from tests.helpers.scripted_bybit import Unanswered

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00"


# A stop that waited out what it should cut short would take the whole wait (a reconnect
# delay of at least 6 s, the rest of a 10 s connect attempt, a 10 s close timeout); a prompt
# one takes a second or two, more on a loaded machine. The bounds sit between the two.
PROMPT_S = 5.5
# A close that waited for a frozen exchange's answer would end after websockets' own close
# timeout; a prompt one took 5.7 s at load 8-10 (the 1 s the client gives a close, then the
# ledger's flush and the exit on starved cores), so that case is bounded by the wait itself.
WEBSOCKETS_CLOSE_S = 10.0
# A stop that waited out a 10 s connect attempt begun at the start of a 2 s session would end
# about 8 s after the duration; the bound leaves a second of that for a loaded machine.
CONNECT_ATTEMPT_REST_S = 7.0


def stop_and_time(live: LiveProcess, seen: str | None = None, act=None):
    """Wait until stderr matches ``seen`` (if given), run ``act``, and return the result with
    the seconds from then to the exit, and the match."""
    match = None
    if seen is not None:
        wait_for(lambda: re.search(seen, live.stderr()), 30, seen, every=0.02)
        match = re.search(seen, live.stderr())
    if act is not None:
        act()
    at = time.monotonic()
    done = live.wait(30)
    return done, time.monotonic() - at, match


def assert_never_connected(ledger, status: str) -> None:
    run = query(ledger, "SELECT * FROM runs").iloc[0]
    assert run.status == status and run.data_end > run.data_start
    gaps = query(ledger, "SELECT * FROM feed_gaps ORDER BY id")
    assert list(gaps.status) == ["disconnected", "unfilled"], gaps  # the whole run is a gap
    assert (gaps.gap_from == run.data_start).all() and gaps.gap_to.iloc[1] == run.data_end


def assert_no_data_line(stderr: str, ws: str) -> tuple[int, str]:
    """The session's last line names the URL, the attempts and the last error; returns
    those two."""
    last = stderr.strip().splitlines()[-1]
    match = re.fullmatch(rf"papertape: run \d+ failed: no market data from {re.escape(ws)}/v5/public/linear "
                         r"in \d+ s: (\d+) connection attempt\(s\), 0 connected; last error: (.+)", last)
    assert match and int(match.group(1)) >= 1, last
    return int(match.group(1)), match.group(2)


def test_sigterm_during_a_reconnect_delay_ends_the_session_at_once(tmp_path):
    nowhere = Unanswered()  # connections refused: the delays grow 0.5, 1, 2, 4, 8 s
    try:
        live = LiveProcess(nowhere, tmp_path, tmp_path / "live.db", duration=None)
        done, took, match = stop_and_time(live, r"reconnect to \S+ in ((?:[6-9]|\d\d)\.\d+) s",
                                          lambda: live.proc.send_signal(signal.SIGTERM))
    finally:
        nowhere.close()
    delay = float(match.group(1))
    assert took < min(PROMPT_S, delay), f"exited {took:.1f} s after SIGTERM, during a {delay} s delay"
    after_stop = done.stderr[done.stderr.index("stopping (SIGTERM)"):]
    assert "reconnect to" not in after_stop  # no attempt after the stop
    # no market data at all: the session failed, and says why in one line
    assert done.returncode == 1 and done.result["status"] == "failed", done.stderr[-2000:]
    assert_never_connected(tmp_path / "live.db", "failed")
    attempts, error = assert_no_data_line(done.stderr, nowhere.ws)
    assert attempts >= 5 and "Connect" in error, (attempts, error)  # the delays reached 6 s
    assert re.search(rf"gap {ISO} \.\. {ISO} could not be fully backfilled", done.stderr), done.stderr


def test_the_duration_ends_a_session_stuck_in_a_connect_attempt(tmp_path):
    mute = Unanswered(listen=True)  # the handshake is never answered: the attempt waits 10 s
    try:
        live = LiveProcess(mute, tmp_path, tmp_path / "live.db", duration="2s")
        done, took, _ = stop_and_time(live, r"stopping \(duration\)")
    finally:
        mute.close()
    assert took < CONNECT_ATTEMPT_REST_S, f"exited {took:.1f} s after the duration, during a connect attempt"
    assert done.returncode == 1 and done.result["status"] == "failed", done.stderr[-2000:]
    assert_never_connected(tmp_path / "live.db", "failed")
    assert_no_data_line(done.stderr, mute.ws)


def test_sigterm_ends_a_session_whose_exchange_froze(tmp_path):
    ledger = tmp_path / "live.db"
    exchange = start_exchange([SAMPLE_DAY], tmp_path)
    try:
        live = LiveProcess(exchange, tmp_path, ledger, duration=None, interval="1s")
        wait_for(lambda: table_has(ledger, "SELECT 1 FROM bars"), 20, "a bar")
        exchange.proc.send_signal(signal.SIGSTOP)  # its socket stays open, but no close frame comes
        try:
            done, took, _ = stop_and_time(live, act=lambda: live.proc.send_signal(signal.SIGTERM))
        finally:
            exchange.proc.send_signal(signal.SIGCONT)
    finally:
        exchange.stop()
    assert took < WEBSOCKETS_CLOSE_S, f"exited {took:.1f} s after SIGTERM, closing a frozen exchange's socket"
    assert done.returncode == 0 and done.result["status"] == "stopped", done.stderr[-2000:]
    assert query(ledger, "SELECT status FROM runs").status.iloc[0] == "stopped"


def test_a_symbol_the_exchange_refuses_ends_the_session_with_exit_2(tmp_path):
    ledger = tmp_path / "live.db"
    exchange = start_exchange([SAMPLE_DAY], tmp_path)  # serves BTCUSDT only
    try:
        started = time.monotonic()
        live = LiveProcess(exchange, tmp_path, ledger, "--symbol", "ETHUSDT", duration="60s")
        try:
            done = live.wait(20)
        finally:
            if live.proc.poll() is None:
                live.kill()
    finally:
        exchange.stop()
    assert time.monotonic() - started < 40  # well short of the 60 s duration
    assert done.returncode == 2 and done.result is None, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("papertape: error: the exchange refused the subscription to "
                           "publicTrade.ETHUSDT") and "is ETHUSDT a linear symbol" in last, done.stderr
    assert "Traceback" not in done.stderr
    run = query(ledger, "SELECT * FROM runs").iloc[0]
    assert run.status == "failed" and "refused" in run.error
    assert "subscribe_failed" in set(query(ledger, "SELECT status FROM feed_gaps").status)


def test_a_clean_session_records_no_gap(tmp_path):
    ledger = tmp_path / "live.db"
    exchange = start_exchange([SAMPLE_DAY], tmp_path)
    try:
        done = LiveProcess(exchange, tmp_path, ledger, duration="4s", interval="1s").wait(30)
    finally:
        exchange.stop()
    assert done.returncode == 0 and done.result["status"] == "finished", done.stderr[-2000:]
    assert done.result["bars"] >= 2 and done.result["reconnects"] == 0
    assert query(ledger, "SELECT * FROM feed_gaps").empty  # waiting for the first connection is no gap
    report = papertape("report", "--ledger", str(ledger), "--out", str(tmp_path / "r.html"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "r.html").read_text()
    assert "No feed gaps recorded." in page and "gap record(s)" not in page
