"""Requests a client sends on a public websocket: ``subscribe``/``unsubscribe`` and the
JSON ``ping`` (BYBIT.md sections 2, 3, 5), answered in the category's shapes.

The success shapes are Bybit's documented ones. The wording of failure reasons in ``ret_msg``
is ours: BYBIT.md does not record Bybit's exact failure strings ("error:handler not found"
and "error:already subscribed" follow what Bybit is commonly reported to send; unverified).
A request with any bad topic subscribes none of its topics.
"""

from __future__ import annotations

import json

from engine.bybit.intervals import INTERVALS
from engine.bybit.render import ack, dumps, pong
from engine.loopback.faults import FaultState
from engine.loopback.hub import Connection

SPOT_MAX_ARGS = 10
MAX_ARGS_CHARS = 21_000


class TopicIndex:
    """The topics a server can stream: ``publicTrade.{symbol}`` and ``kline.{interval}.{symbol}``
    for every symbol it has data for, per category."""

    def __init__(self, symbols: dict[str, set[str]]) -> None:
        self.symbols = symbols

    def valid(self, category: str, topic: str) -> bool:
        parts = topic.split(".")
        known = self.symbols.get(category, set())
        if len(parts) == 2 and parts[0] == "publicTrade":
            return parts[1] in known
        return len(parts) == 3 and parts[0] == "kline" and parts[1] in INTERVALS and parts[2] in known


def handle_request(conn: Connection, text: str, topics: TopicIndex, faults: FaultState) -> None:
    """Answer one text frame from a client."""
    try:
        request = json.loads(text)
    except ValueError:
        request = None
    if not isinstance(request, dict):
        reason = "error:request is not a JSON object"
        conn.send(dumps(ack(conn.category, "", False, conn.conn_id, "", reason)))
        return
    op = request.get("op")
    req_id = request.get("req_id")
    req_id = "" if req_id is None else str(req_id)
    if op == "ping":
        if not faults.ignoring_pings(conn.symbols()):
            conn.send(dumps(pong(conn.category, conn.conn_id, req_id)))
        return
    if op not in ("subscribe", "unsubscribe"):
        conn.send(dumps(ack(conn.category, str(op or ""), False, conn.conn_id, req_id,
                            f"error:unknown op {op!r}")))
        return
    problem = _check_args(conn, op, request.get("args"), topics)
    if problem is None:
        if op == "subscribe":
            conn.topics.update(request["args"])
        else:
            conn.topics.difference_update(request["args"])
    conn.send(dumps(ack(conn.category, op, problem is None, conn.conn_id, req_id, problem or "")))


def _check_args(conn: Connection, op: str, args: object, topics: TopicIndex) -> str | None:
    """Why a subscribe/unsubscribe request cannot be done, or None."""
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        return "error:args must be a non-empty list of topic strings"
    if conn.category == "spot" and len(args) > SPOT_MAX_ARGS:
        return f"error:args size >{SPOT_MAX_ARGS}, spot allows at most {SPOT_MAX_ARGS} args per request"
    if sum(len(a) for a in args) > MAX_ARGS_CHARS:
        return f"error:args longer than {MAX_ARGS_CHARS} characters"
    unknown = [a for a in args if not topics.valid(conn.category, a)]
    if unknown:
        return f"error:handler not found,topic:{','.join(unknown)}"
    if op == "subscribe":
        again = [a for a in args if a in conn.topics]
        if again:
            return f"error:already subscribed,topic:{','.join(again)}"
    return None
