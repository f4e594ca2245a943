"""Turn ``--data`` arguments (files or globs) into a replay source, telling trade archives,
kline CSVs, recordings and ledgers apart by their content, not their names."""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import pandas as pd

from engine.bars.aggregator import make_aggregator, parse_interval
from engine.bars.kline_files import (
    KLINE_COLUMNS,
    BarFileError,
    bars_to_frame,
    has_repeats,
    infer_interval_ms,
    infer_interval_ms_of,
    is_kline_header,
    sorted_by_open_time,
)
from engine.core.bus import Bus
from engine.core.clock import NS_PER_MS, ReplayClock
from engine.core.config import BarsSection
from engine.core.errors import UserError
from engine.core.events import Bar, Trades
from engine.core.symbols import SYMBOL
from engine.feeds.history.archive import ArchiveError, TradeArchive, read_header, trade_layout
from engine.feeds.history.kline_cache import FrameColumns, cached_klines
from engine.feeds.history.recording import RecordingReplay
from engine.feeds.history.replay import KlineReplay, TradeReplay
from engine.ledger.reader import ledger_bars


class DataError(UserError, ValueError):
    """Data that cannot be replayed; the message names the file and the problem."""


def split_symbol(pattern: str) -> tuple[str | None, str]:
    """``SYMBOL=PATH`` (or ``category:SYMBOL=PATH``) as ``(SYMBOL, PATH)``; a plain path (even
    one holding ``=``, such as ``date=2025/...``) as ``(None, PATH)``."""
    head, eq, rest = str(pattern).partition("=")
    prefix, colon, symbol = head.partition(":")
    if eq and rest and SYMBOL.fullmatch(symbol if colon else head) and (not colon or prefix.isalpha()):
        return head, rest
    return None, str(pattern)


def expand(patterns: list[str] | tuple[str, ...]) -> list[Path]:
    """Every file matched by ``patterns`` (paths or globs, each perhaps ``SYMBOL=``-prefixed),
    in sorted order, each once."""
    if not patterns:
        raise DataError("no data given: pass --data FILE or set [run] data in config.toml")
    found: list[Path] = []
    for given in patterns:
        pattern = split_symbol(given)[1]
        matches = sorted(glob.glob(str(Path(pattern).expanduser())))
        if not matches:
            raise DataError(f"no file matches {pattern!r}{_symbol_hint(given)}")
        found.extend(Path(m) for m in matches if Path(m).is_file())
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise DataError(f"{', '.join(patterns)} match only folders or special files (such as "
                        "/dev/null), no data file")
    return unique


def _symbol_hint(given: str) -> str:
    """Why a ``KEY=PATH`` whose path exists was not read as ``SYMBOL=PATH``: its key is no
    Bybit symbol (``btcusdt=``); empty otherwise."""
    head, eq, rest = given.partition("=")
    if eq and rest and glob.glob(str(Path(rest).expanduser())):
        return (f": {head!r} is not a Bybit symbol (upper-case letters and digits, e.g. BTCUSDT), "
                f"so {given!r} was read as a file name")
    return ""


