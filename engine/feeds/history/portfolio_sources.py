"""``--symbols`` with ``--data``: each file assigned to its symbol, one replay source per
symbol, merged into one stream (:mod:`engine.feeds.history.portfolio`).

Trade archives name their symbol; kline files take it from a ``SYMBOL=PATH`` prefix or
from the name ``papertape fetch`` gives them (``SYMBOL-1m-2025-06-01-2025-06-02.csv``). A
symbol without data in the range, or data of a symbol that was not asked for, is refused.
"""

from __future__ import annotations

import re
from pathlib import Path

from engine.bars.aggregator import parse_interval
from engine.bars.kline_files import BarFileError
from engine.feeds.history.archive import ArchiveError, TradeArchive
from engine.feeds.history.portfolio import MergedKlineReplay, MergedTradeReplay
from engine.feeds.history.replay import KlineReplay, TradeReplay
from engine.feeds.history.sources import DataError, _kline_source, expand, file_kind, split_symbol

FETCHED_KLINES = re.compile(
    r"(?P<symbol>[A-Z0-9]{1,30}(?:-[A-Z0-9]{1,12}){0,4}?)-\d+[smhdw]-\d{4}-\d{2}-\d{2}")


def is_portfolio(patterns: list[str] | tuple[str, ...], symbols: tuple[str, ...]) -> bool:
    """True when the run holds several symbols or names a file's symbol with ``SYMBOL=``."""
    return len(symbols) > 1 or any(split_symbol(p)[0] is not None for p in patterns)


def is_recording(patterns: list[str] | tuple[str, ...]) -> bool:
    """True when the data is one recording of a live session, which names its own symbols
    (a portfolio's recording replays as that portfolio)."""
    paths = expand(patterns)
    return len(paths) == 1 and file_kind(paths[0]) == "recording"


def fetched_symbol(path: Path) -> str | None:
    """The symbol in the name ``papertape fetch`` gives a kline file, or None."""
    match = FETCHED_KLINES.match(path.name)
    return match.group("symbol") if match else None


def files_by_symbol(patterns: list[str] | tuple[str, ...]) -> tuple[str, dict[str, list[Path]]]:
    """The data's one kind and its files per symbol, in the order symbols first appear."""
    groups: dict[str, list[Path]] = {}
    kinds: set[str] = set()
    for pattern in patterns:
        named, _ = split_symbol(pattern)
        for path in expand([pattern]):
            kind = file_kind(path)
            kinds.add(kind)
            if kind == "trades":
                try:
                    held = TradeArchive(path).info().symbol
                except ArchiveError as exc:
                    raise DataError(str(exc)) from None
                if named is not None and named != held:
                    raise DataError(f"{path}: {named}= names a trade archive of {held}")
                symbol = held
            elif kind == "klines":
                symbol = named or fetched_symbol(path)
                if symbol is None:
                    raise DataError(f"{path}: a kline file names no symbol; give it as SYMBOL={path}")
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
    kind, groups = files_by_symbol(patterns)
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
            merged = MergedTradeReplay([TradeReplay(archives[s], start_ns, end_ns) for s in symbols])
            merged.cover_last_bar(parse_interval(interval or "1m"))
            return merged
        klines: list[KlineReplay] = []
        for s in symbols:
            try:
                klines.append(_kline_source(groups[s], s, category, interval, start_ns, end_ns, cache_root))
            except ArchiveError as exc:
                raise DataError(f"{s}: {exc}") from None
        return MergedKlineReplay(klines)
    except (ArchiveError, BarFileError) as exc:
        raise DataError(str(exc)) from None


def _check_in_range(symbol: str, infos: list, start_ns: int | None, end_ns: int | None) -> None:
    """Refuse a symbol none of whose trades fall in the replay range."""
    lo = start_ns if start_ns is not None else min(i.first_ts for i in infos)
    hi = end_ns if end_ns is not None else max(i.last_ts for i in infos) + 1
    if not any(i.rows and i.first_ts < hi and i.last_ts >= lo for i in infos):
        raise DataError(f"{symbol}: no trades in the replay range")
