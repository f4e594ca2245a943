"""``papertape backtest``: replay history through a strategy, the simulated broker and the
ledger, then print the metrics."""

from __future__ import annotations

import argparse
import sys

from engine.commands.run_options import add_run_args, print_result, resolve_config


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("backtest", help="replay history through a strategy and the simulated broker",
                              description="Replay trade archives, klines or a recording through the "
                              "strategy, the simulated broker and the ledger, then print the metrics.")
    add_run_args(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from engine.run.backtest import RunFailed, run_backtest

    cfg = resolve_config(args)
    try:
        result = run_backtest(cfg, progress=not args.no_progress)
    except RunFailed as exc:
        print_result(args, exc.result)
        print(f"papertape: run {exc.result.run_id} failed: {exc}", file=sys.stderr)
        return 1
    print_result(args, result)
    return 0
