"""The Bybit v5 public websocket client: one connection per category, many topics.

It keeps the connection alive the way Bybit asks (BYBIT.md sections 2, 3, 6): a JSON
``{"op": "ping"}`` every ``ping_interval`` seconds (20 by default), a pong expected within
``pong_timeout`` (a missing pong means the connection is dead), and after any drop a
reconnect with exponential backoff and jitter that sends every subscription again. A
:meth:`stop` cuts short a connect attempt or a backoff delay, so it never waits them out, and
a server that does not answer a close is given ``close_timeout`` (1 s), not websockets' 10 s.
Topics go out in subscribe requests within Bybit's limits (BYBIT.md section 5: at most
``args_per_subscribe`` topics, 10 as spot allows, and under 21,000 characters of args a
request). Each request's ack is checked: a refused request is reported through
``on_state`` as ``subscribe_failed`` with its topics in ``refused_topics``, and never
mistaken for data. Data messages go to ``on_data`` with the
time they were received; trade de-duplication and gap handling live in the feed above.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from engine.bybit.parse import MessageError, control, parse

log = logging.getLogger(__name__)

OnData = Callable[[dict, str, int], None]
OnState = Callable[[str, str, int], None]
T = TypeVar("T")

MAX_ARGS_CHARS = 21_000  # BYBIT.md section 5: a subscribe's args stay under this


def subscribe_batches(topics: list[str], per_request: int,
                      max_chars: int = MAX_ARGS_CHARS) -> list[list[str]]:
    """The topics cut into subscribe requests of at most ``per_request`` topics whose args
    stay under ``max_chars`` characters, in order."""
    batches: list[list[str]] = []
    chars = 0
    for topic in topics:
        if not batches or len(batches[-1]) >= per_request or chars + len(topic) >= max_chars:
            batches.append([])
            chars = 0
        batches[-1].append(topic)
        chars += len(topic)
    return batches


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays: ``initial * factor**n`` capped at ``cap`` seconds, each scaled by a
    random factor in ``[1 - jitter, 1 + jitter]`` so many clients do not retry in step."""

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.2

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        rng = rng or random.Random()
        for attempt in itertools.count():
            base = min(self.cap, self.initial * self.factor ** attempt)
            yield base * (1.0 + self.jitter * (2.0 * rng.random() - 1.0))


DEFAULT_BACKOFF = Backoff()


class DeadConnection(Exception):
    """The server stopped answering pings."""


class HandshakeRefused(Exception):
    """The server answered the first connection but refused the websocket handshake (an
    HTTP 404 for a wrong path, say): a wrong URL, which retrying does not fix."""


