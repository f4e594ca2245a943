"""Live portfolio benchmark: ``--symbols`` many symbols (20 by default) from one
``papertape serve-exchange`` process at ``--speed`` (20x), through the live client in this
process (one websocket connection, a decoder and aggregator per symbol, broker, strategy,
ledger on), with 1 s bars.

The strategy notes, with wall-clock stamps, each bar's ``on_bar`` and each close time's
``on_bars`` (the cross-sectional decision, once every symbol's bar is in), and sends a
market order for one symbol (in turn) at every ``on_bars``. Figures:

- bar close -> decision: from a bar's scheduled close (its end plus ``bars.close_delay_ms``,
  when the aggregator may close it) to ``on_bar`` and to ``on_bars`` (median, p99, max);
  the close delay itself is stated, and bar end -> ``on_bars`` adds it;
- late trades (trades that came after their bar had closed) and trades received;
- the client's CPU time as a share of one core over the session, and the exchange's.

Archives are synthetic (``--trades-per-day`` per symbol, seeded walks), written once under
``--workdir``; instruments are BTCUSDT's rules under each symbol's name.

    python bench/live_portfolio.py                  # 20 symbols, 20x, 60 s
    python bench/live_portfolio.py --symbols 3 --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.live import cpu_seconds, server_state, start_exchange  # noqa: E402
from engine.broker.instruments import BUNDLED  # noqa: E402
from engine.core.config import load_config  # noqa: E402
from engine.run.live import LiveOptions, run_live_async  # noqa: E402
from strategies.base import Strategy  # noqa: E402

DAY0 = 1748736000  # 2025-06-01 UTC
LEAD_MS = 5000


def symbol_names(n: int) -> list[str]:
    return [f"C{i:02d}USDT" for i in range(n)]


def make_archives(workdir: Path, symbols: list[str], per_day: int, hours: float) -> list[Path]:
    """One derivatives archive per symbol (reused when present): ``per_day`` trades a day
    for ``hours``, each symbol its own seeded walk."""
    out = []
    n = int(per_day * hours / 24)
    for rank, symbol in enumerate(symbols):
        path = workdir / f"d{per_day}-h{hours:g}" / f"{symbol}2025-06-01.csv"
        out.append(path)
        if path.is_file():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(rank)
        ts = np.sort(np.round(DAY0 + rng.uniform(0, hours * 3600, n), 4))
        size = np.round(rng.integers(1, 500, n) * 0.001, 3)
        frame = pd.DataFrame({
            "timestamp": [f"{t:.4f}" for t in ts], "symbol": symbol,
            "side": np.where(rng.random(n) < 0.5, "Buy", "Sell"), "size": size,
            "price": np.round(50_000 + np.cumsum(rng.normal(0, 1.5, n)), 1), "tickDirection": "PlusTick",
            "trdMatchID": [f"{i:08x}-0000-4000-8000-{rank:012x}" for i in range(n)],
            "grossValue": 0.0, "homeNotional": size, "foreignNotional": 0.0, "RPI": 0,
        })
        frame.to_csv(path, index=False, float_format="%.10g")
    return out


def instruments_file(workdir: Path, symbols: list[str]) -> Path:
    """BTCUSDT's linear rules under every symbol's name."""
    rows = json.loads(BUNDLED.read_text())["instruments"]
    btc = next(r for r in rows if r["symbol"] == "BTCUSDT" and r["category"] == "linear")
    path = workdir / f"instruments-{len(symbols)}.json"
    path.write_text(json.dumps({"instruments": rows + [btc | {"symbol": s} for s in symbols]}))
    return path


class DecisionProbe(Strategy):
    """Stamps every ``on_bar`` and ``on_bars`` against the bar's scheduled close; one market
    order a close time, for each symbol in turn."""

    close_delay_ns = 0
    on_bar_late: list[int] = []
    on_bars_late: list[int] = []
    turn = 0

    def on_bar(self, bar) -> None:
        DecisionProbe.on_bar_late.append(time.time_ns() - bar.close_time - DecisionProbe.close_delay_ns)

    def on_bars(self, bars) -> None:
        close = max(b.close_time for b in bars.values())
        DecisionProbe.on_bars_late.append(time.time_ns() - close - DecisionProbe.close_delay_ns)
        symbol = self.symbols[DecisionProbe.turn % len(self.symbols)]
        DecisionProbe.turn += 1
        self.submit_order("sell" if self.position_of(symbol) > 0 else "buy", 0.001, symbol=symbol)


def stats(values: list[int]) -> dict:
    ms = np.asarray(values, dtype=np.float64) / 1e6
    if len(ms) == 0:
        return {"n": 0}
    return {"n": len(ms), "median_ms": round(float(np.median(ms)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3), "max_ms": round(float(ms.max()), 3)}


def run(args: argparse.Namespace) -> dict:
    symbols = symbol_names(args.symbols)
    workdir = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    hours = max(1.0, args.speed * (args.seconds + 30) / 3600)
    archives = make_archives(workdir, symbols, args.trades_per_day, hours)
    cfg = load_config(None, [f"ledger.path={workdir / 'portfolio.db'}",
                             f"broker.instruments={instruments_file(workdir, symbols)}"])
    cfg = dataclasses.replace(cfg, strategy=dataclasses.replace(cfg.strategy, name="__main__:DecisionProbe",
                                                                params={}))
    DecisionProbe.close_delay_ns = cfg.bars.close_delay_ms * 1_000_000
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    wall_start = time.time_ns() // 1_000_000 + LEAD_MS
    proc, url = start_exchange(archives, args.speed, wall_start, env)
    try:
        wait = max(0.0, wall_start / 1000 - time.time())
        port = url.rsplit(":", 1)[1]
        opts = LiveOptions(",".join(symbols), "linear", interval="1s", ws_url=f"ws://127.0.0.1:{port}",
                           rest_url=url, duration_s=wait + args.seconds, status_every_s=3600)
        cpu0, server0, wall0 = cpu_seconds(), cpu_seconds(proc.pid), time.monotonic()
        result = asyncio.run(run_live_async(cfg, opts))
        wall = time.monotonic() - wall0
        cpu, server_cpu = cpu_seconds() - cpu0, cpu_seconds(proc.pid) - server0
        state = server_state(url)
    finally:
        proc.terminate()
        proc.wait()
    streaming = wall - wait
    return {
        "symbols": args.symbols, "speed": args.speed, "seconds": args.seconds, "bars": result.bars,
        "fills": result.fills, "status": result.status, "close_delay_ms": cfg.bars.close_delay_ms,
        "bar_due_to_on_bar": stats(DecisionProbe.on_bar_late),
        "bar_due_to_on_bars": stats(DecisionProbe.on_bars_late),
        "late_trades": result.extra["late_trades"], "trades_received": result.extra["trades_received"],
        "trades_served": state["trades_served"],
        "trades_per_s": round(state["trades_served"] / streaming),
        "reconnects": result.extra["reconnects"],
        "client_cpu_share_of_one_core": round(cpu / wall, 3),
        "exchange_cpu_share_of_one_core": round(server_cpu / wall, 3),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()), "cpus": os.cpu_count(),
    }


def report(out: dict) -> None:
    print(f"{out['symbols']} symbols at {out['speed']:g}x for {out['seconds']} s (1 s bars, "
          f"{out['bars']:,} bars, {out['fills']:,} fills, {out['trades_per_s']:,} trades/s served, "
          f"status {out['status']}, reconnects {out['reconnects']}):")
    for key in ("bar_due_to_on_bar", "bar_due_to_on_bars"):
        s = out[key]
        line = f"n={s['n']}" if not s["n"] else (
            f"median {s['median_ms']:7.3f} ms   p99 {s['p99_ms']:7.3f} ms   max {s['max_ms']:8.3f} ms   "
            f"(n={s['n']:,})")
        print(f"  {key.replace('_', ' '):20s} {line}")
    print(f"  (a bar is due {out['close_delay_ms']} ms after its end: bars.close_delay_ms)")
    print(f"  late trades {out['late_trades']}; trades received {out['trades_received']:,} of "
          f"{out['trades_served']:,} served (the exchange's count, read after the session stopped: "
          f"it includes what was served after the stop)")
    print(f"  CPU: client {out['client_cpu_share_of_one_core']:.1%} of one core, exchange "
          f"{out['exchange_cpu_share_of_one_core']:.1%}")
    print(f"  ({out['cpus']} CPUs; load average at the end {out['loadavg']})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=20, help="how many symbols (20)")
    parser.add_argument("--speed", type=float, default=20.0, help="replay speed (20)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to stream (60)")
    parser.add_argument("--trades-per-day", type=int, default=200_000,
                        help="trades a day per symbol in the archives (200,000)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "papertape-bench-pf")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    out = run(args)
    print(json.dumps(out)) if args.json else report(out)
    return 0 if out["status"] != "failed" else 1


if __name__ == "__main__":
    sys.exit(main())
