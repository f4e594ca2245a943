"""Live paper trading: the Bybit feed through the same session as a backtest, on wall time.

Feed inputs and timer wake-ups go through one asyncio queue into a single pump that calls
the synchronous bus, so event order, and therefore every bar, order and fill, depends only
on the inputs and their receive times. That is what makes a recorded session replay into
the same ledger rows. The clock shows each event's receive time while it is handled.
Ctrl-C or SIGTERM stops the session cleanly: the queue is drained, bars due by then close,
the ledger is flushed and the run is marked ``stopped``. A feed that ends on its own (the
venue refused the subscription) ends the session too, as a failed run.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from engine.bybit.endpoints import MAINNET_REST, MAINNET_WS
from engine.core.clock import NS_PER_S, LiveClock
from engine.core.config import Config
from engine.core.events import Wakeup
from engine.core.typed import ConfigError
from engine.feeds.history.recording import RecordingWriter
from engine.feeds.live.feed import LiveFeed
from engine.feeds.live.rest import BybitRest
from engine.feeds.live.websocket import Backoff, HandshakeRefused
from engine.ledger.reader import LedgerReader
from engine.run.resume import downtime_start, restore_session
from engine.run.session import Market, Session, SessionResult, load_strategy

log = logging.getLogger(__name__)

_STOP = object()


class SubscriptionRefused(ConfigError):
    """The venue refused the feed's subscription: mostly a symbol it does not list in that
    category, which the user fixes, so the command ends as a user error (exit 2)."""


class EndpointRefused(ConfigError):
    """The first connection's websocket handshake was refused (an HTTP 404 for a wrong
    ``--ws-url``, say): the user fixes the URL, so the command ends at once with exit 2."""


@dataclass(frozen=True)
class LiveOptions:
    """Where to connect and how long to run; the rest comes from the config. ``symbol`` is
    the run's symbol, or a portfolio's symbols comma-joined."""

    symbol: str
    category: str
    interval: str = "1m"
    ws_url: str = MAINNET_WS
    rest_url: str = MAINNET_REST
    duration_s: float | None = None
    record: str | None = None
    resume: int | None = None
    status_every_s: float = 1.0
    ping_interval_s: float = 20.0
    pong_timeout_s: float = 10.0
    stale_after_s: float = 30.0
    silent_after_s: float = 1.0
    forbidden_backoff_s: float = 600.0
    dashboard: str | None = None  # HOST:PORT to serve the dashboard on, in this loop

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self.symbol.split(","))


class WallTimer:
    """Turns the clock's next deadline into a queued :class:`Wakeup` at that wall time, so
    bars close on time in a quiet market. A wake-up is never queued early."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
        self.loop, self.queue = loop, queue

    def __call__(self, deadline: int) -> None:
        self.loop.call_later(max(0.0, (deadline - time.time_ns()) / NS_PER_S), self._wake, deadline)

    def _wake(self, deadline: int) -> None:
        early = deadline - time.time_ns()
        if early > 0:
            self.loop.call_later(early / NS_PER_S, self._wake, deadline)
            return
        self.queue.put_nowait(Wakeup(deadline, deadline))


async def run_live_async(cfg: Config, opts: LiveOptions) -> SessionResult:
    """Run one live paper-trading session until the duration ends or a signal arrives."""
    # made first: a model's imports and checkpoint take seconds, which would otherwise lie between
    # the data's start and the first connection (a gap only REST's last 1000 trades can fill)
    strategy = load_strategy(cfg.strategy.name, cfg.strategy.params)
    start, whole_bar = time.time_ns(), False
    if opts.resume is not None:  # a run that is not there is a typo, not a failed run
        reader = LedgerReader(cfg.ledger.path)
        try:
            reader.run(opts.resume)
            # the downtime since that run's last bar is this run's first gap (backfilled)
            start, whole_bar = downtime_start(reader, opts.resume)
        finally:
            reader.close()
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    clock = LiveClock(waker=WallTimer(loop, queue), start_ns=start)
    market = Market(opts.symbol, opts.category, opts.interval, "trades", start, start,
                    starts_in_a_bar=not whole_bar)
    session = Session(cfg, clock, market, kind="live", ledger_target=cfg.ledger.path,
                      resume_from=opts.resume, save_state_every_bar=True, strategy=strategy)
    try:
        if opts.resume is not None:
            reader = LedgerReader(cfg.ledger.path)
            try:
                restore_session(session, reader, opts.resume)
            finally:
                reader.close()
        return await _LiveRun(session, opts, queue, loop).run()
    except BaseException as exc:
        if not session.closed:
            session.close("failed", str(exc) or type(exc).__name__, data_end=time.time_ns())
        raise


