"""Backtest benchmark: the bundled sma_cross on one-minute bars with the ledger on.

Prints five figures, each with its target and PASS/MISS:

1. bars per second end to end through ``run_backtest`` (kline CSV in, equity snapshot per
   bar written, metrics computed from the ledger at the end), with ``plot=false``: the work
   of earlier rounds and of the engines compared with them, which record no plotted series;
   the same run with sma_cross's two plotted means (its default) follows, as a ratio;
2. ledger write rate for fills alone (``Ledger.add`` + flush, rows per second, once the
   writer process is up);
3. the cost of one order's whole life (request, risk checks, fill on the next trade,
   position and ledger update) through a real Bus + SimulatedBroker + LedgerRecorder,
   as the mean over many market orders;
4. ``metrics_for_run`` on the big run's ledger;
5. peak RSS of this process.

A reference loop timed first shows how fast the CPU is at the moment, and each timed
figure shows the share of CPU time the host stole from this virtual machine while
it ran (``/proc/stat``): on a shared host, a figure measured under heavy steal is low.

Usage: ``python bench/backtest.py [--bars N] [--quick] [--json]``. The data is a seeded
random walk written to a temporary directory; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from engine.analysis.metrics import metrics_for_run
from engine.broker.from_config import broker_from_config
from engine.core.bus import Bus
from engine.core.clock import ReplayClock
from engine.core.config import AccountSection, BrokerSection, load_config
from engine.core.events import OrderRequest, Trades
from engine.ledger.reader import LedgerReader
from engine.ledger.recorder import LedgerRecorder
from engine.ledger.schema import COLUMNS
from engine.ledger.store import Ledger
from engine.run.backtest import run_backtest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from steal import StealMeter, reference_loop_s  # noqa: E402

T0_MS = 1_577_836_800_000  # 2020-01-01 00:00 UTC: 10M one-minute bars end before today
TARGETS = {
    "bars_per_s": (">=", 100_000),
    "ledger_fill_rows_per_s": (">=", 200_000),
    "order_life_us": ("<", 100.0),
    "metrics_s": ("<", 2.0),
    "peak_rss_mb": ("<", 500.0),
}
UNITS = {"bars_per_s": "bars/s", "ledger_fill_rows_per_s": "rows/s", "order_life_us": "us",
         "metrics_s": "s", "peak_rss_mb": "MB"}


def write_klines(path: Path, n: int, seed: int = 42, chunk: int = 100_000) -> None:
    """``n`` one-minute bars of a seeded random walk in the kline CSV format, written in
    chunks so that making the data does not set the benchmark's peak memory."""
    rng = np.random.default_rng(seed)
    last = 30_000.0
    with open(path, "w", newline="") as fh:
        for lo in range(0, n, chunk):
            m = min(chunk, n - lo)
            close = np.round(last * np.exp(np.cumsum(rng.normal(0.0, 0.0008, m))), 1)
            opens = np.concatenate(([last], close[:-1]))
            last = float(close[-1])
            wiggle = np.round(rng.uniform(0.0, 15.0, (2, m)), 1)
            volume = np.round(rng.uniform(1.0, 30.0, m), 3)
            pd.DataFrame({
                "open_time": T0_MS + (lo + np.arange(m, dtype=np.int64)) * 60_000,
                "open": opens, "high": np.round(np.maximum(opens, close) + wiggle[0], 1),
                "low": np.round(np.minimum(opens, close) - wiggle[1], 1), "close": close,
                "volume": volume, "turnover": np.round(volume * close, 2),
                "trades": rng.integers(1, 1_000, m),
            }).to_csv(fh, index=False, header=lo == 0, float_format="%.10g")


def bench_backtest(workdir: Path, bars: int) -> tuple[dict, Path, int]:
    data = workdir / "klines.csv"
    t = time.perf_counter()
    write_klines(data, bars)
    generate_s = time.perf_counter() - t
    elapsed, result, ledger = [], None, workdir / "backtest.db"
    # the figure's run first (it parses the CSV into the cache, as before); then, both on the
    # cache, the run with the plotted means and one without again: their ratio
    for k, plot in enumerate(("false", "true", "false")):
        path = ledger if k == 0 else workdir / f"again-{k}.db"
        cfg = load_config(None, [f"ledger.path={path}", "strategy.params.fast=10", "strategy.params.slow=30",
                                 "strategy.params.qty=0.01", f"strategy.params.plot={plot}"])
        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, data=(str(data),)))
        t = time.perf_counter()
        run = run_backtest(cfg, progress=False)
        elapsed.append(time.perf_counter() - t)
        result = result or run
    return ({"bars": result.bars, "fills": result.fills, "backtest_s": elapsed[0],
             "bars_per_s": result.bars / elapsed[0], "plotted_s": elapsed[1],
             "plotted_vs_unplotted": elapsed[1] / elapsed[2], "generate_s": generate_s},
            ledger, result.run_id)


def bench_metrics(ledger: Path, run_id: int) -> dict:
    reader = LedgerReader(ledger)
    try:
        t = time.perf_counter()
        metrics = metrics_for_run(reader, run_id)
        elapsed = time.perf_counter() - t
    finally:
        reader.close()
    return {"metrics_s": elapsed, "metrics_bars": metrics["bars"]}


