"""The sweeps pages over a real sweep's ledger: the list, one sweep's heatmap over two swept
parameters (chosen in the query) with its trials linked to their runs, JSON beside them, and
ledger text escaped."""

import json
import signal
import sqlite3
import subprocess
import urllib.error

import pytest

from tests.dashboard.test_server import HOSTILE, PAPERTAPE, _get, _serve
from tests.helpers.ledgers import SAMPLE_DAY


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    ledger = tmp_path_factory.mktemp("sweep") / "l.db"
    subprocess.run([PAPERTAPE, "sweep", "--data", str(SAMPLE_DAY), "--symbol", "BTCUSDT",
                    "--grid", "fast=5,10", "--grid", "slow=20,40", "--ledger", str(ledger), "--workers", "1",
                    "--no-progress"],
                   capture_output=True, timeout=600, check=True, cwd=ledger.parent)
    with sqlite3.connect(ledger) as db:
        db.execute("UPDATE sweeps SET strategy = ?", (HOSTILE,))
    proc, url = _serve(ledger)
    yield url.rstrip("/")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


def test_the_sweep_list_and_json(served):
    sweeps = json.loads(_get(served + "/api/sweeps"))
    assert [s["id"] for s in sweeps] == [1] and sweeps[0]["trials"] == {"finished": 4}
    assert sweeps[0]["strategy"] == HOSTILE
    listing = _get(served + "/sweeps")
    assert "href='/sweeps/1'" in listing and HOSTILE not in listing and "&lt;img" in listing
    detail = json.loads(_get(served + "/api/sweeps/1"))
    assert len(detail["trials"]) == 4 and {t["status"] for t in detail["trials"]} == {"finished"}
    assert all(t["value"] is not None and t["run_id"] for t in detail["trials"])


def test_a_sweep_page_draws_the_heatmap_over_the_chosen_parameters(served):
    detail = json.loads(_get(served + "/api/sweeps/1"))
    page = _get(served + "/sweeps/1")
    assert HOSTILE not in page and page.count("<rect") == 4  # a 2 x 2 grid, every cell a trial
    assert "fast across, slow down" in page
    for t in detail["trials"]:
        assert f"href='/runs/{t['run_id']}'" in page
    flipped = _get(served + "/sweeps/1?x=slow&y=fast")
    assert "slow across, fast down" in flipped and flipped.count("<rect") == 4
    best = max(t["value"] for t in detail["trials"])
    assert f"{best:.4g}" in page
    for bad, code in (("/sweeps/1?x=nope", 400), ("/sweeps/9", 404), ("/api/sweeps/x", 400)):
        with pytest.raises(urllib.error.HTTPError) as caught:
            _get(served + bad)
        assert caught.value.code == code
