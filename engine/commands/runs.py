"""``papertape runs``: the runs a ledger holds."""

from __future__ import annotations

import argparse

from engine.commands.run_options import default_ledger


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("runs", help="list the runs in a ledger")
    p.add_argument("--ledger", metavar="PATH", help="ledger (default: the [ledger] path of ./config.toml, "
                   "papertape.db; where backtest and live record)")
    p.add_argument("--config", metavar="FILE", help="config file whose [ledger] path is the default")
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from engine.analysis.report import format_runs
    from engine.ledger.reader import LedgerReader

    args.ledger = default_ledger(args)
    reader = LedgerReader(args.ledger)
    try:
        runs = reader.runs()
    finally:
        reader.close()
    if args.json:
        print(runs.drop(columns=["summary"]).to_json(orient="records"))
    else:
        print(format_runs(runs))
    return 0