def bench_ledger(workdir: Path, rows: int) -> dict:
    ledger = Ledger(workdir / "fills.db")
    run_id = ledger.start_run(kind="bench", strategy="-", params="{}", symbol="BTCUSDT",
                              category="linear", interval="1m", data_start=0, data_end=0,
                              data_files="[]", seed=0, initial_cash=10_000.0, config="{}")
    assert len(COLUMNS["fills"]) == 16
    ids = [f"o{i}" for i in range(1_000)]
    add = ledger.add
    ledger.wait_written()  # the writer process is up: its start (0.5-0.8 s of imports) is not a write
    t = time.perf_counter()
    # fills arrive in time order, as in a run: the (run_id, ts_event) index grows at its end
    for i in range(rows):
        ts = T0_MS * 1_000_000 + i * 1_000_000
        add("fills", (run_id, ids[i % 1_000], "bench", "BTCUSDT", 1 if i % 2 else -1,
                      30_000.0 + i % 100, 0.001, 0.0165, "taker", 0.0, 0.001 * (i % 2), 30_000.0,
                      10_000.0, 10_000.0, ts, ts))
    ledger.flush(wait=True)
    elapsed = time.perf_counter() - t
    ledger.close()
    return {"ledger_rows": rows, "ledger_s": elapsed, "ledger_fill_rows_per_s": rows / elapsed}


def bench_order_life(workdir: Path, orders: int) -> dict:
    """Market orders through the real bus, broker and recorder: each is sent, accepted,
    filled by the next trade and recorded (order, updates, fill row)."""
    t0 = T0_MS * 1_000_000
    clock = ReplayClock(t0)
    bus = Bus(clock)
    broker = broker_from_config(bus, BrokerSection(), AccountSection(cash=1e9), category="linear")
    ledger = Ledger(workdir / "orders.db")
    run_id = ledger.start_run(kind="bench", strategy="-", params="{}", symbol="BTCUSDT",
                              category="linear", interval="1m", data_start=t0, data_end=t0,
                              data_files="[]", seed=0, initial_cash=1e9, config="{}")
    LedgerRecorder(bus, ledger, run_id, broker, "BTCUSDT", "1m")
    one = np.ones(1)
    side = np.ones(1, dtype=np.int8)
    process = bus.process
    process(Trades("BTCUSDT", np.array([t0]), np.array([30_000.0]), one, side, None, t0))
    requests = [OrderRequest(f"o{i}", "BTCUSDT", 1 if i % 2 == 0 else -1, 0.01, "market", None, None,
                             "GTC", False, "bench", t0 + (2 * i + 1) * 1000, t0 + (2 * i + 1) * 1000)
                for i in range(orders)]
    trades = [Trades("BTCUSDT", np.array([t0 + (2 * i + 2) * 1000]), np.array([30_000.0 + i % 7]),
                     one, side, None, t0 + (2 * i + 2) * 1000) for i in range(orders)]
    gc.collect()
    t = time.perf_counter()
    for request, trade in zip(requests, trades, strict=True):
        process(request)
        process(trade)
    ledger.flush(wait=True)
    elapsed = time.perf_counter() - t
    ledger.close()
    assert broker.fill_count == orders, broker.fill_count
    return {"orders": orders, "order_life_us": elapsed / orders * 1e6}


def verdict(key: str, value: float) -> str:
    op, target = TARGETS[key]
    ok = value >= target if op == ">=" else value < target
    return "PASS" if ok else "MISS"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=1_000_000, help="one-minute bars (default 1,000,000)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 100,000 bars, 100,000 ledger rows, 20,000 orders")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    bars = 100_000 if args.quick else args.bars
    rows = 100_000 if args.quick else 1_000_000
    orders = 20_000 if args.quick else 100_000
    out: dict = {"bars_requested": bars, "quick": args.quick, "python": sys.version.split()[0],
                 "interpreter": getattr(sys, "_base_executable", sys.executable)}
    out["reference_loop_s"] = reference_loop_s()
    steal, meter = {}, StealMeter()
    with tempfile.TemporaryDirectory(prefix="papertape-bench-") as tmp:
        workdir = Path(tmp)
        figures, ledger, run_id = bench_backtest(workdir, bars)
        out |= figures
        steal["bars_per_s"] = meter.share()
        for key, section in (("metrics_s", lambda: bench_metrics(ledger, run_id)),
                             ("ledger_fill_rows_per_s", lambda: bench_ledger(workdir, rows)),
                             ("order_life_us", lambda: bench_order_life(workdir, orders))):
            meter.start()
            out |= section()
            steal[key] = meter.share()
    out["steal"] = steal
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["verdicts"] = {key: verdict(key, out[key]) for key in TARGETS}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"papertape backtest benchmark: {out['bars']:,} one-minute bars, sma_cross(10, 30), "
          f"ledger on ({out['fills']:,} fills); data generated in {out['generate_s']:.1f} s\n"
          f"  Python {out['python']} ({out['interpreter']}); CPU reference: 10 million Python "
          f"additions in {out['reference_loop_s']:.2f} s (lower is faster: the CPU, and the "
          "interpreter's build)")
    labels = {
        "bars_per_s": f"run_backtest end to end ({out['backtest_s']:.2f} s)",
        "ledger_fill_rows_per_s": f"ledger fill rows ({out['ledger_rows']:,} rows, {out['ledger_s']:.2f} s)",
        "order_life_us": f"one order's life (mean of {out['orders']:,} market orders)",
        "metrics_s": f"metrics_for_run on {out['metrics_bars']:,} bars",
        "peak_rss_mb": "peak RSS",
    }
    print(f"  (with sma_cross's two plotted means, its default: {out['plotted_s']:.2f} s, "
          f"{out['plotted_vs_unplotted']:.2f}x the same run unplotted, both on the cache)")
    for key, label in labels.items():
        op, target = TARGETS[key]
        value = out[key]
        shown = f"{value:,.0f}" if value >= 1000 else f"{value:,.2f}"
        stolen = f"  (CPU steal {steal[key]:.0%})" if key in steal else ""
        print(f"  {label:<52} {shown:>12} {UNITS[key]:<6} target {op} {target:,} {UNITS[key]:<6} "
              f"{out['verdicts'][key]}{stolen}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
