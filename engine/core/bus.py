"""The event bus: one ordered stream of events, synchronous handlers, one owner of state.

Sources (replay readers, the websocket, executors) hand events to :meth:`Bus.process`, one
at a time and in ``ts_init`` order. Before an event is delivered, every timer due at or
before its ``ts_init`` fires; events that handlers publish while handling go on a FIFO and
are delivered before the next outside event. Handlers never await and never block, so
the order of everything is fixed by the input alone: replay equals live.

Error policy: a handler that raises is logged with the event that caused it and counted,
and the bus then raises :class:`HandlerError`, which stops the run. The run's owner flushes
the ledger and marks the run failed. Going on after an engine component failed half-way
through an update would leave state nobody can trust; strategies that prefer to skip a
failing callback say so in their host (see ``engine.strategy.host``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from engine.core.clock import Clock

log = logging.getLogger(__name__)

Handler = Callable[[Any], None]


class HandlerError(RuntimeError):
    """A handler raised; the run must stop. ``event`` is what it was handling."""

    def __init__(self, handler: Handler, event: Any, cause: BaseException) -> None:
        name = getattr(handler, "__qualname__", repr(handler))
        super().__init__(f"{name} failed on {type(event).__name__}: {cause!r}")
        self.handler = handler
        self.event = event
        self.__cause__ = cause


class Bus:
    """Routes events by type to handlers in subscription order, firing timers first."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._handlers: dict[type, list[Handler]] = {}
        self._pending: deque[Any] = deque()
        self.errors = 0

    def subscribe(self, event_type: type, handler: Handler) -> None:
        """Deliver every event of ``event_type`` to ``handler``, after earlier subscribers."""
        self._handlers.setdefault(event_type, []).append(handler)

    def publish(self, event: Any) -> None:
        """Queue an event made while handling another; it is delivered before the next
        outside event."""
        self._pending.append(event)

    def process(self, event: Any) -> None:
        """Deliver one outside event: fire due timers, move the clock, deliver, drain."""
        ts = event.ts_init
        clock = self.clock
        heap = clock._heap  # hot path: peek at the timer heap instead of calling into the clock
        if heap and heap[0][0] <= ts:
            self.advance_to(ts)
        if ts > clock._now:
            clock._now = ts
        self._deliver(event)
        if self._pending:
            self._drain()

    def advance_to(self, ts_ns: int) -> None:
        """Fire, in deadline order, every timer due at or before ``ts_ns``; what each
        timer publishes is delivered before the next timer fires."""
        clock = self.clock
        while (timer := clock.pop_due(ts_ns)) is not None:
            try:
                timer.callback(timer.at)
            except Exception as exc:
                self._fail(timer.callback, timer, exc)
            if self._pending:
                self._drain()

    def record_error(self, handler: Handler, event: Any, exc: BaseException) -> None:
        """Log and count a handler failure without stopping (for callers that recover)."""
        self.errors += 1
        log.error("handler %s raised on %r: %r", _name(handler), event, exc, exc_info=exc)

    def _drain(self) -> None:
        pending = self._pending
        while pending:
            self._deliver(pending.popleft())

    def _deliver(self, event: Any) -> None:
        handlers = self._handlers.get(type(event))
        if handlers is None:
            return
        for handler in handlers:
            try:
                handler(event)
            except HandlerError:
                raise
            except Exception as exc:
                self._fail(handler, event, exc)

    def _fail(self, handler: Handler, event: Any, exc: Exception) -> None:
        self.record_error(handler, event, exc)
        self._pending.clear()
        raise HandlerError(handler, event, exc) from exc


def _name(handler: Handler) -> str:
    return getattr(handler, "__qualname__", repr(handler))
