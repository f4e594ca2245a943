"""Dashboard benchmark: a synthetic run of N one-minute bars (10k, 100k and 1M by default)
written into a temporary ledger through the real writer (``Ledger.add``, the writer process),
one fill every 100 bars (with ``--plots``, two plotted moving averages per bar, as sma_cross
records), then its page opened in Debian's Chromium (Playwright) against a
``papertape dashboard`` process:

- time to first chart: from navigation start until the price chart's candles and fill markers
  are painted (``#chart[data-first-drawn-ms]``, set by run.js), on the first open after the
  server started (nothing cached: the server reads the bars, curve and metrics) and on a
  second open (the finished run's arrays kept); target under 2 s at 1M bars;
- time until every panel (equity, drawdown, daily returns, tables) is drawn;
- bytes sent for the page: the HTML, scripts and every JSON response (bounded by the chart's
  width, not by the run's length).

Prints the figures with the load average (``uptime``); ``--json`` prints one object.
Usage: ``python bench/dashboard.py [--sizes 10000,100000,1000000] [--plots] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

START_NS = 1_577_836_800 * 10**9  # 2020-01-01 UTC
STEP_NS = 60 * 10**9
FILL_EVERY = 100
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def write_run(ledger: Path, n: int, seed: int = 7, plots: bool = False) -> float:
    """A finished run of ``n`` bars of a seeded random walk, with a round trip every
    ``2 * FILL_EVERY`` bars (and ``plots``: 10- and 30-bar means of the closes at each bar),
    through the ledger's own writer; returns the seconds it took."""
    from engine.ledger.store import Ledger

    began = time.perf_counter()
    rng = np.random.default_rng(seed)
    close = 30_000 + np.cumsum(rng.normal(0, 15, n))
    open_ = np.concatenate(([close[0]], close[:-1]))
    high = np.maximum(open_, close) + rng.random(n) * 10
    low = np.minimum(open_, close) - rng.random(n) * 10
    volume = rng.random(n) * 5
    sums = np.concatenate(([0.0], np.cumsum(close)))
    means = {k: (sums[k:] - sums[:-k]) / k for k in (10, 30)}  # means[k][i - k + 1]: bars i-k+1..i
    store = Ledger(ledger, batch_rows=50_000, flush_seconds=None)
    run_id = store.start_run(kind="backtest", strategy="synthetic", params="{}", symbol="BTCUSDT",
                             category="linear", interval="1m", data_start=START_NS,
                             data_end=START_NS + n * STEP_NS, data_files="[]", seed=seed,
                             initial_cash=100_000.0, config="{}")
    cash, qty, position, avg = 100_000.0, 0.1, 0.0, 0.0
    for i in range(n):
        ts = START_NS + (i + 1) * STEP_NS
        if i % FILL_EVERY == 0 and i + 1 < n:
            side = 1 if position == 0.0 else -1
            price, fee = float(close[i]), float(close[i]) * qty * 0.00055
            realized = 0.0 if side > 0 else (price - avg) * qty
            cash += -side * price * qty - fee
            position, avg = (qty, price) if side > 0 else (0.0, 0.0)
            order = f"synthetic-{i}"
            store.add("orders", (run_id, order, "synthetic", "BTCUSDT", side, qty, "market", None, None,
                                 "IOC", 0, ts - 1, ts - 1))
            store.add("order_updates", (run_id, order, "filled", "", ts, ts))
            store.add("fills", (run_id, order, "synthetic", "BTCUSDT", side, price, qty, fee, "taker",
                                realized, position, avg, cash, cash + position * price, ts, ts))
        mark = float(close[i])
        if plots and i >= 29:
            store.add("plots", (run_id, "BTCUSDT", "sma_fast", ts, float(means[10][i - 9])))
            store.add("plots", (run_id, "BTCUSDT", "sma_slow", ts, float(means[30][i - 29])))
        store.add("equity", (run_id, ts, cash, cash + position * mark, position, mark, 0.0, "BTCUSDT", "1m",
                             ts - STEP_NS, float(open_[i]), float(high[i]), float(low[i]), mark,
                             float(volume[i]), float(volume[i]) * mark, 10))
    store.finish_run(run_id, "finished")
    store.close()
    return time.perf_counter() - began


def serve(ledger: Path) -> tuple[subprocess.Popen, str]:
    papertape = str(Path(sys.executable).parent / "papertape")
    command = [papertape, "dashboard", "--ledger", str(ledger), "--port", "0"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = proc.stderr.readline()
    if not line.startswith("dashboard at "):
        raise SystemExit(f"the dashboard did not start: {line}")
    return proc, line.split(" at ", 1)[1].strip().rstrip("/")


def open_page(pw, profile: Path, url: str) -> dict:
    """One fresh browser on the run page: ms to the first chart and to every panel, bytes."""
    ctx = pw.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True,
                                                args=FLAGS, viewport={"width": 1280, "height": 900})
    try:
        page = ctx.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(url)
        page.wait_for_function("document.getElementById('chart').dataset.firstDrawnMs && "
                               "document.body.dataset.panelsMs", timeout=300_000)
        out = page.evaluate("""() => {
            const nav = performance.getEntriesByType('navigation')[0];
            const res = performance.getEntriesByType('resource');
            const json = res.filter((r) => r.name.includes('/api/'));
            return {first_chart_ms: Number(document.getElementById('chart').dataset.firstDrawnMs),
                    panels_ms: Number(document.body.dataset.panelsMs),
                    bytes: nav.encodedBodySize + res.reduce((a, r) => a + r.encodedBodySize, 0),
                    json_bytes: json.reduce((a, r) => a + r.encodedBodySize, 0), requests: res.length + 1};
        }""")
        if errors:
            raise SystemExit(f"console errors on {url}: {errors}")
        return out
    finally:
        ctx.close()


def measure(n: int, work: Path, plots: bool) -> dict:
    from playwright.sync_api import sync_playwright

    ledger = work / f"run{n}.db"
    written_s = write_run(ledger, n, plots=plots)
    proc, base = serve(ledger)
    try:
        with sync_playwright() as pw:
            cold = open_page(pw, work / f"profile{n}a", base + "/runs/1")
            warm = open_page(pw, work / f"profile{n}b", base + "/runs/1")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return {"bars": n, "write_s": round(written_s, 2), "ledger_mb": round(ledger.stat().st_size / 1e6, 1),
            "cold": cold, "warm": warm}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="bar counts, comma-joined")
    parser.add_argument("--plots", action="store_true", help="the run plots two series per bar")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        results = [measure(n, Path(tmp), args.plots) for n in sizes]
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    if args.json:
        print(json.dumps({"results": results, "uptime": uptime, "cpus": os.cpu_count()}))
        return 0
    print(f"{'bars':>9}  {'write s':>7}  {'ledger MB':>9}  {'first chart ms (cold / warm)':>28}  "
          f"{'all panels ms':>15}  {'bytes (JSON)':>20}")
    for r in results:
        c, w = r["cold"], r["warm"]
        print(f"{r['bars']:>9,}  {r['write_s']:>7.1f}  {r['ledger_mb']:>9.1f}  "
              f"{c['first_chart_ms']:>13,.0f} / {w['first_chart_ms']:>12,.0f}  "
              f"{c['panels_ms']:>6,.0f} / {w['panels_ms']:>6,.0f}  "
              f"{c['bytes']:>9,} ({c['json_bytes']:,})")
    print(f"target: first chart under 2,000 ms at 1,000,000 bars. uptime: {uptime}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
