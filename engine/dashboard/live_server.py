"""``papertape live --dashboard``: the dashboard app over the session's ledger, served in the
session's event loop, with ``/api/live`` streaming the session through a :class:`LiveChannel`."""

from __future__ import annotations

from typing import Any

from engine.dashboard.live_channel import LiveChannel
from engine.dashboard.serve import Bind, Served, serve


def parse_address(text: str, token: str = "") -> Bind:
    """``HOST:PORT`` checked before the session starts (a bad one is one line, exit 2)."""
    return Bind.parse(text, token)


async def serve_live(address: str, ledger: str, session: Any, feed: Any, token: str = "") -> Served:
    """Serve the dashboard on ``address`` and observe ``session`` (after its ledger recorder)
    and ``feed`` for the browsers on /api/live; ``await .stop()`` when the session ends."""
    channel = LiveChannel()
    served = await serve(ledger, parse_address(address, token), channel)
    channel.attach(session, feed)
    return served