class _LiveRun:
    """The feed, the pump and the status line of one session, and its orderly end."""

    def __init__(self, session: Session, opts: LiveOptions, queue: asyncio.Queue,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.session, self.opts, self.queue, self.loop = session, opts, queue, loop
        self.began = time.time_ns()  # this session's start: a resumed run's data began long before
        self.recording = None
        if opts.record:
            self.recording = RecordingWriter(opts.record, {
                "symbol": opts.symbol, "symbols": list(opts.symbols), "category": opts.category,
                "interval": opts.interval,
                "mode": "trades", "started": session.market.data_start, "ws_url": opts.ws_url,
                "run_id": session.run_id,
            })
        self.rest = BybitRest(opts.rest_url, forbidden_backoff=opts.forbidden_backoff_s)
        self.feed = LiveFeed(opts.ws_url, self.rest, opts.category, opts.symbols, queue.put_nowait,
                             record=self.recording.write if self.recording else None,
                             interval=opts.interval, ping_interval=opts.ping_interval_s,
                             pong_timeout=opts.pong_timeout_s, backoff=Backoff(),
                             stale_after=opts.stale_after_s, silent_after=opts.silent_after_s,
                             start_ns=session.market.data_start, downtime_of=opts.resume)

        self.inference = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        session.host.go_live(self._offload, opts.rest_url)
        self.inference_errors = 0

    def _offload(self, fn, deliver) -> None:
        """Run a strategy's slow work (a forecast, a warm-up) off the event loop; what it
        makes comes back on the queue as an event stamped when it finished."""
        future = self.loop.run_in_executor(self.inference, fn)
        future.add_done_callback(lambda done: self._offloaded(done, deliver))

    def _stopped(self, fn, deliver) -> None:
        """After the stop nothing could be acted on: bars closed out then get no forecast."""
        log.info("stopped: no more work off the event loop")

    def _offloaded(self, done: asyncio.Future, deliver) -> None:
        if done.cancelled():
            return
        if done.exception() is not None:
            self.inference_errors += 1
            log.error("work off the event loop failed: %r", done.exception())
            return
        made = deliver(done.result(), time.time_ns())
        for event in made if isinstance(made, list) else (made,):  # a batch of forecasts: one a symbol
            self.queue.put_nowait(event)

    async def run(self) -> SessionResult:
        stop = _install_stop(self.loop, self.queue, self.opts.duration_s)
        # What exists by now (modules, config, instruments: ~100k objects) never becomes
        # garbage; frozen, it is left out of the collector's full passes, which otherwise
        # stop the feed for 150-400 ms now and then.
        gc.freeze()
        try:
            return await self._run(stop)
        finally:
            gc.unfreeze()
            stop.remove()  # Ctrl-C goes back to whoever had it once the ledger is closed

    async def _run(self, stop: _Stopper) -> SessionResult:
        session, feed, queue = self.session, self.feed, self.queue
        status = asyncio.create_task(_status_line(session, feed, self.opts.status_every_s))
        flusher = asyncio.create_task(_flush_ledger(session, session.cfg.ledger.flush_seconds))
        dashboard = None
        if self.opts.dashboard:
            from engine.dashboard.live_server import serve_live
            dashboard = await serve_live(self.opts.dashboard, str(session.cfg.ledger.path), session, feed)
        feed_task = asyncio.create_task(feed.run())

        def feed_ended(_: asyncio.Task) -> None:  # nothing more can come: end the session
            stop.stop("subscription refused" if feed.refused is not None else "the feed ended")

        feed_task.add_done_callback(feed_ended)
        error = None
        try:
            session.start()
            while (event := await queue.get()) is not _STOP:
                session.bus.process(event)
        except Exception as exc:
            error = str(exc)
            log.error("live session failed: %s", exc)
        finally:
            feed_task.remove_done_callback(feed_ended)
            await feed.stop()
            await asyncio.gather(feed_task, return_exceptions=True)
            # The data ends here: no trade comes after this. Waiting for a running inference
            # below can take seconds, and bars that end in them must not be closed.
            feed_stopped = time.time_ns()
            status.cancel()
            flusher.cancel()
            await self.rest.close()
            self.inference.shutdown(wait=True, cancel_futures=True)
            session.host.go_live(self._stopped, self.opts.rest_url)
            _clear_status_line()
            if dashboard is not None:
                await dashboard.stop()
        end = max(feed_stopped, session.clock.timestamp_ns())
        feed_error = self._feed_error(feed_task)
        error = error or feed_error
        if error is None:
            self._close_out(end)
            error = self._no_data_error(end)
        if self.recording is not None:
            self.recording.close(end)
        word = "failed" if error else "finished" if stop.reason == "duration" else "stopped"
        result = session.close(word, error, data_end=end)
        decoders = feed.decoders
        result.extra |= {"reconnects": feed.reconnects,
                         "duplicates_dropped": sum(d.dedup.duplicates for d in decoders),
                         "malformed_messages": sum(d.malformed for d in decoders) + feed.ws.malformed,
                         "trades_received": sum(d.trades for d in decoders), "recording": self.opts.record,
                         "inference_errors": self.inference_errors,
                         "late_trades": sum(getattr(a, "late_trades", 0)
                                            for a in session.aggregators.values()),
                         "connection_attempts": feed.ws.attempts, "error": error}
        if feed.refused is not None:
            raise SubscriptionRefused(feed_error)
        if self._refused_handshake(feed_task):
            raise EndpointRefused(feed_error)
        return result

    @staticmethod
    def _refused_handshake(feed_task: asyncio.Task) -> bool:
        return (feed_task.done() and not feed_task.cancelled()
                and isinstance(feed_task.exception(), HandshakeRefused))

    def _no_data_error(self, end: int) -> str | None:
        """Why a session that received no market data at all failed: the URL, the attempts
        made and the last error (an outage it retried through to the end)."""
        feed = self.feed
        if not feed.received_nothing():
            return None
        seconds = (end - self.began) / NS_PER_S
        return (f"no market data from {feed.ws.url} in {seconds:.0f} s: {feed.ws.attempts} connection "
                f"attempt(s), {feed.ws.connects} connected; last error: {feed.ws.last_error or 'none'}")

    def _feed_error(self, feed_task: asyncio.Task) -> str | None:
        """Why the feed ended on its own, if it did: a refused subscription or a crash."""
        feed = self.feed
        if feed.refused is not None:
            symbols = feed.refused_symbols
            topics = [t for t in feed.ws.topics if t.rsplit(".", 1)[-1] in symbols]
            return (f"the exchange refused the subscription to {', '.join(topics)} "
                    f"({feed.refused}): is {','.join(symbols)} a {self.opts.category} symbol there?")
        if feed_task.cancelled() or feed_task.exception() is None:
            return None
        if isinstance(feed_task.exception(), HandshakeRefused):
            return f"{feed_task.exception()}: is --ws-url {self.opts.ws_url} right?"
        log.error("the feed failed: %r", feed_task.exception())
        return f"the feed failed: {feed_task.exception()!r}"

    def _close_out(self, end: int) -> None:
        """Handle what arrived before the stop, give up on an open gap, and close the bars
        whose close delay has passed by the stop; a bar still inside its delay may miss
        trades in flight and is left out, as the replay of the recording leaves it out."""
        session, feed = self.session, self.feed
        for symbol, symbol_feed in feed.feeds.items():
            if symbol_feed.decoder.gap_from is not None:
                feed.input("rest_trades", end, {"list": [], "error": "the session ended before a backfill"},
                           symbol)
        late = 0
        while not self.queue.empty():
            event = self.queue.get_nowait()
            if event is _STOP:
                continue
            if event.ts_init > end:  # a forecast finished after the data ended: nothing to act on
                late += 1
                continue
            session.bus.process(event)
        if late:
            log.info("%d event(s) made after the feed stopped were left out", late)
        session.end_of_data(end, final=False)


def run_live(cfg: Config, opts: LiveOptions) -> SessionResult:
    return asyncio.run(run_live_async(cfg, opts))


_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_FEED_ENDED = ("subscription refused", "the feed ended")


class _Stopper:
    """Why the session stopped (``duration``, a signal name, or the feed ending), once;
    ``remove()`` puts the signal handlers that were there before back (the event loop may
    outlive the session)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
        self.loop, self.queue = loop, queue
        self.reason: str | None = None
        self.previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}
        self.timer: asyncio.TimerHandle | None = None

    def stop(self, reason: str) -> None:
        """End the pump after what is queued; only the first reason counts."""
        if self.reason is not None:
            return
        self.reason = reason
        # the feed ending says why on its own (the session's one line): this is detail
        level = logging.INFO if reason in _FEED_ENDED else logging.WARNING
        log.log(level, "stopping (%s): flushing the ledger", reason)
        self.queue.put_nowait(_STOP)

    def remove(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        for sig, handler in self.previous.items():
            self.loop.remove_signal_handler(sig)
            if handler is not None:
                signal.signal(sig, handler)


def _install_stop(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue,
                  duration_s: float | None) -> _Stopper:
    stopper = _Stopper(loop, queue)
    for sig in _SIGNALS:
        loop.add_signal_handler(sig, stopper.stop, sig.name)
    if duration_s is not None:
        stopper.timer = loop.call_later(duration_s, stopper.stop, "duration")
    return stopper


async def _flush_ledger(session: Session, every_s: float) -> None:
    """Hand the buffered ledger rows to its writer every ``every_s`` seconds. The ledger
    checks the time only every 1024 rows, which a live session takes hours to add; a crash
    must not lose more than the last few seconds (and a resume needs the fills)."""
    while True:
        await asyncio.sleep(every_s)
        session.ledger.flush()


async def _status_line(session: Session, feed: LiveFeed, every_s: float) -> None:
    """Connection state, last trade age, positions and equity of the portfolio on stderr,
    once a second (a line every 10 s when stderr is not a terminal)."""
    tty = sys.stderr.isatty()
    ticks = 0
    while True:
        await asyncio.sleep(every_s)
        ticks += 1
        if not tty and ticks % 10:
            continue
        line = status_text(session, feed, time.time_ns())
        print(f"\r{line}\033[K" if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)


def status_text(session: Session, feed: LiveFeed, now_ns: int) -> str:
    """The one status line: for one symbol its position; for several the stalest symbol's
    last trade and how many symbols hold a position."""
    broker, symbols = session.broker, session.market.symbols
    ages = {s: (now_ns - f.last_trade_wall_ns) / NS_PER_S
            for s, f in feed.feeds.items() if f.last_trade_wall_ns}
    if len(symbols) == 1:
        age = ages.get(symbols[0])
        what = f"{symbols[0]} {feed.state} | last trade {'-' if age is None else f'{age:.1f}s'} ago"
        held = f"position {broker.position_qty(symbols[0]):g}"
    else:
        stalest = max(ages, key=ages.get) if len(ages) == len(symbols) else None
        waiting = len(symbols) - len(ages)
        last = (f"{waiting} waiting for a trade" if stalest is None
                else f"stalest trade {stalest} {ages[stalest]:.1f}s ago")
        gaps = sum(d.gap_from is not None for d in feed.decoders)
        what = f"{len(symbols)} symbols {feed.state} | {last} | gaps {gaps}"
        held = f"positions {sum(broker.position_qty(s) != 0 for s in symbols)}/{len(symbols)}"
    return (f"{session.market.category} {what} | {held} | equity {broker.account.equity():,.2f} | "
            f"bars {session.recorder.bars} | reconnects {feed.reconnects}")


def _clear_status_line() -> None:
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr, flush=True)
