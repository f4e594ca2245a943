"""A scripted Bybit-like websocket and REST server for client tests (each test says what it
sends and checks what the client asks), and a loopback port where no exchange answers."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

# -- a tiny Bybit-like server for client tests -------------------------------------------------

BASE_MS = 1_767_225_600_000
# The pong shapes of BYBIT.md section 3.
PONGS = {
    "spot": lambda req: {"success": True, "ret_msg": "pong", "conn_id": "c1", "op": "ping"},
    "linear": lambda req: {"success": True, "ret_msg": "pong", "conn_id": "c1", "req_id": "", "op": "ping"},
    "option": lambda req: {"args": [str(int(time.time() * 1000))], "op": "pong"},
    "private": lambda req: {"req_id": req.get("req_id", ""), "op": "pong", "args": ["1767225600000"],
                            "conn_id": "c1"},
}


def linear_ack(request: dict, success: bool = True, ret_msg: str = "") -> dict:
    return {"success": success, "ret_msg": ret_msg, "conn_id": "c1", "req_id": request.get("req_id", ""),
            "op": request["op"]}


def trade_message(ids: list[str], times_ms: list[int], prices: list[float], symbol: str = "BTCUSDT") -> str:
    data = [{"T": t, "s": symbol, "S": "Buy" if k % 2 else "Sell", "v": "0.010", "p": f"{p:.1f}",
             "L": "PlusTick", "i": i, "BT": False, "RPI": False, "seq": 1000 + k}
            for k, (i, t, p) in enumerate(zip(ids, times_ms, prices, strict=True))]
    return json.dumps({"topic": f"publicTrade.{symbol}", "type": "snapshot", "ts": times_ms[-1],
                       "data": data})


def rest_trade(i: str, t: int, p: float, k: int) -> dict:
    return {"execId": i, "symbol": "BTCUSDT", "price": f"{p:.1f}", "size": "0.010",
            "side": "Buy" if k % 2 else "Sell", "time": str(t), "isBlockTrade": False,
            "isRPITrade": False, "seq": str(1000 + k)}


@dataclass
class Conn:
    ws: ServerConnection
    opened: float
    received: list[tuple[float, Any]] = field(default_factory=list)
    subscribes: list[list[str]] = field(default_factory=list)

    @property
    def topics(self) -> list[str]:
        return [t for args in self.subscribes for t in args]

    def pings(self) -> list[tuple[float, dict]]:
        return [(t, m) for t, m in self.received if isinstance(m, dict) and m.get("op") == "ping"]


Script = Callable[["FakeBybit", Conn], Awaitable[None]]


class FakeBybit:
    """A Bybit-shaped public websocket (and a recent-trade REST route) on a free port.

    ``pong(request)`` shapes the pong (None: pings are ignored); ``ack(request)`` answers a
    subscribe; ``script(server, conn)`` runs once per connection after its first subscribe;
    the first ``refuse`` handshakes are refused with HTTP 503, the first one accepted takes
    ``slow_first`` seconds; ``rest_trades`` is the recent-trade list (newest first)."""

    def __init__(self, *, pong=PONGS["linear"], ack=linear_ack, script: Script | None = None,
                 refuse: int = 0, rest_trades: list[dict] | None = None, slow_first: float = 0.0) -> None:
        self.pong, self.ack, self.script, self.refuse = pong, ack, script, refuse
        self.slow_first = slow_first
        self.rest_trades = rest_trades or []
        self.conns: list[Conn] = []
        self.attempts: list[float] = []
        self.rest_calls: list[dict] = []
        self._tasks: set[asyncio.Task] = set()

    async def __aenter__(self) -> FakeBybit:
        self._server = await serve(self._handler, "127.0.0.1", 0, process_request=self._process_request)
        await self._server.__aenter__()
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        for task in self._tasks:
            task.cancel()
        await self._server.__aexit__(*exc)

    @property
    def base(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/v5/public/linear"

    async def _process_request(self, connection, request):
        path = urlsplit(request.path)
        if path.path == "/v5/market/recent-trade":
            query = {k: v[0] for k, v in parse_qs(path.query).items()}
            self.rest_calls.append(query)
            limit = int(query.get("limit", 500))
            body = {"retCode": 0, "retMsg": "OK", "result": {"category": "linear",
                                                             "list": self.rest_trades[:limit]},
                    "retExtInfo": {}, "time": BASE_MS}
            return connection.respond(HTTPStatus.OK, json.dumps(body))
        self.attempts.append(time.monotonic())
        if len(self.attempts) <= self.refuse:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "try later\n")
        if len(self.attempts) == self.refuse + 1 and self.slow_first:
            await asyncio.sleep(self.slow_first)
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        conn = Conn(ws, time.monotonic())
        self.conns.append(conn)
        try:
            async for text in ws:
                try:
                    message = json.loads(text)
                except ValueError:
                    message = text
                conn.received.append((time.monotonic(), message))
                if not isinstance(message, dict):
                    continue
                if message.get("op") == "ping" and self.pong is not None:
                    await ws.send(json.dumps(self.pong(message)))
                elif message.get("op") == "subscribe":
                    conn.subscribes.append(list(message["args"]))
                    await ws.send(json.dumps(self.ack(message)))
                    if self.script is not None and len(conn.subscribes) == 1:
                        task = asyncio.create_task(self.script(self, conn))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
        except ConnectionClosed:
            pass



# -- strategies for the live tests ----------------------------------------------------------


# -- a port where no exchange answers --------------------------------------------------------

class Unanswered:
    """A loopback port for :class:`LiveProcess` where no exchange answers: connections are
    refused, or with ``listen`` accepted but never answered (a connect attempt hangs until
    its timeout)."""

    def __init__(self, listen: bool = False) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        if listen:
            self.sock.listen(8)
        port = self.sock.getsockname()[1]
        self.url, self.ws = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"

    def close(self) -> None:
        self.sock.close()
