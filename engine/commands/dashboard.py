"""``papertape dashboard``: serve the read-only web view of a ledger until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import contextlib

from engine.commands.run_options import default_ledger


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("dashboard", help="serve a web view of a ledger's runs")
    p.add_argument("--ledger", metavar="PATH", help="ledger (default: the [ledger] path of ./config.toml, "
                   "papertape.db)")
    p.add_argument("--config", metavar="FILE", help="config file whose [ledger] path is the default")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; any other "
                   "address needs a token)")
    p.add_argument("--port", type=int, default=8050, help="port (default 8050; 0 picks a free one)")
    p.add_argument("--token", default="", help="token a browser must pass (?token=); generated and "
                   "printed when binding beyond loopback without one")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import asyncio

    from aiohttp import web

    from engine.dashboard.serve import Bind, serve

    bind = Bind.of(args.host, args.port, args.token)

    async def serve_until_stopped() -> None:
        served = await serve(default_ledger(args), bind, handle_signals=True)
        try:
            await asyncio.Event().wait()
        finally:
            await served.stop()

    with contextlib.suppress(KeyboardInterrupt, web.GracefulExit):  # SIGINT/SIGTERM: a clean stop
        asyncio.run(serve_until_stopped())
    return 0
