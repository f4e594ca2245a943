"""Serving the dashboard app on an address inside a running event loop: the token rule (a
bind beyond loopback needs one; generated when not given) and the URL on stderr; used by
``papertape dashboard`` and, with a live channel, by ``papertape live --dashboard``."""

from __future__ import annotations

import ipaddress
import secrets
import sys
from dataclasses import dataclass

from aiohttp import web

from engine.core.errors import UserError
from engine.dashboard.app import build_app
from engine.dashboard.live_channel import LiveChannel

DEFAULT_BIND = "127.0.0.1:8050"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Bind:
    """Where to serve and the token a browser must give (empty: none)."""

    host: str
    port: int
    token: str = ""

    @classmethod
    def of(cls, host: str, port: int, token: str = "") -> Bind:
        """Checked, with a token made up when the address is not loopback and none is given."""
        if not 0 <= port <= 65535:
            raise UserError(f"port {port} is not a port (0-65535)")
        return cls(host, port, token or ("" if is_loopback(host) else secrets.token_urlsafe(16)))

    @classmethod
    def parse(cls, text: str, token: str = "") -> Bind:
        """``HOST:PORT`` (``--dashboard 0.0.0.0:8050``), ``:PORT`` or ``PORT`` on loopback."""
        host, _, port = text.rpartition(":") if ":" in text else ("", "", text)
        try:
            number = int(port)
        except ValueError:
            raise UserError(f"--dashboard {text!r} is not HOST:PORT (e.g. {DEFAULT_BIND})") from None
        return cls.of(host.strip("[]") or "127.0.0.1", number, token)


class Served:
    """An app served until :meth:`stop`; ``channel`` is set for a live session's dashboard."""

    def __init__(self, runner: web.AppRunner, channel: LiveChannel | None) -> None:
        self.runner, self.channel = runner, channel

    async def stop(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        await self.runner.cleanup()


async def serve(ledger: str, bind: Bind, channel: LiveChannel | None = None,
                handle_signals: bool = False) -> Served:
    """Start serving the dashboard over ``ledger`` and print its URL as the first stderr line;
    an address that cannot be bound is one line (exit 2)."""
    app = build_app(ledger, bind.token, live=channel)
    runner = web.AppRunner(app, handle_signals=handle_signals)
    await runner.setup()
    site = web.TCPSite(runner, bind.host, bind.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise UserError(f"cannot serve on {bind.host}:{bind.port}: {exc.strerror or exc}") from None
    port = runner.addresses[0][1]
    query = f"?token={bind.token}" if bind.token else ""
    print(f"dashboard at http://{bind.host}:{port}/{query}", file=sys.stderr, flush=True)
    return Served(runner, channel)

