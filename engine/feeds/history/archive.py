"""Bybit public trade archives: parse once into a columnar cache, then read in chunks.

Two layouts exist (BYBIT.md section 9), told apart by header, never by position:

- derivatives: ``timestamp,symbol,side,size,price,...,trdMatchID,...[,RPI]`` with epoch
  seconds as a decimal fraction and ``Buy``/``Sell`` sides;
- spot: ``id,timestamp,price,volume,side[,rpi]`` with integer milliseconds and lower-case
  ``buy``/``sell`` sides.

Parsing streams the CSV (plain or gzipped) in chunks. Malformed rows (unparseable, NaN or
infinite numbers, prices and sizes outside :mod:`engine.core.sanity`'s bounds, stamps before
2009 or in the future or outside a daily archive's day, unknown side, missing fields) are
left out, counted by reason and reported with file and line. Rows are sorted by time
(stable, so trades sharing a timestamp keep their file order). The result is cached as raw column files
(``ts`` int64 ns, ``price`` and ``size`` float64, ``side`` int8, ``trade_id`` S36) plus a
``meta.json``, keyed by the file's path, size and mtime, so a second replay reads binary
columns instead of CSV. Reading is by byte offset, so memory stays bounded by the chunk.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from engine.core import progress, sanity
from engine.core.clock import NS_PER_S
from engine.core.errors import UserError

log = logging.getLogger(__name__)

CACHE_VERSION = 3  # 2: rows outside the sanity bounds are malformed; 3: repeated trades
PARSE_CHUNK_ROWS = 100_000
ID_DTYPE = np.dtype("S36")
COLUMNS = {"ts": np.dtype(np.int64), "price": np.dtype(np.float64),
           "size": np.dtype(np.float64), "side": np.dtype(np.int8), "trade_id": ID_DTYPE}
_SIDES = {"Buy": 1, "Sell": -1, "buy": 1, "sell": -1, "BUY": 1, "SELL": -1}
_DAY_NAME = re.compile(r"^(?P<symbol>[A-Z0-9-]+?)_?(?P<day>\d{4}-\d{2}-\d{2})\.csv(\.gz)?$")
_EXAMPLES_KEPT = 20

DERIVATIVES_COLUMNS = ("timestamp", "symbol", "side", "size", "price", "trdMatchID")
SPOT_COLUMNS = ("id", "timestamp", "price", "volume", "side")


class ArchiveError(UserError, ValueError):
    """A file that cannot be read as a trade archive at all (as opposed to bad rows)."""


@dataclass(frozen=True)
class ArchiveInfo:
    """What a parsed archive holds: its layout, symbol, rows kept and left out, time span.

    ``range_start``/``range_end`` bound the period the file covers: a whole UTC day for a
    daily archive (named like Bybit's), else its first trade to just past its last.
    """

    path: str
    layout: str
    symbol: str
    category: str
    rows: int
    bad_rows: int
    bad_by_reason: dict[str, int]
    bad_examples: list[str]
    first_ts: int
    last_ts: int
    range_start: int
    range_end: int
    sorted_rows: int


@dataclass(frozen=True)
class TradeChunk:
    """A slice of an archive's columns, sorted by time."""

    ts: np.ndarray
    price: np.ndarray
    size: np.ndarray
    side: np.ndarray
    trade_id: np.ndarray | None


def read_header(path: str | Path) -> list[str]:
    """The first line of a CSV (plain or gzipped), split on commas."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
            line = fh.readline()
    except (OSError, UnicodeDecodeError, EOFError, zlib.error) as exc:
        raise ArchiveError(f"{path}: cannot read ({exc})") from None
    return [name.strip() for name in line.strip().split(",")]


def trade_layout(header: list[str]) -> str | None:
    """``derivatives`` or ``spot`` for a trade-archive header, else None."""
    if all(c in header for c in DERIVATIVES_COLUMNS):
        return "derivatives"
    if all(c in header for c in SPOT_COLUMNS):
        return "spot"
    return None


def default_cache_root() -> Path:
    """``$PAPERTAPE_CACHE``, else ``$XDG_CACHE_HOME/papertape``, else ``~/.cache/papertape``."""
    if env := os.environ.get("PAPERTAPE_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "papertape"


class TradeArchive:
    """One trade archive file and its columnar cache."""

    def __init__(self, path: str | Path, cache_root: str | Path | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ArchiveError(f"{self.path}: no such file")
        self.header = read_header(self.path)
        layout = trade_layout(self.header)
        if layout is None:
            raise ArchiveError(
                f"{self.path}: not a Bybit trade archive (header {','.join(self.header)!r})"
            )
        self.layout = layout
        root = Path(cache_root) if cache_root is not None else default_cache_root()
        self.cache_dir = root / "trades" / self._cache_key()
        self._info: ArchiveInfo | None = None

    def _cache_key(self) -> str:
        stat = self.path.stat()
        ident = f"{self.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{CACHE_VERSION}"
        digest = hashlib.sha1(ident.encode()).hexdigest()[:16]
        return f"{self.path.name}-{digest}"

    @property
    def cached(self) -> bool:
        return (self.cache_dir / "meta.json").is_file()

    def info(self) -> ArchiveInfo:
        """The archive's summary, parsing the CSV into the cache first if needed."""
        if self._info is None:
            if not self.cached:
                self._parse_into_cache()
            meta = json.loads((self.cache_dir / "meta.json").read_text())
            self._info = ArchiveInfo(**meta)
        return self._info

    def chunks(
        self,
        chunk_rows: int = 1_000_000,
        start_ns: int | None = None,
        end_ns: int | None = None,
        with_ids: bool = False,
    ) -> Iterator[TradeChunk]:
        """Yield the cached columns in chunks of at most ``chunk_rows`` rows, limited to
        ``start_ns <= ts < end_ns``."""
        info = self.info()
        first, last = 0, info.rows
        if start_ns is not None or end_ns is not None:
            ts_all = np.memmap(self.cache_dir / "ts.bin", dtype=np.int64, mode="r")
            if start_ns is not None:
                first = int(np.searchsorted(ts_all, start_ns, side="left"))
            if end_ns is not None:
                last = int(np.searchsorted(ts_all, end_ns, side="left"))
            del ts_all
        for lo in range(first, last, chunk_rows):
            n = min(chunk_rows, last - lo)
            cols = {name: self._read(name, lo, n) for name in ("ts", "price", "size", "side")}
            ids = self._read("trade_id", lo, n) if with_ids else None
            yield TradeChunk(cols["ts"], cols["price"], cols["size"], cols["side"], ids)

    def _read(self, name: str, offset: int, count: int) -> np.ndarray:
        dtype = COLUMNS[name]
        return np.fromfile(self.cache_dir / f"{name}.bin", dtype=dtype, count=count,
                           offset=offset * dtype.itemsize)

    def _parse_into_cache(self) -> None:
        parsed = parse_trade_csv(self.path, self.layout)
        self.cache_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".parse-", dir=self.cache_dir.parent))
        try:
            for name, array in parsed.columns.items():
                np.ascontiguousarray(array, dtype=COLUMNS[name]).tofile(tmp / f"{name}.bin")
            (tmp / "meta.json").write_text(json.dumps(parsed.meta))
            try:
                os.replace(tmp, self.cache_dir)
            except OSError:
                if not self.cached:  # another process did not win the race: a real error
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class _Parsed:
    columns: dict[str, np.ndarray]
    meta: dict


