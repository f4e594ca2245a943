"""Plugins by name: entry points (``papertape.strategies``, ``papertape.commands``) or a
``module:Attribute`` path, so the engine never imports plugin packages by name."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from engine.core.errors import UserError

STRATEGIES = "papertape.strategies"  # entry-point group of strategy classes
COMMANDS = "papertape.commands"  # entry-point group of functions that add CLI verbs


class PluginError(UserError, LookupError):
    """A plugin that cannot be found or imported; the message says which and why."""


def available(group: str) -> list[str]:
    """Names registered under an entry-point group, sorted."""
    return sorted(ep.name for ep in entry_points(group=group))


def load_strategy_class(spec: str) -> Any:
    """The strategy class registered as ``spec`` or at ``module:Class``."""
    return load(STRATEGIES, spec, "strategy")


def load(group: str, spec: str, what: str = "plugin") -> Any:
    """The object registered as ``spec`` in ``group``, or at ``module:Attribute``; ``what``
    names the kind of plugin in error messages."""
    if ":" in spec:
        module_name, _, attribute = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise PluginError(f"cannot import {module_name!r} for {spec!r}: {exc}") from exc
        try:
            return getattr(module, attribute)
        except AttributeError:
            raise PluginError(f"module {module_name!r} has no {attribute!r}") from None
    matches = [ep for ep in entry_points(group=group) if ep.name == spec]
    if not matches:
        names = ", ".join(available(group)) or "none installed"
        raise PluginError(f"unknown {what} {spec!r} (available: {names}; or give module:Class)")
    try:
        return matches[0].load()
    except ImportError as exc:
        raise PluginError(f"cannot load {spec!r} from {matches[0].value}: {exc}") from exc