def file_kind(path: Path) -> str:
    """``trades``, ``klines``, ``recording`` or ``ledger`` from a file's first bytes; a file
    that cannot be read (no permission, an I/O error) is a :class:`DataError` naming it."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if head.startswith(b"SQLite format 3"):
        return "ledger"
    if path.suffix == ".jsonl" or head.lstrip().startswith(b"{"):
        return "recording"
    try:
        header = read_header(path)
    except ArchiveError as exc:
        raise DataError(str(exc)) from None
    if trade_layout(header):
        return "trades"
    if is_kline_header(header):
        return "klines"
    raise DataError(f"{path}: unknown data format (header {','.join(header)[:120]!r})")


def data_symbols(patterns: list[str] | tuple[str, ...]) -> set[str]:
    """The symbols trade archives or a recording hold (empty for klines, which name none)."""
    paths = expand(patterns)
    symbols: set[str] = set()
    for path in paths:
        kind = file_kind(path)
        if kind == "trades":
            symbols.add(TradeArchive(path).info().symbol)
        elif kind == "recording":
            symbols.add(RecordingReplay([path]).range.symbol)
    return symbols


def check_data_symbol(patterns: list[str] | tuple[str, ...], symbol: str) -> None:
    """Refuse a ``--symbol`` that the data does not hold (trade archives and recordings
    name their own; a kline file takes the symbol it is given)."""
    held = data_symbols(patterns)
    if held and symbol not in held:
        raise DataError(f"--symbol {symbol}: the data holds {', '.join(sorted(held))}, not {symbol}")


def open_source(
    patterns: list[str] | tuple[str, ...],
    *,
    symbol: str,
    category: str,
    interval: str | None,
    start_ns: int | None = None,
    end_ns: int | None = None,
    cache_root: str | None = None,
) -> TradeReplay | KlineReplay | RecordingReplay:
    """A replay source over the given files, which must all be of one kind."""
    paths = expand(patterns)
    kinds = {p: file_kind(p) for p in paths}
    distinct = set(kinds.values())
    if len(distinct) > 1:
        raise DataError(f"--data mixes kinds of file ({', '.join(sorted(distinct))}); give one kind")
    kind = distinct.pop()
    try:
        if kind == "trades":
            archives = [TradeArchive(p, cache_root) for p in paths]
            replay = TradeReplay(archives, start_ns, end_ns)
            replay.cover_last_bar(parse_interval(interval or "1m"))
            return replay
        if kind == "klines":
            return _kline_source(paths, symbol, category, interval, start_ns, end_ns, cache_root)
    except (ArchiveError, BarFileError) as exc:
        raise DataError(str(exc)) from None
    if kind == "recording":
        named = next((p for p in patterns if split_symbol(p)[0] is not None), None)
        if named is not None:
            raise DataError(f"{named}: a recording names its own symbols; give it without "
                            f"{split_symbol(named)[0]}=")
        try:
            return RecordingReplay(paths, start_ns, end_ns)
        except ArchiveError as exc:
            raise DataError(str(exc)) from None
    raise DataError(f"{paths[0]}: a ledger is not replayable data (use it with `papertape train`)")


def _kline_source(paths, symbol, category, interval, start_ns, end_ns, cache_root=None) -> KlineReplay:
    """One symbol's kline files as a replay: one file at its own interval straight from the
    columnar cache (memory flat in the data); several files, or a coarser ``interval``, joined
    or resampled in memory first."""
    cached = [cached_klines(p, cache_root) for p in paths]  # each sorted, refused if it repeats a bar
    if len(cached) == 1:
        step_ms = infer_interval_ms_of(cached[0].open_blocks, str(paths[0]))
        if interval is None or _interval_ms(interval) == step_ms:
            label = parse_interval(f"{step_ms // 1000}s").label
            return KlineReplay(cached[0], symbol, category, label, step_ms, start_ns, end_ns)
    frames = [c.frame() for c in cached]
    frame = frames[0]
    if len(frames) > 1:
        frame = sorted_by_open_time(pd.concat(frames, ignore_index=True))
        if has_repeats(frame["open_time"].to_numpy()):
            raise DataError("kline files overlap (duplicate open_time); give each period once")
    step_ms = infer_interval_ms(frame["open_time"].to_numpy())
    label = parse_interval(f"{step_ms // 1000}s").label
    if interval is not None:
        wanted_ms = _interval_ms(interval)
        if wanted_ms != step_ms:
            if wanted_ms % step_ms:
                raise DataError(f"the klines are {label} bars; {parse_interval(interval).label} "
                                "is not a multiple")
            frame = resample_klines(frame, wanted_ms, parse_interval(interval).offset_ns // NS_PER_MS)
            label, step_ms = parse_interval(interval).label, wanted_ms
    return KlineReplay(FrameColumns(frame.reset_index(drop=True)), symbol, category, label, step_ms,
                       start_ns, end_ns)


def _interval_ms(interval: str) -> int:
    """The length of time bars ``interval`` in ms; kline data gives no other kind of bar."""
    wanted = parse_interval(interval)
    if not wanted.is_time:
        raise DataError(f"kline data can only give time bars, not {wanted.label}")
    return int(wanted.size) // NS_PER_MS


def resample_klines(frame: pd.DataFrame, interval_ms: int, offset_ms: int = 0) -> pd.DataFrame:
    """Combine bars into longer bars of ``interval_ms`` (first open, max high, min low,
    last close, summed volume, turnover and trades)."""
    key = (frame["open_time"].to_numpy(dtype=np.int64) - offset_ms) // interval_ms
    grouped = frame.groupby(key, sort=True)
    out = pd.DataFrame({
        "open_time": grouped["open_time"].first().index.to_numpy() * interval_ms + offset_ms,
        "open": grouped["open"].first().to_numpy(),
        "high": grouped["high"].max().to_numpy(),
        "low": grouped["low"].min().to_numpy(),
        "close": grouped["close"].last().to_numpy(),
        "volume": grouped["volume"].sum().to_numpy(),
        "turnover": grouped["turnover"].sum().to_numpy(),
        "trades": grouped["trades"].sum().to_numpy(),
    })
    return out


def aggregate_bars(source, interval: str, *, close_delay_ns: int = 0, empty: str = "flat",
                   first_partial: str = "skip", progress=None) -> list[Bar]:
    """Replay trades (archives or a recording, of one symbol or several) through a bus into
    bars of ``interval``: one aggregator per symbol on the shared clock, as a run has."""
    clock = ReplayClock(source.range.start)
    bus = Bus(clock)
    bars: list[Bar] = []
    spec = parse_interval(interval)
    options = {"inverse": source.range.category == "inverse"}
    if spec.is_time:
        options |= {"close_delay_ns": close_delay_ns, "empty": empty,
                    "first_partial": first_partial, "start_ns": source.cut_start}
    symbols = source.range.symbol.split(",")
    aggregators = {s: make_aggregator(s, spec, clock, bus.publish, **options) for s in symbols}
    if len(aggregators) == 1:
        bus.subscribe(Trades, aggregators[symbols[0]].on_trades)
    else:
        bus.subscribe(Trades, lambda trades: aggregators[trades.symbol].on_trades(trades))
    bus.subscribe(Bar, bars.append)
    if spec.is_time:
        for aggregator in aggregators.values():
            aggregator.start_at(source.range.start)
    source.run(bus, progress)
    bus.advance_to(source.range.end + close_delay_ns)
    return bars


def _ledger_klines(files: list[Path], interval: str) -> pd.DataFrame:
    """Bars at ``interval`` from ledgers: those recorded at it, or else combined from the
    coarsest recorded interval that divides it. Bars of several symbols are refused, and
    so is an interval the recorded bars cannot make (finer, or not a multiple)."""
    frame = pd.concat([ledger_bars(p) for p in files], ignore_index=True)
    names = ", ".join(str(p) for p in files)
    symbols = sorted(frame["symbol"].unique())
    if len(symbols) > 1:
        raise DataError(f"{names}: the ledger holds bars of several symbols ({', '.join(symbols)}); "
                        "train on a ledger of one")
    wanted = parse_interval(interval)
    recorded = {label: parse_interval(label) for label in frame["interval"].unique()}
    usable = [label for label, spec in recorded.items() if label == wanted.label or (
        spec.is_time and wanted.is_time and spec.size < wanted.size and wanted.size % spec.size == 0)]
    if not usable:
        raise DataError(f"{names}: the ledger holds {', '.join(sorted(recorded))} bars of {symbols[0]}; "
                        f"{wanted.label} bars cannot be made from them")
    label = wanted.label if wanted.label in usable else max(usable, key=lambda k: recorded[k].size)
    bars = frame[frame["interval"] == label].drop_duplicates("open_time").sort_values("open_time")
    bars = bars[list(KLINE_COLUMNS)]
    if label != wanted.label:
        bars = resample_klines(bars, wanted.size // NS_PER_MS, wanted.offset_ns // NS_PER_MS)
    return bars.reset_index(drop=True)


def source_bars(source: TradeReplay | RecordingReplay | KlineReplay, interval: str,
                settings: BarsSection, progress=None) -> pd.DataFrame:
    """The bars a replay of ``source`` makes at ``interval`` under the ``[bars]`` settings,
    in the kline format: a kline source's own, trades aggregated (``progress`` gets rows)."""
    if isinstance(source, KlineReplay):
        return source.frame
    return bars_to_frame(_trade_bars(source, interval, settings, progress))


