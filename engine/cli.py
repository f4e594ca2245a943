"""The ``papertape`` command line: one verb per job, ``--json`` for machines.

Results go to stdout; progress bars and logs go to stderr. Problems a user can fix (bad
config, missing file, unknown strategy or symbol) end the command with one line naming the
problem and exit code 2; a run that fails on an error exits with 1. Each verb lives in its
own module under :mod:`engine.commands` (more come from ``papertape.commands`` entry points)
and imports what it needs only when it runs, so ``--help`` starts fast.

May import: engine.core, engine.commands.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import typing
from importlib.metadata import entry_points

from engine import __version__
from engine.core import plugins, progress
from engine.core.errors import UserError

log = logging.getLogger("papertape")

VERBS = ("backtest", "bars", "live", "runs", "report", "fetch", "sweep", "dashboard")

EXAMPLES = """\
examples:
  papertape backtest                          the bundled sample with sma_cross
  papertape backtest --data 'data/BTCUSDT2025-*.csv.gz' --param fast=20 --param slow=60
  papertape backtest --data klines-1h.csv --set broker.slippage_bps=2 --json
  papertape bars --data BTCUSDT2025-06-01.csv.gz --interval 5m --out bars.csv
  papertape runs                              runs recorded in ./papertape.db
  papertape report --run 3 --out report.html
  papertape sweep --grid fast=5,10,20 --grid slow=20:60:10 --workers 2
"""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit 2), as every other
    problem a user can fix is; ``--help`` still prints the whole usage."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser with every verb: the engine's own, then the ``papertape.commands`` plugins
    (which may add flags to an engine verb, as walk-forward does to ``backtest``)."""
    parser = OneLineParser(
        prog="papertape",
        description="Event-driven paper trading and backtesting for Bybit.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"papertape {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for verb in VERBS:
        importlib.import_module(f"engine.commands.{verb}").register(sub)
    for ep in sorted(entry_points(group=plugins.COMMANDS), key=lambda e: e.name):
        try:
            ep.load()(sub)
        except ImportError as exc:
            log.debug("command %s unavailable: %s", ep.name, exc)
    return parser


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else logging.DEBUG if verbose > 1 else \
        logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    progress.enabled = not getattr(args, "no_progress", False)
    try:
        return args.func(args)
    except (UserError, FileNotFoundError) as exc:
        print(f"papertape: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("papertape: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (| head): stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
