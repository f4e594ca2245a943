"""The historical trades a server replays: archives grouped by (category, symbol), read in
time order as column chunks with Bybit's tick direction added."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.feeds.history.archive import TradeArchive

CHUNK_ROWS = 65_536
_PLUS, _MINUS = 1, -1


@dataclass(frozen=True)
class Columns:
    """A slice of one symbol's trades in time order; ``tick`` holds tick-direction codes
    (+1 PlusTick, +2 ZeroPlusTick, -1 MinusTick, -2 ZeroMinusTick)."""

    ts: np.ndarray
    price: np.ndarray
    size: np.ndarray
    side: np.ndarray
    trade_id: np.ndarray
    tick: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)


class TapeError(ValueError):
    """Archives that cannot be replayed together."""


class SymbolTape:
    """The trade archives of one symbol in one category, read back to back."""

    def __init__(self, category: str, symbol: str, archives: list[TradeArchive]) -> None:
        self.category, self.symbol = category, symbol
        self.archives = sorted(archives, key=lambda a: a.info().first_ts)
        for before, after in zip(self.archives, self.archives[1:], strict=False):
            if after.info().first_ts < before.info().last_ts:
                raise TapeError(f"{before.path} and {after.path} overlap in time ({symbol})")

    @property
    def first_ts(self) -> int:
        return self.archives[0].info().first_ts

    @property
    def last_ts(self) -> int:
        return self.archives[-1].info().last_ts

    @property
    def rows(self) -> int:
        return sum(a.info().rows for a in self.archives)

    def chunks(self, start_ns: int) -> Iterator[Columns]:
        """Trades at or after ``start_ns``, in order, in chunks of at most ``CHUNK_ROWS``.
        Tick directions continue across chunks and files (the first trade gets PlusTick)."""
        prev_price, prev_dir = np.nan, _PLUS
        for archive in self.archives:
            if archive.info().last_ts < start_ns:
                continue
            for chunk in archive.chunks(CHUNK_ROWS, start_ns=start_ns, with_ids=True):
                tick, prev_price, prev_dir = tick_directions(chunk.price, prev_price, prev_dir)
                yield Columns(chunk.ts, chunk.price, chunk.size, chunk.side, chunk.trade_id, tick)


def tick_directions(price: np.ndarray, prev_price: float, prev_dir: int) -> tuple[np.ndarray, float, int]:
    """Bybit tick directions of ``price`` following a trade at ``prev_price`` whose last
    change went ``prev_dir`` (+1 up, -1 down); returns the codes and the state to carry."""
    if len(price) == 0:
        return np.empty(0, np.int8), prev_price, prev_dir
    before = np.concatenate(([prev_price if np.isfinite(prev_price) else price[0]], price[:-1]))
    change = np.sign(price - before).astype(np.int8)
    if not np.isfinite(prev_price):
        change[0] = _PLUS
    last_move = np.where(change != 0, np.arange(len(price)), -1)
    last_move = np.maximum.accumulate(last_move)
    carried = np.where(last_move >= 0, change[np.maximum(last_move, 0)], prev_dir).astype(np.int8)
    tick = np.where(change != 0, change, carried * 2).astype(np.int8)
    return tick, float(price[-1]), int(carried[-1])


def load_tapes(paths: list[Path]) -> dict[tuple[str, str], SymbolTape]:
    """Open every archive (parsing it into the cache if needed) and group them by
    (category, symbol)."""
    groups: dict[tuple[str, str], list[TradeArchive]] = {}
    for path in paths:
        archive = TradeArchive(path)
        info = archive.info()
        if info.rows:
            groups.setdefault((info.category, info.symbol), []).append(archive)
    return {key: SymbolTape(*key, archives) for key, archives in sorted(groups.items())}


def seq_of(ts_ns: np.ndarray) -> np.ndarray:
    """The cross sequence served with each trade: its historical time in microseconds, so
    it rises with the tape, is shared by trades of one match and survives restarts."""
    return np.asarray(ts_ns, dtype=np.int64) // 1000
