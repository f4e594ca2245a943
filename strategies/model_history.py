"""Bars from before a live session, so a model's window is full at the first live bar
instead of ``seq_len`` + feature look-back bars later: Bybit klines from the venue's REST
API, or bars from archive / kline / ledger files, loaded off the event loop."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import pandas as pd

from engine.analysis.report import format_time
from engine.core.clock import NS_PER_MS
from engine.core.events import History
from engine.feeds.history.sources import load_bars_from, split_symbol

REST_TIMEOUT_S = 20.0


def load_history(source: str, *, rest_url: str | None, category: str, symbol: str, interval: str,
                 interval_ms: int, before_ms: int, bars: int,
                 timeout_s: float = REST_TIMEOUT_S) -> pd.DataFrame:
    """The last ``bars`` bars closed by ``before_ms`` from ``source``: ``rest`` (klines from
    ``rest_url``, within ``timeout_s``) or comma-separated files/globs (:func:`history_files`).
    Raises ValueError or OSError when there are none to be had (e.g. Bybit has no klines of
    ``interval``)."""
    start_ms = before_ms - (bars + 1) * interval_ms
    if source == "rest":
        if rest_url is None:
            raise ValueError("history=rest needs a live session's REST URL")
        frame = _in_thread(_rest_klines(rest_url, category, symbol, interval, start_ms, before_ms,
                                        timeout_s))
    else:
        frame = load_bars_from(history_files(source, symbol), interval)
    closed = frame[frame["open_time"] + interval_ms <= before_ms]
    return closed.tail(bars).reset_index(drop=True)


def history_files(source: str, symbol: str) -> list[str]:
    """The files of a comma-separated ``history`` that hold ``symbol``'s bars: those given
    as ``SYMBOL=PATH`` for it when any is so named (a portfolio's), else all of them."""
    patterns = [p for p in source.split(",") if p]
    named = [(split_symbol(p)[0], p) for p in patterns]
    if all(name is None for name, _ in named):
        return patterns
    mine = [p for name, p in named if name == symbol]
    if not mine:
        raise ValueError(f"history names no file of {symbol} (give it as {symbol}=PATH)")
    return mine


async def _rest_klines(url: str, category: str, symbol: str, interval: str, start_ms: int,
                       end_ms: int, timeout_s: float) -> pd.DataFrame:
    """Klines from REST within ``timeout_s``: the session waits on them (and cannot stop
    meanwhile), so an IP ban (HTTP 403, ten minutes) ends the wait at once."""
    from engine.feeds.live.rest import BybitRest

    async with BybitRest(url, max_retries=2, timeout_s=timeout_s / 3, forbidden_backoff=None) as rest:
        return await asyncio.wait_for(rest.klines(category, symbol, interval, start_ms, end_ms), timeout_s)


def _in_thread(coroutine) -> pd.DataFrame:
    """Run a coroutine to the end from synchronous code (the strategy host's worker thread
    live), even when the calling thread has an event loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class WarmUp:
    """A live model's window warm-up for one symbol: the bars closed before the start, then
    the bars between them and the first live bar (the one forming at the start, which the
    feed leaves out), each asked for with ``request_history`` so the event loop never waits.
    Live bars that arrive before their history are held, and join the window after it."""

    def __init__(self, strategy: Any, interval_ms: int, symbol: str) -> None:
        self.strategy, self.interval_ms, self.symbol = strategy, interval_ms, symbol
        self.bars = 0  # history bars in the window
        self.done = False
        self._pending: str | None = None  # the tag of the request on its way
        self._seam_ms: int | None = None  # open of the bar due after the warm-up's
        self._seam: tuple[int, int] = (0, 0)  # (seam, missing) of the seam request
        self._held: list[dict[str, Any]] = []

    def start(self, now_ms: int) -> None:
        self._ask("warmup", now_ms, self.strategy.warmup_bars)

    def _ask(self, tag: str, before_ms: int, bars: int) -> None:
        self._pending = tag
        self.strategy.request_history(partial(self._load, before_ms, bars), tag, self.symbol)

    def _load(self, before_ms: int, bars: int) -> pd.DataFrame:
        """The last ``bars`` bars closed by ``before_ms`` from the strategy's ``history``
        source (in the host's worker thread)."""
        s = self.strategy
        return load_history(s.config.history, rest_url=s.rest_url,
                            category=s.instrument_of(self.symbol).category, symbol=self.symbol,
                            interval=s.interval, interval_ms=self.interval_ms, before_ms=before_ms, bars=bars)

    def holds(self, row: dict[str, Any]) -> bool:
        """Whether the live bar ``row`` must wait for history; the first live bar asks for
        the bars between the warm-up and it."""
        if self.done:
            return False
        if self._pending is None and not self._held and not self._ask_seam(row["open_time"]):
            self.done = True
            return False
        self._held.append(row)
        return True

    def _ask_seam(self, open_ms: int) -> bool:
        """Ask for the bars from the warm-up's end to ``open_ms``; False when none are missing,
        or too many to matter (the hole is reported)."""
        seam, self._seam_ms = self._seam_ms, None
        if seam is None:
            return False
        missing = (open_ms - seam) // self.interval_ms
        if missing <= 0:
            return False
        if missing > self.strategy.warmup_bars:
            self._hole(seam, missing)
            return False
        self._seam = (seam, missing)
        self._ask("seam", open_ms, missing)
        return True

    def arrived(self, history: History) -> list[dict[str, Any]]:
        """Add the history to the window; the held live bars to add after it (none while
        more history is on its way)."""
        if history.tag != self._pending:
            return []
        self._pending = None
        if history.tag == "warmup":
            self._warmed(history)
            if not self._held or self._ask_seam(self._held[0]["open_time"]):
                return []
        else:
            self._seamed(history)
        self.done = True
        held, self._held = self._held, []
        return held

    def _warmed(self, history: History) -> None:
        if history.error is not None:
            self.strategy.log.warning("no history to warm up from (%s); waiting for live bars",
                                      history.error)
            return
        bars, needed = history.bars, self.strategy.warmup_bars
        self.strategy.add_bars(bars.to_dict("records"), self.symbol)
        self.bars = len(bars)
        if len(bars):
            self._seam_ms = int(bars["open_time"].iloc[-1]) + self.interval_ms
        if len(bars) < needed:
            self.strategy.log.warning("warm-up found %d of the %d bars the model needs before its first "
                                      "forecast: it forecasts after %d more live bars", len(bars), needed,
                                      needed - len(bars))
        else:
            self.strategy.log.info("warmed up on %d bars of history", len(bars))

    def _seamed(self, history: History) -> None:
        seam, missing = self._seam
        if history.error is not None:
            self.strategy.log.warning("could not load the bars before the first live bar (%s)", history.error)
            self._hole(seam, missing)
            return
        bars = history.bars[history.bars["open_time"] >= seam]
        if len(bars) != missing:
            self._hole(seam, missing)
            return
        self.strategy.add_bars(bars.to_dict("records"), self.symbol)
        self.bars += missing
        self.strategy.log.info("added the %d bar(s) between the warm-up and the first live bar", missing)

    def _hole(self, seam: int, missing: int) -> None:
        self.strategy.log.warning("the model's window has a hole of %d bar(s) from %s UTC, between its "
                                  "history and the first live bar, until the hole leaves the window",
                                  missing, format_time(seam * NS_PER_MS))
