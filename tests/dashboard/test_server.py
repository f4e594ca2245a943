"""``papertape dashboard`` as a user runs it: a subprocess serving a real ledger on loopback."""

import json
import signal
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

PAPERTAPE = str(Path(sys.executable).parent / "papertape")
HOSTILE = "<img src=x onerror=alert(1)>"


def _serve(ledger: Path, *args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([PAPERTAPE, "dashboard", "--ledger", str(ledger), "--port", "0", *args],
                            stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    assert line.startswith("dashboard at http://"), line
    return proc, line.split(" at ", 1)[1].strip()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return resp.read().decode()


def _refused(url: str) -> int:
    """The HTTP error status ``url`` answers with; fails the test if it is served."""
    try:
        _get(url)
    except urllib.error.HTTPError as exc:
        return exc.code
    raise AssertionError(f"{url} was served")


def test_it_lists_the_ledger_runs_escaped_and_stops_on_sigterm(tmp_path):
    ledger = tmp_path / "l.db"
    done = subprocess.run([PAPERTAPE, "backtest", "--ledger", str(ledger), "--no-progress"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(ledger) as db:
        db.execute("UPDATE runs SET strategy = ?, params = ?", (HOSTILE, json.dumps({"note": HOSTILE})))
        db.execute("INSERT INTO feed_gaps (run_id, symbol, status, gap_from, gap_to, detail, ts) "
                   "SELECT id, symbol, 'unfilled', data_start, data_start + 60000000000, ?, data_start "
                   "FROM runs",
                   (HOSTILE,))
    proc, url = _serve(ledger)
    try:
        base = url.rstrip("/")
        runs = json.loads(_get(base + "/api/runs"))
        assert [r["strategy"] for r in runs] == [HOSTILE]
        assert runs[0]["symbols"] == [runs[0]["symbol"]] and runs[0]["kind"] == "backtest"
        assert runs[0]["status"] == "finished" and runs[0]["metrics"]["n_fills"] > 0
        run_id = runs[0]["id"]
        run = json.loads(_get(f"{base}/api/runs/{run_id}?width=20"))
        assert run["id"] == run_id and run["metrics"]["n_fills"] == len(run["fills"]) == run["fills_total"]
        assert 2 < len(run["equity"]) <= 42 and all(len(p) == 2 for p in run["equity"])
        assert run["equity"][-1][1] == run["metrics"]["final_equity"]
        assert {"client_order_id", "price", "qty", "fee", "realized_pnl", "symbol"} <= set(run["fills"][0])
        tables = json.loads(_get(f"{base}/api/runs/{run_id}/tables"))
        assert tables["gaps"]["rows"][0]["detail"] == HOSTILE
        curves = json.loads(_get(f"{base}/api/runs/{run_id}/curves?width=50"))
        assert set(curves) >= {"equity", "benchmark", "drawdown", "daily"}
        whole = json.loads(_get(f"{base}/api/runs/{run_id}/bars?width=50"))
        assert whole["total"] > 50 and len(whole["t"]) <= 50 and whole["symbol"] == runs[0]["symbol"]
        start, end = whole["t"][10], whole["t"][12]
        zoomed = json.loads(_get(f"{base}/api/runs/{run_id}/bars?width=50&start={start}&end={end}"))
        assert zoomed["total"] < whole["total"] and start <= zoomed["t"][0] and zoomed["t"][-1] <= end
        assert max(zoomed["h"]) <= max(whole["h"]) and len(zoomed["t"]) > 2
        run_page = _get(f"{base}/runs/{run_id}")
        assert HOSTILE not in run_page and "&lt;img src=x onerror=alert(1)&gt;" in run_page
        assert "LightweightCharts" in _get(base + "/assets/lightweight-charts.js")
        assert "createChart" in _get(base + "/assets/run.js")
        for bad in ("/assets/..%2Fapp.py", "/assets/app.py", f"/api/runs/{run_id}/bars?symbol=NOPE"):
            assert _refused(base + bad) == 404
        page = _get(base + "/")
        assert HOSTILE not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
        assert _refused(base + "/api/runs/999") == 404
        beyond = "9" * 25  # no 64-bit id: was an OverflowError (500) in the SQLite driver
        for path in (f"/api/runs/{beyond}", f"/runs/{beyond}", f"/api/sweeps/{beyond}",
                     f"/compare?runs={beyond}"):
            assert _refused(base + path) == 404, path
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def test_beyond_loopback_a_token_is_generated_and_required(tmp_path):
    ledger = tmp_path / "l.db"
    subprocess.run([PAPERTAPE, "backtest", "--ledger", str(ledger), "--no-progress"], cwd=tmp_path,
                   capture_output=True, timeout=300, check=True)
    proc, url = _serve(ledger, "--host", "0.0.0.0")
    try:
        assert "?token=" in url
        base, token = url.replace("0.0.0.0", "127.0.0.1").split("/?token=")
        assert _refused(base + "/api/runs") == 401  # without the token
        assert json.loads(_get(f"{base}/api/runs?token={token}"))
        with urllib.request.urlopen(f"{base}/runs/1?token={token}", timeout=60) as resp:
            cookie = resp.headers["Set-Cookie"].split(";")[0]
        asked = urllib.request.Request(base + "/api/runs/1", headers={"Cookie": cookie})
        with urllib.request.urlopen(asked, timeout=60) as resp:  # the page's own fetches carry it
            assert json.loads(resp.read())["id"] == 1
        assert "LightweightCharts" in _get(base + "/assets/lightweight-charts.js")  # no ledger data
        assert _refused(base + "/api/runs/1?token=wrong") == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def test_a_missing_ledger_is_one_line_and_exit_2(tmp_path):
    done = subprocess.run([PAPERTAPE, "dashboard", "--ledger", str(tmp_path / "none.db"), "--port", "0"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