def _symbol_from_name(path: Path) -> tuple[str | None, int | None]:
    match = _DAY_NAME.match(path.name)
    if not match:
        return None, None
    day = datetime.strptime(match.group("day"), "%Y-%m-%d").replace(tzinfo=UTC)
    return match.group("symbol"), int(day.timestamp()) * NS_PER_S


def parse_trade_csv(path: Path, layout: str) -> _Parsed:
    """Parse a whole archive into sorted columns and a summary; bad rows are reported."""
    if layout == "derivatives":
        usecols = ["timestamp", "symbol", "side", "size", "price", "trdMatchID"]
        names = {"timestamp": "ts", "size": "size", "price": "price", "trdMatchID": "id"}
    else:
        usecols = ["id", "timestamp", "price", "volume", "side"]
        names = {"timestamp": "ts", "volume": "size", "price": "price", "id": "id"}
    parts: dict[str, list[np.ndarray]] = {k: [] for k in COLUMNS}
    reasons: Counter[str] = Counter()
    examples: list[str] = []
    symbols: Counter[str] = Counter()
    id_column = "trdMatchID" if layout == "derivatives" else "id"
    name_symbol, day_start = _symbol_from_name(path)
    try:
        reader = pd.read_csv(
            path, usecols=usecols, dtype={"side": "category", id_column: str},
            chunksize=PARSE_CHUNK_ROWS, skip_blank_lines=False, compression="infer",
        )
        for chunk in progress.bar(iterable=_chunks_quietly(reader), unit=" chunks", leave=False,
                                  desc=f"parse {path.name} (100k rows a chunk, once: then cached)"):
            if chunk.empty:  # a header without rows: no trades, said below
                continue
            chunk = chunk.rename(columns=names)
            line0 = int(chunk.index[0]) + 2  # 1-based, after the header line
            ts, price, size, side, ok = _clean_chunk(chunk, layout, reasons, examples, path, line0,
                                                     day_start)
            if layout == "derivatives":
                symbols.update(chunk["symbol"][ok].astype(str).value_counts().to_dict())
            parts["ts"].append(ts[ok])
            parts["price"].append(price[ok])
            parts["size"].append(size[ok])
            parts["side"].append(side[ok])
            parts["trade_id"].append(chunk["id"].to_numpy(dtype=object)[ok].astype(ID_DTYPE))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, EOFError, OSError,
            zlib.error) as exc:
        raise ArchiveError(f"{path}: cannot parse ({exc})") from None
    cols = {k: (np.concatenate(v) if v else np.empty(0, COLUMNS[k])) for k, v in parts.items()}
    ts = cols["ts"]
    if len(ts) == 0:
        detail = f": {sum(reasons.values())} malformed row(s) {dict(reasons)}, e.g. {examples[0]}" \
            if reasons else ""
        raise ArchiveError(f"{path}: no well-formed trades{detail}")
    unsorted = int(np.count_nonzero(np.diff(ts) < 0)) if len(ts) > 1 else 0
    if unsorted:
        if layout == "spot":  # ids are sequence numbers: break timestamp ties by them
            order = np.lexsort((_numeric_ids(cols["trade_id"]), ts))
        else:
            order = np.argsort(ts, kind="stable")
        cols = {k: v[order] for k, v in cols.items()}
        log.warning("%s: %d row(s) out of time order; sorted", path, unsorted)
    repeated = _repeated_trades(cols["ts"], cols["trade_id"])
    if repeated.any():
        reasons["repeated trade"] += int(repeated.sum())
        examples.append(f"{path}: trade {cols['trade_id'][repeated][0].decode(errors='replace')} "
                        "given more than once")
        cols = {k: v[~repeated] for k, v in cols.items()}
    symbol = symbols.most_common(1)[0][0] if symbols else (name_symbol or path.name.split(".")[0])
    if len(symbols) > 1:
        raise ArchiveError(f"{path}: holds several symbols {sorted(symbols)}; one per file")
    first = int(cols["ts"][0]) if len(ts) else 0
    last = int(cols["ts"][-1]) if len(ts) else 0
    if day_start is not None:
        range_start, range_end = day_start, day_start + 86400 * NS_PER_S
    else:
        range_start, range_end = first, last + 1
    bad = sum(reasons.values())
    if bad:
        log.warning("%s: %d malformed row(s) left out: %s (e.g. %s)", path, bad,
                    dict(reasons), examples[0])
    meta = {
        "path": str(path), "layout": layout, "symbol": symbol,
        "category": "spot" if layout == "spot" else _derivative_category(symbol),
        "rows": int(len(cols["ts"])), "bad_rows": bad, "bad_by_reason": dict(reasons),
        "bad_examples": examples, "first_ts": first, "last_ts": last,
        "range_start": range_start, "range_end": range_end, "sorted_rows": unsorted,
    }
    return _Parsed(cols, meta)


