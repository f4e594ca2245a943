"""The loopback exchange: one aiohttp application serving Bybit's public websockets, the
market REST endpoints, archive downloads and the control endpoints on one port."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import WSCloseCode, WSMsgType, web

from engine.broker.instruments import InstrumentBook
from engine.core.clock import NS_PER_MS
from engine.loopback.archive_files import ArchiveFiles
from engine.loopback.control import ControlRoutes
from engine.loopback.faults import Fault, FaultError, FaultState, parse_schedule
from engine.loopback.hub import Connection, Hub
from engine.loopback.protocol import TopicIndex, handle_request
from engine.loopback.rest import CATEGORIES, MarketRoutes
from engine.loopback.store import SymbolStore
from engine.loopback.stream import KlinePusher, TradeStream
from engine.loopback.tape import load_tapes
from engine.loopback.timemap import Now, TimeMap, wall_ms

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ExchangeOptions:
    """What to serve and how: trade archives, replay speed (times real time), the history
    time to start from (default: the first trade), the served time it maps to (default: the
    moment the server starts), an archive directory, scheduled faults, an instruments file
    (default: the bundled one)."""

    data: tuple[Path, ...] = ()
    speed: float = 1.0
    start_at_ns: int | None = None
    wall_start_ms: int | None = None
    archive_dir: Path | None = None
    faults: tuple[Fault, ...] = ()
    instruments: Path | None = None
    control_token: str | None = None  # required by /_control/* when set


class ExchangeServer:
    """A Bybit-compatible server replaying trade archives on the present-day clock.

    Construct it (which parses the archives), ``await start(host, port)``, and
    ``await stop()``; ``now`` is the clock it serves (wall time by default).
    """

    def __init__(self, options: ExchangeOptions, now: Now = wall_ms) -> None:
        if not options.speed > 0:
            raise ValueError(f"speed must be positive, got {options.speed}")
        self.options, self.now = options, now
        self.tapes = load_tapes(list(options.data))
        for fault in options.faults:  # a schedule's aim is checked at the start, not when it fires
            self.check_aim(fault)
        self.stores = {key: SymbolStore(*key) for key in self.tapes}
        self.faults = FaultState()
        self.hub = Hub(self.faults)
        symbols: dict[str, set[str]] = {}
        for category, symbol in self.tapes:
            symbols.setdefault(category, set()).add(symbol)
        self.topics = TopicIndex(symbols)
        self.instruments = InstrumentBook.load(options.instruments).all()
        self.timemap: TimeMap | None = None
        self.url = ""
        self._host = ""
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task] = []
        self._started = 0.0
        self.archive_files: ArchiveFiles | None = None
        if options.archive_dir is not None:
            self.archive_files = ArchiveFiles(Path(options.archive_dir), self.faults)

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._rest403])
        app.router.add_get("/v5/public/{category}", self._websocket)
        app.add_routes(MarketRoutes(self.stores, self.instruments, self.now).routes())
        app.add_routes(ControlRoutes(self.fire, self.state, self.options.control_token).routes())
        if self.archive_files is not None:
            app.add_routes(self.archive_files.routes())
        app.on_shutdown.append(self._close_websockets)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0 picks a free port), start the replay; returns the URL."""
        hist_start = self.options.start_at_ns
        if hist_start is None:
            hist_start = min((t.first_ts for t in self.tapes.values()), default=0)
        wall_start = self.options.wall_start_ms if self.options.wall_start_ms is not None else self.now()
        self.timemap = TimeMap(hist_start, wall_start, self.options.speed)
        self._runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            raise
        self._host = host
        self.url = f"http://{host}:{self._runner.addresses[0][1]}"
        self._started = time.monotonic()
        jobs = [TradeStream(tape, self.stores[key], self.timemap, self.hub, self.now).run()
                for key, tape in self.tapes.items()]
        jobs += [KlinePusher(self.stores, self.hub, self.now).run(), self._run_schedule()]
        self._tasks = [asyncio.create_task(job) for job in jobs]
        for task in self._tasks:
            task.add_done_callback(_report_failure)
        return self.url

    async def stop(self) -> None:
        """Stop the replay, close every websocket with 1001 (going away) and the port."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def ws_url(self, category: str) -> str:
        """The public websocket URL of a category (``spot``, ``linear``, ``inverse``)."""
        return f"ws://{self._host}:{self.port}/v5/public/{category}"

    def fire(self, fault: Fault, source: str = "control") -> None:
        """Inject ``fault`` now (a :class:`FaultError` if it is aimed at a symbol not served)."""
        self.check_aim(fault)
        log.warning("fault: %s (%s)", fault.describe(), source)
        self.faults.note(fault, source, self.now())
        if fault.name == "drop":
            self.hub.drop(fault.symbol)
        elif fault.name == "malformed":
            self.hub.send_garbage(fault.symbol)
        elif fault.name == "duplicate":
            self.hub.duplicate_last(fault.symbol)

    def check_aim(self, fault: Fault) -> None:
        """A :class:`FaultError` when ``fault`` is aimed at a symbol this server does not serve."""
        if fault.symbol is None or (fault.name == "cut" and self.options.archive_dir is not None):
            return  # archive files are found by name when asked for
        served = sorted({symbol for _, symbol in self.tapes})
        if fault.symbol not in served:
            raise FaultError(f"fault {fault.name}:{fault.symbol}: this server serves no {fault.symbol} "
                             f"(it serves {', '.join(served) or 'nothing'})")

    def state(self) -> dict:
        """The time mapping, progress, connections and faults, for tests and demos."""
        now = self.now()
        timemap = self.timemap
        return {
            "hist_start_ms": timemap.hist_start_ns // NS_PER_MS if timemap else None,
            "wall_start_ms": timemap.wall_start_ms if timemap else None,
            "speed": self.options.speed,
            "now_ms": now,
            "hist_now_ms": timemap.hist_ns(now) // NS_PER_MS if timemap else None,
            "trades_served": sum(s.trades for s in self.stores.values()),
            "messages_published": self.hub.messages_published,
            "connections": len(self.hub.connections),
            "finished": all(s.finished for s in self.stores.values()),
            "symbols": [{"category": s.category, "symbol": s.symbol, "trades_served": s.trades,
                         "trades_total": self.tapes[key].rows, "last_time_ms": s.last_time,
                         "finished": s.finished} for key, s in self.stores.items()],
            "faults_fired": list(self.faults.fired),
            "stalled": self.faults.stalled(),
            "stalled_symbols": self.faults.stalled_symbols(),
            "ignoring_pings": self.faults.ignoring_pings(),
            "rest403_left": self.faults.rest403_left,
            "cut_left": self.faults.cut_left,
            "downloads": list(self.archive_files.requests) if self.archive_files else [],
        }

    async def _run_schedule(self) -> None:
        for fault in self.options.faults:
            await asyncio.sleep(max(0.0, self._started + fault.at_s - time.monotonic()))
            self.fire(fault, "schedule")

    @web.middleware
    async def _rest403(self, request: web.Request, handler) -> web.StreamResponse:
        if request.path.startswith("/v5/market/") and self.faults.take("rest403_left",
                                                                        request.query.get("symbol")):
            # Bybit's IP ban (BYBIT.md section 5); the exact body Bybit sends is not documented.
            return web.Response(status=403, text="access too frequent")
        return await handler(request)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        category = request.match_info["category"]
        if category not in CATEGORIES:
            raise web.HTTPNotFound(text=f"no public stream {category!r}; use one of {', '.join(CATEGORIES)}")
        ws = web.WebSocketResponse(autoping=False, timeout=CLOSE_TIMEOUT_S)
        await ws.prepare(request)
        conn = Connection(ws, request, category)
        self.hub.connections.add(conn)
        writer = asyncio.create_task(conn.write_loop())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    handle_request(conn, msg.data, self.topics, self.faults)
                elif msg.type == WSMsgType.PING and not self.faults.ignoring_pings(conn.symbols()):
                    await ws.pong(msg.data)
        finally:
            self.hub.connections.discard(conn)
            writer.cancel()
        return ws

    async def _close_websockets(self, app: web.Application) -> None:
        await asyncio.gather(*(c.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
                               for c in list(self.hub.connections)), return_exceptions=True)


def _report_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("exchange task failed", exc_info=task.exception())


@asynccontextmanager
async def run_exchange(
    data: Sequence[str | Path] = (),
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    faults: str | Sequence[Fault] = (),
    now: Now = wall_ms,
    **options,
) -> AsyncIterator[ExchangeServer]:
    """Run a server in this event loop for the duration of the block; yields it (its
    ``url``, ``ws_url(category)``, ``state()``, ``fire(fault)``). ``options`` are the other
    :class:`ExchangeOptions` fields; ``faults`` may be a schedule string."""
    scheduled = tuple(parse_schedule(faults)) if isinstance(faults, str) else tuple(faults)
    server = ExchangeServer(ExchangeOptions(data=tuple(Path(p) for p in data), faults=scheduled, **options),
                            now=now)
    await server.start(host, port)
    try:
        yield server
    finally:
        await server.stop()
