"""``papertape dashboard``: serve the read-only web view of a ledger until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import secrets
import sys

from engine.commands.run_options import default_ledger
from engine.core.errors import UserError


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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    import asyncio

    from aiohttp import web

    from engine.dashboard.app import build_app

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port} is not a port (0-65535)")
    token = args.token or ("" if _is_loopback(args.host) else secrets.token_urlsafe(16))
    app = build_app(default_ledger(args), token)

    async def serve() -> None:
        runner = web.AppRunner(app, handle_signals=True)
        await runner.setup()
        site = web.TCPSite(runner, args.host, args.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise UserError(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}") from None
        port = runner.addresses[0][1]
        query = f"?token={token}" if token else ""
        print(f"dashboard at http://{args.host}:{port}/{query}", file=sys.stderr, flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt, web.GracefulExit):  # SIGINT/SIGTERM: a clean stop
        asyncio.run(serve())
    return 0
