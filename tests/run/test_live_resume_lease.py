"""A run is resumed once, by one process: ``--resume`` of a run that is still running (its
heartbeat is fresh) is refused; of two processes resuming one killed run at the same moment
one continues it and the other exits 2 naming the run that does; a later resume of the same
run is refused and says which run to resume instead. The ledger's runs stay one history."""

from __future__ import annotations

import signal

from tests.helpers.live import (
    SAMPLE_DAY,
    LiveProcess,
    check_ledger,
    query,
    start_exchange,
    table_has,
    wait_for,
)


def test_a_run_is_resumed_once_by_one_process(tmp_path):
    ledger = tmp_path / "live.db"
    exchange = start_exchange([SAMPLE_DAY], tmp_path, speed=300)
    try:
        first = LiveProcess(exchange, tmp_path, ledger, "--strategy", "tests.helpers.live:BuyThenRest",
                            duration="120s", interval="1s")
        wait_for(lambda: table_has(ledger, "SELECT 1 FROM fills"), 60, "a fill")
        run1 = int(query(ledger, "SELECT id FROM runs").id.iloc[0])
        early = LiveProcess(exchange, tmp_path, ledger, "--resume", str(run1), duration="5s", interval="1s")
        refused_early = early.wait(60)
        first.proc.send_signal(signal.SIGKILL)
        first.wait(30)

        racers = [LiveProcess(exchange, tmp_path, ledger, "--resume", str(run1), duration="6s", interval="1s")
                  for _ in range(2)]
        results = [racer.wait(90) for racer in racers]
        late = LiveProcess(exchange, tmp_path, ledger, "--resume", str(run1), duration="5s", interval="1s")
        refused_late = late.wait(60)
    finally:
        exchange.stop()

    assert refused_early.returncode == 2, refused_early.stderr[-2000:]
    line = refused_early.stderr.strip().splitlines()[-1]
    assert f"run {run1} is still running" in line and "stop it before resuming it" in line, line

    codes = sorted(r.returncode for r in results)
    assert codes == [0, 2], [r.stderr[-1500:] for r in results]
    winner = next(r for r in results if r.returncode == 0)
    loser = next(r for r in results if r.returncode == 2)
    run2 = winner.result["run_id"]
    assert winner.result["status"] == "finished" and winner.result["resumed_from"] == run1
    lines = loser.stderr.strip().splitlines()
    assert lines[-1] == (f"papertape: error: run {run1} is being resumed by run {run2} "
                         f"(pid {query(ledger, 'SELECT pid FROM runs WHERE id = ?', (run2,)).pid[0]} "
                         f"on {query(ledger, 'SELECT host FROM runs WHERE id = ?', (run2,)).host[0]}); "
                         "a run is resumed once, by one process"), loser.stderr[-1500:]
    assert "Traceback" not in loser.stderr

    assert refused_late.returncode == 2
    assert refused_late.stderr.strip().splitlines()[-1] == (
        f"papertape: error: run {run1} was already resumed: run {run2} continues it (finished); "
        f"resume run {run2} instead (papertape live --resume {run2})")

    runs = query(ledger, "SELECT id, resumed_from, status FROM runs ORDER BY id")
    assert list(runs.id) == [run1, run2]  # no fork, and nothing left by the refused resumers
    assert runs.resumed_from.iloc[1] == run1
    fills = check_ledger(ledger, [run1, run2])
    assert not fills.client_order_id.duplicated().any()  # nothing doubled
