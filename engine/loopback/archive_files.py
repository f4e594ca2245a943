"""Trade-archive downloads in the layout of public.bybit.com (BYBIT.md section 9), served
from a local directory, with HTTP Range support so clients can resume.

``GET /trading/{SYMBOL}/{SYMBOL}{YYYY-MM-DD}.csv.gz`` and
``GET /spot/{SYMBOL}/{SYMBOL}_{YYYY-MM-DD}.csv.gz`` look for the file under
``DIR/trading/SYMBOL/`` (``DIR/spot/SYMBOL/``), then directly in ``DIR``; a missing day is
a 404. The ``cut`` fault sends half of a response's bytes and then drops the connection.
"""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from engine.loopback.faults import FaultState

CHUNK_BYTES = 64 * 1024
_DAY = r"\d{4}-\d{2}-\d{2}\.csv\.gz"
_SEPARATOR = {"trading": "", "spot": "_"}


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The byte span ``[first, last]`` of a single-range ``Range`` header, None to send the
    whole file; raises ValueError when the range cannot be satisfied."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", (header or "").strip())
    if not match or match.group(1) == match.group(2) == "":
        return None  # absent, multi-range or unparseable: the whole file, as RFC 9110 allows
    first, last = match.groups()
    if first == "":
        first, last = max(0, size - int(last)), size - 1
    else:
        first, last = int(first), min(int(last), size - 1) if last else size - 1
    if first >= size or first > last:
        raise ValueError
    return first, last


class ArchiveFiles:
    """Serves archive files from ``root``; ``requests`` logs each download (file, HTTP
    status, the Range asked for, whether the cut fault hit it)."""

    def __init__(self, root: Path, faults: FaultState) -> None:
        self.root, self.faults = root, faults
        self.requests: list[dict] = []

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/{kind:trading|spot}/{symbol}/{name}", self.get)]

    def _find(self, kind: str, symbol: str, name: str) -> Path | None:
        if not re.fullmatch(r"[A-Z0-9-]+", symbol):
            return None
        if not re.fullmatch(re.escape(symbol + _SEPARATOR[kind]) + _DAY, name):
            return None
        for path in (self.root / kind / symbol / name, self.root / name):
            if path.is_file():
                return path
        return None

    async def get(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        path = self._find(info["kind"], info["symbol"], info["name"])
        entry = {"file": info["name"], "range": request.headers.get("Range"), "status": 404, "cut": False}
        self.requests.append(entry)
        if path is None:
            raise web.HTTPNotFound(text=f"404: no archive {info['name']}\n")
        size = path.stat().st_size
        try:
            span = parse_range(request.headers.get("Range"), size)
        except ValueError:
            entry["status"] = 416
            raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"}) from None
        first, last = span if span is not None else (0, size - 1)
        entry["status"] = 206 if span is not None else 200
        response = web.StreamResponse(status=entry["status"])
        response.content_type = "application/gzip"
        response.content_length = last - first + 1
        response.headers["Accept-Ranges"] = "bytes"
        if span is not None:
            response.headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        await response.prepare(request)
        entry["cut"] = self.faults.take("cut_left", info["symbol"])
        cut_after = (last - first + 1) // 2 if entry["cut"] else None
        sent = 0
        with open(path, "rb") as fh:
            fh.seek(first)
            while sent < last - first + 1:
                block = fh.read(min(CHUNK_BYTES, last - first + 1 - sent))
                if cut_after is not None and sent + len(block) >= cut_after:
                    await response.write(block[: cut_after - sent])
                    request.transport.abort()
                    return response
                await response.write(block)
                sent += len(block)
        await response.write_eof()
        return response
