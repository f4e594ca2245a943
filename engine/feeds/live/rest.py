"""Bybit v5 public REST client (aiohttp): klines over any range, recent trades and
instruments-info (BYBIT.md sections 5, 7, 8, 11).

Every request passes a client-side rate limiter (by default 100 requests per 5 s, a sixth
of Bybit's 600 per 5 s per IP). Network errors, HTTP 5xx/429 and ``retCode`` 10006 (rate
limit) are retried with exponential backoff and jitter; HTTP 403 ("access too frequent", an
IP ban) waits ``forbidden_backoff`` seconds (10 minutes by default, as Bybit asks) before
retrying, or gives up at once when it is None (for callers that cannot wait). Any other
``retCode`` raises :class:`BybitAPIError` with Bybit's ``retMsg``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from typing import Any

import aiohttp
import numpy as np
import pandas as pd

from engine.bars.aggregator import parse_interval
from engine.bars.kline_files import KLINE_COLUMNS
from engine.broker.instruments import Instrument
from engine.bybit.intervals import INTERVALS, next_start, step_ms
from engine.core.clock import NS_PER_MS
from engine.core.events import Trades
from engine.feeds.history.archive import ID_DTYPE

log = logging.getLogger(__name__)

RATE_LIMIT_CODE = 10006
_SIDES = {"Buy": 1, "Sell": -1}
_CODE_BY_SECONDS = {step_ms(code) // 1000: code for code in INTERVALS if step_ms(code)}


class BybitError(RuntimeError):
    """A request that failed for good (after any retries)."""


class BybitAPIError(BybitError):
    """Bybit answered with a non-zero ``retCode``."""

    def __init__(self, path: str, ret_code: int, ret_msg: str) -> None:
        super().__init__(f"Bybit {path}: retCode {ret_code}: {ret_msg}")
        self.path, self.ret_code, self.ret_msg = path, ret_code, ret_msg


class BybitHTTPError(BybitError):
    """An HTTP status that is not worth retrying (a 4xx other than 403/429)."""

    def __init__(self, path: str, status: int, body: str) -> None:
        super().__init__(f"Bybit {path}: HTTP {status}: {body[:200]}")
        self.path, self.status = path, status


def bybit_interval(interval: str) -> str:
    """Bybit's kline code for an interval: ``1h`` -> ``60``, ``1d`` -> ``D``; Bybit's own
    codes (``1``, ``60``, ``D``, ``W``, ``M``) pass through."""
    if interval in INTERVALS:
        return interval
    spec = parse_interval(interval)
    code = _CODE_BY_SECONDS.get(int(spec.size) // 1_000_000_000) if spec.is_time else None
    if code is None:
        raise ValueError(f"Bybit has no {interval!r} klines (use 1m 3m 5m 15m 30m 1h 2h 4h 6h 12h 1d 1w)")
    return code


class RateLimiter:
    """Spaces requests evenly: at most ``max_requests`` per ``per_seconds``."""

    def __init__(self, max_requests: int, per_seconds: float) -> None:
        self.interval = per_seconds / max_requests
        self._next = 0.0

    async def acquire(self) -> None:
        now = time.monotonic()
        wait = self._next - now
        self._next = max(now, self._next) + self.interval
        if wait > 0:
            await asyncio.sleep(wait)


class BybitRest:
    """Async client of Bybit's public market endpoints; use ``async with BybitRest(...)``."""

    def __init__(
        self,
        base_url: str = "https://api.bybit.com",
        *,
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = 15.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        forbidden_backoff: float | None = 600.0,
        max_requests: int = 100,
        per_seconds: float = 5.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_retries, self.backoff_s, self.max_backoff_s = max_retries, backoff_s, max_backoff_s
        self.forbidden_backoff = forbidden_backoff
        self.limiter = RateLimiter(max_requests, per_seconds)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> BybitRest:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: between half and all of base * 2**attempt."""
        return min(self.max_backoff_s, self.backoff_s * 2**attempt) * random.uniform(0.5, 1.0)

    async def get(self, path: str, params: dict[str, Any]) -> dict:
        """GET ``path`` and return the whole response body (``retCode`` 0), retrying as the
        module docstring says."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        query = {k: str(v) for k, v in params.items() if v is not None}
        for attempt in range(self.max_retries + 1):
            await self.limiter.acquire()
            try:
                async with self._session.get(self.base_url + path, params=query,
                                             timeout=self._timeout) as resp:
                    status, text, headers = resp.status, await resp.text(), resp.headers
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem, delay = f"{type(exc).__name__}: {exc}", self._backoff(attempt)
            else:
                if status == 403:
                    problem, delay = f"HTTP 403 {text.strip()[:80]!r}", self.forbidden_backoff
                    if delay is None:
                        raise BybitError(f"Bybit {path}: {problem}: the IP is rate-limited")
                    log.warning("Bybit %s: HTTP 403 (%s): the IP is rate-limited; backing off %.1f s",
                                path, text.strip()[:80], delay)
                elif status == 429 or status >= 500:
                    problem, delay = f"HTTP {status}", self._backoff(attempt)
                elif status != 200:
                    raise BybitHTTPError(path, status, text)
                else:
                    body = _json(path, text)
                    code = body.get("retCode")
                    if code == 0:
                        return body
                    if code != RATE_LIMIT_CODE:
                        raise BybitAPIError(path, code, str(body.get("retMsg")))
                    problem = f"retCode {code}: {body.get('retMsg')}"
                    delay = self._limit_reset(headers, attempt)
            if attempt < self.max_retries:
                log.info("Bybit %s: %s; retrying in %.2f s", path, problem, delay)
                await asyncio.sleep(delay)
        raise BybitError(f"Bybit {path}: giving up after {self.max_retries + 1} attempts: {problem}")

    def _limit_reset(self, headers, attempt: int) -> float:
        """How long to wait after ``retCode`` 10006: until ``X-Bapi-Limit-Reset-Timestamp``
        when Bybit sends it, else the usual backoff."""
        reset = headers.get("X-Bapi-Limit-Reset-Timestamp")
        if reset and reset.isdigit():
            return min(self.max_backoff_s, max(0.0, int(reset) / 1000 - time.time()))
        return self._backoff(attempt)

    async def _kline_pages(self, category: str, symbol: str, code: str, start_ms: int, end_ms: int,
                           page_limit: int) -> tuple[dict[int, list[str]], int | None]:
        """Kline rows with start in ``[start_ms, end_ms]`` by start time, paging backwards
        from ``end`` (Bybit lists newest first), and the server time of the last answer."""
        rows: dict[int, list[str]] = {}
        server_time = None
        end = end_ms
        while end >= start_ms:
            body = await self.get("/v5/market/kline", {"category": category, "symbol": symbol,
                                                       "interval": code, "start": start_ms, "end": end,
                                                       "limit": page_limit})
            server_time = body.get("time")
            page = body["result"]["list"]
            rows.update((int(row[0]), row) for row in page if start_ms <= int(row[0]) <= end_ms)
            if len(page) < page_limit:
                break
            oldest = min(int(row[0]) for row in page)
            if oldest <= start_ms or oldest > end:
                break
            end = oldest - 1
        return rows, server_time

    async def klines(self, category: str, symbol: str, interval: str, start_ms: int, end_ms: int, *,
                     page_limit: int = 1000, closed_only: bool = True) -> pd.DataFrame:
        """Klines with ``start_ms <= open_time < end_ms`` in the kline format of
        :mod:`engine.bars.kline_files` (``trades`` is 0: Bybit does not give counts), oldest first.

        Candles still open at the server's time are left out unless ``closed_only`` is False;
        gaps in the series are logged and listed in ``frame.attrs["gaps"]``.
        """
        code = bybit_interval(interval)
        rows, server_time = await self._kline_pages(category, symbol, code, start_ms, end_ms - 1, page_limit)
        starts = sorted(rows)
        if closed_only and server_time is not None:
            starts = [t for t in starts if next_start(code, t) <= server_time]
        frame = _kline_frame([rows[t] for t in starts])
        frame.attrs["gaps"] = _gaps(code, frame["open_time"].to_numpy())
        if frame.attrs["gaps"]:
            first = frame.attrs["gaps"][0]
            log.warning("%s %s klines: %d gap(s) in the series, the first from %d to %d ms",
                        symbol, code, len(frame.attrs["gaps"]), *first)
        return frame

    async def recent_trades_raw(self, category: str, symbol: str, limit: int | None = None) -> list[dict]:
        """Bybit's recent-trade list items as sent (newest first on the loopback exchange;
        BYBIT.md does not state Bybit's order); Bybit's default count without ``limit``."""
        body = await self.get("/v5/market/recent-trade", {"category": category, "symbol": symbol,
                                                          "limit": limit})
        return body["result"]["list"]

    async def recent_trades(self, category: str, symbol: str, limit: int | None = None) -> Trades:
        """The latest public trades as a :class:`~engine.core.events.Trades` batch sorted oldest
        first (whatever order Bybit lists them in); ``ts_init`` is now."""
        items = await self.recent_trades_raw(category, symbol, limit)
        if items and int(items[0]["time"]) > int(items[-1]["time"]):
            items = items[::-1]  # newest first: reverse, so trades sharing a time keep their order
        items = sorted(items, key=lambda item: int(item["time"]))
        return Trades(
            symbol,
            np.array([int(i["time"]) * NS_PER_MS for i in items], dtype=np.int64),
            np.array([float(i["price"]) for i in items], dtype=np.float64),
            np.array([float(i["size"]) for i in items], dtype=np.float64),
            np.array([_SIDES[i["side"]] for i in items], dtype=np.int8),
            np.array([i["execId"].encode() for i in items], dtype=ID_DTYPE),
            time.time_ns(),
        )

    async def instruments_info(self, category: str, symbol: str | None = None, *,
                               page_limit: int = 500) -> list[dict]:
        """Every instruments-info item of a category (or one symbol), following
        ``nextPageCursor`` (spot does not page)."""
        items: list[dict] = []
        cursor, seen = None, set()
        while True:
            body = await self.get("/v5/market/instruments-info", {
                "category": category, "symbol": symbol,
                "limit": None if category == "spot" else page_limit, "cursor": cursor})
            result = body["result"]
            items.extend(result["list"])
            cursor = result.get("nextPageCursor")
            if not cursor or category == "spot":
                return items
            if cursor in seen:
                raise BybitError(f"Bybit instruments-info: cursor {cursor!r} came back twice")
            seen.add(cursor)

    async def instruments(self, category: str, symbol: str | None = None) -> list[Instrument]:
        """Instruments-info as the broker's :class:`Instrument` rules."""
        items = await self.instruments_info(category, symbol)
        return [instrument_from_info(category, item) for item in items]


def instrument_from_info(category: str, item: dict) -> Instrument:
    """One instruments-info item as :class:`Instrument`. Spot has no quantity step or
    leverage filter: its step is ``basePrecision``, its leverage 1, its limits
    ``maxLimitOrderQty``/``maxMarketOrderQty`` and its minimum notional ``minOrderAmt``."""
    lot, price = item["lotSizeFilter"], item["priceFilter"]
    if category == "spot":
        max_qty = float(lot.get("maxLimitOrderQty") or lot["maxOrderQty"])
        return Instrument(
            symbol=item["symbol"], category=category, tick_size=float(price["tickSize"]),
            qty_step=float(lot["basePrecision"]), min_qty=float(lot["minOrderQty"]), max_qty=max_qty,
            max_market_qty=float(lot.get("maxMarketOrderQty") or max_qty),
            min_notional=float(lot.get("minOrderAmt") or 0), max_leverage=1.0,
            base=item.get("baseCoin", ""), quote=item.get("quoteCoin", ""),
        )
    return Instrument(
        symbol=item["symbol"], category=category, tick_size=float(price["tickSize"]),
        qty_step=float(lot["qtyStep"]), min_qty=float(lot["minOrderQty"]), max_qty=float(lot["maxOrderQty"]),
        max_market_qty=float(lot.get("maxMktOrderQty") or lot["maxOrderQty"]),
        min_notional=float(lot.get("minNotionalValue") or 0),
        max_leverage=float(item.get("leverageFilter", {}).get("maxLeverage") or 1),
        base=item.get("baseCoin", ""), quote=item.get("quoteCoin", ""),
    )


def _json(path: str, text: str) -> dict:
    try:
        body = json.loads(text)
    except ValueError:
        raise BybitError(f"Bybit {path}: response is not JSON: {text[:200]!r}") from None
    if not isinstance(body, dict):
        raise BybitError(f"Bybit {path}: unexpected response {text[:200]!r}")
    return body


def _kline_frame(rows: list[list[str]]) -> pd.DataFrame:
    """Bybit kline rows ``[start, open, high, low, close, volume, turnover]`` as a frame in
    the kline format."""
    frame = pd.DataFrame([r[:7] for r in rows], columns=list(KLINE_COLUMNS[:7]))
    frame = frame.astype({"open_time": np.int64, **{c: np.float64 for c in KLINE_COLUMNS[1:7]}})
    frame["trades"] = np.zeros(len(frame), dtype=np.int64)
    return frame


def _gaps(code: str, open_times: np.ndarray) -> list[tuple[int, int]]:
    """(last open_time before, first open_time after) of every break in the series."""
    if code != "M":
        step = step_ms(code)
        breaks = np.flatnonzero(np.diff(open_times) != step)
        return [(int(open_times[i]), int(open_times[i + 1])) for i in breaks]
    return [(int(a), int(b)) for a, b in zip(open_times[:-1], open_times[1:], strict=True)
            if next_start(code, int(a)) != b]
