"""The REST market endpoints: ``/v5/market/kline``, ``/v5/market/recent-trade`` and
``/v5/market/instruments-info`` (BYBIT.md sections 7, 8, 11), answered from what the
server has served so far.

Bad parameters get HTTP 200 with ``retCode`` 10001, Bybit's "request parameter error" code;
the ``retMsg`` wording is ours except "Not supported symbols", which is what Bybit is
commonly reported to answer for an unknown symbol (unverified).
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from aiohttp import web

from engine.broker.instruments import Instrument
from engine.bybit.instruments import render
from engine.bybit.intervals import INTERVALS
from engine.bybit.render import envelope
from engine.loopback.store import SymbolStore
from engine.loopback.timemap import Now

PARAM_ERROR = 10001
CATEGORIES = ("spot", "linear", "inverse")


class ParamError(ValueError):
    """A request parameter Bybit would refuse."""


def _int(query, name: str, default: int | None = None, lo: int | None = None, hi: int | None = None):
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ParamError(f"params error: {name} must be an integer, got {raw!r}") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ParamError(f"params error: {name} must be in [{lo}, {hi}], got {value}")
    return value


def _category(query, default: str | None = None) -> str:
    category = query.get("category") or default
    if category is None:
        raise ParamError("params error: category is required")
    if category not in CATEGORIES:
        raise ParamError(f"params error: category must be one of {', '.join(CATEGORIES)}, got {category!r}")
    return category


class MarketRoutes:
    """Handlers of the three market endpoints."""

    def __init__(self, stores: dict[tuple[str, str], SymbolStore], instruments: list[Instrument],
                 now: Now) -> None:
        self.stores, self.now = stores, now
        self.instruments = sorted(instruments, key=lambda i: (i.category, i.symbol))
        self._ids = {(i.category, i.symbol): n for n, i in enumerate(instruments, start=1)}

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v5/market/kline", self.kline),
                web.get("/v5/market/recent-trade", self.recent_trade),
                web.get("/v5/market/instruments-info", self.instruments_info)]

    def _answer(self, build, request: web.Request) -> web.Response:
        try:
            result = build(request.query)
        except ParamError as exc:
            return web.json_response(envelope({}, self.now(), PARAM_ERROR, str(exc)))
        return web.json_response(envelope(result, self.now()))

    def _store(self, category: str, symbol: str | None) -> SymbolStore:
        if not symbol:
            raise ParamError("params error: symbol is required")
        store = self.stores.get((category, symbol))
        if store is None:
            raise ParamError("Not supported symbols")
        return store

    async def kline(self, request: web.Request) -> web.Response:
        return self._answer(self._kline, request)

    def _kline(self, query) -> dict:
        """Candles with start in ``[start, end]``, the newest ``limit`` of them, newest first;
        without ``end``, up to the current (open) candle. That paging goes backwards from
        ``end`` is our reading of Bybit's endpoint; BYBIT.md states only the order."""
        category = _category(query, default="linear")  # Bybit's default (BYBIT.md section 7)
        store = self._store(category, query.get("symbol"))
        interval = query.get("interval")
        if interval not in INTERVALS:
            raise ParamError(f"params error: interval must be one of {' '.join(INTERVALS)}, got {interval!r}")
        start, end = _int(query, "start", lo=0), _int(query, "end", lo=0)
        limit = _int(query, "limit", 200, 1, 1000)
        upto = store.served_until(self.now())
        rows = []
        if upto is not None:
            end = upto if end is None else min(end, upto)
            if start is None or start <= end:
                rows = [c.row() for c in reversed(store.candles(interval, start, end, limit))]
        return {"category": category, "symbol": store.symbol, "list": rows}

    async def recent_trade(self, request: web.Request) -> web.Response:
        return self._answer(self._recent_trade, request)

    def _recent_trade(self, query) -> dict:
        """The latest trades whose served time has passed, newest first (BYBIT.md does not
        state the order; newest first is our assumption, matching the kline endpoint)."""
        category = _category(query)
        store = self._store(category, query.get("symbol"))
        limit = _int(query, "limit", 60, 1, 60) if category == "spot" else _int(query, "limit", 500, 1, 1000)
        return {"category": category, "list": store.recent(limit)}

    async def instruments_info(self, request: web.Request) -> web.Response:
        return self._answer(self._instruments_info, request)

    def _instruments_info(self, query) -> dict:
        """Instruments of a category in symbol order. Linear/inverse page with ``limit``
        (default 500) and ``cursor``; spot does not page and has no ``nextPageCursor``."""
        category = _category(query)
        status = query.get("status", "Trading")
        chosen = [i for i in self.instruments if i.category == category and status == "Trading"
                  and query.get("symbol") in (None, i.symbol) and query.get("baseCoin") in (None, i.base)]
        if category == "spot":
            return {"category": category, "list": [self._render(i) for i in chosen]}
        limit = _int(query, "limit", 500, 1, 1000)
        cursor = query.get("cursor")
        if cursor:
            after = _cursor_last(cursor)
            chosen = [i for i in chosen if i.symbol > after]
        page = chosen[:limit]
        more = len(chosen) > limit
        next_cursor = quote(f"first={page[0].symbol}&last={page[-1].symbol}", safe="") if more else ""
        return {"category": category, "list": [self._render(i) for i in page], "nextPageCursor": next_cursor}

    def _render(self, inst: Instrument) -> dict:
        return render(inst, self._ids[(inst.category, inst.symbol)])


def _cursor_last(cursor: str) -> str:
    """The last symbol of the page a cursor (``first=A&last=B``, URL-encoded) came from."""
    fields = dict(part.partition("=")[::2] for part in unquote(cursor).split("&"))
    if not fields.get("last"):
        raise ParamError(f"params error: invalid cursor {cursor!r}")
    return fields["last"]
