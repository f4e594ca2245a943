"""Plugins by name: entry points (``papertape.strategies``, ``papertape.commands``), a
``module:Attribute`` path (the working directory is searched too, as ``python -m`` would),
or a ``path/to/file.py:Attribute``, so the engine never imports plugin packages by name."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
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
        module_name, _, attribute = spec.rpartition(":")
        if not module_name or not attribute:
            raise PluginError(f"{spec!r}: give module:Class or path/to/file.py:Class")
        try:
            module = _import(module_name)
        except (ImportError, SyntaxError, OSError) as exc:
            raise PluginError(f"cannot import {module_name!r} for {spec!r}: {exc}") from None
        except Exception as exc:  # the module's own code failed while it was imported
            raise PluginError(f"cannot import {module_name!r} for {spec!r}: it raised {exc!r}") from None
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
    except Exception as exc:  # an import error, or the plugin's own code failing at import
        raise PluginError(f"cannot load {spec!r} from {matches[0].value}: {exc!r}") from None


def _import(name: str) -> ModuleType:
    """A module by dotted name (from the working directory too) or by file path."""
    if name.endswith(".py") or os.sep in name or "/" in name:
        return _import_file(Path(name))
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)  # after the installed packages: a local file never shadows them
    return importlib.import_module(name)


def _import_file(path: Path) -> ModuleType:
    """The module in ``path``, imported once under a name made from its resolved path."""
    path = path.expanduser().resolve()
    if not path.is_file():
        raise ImportError(f"no file {path}")
    name = f"papertape_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look a class's module up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
