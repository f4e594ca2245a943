"""A sweep's search space: the parameters it varies and the values each may take.

On the command line ``--grid key=v1,v2,...`` lists values, ``key=5:60:5`` is a range (both
ends included, whole numbers when every part is one) and ``key=0.001~0.05`` (``:log`` for a
log scale) a span to sample from, which only the random and TPE samplers can search. A
``[sweep.space]`` table in the config takes the same strings, or a TOML list of values.
"""

from __future__ import annotations

import itertools
import math
import operator
from dataclasses import dataclass
from typing import Any

from engine.core.typed import ConfigError

Value = int | float | str | bool


@dataclass(frozen=True)
class Dimension:
    """One parameter of the space: a list of values (``values``), or a span to sample from
    (``low``..``high``, on a log scale when ``log``, whole numbers when ``integer``).
    ``step`` is set for an arithmetic range, which samplers may treat as ordered."""

    name: str
    values: tuple[Value, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    step: float | None = None

    @property
    def sampled(self) -> bool:
        return self.values is None

    def describe(self) -> str:
        if self.values is not None:
            return ",".join(map(str, self.values))
        return f"{self.low:g}~{self.high:g}" + (":log" if self.log else "")


@dataclass(frozen=True)
class Space:
    """The dimensions of a sweep, in the order given."""

    dimensions: tuple[Dimension, ...]

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    @property
    def discrete(self) -> bool:
        """True when every dimension lists its values (so the space has a full grid)."""
        return all(not d.sampled for d in self.dimensions)

    @property
    def size(self) -> int | None:
        """How many points the full grid has; None when a dimension is sampled."""
        if not self.discrete:
            return None
        return math.prod(len(d.values) for d in self.dimensions)

    def grid(self) -> list[dict[str, Value]]:
        """Every point of the grid, the last dimension varying fastest."""
        if not self.discrete:
            sampled = next(d.name for d in self.dimensions if d.sampled)
            raise ConfigError(f"the grid sampler cannot search the sampled span {sampled}="
                              f"{self.dimension(sampled).describe()}: use --sampler random or tpe")
        return [dict(zip(self.names, point, strict=True))
                for point in itertools.product(*(d.values for d in self.dimensions))]

    def dimension(self, name: str) -> Dimension:
        return next(d for d in self.dimensions if d.name == name)


def parse_value(text: str) -> Value:
    """A value as written: a whole number, a number, true/false, or else the text itself."""
    word = text.strip()
    if word.lower() in ("true", "false"):
        return word.lower() == "true"
    try:
        return int(word.replace("_", ""))
    except ValueError:
        pass
    try:
        number = float(word)
    except ValueError:
        return word
    return number if math.isfinite(number) else word


def parse_dimension(name: str, spec: Any, where: str = "--grid") -> Dimension:
    """A dimension from its spec: a string (``v1,v2``, ``a:b:step``, ``lo~hi[:log]``), a
    list of values (from TOML), or one value."""
    if not name or not name.strip():
        raise ConfigError(f"{where}: a parameter needs a name, as in fast=5,10")
    name = name.strip()
    if isinstance(spec, (list, tuple)):
        return _choices(name, list(spec), where)
    if not isinstance(spec, str):
        return _choices(name, [spec], where)
    text = spec.strip()
    if "~" in text:
        return _span(name, text, where)
    if ":" in text and "," not in text:
        return _range(name, text, where)
    return _choices(name, [parse_value(part) for part in text.split(",") if part.strip()], where)


def parse_space(grid: list[str], table: dict[str, Any] | None = None) -> Space:
    """The space from ``[sweep.space]`` (``table``) and ``--grid key=spec`` flags, which
    replace a key the table also has. A table inside it names its keys with its own name
    first (``[sweep.space.train]`` ``lr`` is ``train.lr``)."""
    dims: dict[str, Dimension] = {}
    for name, spec in flat_table(table or {}):
        dims[name] = parse_dimension(name, spec, f"[sweep.space] {name}")
    flagged: set[str] = set()
    for pair in grid:
        name, sep, spec = pair.partition("=")
        if not sep:
            raise ConfigError(f"--grid: {pair!r} is not key=values (e.g. fast=5,10 or fast=5:60:5)")
        if name.strip() in flagged:
            raise ConfigError(f"--grid {name.strip()}: given twice; list every value in one --grid")
        flagged.add(name.strip())
        dims[name.strip()] = parse_dimension(name, spec, f"--grid {pair}")
    if not dims:
        raise ConfigError("a sweep needs a search space: --grid key=v1,v2 (or a [sweep.space] table)")
    return Space(tuple(dims.values()))


def flat_table(table: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """A TOML table's keys and values, a nested table's keys named ``outer.inner``."""
    out: list[tuple[str, Any]] = []
    for name, spec in table.items():
        if isinstance(spec, dict):
            out.extend(flat_table(spec, f"{prefix}{name}."))
        else:
            out.append((f"{prefix}{name}", spec))
    return out


def _choices(name: str, values: list[Any], where: str) -> Dimension:
    if not values:
        raise ConfigError(f"{where}: no values for {name}")
    if len(set(map(repr, values))) != len(values):
        raise ConfigError(f"{where}: {name} lists a value twice")
    return Dimension(name, values=tuple(values))


def _number(text: str, where: str) -> int | float:
    value = parse_value(text)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: {text.strip()!r} is not a number")
    return value


def _range(name: str, text: str, where: str) -> Dimension:
    parts = text.split(":")
    if len(parts) != 3:
        raise ConfigError(f"{where}: a range is start:stop:step, as in {name}=5:60:5")
    start, stop, step = (_number(p, where) for p in parts)
    if not step > 0:
        raise ConfigError(f"{where}: the step must be positive, got {step}")
    if stop < start:
        raise ConfigError(f"{where}: the range ends ({stop}) before it starts ({start})")
    count = int(math.floor((stop - start) / step + 1e-9)) + 1
    if count > 100_000:
        raise ConfigError(f"{where}: {count:,} values is too many for one parameter")
    whole = all(isinstance(v, int) for v in (start, stop, step))
    values = tuple(start + i * step if whole else round(start + i * step, 12) for i in range(count))
    return Dimension(name, values=values, step=step, integer=whole)


def _span(name: str, text: str, where: str) -> Dimension:
    body, _, scale = text.partition(":")
    if scale not in ("", "log", "linear"):
        raise ConfigError(f"{where}: the scale after ':' is log or linear, not {scale!r}")
    low_text, _, high_text = body.partition("~")
    low, high = _number(low_text, where), _number(high_text, where)
    if not low < high:
        raise ConfigError(f"{where}: a span needs low < high, got {low}~{high}")
    log = scale == "log"
    if log and low <= 0:
        raise ConfigError(f"{where}: a log span needs a positive low end, got {low}")
    return Dimension(name, low=float(low), high=float(high), log=log,
                     integer=isinstance(low, int) and isinstance(high, int))


_OPS = {"<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
        "<": operator.lt, ">": operator.gt}


@dataclass(frozen=True)
class Constraint:
    """``left OP right`` over parameters, metrics (``daily.sharpe`` reaches the daily table)
    and numbers, e.g. ``fast<slow`` or ``max_drawdown<=0.2``; a trial that breaks one is
    discarded (before it runs, when it names parameters only)."""

    text: str
    left: str
    op: str
    right: str

    def names(self) -> set[str]:
        return {side for side in (self.left, self.right) if not isinstance(parse_value(side), (int, float))}

    def holds(self, values: dict[str, Any]) -> bool | None:
        """Whether it holds for ``values`` (a name to its value); None if a name has no value."""
        sides = []
        for side in (self.left, self.right):
            literal = parse_value(side)
            if isinstance(literal, (int, float)) and not isinstance(literal, bool):
                sides.append(literal)
                continue
            value: Any = values
            for part in side.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value is None:
                return None
            sides.append(value)
        try:
            return bool(_OPS[self.op](*sides))
        except TypeError:
            return False


def parse_constraint(text: str) -> Constraint:
    for op in ("<=", ">=", "==", "!=", "<", ">"):
        left, sep, right = text.partition(op)
        if sep:
            if not left.strip() or not right.strip():
                break
            return Constraint(text, left.strip(), op, right.strip())
    raise ConfigError(f"--constraint {text!r}: write NAME OP VALUE with OP one of <, <=, >, >=, ==, != "
                      "(e.g. fast<slow or max_drawdown<=0.2)")
