"""Replay benchmark: CSV parse rate, trades/s from cache into 1-minute bars, peak RSS, and
bars/s through the bus into a strategy that does nothing.

The bundled synthetic sample (~35k trades a day) is scaled to a realistic BTCUSDT density
(about 2 million trades a day) by replaying each sample trade ``--density`` times with
small time offsets and size jitter, over ``--days`` days: 20+ million trades by default.
The scaled archives are written once under ``--workdir`` (uncompressed CSV, Bybit's
derivatives layout) and reused. Each measurement runs in a fresh subprocess, so the peak
RSS printed is that phase's own.

    python bench/replay.py            # full run (first time: ~2 min to write the data)
    python bench/replay.py --quick    # 2 days at lower density
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rss import peak_rss_mb

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = sorted((ROOT / "engine" / "data" / "sample").glob("BTCUSDT*.csv.gz"))
DAY_S = 86400


def make_archives(workdir: Path, days: int, density: int) -> list[Path]:
    """Write (or reuse) ``days`` daily archives at ``density`` times the sample's rate."""
    workdir.mkdir(parents=True, exist_ok=True)
    base = [pd.read_csv(p) for p in SAMPLE]
    paths = []
    rng = np.random.default_rng(11)
    for day in range(days):
        day_start = 1748736000 + day * DAY_S
        name = time.strftime("BTCUSDT%Y-%m-%d.csv", time.gmtime(day_start))
        path = workdir / f"d{density}" / name
        paths.append(path)
        if path.is_file():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        src = base[day % len(base)]
        offset = np.floor(src.timestamp.to_numpy() / DAY_S) * DAY_S
        ts = src.timestamp.to_numpy() - offset + day_start
        n = len(src) * density
        rep_ts = np.repeat(ts, density) + np.tile(np.arange(density) * 0.0007, len(src))
        rep_ts = np.minimum(rep_ts, day_start + DAY_S - 0.0001)
        sizes = np.maximum(np.round(np.repeat(src["size"].to_numpy(), density)
                                    * rng.lognormal(0, 0.3, n), 3), 0.001)
        prices = np.repeat(src.price.to_numpy(), density)
        order = np.argsort(rep_ts, kind="stable")
        frame = pd.DataFrame({
            "timestamp": np.round(rep_ts[order], 4), "symbol": "BTCUSDT",
            "side": np.repeat(src.side.to_numpy(), density)[order],
            "size": sizes[order], "price": prices[order], "tickDirection": "ZeroPlusTick",
            "trdMatchID": [f"{i:08x}-0000-4000-8000-{day:012x}" for i in range(n)],
            "grossValue": 0.0, "homeNotional": sizes[order], "foreignNotional": 0.0, "RPI": 0,
        })
        tmp = path.with_suffix(".tmp")
        frame.to_csv(tmp, index=False, float_format="%.10g")
        tmp.rename(path)
        print(f"  wrote {path.name}: {n:,} trades", file=sys.stderr)
    return paths


def phase_parse(paths: list[str], cache: str) -> dict:
    from engine.feeds.history.archive import TradeArchive

    start = time.perf_counter()
    rows = sum(TradeArchive(p, cache).info().rows for p in paths)
    seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds, "peak_rss_mb": peak_rss_mb()}


def phase_replay(paths: list[str], cache: str) -> dict:
    from engine.feeds.history.archive import TradeArchive
    from engine.feeds.history.replay import TradeReplay
    from engine.feeds.history.sources import aggregate_bars

    source = TradeReplay([TradeArchive(p, cache) for p in paths])
    start = time.perf_counter()
    bars = aggregate_bars(source, "1m")
    seconds = time.perf_counter() - start
    rows = source.total_rows
    return {"rows": rows, "bars": len(bars), "seconds": seconds, "trades_per_s": rows / seconds,
            "peak_rss_mb": peak_rss_mb()}


