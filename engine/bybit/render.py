"""Bybit v5 message shapes (BYBIT.md sections 2-4, 7-8): websocket acks, pongs, trade and
kline pushes, and the REST envelope. Numbers Bybit sends as strings go out as strings."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

SIDES = {1: "Buy", -1: "Sell"}
TICK_NAMES = ("ZeroMinusTick", "MinusTick", "", "PlusTick", "ZeroPlusTick")  # index = code + 2


def num(x: float, decimals: int = 10) -> str:
    """A number as Bybit writes it: plain decimal, no exponent, no trailing zeros. Python's
    shortest repr already is that for most prices and sizes, at a fraction of numpy's cost."""
    value = float(x)
    text = repr(value)
    if "e" not in text and len(text) - text.find(".") - 1 <= decimals:
        return text[:-2] if text.endswith(".0") else text
    return np.format_float_positional(value, precision=decimals, unique=True, trim="-")


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def ack(category: str, op: str, success: bool, conn_id: str, req_id: str, ret_msg: str = "") -> dict:
    """The answer to a subscribe/unsubscribe. Spot puts the op in ``ret_msg`` on success (the
    documented spot example shows ``"subscribe"``; ``"unsubscribe"`` for an unsubscribe is
    our extrapolation); linear/inverse leave it empty. Both echo ``req_id`` ("" if none)."""
    if success and category == "spot":
        ret_msg = op
    return {"success": success, "ret_msg": ret_msg, "conn_id": conn_id, "req_id": req_id, "op": op}


def pong(category: str, conn_id: str, req_id: str) -> dict:
    """The answer to ``{"op": "ping"}``: ``op`` stays ``"ping"``; the documented spot pong
    has no ``req_id`` key, the linear/inverse one has it."""
    message = {"success": True, "ret_msg": "pong", "conn_id": conn_id}
    if category != "spot":
        message["req_id"] = req_id
    message["op"] = "ping"
    return message


def trade_message(category: str, symbol: str, ts: int, served_ms: np.ndarray, price: np.ndarray,
                  size: np.ndarray, side: np.ndarray, trade_id: np.ndarray, tick: np.ndarray,
                  seq: np.ndarray) -> dict:
    """A ``publicTrade.{symbol}`` push; the rows must already be in time order. ``L`` (tick
    direction) is sent for derivatives only. The archives do not say which trades were block
    or RPI trades, so ``BT`` and ``RPI`` are always false."""
    data = []
    for t, p, v, s, i, k, q in zip(served_ms.tolist(), price.tolist(), size.tolist(), side.tolist(),
                                   trade_id.tolist(), tick.tolist(), seq.tolist(), strict=True):
        row = {"T": t, "s": symbol, "S": SIDES[s], "v": num(v), "p": num(p)}
        if category != "spot":
            row["L"] = TICK_NAMES[k + 2]
        row |= {"i": i.decode(), "BT": False, "RPI": False, "seq": q}
        data.append(row)
    return {"topic": f"publicTrade.{symbol}", "type": "snapshot", "ts": ts, "data": data}


def kline_message(topic: str, ts: int, interval: str, candle, confirm: bool) -> dict:
    """A ``kline.{interval}.{symbol}`` push of one candle (``end`` = next start - 1)."""
    return {
        "topic": topic,
        "data": [{
            "start": candle.start, "end": candle.end, "interval": interval,
            "open": num(candle.open), "close": num(candle.close), "high": num(candle.high),
            "low": num(candle.low), "volume": num(candle.volume, 8), "turnover": num(candle.turnover, 8),
            "confirm": confirm, "timestamp": candle.timestamp,
        }],
        "ts": ts,
        "type": "snapshot",
    }


def envelope(result: dict, now_ms: int, ret_code: int = 0, ret_msg: str = "OK") -> dict:
    """The REST response body: ``{retCode, retMsg, result, retExtInfo, time}``."""
    return {"retCode": ret_code, "retMsg": ret_msg, "result": result, "retExtInfo": {}, "time": now_ms}
