"""Test and demo controls: ``POST /_control/fault`` fires a fault now, ``GET /_control/state``
shows the time mapping, what has been served and which faults fired. With a token (always
when the server listens beyond loopback) both need ``Authorization: Bearer TOKEN``."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable

from aiohttp import web

from engine.loopback.faults import Fault, FaultError, make_fault


class ControlRoutes:
    """Handlers that call back into the server to fire faults and report its state."""

    def __init__(self, fire: Callable[[Fault, str], None], state: Callable[[], dict],
                 token: str | None = None) -> None:
        self.fire, self.state, self.token = fire, state, token

    def _refused(self, request: web.Request) -> web.Response | None:
        """A 401 answer when a token is required and the request does not carry it."""
        if self.token is None:
            return None
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if hmac.compare_digest(given.encode(), self.token.encode()):
            return None
        return web.json_response({"ok": False, "error": "the controls need Authorization: Bearer TOKEN"},
                                 status=401)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/_control/fault", self.post_fault), web.get("/_control/state", self.get_state)]

    async def post_fault(self, request: web.Request) -> web.Response:
        """Body ``{"fault": NAME}``, plus ``"seconds"`` (stall, nopong) or ``"count"``
        (rest403, cut) where the fault takes one, and ``"symbol"`` to aim it at one symbol."""
        if (refused := self._refused(request)) is not None:
            return refused
        try:
            body = json.loads(await request.text())
            if not isinstance(body, dict) or not isinstance(body.get("fault"), str):
                raise FaultError('body must be a JSON object like {"fault": "stall", "seconds": 5}')
            symbol = body.get("symbol")
            if symbol is not None and not isinstance(symbol, str):
                raise FaultError(f'"symbol" must be a symbol like "ETHUSDT", got {symbol!r}')
            fault = make_fault(body["fault"], body.get("seconds", body.get("count")), symbol=symbol)
            self.fire(fault, "control")
        except (ValueError, TypeError) as exc:
            return web.json_response({"ok": False, "error": str(exc)}, status=400)
        return web.json_response({"ok": True, "fault": fault.name, "arg": fault.arg, "symbol": fault.symbol})

    async def get_state(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        return web.json_response(self.state())
