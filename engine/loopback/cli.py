"""``papertape serve-exchange``: run the loopback exchange until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import secrets
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from engine.core.config import parse_time
from engine.core.typed import ConfigError
from engine.loopback.faults import SCHEDULE_HELP, FaultError, parse_schedule

if TYPE_CHECKING:
    from engine.loopback.server import ExchangeOptions, ExchangeServer

DESCRIPTION = """\
Serve Bybit's public market data on a local port, replaying trade archives on the
present-day clock: websockets at /v5/public/{spot,linear,inverse} (publicTrade and kline
topics, Bybit's acks and pongs), REST /v5/market/{kline,recent-trade,instruments-info},
archive downloads /trading/... and /spot/... (with --archive-dir), and the controls
POST /_control/fault and GET /_control/state.

Time mapping: a trade at historical time T_hist is served at
  T = wall_start_ms + (T_hist - hist_start) / speed      (integer ms)
where hist_start is --start-at (default: the first trade) and wall_start_ms is
--wall-start-ms (default: when the server starts). To restart a server without a jump,
give it the same --start-at and --wall-start-ms: it continues where the wall clock says
the replay should be, and its REST endpoints hold the trades served before the restart."""

EXAMPLES = """\
examples:
  papertape serve-exchange --data engine/data/sample/BTCUSDT2025-06-0*.csv.gz --speed 60
  papertape serve-exchange --data 'data/*.csv.gz' --port 8765 --faults drop@30s,stall@60s+5s
  papertape serve-exchange --data 'data/*.csv.gz' --archive-dir data --wall-start-ms 1767225600000
"""


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"speed must be positive and finite, got {text}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is not a port (0-65535)")
    return value


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``serve-exchange`` verb to a ``papertape`` subparsers object."""
    p = subparsers.add_parser(
        "serve-exchange", help="a Bybit-compatible exchange on a local port, replaying trade archives",
        description=DESCRIPTION, epilog=f"{SCHEDULE_HELP}\n\n{EXAMPLES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", nargs="+", metavar="PATH", default=[],
                   help="trade archives (.csv/.csv.gz, Bybit derivatives or spot layout) or globs")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, "
                   "loopback only; any other address requires a control token)")
    p.add_argument("--token", help="require `Authorization: Bearer TOKEN` on /_control/*; with a --host "
                   "beyond loopback one is generated and printed when not given")
    p.add_argument("--port", type=_port, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--speed", type=_speed, default=1.0, metavar="X",
                   help="replay X times faster than real time (default 1)")
    p.add_argument("--start-at", metavar="TIME",
                   help="history time to start from, YYYY-MM-DD[THH:MM] UTC or epoch ms "
                        "(default: the first trade)")
    p.add_argument("--wall-start-ms", type=int, metavar="MS",
                   help="served time (epoch ms) of --start-at (default: now); reuse it across restarts")
    p.add_argument("--archive-dir", metavar="DIR",
                   help="serve the .csv.gz files in DIR at /trading/SYMBOL/... and /spot/SYMBOL/...")
    p.add_argument("--faults", default="", metavar="SCHEDULE", help="faults to inject, see below")
    p.add_argument("--instruments", metavar="FILE",
                   help="instruments JSON for instruments-info "
                        "(default: the bundled engine/data/instruments.json)")
    p.set_defaults(func=run)
    return p


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _options(args: argparse.Namespace) -> ExchangeOptions:
    from engine.feeds.history.sources import DataError, expand
    from engine.loopback.server import ExchangeOptions

    if not args.data and not args.archive_dir:
        raise DataError("nothing to serve: give --data FILE... and/or --archive-dir DIR")
    if args.archive_dir and not Path(args.archive_dir).is_dir():
        raise DataError(f"--archive-dir {args.archive_dir}: not a directory")
    token = args.token
    if token is None and not is_loopback(args.host):
        token = secrets.token_urlsafe(18)
        print(f"papertape serve-exchange: {args.host} is not a loopback address; the controls need "
              f"Authorization: Bearer {token}", file=sys.stderr, flush=True)
    return ExchangeOptions(
        control_token=token,
        data=tuple(expand(args.data)) if args.data else (),
        speed=args.speed,
        start_at_ns=parse_time(args.start_at, "--start-at"),
        wall_start_ms=args.wall_start_ms,
        archive_dir=Path(args.archive_dir) if args.archive_dir else None,
        faults=tuple(parse_schedule(args.faults)),
        instruments=Path(args.instruments) if args.instruments else None,
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT; 2 for a problem the user can fix."""
    from engine.feeds.history.archive import ArchiveError
    from engine.feeds.history.sources import DataError
    from engine.loopback.server import ExchangeServer
    from engine.loopback.tape import TapeError

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        server = ExchangeServer(_options(args))
    except (DataError, ConfigError, FaultError, ArchiveError, TapeError, ValueError) as exc:
        print(f"papertape serve-exchange: error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_serve(server, args.host, args.port))


async def _serve(server: ExchangeServer, host: str, port: int) -> int:
    try:
        url = await server.start(host, port)
    except OSError as exc:
        print(f"papertape serve-exchange: error: cannot listen on {host}:{port}: {exc.strerror}",
              file=sys.stderr)
        return 2
    print(f"papertape serve-exchange: listening on {url} ({_summary(server)})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
    print("papertape serve-exchange: stopped", file=sys.stderr)
    return 0


def _summary(server: ExchangeServer) -> str:
    tm = server.timemap
    hist = datetime.fromtimestamp(tm.hist_start_ns / 1e9, UTC).isoformat(timespec="seconds")
    tapes = ", ".join(f"{c} {s} {t.rows:,} trades" for (c, s), t in server.tapes.items()) or "no trades"
    return f"{tapes}; history from {hist} served from {tm.wall_start_ms} ms at {server.options.speed:g}x"
