"""Bybit v5 public websocket messages: tell control messages from data and decode data into
events (BYBIT.md sections 2-4).

Control messages carry ``op``/``success`` (subscribe acks, pongs) or ``type ==
"COMMAND_RESP"`` (option/spread acks); data messages carry ``topic``. Pongs come in every
shape BYBIT.md lists: spot/linear/inverse answer with ``op == "ping"`` and ``ret_msg ==
"pong"``, option and private sockets with ``op == "pong"``. Used by the live client and by
the replay of recordings, so both decode identically.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.core import sanity
from engine.core.clock import NS_PER_MS
from engine.core.events import Bar, Trades

_SIDES = {"Buy": 1, "Sell": -1}
# Bybit's kline interval codes as engine interval labels (BYBIT.md section 4).
KLINE_LABELS = {"1": "1m", "3": "3m", "5": "5m", "15": "15m", "30": "30m", "60": "1h", "120": "2h",
                "240": "4h", "360": "6h", "720": "12h", "D": "1d", "W": "1w"}
LABEL_TO_KLINE = {label: code for code, label in KLINE_LABELS.items()}


class MessageError(ValueError):
    """A message that is not valid JSON or not in a shape Bybit sends."""


@dataclass(frozen=True)
class Control:
    """A non-data message: ``kind`` is ``pong``, ``ack`` or ``ack_failed``."""

    kind: str
    op: str
    success: bool
    reason: str
    req_id: str
    topics: tuple[str, ...] = ()


def parse(text: str | bytes) -> dict[str, Any]:
    """JSON text as a dict, or :class:`MessageError`."""
    try:
        message = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MessageError(f"not JSON: {str(text)[:80]!r}") from exc
    if not isinstance(message, dict):
        raise MessageError(f"not a JSON object: {str(text)[:80]!r}")
    return message


def control(message: dict[str, Any]) -> Control | None:
    """The control meaning of a message, or None when it is data (has a ``topic``)."""
    if "topic" in message:
        return None
    op = str(message.get("op", ""))
    req_id = str(message.get("req_id", ""))
    if op == "pong" or (op == "ping" and message.get("ret_msg") == "pong"):
        return Control("pong", op, True, "", req_id)
    if message.get("type") == "COMMAND_RESP":
        data = message.get("data") or {}
        failed = tuple(data.get("failTopics") or ())
        ok = bool(message.get("success")) and not failed
        return Control("ack" if ok else "ack_failed", op or "subscribe", ok,
                       "" if ok else f"failed topics: {', '.join(failed)}", req_id, failed)
    if "success" in message:
        ok = bool(message["success"])
        return Control("ack" if ok else "ack_failed", op, ok, "" if ok else str(message.get("ret_msg", "")),
                       req_id)
    raise MessageError(f"neither data nor a known control message: {str(message)[:120]}")


def topic_symbol(topic: str) -> str:
    return topic.rsplit(".", 1)[-1]


def decode_trades(message: dict[str, Any], ts_init: int) -> tuple[Trades, list[str]]:
    """A ``publicTrade`` message as a :class:`Trades` batch sorted by trade time, with the
    trade ids in the same order. Malformed trades raise :class:`MessageError`."""
    rows = message.get("data")
    if not isinstance(rows, list) or not rows:
        raise MessageError(f"publicTrade without trades: {str(message)[:120]}")
    try:
        ms = np.array([int(r["T"]) for r in rows], dtype=np.int64)
        price = np.array([float(r["p"]) for r in rows], dtype=np.float64)
        size = np.array([float(r["v"]) for r in rows], dtype=np.float64)
        side = np.array([_SIDES[r["S"]] for r in rows], dtype=np.int8)
        ids = [str(r["i"]) for r in rows]
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise MessageError(f"malformed trade in {message.get('topic')}: {exc!r}") from exc
    if sanity.bad_price(price).any() or sanity.bad_size(size).any() or sanity.bad_notional(price, size).any():
        raise MessageError(f"non-positive, non-finite or absurd price/size in {message.get('topic')}")
    if sanity.bad_time(ms.astype(np.float64) * NS_PER_MS).any():  # checked before it can wrap
        raise MessageError(f"trade time before 2009 or in the future in {message.get('topic')}")
    ts = ms * NS_PER_MS
    order = np.argsort(ts, kind="stable")
    if (order != np.arange(len(order))).any():
        ts, price, size, side = ts[order], price[order], size[order], side[order]
        ids = [ids[i] for i in order]
    symbol = topic_symbol(message["topic"])
    return Trades(symbol, ts, price, size, side, np.array(ids, dtype="S36"), ts_init), ids


def decode_confirmed_klines(message: dict[str, Any], ts_init: int) -> list[Bar]:
    """The final (``confirm: true``) candles of a ``kline`` message as bars; candles still
    open are skipped, since Bybit pushes them again until they close."""
    topic = str(message["topic"])
    parts = topic.split(".")
    if len(parts) != 3:
        raise MessageError(f"malformed kline topic {topic[:80]!r}")
    _, code, symbol = parts
    label = KLINE_LABELS.get(code)
    if label is None:
        raise MessageError(f"unknown kline interval in {topic}")
    bars = []
    rows = message.get("data") or []
    if not isinstance(rows, list):
        raise MessageError(f"kline data is not a list in {topic}")
    for row in rows:
        if not isinstance(row, dict):
            raise MessageError(f"malformed kline in {topic}: {str(row)[:80]}")
        if not row.get("confirm"):
            continue
        try:
            start, end = int(row["start"]), int(row["end"])
            o, h, lo, c = (float(row[k]) for k in ("open", "high", "low", "close"))
            volume, turnover = float(row["volume"]), float(row["turnover"])
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise MessageError(f"malformed kline in {topic}: {exc!r}") from exc
        if sanity.bad_price(np.array([o, h, lo, c])).any() or not (h >= max(o, c, lo) and lo <= min(o, c)):
            raise MessageError(f"non-finite, absurd or inconsistent prices in a kline of {topic}")
        if not (np.isfinite(volume) and np.isfinite(turnover) and volume >= 0 and turnover >= 0):
            raise MessageError(f"negative, non-finite or absurd volume in a kline of {topic}")
        if sanity.bad_time(np.array([start, end], dtype=np.float64) * NS_PER_MS).any() or end < start:
            raise MessageError(f"kline times before 2009, in the future or reversed in {topic}")
        bars.append(Bar(symbol, label, start * NS_PER_MS, (end + 1) * NS_PER_MS, o, h, lo, c,
                        volume, turnover, 0, (end + 1) * NS_PER_MS, ts_init))
    return bars


class TradeDeduplicator:
    """Remembers the last ``capacity`` trade ids so a trade seen twice (a re-sent message, a
    backfill overlapping the live stream) is passed on once."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._seen: set[str] = set()
        self._order: deque[str] = deque()
        self.duplicates = 0

    def fresh(self, trades: Trades, ids: list[str]) -> Trades | None:
        """The trades of ``trades`` not seen before (None when all were)."""
        seen = self._seen
        keep = [i for i, trade_id in enumerate(ids) if trade_id not in seen]
        self.duplicates += len(ids) - len(keep)
        for i in keep:
            seen.add(ids[i])
            self._order.append(ids[i])
        while len(self._order) > self.capacity:
            seen.discard(self._order.popleft())
        if not keep:
            return None
        if len(keep) == len(ids):
            return trades
        index = np.array(keep)
        return trades._replace(ts_event=trades.ts_event[index], price=trades.price[index],
                               size=trades.size[index], side=trades.side[index],
                               trade_id=trades.trade_id[index])
