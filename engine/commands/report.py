"""``papertape report``: a run's metrics from the ledger and a self-contained HTML report."""

from __future__ import annotations

import argparse
import json

from engine.commands.run_options import default_ledger


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="metrics and an HTML report of a run",
                              description="Print a run's metrics (computed from the ledger) and write a "
                              "self-contained HTML report with interactive charts (zoom, hover; the chart "
                              "library is inlined, nothing is fetched): equity, drawdown, PnL by symbol, "
                              "each symbol's candles with its fills, daily returns, fills table.")
    p.add_argument("--ledger", metavar="PATH", help="ledger (default: the [ledger] path of ./config.toml, "
                   "papertape.db; where backtest and live record)")
    p.add_argument("--config", metavar="FILE", help="config file whose [ledger] path is the default")
    p.add_argument("--run", type=int, help="run id (default: the newest run)")
    p.add_argument("--sweep", type=int, metavar="ID", help="report a sweep instead: its trials, a heatmap "
                   "of the objective over two parameters, in-sample against out-of-sample, DSR and PBO")
    p.add_argument("--heatmap", metavar="X,Y", help="the two parameters of the sweep heatmap "
                   "(default: the first two swept)")
    p.add_argument("--out", metavar="FILE.html", help="HTML file (default report-run<ID>.html, "
                   "report-sweep<ID>.html)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if args.sweep is not None:
        return sweep_report(args)
    from engine.analysis.by_symbol import by_symbol_for_run
    from engine.analysis.html_report import write_html_report
    from engine.analysis.metrics import forecasts_for_run, metrics_for_run
    from engine.analysis.report import format_by_symbol, format_metrics
    from engine.core.paths import check_writable
    from engine.ledger.reader import LedgerReader

    if args.out:
        check_writable(args.out, "--out")
    args.ledger = default_ledger(args)
    reader = LedgerReader(args.ledger)
    try:
        run = reader.run(args.run)
        metrics = metrics_for_run(reader, run["id"])
        forecasts = forecasts_for_run(reader, run["id"])
        by_symbol = by_symbol_for_run(reader, run["id"])
        out = args.out or f"report-run{run['id']}.html"
        write_html_report(reader, run["id"], metrics, out)
        gaps = feed_gaps(reader, run["id"])
    finally:
        reader.close()
    if args.json:
        print(json.dumps({"run_id": run["id"], "ledger": args.ledger, "status": run["status"],
                          "report": str(out), "metrics": metrics, "forecasts": forecasts,
                          "feed_gaps": gaps, "symbols": run["symbol"].split(","), "by_symbol": by_symbol}))
    else:
        print(format_metrics(metrics, f"run {run['id']} ({run['status']}) {run['strategy']} "
                                      f"{run['symbol']} {run['interval']}"))
        if len(by_symbol) > 1:
            print(format_by_symbol(by_symbol))
        if forecasts:
            print(f"  forecasts: {forecasts['forecasts']:,}, {forecasts['dropped']:,} dropped as late; from "
                  f"bar close to forecast median {forecasts['latency_ms_median']:.0f} ms, p99 "
                  f"{forecasts['latency_ms_p99']:.0f} ms")
        for gap in gaps:
            if gap["status"] != "disconnected":  # each gap once: how it ended
                print(f"  feed gap {_iso(gap['from'])} .. {_iso(gap['to'])} (run {gap['run_id']}) "
                      f"{gap['status']}: {gap['detail']}")
        print(f"report written to {out}")
    return 0


def feed_gaps(reader, run_id: int) -> list[dict]:
    """The feed gaps of a run and the runs it resumed (drops, stalls, a resume's downtime),
    oldest first: what the bars may be missing."""
    rows = reader.gaps(reader.chain(run_id))
    return [{"run_id": int(g.run_id), "symbol": g.symbol, "status": g.status, "from": int(g.gap_from),
             "to": int(g.gap_to), "detail": g.detail} for g in rows.itertuples()]


def _iso(ns: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds") if ns else "?"


def sweep_report(args: argparse.Namespace) -> int:
    """``report --sweep ID``: the sweep's page and its summary."""
    from engine.analysis.sweep_report import format_sweep, write_sweep_html
    from engine.analysis.sweep_stats import valued
    from engine.core.typed import ConfigError
    from engine.ledger.reader import LedgerReader
    from engine.ledger.sweeps import load_sweep, load_trials
    from engine.run.sweep_phases import SweepResult

    reader = LedgerReader(args.ledger)
    try:
        sweep = load_sweep(reader.engine, args.sweep, args.ledger)
        trials = valued(load_trials(reader.engine, args.sweep), sweep["objective"])
    finally:
        reader.close()
    x = y = None
    if args.heatmap:
        x, _, y = args.heatmap.partition(",")
        swept = {k for t in trials for k in t["params"]}
        for name in (x, y):
            if name not in swept:
                raise ConfigError(f"--heatmap {args.heatmap}: {name!r} is not a swept parameter "
                                  f"({', '.join(sorted(swept))})")
    out = write_sweep_html(sweep, trials, x or None, y or None, args.out or f"report-sweep{args.sweep}.html")
    summary = sweep["summary"] or {}
    result = SweepResult(args.sweep, args.ledger, sweep["status"], sweep["objective"], trials,
                         summary.get("best"), summary.get("dsr"), summary.get("pbo"),
                         summary.get("executor", ""))
    if args.json:
        print(json.dumps(result.to_json() | {"report": str(out)}, default=str))
    else:
        print(format_sweep(result))
        print(f"report written to {out}")
    return 0
