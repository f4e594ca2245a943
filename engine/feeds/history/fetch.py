"""Downloading Bybit history into a data directory: daily trade archives (resumable,
verified), closed klines over REST, and the instruments-info; ``papertape fetch`` drives it."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import re
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from tqdm import tqdm

from engine.bars.aggregator import parse_interval
from engine.bars.kline_files import BarFileError, read_kline_csv, write_kline_csv
from engine.core.clock import NS_PER_MS, NS_PER_S
from engine.core.paths import inside
from engine.core.symbols import check_symbol
from engine.feeds.history.archive import ArchiveError, ArchiveInfo, TradeArchive, read_header, trade_layout
from engine.feeds.live.rest import BybitRest, bybit_interval

log = logging.getLogger(__name__)

ATTEMPTS = 5
CHUNK_BYTES = 1 << 16


class FetchError(RuntimeError):
    """A download that failed for good."""


@dataclass
class DayResult:
    """What happened to one day's archive: downloaded, present, missing or failed."""

    day: str
    url: str
    path: str
    status: str
    bytes: int = 0
    rows: int = 0
    detail: str = ""


def archive_name(symbol: str, category: str, day: str) -> str:
    """Bybit's file name: ``{SYMBOL}{day}.csv.gz``, spot ``{SYMBOL}_{day}.csv.gz``."""
    return f"{symbol}_{day}.csv.gz" if category == "spot" else f"{symbol}{day}.csv.gz"


def archive_url(base: str, symbol: str, category: str, day: str) -> str:
    folder = "spot" if category == "spot" else "trading"
    return f"{base.rstrip('/')}/{folder}/{symbol}/{archive_name(symbol, category, day)}"