def _repeated_trades(ts: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Mask of the rows (sorted by time) that repeat an earlier row's trade: its time and
    trade id (two downloads joined in one file would count every trade twice). Only rows
    that share their time with a neighbour can repeat one; those are compared by a hash of
    the id first, and the few whose hashes meet by the ids themselves."""
    out = np.zeros(len(ts), dtype=bool)
    if len(ts) < 2:
        return out
    same = ts[1:] == ts[:-1]
    rows = np.flatnonzero(np.concatenate(([False], same)) | np.concatenate((same, [False])))
    if len(rows) == 0:
        return out
    ids = np.ascontiguousarray(ids[rows])
    words = ids.view(np.uint8).reshape(len(rows), -1)
    digest = np.zeros(len(rows), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(words.shape[1]):  # a polynomial hash of the id's bytes, a column at a time
            digest = digest * np.uint64(1_099_511_628_211) + words[:, k].astype(np.uint64)
    keyed = pd.DataFrame({"ts": ts[rows], "h": digest})
    meet = keyed.duplicated(keep=False).to_numpy()
    if meet.any():
        exact = pd.DataFrame({"ts": ts[rows][meet], "id": ids[meet]}).duplicated().to_numpy()
        out[rows[np.flatnonzero(meet)[exact]]] = True
    return out


def _chunks_quietly(reader) -> Iterator[pd.DataFrame]:
    """The reader's chunks without pandas' DtypeWarning: a column of mixed types is what a
    malformed row makes, and those rows are counted and reported by reason instead."""
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pd.errors.DtypeWarning)
            chunk = next(reader, None)
        if chunk is None:
            return
        yield chunk


def _derivative_category(symbol: str) -> str:
    """``inverse`` for coin-margined contracts (BTCUSD, BTCUSDH25), else ``linear``."""
    base = symbol.split("-")[0]
    return "inverse" if re.fullmatch(r"[A-Z]+USD([FGHJKMNQUVXZ]\d\d)?", base) else "linear"


def _numeric_ids(ids: np.ndarray) -> np.ndarray:
    try:
        return ids.astype(np.int64)
    except ValueError:
        return np.zeros(len(ids), dtype=np.int64)


def _clean_chunk(chunk, layout, reasons, examples, path, line0, day_start=None):
    """Columns of one parsed chunk, and a mask of the rows that are well-formed (a daily
    archive's rows must also lie in its UTC day)."""
    ts_raw = pd.to_numeric(chunk["ts"], errors="coerce").to_numpy(dtype=np.float64)
    price = pd.to_numeric(chunk["price"], errors="coerce").to_numpy(dtype=np.float64)
    size = pd.to_numeric(chunk["size"], errors="coerce").to_numpy(dtype=np.float64)
    sides = chunk["side"].astype("category")
    known = np.array([_SIDES.get(str(c), 0) for c in sides.cat.categories] + [0], dtype=np.int8)
    side = known[sides.cat.codes.to_numpy()]  # code -1 (missing) indexes the trailing 0
    with np.errstate(over="ignore"):
        ts_ns = ts_raw * (1e9 if layout == "derivatives" else 1e6)
    bad_ts = sanity.bad_time(ts_ns)
    with np.errstate(invalid="ignore"):
        safe = np.where(bad_ts, 0.0, ts_raw)
        if layout == "derivatives":
            ts = np.rint(safe * 1e6).astype(np.int64) * 1000
        else:
            ts = np.rint(safe).astype(np.int64) * 1_000_000
        outside = np.zeros(len(ts), dtype=bool) if day_start is None else \
            (ts < day_start) | (ts >= day_start + sanity.NS_PER_DAY)
    checks = (
        ("bad timestamp", bad_ts),
        ("outside the file's day", outside),
        ("bad price", sanity.bad_price(price)),
        ("bad size", sanity.bad_size(size)),
        ("bad value", sanity.bad_notional(price, size)),
        ("unknown side", side == 0),
    )
    ok = np.ones(len(chunk), dtype=bool)
    found: list[tuple[int, str]] = []
    for reason, bad in checks:
        bad &= ok  # one reason per row: the first that applies
        if bad.any():
            ok &= ~bad
            reasons[reason] += int(bad.sum())
            found += [(int(row), reason) for row in np.flatnonzero(bad)[:_EXAMPLES_KEPT]]
    room = max(0, _EXAMPLES_KEPT - len(examples))  # the first malformed rows in file order
    examples += [f"{path}:{line0 + row}: {reason}" for row, reason in sorted(found)[:room]]
    return ts, price, size, side, ok
