"""Recordings of live sessions: every feed input with its receive time, as JSON lines, and
their replay through the replay clock.

The first line is a header (``papertape_recording``, symbol, category, mode, interval and
the session start); each further line is ``{"t": received_ns, "k": kind, "d": payload}``
(``ws`` payloads are the raw message text); the last is ``{"t": end_ns, "k": "end"}``. A
replay decodes the inputs with the live :class:`~engine.feeds.live.feed.FeedDecoder` and
sends each event at its receive time, so bars, orders and fills come out as they did live.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from engine.core.bus import Bus
from engine.feeds.history.archive import ArchiveError
from engine.feeds.history.replay import Progress, ReplayRange
from engine.feeds.live.feed import FeedDecoder

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

    def write(self, kind: str, received: int, payload: Any) -> None:
        self._fh.write(json.dumps({"t": received, "k": kind, "d": payload}, separators=(",", ":")) + "\n")
        self.lines += 1
        if self.lines % self.flush_every == 0:
            self._fh.flush()

    def close(self, end_ns: int) -> None:
        self._fh.write(json.dumps({"t": end_ns, "k": "end"}) + "\n")
        self._fh.close()


class RecordingReplay:
    """A recorded live session as a replay source."""

    def __init__(self, paths: list[Path], start_ns: int | None = None, end_ns: int | None = None) -> None:
        if len(paths) != 1:
            raise ArchiveError("replay one recording at a time")
        self.path = paths[0]
        with open(self.path, encoding="utf-8") as fh:
            try:
                self.header = json.loads(fh.readline())
            except ValueError:
                raise ArchiveError(f"{self.path}: not a papertape recording") from None
            if self.header.get("papertape_recording") != FORMAT_VERSION:
                raise ArchiveError(f"{self.path}: not a papertape recording (version 1)")
            end, lines = self.header["started"], 0
            for line in fh:
                try:
                    end = json.loads(line)["t"]
                except (ValueError, KeyError):
                    log.warning("%s: line %d is cut off (the session was killed); replaying up to it",
                                self.path, lines + 2)
                    break
                lines += 1
        self.mode = self.header.get("mode", "trades")
        self.kind = "bars" if self.mode == "klines" else "trades"
        self.label = self.header["interval"]
        self.range = ReplayRange(self.header["symbol"], self.header["category"],
                                 self.header["started"] if start_ns is None else start_ns,
                                 end if end_ns is None else end_ns)
        self.total_rows = lines
        self.bad_rows = 0
        self.cut_start = self.range.start  # a live session starts part-way through a bar

    def run(self, bus: Bus, progress: Progress | None = None,
            fine: Callable[[], bool] | None = None) -> None:
        """Decode and send every recorded input in order (each input is its own batch, as
        live, so ``fine`` is not needed)."""
        decoder = FeedDecoder(self.range.symbol, self.mode, self.label)
        start, end = self.range.start, self.range.end
        with open(self.path, encoding="utf-8") as fh:
            fh.readline()
            for count, line in enumerate(fh, 1):
                if count > self.total_rows:
                    break
                entry = json.loads(line)
                received = entry["t"]
                if entry["k"] == "end" or received > end:
                    break
                if received >= start:
                    for event in decoder.decode(entry["k"], received, entry["d"]):
                        bus.process(event)
                if progress is not None and count % 1024 == 0:
                    progress(1024)
        self.bad_rows = decoder.malformed
