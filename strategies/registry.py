"""Find strategy classes: by entry-point name (group ``papertape.strategies``) or by a
``module:Class`` path; list what is installed."""

from __future__ import annotations

from engine import plugins
from strategies.base import Strategy

GROUP = "papertape.strategies"


def available_strategies() -> list[str]:
    """Names of the installed strategies."""
    return plugins.available(GROUP)


def find_strategy(spec: str) -> type[Strategy]:
    """The strategy class called ``spec`` (a registered name or ``module:Class``)."""
    cls = plugins.load(GROUP, spec, "strategy")
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise plugins.PluginError(f"{spec!r} is not a Strategy subclass")
    return cls
