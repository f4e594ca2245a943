"""``--symbols`` with ``--data``: each file assigned to its symbol, one replay source per
symbol, merged into one stream (:mod:`engine.feeds.history.portfolio`).

Trade archives name their symbol; kline files take it from a ``SYMBOL=PATH`` prefix or
from the name ``papertape fetch`` gives them (``SYMBOL-1m-2025-06-01-2025-06-02.csv``). A
symbol without data in the range, or data of a symbol that was not asked for, is refused.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from engine.bars.aggregator import parse_interval
from engine.bars.kline_files import BarFileError
from engine.core.symbols import split_market
from engine.feeds.history.archive import ArchiveError, TradeArchive
from engine.feeds.history.portfolio import MergedKlineReplay, MergedTradeReplay
from engine.feeds.history.replay import KlineReplay, TradeReplay
from engine.feeds.history.sources import DataError, _kline_source, expand, file_kind, split_symbol

FETCHED_KLINES = re.compile(
    r"(?P<symbol>[A-Z0-9]{1,30}(?:-[A-Z0-9]{1,12}){0,4}?)-\d+[smhdw]-\d{4}-\d{2}-\d{2}")


def is_portfolio(patterns: list[str] | tuple[str, ...], symbols: tuple[str, ...]) -> bool:
    """True when the run holds several symbols, a market of another category than the run's
    (``spot:BTCUSDT``, which only a portfolio's sources name) or names a file's symbol with
    ``SYMBOL=``; ``symbols`` are the run's names for them (``RunSection.portfolio``)."""
    return (len(symbols) > 1 or any(":" in s for s in symbols)
            or any(split_symbol(p)[0] is not None for p in patterns))


def is_recording(patterns: list[str] | tuple[str, ...]) -> bool:
    """True when the data is one recording of a live session, which names its own symbols
    (a portfolio's recording replays as that portfolio)."""
    paths = expand(patterns)
    return len(paths) == 1 and file_kind(paths[0]) == "recording"


def fetched_symbol(path: Path) -> str | None:
    """The symbol in the name ``papertape fetch`` gives a kline file, or None."""
    match = FETCHED_KLINES.match(path.name)
    return match.group("symbol") if match else None


def files_by_symbol(patterns: list[str] | tuple[str, ...], symbols: tuple[str, ...] = (),
                    category: str = "linear") -> tuple[str, dict[str, list[Path]]]:
    """The data's one kind and its files per symbol, named as the run's ``symbols`` name them
    (``spot:SYMBOL``: :func:`engine.core.symbols.market_name`), in the order they first appear.
    A kline file that names no symbol is the symbol of a run of one, as without ``--symbols``."""
    groups: dict[str, list[Path]] = {}
    kinds: set[str] = set()
    held_as: dict[str, tuple[str, Path]] = {}  # each name's category of trade archive, and its first file
    mixed = any(":" in s for s in symbols)
    for pattern in patterns:
        named, _ = split_symbol(pattern)
        for path in expand([pattern]):
            kind = file_kind(path)
            kinds.add(kind)
            if kind == "trades":
                try:
                    info = TradeArchive(path).info()
                except ArchiveError as exc:
                    raise DataError(str(exc)) from None
                symbol = _archive_name(path, info.category, info.symbol, named, symbols, category, mixed)
                first_category, first = held_as.setdefault(symbol, (info.category, path))
                if first_category != info.category:
                    raise DataError(f"{path}: a {info.category} archive of {info.symbol} beside {first}, a "
                                    f"{first_category} one; to trade both markets, list "
                                    f"spot:{info.symbol} in --symbols")
            elif kind == "klines":
                given = named or fetched_symbol(path) or (symbols[0] if len(symbols) == 1 else None)
                if given is None:
                    raise DataError(f"{path}: a kline file names no symbol; give it as SYMBOL={path}")
                prefix, colon, bare = given.partition(":")
                symbol = bare if colon and prefix == category else given
            elif kind == "recording":
                raise DataError(f"{path}: a recording replays on its own (it names its symbols), "
                                "not with other files")
            else:
                raise DataError(f"{path}: a ledger is not replayable data (use it with `papertape train`)")
            group = groups.setdefault(symbol, [])
            if path not in group:
                group.append(path)
    if len(kinds) > 1:
        raise DataError(f"--data mixes kinds of file ({', '.join(sorted(kinds))}); give one kind")
    return kinds.pop(), groups


def _archive_name(path: Path, held_category: str, held: str, named: str | None,
                  symbols: tuple[str, ...], category: str, mixed: bool) -> str:
    """The run's name for a trade archive of ``held`` in ``held_category``: ``spot:SYMBOL`` when
    the run lists it so; in a run that mixes categories a bare name is the run's category."""
    if named is not None and (named.rpartition(":")[2] != held
                              or named.partition(":")[0] not in (named, held_category)):
        raise DataError(f"{path}: {named}= names a {held_category} trade archive of {held}")
    prefixed = f"{held_category}:{held}"
    if prefixed in symbols:
        return prefixed
    if mixed and held in symbols and held_category != category:
        raise DataError(f"{path}: a {held_category} archive of {held}, which --symbols lists as "
                        f"{category}; name it {prefixed} to trade the {held_category} market")
    return held


def open_portfolio(
    patterns: list[str] | tuple[str, ...],
    *,
    symbols: tuple[str, ...],
    category: str,
    interval: str | None,
    start_ns: int | None = None,
    end_ns: int | None = None,
    cache_root: str | None = None,
) -> MergedTradeReplay | MergedKlineReplay:
    """One merged source over every symbol's files; ``symbols`` must be exactly the data's."""
    kind, groups = files_by_symbol(patterns, symbols, category)
    extra = [s for s in groups if s not in symbols]
    if extra:
        raise DataError(f"--data holds {', '.join(extra)}, which --symbols {','.join(symbols)} does not list")
    missing = [s for s in symbols if s not in groups]
    if missing:
        raise DataError(f"--symbols {','.join(symbols)}: no data file holds {', '.join(missing)}")
    try:
        if kind == "trades":
            archives = {s: [TradeArchive(p, cache_root) for p in groups[s]] for s in symbols}
            for s in symbols:
                _check_in_range(s, [a.info() for a in archives[s]], start_ns, end_ns)
            merged = MergedTradeReplay([_named(TradeReplay(archives[s], start_ns, end_ns), s)
                                        for s in symbols])
            merged.cover_last_bar(parse_interval(interval or "1m"))
            return merged
        klines: list[KlineReplay] = []
        for s in symbols:
            try:
                klines.append(_kline_source(groups[s], s, split_market(s, category)[0], interval,
                                            start_ns, end_ns, cache_root))
            except ArchiveError as exc:
                raise DataError(f"{s}: {exc}") from None
        return MergedKlineReplay(klines)
    except (ArchiveError, BarFileError) as exc:
        raise DataError(str(exc)) from None


def _named(replay: TradeReplay, name: str) -> TradeReplay:
    """``replay`` sending its trades as the run's ``name`` for the symbol (``spot:BTCUSDT``)."""
    replay.range = replace(replay.range, symbol=name)
    return replay


def _check_in_range(symbol: str, infos: list, start_ns: int | None, end_ns: int | None) -> None:
    """Refuse a symbol none of whose trades fall in the replay range."""
    lo = start_ns if start_ns is not None else min(i.first_ts for i in infos)
    hi = end_ns if end_ns is not None else max(i.last_ts for i in infos) + 1
    if not any(i.rows and i.first_ts < hi and i.last_ts >= lo for i in infos):
        raise DataError(f"{symbol}: no trades in the replay range")
