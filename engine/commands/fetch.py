"""``papertape fetch``: download Bybit history into a local data directory.

- ``--trades``: one public trade archive per UTC day (public.bybit.com), saved under the
  archive's own name (``BTCUSDT2025-06-01.csv.gz``; spot ``BTCUSDT_2025-06-01.csv.gz``) so
  ``--data 'DIR/BTCUSDT2025-06-*.csv.gz'`` replays it. Downloads go to ``NAME.part`` and
  resume with HTTP Range requests; a file is kept only once it is verified (gzip intact,
  trade-archive header, rows parse, right symbol), which also fills the replay cache. A file
  already present is verified and skipped, or fetched again when corrupt. A missing day
  (404) is reported and the others still download.
- ``--klines INTERVAL``: closed klines over REST into one CSV in the kline format that
  ``papertape bars`` writes, ``{SYMBOL}-{interval}-{start}-{end}.csv``.
- ``--instruments``: the category's instruments-info into ``instruments.json`` (the format
  of ``engine/data/instruments.json``; entries of other categories already there are kept),
  for ``--set broker.instruments=FILE``.

``--start`` is inclusive and ``--end`` exclusive, as everywhere in papertape: ``--start
2025-06-01 --end 2025-06-03`` covers two days.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from engine.bybit.endpoints import ARCHIVE_URL, CATEGORIES, MAINNET_REST
from engine.core.config import parse_time
from engine.core.typed import ConfigError

EXAMPLES = """\
examples:
  papertape fetch --symbol BTCUSDT --start 2025-06-01 --end 2025-06-08 --out data --trades
  papertape fetch --symbol BTCUSDT --start 2025-01-01 --end 2025-07-01 --out data --klines 1h
  papertape fetch --category spot --out data --instruments
exit status: 0 when everything asked for is there, 1 when a day is missing or failed (the
others are kept), 2 for a mistake in the arguments.
"""


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``fetch`` verb to a ``papertape`` subparsers object."""
    p = subparsers.add_parser("fetch", help="download trade archives, klines or instruments from Bybit",
                              description=__doc__.split("\n\n", 1)[1].replace("``", "'"), epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--symbol", help="symbol, e.g. BTCUSDT")
    p.add_argument("--category", choices=CATEGORIES, default="linear", help="market (default linear)")
    p.add_argument("--start", help="first day/time, YYYY-MM-DD[THH:MM] UTC or epoch ms (inclusive)")
    p.add_argument("--end", help="end day/time (exclusive)")
    p.add_argument("--out", default="data", metavar="DIR", help="data directory (default ./data)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--klines", metavar="INTERVAL",
                      help="klines over REST: 1m 3m 5m 15m 30m 1h 2h 4h 6h 12h 1d 1w")
    mode.add_argument("--trades", action="store_true", help="daily public trade archives")
    p.add_argument("--instruments", action="store_true", help="save the category's instruments-info too")
    p.add_argument("--rest-url", default=MAINNET_REST, metavar="URL",
                   help=f"REST base URL (default {MAINNET_REST})")
    p.add_argument("--archive-url", default=ARCHIVE_URL, metavar="URL",
                   help=f"archive base URL (default {ARCHIVE_URL})")
    p.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


def _plan(args: argparse.Namespace) -> tuple[str, int | None, int | None]:
    """The symbol and time range after checking the arguments; raises ConfigError."""
    from engine.bars.aggregator import parse_interval
    from engine.core.symbols import check_symbol
    from engine.feeds.live.rest import bybit_interval

    if not (args.klines or args.trades or args.instruments):
        raise ConfigError("nothing to fetch: give --trades, --klines INTERVAL and/or --instruments")
    symbol = (args.symbol or "").upper()
    start_ns, end_ns = parse_time(args.start, "--start"), parse_time(args.end, "--end")
    if args.klines or args.trades:
        if not symbol or start_ns is None or end_ns is None:
            raise ConfigError("--trades and --klines need --symbol, --start and --end")
        check_symbol(symbol)  # it names files under --out
        if start_ns >= end_ns:
            raise ConfigError(f"--start {args.start} is not before --end {args.end}")
    if args.klines:
        try:
            bybit_interval(args.klines)
            parse_interval(args.klines)
        except ValueError as exc:
            raise ConfigError(f"--klines: {exc}") from None
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ConfigError(f"--out {args.out}: not a directory")
    return symbol, start_ns, end_ns


def run(args: argparse.Namespace) -> int:
    """Fetch what the arguments ask for; 0 all there, 1 something missing, 2 bad arguments."""
    import asyncio

    import aiohttp

    from engine.feeds.live.rest import BybitAPIError, BybitError

    try:
        symbol, start_ns, end_ns = _plan(args)
    except ConfigError as exc:
        print(f"papertape fetch: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        summary = asyncio.run(_fetch(args, symbol, start_ns, end_ns, out))
    except BybitAPIError as exc:
        print(f"papertape fetch: error: {exc}", file=sys.stderr)
        return 2
    except (BybitError, aiohttp.ClientError) as exc:
        print(f"papertape fetch: failed: {exc}", file=sys.stderr)
        return 1
    _report(summary, args.json)
    return 0 if summary["ok"] else 1


async def _fetch(args: argparse.Namespace, symbol: str, start_ns: int | None, end_ns: int | None,
                 out: Path) -> dict:
    from engine.feeds.history.fetch import days_between, fetch_instruments, fetch_klines, fetch_trades
    from engine.feeds.live.rest import BybitRest

    summary: dict = {"out": str(out), "symbol": symbol, "category": args.category,
                     "trades": None, "klines": None, "instruments": None}
    if args.trades:
        days = await fetch_trades(symbol, args.category, days_between(start_ns, end_ns), out,
                                  args.archive_url, progress=not args.no_progress)
        summary["trades"] = [asdict(d) for d in days]
    if args.klines or args.instruments:
        async with BybitRest(args.rest_url) as rest:
            if args.klines:
                summary["klines"] = await fetch_klines(rest, symbol, args.category, args.klines,
                                                       start_ns, end_ns, out)
            if args.instruments:
                summary["instruments"] = await fetch_instruments(rest, args.category, out)
    summary["ok"] = (all(d["status"] in ("downloaded", "present") for d in summary["trades"] or [])
                     and (summary["klines"] is None or summary["klines"]["status"] != "empty"))
    return summary


def _report(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary))
        return
    for day in summary["trades"] or []:
        name = Path(day["path"]).name
        if day["status"] in ("downloaded", "present"):
            size = f"{day['bytes']:,} bytes, {day['rows']:,} trades"
            print(f"{day['day']}  {day['status']:<10} {name} ({size})")
        else:
            print(f"{day['day']}  {day['status'].upper():<10} {day['detail']}")
    if summary["klines"]:
        k = summary["klines"]
        gaps = f", {k['gaps']} gap(s)" if k["gaps"] else ""
        print(f"klines     {k['status']:<10} {k['file']} ({k['rows']:,} bars{gaps})")
    if summary["instruments"]:
        i = summary["instruments"]
        print(f"instruments {i['status']:<9} {i['file']} ({i['count']} {summary['category']} instruments)")