def phase_bars(n_bars: int) -> dict:
    from engine.broker.from_config import broker_from_config
    from engine.core.bus import Bus
    from engine.core.clock import ReplayClock
    from engine.core.config import AccountSection, BrokerSection
    from engine.feeds.history.kline_cache import FrameColumns
    from engine.feeds.history.replay import KlineReplay
    from engine.strategy.host import StrategyContext
    from strategies.base import Strategy

    rng = np.random.default_rng(0)
    close = 100_000 * np.exp(np.cumsum(rng.normal(0, 1e-3, n_bars)))
    frame = pd.DataFrame({"open_time": 1748736000000 + np.arange(n_bars, dtype=np.int64) * 60_000,
                          "open": close, "high": close * 1.001, "low": close * 0.999, "close": close,
                          "volume": 1.0, "turnover": close, "trades": 10})
    source = KlineReplay(FrameColumns(frame), "BTCUSDT", "linear", "1m", 60_000)
    clock = ReplayClock(source.range.start)
    bus = Bus(clock)
    broker = broker_from_config(bus, BrokerSection(), AccountSection(), category="linear", match_on="bars")
    StrategyContext(Strategy(), "idle", "BTCUSDT", "1m", bus, broker)
    start = time.perf_counter()
    source.run(bus)
    seconds = time.perf_counter() - start
    return {"bars": n_bars, "seconds": seconds, "bars_per_s": n_bars / seconds, "peak_rss_mb": peak_rss_mb()}


def run_phase(name: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--phase", name, *args], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=10, help="days of scaled data (default 10)")
    parser.add_argument("--density", type=int, default=60, help="copies of each sample trade (default 60)")
    parser.add_argument("--bars", type=int, default=1_000_000, help="bars for the bars/s figure")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "papertape-bench"))
    parser.add_argument("--quick", action="store_true", help="2 days at density 10, 200k bars")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        sys.path.insert(0, str(ROOT))
        result = {"parse": lambda: phase_parse(args.paths[:-1], args.paths[-1]),
                  "replay": lambda: phase_replay(args.paths[:-1], args.paths[-1]),
                  "bars": lambda: phase_bars(int(args.paths[0]))}[args.phase]()
        print(json.dumps(result))
        return
    if args.quick:
        args.days, args.density, args.bars = 2, 10, 200_000
    workdir = Path(args.workdir)
    print(f"preparing {args.days} days at {args.density}x the sample's trade rate in {workdir}",
          file=sys.stderr)
    paths = [str(p) for p in make_archives(workdir, args.days, args.density)]
    cache = tempfile.mkdtemp(prefix="cache-", dir=workdir)
    parse = run_phase("parse", *paths, cache)
    replay = run_phase("replay", *paths, cache)
    bars = run_phase("bars", str(args.bars))
    figures = {"parse": parse, "replay": replay, "bars": bars}
    if args.json:
        print(json.dumps(figures))
        return
    verdict = lambda ok: "PASS" if ok else "MISS"  # noqa: E731
    print(f"trades: {replay['rows']:,} in {args.days} daily archives ({replay['bars']:,} one-minute bars)")
    print(f"CSV parse, first replay:   {parse['rows_per_s']:>14,.0f} rows/s   ({parse['seconds']:.1f} s, "
          f"peak RSS {parse['peak_rss_mb']:,.0f} MB)")
    print(f"cache -> bus -> 1m bars:   {replay['trades_per_s']:>14,.0f} trades/s ({replay['seconds']:.2f} s) "
          f"target >= 10,000,000  {verdict(replay['trades_per_s'] >= 10e6)}")
    print(f"peak RSS during replay:    {replay['peak_rss_mb']:>14,.0f} MB")
    print(f"bars -> bus -> idle strategy: {bars['bars_per_s']:>11,.0f} bars/s   ({bars['bars']:,} bars) "
          f"target >= 300,000  {verdict(bars['bars_per_s'] >= 300e3)}")


if __name__ == "__main__":
    main()
