"""Portfolio benchmark: many symbols in one run against one symbol, measured in the same run.

Figures, each with its target (issue "Portfolios") and PASS/MISS:

1. bars per second of ``sma_cross`` on every symbol, ledger on, for 10 symbols x 100,000
   one-minute bars and 50 x 20,000 (1M bars each way), against one symbol x 1M bars:
   at least 90% of the one-symbol figure;
2. peak RSS of a 10-symbol run of 1M bars in all against one of ``--big`` bars in all
   (10M by default): within 20% of each other, both under 500 MB;
3. trade archives to one-minute bars (``sma_cross`` on them, archives already in the
   columnar cache): 10 symbols of 200,000 trades against one symbol of 2M, trades per
   second at least 80% of the one-symbol figure; against one symbol of 200,000 (the same
   trades per bar: ten such runs one after another are what the portfolio replaces); and
   against one symbol of 2M trades over 20 days (as many trades and bars as the portfolio:
   one symbol of 2M over two days has a tenth of its bars, and each bar costs the strategy,
   the broker and the ledger what a kline bar costs).

Beside each wall-time ratio of figure 1 the same ratio in CPU seconds (the run's process
and its ledger writer process, which share this machine's cores): on a shared machine wall
time follows whatever else runs, CPU time much less so.

Each run is a child process of its own (``--child``), so its peak RSS is its own. The
cases alternate (one symbol, then the portfolios) ``--repeat`` times and the medians are
compared. Data is seeded random walks in a temporary directory; nothing is downloaded.

Usage: ``python bench/portfolio.py [--big N] [--repeat K] [--quick] [--memory] [--json]``
(``--memory``: figure 2 alone).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from backtest import write_klines  # noqa: E402  (the same seeded random walk as the one-symbol bench)
from rss import peak_rss_mb  # noqa: E402

T0_MS = 1_577_836_800_000  # 2020-01-01 UTC: 10M one-minute bars end before today
DERIVATIVES_HEADER = ("timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,"
                      "homeNotional,foreignNotional,RPI")


def symbols(n: int) -> list[str]:
    return [f"S{k:02d}USDT" for k in range(n)]


def write_instruments(path: Path, names: list[str]) -> None:
    """BTCUSDT-like linear rules for every benchmark symbol."""
    rows = [{"symbol": s, "category": "linear", "tick_size": 0.1, "qty_step": 0.001, "min_qty": 0.001,
             "max_qty": 1190, "max_market_qty": 500, "min_notional": 5, "max_leverage": 100,
             "base": s[:-4], "quote": "USDT"} for s in names]
    path.write_text(json.dumps({"instruments": rows}))


def write_trades(directory: Path, symbol: str, n: int, seed: int, days: int = 2) -> list[Path]:
    """``n`` trades of ``symbol`` over ``days`` UTC days in Bybit's derivatives archive format."""
    rng = np.random.default_rng(seed)
    paths = []
    for day, count in enumerate([n // days] * (days - 1) + [n - (days - 1) * (n // days)]):
        start = T0_MS // 1000 + 86_400 * day
        ticks = np.sort(rng.integers(0, 86_400 * 10_000, count)) + start * 10_000
        prices = np.round(30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.0002, count))), 1)
        sizes = np.round(rng.uniform(0.001, 0.5, count), 3)
        frame = pd.DataFrame({
            "timestamp": np.char.add(np.char.add((ticks // 10_000).astype(str), "."),
                                     np.char.zfill((ticks % 10_000).astype(str), 4)),
            "symbol": symbol, "side": np.where(rng.random(count) < 0.5, "Buy", "Sell"),
            "size": sizes, "price": prices, "tickDirection": "ZeroPlusTick",
            "trdMatchID": [f"{seed:04d}-{k:012d}" for k in range(count)], "grossValue": 0,
            "homeNotional": sizes, "foreignNotional": np.round(sizes * prices, 4), "RPI": 0,
        })
        path = directory / f"{symbol}2020-01-{day + 1:02d}.csv"
        frame.to_csv(path, index=False, header=DERIVATIVES_HEADER.split(","), float_format="%.10g")
        paths.append(path)
    return paths


def child(spec: dict) -> dict:
    """One backtest in this process: ``spec`` holds its data, symbols and ledger."""
    from engine.core.config import load_config
    from engine.run.backtest import run_backtest

    cfg = load_config(None, [f"ledger.path={spec['ledger']}", f"broker.instruments={spec['instruments']}",
                             "strategy.params.fast=10", "strategy.params.slow=30",
                             "strategy.params.qty=0.01", "account.cash=1000000000"])
    run = dataclasses.replace(cfg.run, data=tuple(spec["data"]), symbols=tuple(spec["symbols"]))
    cfg = dataclasses.replace(cfg, run=run)
    if spec.get("warm"):  # fill the columnar cache first: the figure is the replay, not the parse
        warm = dataclasses.replace(cfg.ledger, path=spec["ledger"] + ".warm")
        run_backtest(dataclasses.replace(cfg, ledger=warm),
                     progress=False)
    cpu, writer = time.process_time(), children_cpu_s()
    t = time.perf_counter()
    result = run_backtest(cfg, progress=False)
    elapsed = time.perf_counter() - t
    return {"bars": result.bars, "rows": result.data.get("rows"), "fills": result.fills, "seconds": elapsed,
            "cpu_main_s": time.process_time() - cpu, "cpu_writer_s": children_cpu_s() - writer,
            "peak_rss_mb": peak_rss_mb()}


def children_cpu_s() -> float:
    """User and system CPU seconds of this process's waited-for children (the ledger writer,
    once the run has closed its ledger)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def spawn(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True,
                          text=True, env=os.environ | {"PYTHONPATH": str(ROOT)}, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def kline_case(workdir: Path, name: str, count: int, per_symbol: int, instruments: Path) -> dict:
    """Kline files for ``count`` symbols of ``per_symbol`` bars each, as one run's spec."""
    folder = workdir / name
    folder.mkdir(exist_ok=True)
    names = ["BTCUSDT"] if count == 1 else symbols(count)
    data = []
    for k, symbol in enumerate(names):
        path = folder / f"{symbol}.csv"
        if not path.exists():
            write_klines(path, per_symbol, seed=100 + k)
        data.append(f"{symbol}={path}" if count > 1 else str(path))
    return {"data": data, "symbols": names if count > 1 else [], "instruments": str(instruments),
            "ledger": str(folder / "ledger.db")}


def median_case(spec: dict, label: str, results: dict) -> None:
    results.setdefault(label, []).append(spawn(spec))
    Path(spec["ledger"]).unlink(missing_ok=True)
    for suffix in ("-wal", "-shm", ".warm", ".warm-wal", ".warm-shm"):
        Path(spec["ledger"] + suffix).unlink(missing_ok=True)


def memory_only(workdir: Path, instruments: Path, total: int, big: int, out: dict, as_json: bool) -> int:
    """Figure 2 alone: one run of 10 symbols of ``total`` bars in all, then one of ``big``."""
    results: dict[str, list[dict]] = {}
    median_case(kline_case(workdir, "ten", 10, total // 10, instruments), "10 x small", results)
    median_case(kline_case(workdir, "big", 10, big // 10, instruments), "10 x big", results)
    small, large = results["10 x small"][0], results["10 x big"][0]
    ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
    out |= {"load_after": os.getloadavg(), "figures": {"10 x small": small, "10 x big": large},
            "ratio": ratio, "verdicts": {"ratio (<= 1.20)": "PASS" if ratio <= 1.2 else "MISS",
                                         "under 500 MB": "PASS" if large["peak_rss_mb"] < 500 else "MISS"}}
    if as_json:
        print(json.dumps(out))
        return 0
    print(f"papertape portfolio benchmark, memory only (sma_cross 10/30, ledger on; load "
          f"{out['load_before'][0]:.2f} before, {out['load_after'][0]:.2f} after)")
    for label, r in out["figures"].items():
        print(f"  {label:<11} {r['bars']:>11,} bars {r['fills']:>8,} fills "
              f"peak RSS {r['peak_rss_mb']:>7,.0f} MB ({r['seconds']:.0f} s)")
    print(f"  peak RSS {big:,} vs {total:,} bars, 10 symbols (<= 1.20) {ratio:6.3f}  "
          f"{out['verdicts']['ratio (<= 1.20)']}")
    print(f"  peak RSS under 500 MB {max(small['peak_rss_mb'], large['peak_rss_mb']):6.0f}  "
          f"{out['verdicts']['under 500 MB']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big", type=int, default=10_000_000, help="bars in all of the big 10-symbol run")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each throughput case (medians)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: a tenth of every size")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--memory", action="store_true",
                        help="only figure 2: the peak RSS of 10 x 100k bars against 10 symbols of --big bars")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    scale = 10 if args.quick else 1
    total, big = 1_000_000 // scale, args.big // scale
    out: dict = {"load_before": os.getloadavg()}
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="papertape-portfolio-") as tmp:
        workdir = Path(tmp)
        instruments = workdir / "instruments.json"
        write_instruments(instruments, ["BTCUSDT", *symbols(50)])
        if args.memory:
            return memory_only(workdir, instruments, total, big, out, args.json)
        cases = {"1 x 1M": kline_case(workdir, "one", 1, total, instruments),
                 "10 x 100k": kline_case(workdir, "ten", 10, total // 10, instruments),
                 "50 x 20k": kline_case(workdir, "fifty", 50, total // 50, instruments)}
        for _ in range(args.repeat):
            for label, spec in cases.items():
                median_case(spec, label, results)
        trades_dir = workdir / "trades"
        trades_dir.mkdir()
        one = write_trades(trades_dir, "BTCUSDT", 2_000_000 // scale, seed=1)
        sparse_dir = workdir / "sparse"
        sparse_dir.mkdir()
        sparse = write_trades(sparse_dir, "BTCUSDT", 200_000 // scale, seed=2)
        ten = [p for k, s in enumerate(symbols(10))
               for p in write_trades(trades_dir, s, 200_000 // scale, 10 + k)]
        long_dir = workdir / "long"
        long_dir.mkdir()
        long = write_trades(long_dir, "BTCUSDT", 2_000_000 // scale, seed=3, days=20)
        trade_cases = {
            "trades 1 x 2M": {"data": [str(p) for p in one], "symbols": [], "warm": True,
                              "instruments": str(instruments), "ledger": str(workdir / "t1.db")},
            "trades 1 x 200k": {"data": [str(p) for p in sparse], "symbols": [], "warm": True,
                                "instruments": str(instruments), "ledger": str(workdir / "t1s.db")},
            "trades 10 x 200k": {"data": [str(p) for p in ten], "symbols": symbols(10), "warm": True,
                                 "instruments": str(instruments), "ledger": str(workdir / "t10.db")},
            "trades 1 x 2M 20d": {"data": [str(p) for p in long], "symbols": [], "warm": True,
                                  "instruments": str(instruments), "ledger": str(workdir / "t1l.db")},
        }
        for _ in range(args.repeat):
            for label, spec in trade_cases.items():
                median_case(spec, label, results)
        big_case = kline_case(workdir, "big", 10, big // 10, instruments)
        median_case(big_case, "10 x big", results)
    out["load_after"] = os.getloadavg()
    figures = {label: {"bars_per_s": statistics.median(r["bars"] / r["seconds"] for r in runs),
                       "rows_per_s": statistics.median((r["rows"] or 0) / r["seconds"] for r in runs),
                       "cpu_bars_per_s": statistics.median(r["bars"] / (r["cpu_main_s"] + r["cpu_writer_s"])
                                                           for r in runs),
                       "cpu_s": [[round(r["cpu_main_s"], 2), round(r["cpu_writer_s"], 2)] for r in runs],
                       "peak_rss_mb": max(r["peak_rss_mb"] for r in runs), "bars": runs[0]["bars"],
                       "fills": runs[0]["fills"], "runs": [round(r["seconds"], 2) for r in runs]}
               for label, runs in results.items()}
    base, cpu_base = figures["1 x 1M"]["bars_per_s"], figures["1 x 1M"]["cpu_bars_per_s"]
    rss_small, rss_big = figures["10 x 100k"]["peak_rss_mb"], figures["10 x big"]["peak_rss_mb"]
    checks = {
        "10 x 100k bars/s vs 1 x 1M (>= 0.90)": figures["10 x 100k"]["bars_per_s"] / base,
        "50 x 20k bars/s vs 1 x 1M (>= 0.90)": figures["50 x 20k"]["bars_per_s"] / base,
        "10 x 100k CPU bars/s vs 1 x 1M (>= 0.90)": figures["10 x 100k"]["cpu_bars_per_s"] / cpu_base,
        "50 x 20k CPU bars/s vs 1 x 1M (>= 0.90)": figures["50 x 20k"]["cpu_bars_per_s"] / cpu_base,
        "trades/s 10 symbols vs 1 (>= 0.80)": figures["trades 10 x 200k"]["rows_per_s"]
        / figures["trades 1 x 2M"]["rows_per_s"],
        "trades/s 10 symbols vs 1 of 200k (>= 0.80)": figures["trades 10 x 200k"]["rows_per_s"]
        / figures["trades 1 x 200k"]["rows_per_s"],
        "trades/s 10 symbols vs 1 of as many bars (>= 0.80)": figures["trades 10 x 200k"]["rows_per_s"]
        / figures["trades 1 x 2M 20d"]["rows_per_s"],
        f"peak RSS {big:,} vs {total:,} bars, 10 symbols (<= 1.20)": rss_big / rss_small,
    }
    limits = [0.90, 0.90, 0.90, 0.90, 0.80, 0.80, 0.80, 1.20]
    verdicts = {k: ("PASS" if (v >= lim if lim < 1 else v <= lim) else "MISS")
                for (k, v), lim in zip(checks.items(), limits, strict=True)}
    verdicts["peak RSS under 500 MB"] = "PASS" if max(rss_small, rss_big) < 500 else "MISS"
    out |= {"figures": figures, "ratios": checks, "verdicts": verdicts}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"papertape portfolio benchmark (sma_cross 10/30, ledger on; load {out['load_before'][0]:.2f} "
          f"before, {out['load_after'][0]:.2f} after)")
    for label, f in figures.items():
        rate = f"{f['rows_per_s']:>12,.0f} trades/s" if label.startswith("trades") else \
            f"{f['bars_per_s']:>12,.0f} bars/s  "
        print(f"  {label:<18} {f['bars']:>11,} bars {f['fills']:>8,} fills {rate} peak RSS "
              f"{f['peak_rss_mb']:>7,.0f} MB  runs {f['runs']} s, CPU [main, writer] {f['cpu_s']} s")
    for key, value in checks.items():
        print(f"  {key:<52} {value:6.3f}  {verdicts[key]}")
    rss_verdict = verdicts["peak RSS under 500 MB"]
    print(f"  {'peak RSS under 500 MB':<52} {max(rss_small, rss_big):6.0f}  {rss_verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
