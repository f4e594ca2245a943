"""Live dashboard benchmark: ``papertape live`` against ``papertape serve-exchange`` (the sample
day at ``--speed``, 1 s bars), once without the dashboard and once with ``--dashboard`` and
``--browsers`` Chromium pages open on the live run's page. Figures: the live process's CPU as
a share of one core in each, the CPU the dashboard adds, and bar close -> the page's update
(median, p99, max, wall ms, as seen by live.js in each browser).

    python bench/live_dashboard.py                 # 40 s each, 2 browsers
    python bench/live_dashboard.py --seconds 15 --browsers 1
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.live import PAPERTAPE, cpu_seconds  # noqa: E402

SAMPLE = ROOT / "engine" / "data" / "sample" / "BTCUSDT2025-06-01.csv.gz"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
WARMUP_S = 4.0


def _wait_line(path: Path, pattern: str, proc: subprocess.Popen, timeout: float = 60) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(pattern, path.read_text() if path.exists() else "")
        if match:
            return match
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit(f"bench: {pattern!r} never appeared: {path.read_text()[-500:]}")


def session(work: Path, speed: float, seconds: float, browsers: int) -> dict:
    """One live session; with ``browsers`` > 0 it serves the dashboard and they watch it."""
    tag = f"{'dash' if browsers else 'plain'}-{time.monotonic_ns()}"
    ex_err = work / f"exchange-{tag}.err"
    exchange = subprocess.Popen([PAPERTAPE, "serve-exchange", "--data", str(SAMPLE), "--host", "127.0.0.1",
                                 "--port", "0", "--speed", f"{speed:g}"], stdout=subprocess.PIPE,
                                stderr=ex_err.open("w"), text=True, cwd=work)
    url = re.search(r"listening on (http://\S+)", exchange.stdout.readline()).group(1)
    err = work / f"live-{tag}.err"
    cmd = [PAPERTAPE, "live", "--json", "--ws-url", "ws://" + url.split("//")[1], "--rest-url", url,
           "--ledger", str(work / f"{tag}.db"), "--interval", "1s", "--duration", f"{seconds:g}s"]
    if browsers:
        cmd += ["--dashboard", "127.0.0.1:0"]
    live = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err.open("w"), text=True, cwd=work)
    latencies: list[float] = []
    try:
        pages, pw, ctx = [], None, None
        if browsers:
            match = _wait_line(err, r"dashboard at (http://\S+/)", live)
            from playwright.sync_api import sync_playwright
            pw = sync_playwright().start()
            ctx = pw.chromium.launch_persistent_context(str(work / f"profile-{tag}"),
                                                        executable_path=CHROMIUM, headless=True, args=FLAGS)
            for _ in range(browsers):
                page = ctx.new_page()
                page.goto(f"{match.group(1)}runs/1")  # a fresh ledger: the session is its run 1
                pages.append(page)
        time.sleep(WARMUP_S)
        cpu0, wall0 = cpu_seconds(live.pid), time.monotonic()
        time.sleep(max(1.0, seconds - WARMUP_S - 3.0))
        cpu, wall = cpu_seconds(live.pid) - cpu0, time.monotonic() - wall0
        for page in pages:
            latencies += page.evaluate("window.papertapeLive ? window.papertapeLive.latencies : []")
        if ctx is not None:
            ctx.close()
            pw.stop()
        out, _ = live.communicate(timeout=120)
    finally:
        exchange.terminate()
        exchange.wait(30)
    result = json.loads(out)
    lat = np.array(latencies, dtype=np.float64)
    return {"cpu_share": cpu / wall, "bars": result["bars"], "status": result["status"],
            "updates": len(lat), "latency_ms": {
                "p50": float(np.median(lat)) if len(lat) else None,
                "p99": float(np.percentile(lat, 99)) if len(lat) else None,
                "max": float(lat.max()) if len(lat) else None}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=40.0, help="each session's length (40)")
    parser.add_argument("--speed", type=float, default=20.0, help="replay speed of the sample day (20)")
    parser.add_argument("--browsers", type=int, default=2, help="dashboard pages open (2)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="papertape-bench-dashlive-") as tmp:
        work = Path(tmp)
        plain = session(work, args.speed, args.seconds, 0)
        dash = session(work, args.speed, args.seconds, args.browsers)
    out = {"without_dashboard": plain, "with_dashboard": dash,
           "added_cpu_share": dash["cpu_share"] - plain["cpu_share"],
           "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()), "cpus": os.cpu_count(),
           "speed": args.speed, "seconds": args.seconds, "browsers": args.browsers}
    if args.json:
        print(json.dumps(out))
        return 0
    lat = dash["latency_ms"]
    print(f"live session, sample day at {args.speed:g}x, 1 s bars, {args.seconds:g} s each")
    print(f"  CPU of one core: without dashboard {plain['cpu_share']:.1%}, with it and {args.browsers} "
          f"browsers {dash['cpu_share']:.1%} (added {out['added_cpu_share']:+.1%})")
    print(f"  bar close -> page update over {dash['updates']} updates: p50 {lat['p50']} ms, "
          f"p99 {lat['p99']} ms, max {lat['max']} ms")
    print(f"  ({out['cpus']} CPUs; load average at the end {out['loadavg']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
