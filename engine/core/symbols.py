"""What a market symbol may look like: Bybit's are upper-case letters and digits (options
join parts with hyphens, BTC-27JUN25-60000-C). A symbol becomes a file or folder name in
fetch, caches and recordings, so anything else (a slash, a dot, ``..``) is refused."""

from __future__ import annotations

import re

from engine.core.typed import ConfigError

SYMBOL = re.compile(r"[A-Z0-9]{1,30}(?:-[A-Z0-9]{1,12}){0,4}")


def check_symbol(symbol: str, what: str = "--symbol") -> str:
    """``symbol`` when it is a well-formed Bybit symbol, else a :class:`ConfigError`."""
    if not isinstance(symbol, str) or not SYMBOL.fullmatch(symbol):
        raise ConfigError(f"{what}: {str(symbol)[:60]!r} is not a Bybit symbol (upper-case letters and "
                          "digits, e.g. BTCUSDT)")
    return symbol



MIXED_CATEGORIES = ("spot", "linear")  # what a run may name with category:SYMBOL


def split_market(name: str, category: str) -> tuple[str, str]:
    """A run's name for an instrument as ``(category, symbol)``: ``spot:BTCUSDT`` is the spot
    market of a linear run (a mixed run), a bare ``BTCUSDT`` the run's own ``category``."""
    prefix, colon, symbol = name.partition(":")
    return (prefix, symbol) if colon else (category, name)


def market_name(text: str, category: str, what: str = "--symbols") -> str:
    """The run's name for ``text`` (``SYMBOL`` or ``category:SYMBOL``): the prefix is kept
    only for a category other than the run's, so each instrument has one name; a prefix
    needs a linear run (one margin wallet that also holds coins), else a :class:`ConfigError`."""
    prefix, colon, symbol = text.partition(":")
    if not colon:
        return check_symbol(text, what)
    if prefix not in MIXED_CATEGORIES:
        raise ConfigError(f"{what} {text[:60]}: a run mixes only spot:SYMBOL and linear:SYMBOL "
                          f"markets, not {prefix[:20]!r}")
    if category != "linear":
        raise ConfigError(f"{what} {text[:60]}: a run mixing categories is a linear account that also "
                          f"holds spot coins; it needs run.category=linear (the default), not {category}")
    check_symbol(symbol, what)
    return symbol if prefix == category else f"{prefix}:{symbol}"
