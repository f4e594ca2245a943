"""The dashboard served inside a live session's event loop (``papertape live --dashboard``):
the same app over the session's ledger, plus ``/api/live`` streaming the session's events."""

from __future__ import annotations

import ipaddress
import secrets
import sys
from collections.abc import Callable
from typing import Any

from aiohttp import web

from engine.core.errors import UserError
from engine.dashboard.app import build_app
from engine.dashboard.run_api import LIVE_RUN
from engine.dashboard.live_channel import LiveChannel

DEFAULT_ADDRESS = "127.0.0.1:8050"


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``PORT``, on loopback) as a host and port; a one-line error otherwise."""
    host, _, port = text.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise UserError(f"--dashboard {text!r} is not HOST:PORT") from None
    if not 0 <= number <= 65535:
        raise UserError(f"--dashboard {text!r}: {number} is not a port (0-65535)")
    return host.strip("[]") or "127.0.0.1", number


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LiveDashboard:
    """The running app, its websocket channel and how to stop them."""

    def __init__(self, runner: web.AppRunner, channel: LiveChannel, url: str) -> None:
        self.runner, self.channel, self.url = runner, channel, url

    async def close(self) -> None:
        await self.channel.close()
        await self.runner.cleanup()


async def serve_live(address: str, ledger: str, session, facts: Callable[[], dict[str, Any]],
                     token: str = "") -> LiveDashboard:
    """Serve the dashboard of ``ledger`` on ``address`` in this loop, streaming ``session``'s bus;
    print its URL on stderr. A non-loopback bind gets a token (generated unless given)."""
    host, port = parse_address(address)
    token = token or ("" if is_loopback(host) else secrets.token_urlsafe(16))
    channel = LiveChannel(session.run_id, facts)
    channel.observe(session.bus)
    app = build_app(ledger, token)
    app[LIVE_RUN] = session.run_id
    app.router.add_get("/api/live", channel.handler)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise UserError(f"cannot serve the dashboard on {host}:{port}: {exc.strerror or exc}") from None
    query = f"?token={token}" if token else ""
    url = f"http://{host}:{runner.addresses[0][1]}/{query}"
    print(f"dashboard at {url} (live run {session.run_id} at /runs/{session.run_id})", file=sys.stderr,
          flush=True)
    return LiveDashboard(runner, channel, url)


def session_facts(session, feed) -> dict[str, Any]:
    """What the live panel shows besides the events: equity, cash, each symbol's position,
    the open orders, the feed's state, its reconnects and the bars recorded so far."""
    broker = session.broker
    return {
        "equity": broker.account.equity(), "cash": broker.account.cash,
        "positions": {s: broker.position_qty(s) for s in session.market.symbols},
        "open_orders": [{"order": o.id, "symbol": o.symbol, "side": o.side, "qty": o.qty, "type": o.type,
                         "price": o.price, "status": o.status} for o in broker.open_orders()],
        "feed": feed.state, "reconnects": feed.reconnects, "bars": session.recorder.bars,
    }