def days_between(start_ns: int, end_ns: int) -> list[str]:
    """The UTC days (``YYYY-MM-DD``) that overlap ``[start_ns, end_ns)``."""
    day = datetime.fromtimestamp(start_ns // NS_PER_S, UTC).date()
    days = []
    while datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * NS_PER_S < end_ns:
        days.append(day.isoformat())
        day += timedelta(days=1)
    return days


def check_gzip(path: Path) -> None:
    """Read a gzip file to the end, so a truncated or corrupt one raises (OSError/EOFError)."""
    with gzip.open(path, "rb") as fh:
        while fh.read(1 << 20):
            pass


def verify_archive(path: Path, symbol: str) -> ArchiveInfo:
    """Check that ``path`` is an intact trade archive of ``symbol`` with trades in it."""
    try:
        check_gzip(path)
    except (OSError, EOFError) as exc:
        raise ArchiveError(f"{path.name}: broken gzip ({exc})") from None
    if trade_layout(read_header(path)) is None:
        raise ArchiveError(f"{path.name}: not a trade archive (header {','.join(read_header(path))[:80]!r})")
    info = TradeArchive(path).info()
    if info.rows == 0:
        raise ArchiveError(f"{path.name}: no trades in it")
    if info.symbol != symbol:
        raise ArchiveError(f"{path.name}: holds {info.symbol}, not {symbol}")
    return info


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a ``Content-Range`` header; None where it does not say."""
    match = re.fullmatch(r"bytes (?:(\d+)-\d+|\*)/(\d+|\*)", (header or "").strip())
    if not match:
        return None, None
    first, total = match.groups()
    return (int(first) if first else None), (int(total) if total != "*" else None)


class _Retry(Exception):
    """A download attempt that ended early but can be resumed."""


async def download(session: aiohttp.ClientSession, url: str, part: Path, progress: bool) -> int | None:
    """Download ``url`` into ``part``, resuming from what it already holds; returns its size
    once complete, None when the server has no such file (404)."""
    problem = ""
    for attempt in range(ATTEMPTS):
        try:
            return await _attempt(session, url, part, progress)
        except (_Retry, aiohttp.ClientError, TimeoutError) as exc:
            problem = str(exc) if isinstance(exc, _Retry) else f"{type(exc).__name__}: {exc}"
        held = part.stat().st_size if part.exists() else 0
        log.warning("%s: interrupted (%s); resuming from byte %d", url, problem, held)
        await asyncio.sleep(min(30.0, 0.25 * 2**attempt))
    raise FetchError(f"{url}: incomplete after {ATTEMPTS} attempts ({problem})")


async def _attempt(session: aiohttp.ClientSession, url: str, part: Path, progress: bool) -> int | None:
    """One request, asking with Range for the bytes ``part`` does not hold yet."""
    have = part.stat().st_size if part.exists() else 0
    async with session.get(url, headers={"Range": f"bytes={have}-"} if have else {}) as resp:
        first, total = _content_range(resp.headers.get("Content-Range"))
        if resp.status == 404:
            return None
        if resp.status == 416:  # nothing left to send: complete, or not the server's file
            if total == have:
                return have
            part.unlink()
            raise _Retry("the partial file is longer than the server's")
        if resp.status == 206 and first != have:
            part.unlink()
            raise _Retry(f"the server resumed at byte {first}, not {have}")
        if resp.status == 429 or resp.status >= 500:
            raise _Retry(f"HTTP {resp.status}")
        if resp.status == 200:
            have, total = 0, resp.content_length
        elif resp.status != 206:
            raise FetchError(f"HTTP {resp.status} for {url}")
        with tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=part.name[:-5], leave=False,
                  disable=None if progress else True, file=sys.stderr) as bar, \
                open(part, "ab" if have else "wb") as fh:
            async for block in resp.content.iter_chunked(CHUNK_BYTES):
                fh.write(block)
                bar.update(len(block))
    size = part.stat().st_size
    if total is not None and size != total:
        raise _Retry(f"got {size:,} of {total:,} bytes")
    return size


async def fetch_day(session: aiohttp.ClientSession, symbol: str, category: str, day: str, out: Path,
                    base_url: str, progress: bool) -> DayResult:
    """Make sure ``out`` holds a verified archive of ``symbol`` for ``day``."""
    url = archive_url(base_url, symbol, category, day)
    dest = inside(out, out / archive_name(check_symbol(symbol), category, day))
    part = dest.with_name(dest.name + ".part")
    result = DayResult(day, url, str(dest), "failed")
    if dest.exists():
        try:
            info = verify_archive(dest, symbol)
        except (ArchiveError, OSError) as exc:
            log.warning("%s is corrupt (%s); downloading it again", dest, exc)
            dest.unlink()
        else:
            result.status, result.bytes, result.rows = "present", dest.stat().st_size, info.rows
            return result
    for _ in range(2):  # a file that arrives whole but does not verify gets one fresh download
        try:
            size = await download(session, url, part, progress)
        except FetchError as exc:
            result.detail = str(exc)
            return result
        if size is None:
            result.status, result.detail = "missing", f"HTTP 404: {url}"
            return result
        try:
            check_gzip(part)
            part.replace(dest)
            info = verify_archive(dest, symbol)
        except (ArchiveError, OSError, EOFError) as exc:
            result.detail = f"downloaded file does not verify: {exc}"
            log.warning("%s: %s", url, result.detail)
            part.unlink(missing_ok=True)
            dest.unlink(missing_ok=True)
            continue
        result.status, result.bytes, result.rows, result.detail = "downloaded", size, info.rows, ""
        return result
    return result


async def fetch_trades(symbol: str, category: str, days: list[str], out: Path, base_url: str,
                       progress: bool = True) -> list[DayResult]:
    """Fetch every day's archive in turn; one day's failure does not stop the others."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)
    results = []
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for day in tqdm(days, unit="day", desc=f"{symbol} archives", disable=None if progress else True,
                        file=sys.stderr):
            results.append(await fetch_day(session, symbol, category, day, out, base_url, progress))
    return results


def _stamp(ns: int) -> str:
    """A time for a file name: ``2025-06-01``, or ``2025-06-01T1230`` when not midnight."""
    moment = datetime.fromtimestamp(ns / NS_PER_S, UTC)
    return moment.strftime("%Y-%m-%d" if ns % (86400 * NS_PER_S) == 0 else "%Y-%m-%dT%H%M")


async def fetch_klines(rest: BybitRest, symbol: str, category: str, interval: str, start_ns: int,
                       end_ns: int, out: Path) -> dict:
    """Closed klines of ``[start, end)`` into one kline CSV. A file already there is kept
    when it reads and was written after ``end`` (so no candle of the range was still to come)."""
    label, code = parse_interval(interval).label, bybit_interval(interval)
    path = inside(out, out / f"{check_symbol(symbol)}-{label}-{_stamp(start_ns)}-{_stamp(end_ns)}.csv")
    start_ms, end_ms = start_ns // NS_PER_MS, end_ns // NS_PER_MS
    if path.exists() and path.stat().st_mtime_ns // NS_PER_MS >= end_ms:
        try:
            frame = read_kline_csv(path)
        except BarFileError as exc:
            log.warning("%s does not read (%s); fetching it again", path, exc)
        else:
            return {"file": str(path), "status": "present", "rows": len(frame), "gaps": 0}
    frame = await rest.klines(category, symbol, code, start_ms, end_ms)
    part = path.with_name(path.name + ".part")
    write_kline_csv(frame, part)
    part.replace(path)
    status = "downloaded" if len(frame) else "empty"
    return {"file": str(path), "status": status, "rows": len(frame), "gaps": len(frame.attrs["gaps"])}


async def fetch_instruments(rest: BybitRest, category: str, out: Path) -> dict:
    """The category's instruments into ``out/instruments.json``, keeping other categories'."""
    instruments = await rest.instruments(category)
    path = inside(out, out / "instruments.json")
    kept = []
    if path.exists():
        try:
            existing = json.loads(path.read_text())["instruments"]
            kept = [row for row in existing if row.get("category") != category]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("%s does not read (%s); replacing it", path, exc)
    rows = kept + [asdict(i) for i in sorted(instruments, key=lambda i: i.symbol)]
    fetched = datetime.now(UTC).isoformat(timespec="seconds")
    document = {"_source": f"Bybit instruments-info from {rest.base_url}, {category} fetched {fetched}",
                "instruments": rows}
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(document, indent=1) + "\n")
    part.replace(path)
    return {"file": str(path), "status": "downloaded", "count": len(instruments)}
