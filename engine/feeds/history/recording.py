"""Recordings of live sessions: every feed input with its receive time, as JSON lines, and
their replay through the replay clock.

The first line is a header (``papertape_recording``, symbol, category, mode, interval and
the session start; a portfolio's ``symbol`` is its symbols comma-joined, also listed in
``symbols``); each further line is ``{"t": received_ns, "k": kind, "d": payload, "s":
symbol}`` (``ws`` payloads are the raw message text; recordings of one symbol written
before portfolios have no ``s``); the last is ``{"t": end_ns, "k": "end"}``. A replay
decodes each symbol's inputs with its own live
:class:`~engine.feeds.live.decoder.FeedDecoder` and sends each event at its receive time,
in the recorded order, so bars, orders and fills come out as they did live.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from engine.bars.aggregator import parse_interval
from engine.core import sanity
from engine.core.bus import Bus
from engine.core.symbols import SYMBOL
from engine.feeds.history.archive import ArchiveError
from engine.feeds.history.replay import Progress, ReplayRange
from engine.feeds.live.decoder import FeedDecoder

FORMAT_VERSION = 1
log = logging.getLogger(__name__)


class RecordingWriter:
    """Appends inputs to a recording, flushing at least every ``flush_every`` lines."""

    def __init__(self, path: str | Path, header: dict[str, Any], flush_every: int = 200) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._fh.write(json.dumps({"papertape_recording": FORMAT_VERSION, **header}) + "\n")
        self.flush_every = flush_every
        self.lines = 0

    def write(self, kind: str, received: int, payload: Any, symbol: str | None = None) -> None:
        """Append one input (of ``symbol``, in a recording of several)."""
        entry = {"t": received, "k": kind, "d": payload}
        if symbol is not None:
            entry["s"] = symbol
        self._fh.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self.lines += 1
        if self.lines % self.flush_every == 0:
            self._fh.flush()

    def close(self, end_ns: int) -> None:
        self._fh.write(json.dumps({"t": end_ns, "k": "end"}) + "\n")
        self._fh.close()


class RecordingReplay:
    """A recorded live session as a replay source. A line that is not a well-formed entry
    (not JSON, no integer receive time, a time long before the session or in the future)
    is left out, counted in ``bad_rows`` and logged; a cut-off last line (a killed session)
    ends the replay there."""

    def __init__(self, paths: list[Path], start_ns: int | None = None, end_ns: int | None = None) -> None:
        if len(paths) != 1:
            raise ArchiveError("replay one recording at a time")
        self.path = paths[0]
        try:
            self._scan(start_ns, end_ns)
        except (OSError, UnicodeDecodeError) as exc:
            raise ArchiveError(f"{self.path}: cannot read ({exc})") from None

    def _scan(self, start_ns: int | None, end_ns: int | None) -> None:
        with open(self.path, encoding="utf-8") as fh:
            self.header = _header(self.path, fh.readline())
            end = started = self.header["started"]
            self._bad: set[int] = set()
            self._last_line = 0
            pending: list[int] = []  # bad lines that are only cut off if nothing good follows
            for number, line in enumerate(fh, 2):
                t = _entry_time(line, started)
                if t is None:
                    pending.append(number)
                    continue
                self._bad.update(pending)
                pending = []
                end, self._last_line = max(end, t), number
        if pending:
            log.warning("%s: line %d is cut off (the session was killed); replaying up to it",
                        self.path, pending[0])
        if self._bad:
            log.warning("%s: %d malformed line(s) left out (first: line %d)", self.path, len(self._bad),
                        min(self._bad))
        self.mode = self.header.get("mode", "trades")
        self.kind = "bars" if self.mode == "klines" else "trades"
        self.label = self.header["interval"]
        self.symbols = tuple(self.header["symbol"].split(","))
        self.range = ReplayRange(self.header["symbol"], self.header["category"],
                                 self.header["started"] if start_ns is None else start_ns,
                                 end if end_ns is None else end_ns)
        self.total_rows = self._last_line - 1 - len(self._bad) if self._last_line else 0
        self.bad_rows = len(self._bad)
        self.cut_start = self.range.start  # a live session starts part-way through a bar

    def run(self, bus: Bus, progress: Progress | None = None,
            fine: Callable[[], bool] | None = None) -> None:
        """Decode and send every recorded input in order (each input is its own batch, as
        live, so ``fine`` is not needed)."""
        decoders = {s: FeedDecoder(s, self.mode, self.label) for s in self.symbols}
        only = decoders[self.symbols[0]] if len(self.symbols) == 1 else None
        start, end = self.range.start, self.range.end
        bad = 0
        with open(self.path, encoding="utf-8") as fh:
            fh.readline()
            for number, line in enumerate(fh, 2):
                if number > self._last_line:
                    break
                if number in self._bad:
                    continue
                entry = json.loads(line)
                received = entry["t"]
                if entry["k"] == "end" or received > end:
                    break
                if received >= start:
                    try:
                        decoder = decoders[entry["s"]] if "s" in entry or only is None else only
                        events = decoder.decode(entry["k"], received, entry.get("d"))
                    except (KeyError, TypeError, ValueError, IndexError) as exc:
                        bad += 1
                        log.warning("%s:%d: malformed %s input left out (%r)", self.path, number,
                                    entry["k"], exc)
                        continue
                    for event in events:
                        bus.process(event)
                if progress is not None and number % 1024 == 0:
                    progress(1024)
        self.bad_rows = len(self._bad) + bad + sum(d.malformed for d in decoders.values())


_HEADER_KEYS = {"symbol": str, "category": str, "interval": str, "started": int}


def _header(path: Path, line: str) -> dict[str, Any]:
    """The recording's header line, checked: its version, symbol, interval and start."""
    try:
        header = json.loads(line)
    except ValueError:
        raise ArchiveError(f"{path}: not a papertape recording") from None
    if not isinstance(header, dict) or header.get("papertape_recording") != FORMAT_VERSION:
        raise ArchiveError(f"{path}: not a papertape recording (version {FORMAT_VERSION})")
    for key, kind in _HEADER_KEYS.items():
        if not isinstance(header.get(key), kind) or isinstance(header.get(key), bool):
            raise ArchiveError(f"{path}: the recording header has no valid {key!r}")
    symbols = header["symbol"].split(",")
    for symbol in symbols:
        if not SYMBOL.fullmatch(symbol):
            raise ArchiveError(f"{path}: the recording header's symbol {symbol[:40]!r} is not a "
                               "Bybit symbol")
    if len(set(symbols)) != len(symbols):
        raise ArchiveError(f"{path}: the recording header lists a symbol twice")
    if sanity.bad_time(np.array([header["started"]], dtype=np.float64)).any():
        raise ArchiveError(f"{path}: the recording header's start time is before 2009 or in the future")
    try:
        parse_interval(header["interval"])
    except ValueError as exc:
        raise ArchiveError(f"{path}: the recording header's interval: {exc}") from None
    return header


def _entry_time(line: str, previous: int) -> int | None:
    """An entry's receive time, or None when the line is not a well-formed entry or its time
    lies more than a day before the session start or past the plausible present."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("k"), str):
        return None
    t = entry.get("t")
    if not isinstance(t, int) or isinstance(t, bool) or t < previous - sanity.NS_PER_DAY \
            or t > sanity.max_ts_ns():
        return None
    return t
