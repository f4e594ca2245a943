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

