"""Bars from before a live session, so a model's window is full at the first live bar
instead of ``seq_len`` + feature look-back bars later: Bybit klines from the venue's REST
API, or bars from archive / kline / ledger files."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from engine.feeds.history.sources import load_bars_from

REST_TIMEOUT_S = 20.0


def load_history(source: str, *, rest_url: str | None, category: str, symbol: str, interval: str,
                 interval_ms: int, before_ms: int, bars: int,
                 timeout_s: float = REST_TIMEOUT_S) -> pd.DataFrame:
    """The last ``bars`` bars closed by ``before_ms`` from ``source``: ``rest`` (klines from
    ``rest_url``, within ``timeout_s``) or comma-separated files/globs. Raises ValueError or
    OSError when there are none to be had (e.g. Bybit has no klines of ``interval``)."""
    start_ms = before_ms - (bars + 1) * interval_ms
    if source == "rest":
        if rest_url is None:
            raise ValueError("history=rest needs a live session's REST URL")
        frame = _in_thread(_rest_klines(rest_url, category, symbol, interval, start_ms, before_ms,
                                        timeout_s))
    else:
        frame = load_bars_from([p for p in source.split(",") if p], interval)
    closed = frame[frame["open_time"] + interval_ms <= before_ms]
    return closed.tail(bars).reset_index(drop=True)


async def _rest_klines(url: str, category: str, symbol: str, interval: str, start_ms: int,
                       end_ms: int, timeout_s: float) -> pd.DataFrame:
    """Klines from REST within ``timeout_s``: the session waits on them (and cannot stop
    meanwhile), so an IP ban (HTTP 403, ten minutes) ends the wait at once."""
    from engine.feeds.live.rest import BybitRest

    async with BybitRest(url, max_retries=2, timeout_s=timeout_s / 3, forbidden_backoff=None) as rest:
        return await asyncio.wait_for(rest.klines(category, symbol, interval, start_ms, end_ms), timeout_s)


def _in_thread(coroutine) -> pd.DataFrame:
    """Run a coroutine to the end from synchronous code, even inside a running event loop. The
    loop waits meanwhile: live, at ``on_start`` (before the feed starts) and, for the bars
    between the warm-up and the first live bar, once at that bar."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
