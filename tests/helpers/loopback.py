"""Helpers for the loopback-exchange, REST-client and fetch tests: tiny trade archives in
Bybit's layouts, a free port, a server subprocess, and raw websocket reads."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

DERIVATIVES_HEADER = ("timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,"
                      "homeNotional,foreignNotional,RPI")
SPOT_HEADER = "id,timestamp,price,volume,side"
DAY0 = 1748736000  # 2025-06-01 00:00 UTC, seconds
ROOT = Path(__file__).resolve().parents[2]


def make_trades(n: int, start_s: float, seconds: float, seed: int = 1, price: float = 100_000.0) -> dict:
    """``n`` sorted trades over ``seconds`` from ``start_s``: timestamps with 4 decimals (about
    a fifth of them sharing a timestamp with the trade before), prices on a 0.1 tick, sizes on
    0.001, sides +1/-1, UUID ids."""
    rng = np.random.default_rng(seed)
    ts = np.sort(np.round(start_s + rng.uniform(0, seconds, n), 4))
    repeat = rng.random(n) < 0.2
    repeat[0] = False
    for i in np.flatnonzero(repeat):
        ts[i] = ts[i - 1]
    return {
        "ts": ts,
        "price": np.round(price + np.cumsum(rng.normal(0, 3, n)), 1),
        "size": np.round(rng.integers(1, 300, n) * 0.001, 3),
        "side": rng.choice([1, -1], n),
        "id": [str(uuid.UUID(int=int(rng.integers(0, 2**62)) << 64 | i)) for i in range(n)],
    }


def write_derivatives(path: Path, trades: dict, symbol: str = "BTCUSDT") -> Path:
    """A derivatives archive (``BTCUSDT2025-06-01.csv[.gz]``): decimal-second timestamps."""
    lines = [DERIVATIVES_HEADER]
    for t, p, s, side, i in zip(trades["ts"], trades["price"], trades["size"], trades["side"], trades["id"],
                                strict=True):
        lines.append(f"{t:.4f},{symbol},{'Buy' if side > 0 else 'Sell'},{s:.3f},{p:.1f},PlusTick,{i},"
                     f"{s * p * 1e8:.4e},{s:.3f},{s * p:.4f},0")
    _write(path, "\n".join(lines) + "\n")
    return path


def write_spot(path: Path, trades: dict) -> Path:
    """A spot archive (``BTCUSDT_2025-06-01.csv[.gz]``): integer-ms timestamps, numeric ids."""
    lines = [SPOT_HEADER]
    for k, (t, p, s, side) in enumerate(zip(trades["ts"], trades["price"], trades["size"], trades["side"],
                                            strict=True)):
        lines.append(f"{1000 + k},{int(round(t * 1000))},{p:.1f},{s:.3f},{'buy' if side > 0 else 'sell'}")
    _write(path, "\n".join(lines) + "\n")
    return path


def _write(path: Path, text: str) -> None:
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode(), mtime=0))
    else:
        path.write_text(text)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args: list[str], timeout: float = 20.0) -> tuple[subprocess.Popen, str]:
    """``python -m engine.loopback ARGS`` in a child process; returns it and its URL once it
    prints that it is listening."""
    proc = subprocess.Popen([sys.executable, "-m", "engine.loopback", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            return proc, match.group(1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"server did not start: {proc.stderr.read()}")


async def recv_json(ws, timeout: float = 5.0):
    """The next text frame, parsed."""
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(ws, predicate, timeout: float = 5.0) -> dict:
    """Skip frames until one (parsed) satisfies ``predicate``."""
    async with asyncio.timeout(timeout):
        while True:
            message = json.loads(await ws.recv())
            if predicate(message):
                return message


async def collect(ws, seconds: float) -> list:
    """Every text frame received within ``seconds`` (parsed when it is JSON, else raw)."""
    frames = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            text = await asyncio.wait_for(ws.recv(), left)
        except TimeoutError:
            break
        try:
            frames.append(json.loads(text))
        except ValueError:
            frames.append(text)
    return frames


def hist_ns(trades: dict, spot: bool = False) -> np.ndarray:
    """Archive times in ns: derivatives keep 4 decimals of a second, spot whole ms."""
    if spot:
        return np.round(trades["ts"] * 1000).astype(np.int64) * 1_000_000
    return np.round(trades["ts"] * 10_000).astype(np.int64) * 100_000


def expected_klines(trades: dict, served_ms: np.ndarray, interval_ms: int) -> pd.DataFrame:
    """Klines of the trades at their served times, aggregated independently of the server
    (empty intervals flat at the last close), oldest first."""
    frame = pd.DataFrame({"t": served_ms // interval_ms * interval_ms, "p": trades["price"],
                          "v": trades["size"], "q": trades["price"] * trades["size"]})
    bars = frame.groupby("t").agg(open=("p", "first"), high=("p", "max"), low=("p", "min"),
                                  close=("p", "last"), volume=("v", "sum"), turnover=("q", "sum"))
    full = np.arange(bars.index[0], bars.index[-1] + 1, interval_ms)
    bars = bars.reindex(full)
    bars["close"] = bars["close"].ffill()
    for column in ("open", "high", "low"):
        bars[column] = bars[column].fillna(bars["close"])
    bars[["volume", "turnover"]] = bars[["volume", "turnover"]].fillna(0.0)
    return bars.rename_axis("open_time").reset_index()
