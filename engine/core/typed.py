"""Build frozen dataclasses from plain dicts (TOML tables, ``key=value`` flags), strictly.

Unknown keys and values of the wrong type are refused with a :class:`ConfigError` that names
the key and where it came from, so a typo in ``config.toml`` or ``--param`` never passes
silently. Strings from the command line are converted to the field's declared type.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, TypeVar

from engine.core.errors import UserError

T = TypeVar("T")

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class ConfigError(UserError, ValueError):
    """A configuration problem, worded for the user: one line that names the key."""


def build(cls: type[T], data: dict[str, Any], where: str) -> T:
    """An instance of dataclass ``cls`` from ``data``; ``where`` names the source in errors
    (e.g. ``"config.toml [broker]"``). Nested dataclass fields take nested dicts."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(fields))})"
        )
    hints = typing.get_type_hints(cls)
    values = {name: convert(value, hints[name], f"{where} {name}") for name, value in data.items()}
    try:
        instance = cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    check = getattr(instance, "validate", None)
    if check is not None:
        try:
            check()
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return instance


def convert(value: Any, hint: Any, where: str) -> Any:
    """``value`` as type ``hint`` (str, int, float, bool, Optional, tuple/list, dict, Literal
    or a dataclass), converting strings; raises :class:`ConfigError` when it cannot."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is typing.Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return convert(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: cannot be {value!r}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else typing.Any
        return origin(convert(v, item, where) for v in value)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        number = _whole(value)
        if number is None:
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        if not -2**63 <= number < 2**63:  # what a ledger stores and the machine counts with
            raise ConfigError(f"{where}: {value!r} is out of range (a whole number of at most 19 digits)")
        return number
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if math.isnan(number):
            raise ConfigError(f"{where}: NaN is not allowed")
        if math.isinf(number):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return number
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported setting type {hint!r}")


def _whole(value: Any) -> int | None:
    """``value`` as an int (an int, a whole float, a decimal string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.replace("_", ""))
        except ValueError:
            return None
    return None


def parse_assignments(pairs: list[str], where: str, once: bool = False) -> dict[str, str]:
    """``["a=1", "b=x"]`` as ``{"a": "1", "b": "x"}``; a pair without ``=`` is an error, and
    with ``once`` so is a key given twice (a user's repeated ``--param`` would otherwise keep
    the last value without a word)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{where}: {pair!r} is not key=value")
        if once and key.strip() in out:
            raise ConfigError(f"{where} {key.strip()}: given twice ({out[key.strip()]!r} and "
                              f"{value.strip()!r}); give it once")
        out[key.strip()] = value.strip()
    return out
