"""Write small Bybit-format trade archives (derivatives and spot layouts) for tests."""

from __future__ import annotations

import gzip
import uuid
from pathlib import Path

import numpy as np

DERIVATIVES_HEADER = ("timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,"
                      "homeNotional,foreignNotional,RPI")
SPOT_HEADER = "id,timestamp,price,volume,side,rpi"


def random_trades(n: int, start_s: float, seconds: float, seed: int = 0, price: float = 100_000.0):
    """Sorted trades: (ts seconds with 4 decimals, price on a 0.1 tick, size on 0.001, side)."""
    rng = np.random.default_rng(seed)
    ts = np.sort(np.round(start_s + rng.uniform(0, seconds, n), 4))
    prices = np.round(price + np.cumsum(rng.normal(0, 5, n)), 1)
    sizes = np.round(rng.integers(1, 500, n) * 0.001, 3)
    sides = rng.choice([1, -1], n)
    return ts, prices, sizes, sides


def derivatives_lines(ts, prices, sizes, sides, symbol: str = "BTCUSDT") -> list[str]:
    """Archive rows; each trade's id comes from its time, price and size (the same trade in
    two files has one id), and the k-th repeat of those three in one call gets its own id, as
    Bybit's trdMatchIDs are unique (a repeated id is a repeated trade, left out)."""
    lines = []
    seen: dict[tuple[float, float, float], int] = {}
    for t, p, s, side in zip(ts, prices, sizes, sides, strict=True):
        key = (float(t), float(p), float(s))
        repeat = seen[key] = seen.get(key, -1) + 1
        trade_id = uuid.UUID(int=abs(hash(key if repeat == 0 else (*key, repeat))) % (1 << 128))
        lines.append(f"{t:.4f},{symbol},{'Buy' if side > 0 else 'Sell'},{s:.3f},{p:.1f},PlusTick,"
                     f"{trade_id},{s * p * 1e8:.4e},{s:.3f},{s * p:.4f},0")
    return lines


def write_derivatives(path: Path, ts, prices, sizes, sides, symbol: str = "BTCUSDT",
                      extra_lines: list[str] | None = None) -> Path:
    """A derivatives archive (decimal-second timestamps, Buy/Sell); gzipped for ``.gz``."""
    body = [DERIVATIVES_HEADER, *derivatives_lines(ts, prices, sizes, sides, symbol), *(extra_lines or [])]
    _write(path, "\n".join(body) + "\n")
    return path


def write_spot(path: Path, ts, prices, sizes, sides) -> Path:
    """A spot archive (integer-millisecond timestamps, lower-case sides, ids)."""
    rows = [SPOT_HEADER]
    for i, (t, p, s, side) in enumerate(zip(ts, prices, sizes, sides, strict=True)):
        rows.append(f"{1000 + i},{int(round(t * 1000))},{p:.2f},{s:.6f},{'buy' if side > 0 else 'sell'},0")
    _write(path, "\n".join(rows) + "\n")
    return path


def _write(path: Path, text: str) -> None:
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