class BybitWebsocket:
    """Connects, subscribes, pings, and reconnects until :meth:`stop`."""

    def __init__(
        self,
        url: str,
        topics: list[str],
        on_data: OnData,
        on_state: OnState,
        *,
        ping_interval: float = 20.0,
        pong_timeout: float = 10.0,
        backoff: Backoff = DEFAULT_BACKOFF,
        open_timeout: float = 10.0,
        close_timeout: float = 1.0,
        args_per_subscribe: int = 10,
        rng: random.Random | None = None,
    ) -> None:
        self.url, self.topics = url, list(topics)
        self.on_data, self.on_state = on_data, on_state
        self.ping_interval, self.pong_timeout = ping_interval, pong_timeout
        self.backoff, self.open_timeout, self.close_timeout = backoff, open_timeout, close_timeout
        self.args_per_subscribe = args_per_subscribe
        self.rng = rng or random.Random()
        self.connects = 0
        self.attempts = 0
        self.last_error: str | None = None
        self.malformed = 0
        self.failed_topics: list[str] = []
        self.refused_topics: list[str] = []  # the topics of the request refused last
        self._requests: dict[str, list[str]] = {}  # req_id -> the topics of a subscribe sent
        self._conn: ClientConnection | None = None
        self._stop_requested = asyncio.Event()
        self._last_pong = 0.0
        self._req = itertools.count(1)

    async def run(self) -> None:
        """Stay connected until :meth:`stop`; every drop is followed by a reconnect."""
        delays = self.backoff.delays(self.rng)
        while not self._stop_requested.is_set():
            self.attempts += 1
            try:
                conn = await self._unless_stopped(connect(
                    self.url, ping_interval=None, open_timeout=self.open_timeout,
                    close_timeout=self.close_timeout, max_size=2**24, compression=None))
                if conn is None:
                    break
                async with conn:
                    self._conn = conn
                    if self._stop_requested.is_set():  # the stop came as the connection opened
                        break
                    await self._subscribe(conn)
                    self.connects += 1
                    delays = self.backoff.delays(self.rng)
                    self.on_state("connected", f"connection {self.connects}", time.time_ns())
                    await self._serve(conn)
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, DeadConnection) as exc:
                if self._stop_requested.is_set():
                    break
                self.last_error = _describe(exc)
                if self.connects == 0 and _refusal(exc):
                    raise HandshakeRefused(f"{self.url} refused the websocket handshake: "
                                           f"{self.last_error}") from None
                self.on_state("disconnected", self.last_error, time.time_ns())
            except InvalidURI as exc:
                raise ValueError(f"bad websocket URL {self.url!r}: {exc}") from None
            finally:
                self._conn = None
            if self._stop_requested.is_set():
                break
            delay = next(delays)
            log.warning("reconnect to %s in %.2f s", self.url, delay)
            await self._unless_stopped(asyncio.sleep(delay))

    async def stop(self) -> None:
        """Close the connection and stop reconnecting (a pending attempt or delay ends now)."""
        self._stop_requested.set()
        if self._conn is not None:
            await self._conn.close()

    async def _unless_stopped(self, step: Awaitable[T]) -> T | None:
        """The result of ``step``, or None when :meth:`stop` comes first: ``step`` (a connect
        attempt or a backoff delay) is then cancelled instead of waited out."""
        task = asyncio.ensure_future(step)
        stopped = asyncio.ensure_future(self._stop_requested.wait())
        try:
            await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not task.done():
                task.cancel()
                await asyncio.wait((task,))
        return None if task.cancelled() else task.result()

    async def reconnect(self, reason: str) -> None:
        """Drop the current connection (a silent feed), so :meth:`run` connects again."""
        if self._conn is not None:
            log.warning("reconnect forced: %s", reason)
            await self._conn.close(code=4000, reason=reason[:100])

    async def _subscribe(self, conn: ClientConnection) -> None:
        self._requests.clear()
        for args in subscribe_batches(self.topics, self.args_per_subscribe):
            req_id = str(next(self._req))
            self._requests[req_id] = args
            await conn.send(json.dumps({"req_id": req_id, "op": "subscribe", "args": args}))

    def _refused(self, req_id: str, failed: tuple[str, ...], reason: str) -> list[str]:
        """The topics a refused subscribe names (failTopics, or those its reason mentions),
        else every topic of that request."""
        sent = self._requests.get(req_id, list(self.topics))
        words = set(re.split(r"[\s,:]+", reason))
        named = [t for t in sent if t in failed or t in words]
        return named or list(failed) or sent

    async def _serve(self, conn: ClientConnection) -> None:
        self._last_pong = time.monotonic()
        pinger = asyncio.create_task(self._heartbeat(conn))
        try:
            async for text in conn:
                received = time.time_ns()
                try:
                    message = parse(text)
                    meaning = control(message)
                except MessageError as exc:
                    self.malformed += 1
                    log.warning("malformed message from %s skipped: %s", self.url, exc)
                    continue
                if meaning is None:
                    self.on_data(message, text if isinstance(text, str) else text.decode(), received)
                elif meaning.kind == "pong":
                    self._last_pong = time.monotonic()
                elif meaning.kind == "ack_failed" and meaning.op == "subscribe":
                    self.failed_topics.append(meaning.reason)
                    self.refused_topics = self._refused(meaning.req_id, meaning.topics, meaning.reason)
                    log.error("subscription refused by %s: %s", self.url, meaning.reason)
                    self.on_state("subscribe_failed", meaning.reason, received)
                elif meaning.kind == "ack_failed":
                    log.warning("%s refused a %r request: %s", self.url, meaning.op, meaning.reason)
            if pinger.done() and pinger.exception():
                raise pinger.exception()
            # a clean close (1000/1001) ends the iteration without raising: it is a drop too
            raise conn.close_exc
        finally:
            pinger.cancel()

    async def _heartbeat(self, conn: ClientConnection) -> None:
        """Send a JSON ping every interval; close the connection when a pong is overdue."""
        while True:
            await conn.send(json.dumps({"req_id": f"ping-{next(self._req)}", "op": "ping"}))
            sent = time.monotonic()
            await asyncio.sleep(min(self.ping_interval, self.pong_timeout))
            if self._last_pong < sent:
                await asyncio.sleep(max(0.0, self.pong_timeout - (time.monotonic() - sent)))
                if self._last_pong < sent:
                    log.warning("no pong from %s within %.1f s: connection is dead", self.url,
                                self.pong_timeout)
                    await conn.close(code=4001, reason="no pong")
                    raise DeadConnection("no pong")
            await asyncio.sleep(max(0.0, self.ping_interval - (time.monotonic() - sent)))


def _refusal(exc: BaseException) -> bool:
    """A handshake the server refused for good: any HTTP answer but 429 and 5xx (busy or
    restarting, worth retrying), a server that does not speak websocket at all, or a TLS
    handshake that failed (wss:// to a plain port, a certificate that does not verify)."""
    if isinstance(exc, ssl.SSLError):
        return True
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        return status != 429 and status < 500
    return isinstance(exc, InvalidHandshake)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code} {exc.response.reason_phrase}".rstrip()
    if isinstance(exc, ConnectionClosed):
        return f"closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