def bars_by_symbol(source, interval: str, settings: BarsSection) -> dict[str, pd.DataFrame]:
    """:func:`source_bars` of every symbol of ``source`` (one symbol's, or a merged
    portfolio's, whose symbols' kline sources are in ``replays``), in the run's symbol order."""
    if hasattr(source, "replays") and source.kind == "bars":
        return {r.range.symbol: r.frame for r in source.replays}
    if isinstance(source, KlineReplay):
        return {source.range.symbol: source.frame}
    bars = _trade_bars(source, interval, settings)
    return {s: bars_to_frame([b for b in bars if b.symbol == s]) for s in source.range.symbol.split(",")}


def _trade_bars(source, interval: str, settings: BarsSection, progress=None) -> list[Bar]:
    return aggregate_bars(source, interval, close_delay_ns=settings.close_delay_ms * NS_PER_MS,
                          empty=settings.empty, first_partial=settings.first_partial, progress=progress)


def load_bars_from(paths: list[str], interval: str, settings: BarsSection | None = None) -> pd.DataFrame:
    """Bars at ``interval`` in the kline format from archives, klines or a ledger, under the
    ``[bars]`` settings (their defaults when none are given)."""
    files = expand(paths)
    kinds = {file_kind(p) for p in files}
    if kinds == {"ledger"}:
        return _ledger_klines(files, interval)
    source = open_source(paths, symbol="", category="linear", interval=interval)
    return source_bars(source, interval, settings or BarsSection())
